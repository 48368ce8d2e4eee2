//! What orca asks of Docker, in its own terms: volumes, the containers that use
//! them, helper containers, stopping and starting. Everything goes through the
//! Engine API client in [`crate::engine`]; errors come back classified (engine
//! unreachable: exit 3, no such volume: exit 4, anything else: exit 1 with
//! Docker's own message).
//!
//! Helper containers are created from a local image and, except the one that
//! empties a volume, never started: the archive API reads and writes a created
//! container's mounts directly. They carry [`HELPER_LABEL`] and the labels of
//! the process that made them ([`crate::creator`]), are removed by a guard (also
//! on errors and interrupts), and a helper whose creator is gone (a killed run)
//! is removed by the next tool that creates one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Once;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters as q;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::creator::{Creator, Liveness};
use crate::engine::{self, EngineError, Mode};
use crate::exit::{ErrorKind, OrcaError};

/// The image orca creates when no `helper_image` is configured: empty, made
/// locally by importing an empty tar, never pulled, never run.
pub const HELPER_IMAGE: &str = "orca-backup-helper:empty";
/// Label on every helper container and on the helper image.
pub const HELPER_LABEL: &str = "org.orca-backup.helper";
/// Where a helper container mounts the volume.
pub const MOUNT_PATH: &str = "/volume";

/// The engine, or the error that says why there is none.
fn connected() -> anyhow::Result<std::sync::Arc<engine::Engine>> {
    engine::engine()
}

/// A volume as the engine describes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct VolumeInfo {
    /// The volume name.
    pub name: String,
    /// The volume driver (`local` almost always).
    pub driver: String,
    /// Labels (Aspire and compose set some).
    pub labels: BTreeMap<String, String>,
    /// Driver options (`type`, `o`, `device` for bind-backed local volumes).
    pub options: BTreeMap<String, String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Where the data lives on the engine's host (not always visible to us).
    pub mountpoint: String,
}

impl From<bollard::models::Volume> for VolumeInfo {
    fn from(v: bollard::models::Volume) -> Self {
        VolumeInfo {
            name: v.name,
            driver: v.driver,
            labels: v.labels.into_iter().collect(),
            options: v.options.into_iter().collect(),
            created_at: v.created_at.unwrap_or_default(),
            mountpoint: v.mountpoint,
        }
    }
}

/// A volume name as Docker accepts it (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), or a
/// usage error naming it: names go into request paths and filters.
pub fn check_volume_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 255
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        crate::fail!(
            Usage,
            "{name:?} is not a valid Docker volume name (letters, digits, '_', '.', '-', starting with a letter or digit)"
        )
    }
}

/// Inspect a volume; `None` when it does not exist.
pub fn volume_inspect(name: &str) -> anyhow::Result<Option<VolumeInfo>> {
    check_volume_name(name)?;
    let e = connected()?;
    let docker = e.docker().clone();
    match e.call(
        engine::timeouts().request,
        Mode::Interruptible,
        docker.inspect_volume(name),
    ) {
        Ok(v) => Ok(Some(v.into())),
        Err(EngineError::Api { status: 404, .. }) => Ok(None),
        Err(err) => Err(err.into_error(&format!("inspect volume '{name}'"))),
    }
}

/// Inspect a volume that must exist: exit 4 naming it when it does not.
pub fn require_volume(name: &str) -> anyhow::Result<VolumeInfo> {
    match volume_inspect(name)? {
        Some(info) => Ok(info),
        None => crate::fail!(
            VolumeNotFound,
            "volume '{name}' not found (list volumes with `docker volume ls`, or let orca-find-volume find it)"
        ),
    }
}

/// Volumes whose name matches docker's `name=` filter (empty: all), sorted by name.
pub fn volumes(name_filter: &str) -> anyhow::Result<Vec<VolumeInfo>> {
    let e = connected()?;
    let docker = e.docker().clone();
    let filters = (!name_filter.is_empty())
        .then(|| HashMap::from([("name".to_string(), vec![name_filter.to_string()])]));
    let list = e
        .call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.list_volumes(Some(q::ListVolumesOptions { filters })),
        )
        .map_err(|err| err.into_error("list volumes"))?;
    let mut out: Vec<VolumeInfo> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(VolumeInfo::from)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Names of volumes whose name matches docker's `name=` filter (empty: all).
