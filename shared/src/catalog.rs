//! The backups directory as a catalog: every backup (regular files named
//! `orca-db-*.tar.gz|.tar.zst|.tar`), its sidecars and manifest, and the
//! temporary files of exports in progress or abandoned.
//!
//! Symbolic links and directories never count, whatever their names: a link is
//! not a backup and its target may be anything.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::manifest;
use crate::names::{self, BackupFileName, Compression, Kind};

/// A backup found in the directory.
#[derive(Clone, Debug)]
pub struct Found {
    /// The manifest beside it, as read.
    pub manifest: manifest::Read,
    /// Compression, from the extension.
    pub compression: Compression,
    /// Encrypted (`.age` after the extension).
    pub encrypted: bool,
    /// When the file was last modified.
    pub modified: DateTime<Utc>,
    /// The archive: its path, or for a remote copy its URL.
    pub path: PathBuf,
    /// Its file name.
    pub name: String,
    /// Timestamped or named.
    pub kind: Kind,
    /// Its time: the one in a timestamped name; for a named backup the
    /// manifest's `created_at`, else the file's modification time.
    pub time: DateTime<Utc>,
    /// Archive size.
    pub size_bytes: u64,
    /// Sidecar files that exist (regular files only).
    pub sidecars: Vec<PathBuf>,
}

/// A temporary file left by an export.
#[derive(Clone, Debug)]
pub struct Incomplete {
    /// The file.
    pub path: PathBuf,
    /// Last modified.
    pub modified: DateTime<Utc>,
    /// Size.
    pub size_bytes: u64,
}

/// Everything of ours in a backups directory.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Backups (archives).
    pub backups: Vec<Found>,
    /// Temporary files.
    pub incomplete: Vec<Incomplete>,
}

fn mtime(meta: &fs::Metadata) -> DateTime<Utc> {
    DateTime::<Utc>::from(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

/// List the backups in `dir` (regular files only; links and directories never count).
pub fn scan(dir: &Path) -> anyhow::Result<Scan> {
    let mut found = Scan::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!("cannot list {}", dir.display())));
        }
    };
    for entry in entries {
        let entry = entry.map_err(|e| {
            anyhow::Error::from(e).context(format!("cannot list {}", dir.display()))
        })?;
        let Some(name) = entry.file_name().to_str().map(String::from) else {
            continue; // not UTF-8: not a name we make
        };
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        if names::is_incomplete(&name) {
            found.incomplete.push(Incomplete {
                path,
                modified: mtime(&meta),
                size_bytes: meta.len(),
            });
            continue;
        }
        if BackupFileName::parse(&name).is_none() {
            continue;
        }
        let manifest = manifest::read(&path);
        let sidecars = names::SIDECAR_SUFFIXES
            .iter()
            .map(|s| dir.join(format!("{name}{s}")))
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
            .collect();
        if let Some(b) = backup(&name, path, meta.len(), mtime(&meta), manifest, sidecars) {
            found.backups.push(b);
        }
    }
    sort(&mut found.backups);
    Ok(found)
}

/// Newest first; equal times by name, so the order is total.
pub fn sort(backups: &mut [Found]) {
    backups.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
}

/// The backup a file named `name` is, if it is one: its kind and time from
/// the name, else the manifest, else `modified`. `path` is where it lives (a
/// local path, or the URL of a remote copy); `sidecars` those that exist.
pub fn backup(
    name: &str,
    path: PathBuf,
    size_bytes: u64,
    modified: DateTime<Utc>,
    manifest: manifest::Read,
    sidecars: Vec<PathBuf>,
) -> Option<Found> {
    let parsed = BackupFileName::parse(name)?;
    let from_manifest = manifest
        .manifest()
        .and_then(|m| DateTime::parse_from_rfc3339(&m.created_at).ok())
        .map(|t| t.with_timezone(&Utc));
    let time = match parsed.timestamp.and_then(names::local_instant) {
        Some(t) => t.with_timezone(&Utc),
        None => from_manifest.unwrap_or(modified),
    };
    Some(Found {
        manifest,
        compression: parsed.compression,
        encrypted: parsed.encrypted,
        modified,
        kind: parsed.kind(),
        path,
        name: name.to_string(),
        time,
        size_bytes,
        sidecars,
    })
}
