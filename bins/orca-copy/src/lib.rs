//! `orca-copy`: copy a backup off the machine, to S3-compatible object
//! storage (`s3://bucket[/prefix]`) or another directory (a path or
//! `file://`), and prove the copy.
//!
//! For each destination: the archive goes first (atomically: nothing appears
//! under its name until it is complete; it is hashed as it is read and must
//! match its `.sha256`), is read back and hashed again, then its `.sha256`,
//! then its manifest, which records the copy (`copies`). A copy that already
//! holds the same bytes is checked and kept; one that differs is refused
//! unless `--overwrite`. A backup that failed verification is never copied.
//! A failure at one destination does not stop the others.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use orca_remote::{Location, Remote};
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::fsutil::DirLock;
use orca_shared::progress::Progress;
use orca_shared::{ErrorKind, OrcaError, fail, manifest, names};
use serde::Serialize;

/// Copy a backup to S3-compatible storage or another directory, and check the copy.
///
/// Copies the archive with its .sha256 and manifest, reads the copy back to
/// check its SHA-256, and adds "copies" ([{url, size_bytes, sha256, verified,
/// duration_ms}]) to the record and the manifest. Destinations:
/// s3://bucket[/prefix] (credentials, endpoint and region as the AWS tools
/// read them, or config s3.*) and directories (a path or file:///path).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// The archive (then stdin is not read); `-` or nothing: the record's backup_path
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,

    /// Where to copy it: s3://bucket[/prefix], file:///dir or a directory (repeatable) [default: config copy_to]
    #[arg(long = "to", value_name = "URL")]
    pub to: Vec<String>,

    /// Replace a copy of the same name that holds other bytes
    #[arg(long)]
    pub overwrite: bool,

    /// Pass the record on untouched when neither --to nor config copy_to names a destination (for workflow scripts)
    #[arg(long)]
    pub if_configured: bool,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| orca_shared::app::archive_stdin(cli.archive.as_deref())
);

/// One copy made (or found already there, checked).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Copy {
    /// The archive's URL (or path) at the destination.
    pub url: String,
    /// Its size.
    pub size_bytes: u64,
    /// Its SHA-256, as read back from the destination.
    pub sha256: String,
    /// Read back and equal to the local archive's SHA-256.
    pub verified: bool,
    /// How long copying and checking took.
    pub duration_ms: u64,
    /// When (UTC, RFC 3339).
    pub copied_at: String,
    /// Whether this run uploaded it (false: the same bytes were there already).
    #[serde(skip)]
    pub uploaded: bool,
}

