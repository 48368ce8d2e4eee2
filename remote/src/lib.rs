//! Off-machine copies of backups: where they go, and the few things orca does
//! there (list, upload, read back, download, delete).
//!
//! A destination is `s3://bucket[/prefix]` (any S3-compatible storage, reached
//! through `opendal`, see [`s3`]) or a directory (a path or a `file://` URL:
//! a NAS share, a synced folder, see [`dir`]). A copy is the archive and its
//! sidecars (`.sha256`, `.json`) under the same names as in the backups
//! directory, so a copy directory is itself a backups directory.
//!
//! Every write is atomic: an object or file appears under its final name only
//! when complete (S3's multipart upload completes at once or not at all; a
//! directory copy is written under a temporary name, fsynced and renamed), and
//! a failed upload is aborted. orca-copy, orca-list, orca-prune and
//! orca-restore share this crate.

pub mod dir;
pub mod s3;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use orca_shared::catalog::{self, Scan};
use orca_shared::config::Config;
use orca_shared::progress::Progress;
use orca_shared::{err, fail, manifest, names};

/// Sidecars are small: a manifest or a checksum line larger than this is not ours.
pub const MAX_SIDECAR_BYTES: u64 = 4 << 20;

/// Where copies go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An S3 bucket, and a prefix inside it (empty, or ending with `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix: `""` or `"a/b/"`.
        prefix: String,
    },
    /// A directory.
    Dir(PathBuf),
}

impl Location {
    /// Parse a destination: `s3://bucket[/prefix]`, `file:///path`, or a path.
    pub fn parse(text: &str) -> anyhow::Result<Location> {
        let t = text.trim();
        if t.is_empty() {
            fail!(
                Usage,
                "an empty destination: give s3://bucket[/prefix] or a directory"
            );
        }
        if let Some(rest) = strip_scheme(t, "s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket, t)?;
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") {
                fail!(
                    Usage,
                    "destination {t:?}: a prefix cannot hold '.' or '..' parts"
                );
            }
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some(rest) = strip_scheme(t, "file://") {
            return Ok(Location::Dir(absolute(file_url_path(rest, t)?)?));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            fail!(
                Usage,
                "destination {t:?}: {scheme}:// is not supported; use s3://bucket[/prefix] (any S3-compatible storage) or a directory"
            );
        }
        Ok(Location::Dir(absolute(PathBuf::from(t))?))
    }

    /// The destination as a URL: `s3://bucket/prefix` or the directory path.
    pub fn url(&self) -> String {
        match self {
            Location::S3 { bucket, prefix } => {
                format!("s3://{bucket}/{}", prefix.trim_end_matches('/'))
                    .trim_end_matches('/')
                    .to_string()
            }
            Location::Dir(d) => d.display().to_string(),
        }
    }

    /// The URL (or path) of `name` there.
    pub fn url_of(&self, name: &str) -> String {
        match self {
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}{name}"),
            Location::Dir(d) => d.join(name).display().to_string(),
        }
    }
}

/// A directory as an absolute path (copies record where they are, not where
/// the tool happened to run).
fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(&p)
        .map_err(|e| orca_shared::err!(Usage, "destination {}: {e}", p.display()))
}

fn strip_scheme<'a>(t: &'a str, scheme: &str) -> Option<&'a str> {
    // `get`: a path whose first bytes are not whole characters is no URL.
    t.get(..scheme.len())
        .filter(|head| head.eq_ignore_ascii_case(scheme))
        .and_then(|_| t.get(scheme.len()..))
}

/// The rules S3 gives bucket names (3-63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit); S3-compatible servers follow them too.
fn check_bucket(bucket: &str, url: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        fail!(
            Usage,
            "destination {url:?}: {bucket:?} is not a valid bucket name (3-63 lower-case letters, digits, '.' and '-'); the form is s3://bucket[/prefix]"
        );
    }
    Ok(())
}

