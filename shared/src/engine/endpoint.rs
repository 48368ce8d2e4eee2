//! Which Docker engine to talk to, resolved exactly as the docker CLI does.
//!
//! 1. `DOCKER_HOST` (TLS when `DOCKER_TLS_VERIFY` or `DOCKER_TLS` is set, with
//!    `ca.pem`, `cert.pem` and `key.pem` from `DOCKER_CERT_PATH`, else the CLI's
//!    config directory);
//! 2. else the context named by `DOCKER_CONTEXT`;
//! 3. else `currentContext` in `config.json` of the CLI's config directory
//!    (`DOCKER_CONFIG`, default `~/.docker`);
//! 4. else the platform default: `unix:///var/run/docker.sock`, or
//!    `npipe:////./pipe/docker_engine` on Windows.
//!
//! A context lives in `contexts/meta/<sha256 hex of its name>/meta.json`
//! (`Endpoints.docker.Host`, `SkipTLSVerify`) with its TLS files under
//! `contexts/tls/<same>/docker/`. The context `default` is never in the store:
//! it means steps 1 and 4. Docker Desktop's `desktop-linux` context is an
//! ordinary entry of that store (a named pipe on Windows, a socket under
//! `~/.docker/run` on macOS).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Where the engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A Windows named pipe, `\\.\pipe\NAME`.
    NamedPipe(String),
    /// `host:port` over TCP, plain or with TLS.
    Tcp {
        /// `host:port`.
        host_port: String,
        /// TLS settings; `None` is plain HTTP.
        tls: Option<Tls>,
    },
    /// An `ssh://` URL, dialled through the docker CLI (`docker system dial-stdio`).
    Ssh(String),
}

/// TLS files and whether to check the engine's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tls {
    /// CA certificate(s) the engine's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Accept any server certificate (`SkipTLSVerify`, `DOCKER_TLS` without verify).
    pub skip_verify: bool,
}

/// Where the endpoint came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `DOCKER_HOST` environment variable.
    DockerHost,
    /// A context from the store.
    Context {
        /// Its name.
        name: String,
        /// `DOCKER_CONTEXT`, or the config file naming it.
        chosen_by: String,
    },
    /// Nothing set: the platform default.
    Default,
}

/// The resolved endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The host URL as written (`unix:///var/run/docker.sock`, `tcp://...`).
    pub host: String,
    /// What to connect to.
    pub address: Address,
    /// Where it came from.
    pub source: Source,
}

impl Endpoint {
    /// Whether the engine is on this machine's default local endpoint kind
    /// (socket or pipe): the "start Docker" hint applies.
    pub fn is_local(&self) -> bool {
        matches!(self.address, Address::Unix(_) | Address::NamedPipe(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::DockerHost => write!(f, "{} (DOCKER_HOST)", self.host),
            Source::Context { name, chosen_by } => {
                write!(f, "{} (context '{name}' from {chosen_by})", self.host)
            }
            Source::Default => f.write_str(&self.host),
        }
    }
}

/// The default host of this platform.
pub const fn default_host() -> &'static str {
    if cfg!(windows) {
        "npipe:////./pipe/docker_engine"
    } else {
        "unix:///var/run/docker.sock"
    }
}

/// What resolution reads from the outside world, so tests can give their own.
pub trait Environment {
    /// An environment variable, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String>;
    /// The user's home directory.
    fn home(&self) -> Option<PathBuf>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn home(&self) -> Option<PathBuf> {
        let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        self.var(var).map(PathBuf::from)
    }
}

/// Resolve the endpoint from the process environment.
pub fn resolve() -> anyhow::Result<Endpoint> {
    resolve_with(&ProcessEnv)
}

/// The docker CLI's configuration directory (`None`: no home directory and
/// no `DOCKER_CONFIG`, as for a service without `HOME`).
pub fn config_dir(env: &dyn Environment) -> Option<PathBuf> {
    env.var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".docker")))
}

