//! `orca-status`: the health of the backups, for a person and for monitoring.
//!
//! From the backups directory alone (no Docker, no network): the newest
//! good backup and its age, the newest verified one, the newest drill that
//! passed, the newest copy per destination, restores left interrupted, the
//! space used and left, and each schedule's last run. `--max-age` and
//! `--max-drill-age` make it a check (exit 23 when stale); `--prometheus
//! FILE` writes the figures for a node exporter's textfile collector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx, StdinUse};
use orca_shared::catalog::{self, Found};
use orca_shared::{fail, manifest, paths};
use serde::Serialize;
use serde_json::Value;

/// How to print the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The JSON record.
    Json,
    /// Lines for a person.
    Table,
}

/// Show the health of the backups: the newest good backup and its age, the
/// newest verified one, the last drill that passed, the last copy per
/// destination, interrupted restores, space used and left.
///
/// With --max-age (and --max-drill-age) it is a check for cron, CI or a
/// monitoring agent: exit 23 when there is no backup (drill) that recent.
/// Reads the backups directory only: no Docker, no network.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Stale (exit 23) unless a good backup is younger than this: 30m, 12h, 2d
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,

    /// Stale (exit 23) unless a drill passed on a backup within this: 7d
    #[arg(long, value_name = "AGE")]
    pub max_drill_age: Option<String>,

    /// Only backups of this volume
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// The backups directory [default: config backups_dir, else <base>/backups]
    #[arg(long, value_name = "PATH")]
    pub backups_dir: Option<PathBuf>,

    /// Output: json (the record) or table (for a person)
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,

    /// Also write the figures in Prometheus' text format to FILE (atomically; for node_exporter's textfile collector, name it *.prom)
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,

    /// Judge ages as of this time (RFC 3339) instead of now
    #[arg(long, value_name = "TIME", hide = true)]
    pub now: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli, stdin = |_| StdinUse::Never);

/// A backup, as the status names it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Seen {
    /// File name.
    pub name: String,
    /// Path.
    pub path: String,
    /// When (UTC, RFC 3339): the backup's time, the verification's, the
    /// drill's or the copy's.
    pub at: String,
    /// Seconds since then.
    pub age_seconds: i64,
    /// The same, for a person (`3 h 12 min`).
    pub age: String,
    /// Bytes.
    pub size_bytes: u64,
}

/// The newest copy to one destination.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CopySeen {
    /// Where (the copy's URL without the file name).
    pub destination: String,
    /// The backup copied.
    pub name: String,
    /// When it was copied.
    pub at: String,
    /// Seconds since.
    pub age_seconds: i64,
    /// For a person.
    pub age: String,
    /// Whether the copy was read back and matched.
    pub verified: bool,
}

/// A restore that waits for --resume or --rollback.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Interrupted {
    /// The volume.
    pub volume: String,
    /// Its journal.
    pub journal: String,
    /// Where it stopped.
    pub phase: String,
    /// When it started.
    pub started_at: String,
}

/// `2 d 3 h`, `3 h 12 min`, `42 s`.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

