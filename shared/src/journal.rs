//! The restore journal: what a restore in progress has done to a volume, on
//! disk, so that a restore killed at any instant (SIGKILL, a power cut, a
//! third Ctrl-C) can be finished or undone by one command.
//!
//! `<backups dir>/.orca-restore.<volume>.journal` is written atomically
//! (temporary file, fsync, rename, fsync of the directory) before the first
//! change and again at each phase, and removed when the restore has ended
//! either way. It names the target volume, the archive and its SHA-256, the
//! safety backup and its SHA-256, the containers the restore stopped (or was
//! about to stop) and the phase. The restore's volume lock in the engine
//! carries its path, so every orca process on that engine sees that the
//! volume is mid-restore, whatever its backups directory.
//!
//! `orca-restore --resume` finishes restoring the archive; `--rollback` puts
//! the safety backup back (or, before anything changed, only cleans up); both
//! then start the containers the journal lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::docker::ContainerRef;

/// The journal format this version writes.
pub const FORMAT_VERSION: u32 = 1;

/// Where a restore is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Stopping the containers that use the volume (the volume is untouched).
    Stopping,
    /// Saving the current contents to the safety backup (untouched).
    Saving,
    /// Emptying the volume: from here it may be changed.
    Emptying,
    /// Extracting the archive into it.
    Extracting,
    /// Reading it back and comparing it with the archive.
    Comparing,
    /// Putting the safety backup back.
    RollingBack,
    /// The volume holds the archive's contents, compared: only starting the
    /// stopped containers and removing the journal remain.
    Restarting,
}

impl Phase {
    /// Whether the volume may differ from what it held before.
    pub fn changed(self) -> bool {
        !matches!(self, Phase::Stopping | Phase::Saving)
    }

    /// The name used in the file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stopping => "stopping",
            Phase::Saving => "saving",
            Phase::Emptying => "emptying",
            Phase::Extracting => "extracting",
            Phase::Comparing => "comparing",
            Phase::RollingBack => "rolling-back",
            Phase::Restarting => "restarting",
        }
    }
}

/// Exit 13 when `backups_dir` holds the journal of an interrupted restore of
/// `volume` (a journal that cannot be looked at counts as there).
pub fn refuse_if_journaled(backups_dir: &Path, volume: &str) -> anyhow::Result<()> {
    let path = path_for(backups_dir, volume);
    if path.try_exists().unwrap_or(true) {
        crate::fail!(
            RestoreInterrupted,
            "a restore of volume '{volume}' was interrupted and its journal {} is kept: finish it with `orca-restore --resume --volume {volume}` or put the old contents back with `orca-restore --rollback --volume {volume}`; nothing was changed",
            path.display()
        );
    }
    Ok(())
}

/// What a restore in progress has done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Journal format version (1).
    pub format_version: u32,
    /// The volume being restored.
    pub volume: String,
    /// Whether the restore creates it (`--to-new-volume`): undoing means
    /// removing it.
    pub new_volume: bool,
    /// Its driver, options and labels, to create it again after emptying.
    pub volume_driver: String,
    /// Driver options.
    #[serde(default)]
    pub volume_options: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub volume_labels: BTreeMap<String, String>,
    /// The archive being restored.
    pub archive: String,
    /// Its SHA-256, as verified.
    pub archive_sha256: String,
    /// The safety backup of the previous contents (null without one).
    pub safety_backup: Option<String>,
    /// Its SHA-256, once it is complete.
    pub safety_sha256: Option<String>,
    /// Containers stopped (or about to be), to start again at the end.
    pub stopped_containers: Vec<ContainerRef>,
    /// Where the restore is.
    pub phase: Phase,
    /// When it started (UTC, RFC 3339).
    pub started_at: String,
    /// When the phase was last written.
    pub updated_at: String,
    /// The process that wrote it.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// Fields a newer version wrote (kept).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `<dir>/.orca-restore.<volume>.journal` (volume names are plain file names).
pub fn path_for(dir: &Path, volume: &str) -> PathBuf {
    dir.join(format!(".orca-restore.{volume}.journal"))
}

