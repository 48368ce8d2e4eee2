//! `orca-verify`: prove an archive is whole and is the one that was exported.
//!
//! Checks, in order: the file exists and is a regular file; its size (a warning
//! below `min_size_warning_mb`); integrity (the whole stream decompressed, gzip
//! with any number of members, zstd or plain tar, detected from the content,
//! and every tar header parsed through the end-of-archive marker, with nothing
//! but zero padding after it); the SHA-256 against the record's `sha256` and the
//! `<archive>.sha256` file; content sanity (SQL Server `.mdf`/`.ldf` files);
//! and, when the archive has a manifest, its entries, size and SHA-256. The
//! result is recorded in the manifest.
//! Restore and list use the same code through [`verify`].

pub mod decode;
pub mod member;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::crypt::Identities;
use orca_shared::tarscan::{Entry, EntryType, Visitor};
use orca_shared::{fail, paths};
use serde::Serialize;

pub use decode::Format;

/// Prove a backup archive is whole and is the one that was exported.
///
/// Reads "backup_path" and "sha256" from the record on stdin, or takes the
/// archive as an argument. Checks: exists, size, integrity, checksum, content,
/// manifest; records the result in the archive's manifest. Adds "verified", "checks", "warnings", "entries",
/// "uncompressed_bytes", "database_files" and "format" to the record. A failed
/// check exits 6.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Archive to verify; `-` or nothing: the backup_path of the record on stdin
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,

    /// Expected SHA-256 (hex) [default: the record's sha256 and <ARCHIVE>.sha256]
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Decryption: identities and passphrase.
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| orca_shared::app::archive_stdin(cli.archive.as_deref())
);

/// The flags that open encrypted archives (orca-verify, orca-restore,
/// orca-list).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// An age identity file or SSH private key to decrypt with (repeatable) [default: $ORCA_IDENTITY, else config encryption.identity_file]
    #[arg(long = "identity", short = 'i', value_name = "PATH")]
    pub identities: Vec<PathBuf>,

    /// Also try a passphrase: from the file $ORCA_PASSPHRASE_FILE names, else asked on the terminal
    #[arg(long)]
    pub passphrase: bool,
}

impl KeyArgs {
    /// The identities these flags, the environment and the config give.
    pub fn load(&self, ctx: &Ctx) -> anyhow::Result<std::sync::Arc<Identities>> {
        let flags = orca_shared::crypt::DecryptFlags {
            identities: self.identities.clone(),
            passphrase: self.passphrase,
        };
        Ok(std::sync::Arc::new(orca_shared::crypt::identities_for(
            &flags,
            &ctx.config.encryption,
        )?))
    }
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    /// exists, size, integrity, checksum, content (and manifest when present).
    pub name: &'static str,
    /// False only when the check failed.
    pub ok: bool,
    /// pass, warn, fail or skipped.
    pub status: &'static str,
    /// What was found.
    pub detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            status: "pass",
            detail: detail.into(),
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            status: "warn",
            detail: detail.into(),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            status: "fail",
            detail: detail.into(),
        }
    }
    fn skipped(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            status: "skipped",
            detail: detail.into(),
        }
    }
}

/// What to compare against.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Warn below this many MiB.
    pub min_size_mb: u64,
    /// SHA-256 from the record or a flag.
    pub expected_sha256: Option<String>,
    /// Record the result in the archive's manifest (when it has a valid one).
    pub update_manifest: bool,
    /// What opens encrypted archives (none: only their header and checksum
    /// are checked).
    pub identities: Option<std::sync::Arc<Identities>>,
}

/// The verification of one archive.
#[derive(Debug)]
pub struct Report<V> {
    /// The archive.
    pub path: PathBuf,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Human-readable warnings.
    pub warnings: Vec<String>,
    /// All checks passed.
    pub verified: bool,
    /// Detected format.
    pub format: Option<Format>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
    /// Entries in the archive.
    pub entries: u64,
    /// Size of the tar stream.
    pub uncompressed_bytes: u64,
    /// Bytes of regular file data.
    pub content_bytes: u64,
    /// `.mdf` and `.ldf` files.
    pub database_files: u64,
    /// The caller's visitor after the scan.
    pub visitor: V,
    /// For an encrypted archive: how, and whether it was opened.
    pub encryption: Option<decode::Encryption>,
    /// Why an encrypted archive could not be checked: no identity or none
    /// that opens it (exit 14, not damage).
    pub decryption_error: Option<String>,
    /// The exit code that goes with `decryption_error` (14, or 2 when an
    /// identity named in the config or environment cannot be loaded).
    pub decryption_kind: orca_shared::exit::ErrorKind,
}