fn parse_age(flag: &str, s: &str) -> anyhow::Result<Duration> {
    match orca_shared::limits::parse_age(s) {
        Some(d) if d > Duration::zero() => Ok(d),
        _ => fail!(
            Usage,
            "{flag} {s:?}: give an age like 30m, 12h or 2d (at most 100 years)"
        ),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The newest of `(backup, when)` pairs, as seen at `now`.
fn newest<'a>(
    found: impl Iterator<Item = (&'a Found, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Seen>> {
    found
        .max_by_key(|(_, at)| *at)
        .map(|(b, at)| seen(b, at, now))
        .transpose()
}

fn seen(b: &Found, at: DateTime<Utc>, now: DateTime<Utc>) -> anyhow::Result<Seen> {
    let age = (now - at).num_seconds();
    Ok(Seen {
        name: b.name.clone(),
        path: paths::utf8(&b.path)?.to_string(),
        at: rfc3339(at),
        age_seconds: age,
        age: human_age(age),
        size_bytes: b.size_bytes,
    })
}

/// The copies a backup's manifest records (orca-copy writes them).
fn copies_of(b: &Found) -> Vec<(String, DateTime<Utc>, bool)> {
    let Ok(text) = std::fs::read(manifest::path_for(&b.path)) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&text) else {
        return Vec::new();
    };
    let Some(list) = v.get("copies").and_then(|c| c.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| {
            let url = c.get("url")?.as_str()?;
            let at = parse_time(c.get("copied_at")?.as_str()?)?;
            let verified = c.get("verified").and_then(|v| v.as_bool()) == Some(true);
            // The destination: the URL without the file name.
            let dest = url
                .rsplit_once(['/', '\\'])
                .map_or(url, |(d, _)| d)
                .to_string();
            Some((orca_shared::redact::urls(&dest), at, verified))
        })
        .collect()
}

/// A restore's safety copy of what it replaced (`orca-db-pre-restore-*`).
fn is_safety_copy(b: &Found) -> bool {
    b.name.starts_with("orca-db-pre-restore-")
}

/// Space left for the backups directory (its nearest existing ancestor).
fn free_bytes(dir: &Path) -> Option<u64> {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.exists() {
            return fs4::available_space(p).ok();
        }
        d = p.parent();
    }
    None
}

