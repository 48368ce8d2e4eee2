//! `orca-guard`: run a migration with the database backed up first, and put
//! the backup back when the migration or its checks fail.
//!
//! 1. Back up the volume as the workflow does (find, name, export, verify),
//!    by the tools' library code in this process; a hot copy when the
//!    database can give one. Any failure here ends the run before the
//!    command runs.
//! 2. Run COMMAND (its output on this process's stderr: stdout stays the
//!    record) with `ORCA_GUARD_BACKUP` and `ORCA_GUARD_VOLUME` set, within
//!    `--timeout`; then each `--check` through the shell.
//! 3. All passed: keep the result (and with `--after NAME` take a milestone
//!    backup). Something failed, timed out or was interrupted: restore the
//!    backup with orca-restore's safety (containers stopped and started
//!    again, a safety copy of the failed state kept as a named backup, the
//!    journal, the read-back) and exit 21; with `--keep-on-failure` only
//!    report it (exit 22).
//!
//! Ctrl-C while the command runs goes to the command (on Unix it runs in
//! its own process group and orca-guard passes the signal on; on Windows it
//! shares the console, which delivers Ctrl-C to both), and orca-guard waits
//! for it to end before it restores.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Local;
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::consistency::Wanted;
use orca_shared::exit::ErrorKind;
use orca_shared::record::Record;
use orca_shared::{fail, interrupt};
use serde::Serialize;

/// Run a migration with the database backed up first, and put the backup
/// back when the migration or one of its checks fails.
///
/// Backs up the volume (as orca-backup.sh does: a hot copy when the database
/// allows it), verifies it, runs COMMAND with ORCA_GUARD_BACKUP (the archive)
/// and ORCA_GUARD_VOLUME set and its output on stderr, then each --check.
/// When all pass, the changes stay (and --after takes a milestone backup);
/// when one fails, times out or is interrupted, the backup is restored (exit
/// 21) unless --keep-on-failure (exit 22). The record on stdout says what
/// ran, what failed and where everything is.
#[derive(Parser, Debug)]
#[command(version, about, long_about, trailing_var_arg = true)]
pub struct Cli {
    /// The volume [default: the Orca volume, found as orca-find-volume does]
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// The backup's name: orca-db-NAME.tar.gz [default: before-<label>-<YYYY-MM-DD-HH-mm>]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The <label> of the default name [default: the command's name]
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,

    /// When everything passed, take a second backup orca-db-NAME.tar.gz (the new milestone)
    #[arg(long, value_name = "NAME")]
    pub after: Option<String>,

    /// A test that decides whether the migration worked, run through the shell after COMMAND (repeatable)
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,

    /// The longest COMMAND (and each check) may run: 90s, 10m, 1h30m, or seconds
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// When something fails, leave the database as the command left it and only report
    #[arg(long)]
    pub keep_on_failure: bool,

    /// How to copy a volume a running container uses: auto, hot, stop or live [default: config consistency, else auto]
    #[arg(long, value_enum, value_name = "HOW")]
    pub consistency: Option<Wanted>,

    /// Same as --consistency stop
    #[arg(long)]
    pub stop: bool,

    /// Compression of the backups [default: config, else gzip]
    #[arg(long, value_enum)]
    pub compression: Option<orca_shared::names::Compression>,

    /// Replace an existing backup of the same --name
    #[arg(long)]
    pub overwrite: bool,

    /// A tag for the backups (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Encrypt (age) to the recipients in config
    #[arg(long)]
    pub encrypt: bool,

    /// Encrypt to this age or SSH public key (repeatable)
    #[arg(long = "recipient", short = 'r', value_name = "KEY")]
    pub recipients: Vec<String>,

    /// Encrypt to the recipients in this file
    #[arg(long, value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,

    /// Encrypt with a passphrase ($ORCA_PASSPHRASE_FILE, else asked)
    #[arg(long)]
    pub passphrase: bool,

    /// What opens the encrypted backup, to verify it and to restore it (repeatable)
    #[arg(long = "identity", short = 'i', value_name = "PATH")]
    pub identities: Vec<PathBuf>,

