//! orca-schedule: scheduled backups in the platform's own scheduler.
//!
//! - cron for real: Debian's `cron` daemon runs an `--every 1m` schedule and
//!   a backup appears, with the schedule's last result.
//! - systemd: the units orca writes pass `systemd-analyze verify`, and their
//!   `OnCalendar` gives the next times orca says (`systemd-analyze
//!   calendar`); `systemctl --user` is a stand-in that records its calls,
//!   since no user manager runs here.
//! - launchd (no macOS here): the plist parses as a plist (Python's
//!   plistlib) with the right keys; `launchctl` is a stand-in.
//! - Task Scheduler: the task XML (UTF-16) parses with the fields it uses and
//!   its command line splits back as Windows splits it; `schtasks` is a
//!   stand-in here, and Wine's real `schtasks` in tests/windows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::need_docker;

/// A scheduler command that records its arguments (one call per line).
fn stand_in(dir: &Path, name: &str) -> PathBuf {
    let log = dir.join(format!("{name}.calls"));
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncat >/dev/null 2>&1 || true\nexit 0\n",
        log.display()
    );
    let p = dir.join(name);
    std::fs::write(&p, script).unwrap();
    Command::new("chmod")
        .args(["755", p.to_str().unwrap()])
        .status()
        .unwrap();
    log
}

struct Sched {
    env: Env,
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
}

