//! orca-guard against a real PostgreSQL (Debian's PostgreSQL 15 in the
//! drill tests' image) running on its volume: a migration (psql statements
//! run in the container, each committed on its own) that fails half-way is
//! put back exactly; one that passes stays and gets a milestone; a failing
//! check, a timeout and Ctrl-C restore too; a backup that cannot be made
//! runs nothing; --keep-on-failure only reports.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orca_test_support::databases;
use serde_json::Value;

use crate::common::*;
use crate::drill::Pg;
use crate::need_docker;

macro_rules! need_postgres {
    () => {
        need_docker!();
        if databases::postgres_image(module_path!()).is_none() {
            return;
        }
    };
}

/// What a restore must bring back exactly: tables, columns, rows, content.
fn state(pg: &Pg) -> String {
    pg.psql(
        "app",
        "SELECT (SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public') \
         || ' | ' || (SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, column_name) FROM information_schema.columns WHERE table_schema = 'public') \
         || ' | ' || (SELECT count(*) FROM t) || ' | ' || (SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t) \
         || ' | ' || (SELECT count(*) FROM small)",
    )
    .trim()
    .to_string()
}

/// psql in the database container, each statement committed on its own,
/// stopping at the first error (exit 1).
fn migration(pg: &Pg, statements: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "docker",
        "exec",
        "-u",
        "postgres",
        &pg.name,
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in statements {
        v.push("-c".into());
        v.push(s.to_string());
    }
    v
}

const CHANGES: &[&str] = &[
    "CREATE TABLE added (x int)",
    "ALTER TABLE t ADD COLUMN extra int DEFAULT 7",
    "DELETE FROM small WHERE x = 1",
];

fn guard(env: &Env, pg: &Pg, opts: &[&str], command: &[String]) -> Command {
    let mut args: Vec<&str> = vec!["--volume", &pg.vol.name];
    args.extend_from_slice(opts);
    args.push("--");
    args.extend(command.iter().map(String::as_str));
    env.cmd("orca-guard", &args)
}

fn run(c: Command) -> Run {
    let mut c = c;
    Run::from_output(c.output().unwrap())
}

fn env() -> Env {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 20}"#);
    env
}

/// The restored database, with PostgreSQL answering again.
fn assert_restored(pg: &Pg, before: &str, rec: &Value) {
    pg.wait_ready();
    assert_eq!(state(pg), before, "the database is not as it was before");
    let g = &rec["guard"];
    assert_eq!(g["restored"], true, "{rec}");
    let kept = g["failed_state"].as_str().unwrap();
    assert!(
        Path::new(kept).exists(),
        "the failed state was not kept: {kept}"
    );
    let name = Path::new(kept).file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("orca-db-pre-restore-"), "{name}");
}

#[test]
fn a_failing_migration_is_put_back_and_its_state_kept() {
    need_postgres!();
    let pg = Pg::start(200);
    let env = env();
    let before = state(&pg);
    let mut statements = CHANGES.to_vec();
    statements.push("SELECT 1 / 0");
    let c = guard(
        &env,
        &pg,
        &["--name", "before-m1"],
        &migration(&pg, &statements),
    );
    let r = run(c);
    let msg = r.message();
    let rec = r.fails_saying(21, "the command failed with exit code 1");
    assert!(msg.contains("restored to"), "{msg}");
    assert_eq!(
        rec["consistency"], "hot",
        "the backup before was not a hot copy: {rec}"
    );
    assert_eq!(rec["backup_name"], "orca-db-before-m1.tar.gz");
    let g = &rec["guard"];
    assert_eq!(g["ran"], true);
    assert_eq!(g["failed_step"], "command");
    assert_eq!(g["command_result"]["outcome"], "failed");
    assert_eq!(g["command_result"]["exit_code"], 1);
    assert_restored(&pg, &before, &rec);
    // The failed state, kept, is a named backup orca-list shows.
    let list = env.run("orca-list", &[]).ok();
    let kept = Path::new(g["failed_state"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == kept.as_str() && b["kind"] == "named"),
        "{list}"
    );
}

