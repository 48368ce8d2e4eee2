//! `orca-schedule`: scheduled backups, installed into the platform's own
//! scheduler, so a backup runs whether or not a terminal is open, and one
//! missed while the machine slept runs when it wakes.
//!
//! - Linux with a systemd user manager: `orca-backup-NAME.service` and
//!   `.timer` (`Persistent=true`) in `$XDG_CONFIG_HOME/systemd/user`,
//!   enabled with `systemctl --user`; without one, a line in the user's
//!   crontab, marked `# orca-schedule:NAME`.
//! - macOS: a LaunchAgent `~/Library/LaunchAgents/org.orca-backup.NAME.plist`
//!   loaded with `launchctl bootstrap gui/UID`.
//! - Windows: a Task Scheduler task `\orca-backup\NAME` made from task XML
//!   with `schtasks /Create /XML` for the current user, no elevation,
//!   `StartWhenAvailable` (a missed run catches up), run through
//!   `conhost.exe --headless` so no console window opens.
//!
//! Each entry runs the absolute path of `orca-backup` with `--config` (the
//! config file in effect), `--schedule NAME` (which keeps the run's final
//! record as the schedule's last result and never lets two runs of one
//! schedule overlap) and the backup's arguments; nothing secret is written
//! (a passphrase is refused). `<base>/schedules/NAME.json` remembers what was
//! installed, for `list`, `run` and `remove`.

pub mod when;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use chrono::{DateTime, Local};
use clap::{Parser, Subcommand, ValueEnum};
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::{fail, fsutil, paths};
use serde::{Deserialize, Serialize};

use crate::when::When;

/// Install, list, run and remove scheduled backups in the platform's own
/// scheduler (systemd timers or cron on Linux, launchd on macOS, Task
/// Scheduler on Windows).
///
/// `install --daily 02:30 -- --compression zstd` runs `orca-backup
/// --compression zstd` every night; a run missed while the machine was off
/// or asleep runs when it is back. `list` says when each runs next and how
/// its last run went; `run NAME` runs one now; `remove NAME` undoes install.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub action: Option<Action>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli, stdin = |_| orca_shared::app::StdinUse::Never);

/// The scheduler to write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// systemd user timers (Linux).
    Systemd,
    /// The user's crontab (Linux, other Unix).
    Cron,
    /// A LaunchAgent (macOS).
    Launchd,
    /// Task Scheduler (Windows).
    Schtasks,
}

impl Scheduler {
    fn as_str(self) -> &'static str {
        match self {
            Scheduler::Systemd => "systemd",
            Scheduler::Cron => "cron",
            Scheduler::Launchd => "launchd",
            Scheduler::Schtasks => "schtasks",
        }
    }
}

/// The actions.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Register a recurring `orca-backup BACKUP_ARGS` (a second install of a name replaces the first)
    Install {
        /// The schedule's name (letters, digits, - and _)
        #[arg(long, default_value = "default", value_name = "NAME")]
        name: String,
        /// Every day at HH:MM (local time)
        #[arg(long, value_name = "HH:MM", group = "when")]
        daily: Option<String>,
        /// Every week on DAY at HH:MM (local time)
        #[arg(long, num_args = 2, value_names = ["DAY", "HH:MM"], group = "when")]
        weekly: Option<Vec<String>>,
        /// Every DURATION (30m, 6h, 1d)
        #[arg(long, value_name = "DURATION", group = "when")]
        every: Option<String>,
        /// The scheduler [default: systemd when a user manager runs, else cron; launchd on macOS; schtasks on Windows]
        #[arg(long, value_enum)]
        scheduler: Option<Scheduler>,
        /// Print what would be written and run; change nothing
        #[arg(long)]
        dry_run: bool,
        /// orca-backup's arguments, after `--`
        #[arg(last = true, value_name = "BACKUP_ARGS")]
        backup_args: Vec<String>,
    },
    /// The schedules, when each runs next and how its last run went
    List {
        /// json (the record) or table
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Unregister a schedule and remove what install wrote
    Remove {
        /// The schedule's name
        name: String,
        /// Print what would be removed and run; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a schedule now, as its scheduler would
    Run {
        /// The schedule's name
        name: String,
    },
}

/// Output formats of `list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The JSON record.
    Json,
    /// A table for people.
    Table,
}

/// What install wrote, kept in `<base>/schedules/NAME.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The schedule's name.
    pub name: String,
    /// `daily 02:30`, `weekly mon 02:30`, `every 6h`.
    pub when: String,
    /// Where it is registered.
    pub scheduler: Scheduler,
    /// The command the scheduler runs.
    pub command: Vec<String>,
    /// The environment it sets (`KEY=value`; never secrets).
    pub environment: Vec<String>,
    /// Files written for it (unit files, plist, task XML).
    pub files: Vec<String>,
    /// When it was installed.
    pub installed_at: String,
}