/// The path of a `file://` URL (`file:///srv/x`, `file:///C:/x`, `file://host/share/x`).
fn file_url_path(rest: &str, url: &str) -> anyhow::Result<PathBuf> {
    if rest.contains('%') || rest.contains('?') || rest.contains('#') {
        fail!(
            Usage,
            "destination {url:?}: percent-escapes, '?' and '#' are not supported in file:// URLs; give the directory as a plain path"
        );
    }
    let drive = |p: &str| {
        let b = p.as_bytes();
        b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
    };
    if let Some(local) = rest.strip_prefix('/') {
        // file:///C:/x on Windows: the drive letter follows the third slash.
        if cfg!(windows) && drive(local) {
            return Ok(PathBuf::from(local));
        }
        return Ok(PathBuf::from(format!("/{local}")));
    }
    if drive(rest) {
        fail!(
            Usage,
            "destination {url:?}: a drive letter needs three slashes (file:///{rest}), or give the directory as a plain path"
        );
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.eq_ignore_ascii_case("localhost") {
        if cfg!(windows) && drive(path) {
            return Ok(PathBuf::from(path));
        }
        return Ok(PathBuf::from(format!("/{path}")));
    }
    if cfg!(windows) && !host.is_empty() {
        return Ok(PathBuf::from(format!(
            r"\\{host}\{}",
            path.replace('/', "\\")
        )));
    }
    fail!(
        Usage,
        "destination {url:?}: a file:// URL names a local directory (file:///path); for a share, mount it and give its path"
    )
}

/// Whether `text` names a remote copy (`s3://...` or `file://...`) rather
/// than a local path.
pub fn is_url(text: &str) -> bool {
    strip_scheme(text, "s3://").is_some() || strip_scheme(text, "file://").is_some()
}

/// Split the URL of a copy (`s3://bucket/prefix/orca-db-x.tar.gz`,
/// `file:///dir/orca-db-x.tar.gz`) into where it is and its name.
pub fn split_object_url(text: &str) -> anyhow::Result<(Location, String)> {
    let t = text.trim();
    let (head, name) = match t.rsplit_once('/') {
        Some((h, n)) if !n.is_empty() => (h, n),
        _ => fail!(
            Usage,
            "{t:?} names no backup: give the URL of an archive, e.g. s3://bucket/prefix/orca-db-NAME.tar.gz"
        ),
    };
    if names::BackupFileName::parse(name).is_none() {
        fail!(
            Usage,
            "{t:?}: {name:?} is not a backup name (orca-db-*.tar.gz, .tar.zst, .tar, each maybe with .age)"
        );
    }
    let loc = if strip_scheme(t, "s3://").is_some() && !head.contains('/') {
        // s3://bucket/name: the bucket itself, no prefix.
        Location::parse(&format!("{head}/"))?
    } else {
        Location::parse(head)?
    };
    Ok((loc, name.to_string()))
}

/// A file at a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its name (no prefix).
    pub name: String,
    /// Its size.
    pub size: u64,
    /// When it was last written, when the storage says.
    pub modified: Option<DateTime<Utc>>,
}

/// What an upload sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Bytes.
    pub size: u64,
    /// SHA-256 (hex) of the bytes read from the local file and sent.
    pub sha256: String,
    /// What identifies the object this run wrote (S3's ETag; a directory
    /// copy's device and inode), so that only it is ever removed again.
    pub token: Option<String>,
}

/// An opened destination.
pub struct Remote {
    location: Location,
    backend: Backend,
}

enum Backend {
    S3(Box<s3::S3Store>),
    Dir(dir::DirStore),
}

impl Remote {
    /// Open `location`, reaching S3 with the config's `s3.*` and the standard
    /// AWS settings. `tool` prefixes warnings.
    pub fn open(location: Location, config: &Config, tool: &str) -> anyhow::Result<Remote> {
        let backend = match &location {
            Location::S3 { bucket, prefix } => {
                Backend::S3(Box::new(s3::S3Store::open(bucket, prefix, config, tool)?))
            }
            Location::Dir(d) => Backend::Dir(dir::DirStore::open(d)?),
        };
        Ok(Remote { location, backend })
    }

