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
use orca_shared::config::NotifyLevel;
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

    /// Tell this URL how it went (repeatable; shoutrrr-style, see orca-notify) [default: notify.urls in config]
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,

    /// error: tell of failures only; info: of every run [default: notify.level in config, else error]
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub notify_level: Option<NotifyLevel>,

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

/// Keys whose values are secrets, in `key=value` and `--key value` forms.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api-key",
    "api_key",
];

/// Flags whose next word is a secret (`sqlcmd -P`, `--password X`).
fn secret_flag(word: &str) -> bool {
    let w = word.trim_start_matches('-').to_ascii_lowercase();
    word.starts_with('-') && (SECRET_KEYS.contains(&w.as_str()) || word == "-P")
}

/// `text` with every `key=value` (spaces around `=` too, quoted values
/// whole) whose key is a secret's shown as `key=***`.
fn hide_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let hit = SECRET_KEYS
            .iter()
            .filter_map(|k| lower[i..].find(k).map(|at| (i + at, k.len())))
            .min();
        let Some((at, klen)) = hit else {
            out.push_str(&text[i..]);
            break;
        };
        // `=` after the key, maybe with spaces.
        let mut j = at + klen;
        while j < text.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= text.len() || bytes[j] != b'=' {
            out.push_str(&text[i..at + klen]);
            i = at + klen;
            continue;
        }
        j += 1;
        while j < text.len() && bytes[j] == b' ' {
            j += 1;
        }
        out.push_str(&text[i..j]);
        out.push_str("***");
        // The value: quoted whole, else up to ; & space or a quote.
        let end = match bytes.get(j) {
            Some(q @ (b'\'' | b'"')) => text[j + 1..]
                .find(*q as char)
                .map_or(text.len(), |e| j + 1 + e + 1),
            _ => text[j..]
                .find([';', ' ', '&', '"', '\''])
                .map_or(text.len(), |e| j + e),
        };
        i = end;
    }
    out
}