/// The last result of a schedule, written by `orca-backup --schedule NAME`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LastRun {
    /// When the run ended.
    pub at: String,
    /// 0 on success.
    pub exit_code: u8,
    /// Whether it succeeded.
    pub success: bool,
    /// It did nothing because the previous run of the schedule still ran.
    #[serde(default)]
    pub skipped: bool,
    /// The backup it made.
    #[serde(default)]
    pub backup_path: Option<String>,
    /// Its error message.
    #[serde(default)]
    pub error: Option<String>,
}

/// `<base>/schedules`.
pub fn schedules_dir() -> anyhow::Result<PathBuf> {
    Ok(paths::base_dir()?.join("schedules"))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    orca_backup_workflow::schedule::check_name(name)
        .map_err(|why| orca_shared::err!(Usage, "{why}"))
}

/// Environment variables an entry carries when set now (none is secret:
/// orca refuses credentials in DOCKER_HOST).
const CARRIED: &[&str] = &[
    "ORCA_HOME",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_TLS",
];

/// Flags of orca-backup a schedule must not carry.
fn refuse_secrets(args: &[String]) -> anyhow::Result<()> {
    for a in args {
        if a.chars().any(char::is_control) {
            fail!(
                Usage,
                "argument {a:?} holds a line break or another control character, which no scheduler's entry can carry"
            );
        }
        let flag = a.split('=').next().unwrap_or(a);
        if flag == "--passphrase" {
            fail!(
                Usage,
                "a passphrase cannot go in a schedule (it would have to be stored, or asked with nobody there): encrypt to recipients instead (--recipient, or encryption.recipients in config)"
            );
        }
        if flag == "--schedule" || flag == "--config" {
            fail!(
                Usage,
                "{flag} is set by orca-schedule itself; leave it out of the backup's arguments"
            );
        }
    }
    Ok(())
}

/// orca-backup's flags whose value is a path: made absolute, since the
/// scheduler starts the run in another directory.
const PATH_FLAGS: &[&str] = &[
    "--recipients-file",
    "--identity",
    "-i",
    "--drill-env-file",
    "--copy-to",
];

fn absolute(value: &str) -> String {
    // URLs (s3://, file://) stay as they are.
    if value.contains("://") {
        return value.to_string();
    }
    std::path::absolute(value)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// BACKUP_ARGS as orca-backup will get them: checked by its own parser,
/// path values made absolute.
fn checked_backup_args(args: &[String]) -> anyhow::Result<Vec<String>> {
    use clap::Parser as _;
    orca_backup_workflow::Cli::try_parse_from(
        std::iter::once("orca-backup".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| {
        orca_shared::err!(
            Usage,
            "the backup's arguments are not orca-backup's: {}",
            orca_shared::exit::one_line(&e.to_string())
        )
    })?;
    let mut out = Vec::new();
    let mut next_is_path = false;
    for a in args {
        if next_is_path {
            out.push(absolute(a));
            next_is_path = false;
            continue;
        }
        if PATH_FLAGS.contains(&a.as_str()) {
            next_is_path = true;
            out.push(a.clone());
            continue;
        }
        match a.split_once('=') {
            Some((flag, value)) if PATH_FLAGS.contains(&flag) => {
                out.push(format!("{flag}={}", absolute(value)))
            }
            _ => out.push(a.clone()),
        }
    }
    Ok(out)
}

/// The scheduler this platform uses.
fn default_scheduler() -> Scheduler {
    if cfg!(windows) {
        Scheduler::Schtasks
    } else if cfg!(target_os = "macos") {
        Scheduler::Launchd
    } else if Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Scheduler::Systemd
    } else {
        Scheduler::Cron
    }
}

/// Run a scheduler command; its failure is an error naming it.
fn run_cmd(argv: &[String], input: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| {
        orca_shared::err!(
            Failure,
            "cannot run {}: {e} (is it installed and on PATH?)",
            argv[0]
        )
    })?;
    if let Some(text) = input
        && let Some(mut stdin) = child.stdin.take()
    {
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write to {}", argv[0]))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot run {}", argv[0]))?;
    if !out.status.success() {
        fail!(
            Failure,
            "{} failed ({}): {}",
            argv.join(" "),
            out.status,
            orca_shared::exit::one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn home() -> anyhow::Result<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    match std::env::var_os(var) {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => fail!(
            Usage,
            "${var} is not set: orca-schedule needs your home directory"
        ),
    }
}

fn systemd_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => home()?.join(".config"),
    };
    Ok(base.join("systemd").join("user"))
}

