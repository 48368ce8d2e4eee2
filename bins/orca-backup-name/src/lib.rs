//! `orca-backup-name`: choose where the backup goes.
//!
//! The default name is `orca-db-YYYY-MM-DD-HH-mm` in local time; `--name` gives a
//! sanitized custom name (a "named" backup, kept by the retention policy). The
//! extension follows the compression. If the file exists, the user is asked on
//! the terminal (even when stdin is a pipe); without a terminal the step fails
//! with exit 5 unless `--overwrite`. Nothing is ever deleted here.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Local};
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::names::{self, Compression, Kind};
use orca_shared::{fail, paths};

/// Choose the backup file name and path.
///
/// Writes {"backup_name", "backup_path", "backups_dir", "kind", "overwrite",
/// "compression"} to the JSON record on stdout.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// A custom name, e.g. before-migration (gives orca-db-before-migration.tar.gz)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Replace an existing backup of the same name without asking
    #[arg(long)]
    pub overwrite: bool,

    /// Compression the archive will use; sets the extension [default: config, else gzip]
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Directory for backups [default: config backups_dir, else <base>/backups]
    #[arg(long, value_name = "DIR")]
    pub backups_dir: Option<PathBuf>,

    /// Use this time instead of now for the timestamped name (RFC 3339)
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli);

/// Choose the name and add it to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let compression = match cli.compression {
        Some(c) => c,
        None => match ctx.record.str("compression")? {
            Some(name) => match Compression::from_name(name) {
                Some(c) => c,
                None => fail!(
                    Usage,
                    "field 'compression' of the stdin record must be gzip, zstd or none, got '{name}'"
                ),
            },
            None => ctx.config.compression,
        },
    };
    let dir = match cli.backups_dir {
        Some(d) => {
            paths::utf8(&d)?;
            d
        }
        None => ctx.config.backups_dir()?,
    };
    paths::ensure_private_dir(&dir)?;
    let (file_name, kind) = match cli.name {
        Some(raw) => {
            let custom = names::sanitize(&raw, compression)?;
            for change in &custom.changes {
                ctx.note(format!("name {raw:?}: {change}"));
            }
            (custom.file_name, Kind::Named)
        }
        // A second backup in the same minute takes the next free name
        // (`-2`, `-3`...): an automatic run never fails on it.
        None => (
            names::free_timestamped_name(&dir, now(cli.now.as_deref())?, compression)?,
            Kind::Timestamped,
        ),
    };
    let plain = dir.join(&file_name);
    // One name is one backup, whatever its compression or encryption (`.age`,
    // added by orca-export): whichever forms exist would be replaced.
    let forms = names::existing_forms(&dir, &file_name);
    let existing: Vec<&Path> = forms.iter().map(PathBuf::as_path).collect();
    let mut overwrite = cli.overwrite || ctx.record.bool("overwrite")?.unwrap_or(false);
    if !overwrite && !existing.is_empty() {
        if let Some(odd) = existing.iter().find(|p| p.is_dir() || p.is_symlink()) {
            fail!(
                AlreadyExists,
                "{} already exists and is not a regular file; choose another name with --name",
                odd.display()
            );
        }
        let shown = existing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        overwrite = ask_overwrite(&shown)?;
        if !overwrite {
            fail!(
                AlreadyExists,
                "backup {shown} already exists; it was left untouched (choose another name with --name, or pass --overwrite to replace it)"
            );
        }
    }
    let path_str = paths::utf8(&plain)?.to_string();
    ctx.record.set("backup_name", &file_name);
    ctx.record.set("backup_path", path_str);
    ctx.record.set("backups_dir", paths::utf8(&dir)?);
    ctx.record.set("kind", kind.as_str());
    ctx.record.set("overwrite", overwrite);
    ctx.record.set("compression", compression.as_str());
    Ok(())
}

fn now(flag: Option<&str>) -> anyhow::Result<DateTime<Local>> {
    match flag {
        None => Ok(Local::now()),
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Ok(t.with_timezone(&Local)),
            Err(e) => fail!(
                Usage,
                "--now {s:?} is not an RFC 3339 time ({e}); e.g. 2026-06-30T12:00:00Z"
            ),
        },
    }
}

/// Ask `overwrite? [y/N]` on the controlling terminal. No terminal (or stderr
/// not being one, as in scripts and CI) means no.
fn ask_overwrite(shown: &str) -> anyhow::Result<bool> {
    if !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let Some((mut input, mut output)) = open_terminal() else {
        return Ok(false);
    };
    write!(output, "{shown} already exists. overwrite? [y/N] ")
        .and_then(|()| output.flush())
        .context("cannot write to the terminal")?;
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .context("cannot read the answer from the terminal")?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

#[cfg(unix)]
fn open_terminal() -> Option<(Box<dyn BufRead>, Box<dyn Write>)> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let out = tty.try_clone().ok()?;
    Some((Box::new(BufReader::new(tty)), Box::new(out)))
}

#[cfg(windows)]
fn open_terminal() -> Option<(Box<dyn BufRead>, Box<dyn Write>)> {
    let input = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("CONIN$")
        .ok()?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .open("CONOUT$")
        .ok()?;
    Some((Box::new(BufReader::new(input)), Box::new(output)))
}