    /// Open the destination a `--remote URL` flag names.
    pub fn open_url(url: &str, config: &Config, tool: &str) -> anyhow::Result<Remote> {
        Remote::open(Location::parse(url)?, config, tool)
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The files directly there (not in sub-prefixes or subdirectories).
    pub fn list(&self) -> anyhow::Result<Vec<Object>> {
        match &self.backend {
            Backend::S3(s) => s.list(),
            Backend::Dir(d) => d.list(),
        }
    }

    /// The file `name`, if it is there.
    pub fn stat(&self, name: &str) -> anyhow::Result<Option<Object>> {
        match &self.backend {
            Backend::S3(s) => s.stat(name),
            Backend::Dir(d) => d.stat(name),
        }
    }

    /// A small file (a sidecar), if it is there.
    pub fn get_small(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(obj) = self.stat(name)? else {
            return Ok(None);
        };
        if obj.size > MAX_SIDECAR_BYTES {
            fail!(
                Failure,
                "{} is {} bytes, too large for a sidecar of orca's; ignored",
                self.location.url_of(name),
                obj.size
            );
        }
        let mut out = Vec::with_capacity(obj.size as usize);
        match self.download(name, &mut out, None) {
            Ok(_) => Ok(Some(out)),
            Err(e) if orca_shared::exit::kind_of(&e) == orca_shared::ErrorKind::RemoteNotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Write a small file atomically (replacing one of that name).
    pub fn put_small(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        match &self.backend {
            Backend::S3(s) => s.put_small(name, bytes),
            Backend::Dir(d) => d.put_small(name, bytes),
        }
    }

    /// Write a small file only if no file of that name is there: the claim
    /// of a name two writers may race for (one PUT with `If-None-Match: *`,
    /// which servers decide atomically; a rename that does not replace, in a
    /// directory). `Ok(Some(token))`: written (see [`Remote::remove_own`]);
    /// `Ok(None)`: taken.
    pub fn put_small_new(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Option<String>> {
        match &self.backend {
            Backend::S3(s) => s.put_small_new(name, bytes),
            Backend::Dir(d) => d.put_small_new(name, bytes),
        }
    }

    /// Copy the local file `local` there as `name`, atomically: streamed, with
    /// bounded memory, hashed as it is read. When `expected_sha256` is given
    /// and what was read differs, the upload is abandoned (nothing appears
    /// under `name`) and the error is a verification failure. `overwrite`
    /// allows replacing an existing `name`.
    pub fn upload(
        &self,
        local: &Path,
        name: &str,
        expected_sha256: Option<&str>,
        overwrite: bool,
        progress: &Progress,
    ) -> anyhow::Result<Sent> {
        match &self.backend {
            Backend::S3(s) => s.upload(local, name, expected_sha256, overwrite, progress),
            Backend::Dir(d) => d.upload(local, name, expected_sha256, overwrite, progress),
        }
    }

    /// Stream `name` into `to`, returning its size and SHA-256.
    pub fn download(
        &self,
        name: &str,
        to: &mut dyn Write,
        progress: Option<&Progress>,
    ) -> anyhow::Result<(u64, String)> {
        match &self.backend {
            Backend::S3(s) => s.download(name, to, progress),
            Backend::Dir(d) => d.download(name, to, progress),
        }
    }

    /// Read `name` back and return its size and SHA-256 (the check of a copy).
    pub fn read_back(
        &self,
        name: &str,
        progress: Option<&Progress>,
    ) -> anyhow::Result<(u64, String)> {
        self.download(name, &mut std::io::sink(), progress)
    }

    /// Remove `name` (gone already is fine).
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::S3(s) => s.delete(name, true),
            Backend::Dir(d) => d.delete(name),
        }
    }

    /// Remove what this run put there and must not leave (an unchecked
    /// copy): runs to its deadline even after Ctrl-C.
    pub fn remove_unfinished(&self, name: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::S3(s) => s.delete(name, false),
            Backend::Dir(d) => d.delete(name),
        }
    }

    /// Remove `name` only if it is still the object this run wrote (`token`
    /// from [`Sent`]); another writer's object stays. Runs to its deadline
    /// even after Ctrl-C. `Ok(false)`: it was not ours, or is gone.
    ///
    /// With `unless_proven` (a SHA-256), it also stays when its checksum
    /// sidecar names those bytes: another run of the same bytes read it back
    /// and recorded it meanwhile. Checked as cleanup, also after Ctrl-C.
    pub fn remove_own(
        &self,
        name: &str,
        token: Option<&str>,
        unless_proven: Option<&str>,
    ) -> anyhow::Result<bool> {
        let Some(token) = token else {
            return Ok(false);
        };
        match &self.backend {
            Backend::S3(s) => s.delete_own(name, token, unless_proven),
            Backend::Dir(d) => d.delete_own(name, token, unless_proven),
        }
    }

    /// The local directory, for a directory destination.
    pub fn dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Dir(d) => Some(d.path()),
            Backend::S3(_) => None,
        }
    }

    /// The backups there, as the local catalog lists a backups directory:
    /// from their names, sizes and manifests (`path` is each one's URL).
    pub fn catalog(&self) -> anyhow::Result<Scan> {
        if let Backend::Dir(d) = &self.backend {
            return catalog::scan(d.path());
        }
        let objects = self.list()?;
        let present: std::collections::HashSet<&str> =
            objects.iter().map(|o| o.name.as_str()).collect();
        let mut scan = Scan::default();
        for o in &objects {
            if names::BackupFileName::parse(&o.name).is_none() {
                continue;
            }
            let sidecar_names: Vec<String> = names::SIDECAR_SUFFIXES
                .iter()
                .map(|s| format!("{}{s}", o.name))
                .filter(|n| present.contains(n.as_str()))
                .collect();
            let json = format!("{}.json", o.name);
            let manifest = if present.contains(json.as_str()) {
                match self.get_small(&json) {
                    Ok(Some(bytes)) => {
                        manifest::parse(&bytes, &o.name, &self.location.url_of(&json))
                    }
                    Ok(None) => manifest::Read::Missing,
                    Err(e) => manifest::Read::Ignored(format!(
                        "cannot read {}: {}; ignored",
                        self.location.url_of(&json),
                        orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e))
                    )),
                }
            } else {
                manifest::Read::Missing
            };
            let modified = o.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            let sidecars = sidecar_names
                .iter()
                .map(|n| PathBuf::from(self.location.url_of(n)))
                .collect();
            if let Some(b) = catalog::backup(
                &o.name,
                PathBuf::from(self.location.url_of(&o.name)),
                o.size,
                modified,
                manifest,
                sidecars,
            ) {
                scan.backups.push(b);
            }
        }
        catalog::sort(&mut scan.backups);
        Ok(scan)
    }

    /// The expected SHA-256 of the copy `name`: its `.sha256` sidecar, else
    /// its manifest's; `None` when neither exists.
    pub fn expected_sha256(&self, name: &str) -> anyhow::Result<Option<String>> {
        if let Some(bytes) = self.get_small(&format!("{name}.sha256"))? {
            let text = String::from_utf8_lossy(&bytes);
            return match parse_sha256_line(&text, name) {
                Some(h) => Ok(Some(h)),
                None => fail!(
                    VerificationFailed,
                    "{} is not a checksum of {name} (a `sha256sum` line): the copy cannot be checked",
                    self.location.url_of(&format!("{name}.sha256"))
                ),
            };
        }
        if let Some(bytes) = self.get_small(&format!("{name}.json"))?
            && let Some(m) = manifest::parse(&bytes, name, "").manifest()
        {
            return Ok(Some(m.sha256.to_ascii_lowercase()));
        }
        Ok(None)
    }
}