fn launchd_plist(name: &str) -> anyhow::Result<PathBuf> {
    Ok(home()?
        .join("Library")
        .join("LaunchAgents")
        .join(format!("org.orca-backup.{name}.plist")))
}

fn uid() -> String {
    #[cfg(unix)]
    {
        nix_uid()
    }
    #[cfg(not(unix))]
    {
        String::new()
    }
}

#[cfg(unix)]
fn nix_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    // The owner of the home directory is the user launchd knows.
    home()
        .ok()
        .and_then(|h| std::fs::metadata(h).ok())
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|| "501".into())
}

/// `"..."` for a systemd unit line.
fn systemd_quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$")
    )
}

/// `'...'` for a POSIX shell in a crontab line (`%` is special to cron;
/// backslashes are refused before this, cron's own escaping varies).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "\\%"))
}

/// `"KEY=value"` for systemd's `Environment=`: `%` specifiers are expanded
/// there, `$` is not.
fn systemd_env_quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
    )
}

/// One argument as Windows' CommandLineToArgvW reads it back.
pub fn win_quote(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '\t', '"', '\n']) {
        return s.to_string();
    }
    let mut out = String::from("\"");
    let mut slashes = 0;
    for c in s.chars() {
        match c {
            '\\' => slashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(slashes * 2 + 1));
                out.push('"');
                slashes = 0;
            }
            _ => {
                out.push_str(&"\\".repeat(slashes));
                out.push(c);
                slashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(slashes * 2));
    out.push('"');
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A file to write and the commands to run, for install and remove.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Files and their contents.
    pub write: Vec<(String, String)>,
    /// Files to delete.
    pub delete: Vec<String>,
    /// Commands to run, in order (`input`: what goes on their stdin).
    pub run: Vec<(Vec<String>, Option<String>)>,
}

