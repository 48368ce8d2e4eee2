//! `orca-prune`: apply the retention policy to the backups directory.
//!
//! Backups are the regular files named `orca-db-*.tar.gz`, `*.tar.zst` or
//! `*.tar` directly in the backups directory; each goes together with its
//! sidecars (`.sha256`, `.json`). Nothing else is ever touched: not other files,
//! not directories, not symbolic links (a link is not a backup, and its target
//! may be anything). Temporary `*.incomplete` files older than an hour that no
//! running export holds are removed too. The policy itself is [`policy`].
//!
//! Prune takes the backups directory's lock exclusively, so it never races an
//! export; and it removes nothing when the incoming record says the backup just
//! made failed.

pub mod policy;

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::catalog::{Found, scan};
use orca_shared::fsutil::{self, DirLock};
use orca_shared::{ErrorKind, fail, paths};
use serde::Serialize;

use crate::policy::{Decision, Item, Policy};

/// Apply the retention policy to the backups directory.
///
/// Keeps a timestamped backup when it is among the newest --max-count OR younger
/// than --max-age-days; always keeps the newest, the one just made, and named
/// backups (unless --include-named). Adds "pruned", "kept", "freed_bytes",
/// "dry_run" (and "failed" when a file could not be deleted) to the record.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Keep the newest N timestamped backups; 0 turns the rule off [default: config retention.max_count, else 10]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=orca_shared::limits::MAX_COUNT))]
    pub max_count: Option<u64>,

    /// Keep backups younger than N days; 0 turns the rule off [default: config retention.max_age_days, else 30]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=orca_shared::limits::MAX_AGE_DAYS))]
    pub max_age_days: Option<u64>,

    /// Never prune named backups [default, unless config retention.keep_named is false]
    #[arg(long, overrides_with = "include_named")]
    pub keep_named: bool,

    /// Judge named backups by their time, like timestamped ones: the manifest's created_at, else the file's modification time
    #[arg(long, overrides_with = "keep_named")]
    pub include_named: bool,

    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Use this time as now (RFC 3339, e.g. 2026-06-30T12:00:00Z)
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Prune only when auto_cleanup is true in config, else pass the record on
    /// untouched (for workflow scripts that honour the config)
    #[arg(long)]
    pub only_if_auto_cleanup: bool,

    /// Directory to prune [default: the record's backups_dir, else config backups_dir, else <base>/backups]
    #[arg(long, value_name = "DIR", conflicts_with = "remote")]
    pub backups_dir: Option<PathBuf>,

    /// Prune the copies at s3://bucket[/prefix] or a copy directory instead, by the same policy
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli);

/// An entry of `pruned`, `kept` or `failed`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// The archive (or temporary file).
    pub path: String,
    /// timestamped, named or incomplete.
    pub kind: String,
    /// The rule that decided.
    pub reason: String,
    /// Size of the archive itself.
    pub size_bytes: u64,
    /// Why it could not be deleted (only in `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why the newest backup that passed its last restore drill stays.
pub const DRILLED: &str = "newest backup whose last restore drill passed";

/// The newest backup whose last drill passed (the one a user knows comes back).
fn newest_passing_drill(backups: &[Found]) -> Option<&str> {
    backups
        .iter()
        .filter(|b| {
            b.manifest
                .manifest()
                .and_then(|m| m.last_drill())
                .is_some_and(|d| d.ok)
        })
        .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)))
        .map(|b| b.name.as_str())
}

/// Age after which an unlocked temporary file is considered abandoned.
pub const INCOMPLETE_AGE_SECS: i64 = 3600;

