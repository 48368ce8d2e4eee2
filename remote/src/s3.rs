//! S3-compatible object storage through `opendal` (AWS S3, Cloudflare R2,
//! Backblaze B2, Ceph, SeaweedFS, Garage, ...).
//!
//! Settings as the AWS tools read them: credentials from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or a profile (`AWS_PROFILE` or
//! config `s3.profile`) in the shared credentials and config files
//! (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`); the endpoint from config
//! `s3.endpoint`, `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`; the region from
//! config `s3.region`, `AWS_REGION` or `AWS_DEFAULT_REGION`. An `http://`
//! endpoint works when configured explicitly (local servers often have no
//! TLS), with a warning when it is not a loopback address.
//!
//! Uploads are multipart, streamed in parts of 5 MiB (more for archives over
//! 40 GiB: S3 allows 10,000 parts), a few at once, so memory stays bounded
//! whatever the size; the object exists only once the upload completes, and a
//! failed upload is aborted. Transient errors are retried with exponential
//! backoff and jitter; every request has a deadline (`remote_timeout_seconds`).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind as OdKind, Operator};
use orca_shared::config::Config;
use orca_shared::fsutil::read_full;
use orca_shared::progress::Progress;
use orca_shared::{ErrorKind, fail};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::dir::hex;
use crate::{Object, Sent, error, interrupted};

/// The part size of multipart uploads: S3's minimum. Each part in flight
/// costs about twice its size in memory (the part, and the HTTP client's
/// buffers); with three at once an upload peaks near 40 MiB, and three
/// parts keep a server on the same machine as busy as larger ones do.
pub const PART: usize = 5 << 20;
/// Parts uploaded at once.
pub const CONCURRENT_PARTS: usize = 3;
/// Downloads read ahead this much per request...
pub const READ_CHUNK: usize = 4 << 20;
/// ...with this many requests at once.
pub const READ_CONCURRENT: usize = 2;
/// S3's limit on the parts of one upload (kept below 10,000 with a margin).
const MAX_PARTS: u64 = 9_000;

/// An opened bucket and prefix.
pub struct S3Store {
    op: Operator,
    rt: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: String,
    tool: String,
    /// The profile asked for (for messages).
    profile: Option<String>,
    /// The endpoint's user information, scrubbed from every message.
    secret: Option<String>,
}

/// The endpoint, region and addressing to use, as resolved from config and
/// the environment (for messages and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The endpoint URL, or `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region, when known without asking the server.
    pub region: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
    /// The profile, when config names one (given to the S3 client, which
    /// reads `AWS_PROFILE` itself).
    pub profile: Option<String>,
    /// The profile in use: config's, else `AWS_PROFILE` (for the region and
    /// messages).
    pub profile_used: Option<String>,
}

/// Resolve the settings from `config` and `env` (a lookup, so tests need not
/// change the process environment).
pub fn settings(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Settings {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let endpoint = non_empty(config.s3.endpoint.clone())
        .or_else(|| non_empty(env("AWS_ENDPOINT_URL_S3")))
        .or_else(|| non_empty(env("AWS_ENDPOINT_URL")))
        .map(|e| e.trim().trim_end_matches('/').to_string());
    let profile = non_empty(config.s3.profile.clone());
    let profile_used = profile.clone().or_else(|| non_empty(env("AWS_PROFILE")));
    let region = non_empty(config.s3.region.clone())
        .or_else(|| non_empty(env("AWS_REGION")))
        .or_else(|| non_empty(env("AWS_DEFAULT_REGION")))
        .or_else(|| profile_region(env, profile_used.as_deref().unwrap_or("default")));
    let path_style = config.s3.path_style.unwrap_or(endpoint.is_some());
    Settings {
        endpoint,
        region,
        path_style,
        profile,
        profile_used,
    }
}

/// The `region` of a profile in the shared AWS config file
/// (`AWS_CONFIG_FILE`, else `~/.aws/config`): `[default]` or `[profile NAME]`.
fn profile_region(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    let path = match env("AWS_CONFIG_FILE").filter(|p| !p.is_empty()) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let home = env("HOME")
                .or_else(|| env("USERPROFILE"))
                .filter(|h| !h.is_empty())?;
            std::path::Path::new(&home).join(".aws").join("config")
        }
    };
    let text = std::fs::read_to_string(path).ok()?;
    let wanted = if name == "default" {
        vec!["default".to_string(), "profile default".to_string()]
    } else {
        vec![format!("profile {name}")]
    };
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(section) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = wanted.contains(&section);
            continue;
        }
        if inside
            && let Some((k, v)) = t.split_once('=')
            && k.trim() == "region"
            && !v.trim().is_empty()
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Whether `endpoint` is plain HTTP to a host other than this machine.
pub fn is_remote_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| endpoint.get(7..))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // user:password@host:port
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    let host = host.to_ascii_lowercase();
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