/// Resolve the endpoint from `env`.
pub fn resolve_with(env: &dyn Environment) -> anyhow::Result<Endpoint> {
    if let Some(host) = env.var("DOCKER_HOST") {
        let tls = host_tls(env)?;
        return Ok(Endpoint {
            address: parse_host(&host, tls, "DOCKER_HOST")?,
            host,
            source: Source::DockerHost,
        });
    }
    let (name, chosen_by) = match env.var("DOCKER_CONTEXT") {
        Some(name) => (name, "DOCKER_CONTEXT".to_string()),
        None => match current_context(env) {
            Some((name, file)) => (name, file.display().to_string()),
            None => return default_endpoint(),
        },
    };
    if name == "default" {
        return default_endpoint();
    }
    let Some(dir) = config_dir(env) else {
        crate::fail!(
            DockerUnavailable,
            "Docker context '{name}' (chosen by {chosen_by}) cannot be found: there is no home directory and no DOCKER_CONFIG (set DOCKER_CONFIG to the docker CLI's configuration directory, or DOCKER_HOST)"
        );
    };
    let (host, skip_verify) = read_context(&dir, &name, &chosen_by)?;
    let tls_dir = dir
        .join("contexts")
        .join("tls")
        .join(context_id(&name))
        .join("docker");
    let existing = |f: &str| {
        let p = tls_dir.join(f);
        p.is_file().then_some(p)
    };
    let files = Tls {
        ca: existing("ca.pem"),
        cert: existing("cert.pem"),
        key: existing("key.pem"),
        skip_verify,
    };
    let has_tls = files.ca.is_some() || files.cert.is_some() || skip_verify;
    let what = format!("context '{name}'");
    Ok(Endpoint {
        address: parse_host(&host, has_tls.then_some(files), &what)?,
        host,
        source: Source::Context { name, chosen_by },
    })
}

fn default_endpoint() -> anyhow::Result<Endpoint> {
    let host = default_host().to_string();
    Ok(Endpoint {
        address: parse_host(&host, None, "the default")?,
        host,
        source: Source::Default,
    })
}

/// TLS for `DOCKER_HOST`: `DOCKER_TLS_VERIFY` (checked) or `DOCKER_TLS` (not checked).
fn host_tls(env: &dyn Environment) -> anyhow::Result<Option<Tls>> {
    let verify = env.var("DOCKER_TLS_VERIFY").is_some();
    let tls = env.var("DOCKER_TLS").is_some();
    if !verify && !tls {
        return Ok(None);
    }
    let dir = match env.var("DOCKER_CERT_PATH") {
        Some(d) => PathBuf::from(d),
        None => config_dir(env).unwrap_or_default(),
    };
    let existing = |f: &str| {
        let p = dir.join(f);
        p.is_file().then_some(p)
    };
    let files = Tls {
        ca: existing("ca.pem"),
        cert: existing("cert.pem"),
        key: existing("key.pem"),
        skip_verify: !verify,
    };
    if verify && files.ca.is_none() {
        crate::fail!(
            DockerUnavailable,
            "DOCKER_TLS_VERIFY is set but {} does not exist (set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem)",
            dir.join("ca.pem").display()
        );
    }
    Ok(Some(files))
}

#[derive(Deserialize)]
struct CliConfig {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// `currentContext` of the CLI's `config.json`, with the file it came from.
/// A config file the CLI cannot read is a warning and means defaults, as for
/// the CLI.
fn current_context(env: &dyn Environment) -> Option<(String, PathBuf)> {
    let file = config_dir(env)?.join("config.json");
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            eprintln!(
                "warning: cannot read the docker CLI's configuration {} ({e}); using the default Docker endpoint",
                file.display()
            );
            return None;
        }
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<CliConfig>(&text) {
        Ok(config) => config
            .current_context
            .filter(|c| !c.is_empty())
            .map(|c| (c, file)),
        Err(e) => {
            eprintln!(
                "warning: the docker CLI's configuration {} is not valid JSON ({e}); using the default Docker endpoint",
                file.display()
            );
            None
        }
    }
}

/// The store's directory name for a context: the SHA-256 of its name, in hex.
pub fn context_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Endpoints", default)]
    endpoints: std::collections::BTreeMap<String, MetaEndpoint>,
}