/// Apply the policy and add the results to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    if cli.only_if_auto_cleanup && !ctx.config.auto_cleanup {
        return Ok(());
    }
    if ctx.record.bool("verified")? == Some(false) {
        fail!(
            VerificationFailed,
            "the backup just made failed verification, so nothing was pruned (older backups may be the only good ones)"
        );
    }
    let retention = &ctx.config.retention;
    let policy = Policy {
        max_count: cli.max_count.unwrap_or(retention.max_count),
        max_age_days: cli.max_age_days.unwrap_or(retention.max_age_days),
        include_named: if cli.include_named {
            true
        } else if cli.keep_named {
            false
        } else {
            !retention.keep_named
        },
    };
    let now = match cli.now.as_deref() {
        None => Utc::now(),
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => fail!(
                Usage,
                "--now {s:?} is not an RFC 3339 time ({e}); e.g. 2026-06-30T12:00:00Z"
            ),
        },
    };
    let just_made = ctx.record.str("backup_path")?.map(PathBuf::from);
    let remote = match &cli.remote {
        Some(url) => Some(orca_remote::Remote::open_url(url, &ctx.config, ctx.tool)?),
        None => None,
    };
    // At a destination the backup just made (and copied) is known by its name.
    let just_made_name = if remote.is_some() {
        just_made
            .as_deref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(String::from)
    } else {
        None
    };
    let dir = match (&remote, cli.backups_dir) {
        (Some(r), _) => match r.location() {
            orca_remote::Location::Dir(d) => d.clone(),
            orca_remote::Location::S3 { .. } => {
                let r = remote.as_ref().expect("matched Some");
                return prune_s3(ctx, r, policy, now, cli.dry_run, just_made_name.as_deref());
            }
        },
        (None, Some(d)) => d,
        (None, None) => match ctx.record.str("backups_dir")? {
            Some(d) => PathBuf::from(d),
            None => ctx.config.backups_dir()?,
        },
    };
    paths::utf8(&dir)?;

    let _lock = if dir.is_dir() {
        Some(DirLock::exclusive(&dir, ctx.tool)?)
    } else {
        None
    };
    // Ctrl-C during the wait for the lock, or before the policy runs:
    // nothing is removed.
    orca_shared::interrupt::check()?;
    let found = scan(&dir)?;
    // An interrupted restore needs its archive (--resume) and its safety
    // backup (--rollback) until it is finished.
    let mut needed: Vec<(PathBuf, String)> = Vec::new();
    let mut unreadable = Vec::new();
    for (path, j) in orca_shared::journal::in_dir(&dir, &mut unreadable) {
        let why = format!(
            "needed by the interrupted restore of volume '{}' ({})",
            j.volume,
            path.display()
        );
        needed.push((PathBuf::from(&j.archive), why.clone()));
        if let Some(s) = &j.safety_backup {
            needed.push((PathBuf::from(s), why));
        }
    }
    if let Some(e) = unreadable.first() {
        fail!(
            Failure,
            "{e}; nothing was pruned (an interrupted restore may need these backups: finish it first)"
        );
    }
    let drilled = newest_passing_drill(&found.backups);
    let items: Vec<Item> = found
        .backups
        .iter()
        .map(|b| {
            let mut pinned = Vec::new();
            if drilled == Some(b.name.as_str()) {
                pinned.push(DRILLED.to_string());
            }
            if just_made.as_deref().is_some_and(|p| same_file(p, &b.path))
                || just_made_name.as_deref() == Some(b.name.as_str())
            {
                pinned.push("just created".to_string());
            }
            for (p, why) in &needed {
                if same_file(p, &b.path) && !pinned.contains(why) {
                    pinned.push(why.clone());
                }
            }
            Item {
                name: b.name.clone(),
                kind: b.kind,
                time: b.time,
                pinned,
            }
        })
        .collect();
    let decisions = policy::decide(&items, policy, now);

    let mut kept = Vec::new();
    let mut pruned = Vec::new();
    let mut failed = Vec::new();
    let mut freed: u64 = 0;
    for (b, d) in found.backups.iter().zip(&decisions) {
        let outcome = Outcome {
            path: paths::utf8(&b.path)?.to_string(),
            kind: b.kind.as_str().to_string(),
            reason: d.reason().to_string(),
            size_bytes: b.size_bytes,
            error: None,
        };
        match d {
            Decision::Keep(_) => kept.push(outcome),
            Decision::Prune(_) if cli.dry_run => {
                freed += b.size_bytes + sidecar_bytes(&b.sidecars);
                pruned.push(outcome);
            }
            // Interrupted: nothing more is removed (what was is reported).
            Decision::Prune(_) if orca_shared::interrupt::interrupted() => kept.push(Outcome {
                reason: INTERRUPTED_KEPT.into(),
                ..outcome
            }),
            Decision::Prune(_) => match remove_backup(b) {
                Ok(bytes) => {
                    freed += bytes;
                    pruned.push(outcome);
                }
                Err(e) => failed.push((
                    Outcome {
                        error: Some(format!("{e}")),
                        ..outcome
                    },
                    e,
                )),
            },
        }
    }
    for t in &found.incomplete {
        let age = (now - t.modified).num_seconds();
        let outcome = Outcome {
            path: paths::utf8(&t.path)?.to_string(),
            kind: "incomplete".into(),
            reason: String::new(),
            size_bytes: t.size_bytes,
            error: None,
        };
        if age < INCOMPLETE_AGE_SECS || fsutil::is_locked_by_writer(&t.path) {
            let reason = if age < INCOMPLETE_AGE_SECS {
                "incomplete, less than an hour old (an export may be writing it)"
            } else {
                "incomplete, being written by a running export"
            };
            kept.push(Outcome {
                reason: reason.into(),
                ..outcome
            });
            continue;
        }
        let outcome = Outcome {
            reason: "incomplete, abandoned more than an hour ago".into(),
            ..outcome
        };
        if cli.dry_run {
            freed += t.size_bytes;
            pruned.push(outcome);
            continue;
        }
        if orca_shared::interrupt::interrupted() {
            kept.push(Outcome {
                reason: INTERRUPTED_KEPT.into(),
                ..outcome
            });
            continue;
        }
        match fs::remove_file(&t.path) {
            Ok(()) => {
                freed += t.size_bytes;
                pruned.push(outcome);
            }
            Err(e) => failed.push((
                Outcome {
                    error: Some(e.to_string()),
                    ..outcome
                },
                e,
            )),
        }
    }
    if !cli.dry_run && !pruned.is_empty() {
        fsutil::sync_dir(&dir)?;
    }

    let rec = &mut ctx.record;
    match &remote {
        Some(r) => rec.set("remote", r.location().url()),
        None => rec.set("backups_dir", paths::utf8(&dir)?),
    }
    rec.set("dry_run", cli.dry_run);
    rec.set("pruned", &pruned);
    rec.set("kept", &kept);
    rec.set("freed_bytes", freed);
    let verb = if cli.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if cli.dry_run {
        for o in &pruned {
            ctx.note(format!("would remove {} ({})", o.path, o.reason));
        }
    }
    ctx.note(format!(
        "{verb} {} backup file(s), freeing {}; kept {}",
        pruned.len(),
        orca_shared::progress::seed_size(freed),
        kept.len()
    ));
    if orca_shared::interrupt::interrupted() {
        orca_shared::fail!(
            Interrupted,
            "interrupted: removed {} backup file(s) before Ctrl-C and nothing after it; run orca-prune again to apply the rest of the policy",
            pruned.len()
        );
    }
    if !failed.is_empty() {
        let all_denied = failed
            .iter()
            .all(|(_, e)| orca_shared::exit::io_kind(e) == Some(ErrorKind::PermissionDenied));
        let first = &failed[0].0;
        let outcomes: Vec<&Outcome> = failed.iter().map(|(o, _)| o).collect();
        ctx.record.set("failed", &outcomes);
        let msg = format!(
            "could not delete {} file(s) the policy removes, first {}: {}; the rest of the policy was applied (check the file's permissions and attributes, e.g. chattr -i)",
            failed.len(),
            first.path,
            first.error.as_deref().unwrap_or("")
        );
        return Err(orca_shared::OrcaError::new(
            if all_denied {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::Failure
            },
            msg,
        )
        .into());
    }
    Ok(())
}

