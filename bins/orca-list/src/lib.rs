//! `orca-list`: the catalog of backups.
//!
//! Every backup in the backups directory, newest first, with what its name,
//! file and manifest say: kind, time, size, description, tags, whether it is a
//! consistent or a live copy, its latest verification, and which sidecars it
//! has. Archives without a manifest (today's method, older tools) are listed
//! from their name and file alone. A corrupt or foreign `.json` is a warning and
//! never trusted. `--verify` runs the full orca-verify checks on each.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Local, NaiveDate, TimeZone, Utc};
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::catalog::{self, Found};
use orca_shared::names::Kind;
use orca_shared::{fail, paths};
use serde::Serialize;

/// The catalog of backups: list, filter and check them.
///
/// Writes one record with "backups" (newest first), "count", "total_bytes",
/// "backups_dir", "incomplete" and "warnings"; --format table prints an
/// aligned table instead. With --verify, a backup that fails exits 6.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Only backups carrying this tag (repeatable: all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Only named or only timestamped backups
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,

    /// Only backups from this time on: RFC 3339, a date (YYYY-MM-DD, local), or an age like 7d or 12h
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Only backups of this volume (known from the manifest)
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// Run the full verification on each listed backup
    #[arg(long)]
    pub verify: bool,

    /// With --verify: what opens encrypted backups.
    #[command(flatten)]
    pub keys: orca_verify::KeyArgs,

    /// json (one record) or table (aligned text for people)
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Directory to list [default: config backups_dir, else <base>/backups]
    #[arg(long, value_name = "DIR", conflicts_with = "remote")]
    pub backups_dir: Option<PathBuf>,

    /// List the copies at s3://bucket[/prefix] or a copy directory instead (--verify then reads each copy back and checks its SHA-256)
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,

    /// Use this time as now for --since ages (RFC 3339)
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub now: Option<String>,

    /// `-`: read a JSON record on stdin and pass its fields on (by default this tool does not read stdin)
    #[arg(value_name = "-", value_parser = orca_shared::app::dash)]
    pub record: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON record.
    Json,
    /// An aligned table.
    Table,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| if cli.record.is_some() {
        orca_shared::app::StdinUse::Always
    } else {
        orca_shared::app::StdinUse::Never
    }
);

/// One line of the catalog.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: String,
    /// timestamped or named.
    pub kind: &'static str,
    /// Its time (UTC, RFC 3339): from the name, the manifest or the file.
    pub time: String,
    /// The same in local time.
    pub time_local: String,
    /// Archive size.
    pub size_bytes: u64,
    /// The seed's size format.
    pub size: String,
    /// gzip, zstd or none.
    pub compression: &'static str,
    /// The volume (from the manifest).
    pub volume: Option<String>,
    /// Description (from the manifest).
    pub description: Option<String>,
    /// Tags (from the manifest).
    pub tags: Vec<String>,
    /// Consistent (true), not (false), unknown (null).
    pub consistent: Option<bool>,
    /// How the files were copied: offline, hot, stopped, killed, live
    /// (null without a manifest).
    pub consistency: Option<orca_shared::consistency::Consistency>,
    /// For a hot copy: the engine, the method, the databases, `frozen_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot: Option<orca_shared::consistency::HotCopy>,
    /// Latest verification result, if one was recorded.
    pub verified: Option<bool>,
    /// When that was.
    pub verified_at: Option<String>,
    /// Checks that failed then.
    pub failed_checks: Vec<String>,
    /// A `.sha256` file is beside it.
    pub has_checksum: bool,
    /// A valid manifest is beside it.
    pub has_manifest: bool,
    /// Why a `.json` beside it was ignored.
    pub manifest_warning: Option<String>,
    /// The backup was taken under another `sa` password than the containers
    /// on its volume use now (null: cannot tell).
    pub password_differs: Option<bool>,
    /// Encrypted (age), from its name (`.age`).
    pub encrypted: bool,
    /// Who it is encrypted to (from the manifest: public keys only).
    pub recipients: Vec<String>,
    /// The newest restore drill (`{at, ok}`), from the manifest.
    pub last_drill: Option<LastDrill>,
}