pub fn volume_names(name_filter: &str) -> anyhow::Result<Vec<String>> {
    Ok(volumes(name_filter)?.into_iter().map(|v| v.name).collect())
}

/// Create a volume with `info`'s name, driver, options and labels (plus `extra_labels`).
pub fn volume_create(info: &VolumeInfo, extra_labels: &[(String, String)]) -> anyhow::Result<()> {
    check_volume_name(&info.name)?;
    let e = connected()?;
    let docker = e.docker().clone();
    let mut labels: HashMap<String, String> = info.labels.clone().into_iter().collect();
    labels.extend(extra_labels.iter().cloned());
    let body = bollard::models::VolumeCreateRequest {
        name: Some(info.name.clone()),
        driver: (!info.driver.is_empty()).then(|| info.driver.clone()),
        driver_opts: Some(info.options.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    };
    e.call(
        engine::timeouts().request,
        Mode::Cleanup,
        docker.create_volume(body),
    )
    .map(drop)
    .map_err(|err| err.into_error(&format!("create volume '{}'", info.name)))
}

/// What removing a volume did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// It is gone.
    Yes,
    /// A container uses it: nothing changed.
    InUse(String),
}

/// Remove a volume (not forced: a volume in use stays).
pub fn volume_remove(name: &str) -> anyhow::Result<Removed> {
    check_volume_name(name)?;
    let e = connected()?;
    let docker = e.docker().clone();
    match e.call(
        engine::timeouts().request,
        Mode::Cleanup,
        docker.remove_volume(name, None::<q::RemoveVolumeOptions>),
    ) {
        Ok(()) | Err(EngineError::Api { status: 404, .. }) => Ok(Removed::Yes),
        Err(EngineError::Api {
            status: 409,
            message,
        }) => Ok(Removed::InUse(message)),
        Err(err) => Err(err.into_error(&format!("remove volume '{name}'"))),
    }
}

/// A container that mounts a volume.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ContainerRef {
    /// Full container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image the container runs.
    pub image: String,
    /// running, exited, created, paused, restarting... or `unknown` when the
    /// engine did not say.
    pub state: String,
}

impl ContainerRef {
    /// Whether the container's processes may be writing to the volume. Fails
    /// closed: a state that cannot be read counts as running.
    pub fn is_active(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "created" | "exited" | "dead" | "removing"
        )
    }
}

/// Containers (any state) that mount `volume`, our own helpers excluded.
pub fn containers_using(volume: &str) -> anyhow::Result<Vec<ContainerRef>> {
    check_volume_name(volume)?;
    let e = connected()?;
    let docker = e.docker().clone();
    let options = q::ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "volume".to_string(),
            vec![volume.to_string()],
        )])),
        ..Default::default()
    };
    let list = e
        .call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.list_containers(Some(options)),
        )
        .map_err(|err| err.into_error(&format!("list the containers using volume '{volume}'")))?;
    let mut found = Vec::new();
    for c in list {
        if c.labels
            .as_ref()
            .is_some_and(|l| l.contains_key(HELPER_LABEL))
        {
            continue;
        }
        found.push(summary_ref(&c));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn summary_ref(c: &bollard::models::ContainerSummary) -> ContainerRef {
    let state = match &c.state {
        Some(s) if !s.to_string().is_empty() => s.to_string(),
        _ => "unknown".to_string(),
    };
    ContainerRef {
        id: c.id.clone().unwrap_or_default(),
        name: c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: c.image.clone().unwrap_or_default(),
        state,
    }
}

/// What orca needs to know of a container beyond its summary. Its `Debug`
/// leaves the environment out (it holds the `sa` password).
#[derive(Clone, Default)]
pub struct ContainerDetails {
    /// Started with `--rm`: stopping it deletes it.
    pub auto_remove: bool,
    /// Its environment (`KEY=value`); holds secrets, never written anywhere.
    pub env: Vec<String>,
    /// Its image as configured.
    pub image: String,
    /// Where each volume is mounted: volume name -> path in the container.
    pub volume_mounts: BTreeMap<String, String>,
}

impl std::fmt::Debug for ContainerDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerDetails")
            .field("auto_remove", &self.auto_remove)
            .field(
                "env",
                &format_args!("[{} variables, not shown]", self.env.len()),
            )
            .field("image", &self.image)
            .field("volume_mounts", &self.volume_mounts)
            .finish()
    }
}