/// The reason given for a backup the policy removes but an interrupt saved.
const INTERRUPTED_KEPT: &str = "kept: interrupted before it was removed";

/// The policy over the copies in an S3 bucket: the same decisions as for a
/// backups directory; an archive is removed before its sidecars, and nothing
/// that is not named as a backup (or its sidecar) is ever touched.
fn prune_s3(
    ctx: &mut Ctx,
    r: &orca_remote::Remote,
    policy: Policy,
    now: DateTime<Utc>,
    dry_run: bool,
    just_made: Option<&str>,
) -> anyhow::Result<()> {
    let found = r.catalog()?;
    let drilled = newest_passing_drill(&found.backups);
    let items: Vec<Item> = found
        .backups
        .iter()
        .map(|b| {
            let mut pinned = Vec::new();
            if drilled == Some(b.name.as_str()) {
                pinned.push(DRILLED.to_string());
            }
            if just_made == Some(b.name.as_str()) {
                pinned.push("just created".to_string());
            }
            Item {
                name: b.name.clone(),
                kind: b.kind,
                time: b.time,
                pinned,
            }
        })
        .collect();
    let decisions = policy::decide(&items, policy, now);
    let (mut kept, mut pruned, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut freed = 0u64;
    let sizes: std::collections::HashMap<String, u64> =
        r.list()?.into_iter().map(|o| (o.name, o.size)).collect();
    let sidecars_of = |name: &str| -> u64 {
        orca_shared::names::SIDECAR_SUFFIXES
            .iter()
            .filter_map(|suffix| sizes.get(&format!("{name}{suffix}")))
            .sum()
    };
    for (b, d) in found.backups.iter().zip(&decisions) {
        let outcome = Outcome {
            path: paths::utf8(&b.path)?.to_string(),
            kind: b.kind.as_str().to_string(),
            reason: d.reason().to_string(),
            size_bytes: b.size_bytes,
            error: None,
        };
        if d.keeps() {
            kept.push(outcome);
            continue;
        }
        if dry_run {
            freed += b.size_bytes + sidecars_of(&b.name);
            pruned.push(outcome);
            continue;
        }
        orca_shared::interrupt::check()?;
        match r.delete(&b.name) {
            Ok(()) => {
                freed += b.size_bytes;
                for suffix in orca_shared::names::SIDECAR_SUFFIXES {
                    let side = format!("{}{suffix}", b.name);
                    if let Some(size) = sizes.get(&side) {
                        match r.delete(&side) {
                            Ok(()) => freed += size,
                            Err(e) => ctx.warn(format!(
                                "cannot delete {}: {e:#}",
                                r.location().url_of(&side)
                            )),
                        }
                    }
                }
                pruned.push(outcome);
            }
            Err(e) => failed.push((
                Outcome {
                    error: Some(format!("{e:#}")),
                    ..outcome
                },
                e,
            )),
        }
    }
    let rec = &mut ctx.record;
    rec.set("remote", r.location().url());
    rec.set("dry_run", dry_run);
    rec.set("pruned", &pruned);
    rec.set("kept", &kept);
    rec.set("freed_bytes", freed);
    ctx.note(format!(
        "{} {} backup(s) at {}, freeing {}; kept {}",
        if dry_run { "would remove" } else { "removed" },
        pruned.len(),
        r.location().url(),
        orca_shared::progress::seed_size(freed),
        kept.len()
    ));
    if let Some((first, e)) = failed.first() {
        let kind = orca_shared::exit::kind_of(e);
        let outcomes: Vec<&Outcome> = failed.iter().map(|(o, _)| o).collect();
        ctx.record.set("failed", &outcomes);
        return Err(orca_shared::OrcaError::new(
            kind,
            format!(
                "could not delete {} backup(s) the policy removes, first {}: {}; the rest of the policy was applied",
                failed.len(),
                first.path,
                first.error.as_deref().unwrap_or("")
            ),
        )
        .into());
    }
    Ok(())
}

fn sidecar_bytes(sidecars: &[PathBuf]) -> u64 {
    sidecars
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Remove the archive, then its sidecars; the archive first so that a failure
/// never leaves an archive without its checksum.
fn remove_backup(b: &Found) -> std::io::Result<u64> {
    fs::remove_file(&b.path)?;
    let mut freed = b.size_bytes;
    for s in &b.sidecars {
        let size = fs::symlink_metadata(s).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(s) {
            Ok(()) => freed += size,
            // The archive is gone; a sidecar left behind is harmless and visible.
            Err(e) => eprintln!("orca-prune: warning: cannot delete {}: {e}", s.display()),
        }
    }
    Ok(freed)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
