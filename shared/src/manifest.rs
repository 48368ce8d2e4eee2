//! The manifest beside each archive: `<archive>.json`.
//!
//! orca-export writes it (atomically, once the archive is in place); orca-verify
//! records its latest result in it; orca-list, orca-prune and orca-restore read
//! it. It is never required (archives made by other means have none) and never
//! trusted over the archive: a corrupt or foreign `.json` is a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::docker::ContainerRef;

/// The manifest format this version writes.
pub const FORMAT_VERSION: u32 = 1;

/// A container that used the volume when the backup was taken.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerAtBackup {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its image (SQL Server's, for Orca).
    pub image: String,
    /// Its state before the backup.
    pub state: String,
    /// Whether orca stopped it for the backup (and started it again).
    pub stopped_for_backup: bool,
    /// Where it mounts the volume (`/var/opt/mssql` for SQL Server): where a
    /// drill mounts the scratch copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
}

impl ContainerAtBackup {
    /// From a container and whether it was stopped.
    pub fn new(c: &ContainerRef, stopped: bool) -> Self {
        ContainerAtBackup {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            stopped_for_backup: stopped,
            mount_point: None,
        }
    }
}

/// The latest verification of the archive.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verification {
    /// All checks passed.
    pub verified: bool,
    /// When (UTC, RFC 3339).
    pub verified_at: String,
    /// Names of the checks that failed.
    #[serde(default)]
    pub failed_checks: Vec<String>,
}

/// Everything recorded about a backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format_version: u32,
    /// The archive's file name.
    pub backup_name: String,
    /// The volume backed up.
    pub volume: String,
    /// Its driver.
    #[serde(default)]
    pub volume_driver: String,
    /// Its labels.
    #[serde(default)]
    pub volume_labels: BTreeMap<String, String>,
    /// When the backup started (UTC, RFC 3339).
    pub created_at: String,
    /// The same moment in the local time of the machine that made it.
    #[serde(default)]
    pub created_at_local: String,
    /// timestamped or named.
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Labels to find it by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// gzip, zstd or none.
    pub compression: String,
    /// The compression level.
    #[serde(default)]
    pub compression_level: i64,
    /// Archive size.
    pub size_bytes: u64,
    /// Archive SHA-256.
    pub sha256: String,
    /// Size of the tar stream.
    pub uncompressed_bytes: u64,
    /// Tar entries.
    pub entries: u64,
    /// Containers that used the volume.
    #[serde(default)]
    pub containers: Vec<ContainerAtBackup>,
    /// A consistent copy (`consistency` is offline or stopped).
    pub consistent: bool,
    /// How the files were copied (absent in manifests made before orca
    /// recorded it: see [`Manifest::consistency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::consistency::Consistency>,
    /// For a hot copy: the engine, the method, the databases covered and how
    /// long writes were held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot: Option<crate::consistency::HotCopy>,
    /// orca-backup's version.
    pub toolkit_version: String,
    /// The Docker engine's version.
    #[serde(default)]
    pub docker_version: String,
    /// The latest verification, if any.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// Fingerprints of the `sa` password of the containers on the volume
    /// (never the password; see [`crate::sapassword`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sa_password: Vec<crate::sapassword::Fingerprint>,
    /// How the archive is encrypted (absent: it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
    /// The restore drills run on it, oldest first, as orca-drill wrote them.
    /// Read here, never written back from here: orca-drill owns the field
    /// and [`write`] keeps what the file holds.
    #[serde(default, skip_serializing, deserialize_with = "lenient_drills")]
    pub drills: Vec<DrillSummary>,
}

/// What the catalog and retention need of a drill.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DrillSummary {
    /// When it ran (UTC, RFC 3339).
    #[serde(default)]
    pub at: String,
    /// The database started and every check passed.
    #[serde(default)]
    pub ok: bool,
}

impl Manifest {
    /// How the files were copied: as recorded, else as `consistent` and the
    /// stopped containers say.
    pub fn consistency(&self) -> crate::consistency::Consistency {
        self.consistency.unwrap_or_else(|| {
            crate::consistency::Consistency::derived(
                self.consistent,
                self.containers.iter().any(|c| c.stopped_for_backup),
            )
        })
    }

