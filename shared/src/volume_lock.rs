//! One writer per volume, across every orca process that uses the same engine,
//! whatever its backups directory, user or machine.
//!
//! The lock lives in the engine itself, as a small container that is created
//! and never started, mounts nothing and carries labels: the volume, the mode
//! (`export` or `restore`), the process holding it ([`crate::creator`]) and
//! the containers it may stop. Container names are unique in an engine, so a
//! restore's lock, named after the volume, is exclusive; exports take locks of
//! their own names and any number may run at once. Each side creates its lock
//! first and then looks for the other kind, so of a restore and an export
//! started together at least one sees the other and steps back.
//!
//! A lock whose process is gone (SIGKILL, power cut) is stale: the next orca
//! run removes it, and first starts again the containers that run stopped and
//! that nobody started since. A restore lock naming a journal is not stale
//! but an interrupted restore: it stays until `orca-restore --resume` or
//! `--rollback` finishes the job.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters as q;
use sha2::{Digest, Sha256};

use crate::creator::{Creator, Liveness};
use crate::docker::{self, ContainerRef};
use crate::engine::{self, EngineError, Mode};

/// Label: the volume a lock is for.
pub const LOCK_LABEL: &str = "org.orca-backup.lock";
/// Label: `export` or `restore`.
pub const MODE_LABEL: &str = "org.orca-backup.lock-mode";
/// Label: ids of the containers the holder may stop, comma-separated.
pub const STOPS_LABEL: &str = "org.orca-backup.stops";
/// Label: the restore journal of an interrupted restore.
pub const JOURNAL_LABEL: &str = "org.orca-backup.journal";

/// What the holder does to the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Reads it (any number at once).
    Export,
    /// Writes it (alone).
    Restore,
}

impl LockMode {
    fn as_str(self) -> &'static str {
        match self {
            LockMode::Export => "export",
            LockMode::Restore => "restore",
        }
    }
}

/// What to lock and how.
pub struct LockRequest<'a> {
    /// The tool taking it, for labels and messages.
    pub tool: &'a str,
    /// The volume.
    pub volume: &'a str,
    /// Export or restore.
    pub mode: LockMode,
    /// The image to create the lock container from (a local one).
    pub image: &'a str,
    /// Containers the holder may stop (restarted if it dies).
    pub stops: &'a [ContainerRef],
    /// The journal a restore keeps (restore only).
    pub journal: Option<&'a str>,
    /// Take over the lock of an interrupted restore (`--resume`/`--rollback`).
    pub recovering: bool,
}

/// A held lock; released (the container removed) on drop.
#[derive(Debug)]
pub struct VolumeLock {
    id: String,
    keep: bool,
}

/// Another orca process holds the volume, or a restore of it was interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// export or restore.
    pub mode: String,
    /// Who.
    pub creator: Option<Creator>,
    /// The tool.
    pub tool: String,
    /// The journal of an interrupted restore.
    pub journal: Option<String>,
    /// Whether the holder is gone (an interrupted restore).
    pub gone: bool,
}

