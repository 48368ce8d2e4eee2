//! `orca-drill`: prove that a backup brings the database back up, not only
//! that its bytes are whole.
//!
//! Restores the archive (with orca-restore's code: verified and scanned
//! first, decrypted as it streams) into a scratch volume, starts a throwaway
//! container on it from the database's own image (local; never pulled) with
//! the database container's environment and mount point and no network,
//! waits for the database, runs the checks of its engine (SQL Server:
//! every database ONLINE, DBCC CHECKDB, row counts; PostgreSQL: pg_isready,
//! pg_amcheck, row counts; anything else: `--probe CMD` or the image's
//! HEALTHCHECK), and always removes the container and the scratch volume.
//! The result goes in the record (`drill`) and the manifest (`drills`,
//! newest last); a failed drill is exit 18 with the database's own words.

pub mod scratch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::manifest::{self, Manifest};
use orca_shared::record::{Record, Source};
use orca_shared::{ErrorKind, OrcaError, docker, fail, paths};
use serde::Serialize;

use crate::scratch::Scratch;
pub use orca_databases::probe;
use orca_databases::probe::{Check, Engine, Findings, Probe, SqlCmd};

/// Restore a backup into a scratch volume, start the database on it, check it, throw it away.
///
/// Adds "drill" ({ok, engine, image, started_in_ms, checks, databases,
/// duration_ms, restore_ms, at, message}) to the record and appends it to the
/// manifest's "drills". The image, mount point and environment come from the
/// database container named in the manifest (the environment only while that
/// container exists; else --env-file). Exit 18 when the database does not
/// start or a check fails.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// The archive (a path, or the s3:// or file:// URL of a copy); `-` or nothing: the record's backup_path
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,

    /// The database image to start [default: the image of the database container in the manifest]
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Which checks to run [default: told from the image and its environment]
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,

    /// A command run with /bin/sh inside the container instead of the engine's checks; exit 0 passes (retried until it passes or --timeout)
    #[arg(long, value_name = "CMD")]
    pub probe: Option<String>,

    /// KEY=VALUE lines for the container's environment (SQL Server needs ACCEPT_EULA=Y and MSSQL_SA_PASSWORD) [default: the database container's own, while it exists]
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Where the image expects the volume [default: from the manifest, else the engine's usual place]
    #[arg(long, value_name = "PATH")]
    pub mount_point: Option<String>,

    /// How long the database may take to start, and each check to run, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// What opens an encrypted archive.
    #[command(flatten)]
    pub keys: orca_verify::KeyArgs,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| orca_shared::app::archive_stdin(cli.archive.as_deref())
);

/// The outcome, as the record and the manifest keep it.
#[derive(Clone, Debug, Serialize)]
pub struct Drill {
    /// The database started and every check passed.
    pub ok: bool,
    /// `sqlserver`, `postgres` or `other`.
    pub engine: &'static str,
    /// The image started.
    pub image: String,
    /// When the drill ran (UTC, RFC 3339).
    pub at: String,
    /// How long restoring the scratch copy took.
    pub restore_ms: u64,
    /// From starting the container to the database answering.
    pub started_in_ms: Option<u64>,
    /// How long the checks took.
    pub checks_ms: Option<u64>,
    /// The checks.
    pub checks: Vec<Check>,
    /// The databases found, with their tables' row counts.
    pub databases: Vec<probe::Database>,
    /// The whole drill.
    pub duration_ms: u64,
    /// Why it failed (the database's own words), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the drill starts, and how it checks it.
struct Setup {
    image: String,
    engine: Engine,
    env: Vec<String>,
    mount_point: String,
}

/// Run the drill.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let started = Instant::now();
    // A bad env file is told before anything else is done.
    if let Some(p) = &cli.env_file {
        read_env_file(p)?;
    }
    let (archive, _) = orca_verify::archive_from(cli.archive.as_deref(), ctx, "drill")?;
    let archive = match archive.to_str() {
        Some(url) if orca_remote::is_url(url) => {
            let local = orca_remote::fetch(url, &ctx.config.backups_dir()?, &ctx.config, ctx.tool)?;
            ctx.record.set("fetched_from", url);
            local
        }
        _ => archive,
    };
    if ctx.record.get("backup_path").is_none() || ctx.record.get("fetched_from").is_some() {
        ctx.record.set("backup_path", paths::utf8(&archive)?);
    }
    match std::fs::metadata(&archive) {
        Ok(m) if m.is_file() => {}
        Ok(_) => fail!(Usage, "{} is not a file", archive.display()),
        Err(e) => fail!(
            VerificationFailed,
            "cannot read {}: {e} (check the path)",
            archive.display()
        ),
    }
    let read = manifest::read(&archive);
    if let Some(w) = read.warning() {
        ctx.warn(w);
    }
    let setup = setup(&cli, ctx, read.manifest())?;
    let timeout = Duration::from_secs(cli.timeout);

