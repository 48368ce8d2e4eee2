//! The one way orca talks to Docker: the Engine API through `bollard`, on
//! every platform (Unix sockets, Windows named pipes, TCP with or without TLS;
//! `ssh://` hosts through `docker system dial-stdio`).
//!
//! The tools are synchronous; bollard is async. One small multi-threaded tokio
//! runtime (one worker) runs the requests and the archive streams. Every call
//! goes through [`Engine::call`], which gives it a deadline sized to the
//! operation and, unless it is cleanup work, makes it end at once on Ctrl-C:
//! nothing can hang on an engine that accepts and never answers.
//!
//! The endpoint is resolved as the docker CLI resolves it ([`endpoint`]); the
//! API version is negotiated on the first call.

pub mod endpoint;
mod stream;
mod transport;

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bollard::Docker;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

pub use endpoint::{Address, Endpoint};
pub use stream::{ArchiveReader, ArchiveWriter, EngineIoError, engine_error_of};

use crate::exit::{ErrorKind, OrcaError};
use crate::interrupt;

/// The oldest Engine API orca speaks (Docker 17.06).
const MIN_API: (usize, usize) = (1, 30);

/// How long engine operations may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// An ordinary request, the response head of a stream, and the longest
    /// silence inside a stream (`engine_timeout_seconds`).
    pub request: Duration,
    /// How long `docker stop` lets a container shut down (`stop_timeout_seconds`).
    pub stop_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(60),
            stop_grace: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// A stop: the grace period plus a request's time.
    pub fn stop(&self) -> Duration {
        self.stop_grace + self.request
    }

    /// Work that runs inside a container (emptying a volume): long, but bounded.
    pub fn long(&self) -> Duration {
        (self.request * 10).max(Duration::from_secs(600))
    }
}

static TIMEOUTS: RwLock<Option<Timeouts>> = RwLock::new(None);

/// Set the deadlines from the configuration (once, in `main`).
pub fn configure(timeouts: Timeouts) {
    if let Ok(mut t) = TIMEOUTS.write() {
        *t = Some(timeouts);
    }
}

/// The deadlines in effect.
pub fn timeouts() -> Timeouts {
    TIMEOUTS.read().ok().and_then(|t| *t).unwrap_or_default()
}

/// Whether a call ends at once on Ctrl-C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The main work: an interrupt cancels it within moments.
    Interruptible,
    /// Cleanup (remove a helper, start a container again, a rollback): runs to
    /// its deadline even after Ctrl-C.
    Cleanup,
}

/// What went wrong talking to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The engine answered with an error status.
    Api {
        /// HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// No connection could be made.
    Unreachable(String),
    /// No answer within the deadline.
    Timeout(Duration),
    /// Ctrl-C.
    Interrupted,
    /// Anything else (a broken stream, a bad reply).
    Other(String),
}

impl EngineError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// An error for the user: what we were doing (`what`), the cause, the next step.
    pub fn into_error(self, what: &str) -> anyhow::Error {
        let endpoint = current_endpoint_text();
        match self {
            EngineError::Api { status, message } => {
                let message = crate::exit::one_line(&message);
                if message.to_ascii_lowercase().contains("no space left on device") {
                    return OrcaError::new(
                        ErrorKind::NoSpace,
                        format!(
                            "Docker could not {what}: {message} (HTTP {status}): the engine's disk is full; free space there (`docker system df` shows what uses it; on Docker Desktop, raise the disk image size in Settings > Resources)"
                        ),
                    )
                    .into();
                }
                OrcaError::new(
                    ErrorKind::Failure,
                    format!("Docker could not {what}: {message} (HTTP {status})"),
                )
                .into()
            }
            EngineError::Unreachable(detail) => unreachable_error(&endpoint, &detail),
            EngineError::Timeout(d) => OrcaError::new(
                ErrorKind::DockerUnavailable,
                format!(
                    "Docker at {endpoint} did not {what} within {} s: the engine seems stuck; {} (or raise engine_timeout_seconds in config)",
                    d.as_secs(),
                    restart_hint()
                ),
            )
            .into(),
            EngineError::Interrupted => OrcaError::new(
                ErrorKind::Interrupted,
                format!("interrupted while Docker was asked to {what}"),
            )
            .into(),
            EngineError::Other(detail) => OrcaError::new(
                ErrorKind::Failure,
                format!("Docker could not {what}: {}", crate::exit::one_line(&detail)),
            )
            .into(),
        }
    }
}