/// The newest drill of a backup.
#[derive(Clone, Debug, Serialize)]
pub struct LastDrill {
    /// When (UTC, RFC 3339).
    pub at: String,
    /// The database started on it and every check passed.
    pub ok: bool,
}

/// A restore that was interrupted and waits for --resume or --rollback.
#[derive(Clone, Debug, Serialize)]
pub struct Interrupted {
    /// Its volume.
    pub volume: String,
    /// The journal.
    pub journal: String,
    /// Where it stopped.
    pub phase: String,
    /// The archive it was restoring.
    pub archive: String,
    /// When it started (from the journal; else when it took its lock).
    pub started_at: String,
    /// The process that ran it, when the engine's lock says (`pid N on host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Whether its journal could be read here (false: another user's
    /// backups directory, or gone).
    pub journal_readable: bool,
}

fn listed(b: &Found) -> anyhow::Result<Listed> {
    let m = b.manifest.manifest();
    let v = m.and_then(|m| m.verification.as_ref());
    Ok(Listed {
        name: b.name.clone(),
        path: paths::utf8(&b.path)?.to_string(),
        kind: b.kind.as_str(),
        time: b.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        time_local: b
            .time
            .with_timezone(&Local)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        size_bytes: b.size_bytes,
        size: orca_shared::progress::seed_size(b.size_bytes),
        compression: b.compression.as_str(),
        volume: m.map(|m| m.volume.clone()),
        description: m.and_then(|m| m.description.clone()),
        tags: m.map(|m| m.tags.clone()).unwrap_or_default(),
        consistent: m.map(|m| m.consistent),
        consistency: m.map(|m| m.consistency()),
        hot: m.and_then(|m| m.hot.clone()),
        verified: v.map(|v| v.verified),
        verified_at: v.map(|v| v.verified_at.clone()),
        failed_checks: v.map(|v| v.failed_checks.clone()).unwrap_or_default(),
        password_differs: None,
        encrypted: b.encrypted,
        recipients: m
            .and_then(|m| m.encryption.as_ref())
            .map(|e| e.recipients.clone())
            .unwrap_or_default(),
        last_drill: m.and_then(|m| m.last_drill()).map(|d| LastDrill {
            at: d.at.clone(),
            ok: d.ok,
        }),
        has_checksum: b
            .sidecars
            .iter()
            .any(|s| s.to_string_lossy().ends_with(".sha256")),
        has_manifest: m.is_some(),
        manifest_warning: b.manifest.warning().map(String::from),
    })
}

/// Parse `--since`: RFC 3339, a local date, or an age (`7d`, `12h`, `30m`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        if let Some(t) = Local.from_local_datetime(&midnight).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Some(age) = orca_shared::limits::parse_age(s)
        && let Some(t) = now.checked_sub_signed(age)
    {
        return Ok(t);
    }
    fail!(
        Usage,
        "--since {s:?}: give an RFC 3339 time, a date (2026-06-30) or an age up to 100 years (7d, 12h, 30m)"
    )
}