    // Drills that were killed left their scratch copies: not ours to keep.
    let tool = ctx.tool;
    let config = ctx.config.clone();
    let loaded = ctx.loaded.clone();
    let backups_dir = ctx.config.backups_dir()?;
    let clear_lock = |volume: &str| -> anyhow::Result<()> {
        let image = docker::ensure_helper_image(config.helper_image.as_deref())?;
        let lock = orca_shared::volume_lock::acquire(&orca_shared::volume_lock::LockRequest {
            tool,
            volume,
            mode: orca_shared::volume_lock::LockMode::Restore,
            image: &image,
            stops: &[],
            journal: None,
            recovering: false,
        })?;
        lock.release()
    };
    let recover = |volume: &str| -> anyhow::Result<()> {
        let mut sub = sub_ctx(tool, &config, &loaded);
        let rollback = orca_restore::Cli {
            archive: None,
            volume: Some(volume.to_string()),
            to_new_volume: None,
            stop: false,
            allow_autoremove: false,
            no_safety_backup: false,
            dry_run: false,
            resume: false,
            rollback: true,
            keys: orca_verify::KeyArgs::default(),
            scratch: false,
            common: CommonArgs::default(),
        };
        // Only a restore that was interrupted has something to undo.
        match orca_restore::run(rollback, &mut sub) {
            Ok(()) => Ok(()),
            Err(e) if orca_shared::exit::kind_of(&e) == ErrorKind::Usage => Ok(()),
            Err(e) => Err(e),
        }
    };
    scratch::remove_stale(tool, &backups_dir, &recover, &clear_lock);

    let mut s = Scratch::new(tool);
    ctx.note(format!(
        "restoring {} into the scratch volume '{}'",
        archive.display(),
        s.name
    ));
    let restore_started = Instant::now();
    let mut sub = sub_ctx(tool, &ctx.config, &ctx.loaded);
    let restore = orca_restore::Cli {
        archive: Some(archive.clone()),
        volume: None,
        to_new_volume: Some(s.name.clone()),
        stop: false,
        allow_autoremove: false,
        no_safety_backup: false,
        dry_run: false,
        resume: false,
        rollback: false,
        keys: cli.keys.clone(),
        scratch: true,
        common: CommonArgs::default(),
    };
    orca_restore::run(restore, &mut sub).context("the scratch copy could not be restored")?;
    let restore_ms = restore_started.elapsed().as_millis() as u64;

    let mut drill = Drill {
        ok: false,
        engine: setup.engine.as_str(),
        image: setup.image.clone(),
        at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        restore_ms,
        started_in_ms: None,
        checks_ms: None,
        checks: vec![],
        databases: vec![],
        duration_ms: 0,
        message: None,
    };
    let outcome = exercise(&cli, ctx, &mut s, &setup, timeout, &mut drill);
    drop(s); // the container and the scratch volume go, whatever happened
    drill.duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(()) => {}
        // A drill that could not judge (Ctrl-C, the engine gone) records nothing.
        Err(e) if orca_shared::exit::kind_of(&e) != ErrorKind::DrillFailed => return Err(e),
        Err(e) => drill.message = Some(orca_shared::exit::message_of(&e, ErrorKind::DrillFailed)),
    }
    drill.ok = drill.message.is_none();
    ctx.record.set("drill", &drill);
    record_in_manifest(ctx, &archive, &drill);
    if let Some(msg) = &drill.message {
        return Err(OrcaError::new(ErrorKind::DrillFailed, msg.clone()).into());
    }
    let rows: u64 = drill
        .databases
        .iter()
        .flat_map(|d| &d.tables)
        .map(|t| t.rows)
        .sum();
    ctx.note(format!(
        "drill passed: {} started on the scratch copy in {:.1} s; {} checks passed; {} databases, {rows} rows; scratch copy removed",
        setup.engine.as_str(),
        drill.started_in_ms.unwrap_or(0) as f64 / 1000.0,
        drill.checks.len(),
        drill.databases.len()
    ));
    Ok(())
}