fn volume_key(volume: &str) -> String {
    Sha256::digest(volume.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn restore_lock_name(volume: &str) -> String {
    format!("orca-backup-restore-lock-{}", volume_key(volume))
}

/// Take the lock, or fail with exit 12 naming the other process (or exit 13
/// for an interrupted restore that must be finished first).
pub fn acquire(req: &LockRequest) -> anyhow::Result<VolumeLock> {
    docker::check_volume_name(req.volume)?;
    for _attempt in 0..4 {
        match try_acquire(req)? {
            Some(lock) => {
                // Helpers a killed run left (a safety copy's, say) go now,
                // not only when this run happens to create one of its own.
                docker::remove_stale_helpers(req.tool);
                return Ok(lock);
            }
            None => continue, // a stale lock was cleared: try again
        }
    }
    crate::fail!(
        Failure,
        "cannot lock volume '{}': the lock kept changing under us; try again",
        req.volume
    )
}

fn try_acquire(req: &LockRequest) -> anyhow::Result<Option<VolumeLock>> {
    let me = Creator::current();
    let mut labels = me.labels(req.tool);
    labels.insert(LOCK_LABEL.into(), req.volume.into());
    labels.insert(MODE_LABEL.into(), req.mode.as_str().into());
    let stops: Vec<&str> = req.stops.iter().map(|c| c.id.as_str()).collect();
    labels.insert(STOPS_LABEL.into(), stops.join(","));
    if let Some(j) = req.journal {
        labels.insert(JOURNAL_LABEL.into(), j.into());
    }
    let name = match req.mode {
        LockMode::Restore => restore_lock_name(req.volume),
        LockMode::Export => format!(
            "orca-backup-export-lock-{}-{}-{}",
            volume_key(req.volume),
            me.pid,
            docker::nonce()
        ),
    };
    let body = ContainerCreateBody {
        image: Some(req.image.into()),
        entrypoint: Some(vec!["/orca-backup-lock-never-started".into()]),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = engine::engine()?;
    let docker = e.docker().clone();
    let options = q::CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let id = match e.call(
        engine::timeouts().request,
        Mode::Interruptible,
        docker.create_container(Some(options), body),
    ) {
        Ok(c) => c.id,
        Err(EngineError::Api { status: 409, .. }) if req.mode == LockMode::Restore => {
            // Someone holds the restore lock.
            let other = lock_by_name(&name)?;
            match other {
                None => return Ok(None), // gone meanwhile
                Some(other) => {
                    if clear_if_stale(req, &other)? {
                        return Ok(None);
                    }
                    return Err(busy(req, &other));
                }
            }
        }
        Err(err) => {
            if err.status().is_none() {
                // Cut short (Ctrl-C, deadline): it may exist all the same.
                docker::remove_if_ours(&name);
            }
            return Err(err.into_error(&format!("create the lock for volume '{}'", req.volume)));
        }
    };
    let mine = VolumeLock { id, keep: false };
    for other in locks_of(req.volume)? {
        if other.id == mine.id {
            continue;
        }
        let conflicts = match req.mode {
            LockMode::Restore => true,
            LockMode::Export => other.mode == "restore",
        };
        if clear_if_stale(req, &other)? {
            continue;
        }
        if conflicts {
            drop(mine);
            return Err(busy(req, &other));
        }
    }
    Ok(Some(mine))
}

/// A lock container as found in the engine.
#[derive(Debug, Clone)]
struct Found {
    id: String,
    mode: String,
    labels: HashMap<String, String>,
    created: i64,
}

impl Found {
    fn holder(&self, gone: bool) -> Holder {
        Holder {
            mode: self.mode.clone(),
            creator: Creator::from_labels(&self.labels),
            tool: self
                .labels
                .get(crate::creator::TOOL_LABEL)
                .cloned()
                .unwrap_or_default(),
            journal: self
                .labels
                .get(JOURNAL_LABEL)
                .filter(|j| !j.is_empty())
                .cloned(),
            gone,
        }
    }
}

fn from_summary(c: bollard::models::ContainerSummary) -> Option<Found> {
    let labels = c.labels?;
    Some(Found {
        id: c.id?,
        mode: labels.get(MODE_LABEL).cloned().unwrap_or_default(),
        created: c.created.unwrap_or(0),
        labels,
    })
}

fn locks_of(volume: &str) -> anyhow::Result<Vec<Found>> {
    list(HashMap::from([(
        "label".to_string(),
        vec![format!("{LOCK_LABEL}={volume}")],
    )]))
}

fn lock_by_name(name: &str) -> anyhow::Result<Option<Found>> {
    let exact = format!("^/{name}$");
    Ok(list(HashMap::from([("name".to_string(), vec![exact])]))?
        .into_iter()
        .next())
}

fn list(filters: HashMap<String, Vec<String>>) -> anyhow::Result<Vec<Found>> {
    let e = engine::engine()?;
    let docker = e.docker().clone();
    let options = q::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = e
        .call(
            engine::timeouts().request,
            Mode::Interruptible,
            docker.list_containers(Some(options)),
        )
        .map_err(|err| err.into_error("list orca's volume locks"))?;
    Ok(list.into_iter().filter_map(from_summary).collect())
}

/// Exit 13 when the engine knows of an interrupted restore of `volume` (a
/// lock naming a journal, whose process is gone); exit 12 when one runs on a
/// system this one cannot check.
pub fn refuse_if_interrupted(volume: &str) -> anyhow::Result<()> {
    docker::check_volume_name(volume)?;
    for f in locks_of(volume)? {
        if !journal_written(&f) {
            continue; // no journal: nothing changed; the next lock clears it
        }
        let liveness = Creator::from_labels(&f.labels).map(|c| c.liveness());
        if liveness == Some(Liveness::Alive) {
            continue; // running: the lock itself will say busy
        }
        let req = LockRequest {
            tool: "",
            volume,
            mode: LockMode::Export,
            image: "",
            stops: &[],
            journal: None,
            recovering: false,
        };
        return Err(busy(&req, &f));
    }
    Ok(())
}

/// [`docker::require_volume`], except that a volume missing because a
/// restore was interrupted between removing and creating it is exit 13
/// (finish that restore) rather than "not found".
pub fn require_volume(volume: &str) -> anyhow::Result<docker::VolumeInfo> {
    docker::check_volume_name(volume)?;
    match docker::volume_inspect(volume)? {
        Some(info) => Ok(info),
        None => {
            if let Some(f) = locks_of(volume)?.into_iter().find(|f| {
                journal_written(f)
                    && Creator::from_labels(&f.labels)
                        .is_some_and(|c| c.liveness() == Liveness::Gone)
            }) {
                let req = LockRequest {
                    tool: "",
                    volume,
                    mode: LockMode::Export,
                    image: "",
                    stops: &[],
                    journal: None,
                    recovering: false,
                };
                return Err(busy(&req, &f));
            }
            docker::require_volume(volume)
        }
    }
}

/// The holders of locks on `volume` (for `orca-list` and messages).
pub fn holders(volume: &str) -> anyhow::Result<Vec<Holder>> {
    Ok(locks_of(volume)?
        .into_iter()
        .map(|f| {
            let gone =
                Creator::from_labels(&f.labels).is_some_and(|c| c.liveness() == Liveness::Gone);
            f.holder(gone)
        })
        .collect())
}

/// The volumes the engine holds locks for (any mode, any holder).
pub fn locked_volumes() -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = list(HashMap::from([(
        "label".to_string(),
        vec![LOCK_LABEL.to_string()],
    )]))?
    .into_iter()
    .filter_map(|f| f.labels.get(LOCK_LABEL).cloned())
    .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// An interrupted restore the engine knows of: a lock naming a written
/// journal, whose process is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbandonedRestore {
    /// The volume.
    pub volume: String,
    /// The journal the lock names (maybe in another user's directory).
    pub journal: String,
    /// The process that held it (`pid 123 on host`).
    pub by: String,
    /// When it took the lock (UTC, RFC 3339).
    pub since: String,
}

/// The interrupted restores the engine's locks name, any volume.
pub fn interrupted_restores() -> anyhow::Result<Vec<AbandonedRestore>> {
    let found = list(HashMap::from([(
        "label".to_string(),
        vec![JOURNAL_LABEL.to_string()],
    )]))?;
    Ok(found
        .into_iter()
        .filter(journal_written)
        .filter_map(|f| {
            let creator = Creator::from_labels(&f.labels)?;
            if creator.liveness() != Liveness::Gone {
                return None;
            }
            Some(AbandonedRestore {
                volume: f.labels.get(LOCK_LABEL)?.clone(),
                journal: f.labels.get(JOURNAL_LABEL)?.clone(),
                by: creator.describe(),
                since: chrono::DateTime::from_timestamp(f.created, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// The volumes whose restore lock was left by a process that is gone,
/// whether or not it wrote its journal (what `--resume`/`--rollback` without
/// `--volume` may have to finish or clear).
pub fn abandoned_restores() -> anyhow::Result<Vec<String>> {
    let found = list(HashMap::from([(
        "label".to_string(),
        vec![format!("{MODE_LABEL}=restore")],
    )]))?;
    Ok(found
        .into_iter()
        .filter(|f| Creator::from_labels(&f.labels).is_some_and(|c| c.liveness() == Liveness::Gone))
        .filter_map(|f| f.labels.get(LOCK_LABEL).cloned())
        .collect())
}

/// Whether a lock names a journal that was (or may have been) written. A
/// restore killed between taking its lock and writing its journal changed
/// nothing, so its lock is an ordinary stale one; but only a journal that is
/// surely absent counts as unwritten: its directory is there and readable
/// and the file is not. A journal that cannot be looked at (another user's
/// directory, a backups directory on a disk that is not mounted now) counts
/// as written.
fn journal_written(f: &Found) -> bool {
    let Some(j) = f.labels.get(JOURNAL_LABEL).filter(|j| !j.is_empty()) else {
        return false;
    };
    let path = std::path::Path::new(j.as_str());
    path.exists() || crate::journal::unseen(path)
}

/// Remove the restore lock of `volume` whose process is gone and whose
/// journal was never written (killed before it changed anything), starting
/// again what it stopped. `Ok(Some(holder))`: one was cleared.
pub fn clear_unjournaled(tool: &str, volume: &str) -> anyhow::Result<Option<Holder>> {
    docker::check_volume_name(volume)?;
    for f in locks_of(volume)? {
        if f.mode != LockMode::Restore.as_str() || journal_written(&f) {
            continue;
        }
        let Some(creator) = Creator::from_labels(&f.labels) else {
            continue;
        };
        if creator.liveness() != Liveness::Gone {
            continue;
        }
        restart_left_stopped(tool, &f)?;
        docker::remove_container(&f.id)?;
        return Ok(Some(f.holder(true)));
    }
    Ok(None)
}

/// Remove `other` if its holder is gone (restarting what it stopped); keep it
/// when it records an interrupted restore, unless we are the recovery.
fn clear_if_stale(req: &LockRequest, other: &Found) -> anyhow::Result<bool> {
    let Some(creator) = Creator::from_labels(&other.labels) else {
        return Ok(false);
    };
    if creator.liveness() != Liveness::Gone {
        return Ok(false);
    }
    let journal = journal_written(other);
    if journal && !req.recovering {
        return Ok(false);
    }
    if !journal {
        restart_left_stopped(req.tool, other)?;
    }
    // With a journal, the recovery taking over starts the containers the
    // journal names once the volume is whole: not now, on a volume that may
    // be half restored.
    eprintln!(
        "{}: removing the lock on volume '{}' left by an orca {} that ended without cleaning up ({} is gone)",
        req.tool,
        req.volume,
        other.mode,
        creator.describe()
    );
    docker::remove_container(&other.id)?;
    Ok(true)
}

/// Start again the containers a dead holder stopped: those it listed that are
/// stopped and finished after it took its lock (nobody stopped them since).
fn restart_left_stopped(tool: &str, other: &Found) -> anyhow::Result<()> {
    let ids: Vec<&str> = other
        .labels
        .get(STOPS_LABEL)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Ok(());
    }
    let e = engine::engine()?;
    for id in ids {
        let docker = e.docker().clone();
        let inspected = match e.call(
            engine::timeouts().request,
            Mode::Cleanup,
            docker.inspect_container(id, None::<q::InspectContainerOptions>),
        ) {
            Ok(c) => c,
            Err(EngineError::Api { status: 404, .. }) => continue,
            Err(err) => return Err(err.into_error("inspect a container a killed run stopped")),
        };
        let state = inspected.state.unwrap_or_default();
        if state.running.unwrap_or(false) {
            continue;
        }
        let finished = state
            .finished_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp());
        if finished < other.created {
            continue; // stopped before that run began: not its doing
        }
        let name = inspected
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        eprintln!("{tool}: starting container '{name}' again: a killed orca run had stopped it");
        let docker = e.docker().clone();
        e.call(
            engine::timeouts().request,
            Mode::Cleanup,
            docker.start_container(id, None::<q::StartContainerOptions>),
        )
        .map_err(|err| err.into_error(&format!("start container '{name}'")))?;
    }
    Ok(())
}

fn busy(req: &LockRequest, other: &Found) -> anyhow::Error {
    let holder = other.holder(false);
    let who = holder
        .creator
        .as_ref()
        .map(|c| format!("{} ({})", holder.tool, c.describe()))
        .unwrap_or_else(|| "another orca process".into());
    let liveness = Creator::from_labels(&other.labels).map(|c| c.liveness());
    if let Some(journal) = holder.journal.as_ref()
        && liveness != Some(Liveness::Gone)
        && liveness != Some(Liveness::Alive)
    {
        // Another system (Windows and WSL sharing Docker Desktop) or an
        // unreadable label: running or interrupted, only that system knows.
        return crate::err!(
            VolumeBusy,
            "volume '{}' is being restored by {who}, on a machine or system this one cannot check (its journal there: {journal}); wait for it to finish, and if that restore was interrupted, finish it from that system with `orca-restore --resume` or `orca-restore --rollback` (nothing was changed)",
            req.volume
        );
    }
    if let Some(journal) = holder
        .journal
        .as_ref()
        .filter(|_| liveness == Some(Liveness::Gone))
    {
        return crate::err!(
            RestoreInterrupted,
            "a restore of volume '{}' was interrupted and its journal {journal} is kept: finish it with `orca-restore --resume --volume {}` or put the old contents back with `orca-restore --rollback --volume {}`; nothing was changed",
            req.volume,
            req.volume,
            req.volume
        );
    }
    let doing = if other.mode == "restore" {
        "restoring"
    } else {
        "exporting"
    };
    let unknown =
        Creator::from_labels(&other.labels).is_none_or(|c| c.liveness() == Liveness::Unknown);
    if unknown {
        return crate::err!(
            VolumeBusy,
            "volume '{}' is busy: {who} is {doing} it, on a machine or system this one cannot check; try again when it has finished, or, if that process is gone, remove its lock with `docker rm {}` (nothing was changed)",
            req.volume,
            docker::short(&other.id)
        );
    }
    crate::err!(
        VolumeBusy,
        "volume '{}' is busy: {who} is {doing} it; try again when it has finished (nothing was changed)",
        req.volume
    )
}

impl VolumeLock {
    /// Keep the lock container when this guard goes (an interrupted restore:
    /// the journal must be finished first).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Release now.
    pub fn release(mut self) -> anyhow::Result<()> {
        self.keep = true;
        docker::remove_container(&self.id)
    }
}

impl Drop for VolumeLock {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = docker::remove_container(&self.id)
        {
            eprintln!("warning: cannot release the volume lock: {e:#}");
        }
    }
}
