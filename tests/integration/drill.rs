//! Restore drills against a real engine and a real database: PostgreSQL 15
//! from Debian's packages in a locally built image. A backup taken with
//! `--stop` passes, with its row counts; one whose archive lost a relation
//! file fails with PostgreSQL's own error; one whose data directory mode
//! changed fails because PostgreSQL refuses to start; nothing is left after a
//! pass, a failure, Ctrl-C or a SIGKILL. SQL Server's probe runs against a
//! stand-in image whose sqlcmd answers like sqlcmd and records its arguments
//! (no SQL Server image can be had here). Then the catalog, retention and the
//! workflow script around drills.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orca_test_support::databases::{self, POSTGRES_IMAGE};
use serde_json::Value;

use crate::common::*;
use crate::need_docker;

macro_rules! need_postgres {
    () => {
        if databases::postgres_image(module_path!()).is_none() {
            return;
        }
    };
}

/// A running PostgreSQL on its own volume, with a database `app` holding
/// `rows` rows in `public.t` and 3 in `public.small`; removed on drop.
pub(crate) struct Pg {
    pub(crate) vol: TestVolume,
    pub(crate) name: String,
}

impl Pg {
    /// PostgreSQL started on an existing volume (a restored copy), ready.
    pub(crate) fn on_volume(volume: &str) -> Pg {
        Pg::run_on(TestVolume {
            name: volume.to_string(),
        })
    }