/// Inspect a container; `None` when it is gone.
pub fn container_details(id: &str) -> anyhow::Result<Option<ContainerDetails>> {
    let e = connected()?;
    let docker = e.docker().clone();
    match e.call(
        engine::timeouts().request,
        Mode::Interruptible,
        docker.inspect_container(id, None::<q::InspectContainerOptions>),
    ) {
        Ok(c) => {
            let config = c.config.unwrap_or_default();
            let volume_mounts = c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| Some((m.name?, m.destination?)))
                .collect();
            Ok(Some(ContainerDetails {
                auto_remove: c.host_config.and_then(|h| h.auto_remove).unwrap_or(false),
                env: config.env.unwrap_or_default(),
                image: config.image.unwrap_or_default(),
                volume_mounts,
            }))
        }
        Err(EngineError::Api { status: 404, .. }) => Ok(None),
        Err(err) => Err(err.into_error(&format!("inspect container {}", short(id)))),
    }
}

/// Whether a container runs now (cleanup: not interruptible).
fn container_running(id: &str) -> anyhow::Result<bool> {
    let e = connected()?;
    let docker = e.docker().clone();
    let c = e
        .call(
            engine::timeouts().request,
            Mode::Cleanup,
            docker.inspect_container(id, None::<q::InspectContainerOptions>),
        )
        .map_err(|err| err.into_error(&format!("inspect container {}", short(id))))?;
    Ok(c.state.and_then(|s| s.running).unwrap_or(false))
}

/// The engine's version, e.g. "28.2.2".
pub fn server_version() -> anyhow::Result<String> {
    Ok(connected()?.server_version().to_string())
}

/// The engine's OS and architecture as Go names them ("linux", "amd64").
pub fn server_platform() -> anyhow::Result<(String, String)> {
    let e = connected()?;
    let (os, arch) = e.server_platform();
    Ok((os.to_string(), arch.to_string()))
}

/// Whether a local image exists (never pulls).
pub fn image_exists(image: &str) -> anyhow::Result<bool> {
    let e = connected()?;
    let docker = e.docker().clone();
    match e.call(
        engine::timeouts().request,
        Mode::Interruptible,
        docker.inspect_image(image),
    ) {
        Ok(_) => Ok(true),
        Err(EngineError::Api { status: 404, .. }) => Ok(false),
        Err(err) => Err(err.into_error(&format!("inspect image '{image}'"))),
    }
}

/// The image for helper containers: `helper_image` from config (must exist
/// locally), else [`HELPER_IMAGE`], created on first use from an empty tar.
pub fn ensure_helper_image(configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(image) = configured.filter(|s| !s.trim().is_empty()) {
        if image_exists(image)? {
            return Ok(image.to_string());
        }
        crate::fail!(
            Failure,
            "helper_image '{image}' from config is not a local image (orca never pulls): load it with `docker load`/`docker pull` yourself, or remove helper_image to let orca create its own"
        );
    }
    if !image_exists(HELPER_IMAGE)? {
        let e = connected()?;
        let docker = e.docker().clone();
        let (repo, tag) = HELPER_IMAGE
            .split_once(':')
            .unwrap_or((HELPER_IMAGE, "latest"));
        let options = q::CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes: vec![format!("LABEL {HELPER_LABEL}=true")],
            ..Default::default()
        };
        // An empty tar archive is two zero blocks.
        let body = bollard::body_full(bytes::Bytes::from(vec![0u8; 1024]));
        e.call(engine::timeouts().request, Mode::Interruptible, async {
            let mut progress = docker.create_image(Some(options), Some(body), None);
            while let Some(item) = progress.next().await {
                item?;
            }
            Ok(())
        })
        .map_err(|err| err.into_error(&format!("create the local helper image {HELPER_IMAGE}")))?;
    }
    Ok(HELPER_IMAGE.to_string())
}

/// Remove helper containers whose creating process is gone (a killed run), once
/// per process; says so on stderr. Helpers of live processes and of other
/// machines are left alone.
pub fn remove_stale_helpers(tool: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = remove_stale(tool) {
            eprintln!(
                "{tool}: warning: cannot look for helper containers left by killed runs: {e:#}"
            );
        }
    });
}