impl<V> Report<V> {
    /// The first failed check, if any.
    pub fn failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }

    /// The one-line failure message naming every failed check and the archive.
    pub fn failure_message(&self) -> Option<String> {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} check: {}", c.name, c.detail))
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "verification failed for {}: {}; do not rely on this backup",
                self.path.display(),
                failed.join("; ")
            )
        })
    }
}

/// Counts database files, passing everything on to the caller's visitor.
struct Counting<V> {
    inner: V,
    mdf: u64,
    ldf: u64,
}

impl<V: Visitor> Visitor for Counting<V> {
    fn entry(&mut self, e: &Entry) -> Result<(), String> {
        if matches!(e.kind, EntryType::File | EntryType::HardLink) {
            let lower = e.path.to_ascii_lowercase();
            if lower.ends_with(b".mdf") {
                self.mdf += 1;
            } else if lower.ends_with(b".ldf") {
                self.ldf += 1;
            }
        }
        self.inner.entry(e)
    }
    fn data(&mut self, chunk: &[u8]) {
        self.inner.data(chunk);
    }
    fn hole(&mut self, len: u64) {
        self.inner.hole(len);
    }
    fn end_entry(&mut self) {
        self.inner.end_entry();
    }
}

/// `<archive>.sha256`.
pub fn checksum_file(archive: &Path) -> PathBuf {
    let mut s = archive.as_os_str().to_os_string();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Run every check on `path`, scanning entries with `visitor` too.
pub fn verify<V: Visitor + Send>(
    path: &Path,
    opts: &Options,
    visitor: V,
) -> anyhow::Result<Report<V>> {
    let mut report = Report {
        path: path.to_path_buf(),
        checks: Vec::new(),
        warnings: Vec::new(),
        verified: false,
        format: None,
        sha256: None,
        entries: 0,
        uncompressed_bytes: 0,
        content_bytes: 0,
        database_files: 0,
        visitor,
        encryption: None,
        decryption_error: None,
        decryption_kind: orca_shared::exit::ErrorKind::DecryptionFailed,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            report
                .checks
                .push(Check::fail("exists", "it is not a regular file"));
            return Ok(skip_rest(report));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.checks.push(Check::fail("exists", "no such file"));
            return Ok(skip_rest(report));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    report.checks.push(Check::pass("exists", "regular file"));
    let size = meta.len();
    let min = opts.min_size_mb.saturating_mul(1 << 20);
    if size < min {
        let w = format!(
            "{} is {} bytes, under {} MB (an empty SQL Server volume archives to about 50 MB)",
            path.display(),
            size,
            opts.min_size_mb
        );
        report.checks.push(Check::warn(
            "size",
            format!("{size} bytes, under {} MB", opts.min_size_mb),
        ));
        report.warnings.push(w);
    } else {
        report
            .checks
            .push(Check::pass("size", format!("{size} bytes")));
    }

    let counting = Counting {
        inner: report.visitor,
        mdf: 0,
        ldf: 0,
    };
    let none = Identities::none();
    let ids = opts.identities.as_deref().unwrap_or(&none);
    let decoded = decode::decode(path, counting, ids)
        .with_context(|| format!("cannot read {}", path.display()))?;
    report.encryption = decoded.encryption.clone();
    let locked_because = match &decoded.encryption {
        Some(decode::Encryption {
            state: decode::Opening::NoIdentity(why),
            ..
        }) => Some(why.clone()),
        _ => None,
    };
    let locked = locked_because.is_some();
    if let Some(decode::Encryption {
        state: decode::Opening::Failed(orca_shared::exit::ErrorKind::Usage, why),
        ..
    }) = &decoded.encryption
    {
        report.decryption_kind = orca_shared::exit::ErrorKind::Usage;
        report.decryption_error = Some(format!("cannot open {}: {why}", path.display()));
    }
    if let Some(decode::Encryption {
        state: decode::Opening::Failed(orca_shared::exit::ErrorKind::DecryptionFailed, why),
        ..
    }) = &decoded.encryption
    {
        let recipients: Vec<String> = orca_shared::manifest::read(path)
            .manifest()
            .and_then(|m| m.encryption.as_ref())
            .map(|e| e.recipients.clone())
            .unwrap_or_default();
        let to = if recipients.is_empty() {
            String::new()
        } else {
            format!(
                " (its manifest says it is encrypted to {})",
                recipients.join(", ")
            )
        };
        report.decryption_error = Some(format!("cannot open {}: {why}{to}", path.display()));
    }
    let Counting { inner, mdf, ldf } = decoded.visitor;
    report.visitor = inner;
    report.format = decoded.format;
    report.sha256 = Some(decoded.sha256.clone());
    report.warnings.extend(decoded.warnings.iter().cloned());
    let opened_note = match &decoded.encryption {
        Some(e) if e.state == decode::Opening::Opened => {
            if e.passphrase {
                "age (passphrase) over "
            } else {
                "age over "
            }
        }
        _ => "",
    };
    match &decoded.integrity {
        _ if locked => report.checks.push(Check::skipped(
            "integrity",
            format!(
                "skipped: encrypted, no identity (the age header was read; the content was not: {})",
                locked_because.as_deref().unwrap_or("")
            ),
        )),
        _ if report.decryption_error.is_some() => report.checks.push(Check::skipped(
            "integrity",
            "skipped: encrypted, and no identity given opens it",
        )),
        Ok(summary) => {
            report.entries = summary.entries;
            report.uncompressed_bytes = summary.tar_bytes;
            report.content_bytes = summary.content_bytes;
            let fmt = decoded.format.map_or("tar", Format::as_str);
            let members = match decoded.members {
                0 => String::new(),
                1 => ", 1 gzip member".to_string(),
                n => format!(", {n} gzip members"),
            };
            report.checks.push(Check::pass(
                "integrity",
                format!(
                    "{opened_note}{fmt}{members}: {} entries, {} bytes of tar, end-of-archive marker present",
                    summary.entries, summary.tar_bytes
                ),
            ));
        }
        Err(why) => report.checks.push(Check::fail("integrity", why.clone())),
    }

    report.checks.push(checksum_check(
        path,
        &decoded.sha256,
        opts,
        &mut report.warnings,
    ));

    report.database_files = mdf + ldf;
    if locked || report.decryption_error.is_some() {
        report
            .checks
            .push(Check::skipped("content", "skipped: encrypted, no identity"));
    } else if decoded.integrity.is_err() {
        report.checks.push(Check::skipped(
            "content",
            "the archive could not be read through",
        ));
    } else if mdf + ldf == 0 {
        let w = format!(
            "{} holds no .mdf or .ldf files: probably not a SQL Server data volume",
            path.display()
        );
        report
            .checks
            .push(Check::warn("content", "no .mdf or .ldf files"));
        report.warnings.push(w);
    } else {
        report.checks.push(Check::pass(
            "content",
            format!("{mdf} .mdf and {ldf} .ldf files"),
        ));
    }
    let manifest = orca_shared::manifest::read(path);
    let check = manifest_check(&manifest, &report, decoded.integrity.is_ok());
    report.checks.push(check);
    // Encrypted and not opened: verified only when the bytes are the ones
    // exported (a checksum to compare with).
    if locked
        && report
            .checks
            .iter()
            .any(|c| c.name == "checksum" && c.status != "pass")
        && report.decryption_error.is_none()
    {
        report.decryption_error = Some(format!(
            "cannot verify {}: there is no checksum (.sha256 file or record) to compare it with, and {}",
            path.display(),
            locked_because.as_deref().unwrap_or("it is encrypted")
        ));
    }
    if let Some(w) = manifest.warning() {
        report.warnings.push(w.to_string());
    }
    report.verified = report.checks.iter().all(|c| c.ok) && report.decryption_error.is_none();
    // A key that does not fit says nothing about the archive: the manifest
    // keeps what it knew.
    if opts.update_manifest
        && report.decryption_error.is_none()
        && let Some(m) = manifest.manifest()
    {
        let mut m = m.clone();
        m.verification = Some(orca_shared::manifest::Verification {
            verified: report.verified,
            verified_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            failed_checks: report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.to_string())
                .collect(),
        });
        if let Err(e) = orca_shared::manifest::write(path, &m) {
            report
                .warnings
                .push(format!("cannot record the result in the manifest: {e:#}"));
        }
    }
    Ok(report)
}

fn manifest_check<V>(
    read: &orca_shared::manifest::Read,
    report: &Report<V>,
    readable: bool,
) -> Check {
    use orca_shared::manifest::Read;
    let m = match read {
        Read::Missing => return Check::skipped("manifest", "no manifest beside the archive"),
        Read::Ignored(why) => return Check::warn("manifest", why.clone()),
        Read::Valid(m) => m,
    };
    if !readable {
        // The file's hash can still be held to the manifest's.
        if let Some(sha) = &report.sha256
            && report.encryption.is_some()
        {
            if !m.sha256.eq_ignore_ascii_case(sha) {
                return Check::fail(
                    "manifest",
                    format!("SHA-256 {sha}, the manifest says {}", m.sha256),
                );
            }
            return Check::pass(
                "manifest",
                format!(
                    "SHA-256 matches the manifest of {} (content not read: encrypted)",
                    m.created_at
                ),
            );
        }
        return Check::skipped("manifest", "the archive could not be read through");
    }
    let mut wrong = Vec::new();
    if m.entries != report.entries {
        wrong.push(format!(
            "{} entries, the manifest says {}",
            report.entries, m.entries
        ));
    }
    if m.uncompressed_bytes != report.uncompressed_bytes {
        wrong.push(format!(
            "{} bytes of tar, the manifest says {}",
            report.uncompressed_bytes, m.uncompressed_bytes
        ));
    }
    if let Some(sha) = &report.sha256
        && !m.sha256.eq_ignore_ascii_case(sha)
    {
        wrong.push(format!("SHA-256 {sha}, the manifest says {}", m.sha256));
    }
    if wrong.is_empty() {
        Check::pass(
            "manifest",
            format!(
                "entries, size and SHA-256 match the manifest of {}",
                m.created_at
            ),
        )
    } else {
        Check::fail("manifest", wrong.join("; "))
    }
}

fn skip_rest<V>(mut report: Report<V>) -> Report<V> {
    for name in ["size", "integrity", "checksum", "content", "manifest"] {
        report
            .checks
            .push(Check::skipped(name, "no archive to check"));
    }
    report.verified = false;
    report
}

fn checksum_check(path: &Path, actual: &str, opts: &Options, warnings: &mut Vec<String>) -> Check {
    let mut compared = Vec::new();
    if let Some(expected) = &opts.expected_sha256 {
        if !expected.eq_ignore_ascii_case(actual) {
            return Check::fail(
                "checksum",
                format!("SHA-256 is {actual} but the record says {expected}"),
            );
        }
        compared.push("the record");
    }
    let sidecar = checksum_file(path);
    match std::fs::read_to_string(&sidecar) {
        Ok(text) => {
            let mut parts = text.split_whitespace();
            let hash = parts.next().unwrap_or("");
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Check::fail(
                    "checksum",
                    format!("{} is not a sha256sum line", sidecar.display()),
                );
            }
            if !hash.eq_ignore_ascii_case(actual) {
                return Check::fail(
                    "checksum",
                    format!("SHA-256 is {actual} but {} says {hash}", sidecar.display()),
                );
            }
            let named = parts.next().map(|n| n.trim_start_matches('*'));
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if named.is_some_and(|n| n != file_name) {
                warnings.push(format!(
                    "{} names another file ({})",
                    sidecar.display(),
                    named.unwrap_or("")
                ));
            }
            compared.push("the .sha256 file");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Check::fail(
                "checksum",
                format!("cannot read {}: {e}", sidecar.display()),
            );
        }
    }
    if compared.is_empty() {
        Check::skipped(
            "checksum",
            format!(
                "SHA-256 {actual}; nothing to compare it with (no sha256 in the record, no .sha256 file)"
            ),
        )
    } else {
        Check::pass(
            "checksum",
            format!("SHA-256 {actual} matches {}", compared.join(" and ")),
        )
    }
}