/// The status, into the record; stale is an error (exit 23).
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let now = match cli.now.as_deref() {
        None => Utc::now(),
        Some(s) => match parse_time(s) {
            Some(t) => t,
            None => fail!(Usage, "--now {s:?} is not an RFC 3339 time"),
        },
    };
    let max_age = cli
        .max_age
        .as_deref()
        .map(|s| parse_age("--max-age", s))
        .transpose()?;
    let max_drill_age = cli
        .max_drill_age
        .as_deref()
        .map(|s| parse_age("--max-drill-age", s))
        .transpose()?;
    let dir = match cli.backups_dir {
        Some(d) if !d.is_dir() => fail!(
            Usage,
            "--backups-dir {} is not a directory (check the path; orca-list shows where backups go)",
            d.display()
        ),
        Some(d) => d,
        None => ctx.config.backups_dir()?,
    };
    paths::utf8(&dir)?;
    let scan = catalog::scan(&dir)?;
    let backups: Vec<&Found> = scan
        .backups
        .iter()
        .filter(|b| {
            cli.volume
                .as_ref()
                .is_none_or(|v| b.manifest.manifest().is_some_and(|m| &m.volume == v))
        })
        .collect();

    // A good backup: complete (the catalog holds only whole archives), not
    // known to have failed verification, and made as a backup (a restore's
    // safety copy of what it replaced is not).
    let good = |b: &&Found| {
        !is_safety_copy(b)
            && b.manifest
                .manifest()
                .and_then(|m| m.verification.as_ref())
                .is_none_or(|v| v.verified)
    };
    let last_backup = newest(
        backups.iter().copied().filter(good).map(|b| (b, b.time)),
        now,
    )?;
    let last_verified = newest(
        backups
            .iter()
            .copied()
            .filter(|b| !is_safety_copy(b))
            .filter_map(|b| {
                let v = b.manifest.manifest()?.verification.as_ref()?;
                let at = parse_time(&v.verified_at)?;
                v.verified.then_some((b, at))
            }),
        now,
    )?;
    let last_drill = newest(
        backups.iter().copied().filter_map(|b| {
            let m = b.manifest.manifest()?;
            let at = m
                .drills
                .iter()
                .filter(|d| d.ok)
                .filter_map(|d| parse_time(&d.at))
                .max()?;
            Some((b, at))
        }),
        now,
    )?;
    let last_drill_failed = newest(
        backups.iter().copied().filter_map(|b| {
            let d = b.manifest.manifest()?.last_drill()?;
            if d.ok {
                return None;
            }
            Some((b, parse_time(&d.at)?))
        }),
        now,
    )?;
    let mut copies: BTreeMap<String, CopySeen> = BTreeMap::new();
    for b in &backups {
        for (dest, at, verified) in copies_of(b) {
            let newer = copies
                .get(&dest)
                .is_none_or(|c| parse_time(&c.at).is_none_or(|t| at > t));
            if newer {
                let age = (now - at).num_seconds();
                copies.insert(
                    dest.clone(),
                    CopySeen {
                        destination: dest,
                        name: b.name.clone(),
                        at: rfc3339(at),
                        age_seconds: age,
                        age: human_age(age),
                        verified,
                    },
                );
            }
        }
    }
    let mut warnings = Vec::new();
    let interrupted: Vec<Interrupted> = orca_shared::journal::in_dir(&dir, &mut warnings)
        .into_iter()
        .map(|(path, j)| Interrupted {
            volume: j.volume,
            journal: path.display().to_string(),
            phase: j.phase.as_str().to_string(),
            started_at: j.started_at,
        })
        .collect();
    let used: u64 = backups.iter().map(|b| b.size_bytes).sum::<u64>()
        + scan.incomplete.iter().map(|i| i.size_bytes).sum::<u64>();
    let free = free_bytes(&dir);

    // What is wrong, for a person and for the check.
    let mut problems = Vec::new();
    let mut stale = Vec::new();
    match (&last_backup, max_age) {
        (None, Some(_)) => stale.push(format!(
            "no backup in {}: back up now (orca-backup)",
            dir.display()
        )),
        (Some(b), Some(max)) if b.age_seconds > max.num_seconds() => stale.push(format!(
            "the newest good backup, {}, is {} old, more than --max-age {}: back up now (orca-backup) and check why the scheduled ones stopped",
            b.name,
            b.age,
            cli.max_age.as_deref().unwrap_or("")
        )),
        _ => {}
    }
    match (&last_drill, max_drill_age) {
        (None, Some(_)) => stale.push(
            "no drill has passed on any backup: run orca-drill on the newest backup".to_string(),
        ),
        (Some(d), Some(max)) if d.age_seconds > max.num_seconds() => stale.push(format!(
            "the last drill that passed, on {}, is {} old, more than --max-drill-age {}: run orca-drill on the newest backup",
            d.name,
            d.age,
            cli.max_drill_age.as_deref().unwrap_or("")
        )),
        _ => {}
    }
    problems.extend(stale.iter().cloned());
    if last_backup.is_none() && max_age.is_none() {
        problems.push(match &cli.volume {
            Some(v) => format!(
                "no backup of volume '{v}' in {}: back up now (orca-backup --volume {v})",
                dir.display()
            ),
            None => format!("no backup in {}: back up now (orca-backup)", dir.display()),
        });
    }
    for i in &interrupted {
        problems.push(format!(
            "a restore of volume '{}' was interrupted while {} (journal {}): finish it with `orca-restore --resume --volume {}` or undo it with `orca-restore --rollback --volume {}`",
            i.volume, i.phase, i.journal, i.volume, i.volume
        ));
    }
    let schedules = orca_schedule::summaries();
    for s in &schedules {
        if let (Some(name), Some(false)) = (s["name"].as_str(), s["last_run"]["success"].as_bool())
        {
            let why = s["last_run"]["error"].as_str().unwrap_or("see its record");
            problems.push(format!("schedule '{name}' failed its last run: {why}"));
        }
    }
    for w in &warnings {
        ctx.warn(w);
    }

    let rec = &mut ctx.record;
    rec.set("backups_dir", paths::utf8(&dir)?);
    if let Some(v) = &cli.volume {
        rec.set("volume", v);
    }
    rec.set("checked_at", rfc3339(now));
    rec.set("healthy", problems.is_empty());
    rec.set("stale", !stale.is_empty());
    rec.set("problems", &problems);
    rec.set("count", backups.len());
    rec.set("last_backup", &last_backup);
    rec.set("last_verified", &last_verified);
    rec.set("last_drill", &last_drill);
    rec.set("last_drill_failed", &last_drill_failed);
    rec.set("copies", copies.values().collect::<Vec<_>>());
    rec.set("interrupted_restores", &interrupted);
    rec.set("used_bytes", used);
    rec.set("free_bytes", free);
    rec.set("schedules", &schedules);
    if let Some(max) = &cli.max_age {
        rec.set("max_age", max);
    }
    if let Some(max) = &cli.max_drill_age {
        rec.set("max_drill_age", max);
    }

    if let Some(file) = &cli.prometheus {
        let text = prometheus(&Figures {
            now,
            count: backups.len(),
            last_backup: last_backup.as_ref(),
            last_verified: last_verified.as_ref(),
            last_drill: last_drill.as_ref(),
            copies: copies.values().collect(),
            interrupted: interrupted.len(),
            used,
            free,
            stale: !stale.is_empty(),
            volume: cli.volume.as_deref(),
        });
        // Replaced by a rename: a link or a device there would be replaced
        // by a plain file (as root, /dev/full too).
        if let Ok(meta) = std::fs::symlink_metadata(file)
            && !meta.is_file()
        {
            fail!(
                Usage,
                "--prometheus {} exists and is not a regular file: give the path of a .prom file",
                file.display()
            );
        }
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            fail!(
                Usage,
                "--prometheus {}: the directory {} does not exist (create it, or point at the textfile collector's directory)",
                file.display(),
                parent.display()
            );
        }
        write_textfile(file, text.as_bytes())
            .map_err(|e| e.context(format!("cannot write --prometheus {}", file.display())))?;
        rec.set("prometheus", paths::utf8(file)?);
    }
    if cli.format == Format::Table {
        ctx.stdout_text = Some(table(&ctx.record));
    }
    if !stale.is_empty() {
        fail!(Stale, "{}", stale.join("; "));
    }
    Ok(())
}

