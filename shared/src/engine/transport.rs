//! The two transports bollard does not build the way the docker CLI does:
//!
//! - TLS over TCP with exactly the files the CLI uses (the context's or
//!   `DOCKER_CERT_PATH`'s `ca.pem`, `cert.pem`, `key.pem`) and `SkipTLSVerify`;
//!   bollard's own TLS also trusts the system's roots and has no skip option.
//! - `ssh://` hosts, which go through `docker -H HOST system dial-stdio` (the
//!   CLI does the ssh part, with the user's ssh config and agent). This is the
//!   only place orca starts a `docker` process; each connection is one child,
//!   in its own process group so a Ctrl-C in the console reaches only us.
//!
//! Both are hyper clients handed to bollard as a custom transport; HTTP itself
//! stays hyper's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::endpoint::Tls;

/// A client for `https://host_port` with the CLI's TLS files.
pub fn tls(
    host_port: &str,
    tls: &Tls,
    limit: u64,
    version: &ClientVersion,
) -> anyhow::Result<Docker> {
    let config = client_config(tls)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https),
    );
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{host_port}")),
        limit,
        version,
    )
    .map_err(|e| crate::err!(DockerUnavailable, "cannot set up TLS to {host_port}: {e}"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(tls: &Tls) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::err!(DockerUnavailable, "TLS setup failed: {e}"))?;
    let builder = if tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    } else {
        let Some(ca) = &tls.ca else {
            crate::fail!(
                DockerUnavailable,
                "TLS to Docker needs a CA certificate (ca.pem) to check the engine against"
            );
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                crate::err!(
                    DockerUnavailable,
                    "cannot read the Docker CA certificate {}: {e}",
                    ca.display()
                )
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            crate::fail!(
                DockerUnavailable,
                "{} holds no usable CA certificate",
                ca.display()
            );
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    crate::err!(
                        DockerUnavailable,
                        "cannot read the Docker client certificate {}: {e}",
                        cert.display()
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                crate::err!(
                    DockerUnavailable,
                    "cannot read the Docker client key {}: {e}",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                crate::err!(
                    DockerUnavailable,
                    "the Docker client certificate and key do not fit together: {e}"
                )
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `SkipTLSVerify`: the connection is encrypted, the engine's identity unchecked.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that reaches `host` through `docker -H HOST system dial-stdio`.
pub fn dial_stdio(host: &str, limit: u64, version: &ClientVersion) -> anyhow::Result<Docker> {
    let host = host.to_string();
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let host = host.clone();
            async move { dial_and_send(&host, req).await }
        },
        Some("http://docker"),
        limit,
        version,
    )
    .map_err(|e| {
        crate::err!(
            DockerUnavailable,
            "cannot set up the docker CLI transport: {e}"
        )
    })
}

async fn dial_and_send(
    host: &str,
    req: BollardRequest,
) -> Result<hyper::Response<hyper::body::Incoming>, bollard::errors::Error> {
    let unreachable = |why: String| bollard::errors::Error::IOError {
        err: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why),
    };
    let mut cmd = tokio::process::Command::new(if cfg!(windows) {
        "docker.exe"
    } else {
        "docker"
    });
    cmd.args(["-H", host, "system", "dial-stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    own_process_group(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        unreachable(if e.kind() == std::io::ErrorKind::NotFound {
            format!("{host} needs the docker CLI, which is not on PATH")
        } else {
            format!("cannot start `docker system dial-stdio` for {host}: {e}")
        })
    })?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(unreachable("dial-stdio has no pipes".into()));
    };
    // What the CLI (or ssh) says when the connection fails.
    let said = tokio::spawn(async move {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if text.len() < 16 * 1024 {
                text.extend_from_slice(&buf[..n]);
            }
        }
        crate::exit::one_line(&String::from_utf8_lossy(&text))
    });
    // The child lives as long as the connection (and as this call, so a
    // failure can wait for it to say why).
    let child = Arc::new(tokio::sync::Mutex::new(child));
    let why = |e: String| {
        let child = Arc::clone(&child);
        async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                child.lock().await.wait().await
            })
            .await;
            let text = match tokio::time::timeout(std::time::Duration::from_secs(1), said).await {
                Ok(Ok(t)) if !t.is_empty() => t,
                _ => e,
            };
            unreachable(format!("docker -H {host} system dial-stdio: {text}"))
        }
    };
    let io = TokioIo::new(Duplex {
        read: stdout,
        write: stdin,
    });
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(x) => x,
        Err(e) => return Err(why(e.to_string()).await),
    };
    let keep = Arc::clone(&child);
    tokio::spawn(async move {
        let _ = conn.await;
        // The connection is over: the child goes with it.
        drop(keep);
    });
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = path.parse().map_err(bollard::errors::Error::from)?;
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_static("docker"),
    );
    match sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await
    {
        Ok(r) => Ok(r),
        Err(e) => Err(why(e.to_string()).await),
    }
}

fn own_process_group(cmd: &mut tokio::process::Command) {
    #[cfg(unix)]
    {
        cmd.process_group(0);
    }
    #[cfg(windows)]
    {
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }
}

/// The child's stdout and stdin as one connection.
struct Duplex<R, W> {
    read: R,
    write: W,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Duplex<R, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Duplex<R, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}