/// Start the database on the scratch copy, wait for it, check it.
fn exercise(
    cli: &Cli,
    ctx: &Ctx,
    s: &mut Scratch,
    setup: &Setup,
    timeout: Duration,
    drill: &mut Drill,
) -> anyhow::Result<()> {
    s.create_container(&setup.image, &setup.env, &setup.mount_point)?;
    s.start(&setup.image, &setup.mount_point)?;
    orca_shared::testpoint::point("drill-started");
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    // One attempt may take what is left of the deadline.
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    };
    let probe = match (&cli.probe, setup.engine) {
        (Some(cmd), _) => Probe::Command(cmd.clone()),
        (None, Engine::Postgres) => Probe::Postgres {
            user: env_value(&setup.env, "POSTGRES_USER").unwrap_or_else(|| "postgres".into()),
        },
        (None, Engine::Sqlserver) => {
            let Some(password) = probe::sa_password(&setup.env) else {
                fail!(
                    Usage,
                    "the container has no MSSQL_SA_PASSWORD (or SA_PASSWORD): pass --env-file with the one the backup was taken under"
                );
            };
            ensure_running(s, setup)?;
            match or_stopped(SqlCmd::find(s, password, left()), s, setup)? {
                Some(q) => Probe::SqlServer(q),
                None => fail!(
                    Usage,
                    "the image {} has no sqlcmd (looked in {}): pass --probe CMD",
                    setup.image,
                    probe::SQLCMD_PATHS
                        .iter()
                        .map(|(p, _)| *p)
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            }
        }
        (None, Engine::Other) => Probe::Health,
    };
    let mut last_note = Instant::now();
    loop {
        orca_shared::interrupt::check()?;
        ensure_running(s, setup)?;
        if or_stopped(probe.ready(s, left()), s, setup)? {
            break;
        }
        if matches!(probe, Probe::Health) && s.state()?.health.as_deref() == Some("unhealthy") {
            fail!(
                DrillFailed,
                "{} says it is unhealthy on the scratch copy (its HEALTHCHECK); its last words: {}",
                display(setup.engine),
                tail(&s.logs(20))
            );
        }
        if Instant::now() >= deadline {
            let why = probe.not_ready_because(s, Duration::from_secs(10));
            fail!(
                DrillFailed,
                "{} did not become ready within {} s ({why}); its last words: {}{}",
                display(setup.engine),
                timeout.as_secs(),
                tail(&s.logs(20)),
                if wrong_password(&why) {
                    PASSWORD_HINT
                } else {
                    ""
                }
            );
        }
        // SQL Server answering "Login failed" for a while is not starting up:
        // the volume holds another sa password.
        if matches!(probe, Probe::SqlServer(_)) && t0.elapsed() > LOGIN_PATIENCE {
            let why = probe.not_ready_because(s, Duration::from_secs(10));
            if wrong_password(&why) {
                fail!(
                    DrillFailed,
                    "SQL Server runs on the scratch copy but refuses the password ({why}){PASSWORD_HINT}"
                );
            }
        }
        if last_note.elapsed() > Duration::from_secs(15) {
            ctx.note(format!(
                "waiting for {} to start ({} s so far)",
                display(setup.engine),
                t0.elapsed().as_secs()
            ));
            last_note = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    drill.started_in_ms = Some(t0.elapsed().as_millis() as u64);
    orca_shared::testpoint::point("drill-ready");
    let checking = Instant::now();
    let started_at = s.started_at()?;
    let findings = or_stopped(
        probe.checks(s, timeout, &setup.mount_point, started_at),
        s,
        setup,
    )?;
    drill.checks_ms = Some(checking.elapsed().as_millis() as u64);
    orca_shared::testpoint::point("drill-checked");
    let Findings { checks, databases } = findings;
    // Not on the restored files: the drill's setup, not the backup, is wrong
    // (exit 2, nothing recorded against the backup).
    if let Some(c) = checks.iter().find(|c| c.name == "data" && !c.ok) {
        fail!(Usage, "{}", c.detail);
    }
    drill.checks = checks;
    drill.databases = databases;
    let failed: Vec<String> = drill
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if drill.checks.is_empty() {
        fail!(DrillFailed, "no check ran");
    }
    if !failed.is_empty() {
        let login = failed.iter().any(|f| wrong_password(f));
        fail!(
            DrillFailed,
            "{} started on the scratch copy, but {}{}",
            display(setup.engine),
            failed.join("; "),
            if login { PASSWORD_HINT } else { "" }
        );
    }
    Ok(())
}

/// "Login failed for user 'sa'" as a wrong password says it; with a
/// `Reason:` (script upgrade mode after an image update) it is SQL Server
/// still starting.
fn wrong_password(text: &str) -> bool {
    text.contains("Login failed for user 'sa'") && !text.contains("Reason:")
}

/// How messages name an engine.
fn display(e: Engine) -> &'static str {
    match e {
        Engine::Sqlserver => "SQL Server",
        Engine::Postgres => "PostgreSQL",
        Engine::Other => "the database container",
    }
}

const PASSWORD_HINT: &str = " (SQL Server keeps the sa password inside the volume: the backup was taken under another password; pass --env-file with that one)";
/// How long SQL Server may say "Login failed" while it starts.
const LOGIN_PATIENCE: Duration = Duration::from_secs(30);

/// A failed drill when the database container has stopped.
fn ensure_running(s: &Scratch, setup: &Setup) -> anyhow::Result<()> {
    let state = s.state()?;
    if state.running {
        return Ok(());
    }
    fail!(
        DrillFailed,
        "{} stopped before it was ready (exit code {}{}) on the scratch copy of this backup: {}",
        display(setup.engine),
        state.exit_code.unwrap_or(-1),
        if state.oom_killed {
            ", out of memory"
        } else {
            ""
        },
        tail(&s.logs(20))
    )
}

/// `r`, or when it failed because the container stopped, that as a failed
/// drill (its exit code and last words).
fn or_stopped<T>(r: anyhow::Result<T>, s: &Scratch, setup: &Setup) -> anyhow::Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if orca_shared::exit::kind_of(&e) == ErrorKind::Interrupted => Err(e),
        Err(e) => match ensure_running(s, setup) {
            Ok(()) => Err(e),
            Err(stopped) => Err(stopped),
        },
    }
}