#[test]
fn a_passing_migration_stays_and_gets_a_milestone() {
    need_postgres!();
    let pg = Pg::start(50);
    let env = env();
    let before = state(&pg);
    let c = guard(
        &env,
        &pg,
        &["--after", "after-m2", "--tag", "plat-1"],
        &migration(&pg, CHANGES),
    );
    let rec = run(c).ok();
    let after = state(&pg);
    assert_ne!(after, before);
    assert!(after.starts_with("added,small,t"), "{after}");
    let name = rec["backup_name"].as_str().unwrap();
    assert!(name.starts_with("orca-db-before-docker-20"), "{name}");
    let g = &rec["guard"];
    assert_eq!(g["command_result"]["outcome"], "passed");
    assert_eq!(g["failed_step"], Value::Null);
    let milestone = g["after"]["backup_path"].as_str().unwrap();
    assert!(
        milestone.ends_with("orca-db-after-m2.tar.gz"),
        "{milestone}"
    );
    assert_eq!(g["after"]["verified"], true);
    let m: Value =
        serde_json::from_slice(&std::fs::read(format!("{milestone}.json")).unwrap()).unwrap();
    assert!(
        m["description"].as_str().unwrap().contains("docker exec"),
        "{m}"
    );
    let tags = m["tags"].as_array().unwrap();
    assert!(tags.contains(&"milestone".into()) && tags.contains(&"plat-1".into()));
}

#[test]
fn a_failing_check_puts_the_database_back() {
    need_postgres!();
    let pg = Pg::start(50);
    let env = env();
    let before = state(&pg);
    let c = guard(
        &env,
        &pg,
        &["--check", "true", "--check", "exit 3"],
        &migration(&pg, CHANGES),
    );
    let rec = run(c).fails_saying(21, "check 2 (");
    assert_eq!(rec["guard"]["failed_step"], "check 2");
    assert_eq!(rec["guard"]["check_results"][1]["exit_code"], 3);
    assert_restored(&pg, &before, &rec);
}

#[test]
fn a_command_that_hangs_is_ended_at_its_timeout_and_put_back() {
    need_postgres!();
    let pg = Pg::start(50);
    let env = env();
    let before = state(&pg);
    let mut inner = migration(&pg, CHANGES);
    inner
        .iter_mut()
        .for_each(|a| *a = format!("'{}'", a.replace('\'', "'\\''")));
    let script = format!("{} && sleep 600", inner.join(" "));
    let c = guard(
        &env,
        &pg,
        &["--timeout", "4s"],
        &["sh".into(), "-c".into(), script],
    );
    let t = Instant::now();
    let rec = run(c).fails_saying(21, "ran out of time");
    assert!(t.elapsed() < Duration::from_secs(120));
    assert_eq!(rec["guard"]["command_result"]["outcome"], "timed_out");
    assert_restored(&pg, &before, &rec);
}

#[test]
fn ctrl_c_reaches_the_command_first_then_the_database_is_put_back() {
    need_postgres!();
    let pg = Pg::start(50);
    let env = env();
    let before = state(&pg);
    let mark = env.base().join("command-got-sigint");
    let mut inner = migration(&pg, CHANGES);
    inner
        .iter_mut()
        .for_each(|a| *a = format!("'{}'", a.replace('\'', "'\\''")));
    let script = format!(
        "trap 'echo got > {}; exit 130' INT; {} && echo migrated; while :; do sleep 0.1; done",
        mark.display(),
        inner.join(" ")
    );
    let mut c = guard(&env, &pg, &[], &["sh".into(), "-c".into(), script]);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while !state(&pg).starts_with("added,") {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the migration never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&child, "-INT");
    let out = {
        let _ = child.stdin.take();
        child.wait_with_output().unwrap()
    };
    let r = Run::from_output(out);
    let rec = r.fails_saying(21, "was interrupted");
    assert!(mark.exists(), "the command never got the interrupt");
    assert_eq!(rec["guard"]["command_result"]["outcome"], "interrupted");
    assert_restored(&pg, &before, &rec);
}

#[test]
fn when_the_backup_cannot_be_made_nothing_runs() {
    need_docker!();
    let env = env();
    let mark = env.base().join("ran");
    let touch = ["touch".to_string(), mark.display().to_string()];
    let mut args = vec!["--volume", "orca-test-no-such-volume"];
    args.push("--");
    args.extend(touch.iter().map(String::as_str));
    let rec = env.run("orca-guard", &args).fails_with(4);
    assert_eq!(rec["guard"]["ran"], false);
    assert!(!mark.exists(), "the command ran without a backup");

    if !is_root() {
        eprintln!("skipping the full-disk half: needs root for a tmpfs");
        return;
    }
    // A backups directory on a full disk: the export fails, nothing runs.
    let vol = TestVolume::named(&unique("orca-test-guard-full"));
    vol.fill_sql_like(4 << 20, 5);
    let full = Tmpfs::new("1m");
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "backups_dir": "{}"}}"#,
        full.path().display()
    ));
    let mut args = vec!["--volume", vol.name.as_str(), "--"];
    args.extend(touch.iter().map(String::as_str));
    let rec = env.run("orca-guard", &args).fails_with(7);
    assert_eq!(rec["guard"]["ran"], false);
    assert!(!mark.exists(), "the command ran without a backup");
}

