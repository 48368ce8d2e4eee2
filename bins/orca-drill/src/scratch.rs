//! The drill's throwaway parts in the engine: the scratch volume (restored by
//! orca-restore's code) and the database container started on it, with what
//! the drill asks of that container (start, state, logs, commands run inside).
//!
//! Both are named `orca-drill-<creator tag>-<nonce>` ([`Creator::tag`]): the
//! container also carries orca's helper labels, and a drill that was killed
//! leaves things a later drill recognises as its creator's and removes
//! ([`remove_stale`]). [`Scratch`] removes both on drop, whatever happened,
//! Ctrl-C included (inside a critical section, with cleanup deadlines).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters as q;
use futures_util::StreamExt;
use orca_databases::container::Container;
use orca_shared::creator::{Creator, Liveness, tag_liveness};
use orca_shared::docker::{self, HELPER_LABEL};
use orca_shared::engine::{self, EngineError, Mode};

/// Every scratch volume and drill container is named with this prefix.
pub const PREFIX: &str = "orca-drill-";
/// Label on drill containers: the scratch volume they run on.
pub const DRILL_LABEL: &str = "org.orca-backup.drill";

/// A name for this drill's volume and container.
pub fn new_name() -> String {
    format!("{PREFIX}{}-{}", Creator::current().tag(), docker::nonce())
}

/// The scratch volume and, once made, the container; removed on drop.
pub struct Scratch {
    tool: String,
    /// The scratch volume (and container name).
    pub name: String,
    container: Option<String>,
}

impl Scratch {
    /// Nothing made yet: the restore will create the volume.
    pub fn new(tool: &str) -> Scratch {
        Scratch {
            tool: tool.to_string(),
            name: new_name(),
            container: None,
        }
    }

    /// Create the database container on the scratch volume: `image` with
    /// `env`, the volume at `mount_point`, no network, never pulled.
    pub fn create_container(
        &mut self,
        image: &str,
        env: &[String],
        mount_point: &str,
    ) -> anyhow::Result<String> {
        let e = engine::engine()?;
        let docker = e.docker().clone();
        let mut labels: HashMap<String, String> = Creator::current().labels(&self.tool);
        labels.insert(HELPER_LABEL.into(), "true".into());
        labels.insert(DRILL_LABEL.into(), self.name.clone());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            env: Some(env.to_vec()),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    target: Some(mount_point.to_string()),
                    source: Some(self.name.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(false),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = q::CreateContainerOptions {
            name: Some(self.name.clone()),
            ..Default::default()
        };
        match e.call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.create_container(Some(options), body),
        ) {
            Ok(c) => {
                self.container = Some(c.id.clone());
                Ok(c.id)
            }
            Err(err) => {
                // Cut short, it may exist all the same: drop removes it by name.
                if err.status().is_none() {
                    self.container = Some(self.name.clone());
                    return Err(err.into_error(&format!(
                        "create the drill's database container from image '{image}'"
                    )));
                }
                Err(setup_error(err, image, mount_point))
            }
        }
    }

    /// Start the container (`image` with the volume at `mount_point`, for messages).
    pub fn start(&self, image: &str, mount_point: &str) -> anyhow::Result<()> {
        let id = self.id()?;
        let e = engine::engine()?;
        let docker = e.docker().clone();
        match e.call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.start_container(id, None::<q::StartContainerOptions>),
        ) {
            Ok(()) => Ok(()),
            Err(err) if err.status().is_some() => Err(setup_error(err, image, mount_point)),
            Err(err) => Err(err.into_error("start the drill's database container")),
        }
    }

    fn id(&self) -> anyhow::Result<&str> {
        self.container
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the drill's container was not created"))
    }

    fn inspect(&self) -> anyhow::Result<bollard::models::ContainerInspectResponse> {
        let id = self.id()?;
        let e = engine::engine()?;
        let docker = e.docker().clone();
        e.call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.inspect_container(id, None::<q::InspectContainerOptions>),
        )
        .map_err(|err| err.into_error("inspect the drill's database container"))
    }

    /// Whether it runs, its exit code when it stopped, and its health.
    pub fn state(&self) -> anyhow::Result<State> {
        let s = self.inspect()?.state.unwrap_or_default();
        Ok(State {
            running: s.running.unwrap_or(false),
            exit_code: s.exit_code,
            oom_killed: s.oom_killed.unwrap_or(false),
            health: s
                .health
                .and_then(|h| h.status)
                .map(|st| st.to_string())
                .filter(|st| !st.is_empty() && st != "none"),
        })
    }

    /// The last `lines` lines the container printed (its engine's own words).
    pub fn logs(&self, lines: usize) -> String {
        let Ok(id) = self.id() else {
            return String::new();
        };
        let Ok(e) = engine::engine() else {
            return String::new();
        };
        let docker = e.docker().clone();
        e.call(engine::timeouts().request, Mode::Cleanup, async {
            let options = q::LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            };
            let mut logs = docker.logs(id, Some(options));
            let mut text = String::new();
            while let Some(item) = logs.next().await {
                text.push_str(&String::from_utf8_lossy(&item?.into_bytes()));
            }
            Ok(text)
        })
        .unwrap_or_default()
    }

    /// When the container last started (UTC).
    pub fn started_at(&self) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(self
            .inspect()?
            .state
            .and_then(|s| s.started_at)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)))
    }
}

