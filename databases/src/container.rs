//! Running a command inside a container over the Engine API (`docker exec`
//! without the docker CLI): its exit code and output, within a deadline.

use std::time::Duration;

use futures_util::StreamExt;
use orca_shared::engine::{self, EngineError, Mode};

/// A container commands can run in.
pub trait Container {
    /// Run `argv` inside it as `user` (the image's user when `None`) with
    /// `env` added, within `limit`: exit code, stdout, stderr. A command that
    /// takes longer is an answer too ([`TIMED_OUT`]).
    fn exec(
        &self,
        argv: &[String],
        env: &[String],
        user: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Exec>;

    /// Its HEALTHCHECK's status (`starting`, `healthy`, `unhealthy`), when
    /// the image has one.
    fn health(&self) -> anyhow::Result<Option<String>>;
}

/// The exit code [`exec_in`] reports for a command that ran out of time.
pub const TIMED_OUT: i64 = -3;

/// What a command run inside a container did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exec {
    /// Its exit code (126/127: it could not be run).
    pub code: i64,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Exec {
    /// stdout and stderr on one line, for messages.
    pub fn said(&self) -> String {
        let both = format!("{} {}", self.stderr.trim(), self.stdout.trim());
        let one = orca_shared::exit::one_line(&both);
        if one.chars().count() > 600 {
            format!("{}...", one.chars().take(600).collect::<String>())
        } else {
            one
        }
    }
}

/// An exec of `argv` with `env` added, as `user`, its output attached (and
/// its stdin, for a held session).
fn exec_config(
    argv: &[String],
    env: &[String],
    user: Option<&str>,
    stdin: bool,
) -> bollard::models::ExecConfig {
    bollard::models::ExecConfig {
        attach_stdin: stdin.then_some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(argv.to_vec()),
        env: Some(env.to_vec()),
        user: user.map(String::from),
        ..Default::default()
    }
}

/// Run `argv` in container `id` (see [`Container::exec`]); `container`
/// names it in errors ("the drill's database container").
pub fn exec_in(
    id: &str,
    container: &str,
    argv: &[String],
    env: &[String],
    user: Option<&str>,
    limit: Duration,
) -> anyhow::Result<Exec> {
    let e = engine::engine()?;
    let docker = e.docker().clone();
    let config = exec_config(argv, env, user, false);
    let what = argv.first().cloned().unwrap_or_default();
    let r = e.call(limit, Mode::Interruptible, async {
        let created = docker.create_exec(id, config).await?;
        let mut out = Exec::default();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&created.id, None).await?
        {
            while let Some(item) = output.next().await {
                match item? {
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => out
                        .stdout
                        .push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        let inspected = docker.inspect_exec(&created.id).await?;
        out.code = inspected.exit_code.unwrap_or(-1);
        Ok(out)
    });
    match r {
        Ok(out) => Ok(out),
        Err(EngineError::Timeout(_)) => Ok(Exec {
            code: TIMED_OUT,
            stdout: String::new(),
            stderr: format!("{what}: no answer within {} s", limit.as_secs()),
        }),
        Err(err) => Err(err.into_error(&format!("run {what} in {container}"))),
    }
}

/// What a held session ([`Session`]) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A line of its standard output.
    Line(String),
    /// Text on its standard error.
    Stderr(String),
    /// The process ended (its exit code when the engine tells it).
    Ended(Option<i64>),
    /// The link to it failed (the engine connection cut...).
    Lost(String),
}

/// A process in a container held open over the Engine API, its stdin the
/// link to orca: a line `alive` every [`HEARTBEAT`], whatever else orca
/// writes, and end-of-file when the session is dropped (or when this
/// process dies, since the connection closes with it). The process reads
/// that link to know orca is still there.
pub struct Session {
    input: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    events: std::sync::mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

/// How often a held session tells its process that orca is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

impl Session {
    /// Start `argv` in container `id` with stdin attached (see
    /// [`Container::exec`] for `env` and `user`); `limit` bounds the start.
    pub fn start(
        id: &str,
        argv: &[String],
        env: &[String],
        user: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Session> {
        use tokio::io::AsyncWriteExt;
        let e = engine::engine()?;
        let docker = e.docker().clone();
        let config = exec_config(argv, env, user, true);
        let what = argv.first().cloned().unwrap_or_default();
        let started = e
            .call(limit, Mode::Cleanup, async {
                let created = docker.create_exec(id, config).await?;
                let started = docker.start_exec(&created.id, None).await?;
                Ok((created.id, started))
            })
            .map_err(|err| err.into_error(&format!("run {what} in the database container")))?;
        let (exec_id, started) = started;
        let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            anyhow::bail!("Docker did not attach to {what} in the database container");
        };
        let (in_tx, mut in_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let (ev_tx, events) = std::sync::mpsc::channel();
        let task = engine::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT);
            let mut open = true;
            let mut pending = String::new();
            loop {
                tokio::select! {
                    item = output.next() => match item {
                        Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                            let _ = ev_tx.send(Event::Stderr(String::from_utf8_lossy(&message).into_owned()));
                        }
                        Some(Ok(other)) => {
                            pending.push_str(&String::from_utf8_lossy(&other.into_bytes()));
                            while let Some(i) = pending.find('\n') {
                                let line = pending[..i].trim_end_matches('\r').to_string();
                                pending.drain(..=i);
                                let _ = ev_tx.send(Event::Line(line));
                            }
                        }
                        Some(Err(err)) => {
                            let _ = ev_tx.send(Event::Lost(err.to_string()));
                            return;
                        }
                        None => break,
                    },
                    msg = in_rx.recv(), if open => match msg {
                        Some(bytes) => {
                            if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                                open = false;
                            }
                        }
                        None => {
                            let _ = input.shutdown().await;
                            open = false;
                        }
                    },
                    _ = beat.tick(), if open => {
                        if input.write_all(b"alive\n").await.is_err() || input.flush().await.is_err() {
                            open = false;
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let _ = ev_tx.send(Event::Line(pending));
            }
            let code = docker
                .inspect_exec(&exec_id)
                .await
                .ok()
                .and_then(|i| i.exit_code);
            let _ = ev_tx.send(Event::Ended(code));
        });
        Ok(Session {
            input: Some(in_tx),
            events,
            task,
        })
    }

    /// Write a line to the process.
    pub fn send(&self, line: &str) {
        if let Some(tx) = &self.input {
            let _ = tx.send(format!("{line}\n").into_bytes());
        }
    }

    /// Close the process's stdin: it sees end-of-file.
    pub fn close(&mut self) {
        self.input = None;
    }

    /// The next event within `limit` (`None`: nothing came).
    pub fn next(&self, limit: Duration) -> Option<Event> {
        match self.events.recv_timeout(limit) {
            Ok(ev) => Some(ev),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Some(Event::Lost("the session ended".into()))
            }
        }
    }

    /// An event already there, without waiting.
    pub fn poll(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.input = None;
        self.task.abort();
    }
}
