//! `orca-backup`: the whole backup workflow as one native command.
//!
//! find -> name -> export -> verify -> (drill) -> (copy) -> (prune) -> report,
//! by each tool's library code in this one process, passing the record from
//! step to step exactly as the pipe of the step-by-step tools does: the same
//! flags as `scripts/orca-backup.sh` (which now runs this), the same final
//! record on stdout, the same report on stderr, and the exit code of the
//! first step that failed. No bytes pass between processes, so no shell
//! re-encodes them (Windows PowerShell 5.1 does, between native programs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use orca_shared::app::{CommonArgs, Ctx, run_step};
use orca_shared::consistency::Wanted;
use orca_shared::names::Compression;
use orca_shared::{exit, interrupt};

/// Back up the Orca database volume in one command: find it, name the backup,
/// export it (a hot copy when the database can give one), verify it, and
/// optionally drill it, copy it off the machine and prune old backups.
///
/// Prints the report on stderr and the final JSON record on stdout; exits
/// with the code of the step that failed first (0 when all passed).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// A named backup: orca-db-NAME.tar.gz [default: timestamped]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Back up this volume instead of searching for Orca's
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// Replace an existing backup of the same name
    #[arg(long)]
    pub overwrite: bool,

    /// Stop SQL Server during the copy (consistent), start it again after (--consistency stop)
    #[arg(long)]
    pub stop: bool,

    /// How to copy a volume a running container uses: auto (a hot copy when the database can give one, else a live copy with a warning), hot, stop, live [default: config consistency, else auto]
    #[arg(long, value_enum, value_name = "HOW")]
    pub consistency: Option<Wanted>,

    /// Compression [default: config, else gzip]
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Apply the retention policy after a verified backup
    #[arg(long)]
    pub auto_cleanup: bool,

    /// Keep a description in the backup's manifest
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Tag the backup (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Encrypt (age) to the recipients in config (encryption.recipients)
    #[arg(long)]
    pub encrypt: bool,

    /// Encrypt to this age or SSH public key (repeatable)
    #[arg(long = "recipient", short = 'r', value_name = "KEY")]
    pub recipients: Vec<String>,

    /// Encrypt to the recipients listed in this file
    #[arg(long, value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,

    /// Encrypt with a passphrase ($ORCA_PASSPHRASE_FILE, else asked)
    #[arg(long)]
    pub passphrase: bool,

    /// Let the verify and drill steps open the encrypted backup (repeatable)
    #[arg(long = "identity", short = 'i', value_name = "PATH")]
    pub identities: Vec<PathBuf>,

    /// Start the database on a scratch copy of the new backup and check it (orca-drill) before copying and pruning
    #[arg(long)]
    pub drill: bool,

    /// The drill's image (implies --drill) [default: the database container's]
    #[arg(long, value_name = "IMAGE")]
    pub drill_image: Option<String>,

    /// The drill's environment, KEY=VALUE lines (implies --drill)
    #[arg(long, value_name = "PATH")]
    pub drill_env_file: Option<PathBuf>,

    /// The drill's check, run inside the container (implies --drill)
    #[arg(long, value_name = "CMD")]
    pub drill_probe: Option<String>,

    /// Where the drill's image keeps its data (implies --drill)
    #[arg(long, value_name = "PATH")]
    pub drill_mount_point: Option<String>,

    /// How long the database may take to start, in seconds (implies --drill)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub drill_timeout: Option<u64>,

    /// Copy the verified backup to s3://bucket[/prefix] or a directory (repeatable) [default: copy_to in config]
    #[arg(long = "copy-to", value_name = "URL")]
    pub copy_to: Vec<String>,

    /// Tell this URL how it went (repeatable; shoutrrr-style, see orca-notify) [default: notify.urls in config]
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,

    /// error: tell of failures only; info: of every run [default: notify.level in config, else error]
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub notify_level: Option<orca_shared::config::NotifyLevel>,

    /// Run as schedule NAME (what orca-schedule writes into entries): keep the final record as the schedule's last result, and skip when the schedule's previous run still runs
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The step arguments, as the workflow script passes them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// orca-find-volume.
    pub find: Vec<String>,
    /// orca-backup-name.
    pub name: Vec<String>,
    /// orca-export.
    pub export: Vec<String>,
    /// orca-verify.
    pub verify: Vec<String>,
    /// orca-drill, when it runs.
    pub drill: Option<Vec<String>>,
    /// orca-copy.
    pub copy: Vec<String>,
    /// orca-prune.
    pub prune: Vec<String>,
}