impl Sched {
    fn new() -> Sched {
        let env = Env::new();
        env.config(r#"{"min_size_warning_mb": 0}"#);
        Sched {
            env,
            home: tempfile::tempdir().unwrap(),
            bin: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd("orca-schedule", args);
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"));
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.cmd(args);
        Run::from_output(c.output().unwrap())
    }
}

#[test]
fn systemd_units_verify_and_round_trip() {
    let s = Sched::new();
    let calls = stand_in(s.bin.path(), "systemctl");
    // Dry run: says what it would write, writes nothing.
    let dry = s
        .run(&[
            "install",
            "--name",
            "nightly",
            "--daily",
            "02:30",
            "--scheduler",
            "systemd",
            "--dry-run",
            "--",
            "--compression",
            "zstd",
        ])
        .ok();
    let units = s.home.path().join(".config/systemd/user");
    assert!(!units.exists(), "a dry run wrote files");
    assert_eq!(dry["plan"]["write"].as_array().unwrap().len(), 2);

    let rec = s
        .run(&[
            "install",
            "--name",
            "nightly",
            "--daily",
            "02:30",
            "--scheduler",
            "systemd",
            "--",
            "--compression",
            "zstd",
        ])
        .ok();
    let service = units.join("orca-backup-nightly.service");
    let timer = units.join("orca-backup-nightly.timer");
    let text = std::fs::read_to_string(&service).unwrap();
    let exe = bin("orca-backup");
    assert!(
        text.contains(&format!("ExecStart=\"{}\"", exe.display())),
        "{text}"
    );
    assert!(
        text.contains("\"--schedule\" \"nightly\" \"--compression\" \"zstd\""),
        "{text}"
    );
    assert!(
        text.contains("\"--config\""),
        "the config file in effect is not named: {text}"
    );
    let ttext = std::fs::read_to_string(&timer).unwrap();
    assert!(ttext.contains("OnCalendar=*-*-* 02:30:00") && ttext.contains("Persistent=true"));
    // systemd's own checks of what orca wrote.
    let verify = Command::new("systemd-analyze")
        .args(["verify", service.to_str().unwrap(), timer.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let cal = Command::new("systemd-analyze")
        .args(["calendar", "*-*-* 02:30:00"])
        .output()
        .unwrap();
    let cal = String::from_utf8_lossy(&cal.stdout);
    let next = rec["next_run"].as_str().unwrap();
    let day_time = &next[..16].replace('T', " ");
    assert!(
        cal.contains(day_time),
        "systemd says {cal}, orca says {next}"
    );
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .contains("--user enable --now orca-backup-nightly.timer")
    );

    // A second install of the name replaces the first.
    s.run(&[
        "install",
        "--name",
        "nightly",
        "--weekly",
        "sun",
        "04:00",
        "--scheduler",
        "systemd",
    ])
    .ok();
    let ttext = std::fs::read_to_string(&timer).unwrap();
    assert!(ttext.contains("OnCalendar=Sun *-*-* 04:00:00"), "{ttext}");
    let list = s.run(&["list"]).ok();
    let entries = list["schedules"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["when"], "weekly sun 04:00");
    assert_eq!(entries[0]["last_run"], Value::Null);
    let table = s.run(&["list", "--format", "table"]);
    assert!(table.stdout.contains("nightly") && table.stdout.contains("never ran"));

    s.run(&["remove", "nightly"]).ok();
    assert!(!service.exists() && !timer.exists());
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .contains("--user disable --now orca-backup-nightly.timer")
    );
    s.run(&["remove", "nightly"]).fails_with(19);
}

#[test]
fn a_passphrase_in_a_schedule_is_refused() {
    let s = Sched::new();
    stand_in(s.bin.path(), "systemctl");
    s.run(&[
        "install",
        "--daily",
        "01:00",
        "--scheduler",
        "systemd",
        "--",
        "--passphrase",
    ])
    .fails_saying(2, "encrypt to recipients instead");
    s.run(&["install", "--every", "7m", "--scheduler", "cron"])
        .fails_saying(2, "cron cannot run something every 7m");
    s.run(&["install", "--name", "bad name", "--daily", "01:00"])
        .fails_with(2);
}

#[test]
fn launchd_plists_parse_with_the_right_keys() {
    let s = Sched::new();
    let calls = stand_in(s.bin.path(), "launchctl");
    s.run(&[
        "install",
        "--name",
        "mac",
        "--weekly",
        "mon",
        "03:15",
        "--scheduler",
        "launchd",
        "--",
        "--tag",
        "scheduled",
    ])
    .ok();
    let plist = s
        .home
        .path()
        .join("Library/LaunchAgents/org.orca-backup.mac.plist");
    let check = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys,json; d=plistlib.load(open(sys.argv[1],'rb')); print(json.dumps(d))",
            plist.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let d: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(d["Label"], "org.orca-backup.mac");
    let args = d["ProgramArguments"].as_array().unwrap();
    assert_eq!(args[0], bin("orca-backup").display().to_string());
    assert!(args.contains(&"--schedule".into()) && args.contains(&"scheduled".into()));
    assert_eq!(d["StartCalendarInterval"]["Weekday"], 1);
    assert_eq!(d["StartCalendarInterval"]["Hour"], 3);
    assert_eq!(d["StartCalendarInterval"]["Minute"], 15);
    assert_eq!(d["RunAtLoad"], false);
    let calls_text = std::fs::read_to_string(&calls).unwrap();
    assert!(calls_text.contains("bootstrap gui/"), "{calls_text}");
    s.run(&["remove", "mac"]).ok();
    assert!(!plist.exists());
}

/// How Windows (CommandLineToArgvW) splits a command line.
fn windows_split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut any = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let mut n = 0;
            while i < chars.len() && chars[i] == '\\' {
                n += 1;
                i += 1;
            }
            if i < chars.len() && chars[i] == '"' {
                cur.push_str(&"\\".repeat(n / 2));
                if n % 2 == 1 {
                    cur.push('"');
                    i += 1;
                }
            } else {
                cur.push_str(&"\\".repeat(n));
            }
            any = true;
            continue;
        }
        match c {
            '"' => {
                in_quotes = !in_quotes;
                any = true;
            }
            ' ' | '\t' if !in_quotes => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            _ => {
                cur.push(c);
                any = true;
            }
        }
        i += 1;
    }
    if any {
        out.push(cur);
    }
    out
}