fn remove_stale(tool: &str) -> anyhow::Result<()> {
    let e = connected()?;
    let docker = e.docker().clone();
    let options = q::ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![HELPER_LABEL.to_string()],
        )])),
        ..Default::default()
    };
    let list = e
        .call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.list_containers(Some(options)),
        )
        .map_err(|err| err.into_error("list orca's helper containers"))?;
    for c in list {
        let Some(labels) = &c.labels else { continue };
        // Volume locks (which may carry the helper label through the image)
        // are cleared by their own rules: a killed run's stopped containers
        // are started again first.
        if labels.contains_key(crate::volume_lock::LOCK_LABEL) {
            continue;
        }
        let Some(creator) = Creator::from_labels(labels) else {
            continue;
        };
        if creator.liveness() != Liveness::Gone {
            continue;
        }
        let id = c.id.clone().unwrap_or_default();
        eprintln!(
            "{tool}: removing helper container {} left by a run that ended without cleaning up ({} is gone)",
            short(&id),
            creator.describe()
        );
        remove_container(&id)?;
    }
    Ok(())
}

/// A helper container that mounts a volume; removed on drop.
#[derive(Debug)]
pub struct HelperContainer {
    id: String,
    removed: bool,
}

/// A container's exit code and what it printed.
pub type RunOutput = (i64, String);

/// Why [`HelperContainer::run`] failed: before anything ran, or after.
#[derive(Debug)]
pub enum RunError {
    /// The engine did not start it (no such command in the image, ...).
    NotStarted(anyhow::Error),
    /// It started; what it did is unknown.
    Started(anyhow::Error),
}

impl HelperContainer {
    /// Create a never-started helper that mounts `volume` at [`MOUNT_PATH`],
    /// read-only unless `writable`.
    pub fn create(
        tool: &str,
        image: &str,
        volume: &str,
        writable: bool,
    ) -> anyhow::Result<HelperContainer> {
        let body = ContainerCreateBody {
            entrypoint: Some(vec!["/orca-backup-helper-never-started".into()]),
            ..Default::default()
        };
        Self::create_with(tool, image, volume, writable, body)
    }

