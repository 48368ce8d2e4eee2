//! Hot copies of a running database (orca-export `--consistency`).
//!
//! PostgreSQL for real (Debian's PostgreSQL 15 in a locally built image):
//! five hot copies in a row under a pgbench write load, each restored to a
//! new volume where PostgreSQL recovers, pg_amcheck is clean and pgbench's
//! invariant holds; the last one passes a restore drill.
//!
//! SQL Server cannot run here: its snapshot freeze is tested against the
//! stand-in image (`tests/support/src/databases.rs`), whose sqlcmd honours
//! the freeze and whose writer writes a counter to a log file and a data file
//! in turn and waits while frozen. The archive's two files agree with each
//! other and with the counter the freeze stopped at; a SIGKILL of
//! orca-export, Ctrl-C, a cut engine connection and `max_freeze_seconds`
//! each end the freeze within seconds; a SQL Server 2019 falls back (auto) or
//! is refused (hot); the password shows in no process's arguments and no
//! file orca writes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orca_test_support::databases;
use orca_test_support::engine_proxy::EngineProxy;
use serde_json::Value;

use crate::common::*;
use crate::drill::Pg;
use crate::need_docker;

const PASSWORD: &str = "Hot-Copy-Pw-5150!";

/// A volume laid out as SQL Server's, with the stand-in's writer and 48 MiB
/// of data to read, so the copy takes a while.
fn sql_volume() -> TestVolume {
    let vol = TestVolume::named(&unique("orca-test-hot"));
    vol.sh(
        "mkdir -p /v/data && echo master > /v/data/master.mdf && touch /v/standin-writer \
         && head -c 50331648 /dev/urandom > /v/data/pad.ndf",
    );
    vol
}

/// The stand-in SQL Server on `vol`, its writer running; removed on drop.
struct Standin(String);

impl Standin {
    fn start(vol: &TestVolume, env: &[&str]) -> Standin {
        let name = unique("orca-test-hotsql");
        let mount = format!("{}:/var/opt/mssql", vol.name);
        let label = format!("{TEST_LABEL}=true");
        let pw = format!("MSSQL_SA_PASSWORD={PASSWORD}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            "none",
            "-e",
            &pw,
            "-v",
            &mount,
        ];
        for e in env {
            args.push("-e");
            args.push(e);
        }
        args.push(databases::mssql_standin_image());
        docker_ok(&args);
        let s = Standin(name);
        assert!(
            wait_for(Duration::from_secs(30), || s.counter() > 0),
            "the stand-in's writer never wrote"
        );
        s
    }

    fn sh(&self, script: &str) -> String {
        docker_ok(&["exec", &self.0, "sh", "-c", script])
    }