/// List the backups and add the catalog to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let now = match cli.now.as_deref() {
        None => Utc::now(),
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => fail!(Usage, "--now {s:?} is not an RFC 3339 time ({e})"),
        },
    };
    let since = cli
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()?;
    let remote = match &cli.remote {
        Some(url) => Some(orca_remote::Remote::open_url(url, &ctx.config, ctx.tool)?),
        None => None,
    };
    let dir = match (&remote, cli.backups_dir) {
        (Some(r), _) => match r.location() {
            orca_remote::Location::Dir(d) => d.clone(),
            orca_remote::Location::S3 { .. } => PathBuf::new(),
        },
        (None, Some(d)) => d,
        (None, None) => ctx.config.backups_dir()?,
    };
    paths::utf8(&dir)?;
    let found = match &remote {
        Some(r) => r.catalog()?,
        None => catalog::scan(&dir)?,
    };
    let in_s3 = matches!(
        remote.as_ref().map(|r| r.location()),
        Some(orca_remote::Location::S3 { .. })
    );
    let mut backups = Vec::new();
    let mut warnings = Vec::new();
    for b in &found.backups {
        if cli.kind.is_some_and(|k| k != b.kind) || since.is_some_and(|s| b.time < s) {
            continue;
        }
        let m = b.manifest.manifest();
        if !cli
            .tags
            .iter()
            .all(|t| m.is_some_and(|m| m.tags.contains(t)))
        {
            continue;
        }
        if cli
            .volume
            .as_ref()
            .is_some_and(|v| m.is_none_or(|m| &m.volume != v))
        {
            continue;
        }
        if let Some(w) = b.manifest.warning() {
            warnings.push(w.to_string());
        }
        backups.push((b, listed(b)?));
    }
    let mut failed = Vec::new();
    let mut unopened = Vec::new();
    if cli.verify {
        let opts = orca_verify::Options {
            min_size_mb: ctx.config.min_size_warning_mb,
            expected_sha256: None,
            update_manifest: true,
            identities: Some(cli.keys.load(ctx)?),
        };
        for (b, entry) in &mut backups {
            if let (true, Some(r)) = (in_s3, &remote) {
                // A copy in object storage: read it back, compare with its checksum.
                let (ok, why) = check_copy(r, &entry.name)?;
                entry.verified = Some(ok);
                entry.verified_at = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                entry.failed_checks = if ok { vec![] } else { vec!["checksum".into()] };
                if !ok {
                    warnings.push(why);
                    failed.push(entry.name.clone());
                }
                continue;
            }
            let report = orca_verify::verify(&b.path, &opts, ())?;
            if let Some(msg) = &report.decryption_error {
                // Not checked is not failed: the entry keeps what the
                // manifest said.
                warnings.push(msg.clone());
                unopened.push(entry.name.clone());
                continue;
            }
            entry.verified = Some(report.verified);
            entry.verified_at = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            entry.failed_checks = report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.to_string())
                .collect();
            if let Some(msg) = report.failure_message() {
                warnings.push(msg);
                failed.push(entry.name.clone());
            }
        }
    }
    if remote.is_none() {
        password_differs(&mut backups);
    }
    let journals = if remote.is_none() {
        orca_shared::journal::in_dir(&dir, &mut warnings)
    } else {
        Vec::new()
    };
    let mut interrupted: Vec<Interrupted> = journals
        .into_iter()
        .map(|(path, j)| Interrupted {
            volume: j.volume,
            journal: path.display().to_string(),
            phase: j.phase.as_str().to_string(),
            archive: j.archive,
            started_at: j.started_at,
            by: None,
            journal_readable: true,
        })
        .collect();
    // Those the engine knows of (their journal in another backups directory),
    // when it answers; a listing does not need Docker.
    if let (None, Ok(known)) = (&remote, engine_interrupted()) {
        for a in known {
            if let Some(i) = interrupted.iter_mut().find(|i| i.journal == a.journal) {
                i.by = Some(a.by);
                continue;
            }
            let j = orca_shared::journal::Journal::load(std::path::Path::new(&a.journal)).ok();
            interrupted.push(Interrupted {
                volume: a.volume,
                phase: j
                    .as_ref()
                    .map_or("unknown".into(), |j| j.phase.as_str().to_string()),
                archive: j.as_ref().map(|j| j.archive.clone()).unwrap_or_default(),
                journal_readable: j.is_some(),
                started_at: j.map(|j| j.started_at).unwrap_or(a.since),
                by: Some(a.by),
                journal: a.journal,
            });
        }
    }
    for i in &interrupted {
        let by =
            i.by.as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
        let state = if i.journal_readable {
            format!("was interrupted while {} (journal {})", i.phase, i.journal)
        } else {
            format!(
                "was interrupted (it took its lock at {}; its journal {} cannot be read here: it may be another user's of this engine, who can finish it)",
                i.started_at, i.journal
            )
        };
        warnings.push(format!(
            "a restore of volume '{}'{by} {state}: finish it with `orca-restore --resume --volume {}` or undo it with `orca-restore --rollback --volume {}`",
            i.volume, i.volume, i.volume
        ));
    }
    for w in &warnings {
        ctx.warn(w);
    }
    let listed: Vec<Listed> = backups.into_iter().map(|(_, l)| l).collect();
    let total: u64 = listed.iter().map(|l| l.size_bytes).sum();
    let incomplete: Vec<String> = found
        .incomplete
        .iter()
        .filter_map(|i| i.path.to_str().map(String::from))
        .collect();
    if cli.format == Format::Table {
        ctx.stdout_text = Some(table(&listed));
    }
    let rec = &mut ctx.record;
    match &remote {
        Some(r) => rec.set("remote", r.location().url()),
        None => rec.set("backups_dir", paths::utf8(&dir)?),
    }
    rec.set("count", listed.len());
    rec.set("total_bytes", total);
    rec.set("backups", &listed);
    rec.set("incomplete", &incomplete);
    rec.set("interrupted_restores", &interrupted);
    rec.set("schedules", orca_schedule::summaries());
    rec.set("warnings", &warnings);
    if !failed.is_empty() {
        fail!(
            VerificationFailed,
            "{} of {} backups failed verification: {}; do not rely on them",
            failed.len(),
            listed.len(),
            failed.join(", ")
        );
    }
    if !unopened.is_empty() {
        fail!(
            DecryptionFailed,
            "{} of {} backups could not be verified, being encrypted to keys not given: {} (pass --identity for them)",
            unopened.len(),
            listed.len(),
            unopened.join(", ")
        );
    }
    Ok(())
}