    /// Create a container that runs `script` with `/bin/sh` as root, with
    /// `volume` mounted writable at [`MOUNT_PATH`]; start it with
    /// [`HelperContainer::run`]. Only for images that have a shell.
    pub fn create_shell(
        tool: &str,
        image: &str,
        volume: &str,
        script: &str,
    ) -> anyhow::Result<HelperContainer> {
        let body = ContainerCreateBody {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), script.into()]),
            user: Some("0:0".into()),
            ..Default::default()
        };
        Self::create_with(tool, image, volume, true, body)
    }

    /// Create a container that runs `argv` (no shell) as root with only the
    /// capability to read every file, with `volume` mounted at
    /// [`MOUNT_PATH`], read-only unless `writable`; copy the
    /// program in with an archive upload, then start it with
    /// [`HelperContainer::run`].
    pub fn create_command(
        tool: &str,
        image: &str,
        volume: &str,
        writable: bool,
        argv: &[&str],
    ) -> anyhow::Result<HelperContainer> {
        // Root that may read every file and nothing more: no other
        // capability, no privilege gained through exec.
        let body = ContainerCreateBody {
            entrypoint: Some(argv.iter().map(|a| a.to_string()).collect()),
            cmd: Some(Vec::new()),
            user: Some("0:0".into()),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(vec!["DAC_READ_SEARCH".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        Self::create_with(tool, image, volume, writable, body)
    }

    fn create_with(
        tool: &str,
        image: &str,
        volume: &str,
        writable: bool,
        mut body: ContainerCreateBody,
    ) -> anyhow::Result<HelperContainer> {
        remove_stale_helpers(tool);
        let mut labels = Creator::current().labels(tool);
        labels.insert(HELPER_LABEL.into(), "true".into());
        body.image = Some(image.to_string());
        body.labels = Some(labels);
        body.network_disabled = Some(true);
        let extra = body.host_config.take().unwrap_or_default();
        body.host_config = Some(HostConfig {
            network_mode: Some("none".into()),
            mounts: Some(vec![Mount {
                target: Some(MOUNT_PATH.into()),
                source: Some(volume.into()),
                typ: Some(MountType::VOLUME),
                read_only: Some(!writable),
                ..Default::default()
            }]),
            ..extra
        });
        let e = connected()?;
        let docker = e.docker().clone();
        let name = format!("orca-backup-helper-{}-{}", Creator::current().pid, nonce());
        let options = q::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = match e.call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.create_container(Some(options), body),
        ) {
            Ok(c) => c,
            Err(err) => {
                if err.status().is_none() {
                    // Cut short (Ctrl-C, deadline): it may exist all the same.
                    remove_if_ours(&name);
                }
                return Err(err.into_error(&format!(
                    "create a helper container for volume '{volume}' from image '{image}'"
                )));
            }
        };
        Ok(HelperContainer {
            id: created.id,
            removed: false,
        })
    }

    /// Start the container, wait for it (up to the long deadline) and return
    /// its exit code and output. Runs to the end even after Ctrl-C: what it
    /// does (emptying a volume) must not stop half-way.
    pub fn run(&self) -> Result<RunOutput, RunError> {
        self.run_in(Mode::Cleanup)
    }

    /// [`HelperContainer::run`], reaching the test point `point` once the
    /// container has started (tests kill a tool there).
    pub fn run_with_point(&self, point: &str) -> Result<RunOutput, RunError> {
        self.run_inner(Mode::Cleanup, Some(point))
    }

    /// [`HelperContainer::run`], waiting for it in `mode` (Interruptible: a
    /// Ctrl-C stops waiting, and dropping the helper removes it).
    pub fn run_in(&self, mode: Mode) -> Result<RunOutput, RunError> {
        self.run_inner(mode, None)
    }

    fn run_inner(&self, mode: Mode, point: Option<&str>) -> Result<RunOutput, RunError> {
        let e = connected().map_err(RunError::NotStarted)?;
        let docker = e.docker().clone();
        let id = self.id.clone();
        let t = engine::timeouts();
        // The engine refuses to start an image without the command (no
        // /bin/sh): nothing ran then.
        e.call(
            t.request,
            Mode::Cleanup,
            docker.start_container(&id, None::<q::StartContainerOptions>),
        )
        .map_err(|err| {
            // Only an answer from the engine says it did not start; a
            // deadline or a broken connection leaves that open.
            let answered = err.status().is_some();
            let e = err.into_error(&format!("start helper container {}", short(&id)));
            if answered {
                RunError::NotStarted(e)
            } else {
                RunError::Started(e)
            }
        })?;
        if let Some(point) = point {
            crate::testpoint::point(point);
        }
        let code = e
            .call(t.long(), mode, async {
                let mut waits = docker.wait_container(&id, None::<q::WaitContainerOptions>);
                match waits.next().await {
                    Some(Ok(r)) => Ok(r.status_code),
                    // A non-zero exit arrives as this error: it is an answer.
                    Some(Err(bollard::errors::Error::DockerContainerWaitError {
                        code, ..
                    })) => Ok(code),
                    Some(Err(err)) => Err(err),
                    None => Ok(-1),
                }
            })
            .map_err(|err| {
                RunError::Started(
                    err.into_error(&format!("wait for helper container {}", short(&id))),
                )
            })?;
        let output = e
            .call(t.request, Mode::Cleanup, async {
                let options = q::LogsOptions {
                    stdout: true,
                    stderr: true,
                    tail: "200".into(),
                    ..Default::default()
                };
                let mut logs = docker.logs(&id, Some(options));
                let mut text = String::new();
                while let Some(item) = logs.next().await {
                    text.push_str(&String::from_utf8_lossy(&item?.into_bytes()));
                }
                Ok(text)
            })
            .unwrap_or_default();
        Ok((code, output))
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Remove it now, reporting failure.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        remove_container(&self.id)
    }
}

/// A short random-enough suffix for names this process gives containers.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}{:x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Remove the container `name` if this very process created it (a create
/// that was cut short may still have happened); best effort, never fails.
pub fn remove_if_ours(name: &str) {
    let Ok(e) = connected() else { return };
    let docker = e.docker().clone();
    let Ok(c) = e.call(
        engine::timeouts().request,
        Mode::Cleanup,
        docker.inspect_container(name, None::<q::InspectContainerOptions>),
    ) else {
        return;
    };
    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
    if Creator::from_labels(&labels).as_ref() == Some(Creator::current())
        && let Some(id) = c.id
    {
        let _ = remove_container(&id);
    }
}

/// Force-remove a container and its anonymous volumes (cleanup: not interruptible).
pub fn remove_container(id: &str) -> anyhow::Result<()> {
    let e = connected()?;
    let docker = e.docker().clone();
    let options = q::RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match e.call(
        engine::timeouts().request,
        Mode::Cleanup,
        docker.remove_container(id, Some(options)),
    ) {
        Ok(()) | Err(EngineError::Api { status: 404, .. }) => Ok(()),
        Err(err) => Err(err
            .into_error(&format!("remove helper container {}", short(id)))
            .context(format!("remove it yourself with `docker rm -f -v {id}`"))),
    }
}

impl Drop for HelperContainer {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = remove_container(&self.id)
        {
            eprintln!("warning: {e:#}");
        }
    }
}