/// Whether a file name is a journal's.
pub fn is_journal_name(name: &str) -> bool {
    name.starts_with(".orca-restore.") && name.ends_with(".journal")
}

impl Journal {
    /// Write it (atomically: a crash leaves the previous version or this one).
    pub fn save(&mut self, path: &Path) -> anyhow::Result<()> {
        self.updated_at = now();
        let mut bytes = serde_json::to_vec_pretty(self).expect("a journal serializes");
        bytes.push(b'\n');
        crate::fsutil::write_atomic(path, &bytes).map_err(|e| {
            e.context(format!(
                "cannot write the restore journal {}",
                path.display()
            ))
        })
    }

    /// Move to `phase` and write it.
    pub fn enter(&mut self, phase: Phase, path: &Path) -> anyhow::Result<()> {
        self.phase = phase;
        self.save(path)
    }

    /// Read a journal.
    pub fn load(path: &Path) -> anyhow::Result<Journal> {
        let bytes = std::fs::read(path).map_err(|e| {
            crate::err!(
                Failure,
                "cannot read the restore journal {}: {e}",
                path.display()
            )
        })?;
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| {
            crate::err!(
                Failure,
                "the restore journal {} is damaged ({e}); look at it, then remove it by hand",
                path.display()
            )
        })?;
        if j.format_version != FORMAT_VERSION {
            crate::fail!(
                Failure,
                "the restore journal {} has format {}, which this orca-restore does not know (use the version that wrote it)",
                path.display(),
                j.format_version
            );
        }
        Ok(j)
    }

    /// Remove it (the restore has ended); the directory is synced so the
    /// removal survives a crash.
    pub fn remove(path: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => crate::fsutil::sync_dir(crate::fsutil::parent_dir(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::Error::from(e).context(format!(
                "cannot remove the restore journal {}",
                path.display()
            ))),
        }
    }
}

/// The current time for journal fields.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether the journal at `path` cannot be looked at: its directory is
/// missing or unreadable (a backups directory on a disk not mounted now,
/// another user's), so whether it exists is unknown.
pub fn unseen(path: &Path) -> bool {
    match path.try_exists() {
        Ok(true) => false,
        Err(_) => true,
        Ok(false) => path
            .parent()
            .is_none_or(|dir| std::fs::read_dir(dir).is_err()),
    }
}

/// The journals in a backups directory (interrupted restores), in name order;
/// why each one that cannot be read is left out goes to `warnings`.
pub fn in_dir(dir: &Path, warnings: &mut Vec<String>) -> Vec<(PathBuf, Journal)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_journal_name))
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| match Journal::load(&p) {
            Ok(j) => Some((p, j)),
            Err(e) => {
                warnings.push(format!("{e:#}"));
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), "orca.apphost-1-sql-data");
        assert!(is_journal_name(path.file_name().unwrap().to_str().unwrap()));
        let mut j = Journal {
            format_version: FORMAT_VERSION,
            volume: "orca.apphost-1-sql-data".into(),
            new_volume: false,
            volume_driver: "local".into(),
            volume_options: BTreeMap::new(),
            volume_labels: BTreeMap::new(),
            archive: "/b/a.tar.gz".into(),
            archive_sha256: "ab".into(),
            safety_backup: Some("/b/s.tar.zst".into()),
            safety_sha256: None,
            stopped_containers: vec![],
            phase: Phase::Stopping,
            started_at: now(),
            updated_at: String::new(),
            pid: 1,
            host: "h".into(),
            extra: serde_json::Map::new(),
        };
        j.enter(Phase::Extracting, &path).unwrap();
        let back = Journal::load(&path).unwrap();
        assert_eq!(back.phase, Phase::Extracting);
        assert!(back.phase.changed() && !Phase::Saving.changed());
        let mut warnings = Vec::new();
        assert_eq!(in_dir(dir.path(), &mut warnings).len(), 1);
        std::fs::write(path_for(dir.path(), "broken"), "{").unwrap();
        assert_eq!(in_dir(dir.path(), &mut warnings).len(), 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        Journal::remove(&path).unwrap();
        Journal::remove(&path).unwrap();
        assert!(in_dir(dir.path(), &mut Vec::new()).is_empty());
    }
}