    /// The command to guard, after `--`
    #[arg(value_name = "COMMAND", num_args = 1..)]
    pub command: Vec<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli, stdin = |_| orca_shared::app::StdinUse::Never);

/// `90s`, `10m`, `1h30m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return check_duration(secs, text);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("'{text}' is not a duration (say 90s, 10m, 1h30m)")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{text}' is not a duration (say 90s, 10m, 1h30m)"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("'{text}' is not a duration (say 90s, 10m, 1h30m)"));
    }
    check_duration(total, text)
}

fn check_duration(secs: u64, text: &str) -> Result<Duration, String> {
    if secs == 0 || secs > 7 * 86_400 {
        return Err(format!("'{text}': give between 1 second and 7 days"));
    }
    Ok(Duration::from_secs(secs))
}

/// How one command ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ran {
    /// What ran (credentials in it shown as `***`).
    pub command: String,
    /// `passed`, `failed`, `timed_out`, `interrupted` or `not_run`.
    pub outcome: String,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it (Unix), when one did.
    pub signal: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
}

impl Ran {
    fn passed(&self) -> bool {
        self.outcome == "passed"
    }
}

/// A command line for records and messages: `password=...`/`pwd=...`
/// values and URL credentials hidden.
pub fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = orca_shared::redact::urls(a);
            let lower = a.to_ascii_lowercase();
            let mut out = String::new();
            let mut rest = a.as_str();
            let mut lrest = lower.as_str();
            loop {
                let found = ["password=", "pwd=", "passphrase=", "secret=", "token="]
                    .iter()
                    .filter_map(|k| lrest.find(k).map(|i| (i, k.len())))
                    .min();
                let Some((i, klen)) = found else {
                    out.push_str(rest);
                    break;
                };
                out.push_str(&rest[..i + klen]);
                out.push_str("***");
                let after = &rest[i + klen..];
                let end = after
                    .find([';', ' ', '&', '"', '\''])
                    .unwrap_or(after.len());
                rest = &after[end..];
                lrest = &lrest[i + klen + end..];
            }
            if out.contains(' ') || out.is_empty() {
                format!("'{}'", out.replace('\'', "'\\''"))
            } else {
                out
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

use orca_shared::app::run_step as step;

/// The options of the backups both steps take.
struct BackupArgs {
    export: Vec<String>,
    verify: Vec<String>,
    name: Vec<String>,
}

fn backup_args(cli: &Cli) -> anyhow::Result<BackupArgs> {
    let mut export = Vec::new();
    match (cli.consistency, cli.stop) {
        (Some(w), true) if w != Wanted::Stop => fail!(
            Usage,
            "--stop means --consistency stop; it cannot go with --consistency {}",
            w.as_str()
        ),
        (Some(w), _) => export.push(format!("--consistency={}", w.as_str())),
        (None, true) => export.push("--consistency=stop".into()),
        (None, false) => {}
    }
    if cli.encrypt {
        export.push("--encrypt".into());
    }
    for r in &cli.recipients {
        export.push(format!("--recipient={r}"));
    }
    if let Some(f) = &cli.recipients_file {
        export.push(format!("--recipients-file={}", f.display()));
    }
    if cli.passphrase {
        export.push("--passphrase".into());
    }
    let mut verify = Vec::new();
    for i in &cli.identities {
        verify.push(format!("--identity={}", i.display()));
    }
    let mut name = Vec::new();
    if let Some(c) = cli.compression {
        name.push(format!("--compression={}", c.as_str()));
    }
    Ok(BackupArgs {
        export,
        verify,
        name,
    })
}

/// A slug for the default name: letters, digits, `-`, `_`, `.`.
fn slug(text: &str) -> String {
    let base = std::path::Path::new(text)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(text);
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(['-', '.']).to_string();
    let s: String = s.chars().take(40).collect();
    if s.is_empty() { "command".into() } else { s }
}

/// Back up and verify into `ctx.record`.
fn take_backup(
    ctx: &mut Ctx,
    volume: Option<&str>,
    name: &str,
    overwrite: bool,
    args: &BackupArgs,
    description: &str,
    tags: &[String],
) -> anyhow::Result<()> {
    let mut find = Vec::new();
    if let Some(v) = volume {
        find.push(format!("--volume={v}"));
    }
    step(ctx, "orca-find-volume", find, orca_find_volume::run)?;
    let mut n = vec![format!("--name={name}")];
    if overwrite {
        n.push("--overwrite".into());
    }
    n.extend(args.name.iter().cloned());
    step(ctx, "orca-backup-name", n, orca_backup_name::run)?;
    let mut e = args.export.clone();
    e.push(format!("--description={description}"));
    for t in tags {
        e.push(format!("--tag={t}"));
    }
    step(ctx, "orca-export", e, orca_export::run)?;
    step(ctx, "orca-verify", args.verify.clone(), orca_verify::run)?;
    Ok(())
}

/// Run the guarded command, the checks, and restore when one fails.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    if cli.command.is_empty() {
        fail!(
            Usage,
            "no command to guard: give it after --, e.g. orca-guard -- dotnet ef database update"
        );
    }
    let args = backup_args(&cli)?;
    let shown_command = shown(&cli.command);
    let label = cli
        .label
        .clone()
        .unwrap_or_else(|| cli.command.first().cloned().unwrap_or_default());
    let name = match &cli.name {
        Some(n) => n.clone(),
        None => format!(
            "before-{}-{}",
            slug(&label),
            Local::now().format("%Y-%m-%d-%H-%M")
        ),
    };
    let mut tags = cli.tags.clone();
    if !tags.iter().any(|t| t == "orca-guard") {
        tags.push("orca-guard".into());
    }

    // 1. The backup, verified; nothing runs when it fails.
    let mut guard = serde_json::json!({
        "command": shown_command,
        "checks": cli.checks.iter().map(|c| shown(std::slice::from_ref(c))).collect::<Vec<_>>(),
        "ran": false,
    });
    ctx.record.set("guard", &guard);
    take_backup(
        ctx,
        cli.volume.as_deref(),
        &name,
        cli.overwrite,
        &args,
        &format!("before: {shown_command}"),
        &tags,
    )?;
    let backup = ctx
        .record
        .str("backup_path")?
        .map(String::from)
        .context("the backup step gave no backup_path")?;
    let volume = ctx
        .record
        .str("volume")?
        .map(String::from)
        .context("the backup step gave no volume")?;
    ctx.note(format!(
        "backed up volume '{volume}' to {backup}; running: {shown_command}"
    ));

    // 2. The command, then the checks.
    let envs = [
        ("ORCA_GUARD_BACKUP", backup.clone()),
        ("ORCA_GUARD_VOLUME", volume.clone()),
    ];
    let mut steps: Vec<Ran> = Vec::new();
    let command = run_one(&cli.command, &shown_command, &envs, cli.timeout, ctx.tool)?;
    let mut failed: Option<String> = (!command.passed()).then(|| "command".to_string());
    guard["ran"] = true.into();
    guard["command_result"] = serde_json::to_value(&command)?;
    if failed.is_none() {
        for (i, check) in cli.checks.iter().enumerate() {
            let argv = shell(check);
            let r = run_one(
                &argv,
                &shown(std::slice::from_ref(check)),
                &envs,
                cli.timeout,
                ctx.tool,
            )?;
            let ok = r.passed();
            steps.push(r);
            if !ok {
                failed = Some(format!("check {}", i + 1));
                break;
            }
        }
    }
    guard["check_results"] = serde_json::to_value(&steps)?;
    guard["failed_step"] = serde_json::to_value(&failed)?;
    ctx.record.set("guard", &guard);

    // 3. All passed.
    let Some(failed) = failed else {
        if let Some(after) = &cli.after {
            let outer = std::mem::replace(&mut ctx.record, Record::new());
            let taken = take_backup(
                ctx,
                Some(&volume),
                after,
                false,
                &args,
                &format!("milestone after: {shown_command}"),
                &[tags.clone(), vec!["milestone".into()]].concat(),
            );
            let milestone = std::mem::replace(&mut ctx.record, outer);
            let fields = milestone.fields().clone();
            guard["after"] = serde_json::Value::Object(fields);
            ctx.record.set("guard", &guard);
            taken.map_err(|e| {
                let kind = orca_shared::exit::kind_of(&e);
                with_kind(
                    kind,
                    format!(
                        "the command and its checks passed and the changes stay, but the milestone backup failed: {}",
                        orca_shared::exit::message_of(&e, kind)
                    ),
                )
            })?;
        }
        ctx.note(format!(
            "{shown_command}: passed{}; the changes stay (the backup before is {backup})",
            if cli.checks.is_empty() {
                String::new()
            } else {
                format!(" with {} check(s)", cli.checks.len())
            }
        ));
        return Ok(());
    };

    let what = describe_failure(&failed, &command, &steps);
    if cli.keep_on_failure {
        guard["restored"] = false.into();
        ctx.record.set("guard", &guard);
        fail!(
            GuardFailed,
            "{what}; the database was left as it was (--keep-on-failure): restore it with `orca-restore {backup} --volume {volume} --stop`"
        );
    }

    // 4. Put the backup back, with orca-restore's safety.
    ctx.note(format!("{what}: restoring {backup} into volume '{volume}'"));
    let outer = std::mem::replace(&mut ctx.record, Record::new());
    let mut restore_args = vec![
        backup.clone(),
        format!("--volume={volume}"),
        "--stop".into(),
    ];
    restore_args.extend(args.verify.iter().cloned());
    let restored = step(ctx, "orca-restore", restore_args, orca_restore::run);
    let restore_record = std::mem::replace(&mut ctx.record, outer);
    let failed_state = restore_record.str("safety_backup")?.map(String::from);
    guard["restored"] = restored.is_ok().into();
    guard["failed_state"] = serde_json::to_value(&failed_state)?;
    guard["restore"] = serde_json::Value::Object(restore_record.fields().clone());
    ctx.record.set("guard", &guard);
    if let Err(e) = restored {
        let kind = orca_shared::exit::kind_of(&e);
        let msg = orca_shared::exit::message_of(&e, kind);
        let journal = restore_record
            .str("journal")?
            .map(|j| format!(" (journal {j})"))
            .unwrap_or_default();
        return Err(with_kind(
            kind,
            format!(
                "{what}, and putting the backup back failed: {msg}{journal}; finish it with `orca-restore --resume --volume {volume}` or undo it with `orca-restore --rollback --volume {volume}`"
            ),
        ));
    }
    let kept = failed_state
        .as_deref()
        .map(|p| format!("; the failed state is kept as {p}"))
        .unwrap_or_default();
    fail!(
        GuardRestored,
        "{what}; the database was restored to {backup}{kept}"
    );
}