/// Each step's arguments from the workflow's flags (values as
/// `--flag=VALUE`, so none can be read as a flag).
pub fn steps(cli: &Cli) -> Result<Steps, String> {
    let mut s = Steps::default();
    if let Some(v) = &cli.volume {
        s.find.push(format!("--volume={v}"));
    }
    if let Some(n) = &cli.name {
        s.name.push(format!("--name={n}"));
    }
    if cli.overwrite {
        s.name.push("--overwrite".into());
    }
    if let Some(c) = cli.compression {
        s.name.push(format!("--compression={}", c.as_str()));
    }
    // orca-export judges the two together, as in the pipe.
    if cli.stop {
        s.export.push("--stop".into());
    }
    if let Some(w) = cli.consistency {
        s.export.push(format!("--consistency={}", w.as_str()));
    }
    if let Some(d) = &cli.description {
        s.export.push(format!("--description={d}"));
    }
    for t in &cli.tags {
        s.export.push(format!("--tag={t}"));
    }
    if cli.encrypt {
        s.export.push("--encrypt".into());
    }
    for r in &cli.recipients {
        s.export.push(format!("--recipient={r}"));
    }
    if let Some(f) = &cli.recipients_file {
        s.export.push(format!("--recipients-file={}", f.display()));
    }
    if cli.passphrase {
        s.export.push("--passphrase".into());
    }
    for i in &cli.identities {
        s.verify.push(format!("--identity={}", i.display()));
    }
    let mut drill = Vec::new();
    if let Some(v) = &cli.drill_image {
        drill.push(format!("--image={v}"));
    }
    if let Some(v) = &cli.drill_env_file {
        drill.push(format!("--env-file={}", v.display()));
    }
    if let Some(v) = &cli.drill_probe {
        drill.push(format!("--probe={v}"));
    }
    if let Some(v) = &cli.drill_mount_point {
        drill.push(format!("--mount-point={v}"));
    }
    if let Some(v) = cli.drill_timeout {
        drill.push(format!("--timeout={v}"));
    }
    if cli.drill || !drill.is_empty() {
        let mut d = s.verify.clone();
        d.extend(drill);
        s.drill = Some(d);
    }
    s.copy.push("--if-configured".into());
    for u in &cli.copy_to {
        s.copy.push(format!("--to={u}"));
    }
    if !cli.auto_cleanup {
        s.prune.push("--only-if-auto-cleanup".into());
    }
    Ok(s)
}

const TOOL: &str = "orca-backup";

/// Run the workflow: parse the flags, run every step, report.
pub fn main() -> ExitCode {
    let command = Cli::command()
        .after_help(exit::EXIT_STATUS_HELP)
        .name(TOOL)
        .bin_name(TOOL);
    let parsed = command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            // A scheduled run that cannot even start is a result too.
            if let Some(name) = schedule::name_in_args() {
                let mut r = orca_shared::record::Record::new();
                r.set_failure(
                    exit::ErrorKind::Usage,
                    &exit::one_line(&format!("orca-backup: {}", e.render())),
                    TOOL,
                );
                schedule::keep_result(&name, &r, exit::ErrorKind::Usage.exit_code(), false);
            }
            return orca_shared::app::clap_failure(TOOL, e);
        }
    };
    if let Some(name) = &cli.schedule
        && let Err(why) = schedule::check_name(name)
    {
        let mut r = orca_shared::record::Record::new();
        r.set_failure(exit::ErrorKind::Usage, &why, TOOL);
        let _ = r.write_stdout();
        eprintln!("{TOOL}: {why}");
        return ExitCode::from(exit::ErrorKind::Usage.exit_code());
    }
    if let Some(shell) = cli.common.completions {
        let mut cmd = Cli::command().name(TOOL).bin_name(TOOL);
        clap_complete::generate(shell, &mut cmd, TOOL, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let started = std::time::Instant::now();
    let mut ctx = match orca_shared::app::context(TOOL, &cli.common) {
        Ok(c) => c,
        Err(mut r) => {
            let number = r.failure_exit_code().unwrap_or(1);
            // The config cannot be read: only the --notify URLs can hear of it.
            let notifier = orca_notify::Notifier::new(
                &orca_shared::config::Notify::default(),
                &cli.notify,
                cli.notify_level,
            );
            notifier.finish(&mut r, Some(started.elapsed()), TOOL);
            if let Some(name) = &cli.schedule {
                schedule::keep_result(name, &r, number, false);
            }
            let _ = r.write_stdout();
            return ExitCode::from(number);
        }
    };
    let notifier = orca_notify::Notifier::new(&ctx.config.notify, &cli.notify, cli.notify_level)
        .with_config_warnings(&ctx.loaded.warnings);
    // A scheduled run: one at a time per schedule.
    let _running = match &cli.schedule {
        Some(name) => match schedule::claim(name) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                eprintln!(
                    "{TOOL}: schedule '{name}' is still running its previous backup: this run is skipped"
                );
                ctx.record.set("skipped", true);
                ctx.record.set(
                    "message",
                    "Skipped: the previous run of this schedule is still running",
                );
                schedule::keep_result(name, &ctx.record, 0, true);
                ctx.record.set_success();
                let _ = ctx.record.write_stdout();
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                return orca_shared::app::fail(TOOL, ctx.record, &e);
            }
        },
        None => None,
    };
    notifier.start(&mut ctx.record, TOOL);
    if let Err(e) = workflow(&cli, &mut ctx) {
        let kind = exit::kind_of(&e);
        let message = exit::message_of(&e, kind);
        let step = ctx.tool;
        eprintln!("{step}: {message}");
        ctx.record.set_failure(kind, &message, step);
    }
    notifier.finish(&mut ctx.record, Some(started.elapsed()), TOOL);
    if let Some(name) = &cli.schedule {
        let code = ctx.record.failure_exit_code().unwrap_or(0);
        schedule::keep_result(name, &ctx.record, code, false);
    }
    orca_report::finish(ctx.record, "Backup created successfully")
}