/// What to start so that Docker answers, on this platform.
pub fn start_hint() -> &'static str {
    if cfg!(any(windows, target_os = "macos")) {
        "start Docker Desktop and wait until it says the engine is running, then try again"
    } else {
        "start the Docker engine (`sudo systemctl start docker`, or Docker Desktop), then try again"
    }
}

fn restart_hint() -> &'static str {
    if cfg!(any(windows, target_os = "macos")) {
        "restart Docker Desktop"
    } else {
        "restart the Docker engine (`sudo systemctl restart docker`)"
    }
}

fn unreachable_error(endpoint: &str, detail: &str) -> anyhow::Error {
    let lower = detail.to_lowercase();
    let local = CURRENT
        .get()
        .and_then(|m| m.lock().ok().map(|e| e.as_ref().map(|e| e.is_local())))
        .flatten()
        .unwrap_or(true);
    let from_docker_host = CURRENT
        .get()
        .and_then(|m| {
            m.lock()
                .ok()
                .map(|e| e.as_ref().is_some_and(|e| e.from_docker_host))
        })
        .unwrap_or(false);
    let message = if from_docker_host
        && !(lower.contains("permission denied") || lower.contains("access is denied"))
    {
        format!(
            "Docker is not reachable at {endpoint} ({detail}): DOCKER_HOST points there; check it, or unset DOCKER_HOST to use the docker CLI's current context{}",
            if local {
                format!("; if it is right, {}", start_hint())
            } else {
                String::new()
            }
        )
    } else if lower.contains("permission denied") || lower.contains("access is denied") {
        format!(
            "Docker at {endpoint} is not reachable: permission denied ({detail}); {}",
            if cfg!(windows) {
                "run from an account in the 'docker-users' group (Docker Desktop adds you on install; log out and in again)"
            } else {
                "add your user to the 'docker' group (then log in again), or run with the rights Docker needs"
            }
        )
    } else if local {
        format!(
            "Docker is not running or not reachable at {endpoint} ({detail}): {}",
            start_hint()
        )
    } else {
        format!(
            "Docker at {endpoint} is not reachable ({detail}): check that the engine there is running and that this machine can reach it"
        )
    };
    OrcaError::new(ErrorKind::DockerUnavailable, message).into()
}

/// Turn bollard's error into ours.
fn classify(e: bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Api {
            status: status_code,
            message,
        },
        B::RequestTimeoutError => EngineError::Timeout(timeouts().request),
        B::SocketNotFoundError(path) => EngineError::Unreachable(format!("no socket at {path}")),
        B::HyperLegacyError { err } if err.is_connect() => {
            EngineError::Unreachable(source_text(&err))
        }
        B::IOError { err } if is_connect_io(&err) => EngineError::Unreachable(err.to_string()),
        B::HyperResponseError { err } if connection_broke(&err) => EngineError::Unreachable(
            format!("the connection to Docker broke: {}", source_text(&err)),
        ),
        B::HyperLegacyError { err } if connection_broke(&err) => EngineError::Unreachable(format!(
            "the connection to Docker broke: {}",
            source_text(&err)
        )),
        B::DockerStreamError { error } => EngineError::Other(error),
        other => EngineError::Other(source_text(&other)),
    }
}

/// A reply cut off: the engine went away (or a proxy between us dropped us).
fn connection_broke(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

fn is_connect_io(err: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        err.kind(),
        K::NotFound | K::ConnectionRefused | K::PermissionDenied | K::AddrNotAvailable
    )
}

/// An error and its causes on one line, most specific last.
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The runtime every engine call runs on.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("orca-engine")
            .enable_all()
            .build()
            .expect("the engine runtime starts (threads and timers)")
    })
}

/// Run `fut` in the background on the engine's runtime: a session held open
/// with a process in a container (its reader, writer and heartbeat).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut)
}

/// Cancelled on the first Ctrl-C; interruptible calls watch it.
fn cancel_token() -> &'static CancellationToken {
    interrupt::cancel_token()
}

/// A connected engine.
pub struct Engine {
    docker: Docker,
    endpoint: Endpoint,
    server_version: String,
    server_platform: (String, String),
    api_version: String,
}

static CURRENT: OnceLock<Mutex<Option<Arc<EngineInfo>>>> = OnceLock::new();

/// What messages need to know of the connected engine.
struct EngineInfo {
    text: String,
    local: bool,
    /// Chosen by `DOCKER_HOST`: a host nothing answers on is that
    /// variable's doing, not a stopped engine.
    from_docker_host: bool,
}

impl EngineInfo {
    fn is_local(&self) -> bool {
        self.local
    }
}