    /// The writer's last counter.
    fn counter(&self) -> u64 {
        let out = docker(&["exec", &self.0, "cat", "/tmp/written"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn frozen(&self) -> bool {
        docker(&["exec", &self.0, "sh", "-c", "test -e /tmp/frozen"])
            .status
            .success()
    }

    /// `/tmp/freeze.log`: (freeze or thaw, counter at that moment).
    fn freeze_log(&self) -> Vec<(String, u64)> {
        self.sh("cat /tmp/freeze.log 2>/dev/null || true")
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].to_string(),
                    f.get(2).and_then(|n| n.parse().ok()).unwrap_or(0),
                )
            })
            .collect()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn env() -> Env {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    env
}

/// A file of a gzip archive, as text.
fn member(archive: &Path, path: &str) -> String {
    let out = Command::new("tar")
        .args(["-xzOf", archive.to_str().unwrap(), path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{path} is not in {}",
        archive.display()
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn export_cmd(env: &Env, vol: &str, out: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["--volume", vol, "--output", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.cmd("orca-export", &args)
}

#[test]
fn a_sql_server_freeze_gives_files_that_agree_and_shows_no_password() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    let env = env();
    let out = env.backups().join("orca-db-hot.tar.gz");
    let go_on = env.base().join("go-on");
    let mut c = export_cmd(&env, &vol.name, &out, &[]);
    c.env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(c, "hot-spooling");
    // Frozen while the stream is read; no process shows the password.
    assert!(db.frozen(), "not frozen while the volume is read");
    let top = docker_ok(&["top", &db.0, "-o", "pid,args"]);
    assert!(top.contains("orca-guard"), "no guard runs: {top}");
    assert!(
        !top.contains(PASSWORD),
        "the password is on a command line: {top}"
    );
    let host_ps = String::from_utf8(
        Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // The tests beside this one start their stand-ins with the docker CLI
    // and `-e MSSQL_SA_PASSWORD=...`; orca itself never runs the CLI here.
    let shown: Vec<&str> = host_ps
        .lines()
        .filter(|l| l.contains(PASSWORD) && !l.trim_start().starts_with("docker "))
        .collect();
    assert!(
        shown.is_empty(),
        "the password is on a host command line: {shown:?}"
    );
    std::fs::write(&go_on, "").unwrap();
    let run = finish_paused(child, rx);
    let printed = format!("{}{}", run.stdout, run.stderr);
    let rec = run.ok();
    assert_eq!(rec["consistency"], "hot", "{rec}");
    assert_eq!(rec["consistent"], true);
    let hot = &rec["hot"];
    assert_eq!(hot["engine"], "sqlserver");
    assert_eq!(hot["method"], "snapshot-freeze");
    assert_eq!(hot["databases"], serde_json::json!(["Orca"]));
    assert!(hot["frozen_ms"].as_u64().unwrap() > 0, "{hot}");
    assert_eq!(hot["max_freeze_seconds"], 60);
    assert!(!db.frozen(), "still frozen after the export");

    // The log and data files agree, at the counter where writes stopped:
    // the freeze began before the first byte was read and ended after the last.
    let ldf: u64 = member(&out, "./data/orca.ldf").parse().unwrap();
    let mdf: u64 = member(&out, "./data/orca.mdf").parse().unwrap();
    assert_eq!(ldf, mdf, "the archive's log and data files disagree");
    let log = db.freeze_log();
    assert_eq!(log.len(), 2, "one freeze and one thaw: {log:?}");
    assert_eq!(log[0], ("freeze".to_string(), ldf));
    assert_eq!(log[1], ("thaw".to_string(), ldf));
    assert!(
        wait_for(Duration::from_secs(10), || db.counter() > ldf),
        "writes did not resume after the thaw"
    );

    // The password went in sqlcmd's environment, never in its arguments,
    // and is in nothing orca printed or wrote beside the archive.
    let calls = db.sh("cat /tmp/sqlcmd.log");
    assert!(calls.contains(&format!("SQLCMDPASSWORD={PASSWORD}")));
    assert!(
        calls
            .lines()
            .filter(|l| l.starts_with("ARGS"))
            .all(|l| !l.contains(PASSWORD))
    );
    assert!(!printed.contains(PASSWORD));
    for f in files_in(&env.backups()) {
        if f == "orca-db-hot.tar.gz" {
            continue;
        }
        let text = std::fs::read(env.backups().join(&f)).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(PASSWORD),
            "{f} holds the password"
        );
    }
    let m: Value = serde_json::from_slice(
        &std::fs::read(env.backups().join("orca-db-hot.tar.gz.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["consistency"], "hot");
    assert_eq!(m["hot"]["engine"], "sqlserver");
    let list = env.run("orca-list", &[]).ok();
    let entry = &list["backups"][0];
    assert_eq!(entry["consistency"], "hot", "{list}");
    assert_eq!(entry["hot"]["method"], "snapshot-freeze", "{list}");
}

#[test]
fn the_workflow_takes_a_hot_copy_and_says_so() {
    need_docker!();
    let vol = sql_volume();
    let _db = Standin::start(&vol, &[]);
    let env = env();
    let run = crate::scripts::backup(&env, &["--volume", &vol.name, "--name", "hot-flow"]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["consistency"], "hot");
    assert_eq!(rec["verified"], true);
    assert!(
        stderr.contains("  Copy: hot (SQL Server's snapshot freeze, writes held "),
        "{stderr}"
    );
    assert!(!stderr.contains("live copy"), "{stderr}");
}

#[test]
fn a_freeze_outlives_no_dead_session() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    let env = env();
    let out = env.backups().join("dead.tar.gz");
    let go_on = env.base().join("go-on");
    let mut c = export_cmd(&env, &vol.name, &out, &[]);
    c.env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(c, "hot-spooling");
    assert!(db.frozen());
    // The held sqlcmd session dies (its server connection dropped, say).
    db.sh(
        "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
         case \"$c\" in *sqlcmd*-W\\ ) case \"$c\" in *-Q*) ;; *) kill -9 ${p#/proc/} ;; esac ;; esac; done",
    );
    assert!(
        wait_for(Duration::from_secs(15), || !db.frozen()),
        "the server stayed frozen after its session died"
    );
    std::fs::write(&go_on, "").unwrap();
    finish_paused(child, rx).fails_with(20);
    assert!(!out.exists());
}

#[test]
fn a_killed_or_interrupted_export_ends_the_freeze_within_seconds() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    let env = env();
    let out = env.backups().join("killed.tar.gz");

    let (child, rx) = spawn_paused(export_cmd(&env, &vol.name, &out, &[]), "hot-spooling");
    assert!(db.frozen());
    signal(&child, "-KILL");
    let t = Instant::now();
    assert!(
        wait_for(Duration::from_secs(15), || !db.frozen()),
        "the freeze outlived orca-export's SIGKILL"
    );
    eprintln!("thawed {:?} after SIGKILL", t.elapsed());
    let _ = finish_paused(child, rx);
    assert!(!out.exists());
    assert_eq!(db.freeze_log().last().unwrap().0, "thaw");
    assert!(
        wait_for(Duration::from_secs(10), || db
            .sh("ls /tmp/orca-freeze")
            .trim()
            .is_empty()),
        "the guard left its mark"
    );

    // The killed run's files say "being written" (orca-prune removes them
    // after an hour); Ctrl-C leaves none.
    let left_by_kill = incomplete_files(&env.backups());
    let (child, rx) = spawn_paused(export_cmd(&env, &vol.name, &out, &[]), "hot-spooling");
    assert!(db.frozen());
    signal(&child, "-INT");
    let run = finish_paused(child, rx);
    run.fails_with(130);
    assert!(!db.frozen(), "Ctrl-C left the server frozen");
    assert!(!out.exists());
    assert_eq!(incomplete_files(&env.backups()), left_by_kill);
}

#[test]
fn a_cut_engine_connection_ends_the_freeze_and_the_export() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    let env = env();
    let out = env.backups().join("cut.tar.gz");
    let go_on = env.base().join("go-on");
    let proxy = EngineProxy::in_front_of_docker();
    let mut c = export_cmd(&env, &vol.name, &out, &[]);
    c.env("DOCKER_HOST", proxy.host())
        .env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(c, "hot-spooling");
    assert!(db.frozen());
    proxy.cut();
    assert!(
        wait_for(Duration::from_secs(15), || !db.frozen()),
        "the freeze outlived the engine connection"
    );
    std::fs::write(&go_on, "").unwrap();
    let run = finish_paused(child, rx);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["success"], false);
    assert!(!out.exists());
    assert!(incomplete_files(&env.backups()).is_empty());
}

#[test]
fn max_freeze_seconds_ends_a_freeze_and_fails_the_export() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "max_freeze_seconds": 2}"#);
    let out = env.backups().join("long.tar.gz");
    let go_on = env.base().join("go-on");
    let mut c = export_cmd(&env, &vol.name, &out, &[]);
    c.env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(c, "hot-spooling");
    assert!(db.frozen());
    assert!(
        wait_for(Duration::from_secs(10), || !db.frozen()),
        "max_freeze_seconds did not end the freeze"
    );
    std::fs::write(&go_on, "").unwrap();
    let run = finish_paused(child, rx);
    let msg = run.message();
    run.fails_saying(20, "max_freeze_seconds");
    assert!(msg.contains("nothing was kept"), "{msg}");
    assert!(!out.exists());
    assert!(
        files_in(&env.backups())
            .iter()
            .all(|f| !f.starts_with("long"))
    );
}

#[test]
fn sql_server_2019_falls_back_to_live_or_is_refused() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &["STANDIN_MAJOR=15"]);
    let env = env();
    let out = env.backups().join("old.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--consistency", "hot"]);
    let msg = run.message();
    run.fails_saying(9, "no snapshot freeze");
    assert!(msg.contains(&db.0), "{msg}");
    let written: Vec<String> = files_in(&env.backups())
        .into_iter()
        .filter(|f| f.starts_with("old"))
        .collect();
    assert!(written.is_empty(), "hot wrote {written:?}");

    let run = export_run(&env, &vol.name, &out, &[]);
    assert!(run.stderr.contains("no snapshot freeze"), "{}", run.stderr);
    assert!(run.stderr.contains("--stop"), "{}", run.stderr);
    let rec = run.ok();
    assert_eq!(rec["consistency"], "live");
    assert_eq!(rec["consistent"], false);
    assert!(rec.get("hot").is_none());
    assert!(db.freeze_log().is_empty());
}