/// The image, engine, environment and mount point.
fn setup(cli: &Cli, ctx: &Ctx, m: Option<&Manifest>) -> anyhow::Result<Setup> {
    // The database container: among those on the volume, one whose image
    // (or environment, while it exists) is a database's; else one the
    // backup stopped; else the first.
    let details = |c: &orca_shared::manifest::ContainerAtBackup| {
        docker::container_details(&c.id)
            .ok()
            .flatten()
            .or_else(|| docker::container_details(&c.name).ok().flatten())
    };
    let db = m.and_then(|m| {
        m.containers
            .iter()
            .find(|c| {
                probe::detect(&c.image, &details(c).map(|d| d.env).unwrap_or_default()).is_some()
            })
            .or_else(|| m.containers.iter().find(|c| c.stopped_for_backup))
            .or_else(|| m.containers.first())
    });
    let image = match (&cli.image, db) {
        (Some(i), _) => i.clone(),
        (None, Some(c)) if !c.image.is_empty() => c.image.clone(),
        _ => fail!(
            Usage,
            "no image to start: the backup's manifest names no database container; pass --image (a local image of the database)"
        ),
    };
    if !docker::image_exists(&image)? {
        fail!(
            Usage,
            "image '{image}' is not on this machine, and a drill never pulls one: pull it yourself (`docker pull {image}`) or pass --image"
        );
    }
    // The environment: --env-file, else the database container's own.
    let live = db.and_then(details);
    let env = match &cli.env_file {
        Some(p) => read_env_file(p)?,
        None => match &live {
            Some(d) => d.env.clone(),
            None => Vec::new(),
        },
    };
    let engine = match (cli.engine, &cli.probe) {
        (Some(e), _) => e,
        (None, Some(_)) => Engine::Other,
        (None, None) => match probe::detect(&image, &env) {
            Some(e) => e,
            None if scratch::image_has_healthcheck(&image)? => Engine::Other,
            None => fail!(
                Usage,
                "cannot tell which database image '{image}' runs: pass --engine sqlserver|postgres, or --probe CMD"
            ),
        },
    };
    if engine == Engine::Other && cli.probe.is_none() && !scratch::image_has_healthcheck(&image)? {
        fail!(
            Usage,
            "image '{image}' has no HEALTHCHECK: pass --probe CMD (run inside the container; exit 0 passes)"
        );
    }
    if engine == Engine::Sqlserver && probe::sa_password(&env).is_none() {
        let why = if db.is_some() && live.is_none() && cli.env_file.is_none() {
            "the database container of the backup is gone"
        } else {
            "its environment has none"
        };
        fail!(
            Usage,
            "the drill needs SQL Server's sa password and {why}: pass --env-file with ACCEPT_EULA=Y and the MSSQL_SA_PASSWORD the backup was taken under"
        );
    }
    let volume = m.map(|m| m.volume.as_str()).unwrap_or("");
    let mount_point = cli
        .mount_point
        .clone()
        .or_else(|| db.and_then(|c| c.mount_point.clone()))
        .or_else(|| {
            live.as_ref()
                .and_then(|d| d.volume_mounts.get(volume).cloned())
        })
        .or_else(|| engine.default_mount_point().map(String::from));
    let Some(mount_point) = mount_point else {
        fail!(
            Usage,
            "where does image '{image}' keep its data? pass --mount-point PATH"
        );
    };
    if !mount_point.starts_with('/') || mount_point.trim_end_matches('/').is_empty() {
        fail!(
            Usage,
            "--mount-point {mount_point:?} must be an absolute path inside the container, and not /"
        );
    }
    ctx.note(format!(
        "drill: {} from image {image}, data at {mount_point}, environment from {}",
        engine.as_str(),
        match (&cli.env_file, &live) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(_)) => "the database container".to_string(),
            (None, None) => "nowhere (none)".to_string(),
        }
    ));
    Ok(Setup {
        image,
        engine,
        env,
        mount_point,
    })
}