/// The HTTP client every operator uses: rustls with the ring provider (it
/// cross-builds for Windows with mingw) and the platform's trust store,
/// behind [`Interruptible`].
fn install_http(timeout: Duration) -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .connect_timeout(timeout.min(Duration::from_secs(15)))
                .read_timeout(timeout)
                .build()
                .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
            opendal::HttpTransporter::install_default(Interruptible(
                opendal_http_transport_reqwest::ReqwestTransport::new(client),
            ));
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Cancelled on the first Ctrl-C.
fn cancel_token() -> &'static CancellationToken {
    orca_shared::interrupt::cancel_token()
}

/// The HTTP transport, ended at once by Ctrl-C: every request in flight
/// (the parts of an upload too, which run as tasks of their own) fails with
/// a permanent error, so the retry layer gives up instead of waiting out a
/// stalled server, and the writer stays whole for the abort that follows.
/// DELETEs (aborting an upload, removing this run's own object) are cleanup
/// and run to their own deadline.
struct Interruptible(opendal_http_transport_reqwest::ReqwestTransport);

impl opendal::HttpTransport for Interruptible {
    async fn fetch(
        &self,
        req: http::Request<opendal::Buffer>,
    ) -> opendal::Result<http::Response<opendal::HttpBody>> {
        if req.method() == http::Method::DELETE || CLEANUP.try_with(|c| *c).unwrap_or(false) {
            return self.0.fetch(req).await;
        }
        // The request that starts a multipart upload: cut off, the server
        // may have started one whose id this run never learns.
        let starts_upload = req.method() == http::Method::POST
            && req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "uploads" || p == "uploads="));
        let token = cancel_token();
        tokio::select! {
            biased;
            _ = token.cancelled() => {
                if starts_upload {
                    START_CUT_OFF.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Err(opendal::Error::new(OdKind::Unexpected, INTERRUPTED_REQUEST))
            }
            r = self.0.fetch(req) => r,
        }
    }
}

tokio::task_local! {
    /// Set while this run removes its own objects after a failure or Ctrl-C:
    /// those requests run to their deadline.
    static CLEANUP: bool;
}

/// Set when Ctrl-C cut off the request that starts a multipart upload.
static START_CUT_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The message of a request ended by Ctrl-C.
const INTERRUPTED_REQUEST: &str = "interrupted (Ctrl-C)";

/// How long aborting an upload may take after Ctrl-C or a failure.
const ABORT_DEADLINE: Duration = Duration::from_secs(5);

