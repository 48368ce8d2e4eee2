//! `orca-keygen`: make an age identity (X25519) for encrypted backups, so
//! that nobody needs another tool (Windows users in particular).
//!
//! Writes the identity, as `age-keygen` writes it (a comment with the public
//! key, then `AGE-SECRET-KEY-1...`), to a new file readable only by its owner
//! (0600; an owner-only ACL on Windows), refuses to overwrite one, and puts
//! the recipient (`age1...`, the public key backups are encrypted to) in the
//! record.

use std::io::Write;
use std::path::PathBuf;

use age::secrecy::ExposeSecret;
use anyhow::Context;
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::fsutil::AtomicFile;
use orca_shared::{fail, paths};

/// Make an age identity for encrypted backups.
///
/// Writes a new private key file (owner-only) and adds "recipient" (the
/// public key to encrypt to: put it in config encryption.recipients) and
/// "identity_path" to the record. Never overwrites an existing file.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Where to write the identity [default: <base>/age-identity.txt]
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli, stdin = |_cli: &Cli| orca_shared::app::StdinUse::Never);

/// The default identity file: `<base>/age-identity.txt`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    Ok(paths::base_dir()?.join("age-identity.txt"))
}

/// Generate, write, report.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let path = match cli.output {
        Some(p) => p,
        None => default_path()?,
    };
    paths::utf8(&path)?;
    if path.symlink_metadata().is_ok() {
        fail!(
            AlreadyExists,
            "{} already exists and was left untouched: an identity is never overwritten (the backups encrypted to it could not be opened any more); choose another --output",
            path.display()
        );
    }
    let dir = orca_shared::fsutil::parent_dir(&path);
    if !dir.as_os_str().is_empty() && !dir.exists() {
        paths::ensure_private_dir(dir)?;
    }
    let (secret, recipient) = orca_shared::crypt::generate();
    let mut file = AtomicFile::create(&path)?;
    // The key must be private: here that is an error, not a warning.
    orca_shared::private::restrict(file.temp_path(), false).with_context(|| {
        format!(
            "cannot make {} readable only by you; nothing was written",
            file.temp_path().display()
        )
    })?;
    file.file()
        .write_all(secret.expose_secret().as_bytes())
        .with_context(|| format!("cannot write {}", file.temp_path().display()))?;
    file.commit(false)?;
    ctx.record.set("recipient", &recipient);
    ctx.record.set("identity_path", paths::utf8(&path)?);
    ctx.note(format!(
        "wrote a new identity to {} (readable only by you). Encrypt backups to it with `orca-export --recipient {recipient}`, or set encryption.recipients to [\"{recipient}\"] and encryption.identity_file to that path in config. Keep a copy of the identity somewhere safe, off this machine: without it, backups encrypted to it cannot be restored",
        path.display()
    ));
    Ok(())
}