fn current_endpoint_text() -> String {
    CURRENT
        .get()
        .and_then(|m| {
            m.lock()
                .ok()
                .and_then(|e| e.as_ref().map(|e| e.text.clone()))
        })
        .unwrap_or_else(|| "the configured endpoint".into())
}

fn remember_endpoint(ep: &Endpoint) {
    let info = Arc::new(EngineInfo {
        text: crate::redact::urls(&ep.to_string()),
        local: ep.is_local(),
        from_docker_host: ep.source == endpoint::Source::DockerHost,
    });
    if let Ok(mut slot) = CURRENT.get_or_init(|| Mutex::new(None)).lock() {
        *slot = Some(info);
    }
}

/// Set when connecting ran out of time: the message, for every later call.
static STUCK: OnceLock<String> = OnceLock::new();

/// The error of a failed connection step; a deadline that ran out is
/// remembered (see [`engine`]).
fn stuck(e: EngineError, what: &str) -> anyhow::Error {
    let timed_out = matches!(e, EngineError::Timeout(_));
    let err = e.into_error(what);
    if timed_out {
        let _ = STUCK.set(format!("{err:#}"));
    }
    err
}

/// The engine, connected on first use (and again after a failed attempt,
/// unless it did not answer in time).
pub fn engine() -> anyhow::Result<Arc<Engine>> {
    static ENGINE: Mutex<Option<Arc<Engine>>> = Mutex::new(None);
    let mut slot = ENGINE
        .lock()
        .map_err(|_| crate::err!(Failure, "the engine connection is poisoned"))?;
    if let Some(e) = slot.as_ref() {
        return Ok(e.clone());
    }
    // An engine that did not answer within the deadline is not asked again
    // by this process: each later call would wait the whole deadline once
    // more, and the run would fail after a multiple of what it says.
    if let Some(msg) = STUCK.get() {
        crate::fail!(DockerUnavailable, "{msg}");
    }
    let engine = Arc::new(Engine::connect(endpoint::resolve()?)?);
    *slot = Some(engine.clone());
    Ok(engine)
}

