//! Writing files so that a final name only ever holds a complete file, and the
//! lock that keeps orca-prune from racing orca-export.
//!
//! Files are written under `<final name>.<random>.incomplete` in the same
//! directory (0600 on Unix, locked while written), fsynced, renamed into place
//! (refusing to replace an existing file unless asked) and the directory fsynced.
//! A temporary file that is dropped without being committed is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::names::INCOMPLETE_SUFFIX;

/// A file being written; becomes `final_path` on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    final_path: PathBuf,
}

impl AtomicFile {
    /// Start writing what will become `final_path`.
    pub fn create(final_path: &Path) -> anyhow::Result<AtomicFile> {
        let dir = parent_dir(final_path);
        let name = file_name(final_path)?;
        let prefix = format!("{name}.");
        let mut builder = tempfile::Builder::new();
        builder
            .prefix(&prefix)
            .suffix(INCOMPLETE_SUFFIX)
            .rand_bytes(6);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let temp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        if let Err(e) = crate::private::restrict(temp.path(), false) {
            eprintln!(
                "warning: cannot make {} private to you: {e}",
                temp.path().display()
            );
        }
        // Marks the file as being written: orca-prune skips temp files it cannot lock.
        if let Err(e) = temp.as_file().try_lock() {
            eprintln!("warning: cannot lock {}: {e}", temp.path().display());
        }
        Ok(AtomicFile {
            temp,
            final_path: final_path.to_path_buf(),
        })
    }

    /// The temporary file, for writing.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Where the bytes are going now.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The name it will have.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flush to disk and rename into place; `overwrite` allows replacing a file.
    pub fn commit(self, overwrite: bool) -> anyhow::Result<()> {
        let AtomicFile { temp, final_path } = self;
        temp.as_file()
            .sync_all()
            .with_context(|| format!("cannot flush {} to disk", temp.path().display()))?;
        let _ = temp.as_file().unlock();
        let result = if overwrite {
            temp.persist(&final_path).map(drop)
        } else {
            temp.persist_noclobber(&final_path).map(drop)
        };
        if let Err(e) = result {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                crate::fail!(
                    AlreadyExists,
                    "{} already exists; it was left untouched (choose another name, or allow overwriting with --overwrite)",
                    final_path.display()
                );
            }
            return Err(anyhow::Error::from(e.error).context(format!(
                "cannot rename the finished file to {}",
                final_path.display()
            )));
        }
        sync_dir(parent_dir(&final_path))
    }
}

/// Write `bytes` to `path` atomically (replacing any file there).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.file()
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit(true)
}

/// Remove an archive and its sidecars (`.sha256`, `.json`), best effort
/// (an archive this run made and must not leave behind).
pub fn remove_backup_files(archive: &Path) {
    let _ = std::fs::remove_file(archive);
    for suffix in crate::names::SIDECAR_SUFFIXES {
        let mut s = archive.as_os_str().to_os_string();
        s.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(s));
    }
}

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> anyhow::Result<&str> {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(n) => Ok(n),
        None => crate::fail!(Usage, "{} is not a usable file path", path.display()),
    }
}

/// fsync a directory so a rename in it survives a crash (a no-op on Windows,
/// where directories cannot be opened this way and NTFS journals renames).
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot flush directory {} to disk", dir.display()))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Read until `buf` is full or the stream ends; the count read (0 at the end).
/// Large, full reads keep the per-chunk costs down in the streaming pipelines.
pub fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The lock file every export and prune takes in a backups directory.
pub const LOCK_FILE: &str = ".orca-backup.lock";

/// A shared (export) or exclusive (prune) lock on a backups directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Shared: any number of exports at once, no prune meanwhile.
    pub fn shared(dir: &Path, tool: &str) -> anyhow::Result<DirLock> {
        Self::take(dir, tool, false)
    }

    /// Exclusive: one prune, no export meanwhile.
    pub fn exclusive(dir: &Path, tool: &str) -> anyhow::Result<DirLock> {
        Self::take(dir, tool, true)
    }

    fn take(dir: &Path, tool: &str, exclusive: bool) -> anyhow::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            // A read-only directory: an existing lock file still locks.
            .or_else(|_| File::open(&path))
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let attempt = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match attempt {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "{tool}: waiting for {} to finish (lock {})",
                    if exclusive {
                        "a running orca-export"
                    } else {
                        "a running orca-prune"
                    },
                    path.display()
                );
                let waited = if exclusive {
                    file.lock()
                } else {
                    file.lock_shared()
                };
                waited.with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(
                    anyhow::Error::from(e).context(format!("cannot lock {}", path.display()))
                );
            }
        }
        Ok(DirLock { _file: file })
    }
}

/// Whether a temporary file is being written by a live process (it holds a lock).
pub fn is_locked_by_writer(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ErrorKind, kind_of};

    #[test]
    fn commit_refuses_to_clobber_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("orca-db-x.tar.gz");
        fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"new").unwrap();
        let temp = f.temp_path().to_path_buf();
        assert!(
            temp.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(".incomplete")
        );
        assert!(is_locked_by_writer(&temp));
        let e = f.commit(false).unwrap_err();
        assert_eq!(kind_of(&e), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(!temp.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn commit_with_overwrite_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("f");
        fs::write(&target, b"old").unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&target).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn dropped_files_disappear() {
        let tmp = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&tmp.path().join("a")).unwrap();
        let temp = f.temp_path().to_path_buf();
        drop(f);
        assert!(!temp.exists());
    }

    #[test]
    fn locks_exclude_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let a = DirLock::shared(tmp.path(), "t").unwrap();
        let b = DirLock::shared(tmp.path(), "t").unwrap();
        let f = File::open(tmp.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop((a, b));
        assert!(f.try_lock().is_ok());
    }
}
