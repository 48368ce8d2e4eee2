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

/// The archive an argument names: a file that exists, as it is; else a
/// backup's name as `orca-list` prints it (`orca-db-x.tar.gz`), or only its
/// custom part (`x`), looked up in `backups_dir` in any of its forms
/// (compression, encryption). Nothing found is exit 19, naming the closest
/// names there. `Ok((path, true))`: found in the backups directory.
pub fn resolve(arg: &Path, backups_dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    if fs::symlink_metadata(arg).is_ok() {
        return Ok((arg.to_path_buf(), false));
    }
    let shown = arg.display().to_string();
    // A bare name is looked up in the backups directory; a path, in its own
    // directory (the same backup in another form: compression, encryption).
    let bare =
        arg.components().count() == 1 && arg.file_name().is_some_and(|n| n == arg.as_os_str());
    let (dir, given) = if bare {
        (backups_dir, arg.to_str().unwrap_or_default())
    } else {
        (
            arg.parent().unwrap_or(Path::new(".")),
            arg.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
        )
    };
    if !given.is_empty() {
        let exact = dir.join(given);
        if fs::symlink_metadata(&exact).is_ok_and(|m| m.file_type().is_file()) {
            return Ok((exact, bare));
        }
    }
    // Only now the catalog (it reads every manifest).
    let scan = scan(dir).unwrap_or_default();
    if !given.is_empty() {
        // The name in another form, or (bare) only its custom part.
        let prefixed = format!("{}{given}", names::PREFIX);
        let stem = match BackupFileName::parse(given) {
            Some(b) => Some(b.stem),
            None if bare => Some(
                BackupFileName::parse(&prefixed)
                    .map(|b| b.stem)
                    .unwrap_or_else(|| {
                        given
                            .strip_prefix(names::PREFIX)
                            .unwrap_or(given)
                            .to_string()
                    }),
            ),
            None => None,
        };
        let matches: Vec<&Found> = scan
            .backups
            .iter()
            .filter(|b| stem.is_some() && BackupFileName::parse(&b.name).map(|p| p.stem) == stem)
            .collect();
        match matches.as_slice() {
            [one] => return Ok((one.path.clone(), true)),
            [] => {}
            several => crate::fail!(
                Usage,
                "backup '{shown}' exists in several forms in {}: {}; name the one you mean",
                dir.display(),
                several
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    // Close by the whole name, or by the custom part alone (a mistyped
    // `befor-migration` is close to `orca-db-before-migration.tar.zst`).
    let key = given.to_lowercase();
    let key_stem = stem_of(given).to_lowercase();
    let mut near: Vec<(f64, &str)> = scan
        .backups
        .iter()
        .map(|b| {
            let whole = strsim::jaro_winkler(&key, &b.name.to_lowercase());
            let part = strsim::jaro_winkler(&key_stem, &stem_of(&b.name).to_lowercase());
            (whole.max(part), b.name.as_str())
        })
        .filter(|(score, _)| *score >= 0.7)
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let hint = if near.is_empty() {
        if scan.backups.is_empty() {
            format!("there are no backups in {}", dir.display())
        } else {
            format!("none in {} is close (orca-list shows them)", dir.display())
        }
    } else {
        format!(
            "the closest in {}: {}",
            dir.display(),
            near.iter()
                .take(3)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    crate::fail!(
        NoSuchBackup,
        "no such backup: '{shown}' is not a file{}; {hint}",
        if bare {
            ", nor a backup's name in the backups directory"
        } else {
            ""
        }
    )
}

/// The custom part of a backup's name (`x` of `orca-db-x.tar.gz.age`), or
/// the text without orca's prefix and archive extensions.
fn stem_of(name: &str) -> String {
    if let Some(b) = BackupFileName::parse(name) {
        return b.stem;
    }
    let mut s = name.strip_prefix(names::PREFIX).unwrap_or(name);
    for ext in [".age", ".gz", ".zst", ".tar"] {
        s = s.strip_suffix(ext).unwrap_or(s);
    }
    s.to_string()
}

/// Newest first; equal times by name, so the order is total.
pub fn sort(backups: &mut [Found]) {
    backups.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then_with(|| names::minute_seq(&b.name).cmp(&names::minute_seq(&a.name)))
            .then_with(|| b.name.cmp(&a.name))
    });
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
    // A manifest that says "named" is believed: a milestone named like the
    // N-th timestamped backup of a minute (`...-14-30-2`) by an older orca
    // stays a milestone, never judged by the time in its name.
    let named_by_manifest = manifest.manifest().is_some_and(|m| m.kind == "named");
    let kind = if named_by_manifest {
        Kind::Named
    } else {
        parsed.kind()
    };
    let time = match parsed
        .timestamp
        .filter(|_| kind == Kind::Timestamped)
        .and_then(names::local_instant)
    {
        Some(t) => t.with_timezone(&Utc),
        None => from_manifest.unwrap_or(modified),
    };
    Some(Found {
        manifest,
        compression: parsed.compression,
        encrypted: parsed.encrypted,
        modified,
        kind,
        path,
        name: name.to_string(),
        time,
        size_bytes,
        sidecars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ErrorKind, kind_of};

    #[test]
    fn names_resolve_in_the_backups_directory() {
        let b = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let cwd_relative = |name: &str| elsewhere.path().join("no-such-dir").join(name);
        fs::write(b.path().join("orca-db-before-migration.tar.zst"), b"x").unwrap();
        fs::write(b.path().join("orca-db-2026-01-02-03-04.tar.gz"), b"x").unwrap();
        let want = b.path().join("orca-db-before-migration.tar.zst");
        // As orca-list prints it, in another form, or only the custom part.
        for arg in [
            "orca-db-before-migration.tar.zst",
            "orca-db-before-migration.tar.gz",
            "before-migration",
            "orca-db-before-migration",
        ] {
            assert_eq!(
                resolve(Path::new(arg), b.path()).unwrap(),
                (want.clone(), true),
                "{arg}"
            );
        }
        // A path that exists is itself.
        let p = elsewhere.path().join("x.tar.gz");
        fs::write(&p, b"x").unwrap();
        assert_eq!(resolve(&p, b.path()).unwrap(), (p, false));
        // A mistyped name: exit 19, with the closest names.
        let e = resolve(Path::new("orca-db-before-migratoin.tar.gz"), b.path()).unwrap_err();
        assert_eq!(kind_of(&e), ErrorKind::NoSuchBackup);
        assert!(
            format!("{e}").contains("orca-db-before-migration.tar.zst"),
            "{e}"
        );
        // A mistyped custom part is close to the backup too.
        let e = resolve(Path::new("befor-migration"), b.path()).unwrap_err();
        assert!(
            format!("{e}").contains("orca-db-before-migration.tar.zst"),
            "{e}"
        );
        // A missing path in a directory with no backups.
        let e = resolve(&cwd_relative("orca-db-x.tar.gz"), b.path()).unwrap_err();
        assert_eq!(kind_of(&e), ErrorKind::NoSuchBackup);
        assert!(format!("{e}").contains("no backups"), "{e}");
    }
}