fn with_kind(kind: ErrorKind, message: String) -> anyhow::Error {
    anyhow::Error::from(orca_shared::exit::OrcaError::new(kind, message))
}

fn describe_failure(failed: &str, command: &Ran, checks: &[Ran]) -> String {
    let r = if failed == "command" {
        command
    } else {
        checks.last().unwrap_or(command)
    };
    let how = match r.outcome.as_str() {
        "timed_out" => "ran out of time (--timeout) and was ended".to_string(),
        "interrupted" => "was interrupted (Ctrl-C)".to_string(),
        _ => match (r.exit_code, r.signal) {
            (Some(c), _) => format!("failed with exit code {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "failed".to_string(),
        },
    };
    let which = if failed == "command" {
        "the command".to_string()
    } else {
        format!("{failed} ({})", r.command)
    };
    format!("{which} {how}")
}

/// A check's command line, through the platform's shell.
fn shell(check: &str) -> Vec<String> {
    if cfg!(windows) {
        vec!["cmd".into(), "/C".into(), check.into()]
    } else {
        vec!["sh".into(), "-c".into(), check.into()]
    }
}

/// This process's stderr, for a child's stdout and stderr.
fn stderr_for_child() -> anyhow::Result<Stdio> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot pass stderr to the command")?;
        Ok(Stdio::from(fd))
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsHandle;
        let h = std::io::stderr()
            .as_handle()
            .try_clone_to_owned()
            .context("cannot pass stderr to the command")?;
        Ok(Stdio::from(h))
    }
}

