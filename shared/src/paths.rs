//! Where orca keeps things: the base directory, the backups directory, the config.
//!
//! The base is `$ORCA_HOME` when set, else `%USERPROFILE%\.claude-orca` on Windows
//! and `$HOME/.claude-orca` elsewhere. Directories are created on demand, private
//! to the user (0700 on Unix): backups hold credentials and user data.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The name of the base directory under the user's home.
pub const BASE_DIR_NAME: &str = ".claude-orca";

/// The base directory (not created).
pub fn base_dir() -> anyhow::Result<PathBuf> {
    if let Some(home) = non_empty_env("ORCA_HOME") {
        let path = PathBuf::from(home);
        utf8(&path).context("ORCA_HOME")?;
        return Ok(path);
    }
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    match non_empty_env(var) {
        Some(home) => {
            let path = PathBuf::from(home).join(BASE_DIR_NAME);
            utf8(&path).with_context(|| format!("${var}"))?;
            Ok(path)
        }
        None => crate::fail!(
            Usage,
            "cannot find your home directory: ${var} is not set (set ORCA_HOME to the directory orca should use)"
        ),
    }
}

fn non_empty_env(name: &str) -> Option<OsString> {
    env::var_os(name).filter(|v| !v.is_empty())
}

/// The default backups directory: `<base>/backups`.
pub fn default_backups_dir() -> anyhow::Result<PathBuf> {
    Ok(base_dir()?.join("backups"))
}

/// The default config file: `<base>/config.json`.
pub fn default_config_path() -> anyhow::Result<PathBuf> {
    Ok(base_dir()?.join("config.json"))
}

/// A path from config or a flag: `~/x` is under the home directory, a relative
/// path is relative to the base directory (not to wherever the tool runs).
pub fn resolve_user_path(raw: &str) -> anyhow::Result<PathBuf> {
    let path = if let Some(rest) = raw.strip_prefix("~/").or(raw.strip_prefix("~\\")) {
        let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        match non_empty_env(var) {
            Some(home) => PathBuf::from(home).join(rest),
            None => crate::fail!(Usage, "cannot expand '{raw}': ${var} is not set"),
        }
    } else {
        let p = PathBuf::from(raw);
        if p.is_absolute() {
            p
        } else {
            base_dir()?.join(p)
        }
    };
    utf8(&path)?;
    Ok(path)
}

/// The path as UTF-8, or a usage error: paths are never converted lossily.
pub fn utf8(path: &Path) -> anyhow::Result<&str> {
    match path.to_str() {
        Some(s) => Ok(s),
        None => crate::fail!(
            Usage,
            "path {} is not valid UTF-8; use a path made of UTF-8 characters",
            path.display()
        ),
    }
}

/// Create `dir` and missing parents, private to the user (0700 on Unix, an
/// owner-only ACL on Windows). An
/// existing directory is left as it is: it may be one the user chose to share.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {
            if let Err(e) = crate::private::restrict(dir, true) {
                eprintln!("warning: cannot make {} private to you: {e}", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create directory {}", dir.display())),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn creates_private_directories() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/backups");
        ensure_private_dir(&dir).unwrap();
        for d in [tmp.path().join("a"), tmp.path().join("a/b"), dir.clone()] {
            let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        ensure_private_dir(&dir).unwrap();
    }

    #[test]
    fn rejects_non_utf8_paths() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        let e = utf8(p).unwrap_err();
        assert_eq!(crate::exit::kind_of(&e), crate::exit::ErrorKind::Usage);
    }
}