/// What a scheduled run keeps: its last result, and its lock.
pub mod schedule {
    /// A schedule's name: 1-40 letters, digits, '-' or '_', starting with a
    /// letter or digit (it names files).
    pub fn check_name(name: &str) -> Result<(), String> {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "schedule name {name:?} is not usable: give 1-40 letters, digits, '-' or '_', starting with a letter or digit"
            ))
        }
    }

    /// `--schedule NAME` among this process's arguments, when it is usable.
    pub fn name_in_args() -> Option<String> {
        let args: Vec<String> = std::env::args().collect();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = if a == "--schedule" {
                it.next().cloned()
            } else {
                a.strip_prefix("--schedule=").map(String::from)
            };
            if let Some(n) = name {
                return check_name(&n).ok().map(|()| n);
            }
        }
        None
    }

    use std::fs::File;
    use std::path::PathBuf;

    use orca_shared::record::Record;

    fn dir() -> anyhow::Result<PathBuf> {
        Ok(orca_shared::paths::base_dir()?.join("schedules"))
    }

    /// The schedule's lock, or `None` when its previous run holds it.
    pub fn claim(name: &str) -> anyhow::Result<Option<File>> {
        let d = dir()?;
        orca_shared::paths::ensure_private_dir(&d)?;
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(d.join(format!("{name}.lock")))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Keep the run's outcome as the schedule's last result
    /// (`<base>/schedules/NAME.last.json`, read by orca-schedule list and
    /// orca-list); a failure to write it is a warning.
    pub fn keep_result(name: &str, record: &Record, code: u8, skipped: bool) {
        let last = serde_json::json!({
            "at": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "exit_code": code,
            "success": code == 0,
            "skipped": skipped,
            "backup_path": record.get("backup_path"),
            "error": record.get("error").and_then(|e| e.get("message")),
        });
        let r = dir().and_then(|d| {
            orca_shared::paths::ensure_private_dir(&d)?;
            orca_shared::fsutil::write_atomic(
                &d.join(format!("{name}.last.json")),
                &serde_json::to_vec_pretty(&last)?,
            )
        });
        if let Err(e) = r {
            eprintln!(
                "orca-backup: warning: cannot keep this run's result for schedule '{name}': {e:#}"
            );
        }
    }
}

/// One step; on failure `ctx.tool` names it.
fn go<A: Parser>(
    ctx: &mut Ctx,
    tool: &'static str,
    args: Vec<String>,
    run: fn(A, &mut Ctx) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let r = interrupt::check().and_then(|()| run_step(ctx, tool, args, run));
    if r.is_err() {
        ctx.tool = tool;
    }
    r
}

/// Every step in turn on one record; the first failure ends it, naming its
/// step (`ctx.tool` is left at the step that failed).
pub fn workflow(cli: &Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let s = steps(cli).map_err(|why| orca_shared::err!(Usage, "{why}"))?;
    go(ctx, "orca-find-volume", s.find, orca_find_volume::run)?;
    go(ctx, "orca-backup-name", s.name, orca_backup_name::run)?;
    go(ctx, "orca-export", s.export, orca_export::run)?;
    go(ctx, "orca-verify", s.verify, orca_verify::run)?;
    if let Some(d) = s.drill {
        go(ctx, "orca-drill", d, orca_drill::run)?;
    }
    go(ctx, "orca-copy", s.copy, orca_copy::run)?;
    go(ctx, "orca-prune", s.prune, orca_prune::run)?;
    ctx.tool = TOOL;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("orca-backup").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_steps_get_the_scripts_arguments() {
        let s = steps(&parse(&[
            "--name=-odd",
            "--volume=v",
            "--stop",
            "--tag",
            "a",
            "--drill-timeout",
            "30",
            "--identity",
            "k.txt",
            "--copy-to",
            "s3://b/p",
            "--auto-cleanup",
        ]))
        .unwrap();
        assert_eq!(s.find, vec!["--volume=v"]);
        assert_eq!(s.name, vec!["--name=-odd"]);
        assert_eq!(s.export, vec!["--stop", "--tag=a"]);
        assert_eq!(s.verify, vec!["--identity=k.txt"]);
        assert_eq!(
            s.drill,
            Some(vec!["--identity=k.txt".to_string(), "--timeout=30".into()])
        );
        assert_eq!(s.copy, vec!["--if-configured", "--to=s3://b/p"]);
        assert!(s.prune.is_empty());
        let plain = steps(&parse(&[])).unwrap();
        assert_eq!(plain.prune, vec!["--only-if-auto-cleanup"]);
        assert_eq!(plain.drill, None);
        assert_eq!(
            steps(&parse(&["--stop", "--consistency", "hot"]))
                .unwrap()
                .export,
            vec!["--stop", "--consistency=hot"]
        );
    }
}