/// Write the textfile atomically, readable by all (0644: figures, not
/// secrets, and the exporter runs as its own user) from its first instant.
fn write_textfile(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = orca_shared::fsutil::AtomicFile::create(file)?;
    f.file().write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    f.commit(true)
}

/// What the Prometheus file holds.
pub struct Figures<'a> {
    /// When the status was taken.
    pub now: DateTime<Utc>,
    /// Backups.
    pub count: usize,
    /// The newest good backup.
    pub last_backup: Option<&'a Seen>,
    /// The newest verified.
    pub last_verified: Option<&'a Seen>,
    /// The newest passed drill.
    pub last_drill: Option<&'a Seen>,
    /// Per destination.
    pub copies: Vec<&'a CopySeen>,
    /// Interrupted restores.
    pub interrupted: usize,
    /// Bytes used.
    pub used: u64,
    /// Bytes left.
    pub free: Option<u64>,
    /// Stale by the flags given.
    pub stale: bool,
    /// The volume asked for.
    pub volume: Option<&'a str>,
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn ts(s: &Seen) -> i64 {
    parse_time(&s.at).map_or(0, |t| t.timestamp())
}

/// The figures in Prometheus' text exposition format. Times are Unix
/// timestamps (alert on `time() - orca_backup_last_success_timestamp_seconds`),
/// since a textfile's ages would be as old as the file.
pub fn prometheus(f: &Figures) -> String {
    let mut out = String::new();
    let base = match f.volume {
        Some(v) => format!("volume=\"{}\"", label(v)),
        None => String::new(),
    };
    let labels = |extra: &str| -> String {
        let all: Vec<&str> = [base.as_str(), extra]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", all.join(","))
        }
    };
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (l, v) in samples {
            out.push_str(&format!("{name}{l} {v}\n"));
        }
    };
    let opt = |s: Option<&Seen>| -> Vec<(String, String)> {
        s.map(|s| vec![(labels(""), ts(s).to_string())])
            .unwrap_or_default()
    };
    gauge(
        "orca_backup_last_success_timestamp_seconds",
        "When the newest good backup was made (Unix time).",
        opt(f.last_backup),
    );
    gauge(
        "orca_backup_last_success_size_bytes",
        "The size of the newest good backup.",
        f.last_backup
            .map(|s| vec![(labels(""), s.size_bytes.to_string())])
            .unwrap_or_default(),
    );
    gauge(
        "orca_backup_last_verified_timestamp_seconds",
        "When a backup was last verified good (Unix time).",
        opt(f.last_verified),
    );
    gauge(
        "orca_backup_last_drill_success_timestamp_seconds",
        "When a restore drill last passed (Unix time).",
        opt(f.last_drill),
    );
    gauge(
        "orca_backup_last_copy_timestamp_seconds",
        "When a backup was last copied to each destination (Unix time).",
        f.copies
            .iter()
            .filter_map(|c| {
                let t = parse_time(&c.at)?.timestamp();
                Some((
                    labels(&format!("destination=\"{}\"", label(&c.destination))),
                    t.to_string(),
                ))
            })
            .collect(),
    );
    gauge(
        "orca_backup_count",
        "Backups in the backups directory.",
        vec![(labels(""), f.count.to_string())],
    );
    gauge(
        "orca_backup_used_bytes",
        "Bytes the backups (and unfinished exports) take.",
        vec![(labels(""), f.used.to_string())],
    );
    gauge(
        "orca_backup_free_bytes",
        "Bytes left on the backups directory's file system.",
        f.free
            .map(|b| vec![(labels(""), b.to_string())])
            .unwrap_or_default(),
    );
    gauge(
        "orca_backup_interrupted_restores",
        "Restores interrupted and waiting for orca-restore --resume or --rollback.",
        vec![(labels(""), f.interrupted.to_string())],
    );
    gauge(
        "orca_backup_stale",
        "1 when orca-status found the backups (or drills) older than its --max-age (--max-drill-age).",
        vec![(labels(""), u8::from(f.stale).to_string())],
    );
    gauge(
        "orca_backup_status_timestamp_seconds",
        "When orca-status wrote this file (Unix time).",
        vec![(labels(""), f.now.timestamp().to_string())],
    );
    out
}