/// Read a copy in object storage back and compare it with its `.sha256`
/// (else its manifest): (matches, why not).
fn check_copy(r: &orca_remote::Remote, name: &str) -> anyhow::Result<(bool, String)> {
    let url = r.location().url_of(name);
    let expected = match r.expected_sha256(name) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return Ok((
                false,
                format!("{url} has no .sha256 and no manifest: it cannot be checked"),
            ));
        }
        Err(e) if orca_shared::exit::kind_of(&e) == orca_shared::ErrorKind::VerificationFailed => {
            return Ok((false, format!("{e:#}")));
        }
        Err(e) => return Err(e),
    };
    let (_, got) = r.read_back(name, None)?;
    if got == expected {
        Ok((true, String::new()))
    } else {
        Ok((
            false,
            format!(
                "{url} reads back with SHA-256 {got}, its checksum says {expected}: the copy is damaged"
            ),
        ))
    }
}

/// Interrupted restores the engine's locks name, asking it briefly.
fn engine_interrupted() -> anyhow::Result<Vec<orca_shared::volume_lock::AbandonedRestore>> {
    let t = orca_shared::engine::timeouts();
    orca_shared::engine::configure(orca_shared::engine::Timeouts {
        request: t.request.min(std::time::Duration::from_secs(5)),
        ..t
    });
    orca_shared::volume_lock::interrupted_restores()
}