fn crontab_without(current: &str, name: &str) -> String {
    let marker = format!("# orca-schedule:{name} ");
    let mut out = Vec::new();
    let mut skip_next = false;
    for line in current.lines() {
        if skip_next {
            skip_next = false;
            continue;
        }
        if line.starts_with(&marker) || line == marker.trim_end() {
            skip_next = true;
            continue;
        }
        out.push(line);
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

fn current_crontab() -> anyhow::Result<String> {
    let out = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| orca_shared::err!(Failure, "cannot run crontab: {e} (is cron installed?)"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        // None yet: an empty one. Anything else: not ours to overwrite.
        if said.to_ascii_lowercase().contains("no crontab for") {
            return Ok(String::new());
        }
        fail!(
            Failure,
            "crontab -l failed ({}): {}; your crontab was left untouched",
            out.status,
            orca_shared::exit::one_line(&said)
        );
    }
    String::from_utf8(out.stdout).map_err(|_| {
        orca_shared::err!(
            Failure,
            "your crontab holds bytes that are not UTF-8: orca-schedule will not rewrite it (fix it with crontab -e, or use --scheduler systemd)"
        )
    })
}

/// What install writes and runs for `entry`.
pub fn install_plan(entry: &Entry, when: &When, log: &Path) -> anyhow::Result<Plan> {
    let name = &entry.name;
    let mut plan = Plan::default();
    match entry.scheduler {
        Scheduler::Systemd => {
            let dir = systemd_dir()?;
            let unit = format!("orca-backup-{name}");
            let env: String = entry
                .environment
                .iter()
                .map(|e| format!("Environment={}\n", systemd_env_quote(e)))
                .collect();
            let exec: Vec<String> = entry.command.iter().map(|a| systemd_quote(a)).collect();
            let service = format!(
                "# Written by orca-schedule; remove with: orca-schedule remove {name}\n[Unit]\nDescription=orca-backup schedule {name}\n\n[Service]\nType=oneshot\n{env}ExecStart={}\n",
                exec.join(" ")
            );
            let timer = format!(
                "# Written by orca-schedule; remove with: orca-schedule remove {name}\n[Unit]\nDescription=orca-backup schedule {name} ({})\n\n[Timer]\n{}Unit={unit}.service\n\n[Install]\nWantedBy=timers.target\n",
                entry.when,
                when.systemd_timer()
            );
            plan.write.push((
                dir.join(format!("{unit}.service")).display().to_string(),
                service,
            ));
            plan.write.push((
                dir.join(format!("{unit}.timer")).display().to_string(),
                timer,
            ));
            plan.run.push((
                vec!["systemctl".into(), "--user".into(), "daemon-reload".into()],
                None,
            ));
            plan.run.push((
                vec![
                    "systemctl".into(),
                    "--user".into(),
                    "enable".into(),
                    "--now".into(),
                    format!("{unit}.timer"),
                ],
                None,
            ));
        }
        Scheduler::Cron => {
            if let Some(a) = entry
                .command
                .iter()
                .chain(&entry.environment)
                .find(|a| a.contains('\\'))
            {
                fail!(
                    Usage,
                    "{a:?} holds a backslash, which cron's own escaping may change: use --scheduler systemd, or a path without one"
                );
            }
            let fields = when
                .cron_fields()
                .map_err(|why| orca_shared::err!(Usage, "--every: {why}"))?;
            let env: String = entry
                .environment
                .iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    format!("{k}={} ", sh_quote(v))
                })
                .collect();
            let cmd: Vec<String> = entry.command.iter().map(|a| sh_quote(a)).collect();
            let line = format!(
                "# orca-schedule:{name} {} (managed by orca-schedule; remove with: orca-schedule remove {name})\n{fields} {env}{} >> {} 2>&1\n",
                entry.when,
                cmd.join(" "),
                sh_quote(&log.display().to_string())
            );
            let mut tab = crontab_without(&current_crontab()?, name);
            tab.push_str(&line);
            plan.run
                .push((vec!["crontab".into(), "-".into()], Some(tab)));
        }
        Scheduler::Launchd => {
            let plist = launchd_plist(name)?;
            let label = format!("org.orca-backup.{name}");
            let args: String = entry
                .command
                .iter()
                .map(|a| format!("\t\t<string>{}</string>\n", xml_escape(a)))
                .collect();
            let env: String = entry
                .environment
                .iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    format!(
                        "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
                        xml_escape(k),
                        xml_escape(v)
                    )
                })
                .collect();
            let log = xml_escape(&log.display().to_string());
            let text = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<!-- Written by orca-schedule; remove with: orca-schedule remove {name} -->\n<plist version=\"1.0\">\n<dict>\n\t<key>Label</key>\n\t<string>{label}</string>\n\t<key>ProgramArguments</key>\n\t<array>\n{args}\t</array>\n\t<key>EnvironmentVariables</key>\n\t<dict>\n{env}\t</dict>\n{}\t<key>RunAtLoad</key>\n\t<false/>\n\t<key>ProcessType</key>\n\t<string>Background</string>\n\t<key>StandardOutPath</key>\n\t<string>{log}</string>\n\t<key>StandardErrorPath</key>\n\t<string>{log}</string>\n</dict>\n</plist>\n",
                when.launchd_keys()
            );
            let target = format!("gui/{}", uid());
            plan.run.push((
                vec![
                    "launchctl".into(),
                    "bootout".into(),
                    format!("{target}/{label}"),
                ],
                None,
            ));
            plan.write.push((plist.display().to_string(), text));
            plan.run.push((
                vec![
                    "launchctl".into(),
                    "bootstrap".into(),
                    target,
                    plist.display().to_string(),
                ],
                None,
            ));
        }
        Scheduler::Schtasks => {
            // Task Scheduler expands %VAR% in an action's arguments.
            if let Some(a) = entry.command.iter().find(|a| a.contains('%')) {
                fail!(
                    Usage,
                    "{a:?} holds a '%', which Task Scheduler would read as a variable: leave it out"
                );
            }
            if let When::Every(d) = when
                && d.as_secs() % 60 != 0
            {
                fail!(Usage, "--every: Task Scheduler counts in whole minutes");
            }
            let xml_path = schedules_dir()?.join(format!("{name}.xml"));
            let exe = &entry.command[0];
            let mut args = vec!["--headless".to_string(), win_quote(exe)];
            args.extend(entry.command[1..].iter().map(|a| win_quote(a)));
            let text = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<!-- Written by orca-schedule; remove with: orca-schedule remove {name} -->\n<Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\n  <RegistrationInfo>\n    <Description>orca-backup schedule {name} ({})</Description>\n    <URI>\\orca-backup\\{name}</URI>\n  </RegistrationInfo>\n  <Triggers>\n{}  </Triggers>\n  <Principals>\n    <Principal id=\"Author\">\n      <LogonType>InteractiveToken</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>\n    </Principal>\n  </Principals>\n  <Settings>\n    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n    <StartWhenAvailable>true</StartWhenAvailable>\n    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>\n    <ExecutionTimeLimit>PT12H</ExecutionTimeLimit>\n    <Enabled>true</Enabled>\n  </Settings>\n  <Actions Context=\"Author\">\n    <Exec>\n      <Command>%SystemRoot%\\System32\\conhost.exe</Command>\n      <Arguments>{}</Arguments>\n    </Exec>\n  </Actions>\n</Task>\n",
                xml_escape(&entry.when),
                when.task_trigger(Local::now()),
                xml_escape(&args.join(" "))
            );
            plan.write.push((xml_path.display().to_string(), text));
            plan.run.push((
                vec![
                    "schtasks".into(),
                    "/Create".into(),
                    "/TN".into(),
                    format!("\\orca-backup\\{name}"),
                    "/XML".into(),
                    xml_path.display().to_string(),
                    "/F".into(),
                ],
                None,
            ));
        }
    }
    Ok(plan)
}