/// The hash of a `sha256sum` line (`<64 hex>  <name>`, `*name` for binary
/// mode) that names `name` (or no name).
pub fn parse_sha256_line(text: &str, name: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut parts = line.split_whitespace();
    let hash = parts.next()?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match parts.next().map(|n| n.trim_start_matches('*')) {
        Some(n) if n != name => None,
        _ => Some(hash.to_ascii_lowercase()),
    }
}

/// The `sha256sum` line orca writes for `name`.
pub fn sha256_line(hash: &str, name: &str) -> String {
    format!("{hash}  {name}\n")
}

/// Bring the copy at `url` (an `s3://` or `file://` URL of an archive) into
/// `backups_dir` for a restore or a drill: downloaded under its own name
/// atomically, checked against the copy's `.sha256` (or manifest), with its
/// sidecars. A local file of that name that holds the same bytes is used as
/// it is; one that differs is left alone and refused (exit 5).
pub fn fetch(
    url: &str,
    backups_dir: &Path,
    config: &Config,
    tool: &str,
) -> anyhow::Result<PathBuf> {
    let (location, name) = split_object_url(url)?;
    let remote = Remote::open(location, config, tool)?;
    let Some(obj) = remote.stat(&name)? else {
        fail!(
            RemoteNotFound,
            "{url} does not exist (orca-list --remote {} lists what is there)",
            remote.location().url()
        );
    };
    let Some(expected) = remote.expected_sha256(&name)? else {
        fail!(
            VerificationFailed,
            "{url} has no .sha256 and no manifest beside it, so a download could not be checked: copy it with orca-copy, or download it yourself and restore the file"
        );
    };
    orca_shared::paths::ensure_private_dir(backups_dir)?;
    let local = backups_dir.join(&name);
    if local.symlink_metadata().is_ok() {
        let (_, have) =
            dir::hash_file(&local).with_context(|| format!("cannot read {}", local.display()))?;
        if have != expected {
            fail!(
                AlreadyExists,
                "{} already exists and differs from {url}; it was left untouched (move it away, or restore it by its path)",
                local.display()
            );
        }
        eprintln!(
            "{tool}: {} already holds {url} (same SHA-256); using it",
            local.display()
        );
    } else {
        let shown = Progress::new(&format!("downloading {name}"), Some(obj.size));
        let mut file = orca_shared::fsutil::AtomicFile::create(&local)?;
        let (size, got) = {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file.file());
            let r = remote.download(&name, &mut w, Some(&shown))?;
            w.flush()
                .with_context(|| format!("cannot write {}", local.display()))?;
            r
        };
        shown.finish();
        if got != expected {
            fail!(
                VerificationFailed,
                "the download of {url} ({size} bytes) has SHA-256 {got}, its checksum says {expected}: the copy is damaged; nothing was kept"
            );
        }
        file.commit(false)?;
        eprintln!(
            "{tool}: downloaded {url} to {} ({size} bytes, SHA-256 checked)",
            local.display()
        );
    }
    // The sidecars: the checksum is the copy's (the one just checked); a
    // local manifest is kept only when it describes these very bytes (it
    // may know more: drills, copies), else the copy's replaces it.
    orca_shared::fsutil::write_atomic(
        &backups_dir.join(format!("{name}.sha256")),
        sha256_line(&expected, &name).as_bytes(),
    )?;
    let json = backups_dir.join(format!("{name}.json"));
    let local_fits = manifest::read(&local)
        .manifest()
        .is_some_and(|m| m.sha256.eq_ignore_ascii_case(&expected));
    if !local_fits {
        match remote.get_small(&format!("{name}.json"))? {
            Some(bytes) => orca_shared::fsutil::write_atomic(&json, &bytes)?,
            None => {
                let _ = std::fs::remove_file(&json);
            }
        }
    }
    Ok(local)
}