/// Compare each backup's `sa` password fingerprints with the containers on
/// its volume now (when the engine answers quickly; otherwise unknown).
fn password_differs(backups: &mut [(&Found, Listed)]) {
    use orca_shared::sapassword::{Keys, from_env};
    let wanted = backups.iter().any(|(b, _)| {
        b.manifest
            .manifest()
            .is_some_and(|m| !m.sa_password.is_empty())
    });
    if !wanted {
        return;
    }
    // A listing must not wait long on an engine that does not answer.
    let t = orca_shared::engine::timeouts();
    orca_shared::engine::configure(orca_shared::engine::Timeouts {
        request: t.request.min(std::time::Duration::from_secs(5)),
        ..t
    });
    let mut current: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut keys = Keys::default();
    for (b, entry) in backups.iter_mut() {
        let Some(m) = b.manifest.manifest().filter(|m| !m.sa_password.is_empty()) else {
            continue;
        };
        if !current.contains_key(&m.volume) {
            let passwords = orca_shared::docker::containers_using(&m.volume)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| {
                            orca_shared::docker::container_details(&c.id).ok().flatten()
                        })
                        .filter_map(|d| from_env(&d.env).map(|(_, pw)| pw))
                        .collect()
                })
                .unwrap_or_default();
            current.insert(m.volume.clone(), passwords);
        }
        let passwords = &current[&m.volume];
        if passwords.is_empty() {
            continue;
        }
        // As orca-restore decides: it differs when a container's password
        // matches none of the fingerprints; unknown when none can be checked.
        let mut verdict = None;
        for pw in passwords {
            match orca_shared::sapassword::differs(&mut keys, &m.sa_password, &m.volume, pw) {
                Some(true) => {
                    verdict = Some(true);
                    break;
                }
                Some(false) => verdict = Some(false),
                None => {}
            }
        }
        entry.password_differs = verdict;
    }
}

/// `text` with every control character shown as `?` (escape sequences,
/// new lines and bells from a manifest never reach the terminal).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The NOTES column: the last drill, a password that differs.
fn notes(r: &Listed) -> String {
    let mut n = Vec::new();
    if let Some(d) = &r.last_drill {
        let day = d.at.get(..10).unwrap_or(&d.at);
        n.push(if d.ok {
            format!("restorable: yes, {day}")
        } else {
            format!("restorable: NO (drill failed {day})")
        });
    }
    if r.password_differs == Some(true) {
        n.push("password differs".into());
    }
    if n.is_empty() {
        "-".into()
    } else {
        n.join("; ")
    }
}

/// The aligned table for `--format table`.
pub fn table(rows: &[Listed]) -> String {
    let header = [
        "NAME",
        "KIND",
        "TIME",
        "SIZE",
        "COPY",
        "VERIFIED",
        "TAGS",
        "DESCRIPTION",
        "NOTES",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let local = DateTime::parse_from_rfc3339(&r.time_local)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|_| r.time_local.clone());
            [
                r.name.clone(),
                r.kind.to_string(),
                local,
                r.size.clone(),
                match r.consistency {
                    Some(c) => c.as_str().into(),
                    None => "-".into(),
                },
                match r.verified {
                    Some(true) => "ok".into(),
                    Some(false) => format!("FAILED ({})", r.failed_checks.join(",")),
                    None => "-".into(),
                },
                if r.tags.is_empty() {
                    "-".into()
                } else {
                    r.tags.join(",")
                },
                r.description.clone().unwrap_or_else(|| "-".into()),
                notes(r),
            ]
        })
        .collect();
    // Manifests are read from wherever copies live (a shared bucket): no
    // control character of theirs reaches the terminal.
    let cells: Vec<[String; 9]> = cells
        .into_iter()
        .map(|row| row.map(|c| printable(&c)))
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: Vec<&str>| {
        let last = cols.len() - 1;
        for (i, c) in cols.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{c}");
            } else {
                let pad = widths[i] - c.chars().count();
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut out, header.to_vec());
    for row in &cells {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        out.push_str("(no backups)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_control_character_reaches_the_terminal() {
        assert_eq!(printable("ok\u{1b}[2J\u{7}\nFAKE"), "ok?[2J??FAKE");
        assert_eq!(printable("données"), "données");
    }

    #[test]
    fn since_accepts_times_dates_and_ages() {
        let now = Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap();
        assert_eq!(
            parse_since("2026-06-01T00:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            now - chrono::Duration::days(7)
        );
        assert_eq!(
            parse_since("12h", now).unwrap(),
            now - chrono::Duration::hours(12)
        );
        assert!(parse_since("2026-06-01", now).is_ok());
        for bad in ["yesterday", "7w", "", "d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