/// What remove deletes and runs for `entry`.
pub fn remove_plan(entry: &Entry) -> anyhow::Result<Plan> {
    let name = &entry.name;
    let mut plan = Plan::default();
    match entry.scheduler {
        Scheduler::Systemd => {
            plan.run.push((
                vec![
                    "systemctl".into(),
                    "--user".into(),
                    "disable".into(),
                    "--now".into(),
                    format!("orca-backup-{name}.timer"),
                ],
                None,
            ));
            plan.delete.extend(entry.files.iter().cloned());
            plan.run.push((
                vec!["systemctl".into(), "--user".into(), "daemon-reload".into()],
                None,
            ));
        }
        Scheduler::Cron => {
            plan.run.push((
                vec!["crontab".into(), "-".into()],
                Some(crontab_without(&current_crontab()?, name)),
            ));
        }
        Scheduler::Launchd => {
            plan.run.push((
                vec![
                    "launchctl".into(),
                    "bootout".into(),
                    format!("gui/{}/org.orca-backup.{name}", uid()),
                ],
                None,
            ));
            plan.delete.extend(entry.files.iter().cloned());
        }
        Scheduler::Schtasks => {
            plan.run.push((
                vec![
                    "schtasks".into(),
                    "/Delete".into(),
                    "/TN".into(),
                    format!("\\orca-backup\\{name}"),
                    "/F".into(),
                ],
                None,
            ));
            plan.delete.extend(entry.files.iter().cloned());
        }
    }
    Ok(plan)
}

fn write_file(path: &str, text: &str, utf16: bool) -> anyhow::Result<()> {
    let p = Path::new(path);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bytes: Vec<u8> = if utf16 {
        // Task Scheduler reads task XML as UTF-16 (with its byte order mark).
        let mut v = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    } else {
        text.as_bytes().to_vec()
    };
    fsutil::write_atomic(p, &bytes)
}

fn entry_path(name: &str) -> anyhow::Result<PathBuf> {
    Ok(schedules_dir()?.join(format!("{name}.json")))
}

