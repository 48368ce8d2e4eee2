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
    let config = bollard::models::ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(argv.to_vec()),
        env: Some(env.to_vec()),
        user: user.map(String::from),
        ..Default::default()
    };
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