/// How long a command that was told to stop may take before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// Run `argv` to its end: passed, failed, timed out or interrupted.
fn run_one(
    argv: &[String],
    shown: &str,
    envs: &[(&str, String)],
    timeout: Option<Duration>,
    tool: &str,
) -> anyhow::Result<Ran> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::inherit())
        .stdout(stderr_for_child()?)
        .stderr(stderr_for_child()?);
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C reaches orca-guard, which passes it
        // on, once, to the command and everything it started.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let started = Instant::now();
    // Signals from here on are the command's.
    let deferring = interrupt::defer();
    let mut child = cmd.spawn().map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::Usage
        } else {
            ErrorKind::Failure
        };
        with_kind(kind, format!("cannot run {shown}: {e}"))
    })?;
    let mut passed_on = 0usize;
    let mut told_at: Option<Instant> = None;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait().context("cannot wait for the command")? {
            break st;
        }
        let signals = interrupt::deferred();
        if signals > passed_on {
            passed_on = signals;
            if signals >= 3 {
                eprintln!("{tool}: interrupted three times: killing {shown}");
                kill(&mut child);
            } else {
                interrupt_child(&child);
            }
            told_at.get_or_insert_with(Instant::now);
        }
        if let Some(limit) = timeout
            && !timed_out
            && started.elapsed() > limit
        {
            timed_out = true;
            eprintln!(
                "{tool}: {shown} ran longer than --timeout ({} s): ending it",
                limit.as_secs()
            );
            terminate(&mut child);
            told_at = Some(Instant::now());
        }
        if told_at.is_some_and(|t| t.elapsed() > GRACE) {
            kill(&mut child);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(deferring);
    let interrupted = passed_on > 0;
    let (exit_code, signal) = code_and_signal(&status);
    let outcome = if timed_out {
        "timed_out"
    } else if interrupted {
        "interrupted"
    } else if status.success() {
        "passed"
    } else {
        "failed"
    };
    Ok(Ran {
        command: shown.to_string(),
        outcome: outcome.into(),
        exit_code,
        signal,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn code_and_signal(status: &ExitStatus) -> (Option<i32>, Option<i32>) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        (status.code(), status.signal())
    }
    #[cfg(not(unix))]
    {
        (status.code(), None)
    }
}

/// Send `sig` to the process group the command leads.
#[cfg(unix)]
fn signal_group(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pid, sig);
}