    /// PostgreSQL started on `vol`, ready.
    fn run_on(vol: TestVolume) -> Pg {
        let name = unique("orca-test-pgdb");
        let mount = format!("{}:/var/lib/postgresql/data", vol.name);
        let label = format!("{TEST_LABEL}=true");
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            "none",
            "-v",
            &mount,
            POSTGRES_IMAGE,
        ]);
        let pg = Pg { vol, name };
        pg.wait_ready();
        pg
    }

    pub(crate) fn start(rows: u32) -> Pg {
        let pg = Pg::run_on(TestVolume::named(&unique("orca-test-pg")));
        pg.psql("postgres", "CREATE DATABASE app");
        pg.psql(
            "app",
            &format!(
                "CREATE TABLE t (id int PRIMARY KEY, v text); \
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g; \
                 CREATE TABLE small (x int); INSERT INTO small VALUES (1), (2), (3);"
            ),
        );
        pg
    }

    pub(crate) fn wait_ready(&self) {
        let t = Instant::now();
        while !docker(&["exec", "-u", "postgres", &self.name, "pg_isready", "-q"])
            .status
            .success()
        {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn psql(&self, db: &str, sql: &str) -> String {
        docker_ok(&[
            "exec",
            "-u",
            "postgres",
            &self.name,
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// Drill tests run one at a time: each checks that no scratch copy is left,
/// and one leaves one on purpose (SIGKILL).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn env() -> Env {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 20}"#);
    env
}

/// Every scratch volume and drill container there is (none must remain).
fn scratch_left() -> Vec<String> {
    let mut v: Vec<String> = docker_ok(&["volume", "ls", "-q", "--filter", "name=orca-drill-"])
        .split_whitespace()
        .map(String::from)
        .collect();
    v.extend(
        docker_ok(&["ps", "-aq", "--filter", "name=orca-drill-"])
            .split_whitespace()
            .map(String::from),
    );
    v
}

fn manifest_of(archive: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(format!("{}.json", archive.display())).unwrap()).unwrap()
}

/// A copy of `src` in a new volume (through a restore), changed by `script`,
/// then exported without a container: (volume, archive).
fn damaged_copy(env: &Env, src: &Path, name: &str, script: &str) -> (TestVolume, PathBuf) {
    let vol = unique("orca-test-pg-bad");
    env.run(
        "orca-restore",
        &[src.to_str().unwrap(), "--to-new-volume", &vol],
    )
    .ok();
    let vol = TestVolume { name: vol };
    vol.sh(script);
    let out = env.backups().join(name);
    export_run(env, &vol.name, &out, &[]).ok();
    (vol, out)
}

#[test]
fn postgres_backups_pass_fail_and_leave_nothing() {
    need_docker!();
    need_postgres!();
    let _serial = serial();
    let env = env();
    let pg = Pg::start(5000);
    pg.psql(
        "app",
        r#"CREATE TABLE "we|ird" (a int); INSERT INTO "we|ird" VALUES (1), (2);"#,
    );
    // Another container on the volume, named to sort first: the drill must
    // still pick the database's.
    let sidecar = unique("orca-test-a-agent");
    let _sidecar = GoneContainer(sidecar.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &sidecar,
        "--label",
        &format!("{TEST_LABEL}=true"),
        "--network",
        "none",
        "-v",
        &format!("{}:/mnt/pg:ro", pg.vol.name),
        busybox_image(),
        "sleep",
        "100000",
    ]);
    let rel = pg.psql("app", "SELECT pg_relation_filepath('t')");
    let rel = rel.trim().to_string();
    // A consistent backup: PostgreSQL stopped for the copy.
    let good = env.backups().join("orca-db-pg-good.tar.gz");
    export_run(&env, &pg.vol.name, &good, &["--stop"]).ok();
    let m = manifest_of(&good);
    let db = m["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["image"] == POSTGRES_IMAGE)
        .expect("the database container is in the manifest")
        .clone();
    assert_eq!(db["mount_point"], "/var/lib/postgresql/data");
    assert!(
        m["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["mount_point"] == "/mnt/pg"),
        "{m}"
    );
    assert!(
        !m.to_string().contains("POSTGRES") && !m.to_string().contains("PATH="),
        "the manifest holds no environment: {m}"
    );

    let run = env.run("orca-drill", &[good.to_str().unwrap()]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    let d = &rec["drill"];
    assert_eq!(d["ok"], true, "{stderr}");
    assert_eq!(d["engine"], "postgres");
    assert_eq!(d["image"], POSTGRES_IMAGE);
    assert!(d["started_in_ms"].as_u64().is_some());
    let names: Vec<&str> = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "data",
            "online",
            "amcheck",
            "indexes:app",
            "rows:app",
            "indexes:postgres",
            "rows:postgres"
        ]
    );
    let app = d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|db| db["name"] == "app")
        .unwrap();
    assert_eq!(
        app["tables"],
        serde_json::json!([
            {"name": "public.small", "rows": 3},
            {"name": "public.t", "rows": 5000},
            {"name": "public.we|ird", "rows": 2}
        ])
    );
    // The manifest keeps it; the catalog says so.
    let m = manifest_of(&good);
    assert_eq!(m["drills"].as_array().unwrap().len(), 1);
    assert_eq!(m["drills"][0]["ok"], true);
    let listed = env.run("orca-list", &[]).ok();
    let entry = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "orca-db-pg-good.tar.gz")
        .unwrap()
        .clone();
    assert_eq!(entry["last_drill"]["ok"], true);
    let table = env
        .cmd("orca-list", &["--format", "table"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("restorable: yes, 20"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());
    // Another superuser than the one the database has: the drill's setup
    // (exit 2), not the backup, and nothing recorded.
    let env_file = env.base().join("pg.env");
    std::fs::write(&env_file, "POSTGRES_USER=nobody\n").unwrap();
    let run = env.run(
        "orca-drill",
        &[
            good.to_str().unwrap(),
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    let msg = run.message();
    run.fails_with(2);
    assert!(
        msg.contains("no role 'nobody'") && msg.contains("POSTGRES_USER"),
        "{msg}"
    );
    assert_eq!(manifest_of(&good)["drills"].as_array().unwrap().len(), 1);
    // The database it came from runs again, untouched.
    assert_eq!(pg.psql("app", "SELECT count(*) FROM t").trim(), "5000");

    // An archive that lost a relation file: PostgreSQL's own words.
    let (_v1, lost) = damaged_copy(
        &env,
        &good,
        "orca-db-pg-lost.tar.gz",
        &format!("rm /v/{rel}"),
    );
    let run = env.run(
        "orca-drill",
        &[lost.to_str().unwrap(), "--image", POSTGRES_IMAGE],
    );
    let msg = run.message();
    let rec = run.fails_with(18);
    assert!(
        msg.contains("could not open file") && msg.contains(&rel),
        "{msg}"
    );
    assert_eq!(rec["drill"]["ok"], false);
    assert_eq!(manifest_of(&lost)["drills"][0]["ok"], false);
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // A relation file cut short: a full read does not notice, an index does.
    let (_v3, cut) = damaged_copy(
        &env,
        &good,
        "orca-db-pg-cut.tar.gz",
        // dd without conv=notrunc cuts the file where it starts writing.
        &format!("dd if=/dev/null of=/v/{rel} bs=8192 seek=2 2>/dev/null"),
    );
    let run = env.run(
        "orca-drill",
        &[cut.to_str().unwrap(), "--image", POSTGRES_IMAGE],
    );
    let msg = run.message();
    run.fails_with(18);
    assert!(
        msg.contains("indexes:app") && msg.contains("could not read block"),
        "{msg}"
    );
    // Where the image does not find the data, it must not pass on a fresh one.
    let run = env.run(
        "orca-drill",
        &[good.to_str().unwrap(), "--mount-point", "/srv/elsewhere"],
    );
    run.fails_saying(2, "not on the restored copy");
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // A data directory whose mode changed: PostgreSQL refuses to start.
    let (_v2, mode) = damaged_copy(&env, &good, "orca-db-pg-mode.tar.gz", "chmod 0755 /v");
    let run = env.run(
        "orca-drill",
        &[mode.to_str().unwrap(), "--image", POSTGRES_IMAGE],
    );
    let msg = run.message();
    run.fails_with(18);
    assert!(
        msg.contains("stopped before it was ready") && msg.contains("invalid permissions"),
        "{msg}"
    );
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // Retention keeps the newest backup that passed its drill, whatever the rules say.
    let pruned = env
        .run(
            "orca-prune",
            &[
                "--max-count",
                "1",
                "--max-age-days",
                "0",
                "--include-named",
                "--dry-run",
            ],
        )
        .ok();
    let kept = pruned["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            k["path"]
                .as_str()
                .unwrap()
                .ends_with("orca-db-pg-good.tar.gz")
        })
        .expect("the drilled backup is kept")
        .clone();
    assert!(
        kept["reason"]
            .as_str()
            .unwrap()
            .contains("newest backup whose last restore drill passed"),
        "{kept}"
    );
}

#[test]
fn ctrl_c_and_sigkill_leave_no_scratch_copy() {
    need_docker!();
    need_postgres!();
    let _serial = serial();
    let env = env();
    let pg = Pg::start(100);
    let good = env.backups().join("orca-db-pg-int.tar.gz");
    export_run(&env, &pg.vol.name, &good, &["--stop"]).ok();
    for (sig, code) in [("INT", 130), ("KILL", -1)] {
        let (child, rx) = spawn_paused(
            env.cmd("orca-drill", &[good.to_str().unwrap()]),
            "drill-ready",
        );
        assert!(
            !scratch_left().is_empty(),
            "the drill runs on its scratch copy"
        );
        signal(&child, &format!("-{sig}"));
        let run = finish_paused(child, rx);
        assert_eq!(run.code, code, "after SIG{sig}: {}", run.stdout);
        if code == 130 {
            assert!(scratch_left().is_empty(), "{:?}", scratch_left());
        }
    }
    // Killed in the restore, before the scratch volume exists: its journal
    // and lock stay behind.
    let (mut child, _rx) = spawn_paused(
        env.cmd("orca-drill", &[good.to_str().unwrap()]),
        "journaled",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let journals = || {
        files_in(&env.backups())
            .into_iter()
            .filter(|f| f.contains(".journal"))
            .collect::<Vec<_>>()
    };
    assert_eq!(journals().len(), 1);
    // What the killed drills left, the next drill removes.
    let run = env.run("orca-drill", &[good.to_str().unwrap()]);
    assert!(
        run.stderr
            .contains("of a drill that ended without cleaning up"),
        "{}",
        run.stderr
    );
    run.ok();
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());
    assert!(journals().is_empty(), "{:?}", journals());
    let listed = env.run("orca-list", &[]).ok();
    assert_eq!(listed["interrupted_restores"], serde_json::json!([]));
    let locks = docker_ok(&["ps", "-aq", "--filter", "label=org.orca-backup.lock"]);
    for id in locks.split_whitespace() {
        let v = docker_ok(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.orca-backup.lock\"}}",
            id,
        ]);
        assert!(
            !v.starts_with("orca-drill-"),
            "a drill's lock was left: {v}"
        );
    }
    // Aborted drills recorded nothing; the last one did.
    assert_eq!(manifest_of(&good)["drills"].as_array().unwrap().len(), 1);
}

/// A "SQL Server" volume for the stand-in: master.mdf, two user databases,
/// their tables, and the sa password the volume was created under.
fn mssql_volume(password: &str) -> TestVolume {
    let vol = TestVolume::named(&unique("orca-test-mssql"));
    vol.sh(&format!(
        "mkdir -p /v/data && echo master > /v/data/master.mdf && echo orca > /v/data/orca.mdf \
         && printf 'master|ONLINE\\ntempdb|ONLINE\\nmodel|ONLINE\\nmsdb|ONLINE\\norca|ONLINE\\norca_audit|ONLINE\\n' > /v/standin-databases \
         && printf 'dbo.Users|42\\ndbo.Workflows|7\\n' > /v/standin-tables \
         && printf '%s' '{password}' > /v/standin-password && chown -R 10001:10001 /v"
    ));
    vol
}

/// The SQL Server container Orca would have: the stand-in image, the
/// password in its environment, the volume at /var/opt/mssql.
fn mssql_container(vol: &TestVolume, password: &str) -> String {
    let name = unique("orca-test-mssqldb");
    let mount = format!("{}:/var/opt/mssql", vol.name);
    let label = format!("{TEST_LABEL}=true");
    let pw = format!("MSSQL_SA_PASSWORD={password}");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &label,
        "--network",
        "none",
        "-e",
        "ACCEPT_EULA=Y",
        "-e",
        &pw,
        "-v",
        &mount,
        databases::mssql_standin_image(),
    ]);
    name
}

#[test]
fn the_sql_server_probe_asks_sqlcmd_what_a_dba_would() {
    need_docker!();
    let _serial = serial();
    let env = env();
    let vol = mssql_volume("Orca-Passw0rd!");
    let db = mssql_container(&vol, "Orca-Passw0rd!");
    let _gone = GoneContainer(db.clone());
    let archive = env.backups().join("orca-db-sql.tar.gz");
    export_run(&env, &vol.name, &archive, &["--stop"]).ok();

    // Pause after the checks to read what sqlcmd was asked, then let it go.
    let go_on = env.base().join("go-on");
    let mut cmd = env.cmd("orca-drill", &[archive.to_str().unwrap()]);
    cmd.env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(cmd, "drill-checked");
    let scratch = docker_ok(&["ps", "-q", "--filter", "name=orca-drill-"]);
    let log = docker_ok(&["exec", scratch.trim(), "cat", "/tmp/sqlcmd.log"]);
    std::fs::write(&go_on, b"").unwrap();
    let rec = finish_paused(child, rx).ok();

    // sqlcmd 18 with -C for its self-signed certificate, as sa, the password
    // in SQLCMDPASSWORD (never on the command line).
    let calls: Vec<&str> = log.lines().filter(|l| l.starts_with("ARGS")).collect();
    assert!(calls.len() >= 6, "{log}");
    for c in &calls[1..] {
        assert!(c.contains("[-U] [sa]") && c.contains("[-C]"), "{c}");
        assert!(
            !c.contains("Orca-Passw0rd!"),
            "the password is on the command line: {c}"
        );
    }
    assert!(log.contains("SQLCMDPASSWORD=Orca-Passw0rd!"), "{log}");
    assert!(
        log.contains("[DBCC CHECKDB ([orca]) WITH NO_INFOMSGS]"),
        "{log}"
    );
    assert!(
        log.contains("[DBCC CHECKDB ([orca_audit]) WITH NO_INFOMSGS]"),
        "{log}"
    );
    assert!(
        !log.contains("CHECKDB ([master])"),
        "system databases are not CHECKDB'd: {log}"
    );
    assert!(
        log.contains("[-d] [orca]") && log.contains("sys.partitions"),
        "{log}"
    );
    let d = &rec["drill"];
    assert_eq!(d["engine"], "sqlserver");
    let orca = d["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "orca")
        .unwrap();
    assert_eq!(orca["state"], "ONLINE");
    assert_eq!(
        orca["tables"],
        serde_json::json!([{"name": "dbo.Users", "rows": 42}, {"name": "dbo.Workflows", "rows": 7}])
    );
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // CHECKDB finds corruption: its own words, exit 18.
    let bad = TestVolume::named(&unique("orca-test-mssql-bad"));
    env.run(
        "orca-restore",
        &[archive.to_str().unwrap(), "--volume", &bad.name],
    )
    .ok();
    bad.sh("echo 'Msg 8928, Level 16, State 1: Object ID 581577110, index ID 0: Page (1:94) could not be processed.' > /v/standin-corrupt");
    let corrupt = env.backups().join("orca-db-sql-corrupt.tar.gz");
    export_run(&env, &bad.name, &corrupt, &[]).ok();
    let env_file = env.base().join("sql.env");
    std::fs::write(
        &env_file,
        "ACCEPT_EULA=Y\nMSSQL_SA_PASSWORD=Orca-Passw0rd!\n",
    )
    .unwrap();
    let run = env.run(
        "orca-drill",
        &[
            corrupt.to_str().unwrap(),
            "--image",
            databases::MSSQL_STANDIN_IMAGE,
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    let msg = run.message();
    run.fails_with(18);
    assert!(
        msg.contains("checkdb:orca") && msg.contains("Msg 8928"),
        "{msg}"
    );

    // A backup taken under another sa password: SQL Server's "Login failed",
    // and what to do about it.
    std::fs::write(
        &env_file,
        "ACCEPT_EULA=Y\nMSSQL_SA_PASSWORD=Another-Passw0rd!\n",
    )
    .unwrap();
    let run = env.run(
        "orca-drill",
        &[
            archive.to_str().unwrap(),
            "--env-file",
            env_file.to_str().unwrap(),
            "--timeout",
            "8",
        ],
    );
    let msg = run.message();
    run.fails_with(18);
    assert!(
        msg.contains("Login failed for user 'sa'") && msg.contains("--env-file"),
        "{msg}"
    );

    // A volume SQL Server cannot start on: its own error text.
    let empty = TestVolume::named(&unique("orca-test-mssql-empty"));
    empty.sh("echo nothing > /v/readme");
    let nothing = env.backups().join("orca-db-sql-empty.tar.gz");
    export_run(&env, &empty.name, &nothing, &[]).ok();
    let run = env.run(
        "orca-drill",
        &[
            nothing.to_str().unwrap(),
            "--image",
            databases::MSSQL_STANDIN_IMAGE,
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    run.fails_saying(18, "master.mdf could not be opened");
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // Without the container and without --env-file there is no password: exit 2, nothing started.
    docker_ok(&["rm", "-f", &db]);
    let run = env.run("orca-drill", &[archive.to_str().unwrap()]);
    let msg = run.message();
    run.fails_with(2);
    assert!(
        msg.contains("--env-file") && msg.contains("is gone"),
        "{msg}"
    );
    assert!(scratch_left().is_empty());
}

#[test]
fn a_generic_probe_a_healthcheck_and_the_workflow_drill() {
    need_docker!();
    let _serial = serial();
    let env = env();
    let app = format!("orcat{}", &unique_hex10()[..8]);
    let vol = TestVolume::named(&format!("{app}.apphost-{}-sql-data", unique_hex10()));
    vol.sh(
        "echo hello > /v/marker && mkdir -p /v/data && echo m > /v/data/master.mdf \
            && printf 'master|ONLINE\\norca|ONLINE\\n' > /v/standin-databases \
            && printf 'dbo.Users|5\\n' > /v/standin-tables",
    );
    env.config(&format!(
        r#"{{"volume_filter": "{app}.apphost", "min_size_warning_mb": 0, "stop_timeout_seconds": 5}}"#
    ));
    let image = databases::mssql_standin_image();
    // Any image and a probe: the probe runs inside, on the scratch copy.
    let archive = env.backups().join("orca-db-generic.tar.gz");
    export_run(&env, &vol.name, &archive, &[]).ok();
    let mp = ["--image", image, "--mount-point", "/var/opt/mssql"];
    let mut args = vec![archive.to_str().unwrap()];
    args.extend_from_slice(&mp);
    let mut pass = args.clone();
    pass.extend_from_slice(&["--probe", "test \"$(cat /var/opt/mssql/marker)\" = hello"]);
    let ok = env.run("orca-drill", &pass).ok();
    assert_eq!(ok["drill"]["engine"], "other");
    assert_eq!(ok["drill"]["checks"][0]["name"], "probe");
    // A probe that never passes: the deadline, with the probe's own words.
    let mut never = args.clone();
    never.extend_from_slice(&[
        "--probe",
        "cat /var/opt/mssql/nothing-here",
        "--timeout",
        "3",
    ]);
    let run = env.run("orca-drill", &never);
    let msg = run.message();
    run.fails_with(18);
    assert!(
        msg.contains("did not become ready within 3 s") && msg.contains("nothing-here"),
        "{msg}"
    );
    // The image's HEALTHCHECK (an image built here from the stand-in, offline).
    let healthy = "orca-test-mssql-standin-healthy:2";
    if !docker(&["image", "inspect", healthy]).status.success() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {image}\nHEALTHCHECK --interval=1s --timeout=2s CMD test -f /tmp/ready\nLABEL {TEST_LABEL}=true\n"),
        )
        .unwrap();
        docker_ok(&["build", "-q", "-t", healthy, dir.path().to_str().unwrap()]);
    }
    let rec = env
        .run(
            "orca-drill",
            &[
                archive.to_str().unwrap(),
                "--image",
                healthy,
                "--engine",
                "other",
                "--mount-point",
                "/var/opt/mssql",
            ],
        )
        .ok();
    assert_eq!(rec["drill"]["checks"][0]["name"], "healthcheck");
    // No image named, none in the manifest: exit 2.
    env.run("orca-drill", &[archive.to_str().unwrap()])
        .fails_with(2);
    // An image that is not here is never pulled: exit 2.
    let run = env.run(
        "orca-drill",
        &[
            archive.to_str().unwrap(),
            "--image",
            "orca-test-no-such-image:404",
            "--probe",
            "true",
        ],
    );
    run.fails_saying(2, "never pulls");
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // The workflow: Orca's "SQL Server" runs on the volume; --stop --drill.
    let db = mssql_container(&vol, "Orca-Passw0rd!");
    let _gone = GoneContainer(db.clone());
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/orca-backup.sh"))
        .args(["--name", "drilled", "--stop", "--drill"])
        .env("ORCA_BIN_DIR", bin_dir())
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run::from_output(out);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["drill"]["ok"], true);
    assert!(
        stderr.contains("  Drill: passed (sqlserver started on a scratch copy"),
        "{stderr}"
    );
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &db]).trim(),
        "running"
    );
    assert!(scratch_left().is_empty(), "{:?}", scratch_left());

    // With no database container, the workflow passes the drill its image.
    docker_ok(&["rm", "-f", &db]);
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/orca-backup.sh"))
        .args([
            "--name",
            "drilled-alone",
            "--drill-image",
            image,
            "--drill-probe",
            "test -f /var/opt/mssql/marker",
            "--drill-mount-point",
            "/var/opt/mssql",
        ])
        .env("ORCA_BIN_DIR", bin_dir())
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let rec = Run::from_output(out).ok();
    assert_eq!(rec["drill"]["engine"], "other");
    // A drill that cannot start says so, and that the backup itself is there.
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/orca-backup.sh"))
        .args(["--name", "drilled-no-image", "--drill"])
        .env("ORCA_BIN_DIR", bin_dir())
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run::from_output(out);
    assert!(
        run.stderr
            .contains("The backup itself was written and verified"),
        "{}",
        run.stderr
    );
    run.fails_with(2);
}

struct GoneContainer(String);

impl Drop for GoneContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}