/// The archive a step works on, the argument else the record's `backup_path`,
/// with the record's `sha256` when it describes that same archive. `verb`
/// names the step in the usage error ("verify", "restore").
pub fn archive_from(
    arg: Option<&Path>,
    ctx: &Ctx,
    verb: &str,
) -> anyhow::Result<(PathBuf, Option<String>)> {
    let record_path = ctx.record.str("backup_path")?.map(PathBuf::from);
    // `-` means: the record says which archive.
    let arg = arg.filter(|p| p.as_os_str() != "-");
    let path = match (arg, &record_path) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => p.clone(),
        (None, None) => fail!(
            Usage,
            "no archive to {verb}: pass its path (orca-{verb} ARCHIVE) or pipe a record with backup_path"
        ),
    };
    paths::utf8(&path)?;
    // A backup's name as orca-list shows it is found in the backups
    // directory; a URL (a copy elsewhere) is the caller's to fetch.
    let path = if path.to_str().is_some_and(|p| p.contains("://")) {
        path
    } else {
        let backups_dir = ctx.config.backups_dir()?;
        let (found, looked_up) = orca_shared::catalog::resolve(&path, &backups_dir)?;
        if looked_up && found != path {
            ctx.note(format!("{} is {}", path.display(), found.display()));
        }
        found
    };
    // The record's sha256 describes the record's archive only.
    let record_sha = if record_path.as_deref() == Some(path.as_path()) {
        ctx.record.str("sha256")?.map(String::from)
    } else {
        None
    };
    Ok((path, record_sha))
}