/// A command line (or a shell command) for records and messages: the
/// values of secret-looking keys and flags and URL credentials shown as
/// `***`.
pub fn shown(argv: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for a in argv {
        if hide_next {
            out.push("***".into());
            hide_next = false;
            continue;
        }
        let mut words: Vec<String> = Vec::new();
        let mut hide_word = false;
        // Inside one argument (a shell command for --check), flags too.
        for w in a.split(' ') {
            if hide_word && !w.is_empty() {
                words.push("***".into());
                hide_word = false;
                continue;
            }
            hide_word = secret_flag(w);
            words.push(w.to_string());
        }
        if argv.len() > 1 && secret_flag(a) {
            hide_next = true;
        }
        let joined = hide_values(&orca_shared::redact::urls(&words.join(" ")));
        out.push(if joined.contains(' ') || joined.is_empty() {
            format!("'{}'", joined.replace('\'', "'\\''"))
        } else {
            joined
        });
    }
    out.join(" ")
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

/// Who hears of the run: the flags (set by [`remember`]), the notifier
/// (set by [`run`], which sends the start ping).
static NOTIFY_FLAGS: std::sync::OnceLock<(Vec<String>, Option<NotifyLevel>)> =
    std::sync::OnceLock::new();
static NOTIFIER: std::sync::OnceLock<orca_notify::Notifier> = std::sync::OnceLock::new();

/// orca-guard's hooks (its `main`): the flags noted before anything runs,
/// the outcome told at the end.
pub fn hooks() -> orca_shared::app::Hooks<Cli> {
    orca_shared::app::Hooks {
        before: remember,
        then: notify,
    }
}

fn remember(cli: &Cli) {
    let _ = NOTIFY_FLAGS.set((cli.notify.clone(), cli.notify_level));
}

/// The end of a run: tell the notification URLs how it went, as the record
/// says (without a config, only the `--notify` URLs).
fn notify(record: &mut Record, config: Option<&orca_shared::config::Config>, took: Duration) {
    if let Some(n) = NOTIFIER.get() {
        n.finish(record, Some(took), "orca-guard");
        return;
    }
    let (urls, level) = NOTIFY_FLAGS.get().cloned().unwrap_or_default();
    let settings = config.map(|c| c.notify.clone()).unwrap_or_default();
    orca_notify::Notifier::new(&settings, &urls, level).finish(record, Some(took), "orca-guard");
}

/// Run the guarded command, the checks, and restore when one fails.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let notifier = orca_notify::Notifier::new(&ctx.config.notify, &cli.notify, cli.notify_level)
        .with_config_warnings(&ctx.loaded.warnings);
    notifier.start(&mut ctx.record, ctx.tool);
    let _ = NOTIFIER.set(notifier);
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
        None => {
            // Another guarded run in the same minute: `-2`, `-3`...
            let base = format!(
                "before-{}-{}",
                slug(&label),
                Local::now().format("%Y-%m-%d-%H-%M")
            );
            let backups = ctx.config.backups_dir()?;
            let taken = |n: &str| {
                orca_shared::names::sanitize(n, ctx.config.compression)
                    .is_ok_and(|c| orca_shared::names::any_form_exists(&backups, &c.file_name))
            };
            let mut name = base.clone();
            let mut k = 2;
            while taken(&name) && k < 1000 {
                name = format!("{base}-{k}");
                k += 1;
            }
            name
        }
    };
    let mut tags = cli.tags.clone();
    if !tags.iter().any(|t| t == "orca-guard") {
        tags.push("orca-guard".into());
    }
    // What would fail only after the backup or the command: now.
    let program = find_program(&cli.command[0])?;
    if let Some(after) = &cli.after {
        let backups = ctx.config.backups_dir()?;
        let taken = orca_shared::names::sanitize(after, ctx.config.compression)
            .map(|n| n.file_name)
            .ok()
            .filter(|f| orca_shared::names::any_form_exists(&backups, f));
        if let Some(f) = taken {
            fail!(
                AlreadyExists,
                "--after {after}: backup {} already exists; choose another milestone name (nothing was run)",
                backups.join(f).display()
            );
        }
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
    // A backup nothing given here can open cannot be put back: refuse
    // before the command changes anything.
    let content_checked = ctx
        .record
        .get("checks")
        .and_then(|c| c.as_array())
        .and_then(|c| c.iter().find(|c| c["name"] == "integrity"))
        .is_none_or(|c| c["status"] != "skipped");
    if ctx.record.bool("encrypted")? == Some(true) && !content_checked {
        fail!(
            DecryptionFailed,
            "the backup {backup} is encrypted and nothing given opens it, so orca-guard could not put it back: pass --identity (or set ORCA_IDENTITY or encryption.identity_file); nothing was run"
        );
    }
    ctx.note(format!(
        "backed up volume '{volume}' to {backup}; running: {shown_command}"
    ));

    // 2. The command, then the checks.
    let envs = [
        ("ORCA_GUARD_BACKUP", backup.clone()),
        ("ORCA_GUARD_VOLUME", volume.clone()),
    ];
    let mut steps: Vec<Ran> = Vec::new();
    let mut argv = cli.command.clone();
    argv[0] = program;
    let command = run_one(&argv, &shown_command, &envs, cli.timeout, ctx.tool)?;
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
        let journal = restore_record.str("journal")?.map(String::from);
        let next = match (&journal, kind) {
            (Some(j), _) => format!(
                " (journal {j}); finish it with `orca-restore --resume --volume {volume}` or undo it with `orca-restore --rollback --volume {volume}`"
            ),
            (None, ErrorKind::RestoreRolledBack) => format!(
                "; the volume holds the command's result again: restore it with `orca-restore {backup} --volume {volume} --stop`"
            ),
            (None, _) => format!(
                "; the volume is as the command left it: restore it with `orca-restore {backup} --volume {volume} --stop`"
            ),
        };
        return Err(with_kind(
            kind,
            format!("{what}, and putting the backup back failed: {msg}{next}"),
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

/// A check's command line, through the platform's shell (on Windows,
/// `cmd /C` gets it as written: cmd does not read `\"` quoting).
fn shell(check: &str) -> Vec<String> {
    if cfg!(windows) {
        vec![RAW_CMD.into(), check.into()]
    } else {
        vec!["sh".into(), "-c".into(), check.into()]
    }
}

/// argv[0] that means `cmd /C` followed by argv[1] verbatim (Windows).
const RAW_CMD: &str = "\u{1}cmd /C";

/// The program to run: a path as given, else found on PATH (on Windows
/// with PATHEXT, so `npx` finds `npx.cmd`); a batch file runs through cmd.
fn find_program(name: &str) -> anyhow::Result<String> {
    let as_path = std::path::Path::new(name);
    if as_path.components().count() > 1 {
        if as_path.exists() {
            return Ok(name.to_string());
        }
        fail!(Usage, "cannot run {name}: no such file; nothing was run");
    }
    let exts: Vec<String> = if cfg!(windows) {
        let mut v = vec![String::new()];
        v.extend(
            std::env::var("PATHEXT")
                .unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".into())
                .split(';')
                .filter(|e| !e.is_empty())
                .map(|e| e.to_ascii_lowercase()),
        );
        v
    } else {
        vec![String::new()]
    };
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for ext in &exts {
            let p = dir.join(format!("{name}{ext}"));
            if p.is_file() {
                return Ok(p.to_string_lossy().into_owned());
            }
        }
    }
    fail!(
        Usage,
        "cannot run {name}: not found on PATH; nothing was run (give its path, or fix PATH)"
    );
}

/// A command for `argv`: batch files and checks through cmd on Windows.
fn command_for(argv: &[String]) -> Command {
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        if argv[0] == RAW_CMD {
            let mut c = Command::new("cmd");
            c.arg("/C").raw_arg(&argv[1]);
            return c;
        }
        let lower = argv[0].to_ascii_lowercase();
        if lower.ends_with(".cmd") || lower.ends_with(".bat") {
            let mut c = Command::new("cmd");
            c.arg("/C").arg(&argv[0]).args(&argv[1..]);
            return c;
        }
    }
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
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
    let mut cmd = command_for(argv);
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
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
    // On a terminal the command's group is its foreground: it can read
    // the terminal (a prompt), and Ctrl-C typed there reaches it directly.
    let _foreground = Foreground::give(&child);
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
            } else if signals == 1 {
                // Once: the command ends as it would on Ctrl-C, in its own time.
                interrupt_child(&child);
            }
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
    drop(_foreground);
    // Nothing the command started may go on writing while the database is
    // put back: what is left of its process group ends too.
    if !status.success() || timed_out || passed_on > 0 {
        end_group(&child, tool, shown);
    }
    drop(deferring);
    let (exit_code, signal) = code_and_signal(&status);
    // Ctrl-C typed on the terminal went to the command alone.
    let interrupted = passed_on > 0 || signal == Some(2) || exit_code == Some(130);
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

/// The terminal's foreground given to the command's process group while it
/// runs, and taken back after (Unix, when stdin is a terminal).
struct Foreground {
    #[cfg(unix)]
    ours: Option<nix::unistd::Pid>,
}

impl Foreground {
    fn give(child: &Child) -> Foreground {
        #[cfg(unix)]
        {
            use nix::sys::signal::{SigSet, Signal};
            use std::io::IsTerminal;
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                return Foreground { ours: None };
            }
            // A background process may change the foreground only while it
            // blocks SIGTTOU (POSIX), which taking it back needs.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = ttou.thread_block();
            let unblock = |ttou: SigSet| {
                let _ = ttou.thread_unblock();
            };
            let Ok(ours) = nix::unistd::tcgetpgrp(&stdin) else {
                unblock(ttou);
                return Foreground { ours: None };
            };
            let theirs = nix::unistd::Pid::from_raw(child.id() as i32);
            if nix::unistd::tcsetpgrp(&stdin, theirs).is_err() {
                unblock(ttou);
                return Foreground { ours: None };
            }
            // Stopped by SIGTTIN before it had the terminal: go on.
            signal_group(child, Signal::SIGCONT);
            Foreground { ours: Some(ours) }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            Foreground {}
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(ours) = self.ours {
            use nix::sys::signal::{SigSet, Signal};
            let _ = nix::unistd::tcsetpgrp(std::io::stdin(), ours);
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = ttou.thread_unblock();
        }
    }
}

/// Send `sig` to the process group the command leads.
#[cfg(unix)]
fn signal_group(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pid, sig);
}