impl Engine {
    /// Connect to `endpoint` and negotiate the API version.
    pub fn connect(endpoint: Endpoint) -> anyhow::Result<Engine> {
        remember_endpoint(&endpoint);
        // bollard's own per-request timeout would also cut long streams and
        // uploads: our deadlines (Engine::call) replace it.
        const NO_LIMIT: u64 = 365 * 24 * 3600;
        let version = bollard::API_DEFAULT_VERSION;
        let via_cli = std::env::var("ORCA_DOCKER_VIA_CLI").is_ok_and(|v| v == "1");
        let docker = if via_cli {
            transport::dial_stdio(&endpoint.host, NO_LIMIT, version)
        } else {
            match &endpoint.address {
                Address::Unix(path) => {
                    let p = path.to_str().ok_or_else(|| {
                        crate::err!(
                            DockerUnavailable,
                            "the Docker socket path {} is not UTF-8",
                            path.display()
                        )
                    })?;
                    connect_unix(p, NO_LIMIT, version)
                }
                Address::NamedPipe(pipe) => connect_pipe(pipe, NO_LIMIT, version),
                Address::Tcp {
                    host_port,
                    tls: None,
                } => Docker::connect_with_http(&format!("tcp://{host_port}"), NO_LIMIT, version)
                    .map_err(|e| classify(e).into_error("connect")),
                Address::Tcp {
                    host_port,
                    tls: Some(tls),
                } => transport::tls(host_port, tls, NO_LIMIT, version),
                Address::Ssh(url) => transport::dial_stdio(url, NO_LIMIT, version),
            }
        }?;
        let mut engine = Engine {
            docker,
            endpoint,
            server_version: String::new(),
            server_platform: (String::new(), String::new()),
            api_version: String::new(),
        };
        let limit = timeouts().request;
        let docker = engine.docker.clone();
        let negotiated = engine
            .call(limit, Mode::Interruptible, docker.negotiate_version())
            .map_err(|e| stuck(e, "tell its API version"))?;
        let v = negotiated.client_version();
        if (v.major_version, v.minor_version) < MIN_API {
            crate::fail!(
                DockerUnavailable,
                "the Docker engine at {} speaks API {}.{}, older than the {}.{} orca needs: update Docker",
                engine.endpoint,
                v.major_version,
                v.minor_version,
                MIN_API.0,
                MIN_API.1
            );
        }
        engine.api_version = format!("{}.{}", v.major_version, v.minor_version);
        engine.docker = negotiated;
        let docker = engine.docker.clone();
        let info = engine
            .call(limit, Mode::Interruptible, docker.version())
            .map_err(|e| stuck(e, "tell its version"))?;
        engine.server_version = info.version.unwrap_or_default();
        engine.server_platform = (info.os.unwrap_or_default(), info.arch.unwrap_or_default());
        Ok(engine)
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The engine's version ("28.2.2").
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The engine's OS and architecture as Go names them ("linux", "amd64").
    pub fn server_platform(&self) -> (&str, &str) {
        (&self.server_platform.0, &self.server_platform.1)
    }

    /// The negotiated API version ("1.41").
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Run one request to completion within `limit`; an interruptible call
    /// also ends when Ctrl-C arrives.
    pub fn call<T>(
        &self,
        limit: Duration,
        mode: Mode,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        block_on(limit, mode, async move { fut.await.map_err(classify) })
    }
}

/// Block on `fut` with a deadline and, for interruptible work, Ctrl-C.
pub(crate) fn block_on<T>(
    limit: Duration,
    mode: Mode,
    fut: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    let token = cancel_token();
    let mode = if interrupt::in_critical() {
        Mode::Cleanup
    } else {
        mode
    };
    if mode == Mode::Interruptible && token.is_cancelled() {
        return Err(EngineError::Interrupted);
    }
    runtime().block_on(async move {
        tokio::select! {
            biased;
            _ = token.cancelled(), if mode == Mode::Interruptible => Err(EngineError::Interrupted),
            r = tokio::time::timeout(limit, fut) => match r {
                Ok(v) => v,
                Err(_) => Err(EngineError::Timeout(limit)),
            },
        }
    })
}

#[cfg(unix)]
fn connect_unix(
    path: &str,
    limit: u64,
    version: &bollard::ClientVersion,
) -> anyhow::Result<Docker> {
    Docker::connect_with_unix(path, limit, version).map_err(|e| classify(e).into_error("connect"))
}

#[cfg(not(unix))]
fn connect_unix(
    path: &str,
    _limit: u64,
    _version: &bollard::ClientVersion,
) -> anyhow::Result<Docker> {
    crate::fail!(
        DockerUnavailable,
        "the Docker host unix://{path} is a Unix socket, which this platform cannot open: use npipe:// or tcp://"
    )
}

#[cfg(windows)]
fn connect_pipe(
    pipe: &str,
    limit: u64,
    version: &bollard::ClientVersion,
) -> anyhow::Result<Docker> {
    Docker::connect_with_named_pipe(pipe, limit, version)
        .map_err(|e| classify(e).into_error("connect"))
}

#[cfg(not(windows))]
fn connect_pipe(
    pipe: &str,
    _limit: u64,
    _version: &bollard::ClientVersion,
) -> anyhow::Result<Docker> {
    crate::fail!(
        DockerUnavailable,
        "the Docker host {pipe} is a Windows named pipe, which this platform cannot open: use unix:// or tcp://"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::kind_of;

    #[test]
    fn deadlines_end_calls_that_never_answer() {
        let t = std::time::Instant::now();
        let r: Result<(), EngineError> = block_on(
            Duration::from_millis(200),
            Mode::Cleanup,
            std::future::pending(),
        );
        assert_eq!(r, Err(EngineError::Timeout(Duration::from_millis(200))));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn errors_are_classified_for_users() {
        let e = EngineError::Unreachable("no socket at /x.sock".into()).into_error("list volumes");
        assert_eq!(kind_of(&e), ErrorKind::DockerUnavailable);
        assert!(e.to_string().contains("start"), "{e}");
        let e = EngineError::Timeout(Duration::from_secs(7)).into_error("stop container 'sql'");
        assert_eq!(kind_of(&e), ErrorKind::DockerUnavailable);
        assert!(e.to_string().contains("within 7 s"), "{e}");
        assert!(e.to_string().contains("engine_timeout_seconds"), "{e}");
        let e = EngineError::Api {
            status: 500,
            message: "boom\nagain".into(),
        }
        .into_error("create a container");
        assert_eq!(kind_of(&e), ErrorKind::Failure);
        assert_eq!(
            e.to_string(),
            "Docker could not create a container: boom again (HTTP 500)"
        );
        let e = EngineError::Unreachable("Permission denied (os error 13)".into()).into_error("x");
        assert!(e.to_string().contains("group"), "{e}");
    }

    #[test]
    fn stop_deadlines_include_the_grace_period() {
        let t = Timeouts {
            request: Duration::from_secs(5),
            stop_grace: Duration::from_secs(30),
        };
        assert_eq!(t.stop(), Duration::from_secs(35));
        assert!(t.long() >= Duration::from_secs(600));
    }
}