#[test]
fn task_scheduler_xml_has_the_fields_it_needs() {
    let s = Sched::new();
    let calls = stand_in(s.bin.path(), "schtasks");
    s.run(&[
        "install",
        "--name",
        "win",
        "--daily",
        "02:00",
        "--scheduler",
        "schtasks",
        "--",
        "--description",
        "nightly \"db\" C:\\dir with space\\",
        "--tag",
        "x",
    ])
    .ok();
    let xml_path = s.env.base().join("schedules/win.xml");
    let raw = std::fs::read(&xml_path).unwrap();
    assert_eq!(
        &raw[..2],
        &[0xFF, 0xFE],
        "task XML must be UTF-16 with its BOM"
    );
    let check = Command::new("python3")
        .args([
            "-c",
            r#"
import sys, json, xml.etree.ElementTree as ET
ns = {'t': 'http://schemas.microsoft.com/windows/2004/02/mit/task'}
root = ET.fromstring(open(sys.argv[1], 'rb').read().decode('utf-16'))
g = lambda p: root.find(p, ns).text
print(json.dumps({
  'start_when_available': g('t:Settings/t:StartWhenAvailable'),
  'logon': g('t:Principals/t:Principal/t:LogonType'),
  'run_level': g('t:Principals/t:Principal/t:RunLevel'),
  'days_interval': g('t:Triggers/t:CalendarTrigger/t:ScheduleByDay/t:DaysInterval'),
  'start': g('t:Triggers/t:CalendarTrigger/t:StartBoundary'),
  'command': g('t:Actions/t:Exec/t:Command'),
  'arguments': g('t:Actions/t:Exec/t:Arguments'),
}))
"#,
            xml_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let t: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(t["start_when_available"], "true");
    assert_eq!(t["logon"], "InteractiveToken");
    assert_eq!(t["run_level"], "LeastPrivilege");
    assert_eq!(t["days_interval"], "1");
    assert!(t["start"].as_str().unwrap().ends_with("T02:00:00"), "{t}");
    assert!(t["command"].as_str().unwrap().ends_with("conhost.exe"));
    let argv = windows_split(t["arguments"].as_str().unwrap());
    assert_eq!(argv[0], "--headless");
    assert_eq!(argv[1], bin("orca-backup").display().to_string());
    assert!(
        argv.contains(&"nightly \"db\" C:\\dir with space\\".to_string()),
        "{argv:?}"
    );
    let calls_text = std::fs::read_to_string(&calls).unwrap();
    assert!(
        calls_text.contains("/Create /TN \\orca-backup\\win /XML"),
        "{calls_text}"
    );
    s.run(&["remove", "win"]).ok();
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .contains("/Delete /TN \\orca-backup\\win /F")
    );
}

#[test]
fn a_schedule_runs_now_and_keeps_its_result_and_never_overlaps() {
    need_docker!();
    let s = Sched::new();
    stand_in(s.bin.path(), "systemctl");
    let vol = TestVolume::named(&unique("orca-test-sched"));
    vol.sh("echo x > /v/f");
    s.run(&[
        "install",
        "--name",
        "hourly",
        "--every",
        "1h",
        "--scheduler",
        "systemd",
        "--",
        "--volume",
        &vol.name,
    ])
    .ok();
    let rec = s.run(&["run", "hourly"]).ok();
    assert_eq!(rec["result"]["success"], true, "{rec}");
    let list = s.run(&["list"]).ok();
    let last = &list["schedules"][0]["last_run"];
    assert_eq!(last["success"], true, "{list}");
    assert!(last["backup_path"].as_str().unwrap().contains("orca-db-"));
    assert!(list["schedules"][0]["next_run"].is_string());
    // orca-list shows it too.
    let catalog = s.env.run("orca-list", &[]).ok();
    assert_eq!(catalog["schedules"][0]["name"], "hourly", "{catalog}");
    assert_eq!(catalog["schedules"][0]["last_run"]["success"], true);

    // A run while the previous one still runs is skipped, and says so.
    let first = s.env.cmd(
        "orca-backup",
        &[
            "--schedule",
            "hourly",
            "--volume",
            &vol.name,
            "--name",
            "held",
        ],
    );
    let (child, rx) = spawn_paused(first, "export-streaming");
    let second = s.env.run(
        "orca-backup",
        &["--schedule", "hourly", "--volume", &vol.name],
    );
    let rec = second.ok();
    assert_eq!(rec["skipped"], true);
    signal(&child, "-INT");
    let _ = finish_paused(child, rx);

    // A failure is visible without system logs.
    let failing = s.env.run(
        "orca-backup",
        &[
            "--schedule",
            "hourly",
            "--volume",
            "orca-test-no-such-volume",
        ],
    );
    failing.fails_with(4);
    let table = s.run(&["list", "--format", "table"]);
    assert!(table.stdout.contains("FAILED (exit 4)"), "{}", table.stdout);
}

/// Debian's cron, for real: started here when it is not running (root only).
fn cron_running() -> bool {
    let running = || {
        Command::new("pgrep")
            .args(["-x", "cron"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if running() {
        return true;
    }
    if !is_root() || Command::new("cron").status().is_err() {
        return false;
    }
    running()
}

#[test]
fn cron_runs_an_every_minute_schedule_for_real() {
    need_docker!();
    if !cron_running() {
        if std::env::var("ORCA_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
            panic!("cron is needed (apt-get install cron) and must run as root");
        }
        eprintln!("\n*** SKIPPED cron test: no cron daemon ***\n");
        return;
    }
    let s = Sched::new();
    let vol = TestVolume::named(&unique("orca-test-cron"));
    vol.sh("echo x > /v/f");
    let name = format!("cron{}", &unique_hex10()[..6]);
    s.run(&[
        "install",
        "--name",
        &name,
        "--every",
        "1m",
        "--scheduler",
        "cron",
        "--",
        "--volume",
        &vol.name,
    ])
    .ok();
    let tab = String::from_utf8_lossy(&Command::new("crontab").arg("-l").output().unwrap().stdout)
        .into_owned();
    assert!(tab.contains(&format!("# orca-schedule:{name} ")), "{tab}");
    let backups = s.env.backups();
    let t = Instant::now();
    let found = loop {
        let made: Vec<String> = files_in(&backups)
            .into_iter()
            .filter(|f| f.starts_with("orca-db-") && f.ends_with(".tar.gz"))
            .collect();
        if !made.is_empty()
            && s.env
                .base()
                .join(format!("schedules/{name}.last.json"))
                .exists()
        {
            break true;
        }
        if t.elapsed() > Duration::from_secs(150) {
            break false;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let log = std::fs::read_to_string(s.env.base().join(format!("schedules/{name}.log")))
        .unwrap_or_default();
    let last: Value = serde_json::from_slice(
        &std::fs::read(s.env.base().join(format!("schedules/{name}.last.json")))
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    s.run(&["remove", &name]).ok();
    assert!(found, "cron made no backup within 150 s; its log: {log}");
    let tab = String::from_utf8_lossy(&Command::new("crontab").arg("-l").output().unwrap().stdout)
        .into_owned();
    assert!(!tab.contains(&format!("orca-schedule:{name} ")), "{tab}");
    assert_eq!(last["success"], true, "{last} {log}");
}

/// A `crontab` stand-in that keeps its table in a file, and can fail.
fn crontab_stand_in(dir: &Path, fail_list: bool) -> PathBuf {
    let tab = dir.join("crontab.txt");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = -l ]; then\n  {}\n  cat '{tab}' 2>/dev/null || {{ echo 'no crontab for me' >&2; exit 1; }}\nelse\n  cat > '{tab}'\nfi\n",
        if fail_list {
            "echo 'crontab: Permission denied' >&2; exit 1"
        } else {
            ":"
        },
        tab = tab.display()
    );
    let p = dir.join("crontab");
    std::fs::write(&p, script).unwrap();
    Command::new("chmod")
        .args(["755", p.to_str().unwrap()])
        .status()
        .unwrap();
    tab
}

#[test]
fn installs_are_checked_replaced_whole_and_undone_on_failure() {
    let s = Sched::new();
    let calls = stand_in(s.bin.path(), "systemctl");
    let tab = crontab_stand_in(s.bin.path(), false);
    std::fs::write(&tab, "MAILTO=me\n5 * * * * important-user-job\n").unwrap();
    // The backup's arguments go through orca-backup's parser; paths become absolute.
    s.run(&[
        "install",
        "--daily",
        "01:00",
        "--scheduler",
        "cron",
        "--",
        "--bogus",
    ])
    .fails_saying(2, "not orca-backup's");
    s.run(&[
        "install",
        "--daily",
        "01:00",
        "--scheduler",
        "cron",
        "--",
        "--description",
        "two\nlines",
    ])
    .fails_saying(2, "control character");
    let rec = s
        .run(&[
            "install",
            "--name",
            "n1",
            "--every",
            "15m",
            "--scheduler",
            "cron",
            "--",
            "--identity",
            "key.txt",
        ])
        .ok();
    let cmd: Vec<String> = rec["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let id = &cmd[cmd.iter().position(|a| a == "--identity").unwrap() + 1];
    assert!(Path::new(id).is_absolute(), "{cmd:?}");
    // cron runs */15 on the clock's grid.
    let next = rec["next_run"].as_str().unwrap();
    let minute: u32 = next[14..16].parse().unwrap();
    assert_eq!(minute % 15, 0, "{next}");
    let text = std::fs::read_to_string(&tab).unwrap();
    assert!(
        text.starts_with("MAILTO=me\n5 * * * * important-user-job\n"),
        "{text}"
    );
    // The same name under another scheduler replaces the cron entry.
    s.run(&[
        "install",
        "--name",
        "n1",
        "--daily",
        "02:00",
        "--scheduler",
        "systemd",
    ])
    .ok();
    let text = std::fs::read_to_string(&tab).unwrap();
    assert!(
        !text.contains("orca-schedule:n1"),
        "the cron entry was left behind: {text}"
    );
    assert!(text.contains("important-user-job"));
    s.run(&["remove", "n1"]).ok();
    assert!(
        !s.home
            .path()
            .join(".config/systemd/user/orca-backup-n1.timer")
            .exists()
    );

    // A scheduler that refuses: nothing is left half-installed.
    std::fs::write(
        s.bin.path().join("systemctl"),
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncase \"$*\" in *enable*) exit 1 ;; esac\nexit 0\n", calls.display()),
    )
    .unwrap();
    s.run(&[
        "install",
        "--name",
        "n2",
        "--daily",
        "02:00",
        "--scheduler",
        "systemd",
    ])
    .fails_with(1);
    assert!(
        !s.home
            .path()
            .join(".config/systemd/user/orca-backup-n2.service")
            .exists()
    );
    assert!(!s.env.base().join("schedules/n2.json").exists());

    // A crontab that cannot be read is never overwritten.
    let s2 = Sched::new();
    let tab2 = crontab_stand_in(s2.bin.path(), true);
    std::fs::write(&tab2, "5 * * * * important-user-job\n").unwrap();
    s2.run(&["install", "--daily", "01:00", "--scheduler", "cron"])
        .fails_saying(1, "left untouched");
    assert_eq!(
        std::fs::read_to_string(&tab2).unwrap(),
        "5 * * * * important-user-job\n"
    );

    // A DOCKER_HOST with a password is not written into an entry.
    let mut c = s.cmd(&[
        "install",
        "--daily",
        "01:00",
        "--scheduler",
        "cron",
        "--dry-run",
    ]);
    c.env("DOCKER_HOST", "tcp://admin:S3cretPw@10.0.0.5:2375");
    let r = Run::from_output(c.output().unwrap());
    assert!(!r.stdout.contains("S3cretPw") && !r.stderr.contains("S3cretPw"));
    r.fails_with(2);
}

#[test]
fn a_scheduled_run_that_cannot_start_is_recorded() {
    let s = Sched::new();
    std::fs::write(s.env.base().join("broken.json"), "{ not json").unwrap();
    let r = s.env.run(
        "orca-backup",
        &[
            "--schedule",
            "brk",
            "--config",
            s.env.base().join("broken.json").to_str().unwrap(),
        ],
    );
    r.fails_with(2);
    let last: Value = serde_json::from_slice(
        &std::fs::read(s.env.base().join("schedules/brk.last.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(last["success"], false);
    assert!(
        last["error"].as_str().unwrap().contains("broken.json"),
        "{last}"
    );
    s.env
        .run("orca-backup", &["--schedule", "../escape", "--volume", "x"])
        .fails_saying(2, "not usable");
    assert!(!s.env.base().join("escape.lock").exists());
}