#[test]
fn a_freeze_left_by_an_orca_run_that_is_gone_is_thawed() {
    need_docker!();
    let vol = sql_volume();
    let db = Standin::start(&vol, &[]);
    db.sh(&format!(
        "mkdir -p /tmp/orca-freeze/held && echo 99999 > /tmp/orca-freeze/held/pid && \
         SQLCMDPASSWORD='{PASSWORD}' /opt/mssql-tools18/bin/sqlcmd -S localhost -U sa -C \
         -Q 'ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = ON (MODE = COPY_ONLY)'"
    ));
    assert!(db.frozen());
    let env = env();
    let out = env.backups().join("after.tar.gz");
    // Even a live copy, which needs nothing of the database, thaws it.
    let run = export_run(&env, &vol.name, &out, &["--consistency", "live"]);
    assert!(
        run.stderr
            .contains("still frozen by an orca run that is gone")
            && run.stderr.contains("orca thawed it"),
        "{}",
        run.stderr
    );
    assert_eq!(run.ok()["consistency"], "live");
    assert!(!db.frozen());
}

#[test]
fn auto_on_an_image_orca_does_not_know_is_a_live_copy() {
    need_docker!();
    let vol = TestVolume::named(&unique("orca-test-hotunknown"));
    vol.sh("echo data > /v/file");
    let _c = TestContainer::running_on(&vol.name);
    let env = env();
    let out = env.backups().join("unknown.tar.gz");
    let run = export_run(&env, &vol.name, &out, &[]);
    assert!(
        run.stderr.contains("live copy") && run.stderr.contains("runs no database orca knows"),
        "{}",
        run.stderr
    );
    assert_eq!(run.ok()["consistency"], "live");
    let out = env.backups().join("unknown-hot.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--consistency", "hot"]);
    run.fails_saying(9, "runs no database orca knows");
    assert!(!out.exists());
    let run = export_run(&env, &vol.name, &out, &["--consistency", "hot", "--stop"]);
    run.fails_saying(2, "--stop means --consistency stop");
}