fn read_entry(name: &str) -> anyhow::Result<Entry> {
    let p = entry_path(name)?;
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let known = entries().unwrap_or_default();
            let names: Vec<String> = known.iter().map(|e| e.name.clone()).collect();
            fail!(
                NoSuchBackup,
                "no schedule named '{name}' (orca-schedule list shows them{})",
                if names.is_empty() {
                    ": there are none".to_string()
                } else {
                    format!(": {}", names.join(", "))
                }
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    serde_json::from_slice(&text).map_err(|e| {
        orca_shared::err!(
            Failure,
            "{} is damaged ({e}): remove it and install again",
            p.display()
        )
    })
}

fn entries() -> anyhow::Result<Vec<Entry>> {
    let dir = schedules_dir()?;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = n.strip_suffix(".json")
            && !stem.ends_with(".last")
        {
            match read_entry(stem) {
                Ok(entry) => out.push(entry),
                // Shown, so a schedule that may still run is not hidden.
                Err(e) => out.push(Entry {
                    name: stem.to_string(),
                    when: format!(
                        "damaged record: {}",
                        orca_shared::exit::one_line(&format!("{e:#}"))
                    ),
                    scheduler: default_scheduler(),
                    command: Vec::new(),
                    environment: Vec::new(),
                    files: Vec::new(),
                    installed_at: String::new(),
                }),
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// An entry for `name` whose record is damaged: what this platform's
/// scheduler would hold for it.
fn guess_entry(name: &str) -> anyhow::Result<Entry> {
    let scheduler = if cfg!(windows) {
        Scheduler::Schtasks
    } else if cfg!(target_os = "macos") {
        Scheduler::Launchd
    } else if current_crontab()
        .unwrap_or_default()
        .contains(&format!("# orca-schedule:{name} "))
    {
        Scheduler::Cron
    } else {
        Scheduler::Systemd
    };
    let files = match scheduler {
        Scheduler::Systemd => {
            let d = systemd_dir()?;
            vec![
                d.join(format!("orca-backup-{name}.service"))
                    .display()
                    .to_string(),
                d.join(format!("orca-backup-{name}.timer"))
                    .display()
                    .to_string(),
            ]
        }
        Scheduler::Launchd => vec![launchd_plist(name)?.display().to_string()],
        Scheduler::Schtasks => vec![
            schedules_dir()?
                .join(format!("{name}.xml"))
                .display()
                .to_string(),
        ],
        Scheduler::Cron => Vec::new(),
    };
    Ok(Entry {
        name: name.to_string(),
        when: String::new(),
        scheduler,
        command: Vec::new(),
        environment: Vec::new(),
        files,
        installed_at: String::new(),
    })
}

/// The last result of schedule `name`, when it ran.
pub fn last_run(name: &str) -> Option<LastRun> {
    let p = schedules_dir().ok()?.join(format!("{name}.last.json"));
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Every schedule's name, when it runs, and its last result (for orca-list).
pub fn summaries() -> Vec<serde_json::Value> {
    entries()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "when": e.when,
                "scheduler": e.scheduler,
                "last_run": last_run(&e.name),
            })
        })
        .collect()
}

/// When `entry` runs next, as its scheduler counts.
fn next_run(
    entry_scheduler: Scheduler,
    when: &When,
    now: DateTime<Local>,
    last: Option<DateTime<Local>>,
    installed: Option<DateTime<Local>>,
) -> Option<DateTime<Local>> {
    match (entry_scheduler, when) {
        // cron runs `*/N` on the clock's grid.
        (Scheduler::Cron, When::Every(_)) => when.next_on_grid(now),
        // A task repeats from its start, a minute after install.
        (Scheduler::Schtasks, When::Every(_)) => {
            let start = installed? + chrono::Duration::minutes(1);
            if start > now {
                Some(start)
            } else {
                when.next_after(now, Some(start))
            }
        }
        _ => when.next_after(now, last.or(installed)),
    }
}

/// The absolute path of orca-backup beside this binary.
fn orca_backup_path() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this program's path")?;
    let dir = me.parent().context("this program has no directory")?;
    let exe = dir.join(format!("orca-backup{}", std::env::consts::EXE_SUFFIX));
    if !exe.exists() {
        fail!(
            Usage,
            "orca-backup is not beside orca-schedule ({}): install the tools together (cargo build --release puts them in target/release)",
            exe.display()
        );
    }
    Ok(std::path::absolute(&exe).unwrap_or(exe))
}

fn execute(plan: &Plan, scheduler: Scheduler) -> anyhow::Result<()> {
    for (path, text) in &plan.write {
        write_file(path, text, scheduler == Scheduler::Schtasks)?;
    }
    for (argv, input) in &plan.run {
        let optional = argv.get(1).is_some_and(|a| a == "bootout");
        match run_cmd(argv, input.as_deref()) {
            Ok(_) => {}
            Err(_) if optional => {}
            Err(e) => return Err(e),
        }
    }
    for path in &plan.delete {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {path}")),
        }
    }
    Ok(())
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "write": plan.write.iter().map(|(p, t)| serde_json::json!({"path": p, "contents": t})).collect::<Vec<_>>(),
        "delete": plan.delete,
        "run": plan.run.iter().map(|(a, i)| serde_json::json!({"argv": a, "stdin": i})).collect::<Vec<_>>(),
    })
}