#[test]
fn keep_on_failure_leaves_the_database_as_the_command_left_it() {
    need_postgres!();
    let pg = Pg::start(50);
    let env = env();
    let before = state(&pg);
    let mut statements = CHANGES.to_vec();
    statements.push("SELECT 1 / 0");
    let c = guard(
        &env,
        &pg,
        &["--keep-on-failure"],
        &migration(&pg, &statements),
    );
    let rec = run(c).fails_saying(22, "left as it was");
    assert_eq!(rec["guard"]["restored"], false);
    let now = state(&pg);
    assert_ne!(now, before);
    assert!(now.starts_with("added,"), "{now}");
}

#[test]
fn what_would_fail_half_way_is_refused_before_anything_runs() {
    need_docker!();
    let env = env();
    let vol = TestVolume::named(&unique("orca-test-guard-early"));
    vol.sh("echo x > /v/f");
    let mark = env.base().join("ran");
    let touch = format!("touch {}", mark.display());
    // A command that does not exist: found out before the backup.
    let run = env.run(
        "orca-guard",
        &["--volume", &vol.name, "--", "orca-test-no-such-command"],
    );
    run.fails_saying(2, "not found on PATH");
    assert!(
        files_in(&env.backups())
            .iter()
            .all(|f| !f.starts_with("orca-db-"))
    );
    // A milestone name already taken.
    env.run(
        "orca-export",
        &[
            "--volume",
            &vol.name,
            "--output",
            env.backups().join("orca-db-taken.tar.gz").to_str().unwrap(),
        ],
    )
    .ok();
    env.run(
        "orca-guard",
        &[
            "--volume", &vol.name, "--after", "taken", "--", "sh", "-c", &touch,
        ],
    )
    .fails_saying(5, "--after taken");
    assert!(!mark.exists());
    // An encrypted backup nothing given opens: it could not be put back.
    let key = env.base().join("key.txt");
    let made = env
        .run("orca-keygen", &["--output", key.to_str().unwrap()])
        .ok();
    let recipient = made["recipient"].as_str().unwrap().to_string();
    env.run(
        "orca-guard",
        &[
            "--volume",
            &vol.name,
            "--recipient",
            &recipient,
            "--",
            "sh",
            "-c",
            &touch,
        ],
    )
    .fails_saying(14, "pass --identity");
    assert!(
        !mark.exists(),
        "the command ran with a backup that could not be put back"
    );
    // With the identity it runs (and is put back when it fails).
    env.run(
        "orca-guard",
        &[
            "--volume",
            &vol.name,
            "--recipient",
            &recipient,
            "--identity",
            key.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!("{touch}; exit 1"),
        ],
    )
    .fails_with(21);
    assert!(mark.exists());
}

#[test]
fn what_the_command_started_is_ended_before_the_restore() {
    need_docker!();
    let env = env();
    let vol = TestVolume::named(&unique("orca-test-guard-bg"));
    vol.sh("echo x > /v/f");
    let pattern = "sleep 313131";
    let run = env.run(
        "orca-guard",
        &[
            "--volume",
            &vol.name,
            "--",
            "sh",
            "-c",
            &format!("({pattern}) & exit 3"),
        ],
    );
    run.fails_with(21);
    let left = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "a process the command started outlived it: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn on_a_terminal_the_command_can_prompt() {
    need_docker!();
    let env = env();
    let vol = TestVolume::named(&unique("orca-test-guard-tty"));
    vol.sh("echo x > /v/f");
    let guard = bin("orca-guard");
    let line = format!(
        "{} --volume {} -- sh -c 'printf \"migrate? \"; read answer; echo got-$answer; exit 4'",
        guard.display(),
        vol.name
    );
    // `script` gives the run a terminal; the answer comes typed on it.
    let mut c = Command::new("timeout");
    c.args(["90", "script", "-qec", &line, "/dev/null"])
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The terminal stays open until the run ends (script ends its session
    // when its input does).
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        std::thread::sleep(Duration::from_secs(3));
        let _ = stdin.write_all(b"yes\n");
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(124),
        "the command hung at its prompt: {text}"
    );
    assert!(text.contains("got-yes"), "{text}");
    // On a terminal the record is printed indented.
    assert!(
        text.contains("\"exit_code\": 21") || text.contains("\"exit_code\":21"),
        "{text}"
    );
}