#[derive(Deserialize)]
struct MetaEndpoint {
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// A context's docker host and `SkipTLSVerify`.
fn read_context(dir: &Path, name: &str, chosen_by: &str) -> anyhow::Result<(String, bool)> {
    let meta = dir
        .join("contexts")
        .join("meta")
        .join(context_id(name))
        .join("meta.json");
    let text = match std::fs::read(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::fail!(
            DockerUnavailable,
            "Docker context '{name}' (chosen by {chosen_by}) does not exist in {}: list contexts with `docker context ls`, then {}",
            dir.join("contexts").display(),
            if chosen_by == "DOCKER_CONTEXT" {
                "set DOCKER_CONTEXT to one of them, or unset it"
            } else {
                "pick one with `docker context use NAME`"
            }
        ),
        Err(e) => crate::fail!(
            DockerUnavailable,
            "cannot read Docker context '{name}' ({}): {e}",
            meta.display()
        ),
    };
    let meta_doc: Meta = serde_json::from_slice(&text).map_err(|e| {
        crate::err!(
            DockerUnavailable,
            "Docker context '{name}' is damaged ({} is not valid JSON: {e}); re-create it with `docker context create`",
            meta.display()
        )
    })?;
    match meta_doc.endpoints.get("docker") {
        Some(ep) if !ep.host.is_empty() => Ok((ep.host.clone(), ep.skip_tls_verify)),
        _ => crate::fail!(
            DockerUnavailable,
            "Docker context '{name}' has no docker endpoint ({}); re-create it with `docker context create {name} --docker host=...`",
            meta.display()
        ),
    }
}

/// Parse a docker host URL; `what` names where it came from.
pub fn parse_host(host: &str, tls: Option<Tls>, what: &str) -> anyhow::Result<Address> {
    // A host that cannot be parsed is bad input (exit 2), not an engine
    // that is down; its credentials, if any, are never shown.
    let shown = crate::redact::urls(host);
    let bad = |why: &str| {
        crate::err!(
            Usage,
            "the Docker host '{shown}' of {what} is not usable: {why} (use unix://PATH, npipe:////./pipe/NAME, tcp://HOST:PORT or ssh://USER@HOST{})",
            if what == "DOCKER_HOST" {
                "; or unset DOCKER_HOST to use the current docker context"
            } else {
                ""
            }
        )
    };
    let Some((scheme, rest)) = host.split_once("://") else {
        return Err(bad("it has no scheme"));
    };
    // A password is never passed on: docker's ssh transport takes none (it
    // would go onto a command line), and the other schemes have no place
    // for one.
    // Everything before the last `@` is user information, whatever it holds
    // (a password may hold `/`); the host itself is not shown then.
    if let Some((userinfo, _)) = rest.rsplit_once('@')
        && (userinfo.contains(':') || scheme != "ssh")
    {
        crate::fail!(
            Usage,
            "the Docker host of {what} carries a user and password (the host is not shown, to keep them out of messages); Docker endpoints take none: use ssh://USER@HOST with an ssh key or agent, or TLS certificates for tcp://{}",
            if what == "DOCKER_HOST" {
                "; or unset DOCKER_HOST to use the current docker context"
            } else {
                ""
            }
        );
    }
    match scheme {
        "unix" => {
            if rest.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        }
        "npipe" => {
            // npipe:////./pipe/docker_engine -> \\.\pipe\docker_engine
            let path = rest.replace('/', "\\");
            if !path.to_ascii_lowercase().starts_with("\\\\.\\pipe\\") || path.len() <= 9 {
                return Err(bad("a named pipe looks like npipe:////./pipe/NAME"));
            }
            Ok(Address::NamedPipe(path))
        }
        "tcp" | "http" | "https" => {
            let hostport = rest.trim_end_matches('/');
            if hostport.contains('/') {
                return Err(bad("give HOST:PORT without a path"));
            }
            let tls = match scheme {
                "https" => Some(tls.unwrap_or_default()),
                "http" => None,
                _ => tls,
            };
            let default_port = if tls.is_some() { 2376 } else { 2375 };
            // As the CLI: an empty host is localhost, an empty port the default;
            // an IPv6 address needs brackets.
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let Some((addr, after)) = v6.split_once(']') else {
                    return Err(bad("an IPv6 address needs a closing ']'"));
                };
                let port = match after {
                    "" | ":" => "",
                    p => p
                        .strip_prefix(':')
                        .ok_or_else(|| bad("a port follows ']' after a ':'"))?,
                };
                (format!("[{addr}]"), port)
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, _)) if h.contains(':') => {
                        return Err(bad("write an IPv6 address in brackets: tcp://[::1]:2375"));
                    }
                    Some((h, p)) => (h.to_string(), p),
                    None => (hostport.to_string(), ""),
                }
            };
            let host = if host.is_empty() {
                "localhost".to_string()
            } else {
                host
            };
            let port: u16 = if port.is_empty() {
                default_port
            } else {
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad(&format!("'{port}' is not a port (1-65535)"))),
                }
            };
            Ok(Address::Tcp {
                host_port: format!("{host}:{port}"),
                tls,
            })
        }
        "ssh" => {
            if rest.is_empty() {
                return Err(bad("the ssh host is empty"));
            }
            Ok(Address::Ssh(host.to_string()))
        }
        "fd" => Err(bad(
            "fd:// (systemd socket activation) only works for the daemon",
        )),
        other => Err(bad(&format!("unknown scheme '{other}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ErrorKind, kind_of};
    use std::collections::HashMap;

    struct FakeEnv {
        vars: HashMap<&'static str, String>,
        home: PathBuf,
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned().filter(|v| !v.is_empty())
        }
        fn home(&self) -> Option<PathBuf> {
            Some(self.home.clone())
        }
    }

    fn env(home: &Path, vars: &[(&'static str, &str)]) -> FakeEnv {
        FakeEnv {
            vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            home: home.to_path_buf(),
        }
    }

    fn write_context(config: &Path, name: &str, host: &str, skip: bool) {
        let dir = config.join("contexts/meta").join(context_id(name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn context_ids_are_sha256_of_the_name() {
        // The id docker gives its own "desktop-linux" context.
        assert_eq!(
            context_id("desktop-linux"),
            "fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e"
        );
    }

    #[test]
    fn docker_host_wins_over_contexts() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(
            tmp.path(),
            &[
                ("DOCKER_HOST", "tcp://10.0.0.5:2375"),
                ("DOCKER_CONTEXT", "nope"),
            ],
        );
        let ep = resolve_with(&e).unwrap();
        assert_eq!(
            ep.address,
            Address::Tcp {
                host_port: "10.0.0.5:2375".into(),
                tls: None
            }
        );
        assert_eq!(ep.source, Source::DockerHost);
    }

    #[test]
    fn default_when_nothing_is_set() {
        let tmp = tempfile::tempdir().unwrap();
        let ep = resolve_with(&env(tmp.path(), &[])).unwrap();
        assert_eq!(ep.host, default_host());
        assert_eq!(ep.source, Source::Default);
    }

    #[test]
    fn desktop_linux_contexts_resolve_to_their_pipe_and_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join(".docker");
        write_context(
            &cfg,
            "desktop-linux",
            "npipe:////./pipe/dockerDesktopLinuxEngine",
            false,
        );
        std::fs::write(
            cfg.join("config.json"),
            r#"{"currentContext":"desktop-linux"}"#,
        )
        .unwrap();
        let ep = resolve_with(&env(tmp.path(), &[])).unwrap();
        assert_eq!(
            ep.address,
            Address::NamedPipe(r"\\.\pipe\dockerDesktopLinuxEngine".into())
        );
        assert!(matches!(ep.source, Source::Context { ref name, .. } if name == "desktop-linux"));

        let mac = tmp.path().join("mac");
        write_context(
            &mac,
            "desktop-linux",
            "unix:///Users/me/.docker/run/docker.sock",
            false,
        );
        let e = env(
            tmp.path(),
            &[
                ("DOCKER_CONFIG", mac.to_str().unwrap()),
                ("DOCKER_CONTEXT", "desktop-linux"),
            ],
        );
        assert_eq!(
            resolve_with(&e).unwrap().address,
            Address::Unix("/Users/me/.docker/run/docker.sock".into())
        );
    }

    #[test]
    fn context_tls_files_and_skip_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("cfg");
        write_context(&cfg, "remote", "tcp://example.org", true);
        let tls = cfg
            .join("contexts/tls")
            .join(context_id("remote"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "x").unwrap();
        let e = env(
            tmp.path(),
            &[
                ("DOCKER_CONFIG", cfg.to_str().unwrap()),
                ("DOCKER_CONTEXT", "remote"),
            ],
        );
        let Address::Tcp {
            host_port,
            tls: Some(t),
        } = resolve_with(&e).unwrap().address
        else {
            panic!("expected TLS");
        };
        assert_eq!(host_port, "example.org:2376");
        assert!(t.skip_verify);
        assert_eq!(t.ca, Some(tls.join("ca.pem")));
        assert_eq!(t.cert, None);
    }

    #[test]
    fn missing_and_damaged_contexts_are_exit_3_with_the_name() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(tmp.path(), &[("DOCKER_CONTEXT", "gone")]);
        let err = resolve_with(&e).unwrap_err();
        assert_eq!(kind_of(&err), ErrorKind::DockerUnavailable);
        let msg = err.to_string();
        assert!(
            msg.contains("'gone'") && msg.contains("DOCKER_CONTEXT"),
            "{msg}"
        );
        assert!(msg.contains("docker context ls"), "{msg}");

        // A config file the CLI cannot read means defaults (with a warning),
        // as for the CLI: damaged, or DOCKER_CONFIG naming a file.
        let cfg = tmp.path().join(".docker");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("config.json"), "{not json").unwrap();
        assert_eq!(
            resolve_with(&env(tmp.path(), &[])).unwrap().source,
            Source::Default
        );
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e = env(tmp.path(), &[("DOCKER_CONFIG", file.to_str().unwrap())]);
        assert_eq!(resolve_with(&e).unwrap().source, Source::Default);
    }

    #[test]
    fn the_default_context_name_means_the_default_endpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(tmp.path(), &[("DOCKER_CONTEXT", "default")]);
        assert_eq!(resolve_with(&e).unwrap().source, Source::Default);
    }

    #[test]
    fn docker_tls_verify_needs_a_ca_and_reads_cert_path() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(
            tmp.path(),
            &[
                ("DOCKER_HOST", "tcp://h:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", tmp.path().to_str().unwrap()),
            ],
        );
        assert_eq!(
            kind_of(&resolve_with(&e).unwrap_err()),
            ErrorKind::DockerUnavailable
        );
        std::fs::write(tmp.path().join("ca.pem"), "x").unwrap();
        std::fs::write(tmp.path().join("cert.pem"), "x").unwrap();
        std::fs::write(tmp.path().join("key.pem"), "x").unwrap();
        let Address::Tcp { tls: Some(t), .. } = resolve_with(&e).unwrap().address else {
            panic!("expected TLS");
        };
        assert!(!t.skip_verify);
        assert!(t.cert.is_some() && t.key.is_some());
    }

    #[test]
    fn a_bad_docker_host_is_a_usage_error_that_says_to_unset_it() {
        let tmp = tempfile::tempdir().unwrap();
        let e = env(tmp.path(), &[("DOCKER_HOST", "htp://user:hunter2@h:2375")]);
        let err = resolve_with(&e).unwrap_err();
        assert_eq!(kind_of(&err), ErrorKind::Usage);
        let msg = err.to_string();
        assert!(msg.contains("unset DOCKER_HOST"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn host_urls() {
        let ok = |h: &str| parse_host(h, None, "t").unwrap();
        assert_eq!(
            ok("unix:///run/d.sock"),
            Address::Unix("/run/d.sock".into())
        );
        assert_eq!(
            ok("npipe:////./pipe/docker_engine"),
            Address::NamedPipe(r"\\.\pipe\docker_engine".into())
        );
        assert_eq!(
            ok("tcp://[::1]:2375"),
            Address::Tcp {
                host_port: "[::1]:2375".into(),
                tls: None
            }
        );
        assert_eq!(
            ok("tcp://localhost"),
            Address::Tcp {
                host_port: "localhost:2375".into(),
                tls: None
            }
        );
        assert_eq!(ok("ssh://me@box"), Address::Ssh("ssh://me@box".into()));
        for with_password in [
            "ssh://me:Plain5ecret@box",
            "ssh://me:Plain/5ecret@box",
            "tcp://me:Plain5ecret@h:2375",
            "tcp://me:Pl\"ain5ecret@h:2375",
            "unix://me:Plain5ecret@/var/run/docker.sock",
        ] {
            let e = parse_host(with_password, None, "DOCKER_HOST").unwrap_err();
            assert_eq!(kind_of(&e), ErrorKind::Usage, "{with_password}");
            assert!(e.to_string().contains("password"), "{e}");
            assert!(!e.to_string().contains("Plain5ecret"), "{e}");
        }
        for bad in [
            "/var/run/docker.sock",
            "fd://",
            "ftp://x",
            "tcp://h:1/x",
            "npipe://x",
        ] {
            let e = parse_host(bad, None, "t").unwrap_err();
            assert_eq!(kind_of(&e), ErrorKind::Usage, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