/// Run the action.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let Some(action) = cli.action else {
        fail!(
            Usage,
            "say what to do: install, list, run or remove (orca-schedule --help)"
        );
    };
    match action {
        Action::Install {
            name,
            daily,
            weekly,
            every,
            scheduler,
            dry_run,
            backup_args,
        } => {
            check_name(&name)?;
            refuse_secrets(&backup_args)?;
            let when = match (daily, weekly, every) {
                (Some(t), None, None) => When::Daily(when::parse_time(&t).map_err(usage)?),
                (None, Some(w), None) => When::Weekly(
                    when::parse_day(&w[0]).map_err(usage)?,
                    when::parse_time(&w[1]).map_err(usage)?,
                ),
                (None, None, Some(d)) => When::Every(when::parse_every(&d).map_err(usage)?),
                _ => fail!(
                    Usage,
                    "say when: --daily HH:MM, --weekly DAY HH:MM or --every DURATION"
                ),
            };
            let scheduler = scheduler.unwrap_or_else(default_scheduler);
            let backup_args = checked_backup_args(&backup_args)?;
            let exe = orca_backup_path()?;
            let mut command = vec![paths::utf8(&exe)?.to_string()];
            if let Some(cfg) = &ctx.loaded.path {
                let abs = std::path::absolute(cfg).unwrap_or_else(|_| cfg.clone());
                command.push("--config".into());
                command.push(paths::utf8(&abs)?.to_string());
            }
            command.push("--schedule".into());
            command.push(name.clone());
            command.extend(backup_args.iter().cloned());
            let mut environment: Vec<String> = CARRIED
                .iter()
                .filter_map(|k| {
                    std::env::var(k)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .map(|v| format!("{k}={v}"))
                })
                .collect();
            if let Some(h) = environment.iter().find(|e| e.starts_with("DOCKER_HOST=")) {
                let host = &h["DOCKER_HOST=".len()..];
                if orca_shared::redact::userinfo(host).is_some() {
                    fail!(
                        Usage,
                        "DOCKER_HOST carries a user and password, which a schedule would have to store: use a Docker context instead (nothing was installed)"
                    );
                }
            }
            if scheduler == Scheduler::Schtasks && !environment.is_empty() {
                // A task's action has no environment of its own.
                let names: Vec<&str> = environment
                    .iter()
                    .map(|e| e.split('=').next().unwrap_or_default())
                    .collect();
                ctx.warn(format!(
                    "{} cannot go into a Task Scheduler task: the scheduled run uses your user's environment; set them there (setx NAME VALUE) if the run needs them",
                    names.join(", ")
                ));
                environment.clear();
            }
            let dir = schedules_dir()?;
            let log = dir.join(format!("{name}.log"));
            let mut entry = Entry {
                name: name.clone(),
                when: when.describe(),
                scheduler,
                command,
                environment,
                files: Vec::new(),
                installed_at: Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            };
            let plan = install_plan(&entry, &when, &log)?;
            entry.files = plan.write.iter().map(|(p, _)| p.clone()).collect();
            let rec = &mut ctx.record;
            rec.set("name", &name);
            rec.set("when", entry.when.clone());
            rec.set("scheduler", scheduler.as_str());
            rec.set("command", &entry.command);
            rec.set("environment", &entry.environment);
            rec.set(
                "next_run",
                next_run(scheduler, &when, Local::now(), None, Some(Local::now()))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
            );
            rec.set("dry_run", dry_run);
            rec.set("plan", plan_json(&plan));
            if dry_run {
                for (p, t) in &plan.write {
                    eprintln!("would write {p}:\n{t}");
                }
                for (a, _) in &plan.run {
                    eprintln!("would run: {}", a.join(" "));
                }
                return Ok(());
            }
            paths::ensure_private_dir(&dir)?;
            // The same name under another scheduler: removed first, so one
            // name is one schedule.
            if let Ok(old) = read_entry(&name)
                && old.scheduler != scheduler
            {
                execute(&remove_plan(&old)?, old.scheduler)?;
            }
            // Recorded before it is registered, so a failed install can be
            // undone (here, or by remove).
            fsutil::write_atomic(&entry_path(&name)?, &serde_json::to_vec_pretty(&entry)?)?;
            if let Err(e) = execute(&plan, scheduler) {
                if let Ok(undo) = remove_plan(&entry) {
                    let _ = execute(&undo, scheduler);
                }
                let _ = std::fs::remove_file(entry_path(&name)?);
                return Err(e.context(format!(
                    "installing schedule '{name}' failed; what it wrote was removed"
                )));
            }
            ctx.note(format!(
                "installed schedule '{name}' ({}) with {}",
                entry.when,
                scheduler.as_str()
            ));
            Ok(())
        }
        Action::Remove { name, dry_run } => {
            check_name(&name)?;
            let entry = match read_entry(&name) {
                Ok(e) => e,
                // Its record is damaged: undo whatever this name may have
                // registered, with the schedulers this platform has.
                Err(e) if entry_path(&name).is_ok_and(|p| p.exists()) => {
                    ctx.warn(format!("{e:#}"));
                    guess_entry(&name)?
                }
                Err(e) => return Err(e),
            };
            let plan = remove_plan(&entry)?;
            ctx.record.set("name", &name);
            ctx.record.set("scheduler", entry.scheduler.as_str());
            ctx.record.set("dry_run", dry_run);
            ctx.record.set("plan", plan_json(&plan));
            if dry_run {
                for p in &plan.delete {
                    eprintln!("would remove {p}");
                }
                for (a, _) in &plan.run {
                    eprintln!("would run: {}", a.join(" "));
                }
                return Ok(());
            }
            execute(&plan, entry.scheduler)?;
            let dir = schedules_dir()?;
            for f in [
                format!("{name}.json"),
                format!("{name}.last.json"),
                format!("{name}.lock"),
                format!("{name}.log"),
                format!("{name}.xml"),
            ] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            ctx.note(format!("removed schedule '{name}'"));
            Ok(())
        }
        Action::List { format } => {
            let now = Local::now();
            let mut rows = Vec::new();
            for e in entries()? {
                let last = last_run(&e.name);
                let when = When::parse(&e.when).ok();
                let last_at = last
                    .as_ref()
                    .and_then(|l| DateTime::parse_from_rfc3339(&l.at).ok())
                    .map(|t| t.with_timezone(&Local));
                let installed = DateTime::parse_from_rfc3339(&e.installed_at)
                    .ok()
                    .map(|t| t.with_timezone(&Local));
                let next = when
                    .and_then(|w| next_run(e.scheduler, &w, now, last_at, installed))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
                rows.push(serde_json::json!({
                    "name": e.name,
                    "when": e.when,
                    "scheduler": e.scheduler,
                    "next_run": next,
                    "last_run": last,
                    "command": e.command,
                }));
            }
            if format == Format::Table {
                let mut t = String::from("NAME  WHEN  SCHEDULER  NEXT RUN  LAST RESULT\n");
                for r in &rows {
                    let last = match r["last_run"].as_object() {
                        None => "never ran".to_string(),
                        Some(l) if l["skipped"] == true => {
                            format!("skipped, {}", l["at"].as_str().unwrap_or(""))
                        }
                        Some(l) if l["success"] == true => {
                            format!("ok, {}", l["at"].as_str().unwrap_or(""))
                        }
                        Some(l) => format!(
                            "FAILED (exit {}), {}: {}",
                            l["exit_code"],
                            l["at"].as_str().unwrap_or(""),
                            l["error"].as_str().unwrap_or("")
                        ),
                    };
                    t.push_str(&format!(
                        "{}  {}  {}  {}  {}\n",
                        r["name"].as_str().unwrap_or(""),
                        r["when"].as_str().unwrap_or(""),
                        r["scheduler"].as_str().unwrap_or(""),
                        r["next_run"].as_str().unwrap_or("-"),
                        last
                    ));
                }
                ctx.stdout_text = Some(t);
            }
            ctx.record.set("schedules", rows);
            Ok(())
        }
        Action::Run { name } => {
            check_name(&name)?;
            let entry = read_entry(&name)?;
            let mut c = Command::new(&entry.command[0]);
            c.args(&entry.command[1..]);
            for e in &entry.environment {
                if let Some((k, v)) = e.split_once('=') {
                    c.env(k, v);
                }
            }
            c.stdin(Stdio::null()).stdout(Stdio::piped());
            ctx.note(format!(
                "running schedule '{name}' now: {}",
                entry.command.join(" ")
            ));
            let out = c
                .output()
                .with_context(|| format!("cannot run {}", entry.command[0]))?;
            let result: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            ctx.record.set("name", &name);
            ctx.record.set("result", &result);
            let code = out.status.code().unwrap_or(1);
            if code != 0 {
                let kind = orca_shared::exit::ErrorKind::from_exit_code(code as u8)
                    .unwrap_or(orca_shared::exit::ErrorKind::Failure);
                return Err(anyhow::Error::from(orca_shared::exit::OrcaError::new(
                    kind,
                    format!(
                        "schedule '{name}' failed: {}",
                        result["error"]["message"].as_str().unwrap_or("see above")
                    ),
                )));
            }
            Ok(())
        }
    }
}