/// End what remains of the command's process group (Unix): SIGTERM, then
/// SIGKILL after [`GRACE`]; returns when none is left.
fn end_group(child: &Child, tool: &str, shown: &str) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, killpg};
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let alive = || killpg(pgid, None).is_ok();
        if !alive() {
            return;
        }
        eprintln!("{tool}: processes {shown} started are still running: ending them");
        let _ = killpg(pgid, Signal::SIGTERM);
        let t = Instant::now();
        while alive() && t.elapsed() < GRACE {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            let _ = killpg(pgid, Signal::SIGKILL);
            let t = Instant::now();
            while alive() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (child, tool, shown);
    }
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
        // Quoted values, spaces around '=', flags with their value apart,
        // flags inside a shell command.
        let argv: Vec<String> = [
            "tool",
            "Server=x;Password='p@ss;w0rd';Pwd = spaced;Token=\"dq secret\"",
            "--password",
            "hunter3",
            "-P",
            "hunter4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = shown(&argv);
        for secret in ["p@ss", "w0rd", "spaced", "dq secret", "hunter3", "hunter4"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        let s = shown(&["sqlcmd -S db -P 'S3cr3t' -Q x".to_string()]);
        assert!(!s.contains("S3cr3t"), "{s}");
        assert!(s.contains("-S db"), "{s}");
    }

    #[test]
    fn labels_become_slugs() {
        assert_eq!(slug("dotnet"), "dotnet");
        assert_eq!(slug("/usr/bin/psql"), "psql");
        assert_eq!(slug("Migrate Now.exe"), "migrate-now");
        assert_eq!(slug("!!!"), "command");
    }
}