/// Pass Ctrl-C on to the command's process group (Unix). On Windows the
/// console already delivered it to the command, which shares it.
fn interrupt_child(child: &Child) {
    #[cfg(unix)]
    {
        signal_group(child, nix::sys::signal::Signal::SIGINT);
    }
    #[cfg(not(unix))]
    {
        let _ = child;
    }
}

/// Ask the command's process group to end (SIGTERM); on Windows, end it.
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        signal_group(child, nix::sys::signal::Signal::SIGTERM);
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
    }
}

/// End the command's process group at once.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        signal_group(child, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("30d").is_err());
    }

    #[test]
    fn command_lines_hide_credentials() {
        let argv: Vec<String> = [
            "dotnet",
            "ef",
            "database",
            "update",
            "--connection",
            "Server=localhost;User Id=sa;Password=S3cret!;TrustServerCertificate=true",
            "https://user:hunter2@example.com/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = shown(&argv);
        assert!(!s.contains("S3cret!"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("Password=***"), "{s}");
        assert!(s.starts_with("dotnet ef database update"), "{s}");
    }

    #[test]
    fn labels_become_slugs() {
        assert_eq!(slug("dotnet"), "dotnet");
        assert_eq!(slug("/usr/bin/psql"), "psql");
        assert_eq!(slug("Migrate Now.exe"), "migrate-now");
        assert_eq!(slug("!!!"), "command");
    }
}