fn usage(why: String) -> anyhow::Error {
    orca_shared::err!(Usage, "{why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_arguments_quote_as_windows_parses_them() {
        assert_eq!(win_quote("plain"), "plain");
        assert_eq!(win_quote("with space"), "\"with space\"");
        assert_eq!(win_quote(""), "\"\"");
        assert_eq!(win_quote("C:\\a b\\"), "\"C:\\a b\\\\\"");
        assert_eq!(win_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
    }

    #[test]
    fn crontab_lines_of_a_schedule_are_replaced_only() {
        let tab = "MAILTO=me\n# orca-schedule:a daily 02:00 (managed)\n0 2 * * * 'x'\n5 * * * * other\n# orca-schedule:ab daily 03:00 (managed)\n0 3 * * * 'y'\n";
        let out = crontab_without(tab, "a");
        assert_eq!(
            out,
            "MAILTO=me\n5 * * * * other\n# orca-schedule:ab daily 03:00 (managed)\n0 3 * * * 'y'\n"
        );
    }

    #[test]
    fn quoting_for_systemd_and_sh() {
        assert_eq!(systemd_quote("a b%$\"\\"), "\"a b%%$$\\\"\\\\\"");
        assert_eq!(sh_quote("it's 50%"), "'it'\\''s 50\\%'");
    }

    #[test]
    fn passphrases_are_refused() {
        assert!(refuse_secrets(&["--passphrase".into()]).is_err());
        assert!(refuse_secrets(&["--config=x".into()]).is_err());
        assert!(refuse_secrets(&["--name".into(), "nightly".into()]).is_ok());
    }
}