/// The first 12 characters of an id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The exit code a stopped container ended with (`None`: not known).
fn exit_code(c: &ContainerRef) -> anyhow::Result<Option<i64>> {
    let e = connected()?;
    let docker = e.docker().clone();
    match e.call(
        engine::timeouts().request,
        Mode::Interruptible,
        docker.inspect_container(&c.id, None::<q::InspectContainerOptions>),
    ) {
        Ok(i) => Ok(i.state.and_then(|s| s.exit_code)),
        Err(EngineError::Api { status: 404, .. }) => Ok(None),
        Err(err) => Err(err.into_error(&format!("inspect container '{}'", c.name))),
    }
}

/// Containers we stopped, started again when this guard goes (also on error or
/// interrupt), or explicitly with [`StoppedContainers::restart`].
#[derive(Debug, Default)]
pub struct StoppedContainers {
    stopped: Vec<ContainerRef>,
    /// A stop that was sent but not confirmed (deadline, Ctrl-C): the
    /// container may be stopping, so cleanup finishes the stop, then starts it.
    in_flight: Option<ContainerRef>,
    /// Deleted by stopping (`--rm`), accepted by the user: not started again.
    removed: Vec<ContainerRef>,
    /// Did not stop within the grace period and were killed by the engine
    /// (exit 137, SIGKILL): their files are at best crash-consistent.
    killed: Vec<ContainerRef>,
    restarted: bool,
}

impl StoppedContainers {
    /// Nothing stopped.
    pub fn none() -> Self {
        Self::default()
    }

    /// Stop the active containers among `containers`, each given
    /// `stop_timeout_seconds` for a clean shutdown. A container started with
    /// `--rm` would be deleted by stopping: refused (exit 9) before anything
    /// is stopped unless `allow_autoremove`.
    pub fn stop(
        containers: &[ContainerRef],
        allow_autoremove: bool,
    ) -> anyhow::Result<StoppedContainers> {
        let active: Vec<&ContainerRef> = containers.iter().filter(|c| c.is_active()).collect();
        let mut auto_remove = Vec::new();
        for c in &active {
            let details = container_details(&c.id)?;
            if details.is_some_and(|d| d.auto_remove) {
                auto_remove.push(c.id.clone());
                if !allow_autoremove {
                    crate::fail!(
                        VolumeInUse,
                        "container '{}' was started with --rm (AutoRemove): stopping it would delete it, so it could not be started again; stop it yourself, or pass --allow-autoremove to accept that; nothing was changed",
                        c.name
                    );
                }
            }
        }
        let mut guard = StoppedContainers::none();
        let t = engine::timeouts();
        let e = connected()?;
        for c in active {
            crate::interrupt::check()?;
            eprintln!(
                "stopping container '{}' (up to {} s for a clean shutdown)",
                c.name,
                t.stop_grace.as_secs()
            );
            guard.in_flight = Some(c.clone());
            let docker = e.docker().clone();
            let options = q::StopContainerOptions {
                t: Some(i32::try_from(t.stop_grace.as_secs()).unwrap_or(i32::MAX)),
                signal: None,
            };
            e.call(
                t.stop(),
                Mode::Interruptible,
                docker.stop_container(&c.id, Some(options)),
            )
            .map_err(|err| err.into_error(&format!("stop container '{}'", c.name)))?;
            guard.in_flight = None;
            if auto_remove.contains(&c.id) {
                guard.removed.push(c.clone());
            } else {
                guard.stopped.push(c.clone());
                if exit_code(c)? == Some(137) {
                    eprintln!(
                        "warning: container '{}' did not shut down within {} s and was killed (SIGKILL): its files are not a clean shutdown's; raise stop_timeout_seconds in config",
                        c.name,
                        t.stop_grace.as_secs()
                    );
                    guard.killed.push(c.clone());
                }
            }
        }
        Ok(guard)
    }

    /// The containers that did not stop within the grace period and were
    /// killed: a copy made meanwhile is not a clean shutdown's.
    pub fn killed(&self) -> &[ContainerRef] {
        &self.killed
    }