fn started_at(name: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", name])
        .trim()
        .to_string()
}

fn pg_invariant(pg: &Pg) -> Vec<i64> {
    pg.psql(
        "app",
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), \
         (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    )
    .trim()
    .split('|')
    .map(|v| v.parse().unwrap())
    .collect()
}

#[test]
fn postgres_hot_copies_under_write_load_recover_consistent() {
    need_docker!();
    if databases::postgres_image(module_path!()).is_none() {
        return;
    }
    let pg = Pg::start(100);
    docker_ok(&[
        "exec", "-u", "postgres", &pg.name, "pgbench", "-i", "-q", "-s", "1", "app",
    ]);
    let started = started_at(&pg.name);
    // The write load runs through every backup.
    docker_ok(&[
        "exec", "-d", "-u", "postgres", &pg.name, "pgbench", "-n", "-c", "2", "-T", "600", "app",
    ]);
    let env = env();
    let mut last = None;
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(500));
        let out = env.backups().join(format!("pg-{i}.tar.gz"));
        let rec = if i == 3 {
            // Checkpoints and WAL switches while the copy runs must not
            // recycle a segment the archive needs (the slot keeps them).
            let go_on = env.base().join("go-on");
            let mut c = env.cmd(
                "orca-export",
                &[
                    "--volume",
                    &pg.vol.name,
                    "--output",
                    out.to_str().unwrap(),
                    "--consistency",
                    "hot",
                ],
            );
            c.env("ORCA_TEST_CONTINUE_FILE", &go_on);
            let (child, rx) = spawn_paused(c, "hot-spooling");
            for _ in 0..4 {
                pg.psql("postgres", "SELECT pg_switch_wal()");
                pg.psql("postgres", "CHECKPOINT");
            }
            std::fs::write(&go_on, "").unwrap();
            finish_paused(child, rx).ok()
        } else {
            export_run(&env, &pg.vol.name, &out, &["--consistency", "hot"]).ok()
        };
        assert_eq!(rec["consistency"], "hot", "{rec}");
        assert_eq!(rec["hot"]["engine"], "postgres");
        assert_eq!(rec["hot"]["method"], "backup-mode");
        assert_eq!(rec["hot"]["frozen_ms"], 0);
        assert!(
            rec["hot"]["databases"]
                .as_array()
                .unwrap()
                .contains(&"app".into())
        );
        assert!(!rec["hot"]["wal_segments"].as_array().unwrap().is_empty());
        assert_eq!(started_at(&pg.name), started, "PostgreSQL was restarted");
        assert!(member(&out, "./backup_label").contains("START WAL LOCATION"));

        // Restored to a new volume, PostgreSQL recovers to a consistent point.
        let copy = GoneVolume(unique("orca-test-hotpg-copy"));
        env.run(
            "orca-restore",
            &[out.to_str().unwrap(), "--to-new-volume", &copy.0],
        )
        .ok();
        let restored = Pg::on_volume(&copy.0);
        let sums = pg_invariant(&restored);
        assert!(
            sums.windows(2).all(|w| w[0] == w[1]),
            "backup {i}: pgbench's invariant does not hold: {sums:?}"
        );
        let check = docker(&[
            "exec",
            "-u",
            "postgres",
            &restored.name,
            "pg_amcheck",
            "--all",
            "--install-missing",
            "--heapallindexed",
        ]);
        assert!(
            check.status.success(),
            "backup {i}: pg_amcheck: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let logs = docker_ok(&["logs", &restored.name]);
        let logs = logs + &String::from_utf8_lossy(&docker(&["logs", &restored.name]).stderr);
        assert!(logs.contains("completed backup recovery"), "{logs}");
        last = Some(out);
    }
    // A tablespace outside the volume: no hot copy (it would miss it).
    docker_ok(&[
        "exec",
        &pg.name,
        "sh",
        "-c",
        "mkdir -p /var/lib/postgresql/ts && chown postgres /var/lib/postgresql/ts",
    ]);
    pg.psql(
        "postgres",
        "CREATE TABLESPACE outside LOCATION '/var/lib/postgresql/ts'",
    );
    let out = env.backups().join("pg-ts.tar.gz");
    export_run(&env, &pg.vol.name, &out, &["--consistency", "hot"])
        .fails_saying(9, "outside the volume");
    // The drill needs nothing new: it starts PostgreSQL on a hot archive.
    let last = last.unwrap();
    let rec = env
        .run(
            "orca-drill",
            &[last.to_str().unwrap(), "--image", databases::POSTGRES_IMAGE],
        )
        .ok();
    assert_eq!(rec["drill"]["ok"], true, "{rec}");
}