/// Copy the archive to every destination.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let targets: Vec<String> = if cli.to.is_empty() {
        ctx.config.copy_to.clone()
    } else {
        cli.to.clone()
    };
    if targets.is_empty() {
        if cli.if_configured {
            return Ok(());
        }
        fail!(
            Usage,
            "no destination: pass --to s3://bucket/prefix (or a directory), or set copy_to in config"
        );
    }
    let locations = targets
        .iter()
        .map(|t| Location::parse(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (archive, record_sha) = orca_verify::archive_from(cli.archive.as_deref(), ctx, "copy")?;
    if ctx.record.get("backup_path").is_none() {
        ctx.record
            .set("backup_path", orca_shared::paths::utf8(&archive)?);
    }
    if ctx.record.bool("verified")? == Some(false) {
        fail!(
            VerificationFailed,
            "{} failed verification, so it was not copied (a copy of a damaged backup only looks like a backup)",
            archive.display()
        );
    }
    let name = match archive.file_name().and_then(|n| n.to_str()) {
        Some(n) if names::BackupFileName::parse(n).is_some() => n.to_string(),
        _ => fail!(
            Usage,
            "{} is not named as a backup (orca-db-*.tar.gz, .tar.zst, .tar, maybe with .age): copies keep the name, so the catalog and retention can read them",
            archive.display()
        ),
    };
    let meta = match std::fs::metadata(&archive) {
        Ok(m) if m.is_file() => m,
        Ok(_) => fail!(Usage, "{} is not a file", archive.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail!(
            Usage,
            "{} does not exist (check the path)",
            archive.display()
        ),
        Err(e) => {
            return Err(
                anyhow::Error::from(e).context(format!("cannot read {}", archive.display()))
            );
        }
    };
    let local_manifest = manifest::read(&archive);
    if let Some(v) = local_manifest
        .manifest()
        .and_then(|m| m.verification.as_ref())
        && !v.verified
    {
        fail!(
            VerificationFailed,
            "{} failed its last verification ({} on {}), so it was not copied; run orca-verify on it",
            archive.display(),
            v.failed_checks.join(", "),
            v.verified_at
        );
    }
    let expected = expected_sha256(&archive, &name, record_sha, &local_manifest)?;
    // Prune takes this lock exclusively: the archive stays while it is copied.
    let dir = orca_shared::fsutil::parent_dir(&archive);
    let _lock = DirLock::shared(dir, ctx.tool)?;

    let mut copies: Vec<serde_json::Value> = ctx
        .record
        .get("copies")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut failures: Vec<anyhow::Error> = Vec::new();
    let several = locations.len() > 1;
    for loc in locations {
        orca_shared::interrupt::check()?;
        let url = loc.url_of(&name);
        match copy_one(
            ctx,
            &archive,
            &name,
            meta.len(),
            expected.as_deref(),
            loc,
            cli.overwrite,
        ) {
            Ok(c) => {
                ctx.note(format!(
                    "{} {url} ({}, SHA-256 checked by reading it back) in {:.1} s",
                    if c.uploaded {
                        "copied to"
                    } else {
                        "checked the copy already at"
                    },
                    orca_shared::progress::seed_size(c.size_bytes),
                    c.duration_ms as f64 / 1000.0
                ));
                copies.retain(|v| v.get("url").and_then(|u| u.as_str()) != Some(url.as_str()));
                copies.push(serde_json::to_value(&c).expect("a copy serializes"));
            }
            Err(e) => {
                let kind = orca_shared::exit::kind_of(&e);
                if kind == ErrorKind::Interrupted {
                    ctx.record.set("copies", &copies);
                    return Err(e);
                }
                if several {
                    ctx.warn(format!(
                        "copy to {url} failed: {}",
                        orca_shared::exit::message_of(&e, kind)
                    ));
                }
                failures.push(e);
            }
        }
    }
    ctx.record.set("copies", &copies);
    if let Some(first) = failures.into_iter().next() {
        let kind = orca_shared::exit::kind_of(&first);
        let msg = orca_shared::exit::message_of(&first, kind);
        return Err(OrcaError::new(kind, msg).into());
    }
    Ok(())
}

/// What the archive's SHA-256 must be: the record's, else its `.sha256`,
/// else its manifest's; `None` when nothing says (then the hash computed
/// while reading it is the reference).
fn expected_sha256(
    archive: &Path,
    name: &str,
    record_sha: Option<String>,
    m: &manifest::Read,
) -> anyhow::Result<Option<String>> {
    if let Some(s) = record_sha {
        return Ok(Some(s.to_ascii_lowercase()));
    }
    let side = PathBuf::from(format!("{}.sha256", archive.display()));
    if let Ok(text) = std::fs::read_to_string(&side) {
        return match orca_remote::parse_sha256_line(&text, name) {
            Some(h) => Ok(Some(h)),
            None => fail!(
                VerificationFailed,
                "{} is not a checksum of {name}: run orca-verify on the archive",
                side.display()
            ),
        };
    }
    Ok(m.manifest().map(|m| m.sha256.to_ascii_lowercase()))
}

fn copy_one(
    ctx: &Ctx,
    archive: &Path,
    name: &str,
    size: u64,
    expected: Option<&str>,
    loc: Location,
    overwrite: bool,
) -> anyhow::Result<Copy> {
    let started = Instant::now();
    if let Location::Dir(d) = &loc
        && same_dir(d, orca_shared::fsutil::parent_dir(archive))
    {
        fail!(
            Usage,
            "{} is the directory the backup is in (or the same directory mounted again): a copy must go somewhere else",
            d.display()
        );
    }
    // A copy directory is a backups directory: its prune waits for this copy.
    let _dest_lock = match &loc {
        Location::Dir(d) if d.is_dir() => Some(DirLock::shared(d, ctx.tool)?),
        _ => None,
    };
    let remote = Remote::open(loc, &ctx.config, ctx.tool)?;
    let url = remote.location().url_of(name);
    // What the archive's bytes are, to compare a copy with (hashed here when
    // nothing says).
    let ours = match expected {
        Some(h) => h.to_ascii_lowercase(),
        None => {
            orca_remote::dir::hash_file(archive)
                .with_context(|| format!("cannot read {}", archive.display()))?
                .1
        }
    };
    if remote.stat(name)?.is_some() && !overwrite {
        return keep_existing(ctx, &remote, archive, name, &url, size, &ours, started);
    }
    // The claim of the name, `<name>.claim` (the backup's checksum line),
    // created only if no writer made one first: small PUTs are decided
    // atomically by the servers, a multipart upload's completion is not by
    // every server. Of two writers with other bytes, the one that loses here
    // uploads nothing (exit 5). Removed when this run ends, whatever the
    // outcome; one left by a killed run is taken over by the same backup.
    let claim_name = format!("{name}{CLAIM_SUFFIX}");
    let claim_line = orca_remote::sha256_line(&ours, name);
    let mut claim: Option<String> = None;
    orca_shared::testpoint::point("copy-claiming");
    if overwrite {
        // The old checksum must not stand beside new bytes, even for a moment.
        remote.remove_unfinished(&format!("{name}.sha256"))?;
        remote.remove_unfinished(&claim_name)?;
    } else {
        match remote.put_small_new(&claim_name, claim_line.as_bytes())? {
            Some(token) => claim = Some(token),
            None => {
                let theirs = remote.get_small(&claim_name).ok().flatten().and_then(|b| {
                    orca_remote::parse_sha256_line(&String::from_utf8_lossy(&b), name)
                });
                match theirs {
                    // The same bytes, being copied by another run (or a copy
                    // of them that was killed): copying them too is harmless,
                    // and the upload below is still conditional.
                    Some(theirs) if theirs == ours => {}
                    theirs => fail!(
                        AlreadyExists,
                        "{url} is being copied by another run with other bytes (its claim {} names SHA-256 {}): other bytes are another backup, so nothing was copied (give this backup another name; if that run was killed, pass --overwrite to replace its claim)",
                        remote.location().url_of(&claim_name),
                        theirs.unwrap_or_else(|| "unreadable".into())
                    ),
                }
            }
        }
    }
    let release_claim = |remote: &Remote| {
        if let Some(token) = &claim
            && let Err(e) = remote.remove_own(&claim_name, Some(token), None)
        {
            ctx.warn(format!(
                "cannot remove this run's claim {}: {e:#}; a later copy of this backup takes it over, or remove it yourself",
                remote.location().url_of(&claim_name)
            ));
        }
    };
    // What this run wrote: only that may be removed again.
    let mut written: Option<Option<String>> = None;
    let result = (|| {
        let shown = Progress::new(&format!("copying to {url}"), Some(size));
        let sent = match remote.upload(archive, name, Some(&ours), overwrite, &shown) {
            Ok(sent) => sent,
            // Another writer created the name between the look above and the
            // end of the upload (the create is conditional): theirs stays.
            Err(e)
                if !overwrite
                    && orca_shared::exit::kind_of(&e) == orca_shared::ErrorKind::AlreadyExists =>
            {
                shown.finish();
                ctx.note(format!("{e:#}"));
                return keep_existing(ctx, &remote, archive, name, &url, size, &ours, started);
            }
            Err(e) => return Err(e),
        };
        written = Some(sent.token.clone());
        shown.finish();
        orca_shared::testpoint::point("copy-uploaded");
        if sent.size != size {
            fail!(
                Failure,
                "{} changed size while it was copied ({size} then {} bytes); run again",
                archive.display(),
                sent.size
            );
        }
        // Read the copy back: what the destination holds, not what was sent.
        orca_shared::interrupt::check()?;
        let shown = Progress::new(&format!("checking {url}"), Some(size));
        let (got_size, got_sha) = remote.read_back(name, Some(&shown))?;
        shown.finish();
        if got_size != size || !got_sha.eq_ignore_ascii_case(&sent.sha256) {
            fail!(
                VerificationFailed,
                "the copy at {url} reads back as {got_size} bytes with SHA-256 {got_sha}, not {size} bytes with {}: the destination damaged it (or another writer replaced it); the object this run wrote is removed if it is still there",
                sent.sha256
            );
        }
        finish_copy(
            ctx,
            &remote,
            archive,
            name,
            &url,
            size,
            &sent.sha256,
            started,
        )
    })();
    // Proven meanwhile by another run of these same bytes (it read the
    // object back and wrote its checksum): it is that run's copy now too,
    // unless this run found the object damaged.
    let damaged = result.as_ref().err().is_some_and(|e| {
        orca_shared::exit::kind_of(e) == orca_shared::ErrorKind::VerificationFailed
    });
    let unless_proven = (!damaged).then_some(ours.as_str());
    if result.is_err()
        && let Some(token) = &written
    {
        // What this run put under the name and did not prove (a copy not
        // read back, or without its checksum) must not stay: take it back,
        // Ctrl-C or not, but only while it is still this run's object.
        // (A failed upload itself leaves nothing.)
        match remote.remove_own(name, token.as_deref(), unless_proven) {
            Ok(true) => {}
            Ok(false) => ctx.warn(format!(
                "{url} is no longer only this run's (another writer's, one another run proved, or none); it was left alone"
            )),
            Err(e) => ctx.warn(format!(
                "cannot remove the unchecked copy {url}: {e:#}; remove it yourself"
            )),
        }
    }
    release_claim(&remote);
    // A claim of these same bytes left by a killed run: once the copy is
    // there, it protects nothing (later writers meet the archive itself).
    if result.is_ok()
        && claim.is_none()
        && !overwrite
        && let Ok(Some(b)) = remote.get_small(&claim_name)
        && orca_remote::parse_sha256_line(&String::from_utf8_lossy(&b), name).as_deref()
            == Some(ours.as_str())
    {
        let _ = remote.remove_unfinished(&claim_name);
    }
    result
}

/// The claim a copy makes on a name before uploading (see [`copy_one`]).
pub const CLAIM_SUFFIX: &str = ".claim";

/// The name is taken at the destination: the same bytes are kept (and
/// checked); other bytes are another backup, left alone (exit 5).
#[allow(clippy::too_many_arguments)]
fn keep_existing(
    ctx: &Ctx,
    remote: &Remote,
    archive: &Path,
    name: &str,
    url: &str,
    size: u64,
    ours: &str,
    started: Instant,
) -> anyhow::Result<Copy> {
    let shown = Progress::new(&format!("checking {url}"), Some(size));
    let (got_size, got_sha) = remote.read_back(name, Some(&shown))?;
    shown.finish();
    if got_size != size || !got_sha.eq_ignore_ascii_case(ours) {
        let theirs = remote.expected_sha256(name).ok().flatten();
        if theirs.as_deref() == Some(ours) {
            fail!(
                VerificationFailed,
                "the copy at {url} is damaged (its checksum is this backup's, but it reads back as {got_size} bytes with SHA-256 {got_sha}): replace it with --overwrite"
            );
        }
        fail!(
            AlreadyExists,
            "{url} already exists and holds other bytes (SHA-256 {got_sha}): that is another backup; it was left untouched (give this backup another name, pass --overwrite to replace that one, or remove it with orca-prune --remote)"
        );
    }
    ctx.note(format!("{url} is already there and reads back the same"));
    let c = finish_copy(ctx, remote, archive, name, url, size, ours, started)?;
    Ok(Copy {
        uploaded: false,
        ..c
    })
}

#[allow(clippy::too_many_arguments)]
fn finish_copy(
    ctx: &Ctx,
    remote: &Remote,
    archive: &Path,
    name: &str,
    url: &str,
    size: u64,
    sha: &str,
    started: Instant,
) -> anyhow::Result<Copy> {
    remote.put_small(
        &format!("{name}.sha256"),
        orca_remote::sha256_line(sha, name).as_bytes(),
    )?;
    let copy = Copy {
        url: url.to_string(),
        size_bytes: size,
        sha256: sha.to_string(),
        verified: true,
        duration_ms: started.elapsed().as_millis() as u64,
        copied_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        uploaded: true,
    };
    // The local manifest records the copy; the copy's manifest is that one,
    // so it also says where it lives.
    let value = serde_json::to_value(&copy).expect("a copy serializes");
    let recorded = manifest::update_raw(archive, |m| {
        let list = m
            .entry("copies")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if !list.is_array() {
            *list = serde_json::Value::Array(Vec::new());
        }
        if let Some(a) = list.as_array_mut() {
            a.retain(|v| v.get("url").and_then(|u| u.as_str()) != Some(url));
            a.push(value.clone());
        }
    })
    .with_context(|| {
        format!(
            "cannot record the copy in {}",
            manifest::path_for(archive).display()
        )
    })?;
    if recorded {
        let bytes = std::fs::read(manifest::path_for(archive))
            .with_context(|| format!("cannot read {}", manifest::path_for(archive).display()))?;
        remote.put_small(&format!("{name}.json"), &bytes)?;
    } else {
        ctx.warn(format!(
            "{} has no manifest, so the copy carries none (the remote catalog lists it from its name and size)",
            archive.display()
        ));
    }
    Ok(copy)
}

/// Whether two paths are one directory: by device and inode on Unix (a bind
/// mount or a second mount of one share too), by canonical path elsewhere.
fn same_dir(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