    /// Containers an earlier, interrupted run stopped (from its journal): they
    /// are started again like ours (one that already runs is left alone).
    pub fn adopt(containers: Vec<ContainerRef>) -> StoppedContainers {
        let mut s = StoppedContainers::none();
        s.stopped = containers;
        s
    }

    /// Leave them stopped (the volume is not whole; a restore journal lists
    /// them for the recovery that will start them).
    pub fn forget(mut self) {
        self.restarted = true;
    }

    /// The containers that were stopped (and those deleted by stopping).
    pub fn containers(&self) -> Vec<ContainerRef> {
        self.stopped
            .iter()
            .chain(self.removed.iter())
            .cloned()
            .collect()
    }

    /// Start the stopped containers again; the error names those that did not start.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.restarted {
            return Ok(());
        }
        self.restarted = true;
        let _critical = crate::interrupt::critical("starting stopped containers again");
        let mut failed = Vec::new();
        let e = match connected() {
            Ok(e) => e,
            Err(err) => {
                let names: Vec<String> =
                    self.all_to_start().iter().map(|c| c.name.clone()).collect();
                if names.is_empty() {
                    return Ok(());
                }
                return Err(err.context(format!(
                    "could not start container(s) {} again: start them with `docker start`",
                    names.join(", ")
                )));
            }
        };
        let t = engine::timeouts();
        if let Some(c) = self.in_flight.take() {
            // Finish the interrupted stop first, or the engine may stop it
            // right after we start it.
            eprintln!("finishing the interrupted stop of container '{}'", c.name);
            let docker = e.docker().clone();
            let options = q::StopContainerOptions {
                t: Some(i32::try_from(t.stop_grace.as_secs()).unwrap_or(i32::MAX)),
                signal: None,
            };
            match e.call(
                t.stop(),
                Mode::Cleanup,
                docker.stop_container(&c.id, Some(options)),
            ) {
                Ok(()) => self.stopped.push(c),
                Err(EngineError::Api { status: 404, .. }) => {}
                Err(err) => {
                    // The stop may never have reached the engine: a container
                    // that runs is what we want anyway.
                    if !container_running(&c.id).unwrap_or(false) {
                        failed.push(format!(
                            "'{}' ({:#})",
                            c.name,
                            err.into_error(&format!("stop container '{}'", c.name))
                        ));
                    }
                }
            }
        }
        for c in &self.stopped {
            eprintln!("starting container '{}' again", c.name);
            let docker = e.docker().clone();
            match e.call(
                t.request,
                Mode::Cleanup,
                docker.start_container(&c.id, None::<q::StartContainerOptions>),
            ) {
                Ok(()) => {}
                Err(EngineError::Api { status: 404, .. }) => {
                    eprintln!("container '{}' no longer exists: not started", c.name);
                }
                Err(err) => failed.push(format!(
                    "'{}' ({:#})",
                    c.name,
                    err.into_error(&format!("start container '{}'", c.name))
                )),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OrcaError::new(
                ErrorKind::Failure,
                format!(
                    "could not start container(s) {} again: start them with `docker start`",
                    failed.join(", ")
                ),
            )
            .into())
        }
    }

    fn all_to_start(&self) -> Vec<ContainerRef> {
        self.stopped
            .iter()
            .chain(self.in_flight.iter())
            .cloned()
            .collect()
    }
}

impl Drop for StoppedContainers {
    fn drop(&mut self) {
        if let Err(e) = self.restart() {
            eprintln!("warning: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_checked_before_they_reach_a_request() {
        for ok in ["orca.apphost-cc67ab6e00-sql-data", "a", "x_y.z-1"] {
            assert!(check_volume_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "review-v2?",
            "../containers/json",
            "-x",
            ".x",
            "a b",
            "a/b",
            "é",
        ] {
            let e = check_volume_name(bad).unwrap_err();
            assert_eq!(
                crate::exit::kind_of(&e),
                crate::exit::ErrorKind::Usage,
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_states_count_as_running() {
        let c = |state: &str| ContainerRef {
            id: "i".into(),
            name: "n".into(),
            image: "m".into(),
            state: state.into(),
        };
        for s in ["running", "paused", "restarting", "unknown", "", "stopping"] {
            assert!(c(s).is_active(), "{s}");
        }
        for s in ["created", "exited", "dead", "removing"] {
            assert!(!c(s).is_active(), "{s}");
        }
    }
}
