//! A stand-in for faults the real engine cannot show on demand: a Unix socket
//! in front of the real engine that forwards every request, except those a rule
//! names, which it answers late, never, cut short, or with a canned reply.
//!
//! Each request the engine client makes opens its own connection (bollard
//! keeps no idle connections), so a rule looks at the request line of each
//! connection and then either forwards bytes both ways untouched or plays its
//! fault. The HTTP here is only ever the first line and the end of the head;
//! everything else is forwarded as bytes.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What to do with a matching request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward it untouched.
    Forward,
    /// Accept and never answer (nothing reaches the engine).
    Hang,
    /// Forward it, so the engine acts on it, but never pass the answer back.
    ForwardThenHang,
    /// Forward the head and this many bytes of the request body, then close
    /// both sides: the engine dies mid-upload.
    CutRequest(usize),
    /// Forward the request and this many bytes of the response, then close:
    /// the engine dies mid-download.
    CutResponse(usize),
    /// Answer with these bytes (a whole HTTP response) and close.
    Respond(Vec<u8>),
}

struct Rule {
    method: String,
    contains: String,
    action: Action,
    times: Option<usize>,
}

/// The proxy; stops (and drops every held connection) when dropped.
pub struct EngineProxy {
    _dir: tempfile::TempDir,
    path: PathBuf,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
    held: Arc<Mutex<Vec<UnixStream>>>,
    stop: Arc<AtomicBool>,
}

impl EngineProxy {
    /// Start a proxy in front of the engine socket `upstream`.
    pub fn start(upstream: &Path) -> EngineProxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let held: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Shared {
            upstream: upstream.to_path_buf(),
            rules: Arc::clone(&rules),
            seen: Arc::clone(&seen),
            held: Arc::clone(&held),
        };
        let stop_a = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop_a.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let ctx = ctx.clone();
                thread::spawn(move || handle(conn, ctx));
            }
        });
        EngineProxy {
            _dir: dir,
            path,
            rules,
            seen,
            held,
            stop,
        }
    }

    /// In front of the default engine socket.
    pub fn in_front_of_docker() -> EngineProxy {
        Self::start(Path::new("/var/run/docker.sock"))
    }

    /// `unix://...` for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Apply `action` to requests whose method is `method` and whose request
    /// target contains `contains`, for the next `times` of them (`None`: all).
    pub fn rule(&self, method: &str, contains: &str, action: Action, times: Option<usize>) {
        self.rules.lock().expect("rules").push(Rule {
            method: method.into(),
            contains: contains.into(),
            action,
            times,
        });
    }

    /// Cut every connection open through the proxy now (the engine
    /// connection lost: a cable pulled, a VPN gone).
    pub fn cut(&self) {
        if let Ok(mut h) = self.held.lock() {
            for s in h.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path); // wake the acceptor
        if let Ok(mut h) = self.held.lock() {
            for s in h.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[derive(Clone)]
struct Shared {
    upstream: PathBuf,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
    held: Arc<Mutex<Vec<UnixStream>>>,
}

fn read_head(conn: &mut UnixStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((buf, rest));
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    }
}

fn pick(ctx: &Shared, line: &str) -> Action {
    let mut rules = ctx.rules.lock().expect("rules");
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    for rule in rules.iter_mut() {
        if rule.method == method && target.contains(&rule.contains) && rule.times != Some(0) {
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            return rule.action.clone();
        }
    }
    Action::Forward
}

fn handle(mut client: UnixStream, ctx: Shared) {
    let Some((head, early_body)) = read_head(&mut client) else {
        return;
    };
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    ctx.seen.lock().expect("seen").push(line.clone());
    let action = pick(&ctx, &line);
    let hold = |s: &UnixStream| {
        if let Ok(c) = s.try_clone() {
            ctx.held.lock().expect("held").push(c);
        }
    };
    match action {
        Action::Hang => hold(&client),
        Action::Respond(bytes) => {
            let _ = client.write_all(&bytes);
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        Action::Forward
        | Action::ForwardThenHang
        | Action::CutRequest(_)
        | Action::CutResponse(_) => {
            let Ok(mut up) = UnixStream::connect(&ctx.upstream) else {
                return;
            };
            // Every connection can be cut (see EngineProxy::cut).
            hold(&client);
            hold(&up);
            if up.write_all(&head).is_err() {
                return;
            }
            let body_limit = match action {
                Action::CutRequest(n) => Some(n),
                _ => None,
            };
            // client -> engine
            let (Ok(mut c_read), Ok(mut up_write)) = (client.try_clone(), up.try_clone()) else {
                return;
            };
            let to_engine = thread::spawn(move || {
                let mut sent = 0usize;
                let mut pending = early_body;
                loop {
                    if !pending.is_empty() {
                        let take = match body_limit {
                            Some(limit) => pending.len().min(limit.saturating_sub(sent)),
                            None => pending.len(),
                        };
                        if up_write.write_all(&pending[..take]).is_err() {
                            return;
                        }
                        sent += take;
                        if body_limit.is_some_and(|l| sent >= l) {
                            // The engine "dies": both sides go.
                            let _ = up_write.shutdown(std::net::Shutdown::Both);
                            let _ = c_read.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = up_write.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            pending = buf;
                        }
                    }
                }
            });
            // engine -> client
            match action {
                Action::ForwardThenHang => {
                    hold(&client);
                    let _ = std::io::copy(&mut up, &mut std::io::sink());
                }
                Action::CutResponse(limit) => {
                    let mut left = limit;
                    let mut buf = vec![0u8; 64 * 1024];
                    while left > 0 {
                        match up.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let n = n.min(left);
                                if client.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                left -= n;
                            }
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = up.shutdown(std::net::Shutdown::Both);
                }
                _ => {
                    let _ = std::io::copy(&mut up, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                }
            }
            let _ = to_engine.join();
        }
    }
}

/// A whole HTTP/1.1 response with a body and its length.
pub fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sleep in small steps until `cond` holds or `limit` passes; whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A loopback TCP listener that forwards every connection to a Unix socket:
/// the engine over `tcp://127.0.0.1:PORT` (what Wine and remote setups use).
pub struct TcpBridge {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl TcpBridge {
    /// Bridge 127.0.0.1:<free port> to the Unix socket `upstream`.
    pub fn start(upstream: &Path) -> TcpBridge {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_a = Arc::clone(&stop);
        let upstream = upstream.to_path_buf();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop_a.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut tcp) = conn else { continue };
                let Ok(mut up) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(mut tcp2), Ok(mut up2)) = (tcp.try_clone(), up.try_clone()) else {
                    continue;
                };
                thread::spawn(move || {
                    let _ = std::io::copy(&mut tcp2, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut up, &mut tcp);
                    let _ = tcp.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        TcpBridge { port, stop }
    }

    /// In front of the default engine socket.
    pub fn to_docker() -> TcpBridge {
        Self::start(Path::new("/var/run/docker.sock"))
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