/// Verify the archive and add the results to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let (path, record_sha) = archive_from(cli.archive.as_deref(), ctx, "verify")?;
    let record_path_given = ctx.record.get("backup_path").is_some();
    let opts = Options {
        min_size_mb: ctx.config.min_size_warning_mb,
        expected_sha256: cli.sha256.or(record_sha),
        update_manifest: true,
        identities: Some(cli.keys.load(ctx)?),
    };
    let report = verify(&path, &opts, ())?;
    for w in &report.warnings {
        ctx.warn(w);
    }
    let rec = &mut ctx.record;
    if !record_path_given {
        rec.set("backup_path", paths::utf8(&path)?);
    }
    rec.set("verified", report.verified);
    rec.set("checks", &report.checks);
    rec.set("warnings", &report.warnings);
    // What was not read is not zero: the export's figures stay.
    let content_read = report
        .encryption
        .as_ref()
        .is_none_or(|e| e.state == decode::Opening::Opened);
    if content_read {
        rec.set("entries", report.entries);
        rec.set("uncompressed_bytes", report.uncompressed_bytes);
        rec.set("database_files", report.database_files);
        rec.set("format", report.format.map(Format::as_str));
    }
    if rec.get("sha256").is_none()
        && let Some(sha) = &report.sha256
    {
        rec.set("sha256", sha);
    }
    rec.set("encrypted", report.encryption.is_some());
    if let Some(msg) = report.failure_message() {
        fail!(VerificationFailed, "{msg}");
    }
    if let Some(msg) = &report.decryption_error {
        return Err(orca_shared::OrcaError::new(report.decryption_kind, msg.clone()).into());
    }
    if report
        .encryption
        .as_ref()
        .is_some_and(|e| e.state != decode::Opening::Opened)
    {
        ctx.note(format!(
            "{} verified as far as it can be without an identity: the age header and the SHA-256 checksum match; its content was not checked (encrypted, no identity: pass --identity)",
            path.display()
        ));
        return Ok(());
    }
    ctx.note(format!(
        "{} verified: {} entries, {} database files",
        path.display(),
        report.entries,
        report.database_files
    ));
    Ok(())
}