/// The status for a person.
pub fn table(rec: &orca_shared::record::Record) -> String {
    let mut lines = Vec::new();
    let get = |k: &str| rec.get(k).cloned().unwrap_or(Value::Null);
    let dir = get("backups_dir");
    lines.push(format!(
        "{:<18} {}",
        "Backups dir:",
        dir.as_str().unwrap_or("?")
    ));
    let row = |title: &str, v: &Value| -> String {
        match (v.get("name"), v.get("age")) {
            (Some(n), Some(a)) => format!(
                "{title:<18} {} ({} ago, {})",
                n.as_str().unwrap_or("?"),
                a.as_str().unwrap_or("?"),
                v.get("at").and_then(|x| x.as_str()).unwrap_or("?")
            ),
            _ => format!("{title:<18} none"),
        }
    };
    lines.push(row("Last backup:", &get("last_backup")));
    lines.push(row("Last verified:", &get("last_verified")));
    lines.push(row("Last drill passed:", &get("last_drill")));
    if let Some(copies) = get("copies").as_array().filter(|c| !c.is_empty()) {
        for c in copies {
            lines.push(format!(
                "{:<18} {} -> {} ({} ago{})",
                "Last copy:",
                c["name"].as_str().unwrap_or("?"),
                c["destination"].as_str().unwrap_or("?"),
                c["age"].as_str().unwrap_or("?"),
                if c["verified"] == Value::Bool(true) {
                    ", read back"
                } else {
                    ""
                }
            ));
        }
    } else {
        lines.push(format!("{:<18} none", "Last copy:"));
    }
    let size = |k: &str| {
        get(k)
            .as_u64()
            .map_or("unknown".into(), orca_shared::progress::seed_size)
    };
    lines.push(format!(
        "{:<18} {} in {} backup(s), {} free",
        "Space:",
        size("used_bytes"),
        get("count").as_u64().unwrap_or(0),
        size("free_bytes")
    ));
    let interrupted = get("interrupted_restores").as_array().map_or(0, Vec::len);
    lines.push(format!("{:<18} {interrupted}", "Interrupted:"));
    let problems = get("problems");
    let problems = problems.as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        lines.push(format!("{:<18} healthy", "Status:"));
    } else {
        lines.push(format!("{:<18} {} problem(s)", "Status:", problems.len()));
        for p in problems {
            lines.push(format!("  - {}", p.as_str().unwrap_or("?")));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_for_a_person() {
        assert_eq!(human_age(42), "42 s");
        assert_eq!(human_age(60 * 12), "12 min");
        assert_eq!(human_age(3600 * 3 + 60 * 12), "3 h 12 min");
        assert_eq!(human_age(86_400 * 2 + 3600 * 3), "2 d 3 h");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