impl S3Store {
    /// Open `bucket` at `prefix` (`""` or ending with `/`).
    pub fn open(
        bucket: &str,
        prefix: &str,
        config: &Config,
        tool: &str,
    ) -> anyhow::Result<S3Store> {
        let timeout = Duration::from_secs(config.remote_timeout_seconds);
        install_http(timeout)?;
        let s = settings(config, &|k| std::env::var(k).ok());
        let secret = s
            .endpoint
            .as_deref()
            .and_then(orca_shared::redact::userinfo)
            .map(String::from);
        if let Some(endpoint) = &s.endpoint {
            let e = orca_shared::redact::endpoint(endpoint);
            let lower = e.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                fail!(
                    Usage,
                    "the S3 endpoint {e:?} must start with https:// (or http:// for a server without TLS)"
                );
            }
            if is_remote_http(&e) {
                eprintln!(
                    "{tool}: warning: the S3 endpoint {e} is plain HTTP to another machine: requests are signed, but the archive and its manifest travel unencrypted (use https://, or encrypt backups with --encrypt)"
                );
            }
        }
        let rt = runtime()?;
        let shown_endpoint = orca_shared::redact::endpoint(
            s.endpoint.as_deref().unwrap_or("https://s3.amazonaws.com"),
        );
        let region = match &s.region {
            Some(r) => r.clone(),
            None if s.endpoint.is_some() => "us-east-1".to_string(),
            // On AWS, ask the bucket where it lives (HeadBucket).
            None => rt
                .block_on(opendal::services::S3::detect_region(
                    "https://s3.amazonaws.com",
                    bucket,
                ))
                .unwrap_or_else(|| "us-east-1".to_string()),
        };
        let mut builder = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"))
            .region(&region);
        if let Some(e) = &s.endpoint {
            builder = builder.endpoint(e);
        }
        if !s.path_style {
            builder = builder.enable_virtual_host_style();
        }
        if let Some(p) = &s.profile {
            builder = builder.profile(p);
        }
        let tool_name = tool.to_string();
        let notify_secret = secret.clone();
        let op = Operator::new(builder)
            .map_err(|e| {
                error(
                    ErrorKind::Usage,
                    format!("cannot use S3 bucket '{bucket}': {}", e.message()),
                )
            })?
            .layer(
                // A HEAD or a LIST answers at once or not at all: their own,
                // shorter deadline; a transfer may pause up to the full one.
                TimeoutLayer::new()
                    .with_timeout(timeout.min(Duration::from_secs(20)))
                    .with_io_timeout(timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(3)
                    .with_factor(2.0)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(8))
                    .with_jitter()
                    .with_notify(move |ev: opendal::layers::RetryEvent<'_>| {
                        eprintln!(
                            "{tool_name}: S3 {} failed ({}); retry {} in {:.1} s",
                            ev.op.into_static(),
                            orca_shared::redact::scrub(
                                &innermost(ev.err),
                                notify_secret.as_deref()
                            ),
                            ev.attempt,
                            ev.retry_after.as_secs_f64()
                        );
                    }),
            );
        Ok(S3Store {
            op,
            rt,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: shown_endpoint,
            tool: tool.to_string(),
            profile: s.profile_used.clone(),
            secret,
        })
    }

    fn url_of(&self, name: &str) -> String {
        format!("s3://{}/{}{name}", self.bucket, self.prefix)
    }

    /// Run `fut` to completion, or until Ctrl-C.
    fn run<T>(&self, fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        let token = CancellationToken::new();
        let cancel = token.clone();
        let _hook = orca_shared::interrupt::on_interrupt(move || cancel.cancel());
        self.rt.block_on(async move {
            tokio::select! {
                biased;
                _ = token.cancelled() => Err(interrupted()),
                r = fut => r,
            }
        })
    }

    /// An opendal error as one line a user can act on, with its exit code,
    /// never holding the endpoint's credentials.
    fn classify(&self, e: &opendal::Error, what: &str) -> anyhow::Error {
        let err = self.classify_raw(e, what);
        let kind = orca_shared::exit::kind_of(&err);
        error(
            kind,
            orca_shared::redact::scrub(&format!("{err:#}"), self.secret.as_deref()),
        )
    }

    fn classify_raw(&self, e: &opendal::Error, what: &str) -> anyhow::Error {
        // A request Ctrl-C ended is an interrupt, not a failing server.
        if format!("{e}").contains(INTERRUPTED_REQUEST) {
            return interrupted();
        }
        // (The message is scrubbed of credentials once, in `classify`.)
        let text = format!("{e:?}");
        let code = s3_code(&text);
        let why = match (&code, s3_message(&text)) {
            (Some(c), Some(m)) => format!("{c}: {}", m.trim_end_matches('.')),
            (Some(c), None) => c.clone(),
            _ => match innermost(e) {
                m if m.trim().is_empty() => format!("{}", e.kind()),
                m => m,
            },
        };
        let denied = matches!(
            code.as_deref(),
            Some(
                "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AuthorizationHeaderMalformed"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired"
            )
        );
        if format!("{e}").contains("signing credential") {
            let profile = match &self.profile {
                Some(p) => format!(
                    " (the profile '{p}' gives none: is it in ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE?)"
                ),
                None => String::new(),
            };
            return error(
                ErrorKind::RemoteDenied,
                format!(
                    "cannot {what}: no credentials for {} were found{profile}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile (AWS_PROFILE or s3.profile) in ~/.aws/credentials",
                    self.endpoint
                ),
            );
        }
        if denied || e.kind() == OdKind::PermissionDenied {
            return error(
                ErrorKind::RemoteDenied,
                format!(
                    "cannot {what}: {} refused access to bucket '{}' ({why}): check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile in AWS_PROFILE / s3.profile) and that they may use this bucket",
                    self.endpoint, self.bucket
                ),
            );
        }
        if code.as_deref() == Some("NoSuchBucket") || e.kind() == OdKind::NotFound {
            return error(
                ErrorKind::RemoteNotFound,
                format!(
                    "cannot {what}: bucket '{}' does not exist at {} (create it first, or check the URL and s3.endpoint)",
                    self.bucket, self.endpoint
                ),
            );
        }
        if e.kind() == OdKind::ConfigInvalid {
            return error(ErrorKind::Usage, format!("cannot {what}: {why}"));
        }
        let hint = if why.contains("InvalidContentType") || why.contains("corrupt message") {
            " (is the endpoint plain http://, not https://?)"
        } else {
            ""
        };
        error(
            ErrorKind::RemoteUnavailable,
            format!(
                "cannot {what}: {} is unreachable or failing ({why}){hint}; check that it runs and the endpoint (s3.endpoint, AWS_ENDPOINT_URL), then run again",
                self.endpoint
            ),
        )
    }

    /// The objects directly under the prefix.
    pub fn list(&self) -> anyhow::Result<Vec<Object>> {
        let what = format!("list {}", self.url_of(""));
        self.run(async {
            let entries = self
                .op
                .list_with("/")
                .await
                .map_err(|e| self.classify(&e, &what))?;
            Ok(entries
                .into_iter()
                .filter(|e| e.metadata().is_file() && !e.name().is_empty())
                .map(|e| Object {
                    name: e.name().to_string(),
                    size: e.metadata().content_length(),
                    modified: e.metadata().last_modified().and_then(to_chrono),
                })
                .collect())
        })
    }

    /// The object `name`, if it exists.
    pub fn stat(&self, name: &str) -> anyhow::Result<Option<Object>> {
        let what = format!("read {}", self.url_of(name));
        self.run(async {
            match self.op.stat(name).await {
                Ok(m) => Ok(Some(Object {
                    name: name.to_string(),
                    size: m.content_length(),
                    modified: m.last_modified().and_then(to_chrono),
                })),
                Err(e)
                    if s3_code(&format!("{e:?}")).is_none()
                        && matches!(e.kind(), OdKind::NotFound | OdKind::PermissionDenied) =>
                {
                    // A HEAD answer has no body to say why: a listing does
                    // (a missing bucket, refused credentials), and tells a
                    // missing bucket from a missing key.
                    match self.op.list_with("/").limit(1).await {
                        Ok(_) if e.kind() == OdKind::NotFound => Ok(None),
                        Ok(_) => Err(self.classify(&e, &what)),
                        Err(le) => Err(self.classify(&le, &what)),
                    }
                }
                Err(e) => Err(self.classify(&e, &what)),
            }
        })
    }

    /// Put a small object (one PUT: atomic).
    pub fn put_small(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let what = format!("write {}", self.url_of(name));
        let body = Bytes::copy_from_slice(bytes);
        self.run(async {
            self.op
                .write(name, body)
                .await
                .map_err(|e| self.classify(&e, &what))?;
            Ok(())
        })
    }

    /// Put a small object only if no object of that name exists (one PUT
    /// with `If-None-Match: *`): `Ok(Some(etag))` written, `Ok(None)` taken.
    pub fn put_small_new(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Option<String>> {
        let what = format!("write {}", self.url_of(name));
        let body = Bytes::copy_from_slice(bytes);
        self.run(async {
            match self.op.write_with(name, body).if_not_exists(true).await {
                Ok(meta) => match meta.etag() {
                    Some(t) => Ok(Some(t.to_string())),
                    // The PUT's answer had none: what the server says now.
                    None => Ok(Some(
                        self.op
                            .stat(name)
                            .await
                            .map_err(|e| self.classify(&e, &what))?
                            .etag()
                            .unwrap_or_default()
                            .to_string(),
                    )),
                },
                Err(e) if e.kind() == OdKind::ConditionNotMatch => Ok(None),
                Err(e) => Err(self.classify(&e, &what)),
            }
        })
    }

    /// Multipart upload of `local` as `name`. Without `overwrite` the object
    /// is created only if no object of that name exists when it completes
    /// (`If-None-Match: *` on the completion): of two writers of one name one
    /// wins, and the other gets exit 5 and leaves nothing.
    pub fn upload(
        &self,
        local: &Path,
        name: &str,
        expected: Option<&str>,
        overwrite: bool,
        progress: &Progress,
    ) -> anyhow::Result<Sent> {
        let mut file =
            File::open(local).with_context(|| format!("cannot read {}", local.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot read {}", local.display()))?
            .len();
        let part = part_size(size);
        let what = format!("upload {}", self.url_of(name));
        // Ctrl-C ends the requests in flight at once (see [`Interruptible`]);
        // the writer is never dropped mid-call, so it can still abort and
        // the parts sent so far do not stay on the server.
        self.rt.block_on(async {
            let mut w = self
                .op
                .writer_with(name)
                .chunk(part)
                .concurrent(CONCURRENT_PARTS)
                .if_not_exists(!overwrite)
                .await
                .map_err(|e| self.classify(&e, &what))?;
            let mut hasher = Sha256::new();
            let mut sent = 0u64;
            let fed: anyhow::Result<()> = async {
                let mut parts = 0u64;
                loop {
                    if orca_shared::interrupt::interrupted() {
                        return Err(interrupted());
                    }
                    let mut buf = vec![0u8; part];
                    let n = read_full(&mut file, &mut buf)
                        .with_context(|| format!("cannot read {}", local.display()))?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    w.write(Bytes::from(buf))
                        .await
                        .map_err(|e| self.classify(&e, &what))?;
                    sent += n as u64;
                    progress.add(n as u64);
                    parts += 1;
                    if parts == 2 {
                        orca_shared::testpoint::point("copy-uploading");
                    }
                }
            }
            .await;
            let sha256 = hex(&hasher.finalize());
            let fed = fed.and_then(|()| match expected {
                Some(want) if !want.eq_ignore_ascii_case(&sha256) => Err(error(
                    ErrorKind::VerificationFailed,
                    format!(
                        "{} has SHA-256 {sha256} but its checksum says {want}: it changed or is damaged on disk, so it was not copied",
                        local.display()
                    ),
                )),
                _ if orca_shared::interrupt::interrupted() => Err(interrupted()),
                _ => Ok(()),
            });
            let failed = match fed {
                Ok(()) => match w.close().await {
                    Ok(meta) => {
                        return Ok(Sent {
                            size: sent,
                            sha256,
                            token: meta.etag().map(String::from),
                        });
                    }
                    Err(e) if e.kind() == OdKind::ConditionNotMatch => error(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} was created by another writer while this copy was uploaded; it was left untouched",
                            self.url_of(name)
                        ),
                    ),
                    Err(e) => self.classify(&e, &what),
                },
                Err(e) => e,
            };
            let failed = if orca_shared::interrupt::interrupted() {
                interrupted()
            } else {
                failed
            };
            // Nothing appears under the name: drop the parts sent so far.
            let undone = match tokio::time::timeout(ABORT_DEADLINE, w.abort()).await {
                // An upload whose start was cut off has no id here to abort.
                Ok(Ok(())) if START_CUT_OFF.load(std::sync::atomic::Ordering::SeqCst) => {
                    "the server did not answer the request that starts the upload, so its id is unknown"
                        .to_string()
                }
                Ok(Ok(())) => return Err(failed),
                Ok(Err(a)) => orca_shared::redact::scrub(&innermost(&a), self.secret.as_deref()),
                Err(_) => format!("no answer within {} s", ABORT_DEADLINE.as_secs()),
            };
            let cleanup = format!(
                "no object was created, but an unfinished upload (and the parts sent) may stay on the server, and cost, until removed: `aws s3api list-multipart-uploads --bucket {}{}` and abort-multipart-upload, or a lifecycle rule that aborts incomplete multipart uploads",
                self.bucket,
                if self.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" --prefix {}", self.prefix)
                }
            );
            if orca_shared::interrupt::interrupted() {
                return Err(error(
                    ErrorKind::Interrupted,
                    format!(
                        "interrupted; the unfinished upload of {} could not be aborted ({undone}): {cleanup}",
                        self.url_of(name)
                    ),
                ));
            }
            eprintln!(
                "{}: warning: could not abort the unfinished upload of {} ({undone}); {cleanup}",
                self.tool,
                self.url_of(name),
            );
            Err(failed)
        })
    }

    /// Stream `name` into `to`.
    pub fn download(
        &self,
        name: &str,
        to: &mut dyn Write,
        progress: Option<&Progress>,
    ) -> anyhow::Result<(u64, String)> {
        let what = format!("read {}", self.url_of(name));
        self.run(async {
            let reader = match self
                .op
                .reader_with(name)
                .chunk(READ_CHUNK)
                .concurrent(READ_CONCURRENT)
                .await
            {
                Ok(r) => r,
                Err(e) if e.kind() == OdKind::NotFound => {
                    return Err(error(
                        ErrorKind::RemoteNotFound,
                        format!("{} does not exist", self.url_of(name)),
                    ));
                }
                Err(e) => return Err(self.classify(&e, &what)),
            };
            let mut stream = reader
                .into_bytes_stream(..)
                .await
                .map_err(|e| self.classify(&e, &what))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    let kind = e.kind();
                    match e
                        .into_inner()
                        .and_then(|i| i.downcast::<opendal::Error>().ok())
                    {
                        Some(od) => self.classify(&od, &what),
                        None => error(
                            ErrorKind::RemoteUnavailable,
                            format!("cannot {what}: the transfer broke off ({kind})"),
                        ),
                    }
                })?;
                hasher.update(&chunk);
                to.write_all(&chunk)
                    .context("cannot write what was downloaded")?;
                size += chunk.len() as u64;
                if let Some(p) = progress {
                    p.add(chunk.len() as u64);
                }
            }
            Ok((size, hex(&hasher.finalize())))
        })
    }

    /// Delete `name` (S3 says success for a missing key too).
    /// Ctrl-C ends it when `interruptible`; else it runs to its deadline
    /// (cleanup after an interrupt).
    pub fn delete(&self, name: &str, interruptible: bool) -> anyhow::Result<()> {
        let what = format!("delete {}", self.url_of(name));
        let fut = async {
            self.op
                .delete(name)
                .await
                .map_err(|e| self.classify(&e, &what))
        };
        if interruptible {
            self.run(fut)
        } else {
            self.rt.block_on(fut)
        }
    }

    /// Delete `name` only while it is the object this run wrote (its ETag is
    /// `etag`): `If-Match` on the delete, and the ETag compared first for
    /// servers that ignore the condition. Whatever another writer put there
    /// stays. Runs to its deadline even after Ctrl-C. `Ok(false)`: not ours
    /// (or gone), left alone.
    pub fn delete_own(
        &self,
        name: &str,
        etag: &str,
        unless_proven: Option<&str>,
    ) -> anyhow::Result<bool> {
        let what = format!("delete {}", self.url_of(name));
        let work = CLEANUP.scope(true, async {
            // Proven by another run meanwhile: its checksum names these bytes.
            if let Some(sha) = unless_proven
                && let Ok(buf) = self.op.read(&format!("{name}.sha256")).await
                && crate::parse_sha256_line(&String::from_utf8_lossy(&buf.to_vec()), name)
                    .is_some_and(|h| h.eq_ignore_ascii_case(sha))
            {
                return Ok(false);
            }
            match self.op.stat(name).await {
                Ok(m) if m.etag() == Some(etag) => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == OdKind::NotFound => return Ok(false),
                Err(e) => return Err(self.classify(&e, &what)),
            }
            match self.op.delete_with(name).if_match(etag).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == OdKind::ConditionNotMatch => Ok(false),
                Err(e) => Err(self.classify(&e, &what)),
            }
        });
        self.rt.block_on(async {
            match tokio::time::timeout(ABORT_DEADLINE, work).await {
                Ok(r) => r,
                Err(_) => Err(error(
                    ErrorKind::RemoteUnavailable,
                    format!(
                        "cannot {what}: {} did not answer within {} s",
                        self.endpoint,
                        ABORT_DEADLINE.as_secs()
                    ),
                )),
            }
        })
    }
}