/// What [`Scratch::state`] tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// It runs.
    pub running: bool,
    /// Its exit code, once stopped.
    pub exit_code: Option<i64>,
    /// The kernel killed it for memory.
    pub oom_killed: bool,
    /// `starting`, `healthy`, `unhealthy` when the image has a HEALTHCHECK.
    pub health: Option<String>,
}

pub use orca_databases::container::{Exec, TIMED_OUT};

/// Commands run in the scratch copy's database container.
impl Container for Scratch {
    fn exec(
        &self,
        argv: &[String],
        env: &[String],
        user: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Exec> {
        orca_databases::container::exec_in(
            self.id()?,
            "the drill's database container",
            argv,
            env,
            user,
            limit,
        )
    }

    fn health(&self) -> anyhow::Result<Option<String>> {
        Ok(self.state()?.health)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _critical = orca_shared::interrupt::critical("removing the drill's scratch copy");
        if let Some(id) = &self.container
            && let Err(e) = docker::remove_container(id)
        {
            eprintln!("{}: warning: {e:#}", self.tool);
        }
        remove_volume(&self.tool, &self.name);
    }
}

/// The engine refused what the drill asked (a mount point that is a file,
/// an image that cannot run): the user's setup, exit 2, the engine's words.
fn setup_error(err: EngineError, image: &str, mount_point: &str) -> anyhow::Error {
    let said = match &err {
        EngineError::Api { message, .. } => orca_shared::exit::one_line(message),
        other => format!("{other:?}"),
    };
    orca_shared::err!(
        Usage,
        "Docker cannot start image '{image}' with the scratch copy at {mount_point}: {said} (check --image and --mount-point)"
    )
}

fn remove_volume(tool: &str, name: &str) {
    match docker::volume_remove(name) {
        Ok(docker::Removed::Yes) => {}
        Ok(docker::Removed::InUse(why)) => eprintln!(
            "{tool}: warning: cannot remove the scratch volume '{name}' ({why}); remove it with `docker volume rm {name}`"
        ),
        Err(e) => eprintln!(
            "{tool}: warning: cannot remove the scratch volume '{name}': {e:#}; remove it with `docker volume rm {name}`"
        ),
    }
}

/// Remove what drills that were killed left: their containers, scratch
/// volumes, and the journal and lock of a scratch restore they were in the
/// middle of, when their creating process is gone (on this machine). An
/// interrupted scratch restore is undone with `recover` (orca-restore
/// --rollback), then any lock left is cleared with `clear_lock`. Says what it
/// removes on stderr.
pub fn remove_stale(
    tool: &str,
    backups_dir: &std::path::Path,
    recover: &dyn Fn(&str) -> anyhow::Result<()>,
    clear_lock: &dyn Fn(&str) -> anyhow::Result<()>,
) {
    // Their containers first (helpers whose creator is gone), then the rest.
    docker::remove_stale_helpers(tool);
    let mut names: Vec<String> = match docker::volume_names(PREFIX) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "{tool}: warning: cannot look for scratch volumes left by killed drills: {e:#}"
            );
            return;
        }
    };
    // A journal that cannot be read names no volume.
    for (_, j) in orca_shared::journal::in_dir(backups_dir, &mut Vec::new()) {
        names.push(j.volume);
    }
    if let Ok(locked) = orca_shared::volume_lock::locked_volumes() {
        names.extend(locked);
    }
    names.retain(|n| n.starts_with(PREFIX));
    names.sort();
    names.dedup();
    for v in names {
        if creator_liveness(&v) != Some(Liveness::Gone) {
            continue;
        }
        eprintln!(
            "{tool}: removing the scratch copy '{v}' of a drill that ended without cleaning up"
        );
        if let Err(e) = recover(&v) {
            eprintln!("{tool}: warning: {e:#}");
        }
        if let Err(e) = clear_lock(&v) {
            eprintln!("{tool}: warning: {e:#}");
        }
        if docker::volume_inspect(&v).ok().flatten().is_some() {
            remove_volume(tool, &v);
        }
    }
}

/// Whether the drill that named a scratch volume still runs.
fn creator_liveness(name: &str) -> Option<Liveness> {
    // orca-drill-<machine>-<pid>-<start>-<nonce>
    let tag = name.strip_prefix(PREFIX)?.rsplit_once('-')?.0;
    tag_liveness(tag)
}

/// Whether `image` declares a HEALTHCHECK.
pub fn image_has_healthcheck(image: &str) -> anyhow::Result<bool> {
    let e = engine::engine()?;
    let docker = e.docker().clone();
    let i = e
        .call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.inspect_image(image),
        )
        .map_err(|err| err.into_error(&format!("inspect image '{image}'")))?;
    Ok(i.config
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.test)
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE"))
}