    /// The newest drill, if any.
    pub fn last_drill(&self) -> Option<&DrillSummary> {
        self.drills.last()
    }
}

/// Drills that do not read as drills are skipped, not an error: the field
/// belongs to another tool (and maybe another version).
fn lenient_drills<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DrillSummary>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|i| serde_json::from_value(i).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// What a manifest says of an encrypted archive: public facts only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// `age` (age-encryption.org/v1).
    pub format: String,
    /// The recipients' public keys (empty for a passphrase).
    pub recipients: Vec<String>,
    /// Encrypted with a passphrase (scrypt).
    pub passphrase: bool,
}

/// `<archive>.json`.
pub fn path_for(archive: &Path) -> PathBuf {
    let mut s = archive.as_os_str().to_os_string();
    s.push(".json");
    PathBuf::from(s)
}

/// What reading a manifest gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// No `.json` beside the archive.
    Missing,
    /// A valid manifest of ours that describes this archive.
    Valid(Box<Manifest>),
    /// Something else: why it is ignored.
    Ignored(String),
}

impl Read {
    /// The manifest, when valid.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Read::Valid(m) => Some(m),
            _ => None,
        }
    }

    /// The warning to show, when the file is there but ignored.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Read::Ignored(w) => Some(w),
            _ => None,
        }
    }
}

/// Read the manifest beside `archive`, never failing.
pub fn read(archive: &Path) -> Read {
    let path = path_for(archive);
    let bytes = match std::fs::symlink_metadata(&path) {
        Err(_) => return Read::Missing,
        Ok(m) if !m.file_type().is_file() => {
            return Read::Ignored(format!("{} is not a regular file; ignored", path.display()));
        }
        Ok(_) => match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                return Read::Ignored(format!("cannot read {}: {e}; ignored", path.display()));
            }
        },
    };
    let name = archive.file_name().and_then(|n| n.to_str()).unwrap_or("");
    parse(&bytes, name, &path.display().to_string())
}

/// Judge the bytes of a manifest that should describe the archive named
/// `archive_name`; `shown` names where they came from (a path, a URL).
pub fn parse(bytes: &[u8], archive_name: &str, shown: &str) -> Read {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Read::Ignored(format!("{shown} is not valid JSON ({e}); ignored"));
        }
    };
    if value.get("format_version").and_then(|v| v.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
        return Read::Ignored(format!(
            "{shown} is not an orca manifest (format_version 1); ignored"
        ));
    }
    let m: Manifest = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => {
            return Read::Ignored(format!("{shown} is a damaged orca manifest ({e}); ignored"));
        }
    };
    if m.backup_name != archive_name {
        return Read::Ignored(format!(
            "{shown} describes another archive ({}); ignored",
            m.backup_name
        ));
    }
    Read::Valid(Box::new(m))
}

/// Change the fields of the manifest beside `archive` that [`Manifest`] does
/// not own (`copies`, `drills`), atomically, keeping every other field as it
/// is. Does nothing (returns false) when there is no valid manifest there.
pub fn update_raw(
    archive: &Path,
    change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> anyhow::Result<bool> {
    if read(archive).manifest().is_none() {
        return Ok(false);
    }
    let path = path_for(archive);
    let bytes = std::fs::read(&path)?;
    let serde_json::Value::Object(mut map) = serde_json::from_slice(&bytes)? else {
        return Ok(false);
    };
    change(&mut map);
    let mut out = serde_json::to_vec_pretty(&map).expect("a JSON map serializes");
    out.push(b'\n');
    crate::fsutil::write_atomic(&path, &out)?;
    Ok(true)
}

/// Serialize a manifest for writing.
pub fn to_bytes(m: &Manifest) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(m).expect("a manifest serializes");
    bytes.push(b'\n');
    bytes
}