/// The part size for an upload of `size` bytes: 5 MiB, or more (whole MiB)
/// when 5 MiB parts would pass S3's part limit.
pub fn part_size(size: u64) -> usize {
    let min = PART as u64;
    let need = size.div_ceil(MAX_PARTS);
    let mib = 1 << 20;
    need.max(min).div_ceil(mib).saturating_mul(mib) as usize
}

/// The S3 error code an error carries, if any: from the XML body
/// (`<Code>NoSuchBucket</Code>`) or opendal's parsed form (`code: "NoSuchBucket"`).
fn s3_code(text: &str) -> Option<String> {
    let code = between(text, "<Code>", "</Code>").or_else(|| between(text, "code: \"", "\""))?;
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| code.to_string())
}

/// The S3 error message an error carries, if any.
fn s3_message(text: &str) -> Option<String> {
    between(text, "<Message>", "</Message>")
        .or_else(|| between(text, "message: \"", "\""))
        .map(String::from)
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The innermost cause of an opendal error, on one line ("Connection
/// refused (os error 111)", "PermissionDenied ... ").
fn innermost(e: &opendal::Error) -> String {
    let mut last: Option<String> = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        last = Some(c.to_string());
        cur = c.source();
    }
    let text = last.unwrap_or_else(|| e.message().to_string());
    let one = orca_shared::exit::one_line(&text);
    if one.chars().count() > 240 {
        format!("{}...", one.chars().take(240).collect::<String>())
    } else {
        one
    }
}

fn to_chrono(t: opendal::raw::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(t.into_inner().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_config_then_aws_variables() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:8333/".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            _ => None,
        };
        let mut c = Config::default();
        let s = settings(&c, &env);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert!(s.path_style);
        c.s3.endpoint = Some("https://s3.example.com".into());
        c.s3.region = Some("auto".into());
        c.s3.path_style = Some(false);
        let s = settings(&c, &env);
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(s.region.as_deref(), Some("auto"));
        assert!(!s.path_style);
        let none = |_: &str| None;
        let s = settings(&Config::default(), &none);
        assert_eq!(s.endpoint, None);
        assert!(!s.path_style, "AWS itself: virtual-hosted addressing");
    }

    #[test]
    fn the_region_of_a_profile_comes_from_the_shared_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "[default]\nregion = eu-central-1\n\n[profile  team ]\noutput=json\nregion=ap-south-1\n",
        )
        .unwrap();
        let file = cfg.to_str().unwrap().to_string();
        let env = |k: &str| match k {
            "AWS_CONFIG_FILE" => Some(file.clone()),
            "AWS_PROFILE" => Some("team".into()),
            _ => None,
        };
        assert_eq!(
            settings(&Config::default(), &env).region.as_deref(),
            Some("ap-south-1")
        );
        let env2 = |k: &str| (k == "AWS_CONFIG_FILE").then(|| file.clone());
        assert_eq!(
            settings(&Config::default(), &env2).region.as_deref(),
            Some("eu-central-1")
        );
    }

    #[test]
    fn plain_http_is_flagged_only_off_this_machine() {
        assert!(!is_remote_http("http://127.0.0.1:8333"));
        assert!(!is_remote_http("http://localhost:9000/"));
        assert!(!is_remote_http("http://[::1]:9000"));
        assert!(!is_remote_http("https://nas.lan:9000"));
        assert!(is_remote_http("http://nas.lan:9000"));
        assert!(is_remote_http("HTTP://192.168.1.5"));
        assert!(is_remote_http("http://127.attacker.example:9000"));
        assert!(is_remote_http("http://127.0.0.1@nas.lan:9000"));
        assert!(!is_remote_http("http://127.0.0.2:9000"));
    }

    #[test]
    fn parts_stay_within_the_limit() {
        assert_eq!(part_size(0), PART);
        assert_eq!(part_size(1 << 30), PART);
        let big = 200u64 << 30;
        let p = part_size(big) as u64;
        assert!(big.div_ceil(p) <= 10_000);
        assert_eq!(p % (1 << 20), 0);
    }

    #[test]
    fn s3_codes_are_found() {
        assert_eq!(
            s3_code("... <Error><Code>NoSuchBucket</Code><Message>x</Message>").as_deref(),
            Some("NoSuchBucket")
        );
        assert_eq!(s3_code("connection refused"), None);
        let parsed = r#"S3Error { code: "SignatureDoesNotMatch", message: "The request signature we calculated does not match.", resource: "/b" }"#;
        assert_eq!(s3_code(parsed).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            s3_message(parsed).as_deref(),
            Some("The request signature we calculated does not match.")
        );
    }
}
