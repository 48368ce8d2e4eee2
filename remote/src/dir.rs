//! A directory as a destination (a NAS share, a synced folder, a second
//! disk): files written as orca writes backups (a temporary name, fsync,
//! rename without replacing, fsync of the directory), so the directory is a
//! backups directory of its own that every orca tool can read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use orca_shared::fsutil::{AtomicFile, read_full};
use orca_shared::progress::Progress;
use orca_shared::{ErrorKind, fail};
use sha2::{Digest, Sha256};

use crate::{Object, Sent};

const CHUNK: usize = 1 << 20;

/// An opened destination directory.
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// Open `dir`, which must exist (a missing share is not created: it
    /// usually means the share is not mounted).
    pub fn open(dir: &Path) -> anyhow::Result<DirStore> {
        orca_shared::paths::utf8(dir)?;
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(DirStore {
                dir: dir.to_path_buf(),
            }),
            Ok(_) => fail!(Usage, "destination {} is not a directory", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fail!(
                RemoteNotFound,
                "destination directory {} does not exist (mount the share, or create the directory first)",
                dir.display()
            ),
            Err(e) => Err(anyhow::Error::from(e).context(format!(
                "cannot open destination directory {}",
                dir.display()
            ))),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Regular files directly in the directory.
    pub fn list(&self) -> anyhow::Result<Vec<Object>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", self.dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if let Some(o) = self.stat(&name)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The regular file `name` (a link or directory is not one).
    pub fn stat(&self, name: &str) -> anyhow::Result<Option<Object>> {
        match fs::symlink_metadata(self.file(name)) {
            Ok(m) if m.file_type().is_file() => Ok(Some(Object {
                name: name.to_string(),
                size: m.len(),
                modified: m.modified().ok().map(DateTime::<Utc>::from),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("cannot read {}", self.file(name).display()))),
        }
    }

    /// Write a small file atomically, replacing one of that name.
    pub fn put_small(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        orca_shared::fsutil::write_atomic(&self.file(name), bytes)
    }

    /// Write a small file only if no file of that name exists (an atomic
    /// rename that does not replace): `Ok(Some(token))` written, `Ok(None)` taken.
    pub fn put_small_new(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Option<String>> {
        let target = self.file(name);
        let mut f = orca_shared::fsutil::AtomicFile::create(&target)?;
        f.file()
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", f.temp_path().display()))?;
        match f.commit_new()? {
            None => Ok(Some(file_token(&target).unwrap_or_default())),
            Some(_) => Ok(None),
        }
    }

    /// Copy `local` to `name` atomically, hashing what is read.
    pub fn upload(
        &self,
        local: &Path,
        name: &str,
        expected: Option<&str>,
        overwrite: bool,
        progress: &Progress,
    ) -> anyhow::Result<Sent> {
        let target = self.file(name);
        if !overwrite && target.symlink_metadata().is_ok() {
            fail!(
                AlreadyExists,
                "{} already exists and differs; it was left untouched (pass --overwrite to replace it)",
                target.display()
            );
        }
        let mut src =
            File::open(local).with_context(|| format!("cannot read {}", local.display()))?;
        let mut out = AtomicFile::create(&target)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            orca_shared::interrupt::check()?;
            let n = read_full(&mut src, &mut buf)
                .with_context(|| format!("cannot read {}", local.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.file()
                .write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", out.temp_path().display()))?;
            size += n as u64;
            progress.add(n as u64);
        }
        let sha256 = hex(&hasher.finalize());
        if let Some(want) = expected
            && !want.eq_ignore_ascii_case(&sha256)
        {
            fail!(
                VerificationFailed,
                "{} has SHA-256 {sha256} but its checksum says {want}: it changed or is damaged on disk, so it was not copied",
                local.display()
            );
        }
        out.commit(overwrite)?;
        Ok(Sent {
            size,
            sha256,
            token: file_token(&target),
        })
    }

    /// Stream `name` into `to`.
    pub fn download(
        &self,
        name: &str,
        to: &mut dyn Write,
        progress: Option<&Progress>,
    ) -> anyhow::Result<(u64, String)> {
        let path = self.file(name);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fail!(RemoteNotFound, "{} does not exist", path.display())
            }
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("cannot read {}", path.display()))
                );
            }
        };
        copy_hashing(&mut f, to, progress)
            .with_context(|| format!("cannot read {}", path.display()))
    }

    /// Remove `name` only while it is the file this run wrote (`token`, see
    /// [`file_token`]); `Ok(false)` when another file holds the name now.
    pub fn delete_own(
        &self,
        name: &str,
        token: &str,
        unless_proven: Option<&str>,
    ) -> anyhow::Result<bool> {
        if file_token(&self.file(name)).as_deref() != Some(token) {
            return Ok(false);
        }
        if let Some(sha) = unless_proven
            && let Ok(text) = fs::read_to_string(self.file(&format!("{name}.sha256")))
            && crate::parse_sha256_line(&text, name).is_some_and(|h| h.eq_ignore_ascii_case(sha))
        {
            return Ok(false);
        }
        self.delete(name).map(|()| true)
    }

    /// Remove `name` (gone already is fine).
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.file(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                let kind = orca_shared::exit::io_kind(&e).unwrap_or(ErrorKind::Failure);
                Err(anyhow::Error::from(e).context(orca_shared::OrcaError::new(
                    kind,
                    format!("cannot delete {}", self.file(name).display()),
                )))
            }
        }
    }
}

/// What tells one file from another put under the same name later: device
/// and inode on Unix; size and modification time elsewhere.
pub fn file_token(path: &Path) -> Option<String> {
    let m = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(format!("{}:{}", m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let t = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!("{}:{}", m.len(), t.as_nanos()))
    }
}

/// Copy `from` into `to`, returning the size and SHA-256 of what passed.
fn copy_hashing(
    from: &mut impl Read,
    to: &mut dyn Write,
    progress: Option<&Progress>,
) -> anyhow::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        orca_shared::interrupt::check()?;
        let n = read_full(from, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        size += n as u64;
        if let Some(p) = progress {
            p.add(n as u64);
        }
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Size and SHA-256 of a local file.
pub fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = File::open(path)?;
    copy_hashing(&mut f, &mut io::sink(), None)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