/// Write (or replace) the manifest beside `archive`, atomically, keeping
/// every field of the existing manifest this version does not own (what a
/// newer version or another tool wrote: copies, drills...), in its place.
pub fn write(archive: &Path, m: &Manifest) -> anyhow::Result<()> {
    let path = path_for(archive);
    let existing = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let bytes = match existing {
        Some(serde_json::Value::Object(old)) => merged(old, m),
        _ => to_bytes(m),
    };
    crate::fsutil::write_atomic(&path, &bytes)
}

/// `old` with the fields `m` owns replaced (in place) or added (at the end).
fn merged(mut old: serde_json::Map<String, serde_json::Value>, m: &Manifest) -> Vec<u8> {
    let serde_json::Value::Object(ours) = serde_json::to_value(m).expect("a manifest serializes")
    else {
        unreachable!("a manifest serializes to an object");
    };
    for (key, value) in ours {
        old.insert(key, value);
    }
    let mut bytes = serde_json::to_vec_pretty(&old).expect("a JSON map serializes");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: 1,
            backup_name: "orca-db-x.tar.gz".into(),
            volume: "v".into(),
            volume_driver: "local".into(),
            volume_labels: BTreeMap::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            created_at_local: "2026-01-01T01:00:00+01:00".into(),
            kind: "named".into(),
            description: Some("before the migration".into()),
            tags: vec!["migration".into()],
            compression: "gzip".into(),
            compression_level: 6,
            size_bytes: 1,
            sha256: "ab".into(),
            uncompressed_bytes: 2,
            entries: 3,
            containers: vec![],
            consistent: true,
            consistency: None,
            hot: None,
            toolkit_version: "0.1.0".into(),
            docker_version: "28".into(),
            verification: None,
            sa_password: vec![],
            encryption: None,
            drills: vec![],
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("orca-db-x.tar.gz");
        assert_eq!(read(&archive), Read::Missing);
        write(&archive, &sample()).unwrap();
        assert_eq!(read(&archive).manifest(), Some(&sample()));
        std::fs::write(path_for(&archive), b"{not json").unwrap();
        assert!(read(&archive).warning().unwrap().contains("not valid JSON"));
        std::fs::write(path_for(&archive), br#"{"name":"someone else's"}"#).unwrap();
        assert!(
            read(&archive)
                .warning()
                .unwrap()
                .contains("not an orca manifest")
        );
        let mut other = sample();
        other.backup_name = "orca-db-y.tar.gz".into();
        write(&archive, &other).unwrap();
        assert!(
            read(&archive)
                .warning()
                .unwrap()
                .contains("another archive")
        );
        std::fs::write(
            path_for(&archive),
            br#"{"format_version":1,"backup_name":3}"#,
        )
        .unwrap();
        assert!(read(&archive).warning().unwrap().contains("damaged"));
    }

    #[test]
    fn rewriting_keeps_fields_it_does_not_own_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("orca-db-x.tar.gz");
        let mut v = serde_json::to_value(sample()).unwrap();
        let obj = v.as_object_mut().unwrap();
        let mut with_extra = serde_json::Map::new();
        for (k, val) in obj.iter() {
            with_extra.insert(k.clone(), val.clone());
            if k == "volume" {
                with_extra.insert("copies".into(), serde_json::json!([{"url": "s3://b/x"}]));
            }
        }
        with_extra.insert("drills".into(), serde_json::json!([{"ok": true}]));
        std::fs::write(
            path_for(&archive),
            serde_json::to_vec(&serde_json::Value::Object(with_extra)).unwrap(),
        )
        .unwrap();
        let mut m = read(&archive).manifest().unwrap().clone();
        m.verification = Some(Verification {
            verified: true,
            verified_at: "2026-11-27T00:00:00Z".into(),
            failed_checks: vec![],
        });
        write(&archive, &m).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path_for(&archive)).unwrap()).unwrap();
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        assert_eq!(at("copies"), at("volume") + 1, "{keys:?}");
        assert_eq!(back["drills"], serde_json::json!([{"ok": true}]));
        assert_eq!(back["verification"]["verified"], true);
        assert_eq!(read(&archive).manifest(), Some(&m));
    }
}
