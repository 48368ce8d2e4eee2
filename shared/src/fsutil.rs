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

    /// Give it another final name (before committing).
    pub fn retarget(&mut self, final_path: &Path) {
        self.final_path = final_path.to_path_buf();
    }

    /// Flush to disk and rename into place unless the name is taken; a taken
    /// name gives the file back, still uncommitted, so the caller may choose
    /// another (`Ok(Some(file))`).
    pub fn commit_new(self) -> anyhow::Result<Option<AtomicFile>> {
        let AtomicFile { temp, final_path } = self;
        temp.as_file()
            .sync_all()
            .with_context(|| format!("cannot flush {} to disk", temp.path().display()))?;
        match temp.persist_noclobber(&final_path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Some(AtomicFile {
                    temp: e.file,
                    final_path,
                }));
            }
            Err(e) => {
                return Err(anyhow::Error::from(e.error).context(format!(
                    "cannot rename the finished file to {}",
                    final_path.display()
                )));
            }
        }
        sync_dir(parent_dir(&final_path))?;
        Ok(None)
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
                    "{} already exists; it was left untouched (choose another name)",
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
        let file = open_lock_file(&path)?;
        let attempt = |f: &File| {
            if exclusive {
                f.try_lock()
            } else {
                f.try_lock_shared()
            }
        };
        match attempt(&file) {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "{tool}: waiting for {} to finish (lock {}; Ctrl-C to give up)",
                    if exclusive {
                        "a running orca-export or copy"
                    } else {
                        "a running orca-prune"
                    },
                    path.display()
                );
                // Polled, not a blocking lock(): a blocking wait restarts
                // after a signal, and Ctrl-C must end it within moments.
                loop {
                    crate::interrupt::check().map_err(|e| {
                        e.context(format!(
                            "interrupted while waiting for the lock {}; nothing was changed",
                            path.display()
                        ))
                    })?;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    match attempt(&file) {
                        Ok(()) => break,
                        Err(fs::TryLockError::WouldBlock) => continue,
                        Err(fs::TryLockError::Error(e)) => {
                            return Err(anyhow::Error::from(e)
                                .context(format!("cannot lock {}", path.display())));
                        }
                    }
                }
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

/// Open (creating it owner-only) the lock file of a backups directory. A
/// directory the user may read but not write still locks through an existing
/// lock file; otherwise the first error is the one reported (a fallback's
/// "no such file" would hide the real "permission denied"), with exit 8.
fn open_lock_file(path: &Path) -> anyhow::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let first = match opts.open(path) {
        Ok(f) => {
            if let Err(e) = crate::private::restrict(path, false) {
                eprintln!(
                    "warning: cannot make {} private to you: {e}",
                    path.display()
                );
            }
            return Ok(f);
        }
        Err(e) => e,
    };
    if let Ok(f) = File::open(path) {
        return Ok(f);
    }
    let dir = parent_dir(path);
    if crate::exit::io_kind(&first) == Some(crate::exit::ErrorKind::PermissionDenied)
        && path.symlink_metadata().is_ok()
    {
        crate::fail!(
            PermissionDenied,
            "cannot open the lock file {}: {first} (it is another user's: backups are private, so a backups directory serves one user; use one of your own: backups_dir in config)",
            path.display()
        );
    }
    if crate::exit::io_kind(&first) == Some(crate::exit::ErrorKind::PermissionDenied) {
        crate::fail!(
            PermissionDenied,
            "cannot write in the backups directory {}: {first} (make it writable for you, e.g. `chmod u+w`, or choose another backups directory: backups_dir in config)",
            dir.display()
        );
    }
    Err(anyhow::Error::from(first).context(format!("cannot open lock file {}", path.display())))
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