/// An error for what the user asked, keeping `kind`'s exit code.
pub(crate) fn error(kind: orca_shared::ErrorKind, message: String) -> anyhow::Error {
    anyhow::Error::from(orca_shared::OrcaError::new(kind, message))
}

/// The error of an interrupted transfer.
pub(crate) fn interrupted() -> anyhow::Error {
    err!(Interrupted, "interrupted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Location::parse("s3://orca-backups").unwrap(),
            Location::S3 {
                bucket: "orca-backups".into(),
                prefix: String::new()
            }
        );
        let l = Location::parse("s3://orca-backups/team/laptop/").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                bucket: "orca-backups".into(),
                prefix: "team/laptop/".into()
            }
        );
        assert_eq!(l.url(), "s3://orca-backups/team/laptop");
        assert_eq!(
            l.url_of("orca-db-x.tar.gz"),
            "s3://orca-backups/team/laptop/orca-db-x.tar.gz"
        );
        assert!(Location::parse("s3://A_b").is_err());
        assert!(Location::parse("s3://ok-bucket/../x").is_err());
        assert!(Location::parse("ftp://x/y").is_err());
        assert!(Location::parse("").is_err());
        #[cfg(unix)]
        {
            assert_eq!(
                Location::parse("file:///srv/nas/orca").unwrap(),
                Location::Dir(PathBuf::from("/srv/nas/orca"))
            );
            assert_eq!(
                Location::parse("/srv/nas").unwrap(),
                Location::Dir(PathBuf::from("/srv/nas"))
            );
            assert!(Location::parse("file://server/share").is_err());
        }
    }

    #[test]
    fn object_urls_split() {
        let (l, n) = split_object_url("s3://bkt/p/q/orca-db-x.tar.gz.age").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "p/q/".into()
            }
        );
        assert_eq!(n, "orca-db-x.tar.gz.age");
        let (l, n) = split_object_url("s3://bkt/orca-db-y.tar.zst").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                bucket: "bkt".into(),
                prefix: String::new()
            }
        );
        assert_eq!(n, "orca-db-y.tar.zst");
        assert!(split_object_url("s3://bkt/p/notes.txt").is_err());
        // Paths whose first bytes are not whole characters are paths.
        assert!(!is_url("/tmp/xØ/orca-db-x.tar.gz") && !is_url("abcd€x"));
        assert!(Location::parse("abcd€x").is_ok());
        assert!(split_object_url("s3://bkt/p/").is_err());
        assert!(is_url("S3://x/y") && is_url("file:///x") && !is_url("/x/y"));
    }

    #[test]
    fn checksum_lines_must_name_the_archive() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_sha256_line(&format!("{h}  orca-db-x.tar.gz\n"), "orca-db-x.tar.gz"),
            Some(h.clone())
        );
        assert_eq!(
            parse_sha256_line(&format!("{h} *orca-db-x.tar.gz"), "orca-db-x.tar.gz"),
            Some(h.clone())
        );
        assert_eq!(
            parse_sha256_line(&format!("{h}  other"), "orca-db-x.tar.gz"),
            None
        );
        assert_eq!(
            parse_sha256_line("xyz  orca-db-x.tar.gz", "orca-db-x.tar.gz"),
            None
        );
        assert_eq!(sha256_line(&h, "n"), format!("{h}  n\n"));
    }
}