/// The lines of an env file as `docker run --env-file` reads them: `KEY=VALUE`
/// (the value as written), a bare `KEY` takes its value from this process's
/// environment (left out when unset, which keeps a password out of files),
/// `#` comments and blank lines are skipped, a UTF-8 byte-order mark and CR
/// line ends are ignored, a name with white space is an error.
pub fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| orca_shared::err!(Usage, "cannot read --env-file {}: {e}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (key, value) = match t.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (t.trim_end(), None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            // The line itself is never shown: it may hold a password.
            fail!(
                Usage,
                "--env-file {}: line {} is not KEY=VALUE nor a bare variable name (its text is not shown, as it may hold a secret): write it as KEY=VALUE",
                path.display(),
                i + 1
            );
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

fn env_value(env: &[String], key: &str) -> Option<String> {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(String::from)
}

/// The end of a log, on one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines[lines.len().saturating_sub(6)..].join(" | ");
    let one = orca_shared::exit::one_line(&last);
    if one.is_empty() {
        "(it printed nothing)".to_string()
    } else {
        one
    }
}

/// A context for running orca-restore's code inside the drill.
fn sub_ctx(
    tool: &'static str,
    config: &orca_shared::config::Config,
    loaded: &orca_shared::config::Loaded,
) -> Ctx {
    Ctx {
        tool,
        record: Record::new(),
        source: Source::Fresh,
        config: config.clone(),
        loaded: loaded.clone(),
        stdout_text: None,
    }
}

/// Append the drill to the manifest's `drills` (newest last).
fn record_in_manifest(ctx: &Ctx, archive: &std::path::Path, drill: &Drill) {
    let value = serde_json::to_value(drill).expect("a drill serializes");
    match manifest::update_raw(archive, |m| {
        let list = m
            .entry("drills")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if !list.is_array() {
            *list = serde_json::Value::Array(Vec::new());
        }
        if let Some(a) = list.as_array_mut() {
            a.push(value);
        }
    }) {
        Ok(true) => {}
        Ok(false) => ctx.warn(format!(
            "{} has no manifest: the drill is in the record only",
            archive.display()
        )),
        Err(e) => ctx.warn(format!("cannot record the drill in the manifest: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_as_docker_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(
            &p,
            "\u{feff}# sql\nACCEPT_EULA=Y\r\n\nMSSQL_SA_PASSWORD=a=b c\nPATH\nORCA_SURELY_UNSET_VARIABLE\n",
        )
        .unwrap();
        let got = read_env_file(&p).unwrap();
        assert_eq!(got[..2], ["ACCEPT_EULA=Y", "MSSQL_SA_PASSWORD=a=b c"]);
        assert!(got[2].starts_with("PATH="), "{got:?}");
        assert_eq!(got.len(), 3);
        std::fs::write(&p, "export X=1\n").unwrap();
        assert!(read_env_file(&p).is_err());
        // A line that is no variable is named by its number, never shown.
        std::fs::write(&p, "A=1\nMSSQL_SA_PASSWORD: Sup3rS3cret!\n").unwrap();
        let e = format!("{:#}", read_env_file(&p).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("Sup3rS3cret"), "{e}");
    }

    #[test]
    fn logs_end_on_one_line() {
        assert_eq!(tail("a\n\nb\nc\n"), "a | b | c");
        assert_eq!(tail(""), "(it printed nothing)");
    }
}
