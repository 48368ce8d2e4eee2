//! What a new user stumbled on in the first hour: a killed server's copy
//! called consistent, a backups directory they cannot write, one name with
//! several backups, two timestamped backups in one minute, backups named as
//! orca-list shows them, and the smaller points (dry-run names, DOCKER_HOST).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::need_docker;

/// A container on `volume` that ignores SIGTERM (busybox sh as PID 1 has no
/// default handler): `docker stop` must kill it after the grace period.
struct Stubborn(String);

impl Stubborn {
    fn on(volume: &str) -> Stubborn {
        let name = unique("orca-test-stubborn");
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "org.orca-backup.test=true",
            "--network",
            "none",
            "-v",
            &format!("{volume}:/var/opt/mssql"),
            busybox_image(),
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ]);
        Stubborn(name)
    }
}

impl Drop for Stubborn {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

#[test]
fn a_server_killed_after_the_grace_period_is_not_called_consistent() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"stop_timeout_seconds": 1, "min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-killed"));
    vol.sh("echo db > /v/orca.mdf");
    let c = Stubborn::on(&vol.name);
    let out = env.backups().join("orca-db-killed.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--stop"]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["consistency"], "killed");
    assert_eq!(rec["consistent"], false);
    assert!(
        stderr.contains(&c.0) && stderr.contains("stop_timeout_seconds"),
        "{stderr}"
    );
    // Started again all the same.
    let state = docker_ok(&["inspect", "--format", "{{.State.Running}}", &c.0]);
    assert_eq!(state.trim(), "true");
    // orca-list and orca-restore say the same.
    let list = env.run("orca-list", &[]).ok();
    assert_eq!(list["backups"][0]["consistency"], "killed");
    let table = env.run("orca-list", &["--format", "table"]);
    assert!(table.stdout.contains("killed"), "{}", table.stdout);
    let restore = env.run(
        "orca-restore",
        &[
            out.to_str().unwrap(),
            "--to-new-volume",
            &unique("orca-test-n"),
            "--dry-run",
        ],
    );
    assert!(
        restore.stderr.contains("NOT consistent"),
        "{}",
        restore.stderr
    );
    // A clean stop is "stopped".
    drop(c);
    let tidy = TestContainer::running_on(&vol.name);
    let out2 = env.backups().join("orca-db-clean.tar.gz");
    let rec = export_run(&env, &vol.name, &out2, &["--stop"]).ok();
    assert_eq!(rec["consistency"], "stopped");
    assert_eq!(rec["consistent"], true);
    drop(tidy);
    // Nothing running: "offline".
    let out3 = env.backups().join("orca-db-idle.tar.gz");
    let rec = export_run(&env, &vol.name, &out3, &[]).ok();
    assert_eq!(rec["consistency"], "offline");
}

/// Run `tool` as the unprivileged user `nobody`.
fn as_nobody(env: &Env, tool: &str, args: &[&str]) -> Run {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin(tool))
        .args(args)
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .stdin(std::process::Stdio::null());
    Run::from_output(c.output().unwrap())
}

#[test]
fn a_backups_directory_that_cannot_be_written_is_exit_8() {
    use std::os::unix::fs::PermissionsExt;
    // Root: an immutable directory refuses even root.
    let env = Env::new();
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    if is_root() {
        let _frozen = immutable(&dir);
        let run = env.run("orca-prune", &["--max-count", "5"]);
        let msg = run.message();
        run.fails_with(8);
        assert!(
            msg.contains(dir.to_str().unwrap()) && msg.contains("writable"),
            "{msg}"
        );
    }
    // Another user: a directory owned by root, mode 0755.
    if is_root() {
        let shared = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let env = Env { home: shared };
        let dir = env.backups();
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let run = as_nobody(&env, "orca-prune", &["--max-count", "5"]);
        let msg = run.message();
        run.fails_with(8);
        assert!(msg.contains("Permission denied"), "{msg}");
        assert!(!msg.contains("No such file"), "{msg}");
    }
}

#[test]
fn one_name_is_one_backup_whatever_its_compression() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-onename"));
    vol.sh("echo db > /v/orca.mdf");
    let backup = |extra: &str| {
        env.pipeline(&format!(
            "orca-find-volume --volume {} | orca-backup-name --name before-migration {extra} | orca-export",
            vol.name
        ))
    };
    backup("").ok();
    let dir = env.backups();
    assert!(dir.join("orca-db-before-migration.tar.gz").exists());
    // The same name in another compression: refused without --overwrite.
    for c in ["zstd", "none"] {
        backup(&format!("--compression {c}")).fails_saying(5, "orca-db-before-migration.tar.gz");
    }
    // With --overwrite: it replaces every form.
    let rec = backup("--compression zstd --overwrite").ok();
    assert_eq!(rec["backup_name"], "orca-db-before-migration.tar.zst");
    let left: Vec<String> = files_in(&dir)
        .into_iter()
        .filter(|f| f.starts_with("orca-db-before-migration"))
        .collect();
    assert_eq!(
        left,
        [
            "orca-db-before-migration.tar.zst",
            "orca-db-before-migration.tar.zst.json",
            "orca-db-before-migration.tar.zst.sha256"
        ]
    );
    // The README's path (gzip) now names the zstd backup, from anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = Run::from_output(
        env.cmd("orca-verify", &["orca-db-before-migration.tar.gz"])
            .current_dir(elsewhere.path())
            .output()
            .unwrap(),
    );
    let rec = run.ok();
    assert!(
        rec["backup_path"]
            .as_str()
            .unwrap()
            .ends_with("orca-db-before-migration.tar.zst"),
        "{rec}"
    );
    // Two runs racing for one name in two compressions: the one that
    // finishes second keeps nothing and deletes nothing (no --overwrite).
    let gz = env.backups().join("orca-db-race.tar.gz");
    let zst = env.backups().join("orca-db-race.tar.zst");
    let go = env.base().join("go");
    let mut held = env.cmd(
        "orca-export",
        &["--volume", &vol.name, "--output", gz.to_str().unwrap()],
    );
    held.env("ORCA_TEST_CONTINUE_FILE", &go);
    let (child, rx) = spawn_paused(held, "streamed");
    export_run(&env, &vol.name, &zst, &[]).ok();
    fs::write(&go, b"").unwrap();
    finish_paused(child, rx).fails_saying(5, "another run");
    assert!(zst.exists() && !gz.exists());
    assert!(env.backups().join("orca-db-race.tar.zst.sha256").exists());
}

#[test]
fn two_timestamped_backups_in_one_minute_both_succeed() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-minute"));
    vol.sh("echo db > /v/orca.mdf");
    let now = "2026-06-30T12:00:10Z";
    let run = || {
        env.pipeline(&format!(
            "orca-find-volume --volume {} | orca-backup-name --now {now} | orca-export",
            vol.name
        ))
        .ok()
    };
    let first = run();
    let second = run();
    let third = run();
    assert_eq!(first["backup_name"], "orca-db-2026-06-30-12-00.tar.gz");
    assert_eq!(second["backup_name"], "orca-db-2026-06-30-12-00-2.tar.gz");
    assert_eq!(third["backup_name"], "orca-db-2026-06-30-12-00-3.tar.gz");
    // Retention still reads them as timestamped.
    let list = env.run("orca-list", &[]).ok();
    for b in list["backups"].as_array().unwrap() {
        assert_eq!(b["kind"], "timestamped", "{b}");
    }
    // Two exports racing for one name: the later takes the next one.
    let out = env.backups().join("orca-db-2026-06-30-12-05.tar.gz");
    let go = env.base().join("go");
    let mut held = env.cmd(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    held.env("ORCA_TEST_CONTINUE_FILE", &go);
    let (child, rx) = spawn_paused(held, "streamed");
    export_run(&env, &vol.name, &out, &[]).ok();
    fs::write(&go, b"").unwrap();
    let late = finish_paused(child, rx).ok();
    assert_eq!(late["backup_name"], "orca-db-2026-06-30-12-05-2.tar.gz");
    // The name orca-backup-name chose is taken before orca-export starts
    // (another run of the same minute): the export takes the next one.
    let named = env
        .run("orca-backup-name", &["--now", "2026-06-30T12:07:00Z"])
        .ok();
    let chosen = named["backup_path"].as_str().unwrap().to_string();
    export_run(&env, &vol.name, Path::new(&chosen), &[]).ok();
    let rec = env
        .run_with("orca-export", &["--volume", &vol.name], &named.to_string())
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-2026-06-30-12-07-2.tar.gz");
    assert!(
        rec["backup_path"]
            .as_str()
            .unwrap()
            .ends_with("-12-07-2.tar.gz")
    );
    assert!(
        env.backups()
            .join("orca-db-2026-06-30-12-05-2.tar.gz.sha256")
            .exists()
    );
}

#[test]
fn backups_are_found_by_the_name_orca_list_shows() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-byname"));
    vol.sh("echo db > /v/orca.mdf");
    let out = env.backups().join("orca-db-before-migration.tar.gz");
    export_run(&env, &vol.name, &out, &[]).ok();
    let elsewhere = tempfile::tempdir().unwrap();
    let in_elsewhere = |tool: &str, args: &[&str]| {
        Run::from_output(
            env.cmd(tool, args)
                .current_dir(elsewhere.path())
                .output()
                .unwrap(),
        )
    };
    let target = NewVolume(unique("orca-test-byname-new"));
    let rec = in_elsewhere(
        "orca-restore",
        &[
            "orca-db-before-migration.tar.gz",
            "--to-new-volume",
            &target.0,
        ],
    )
    .ok();
    assert_eq!(rec["restored_volume"], target.0.as_str());
    // Mistyped: "no such backup" (exit 19) with the closest names, and
    // nothing done.
    let run = in_elsewhere(
        "orca-restore",
        &["orca-db-before-migratoin.tar.gz", "--volume", &vol.name],
    );
    let msg = run.message();
    run.fails_with(19);
    assert!(
        msg.contains("no such backup") && msg.contains("orca-db-before-migration.tar.gz"),
        "{msg}"
    );
    // A path in a directory is not looked up elsewhere.
    let run = env.run(
        "orca-verify",
        &[elsewhere
            .path()
            .join("orca-db-nope.tar.gz")
            .to_str()
            .unwrap()],
    );
    run.fails_with(19);
}

struct NewVolume(String);

impl Drop for NewVolume {
    fn drop(&mut self) {
        remove_containers_using(&self.0);
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn prune_dry_run_names_each_file_on_the_terminal() {
    let env = Env::new();
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    for day in 1..=3 {
        fs::write(
            dir.join(format!("orca-db-2026-06-0{day}-12-00.tar.gz")),
            b"x",
        )
        .unwrap();
    }
    let run = env.run(
        "orca-prune",
        &[
            "--max-count",
            "1",
            "--max-age-days",
            "0",
            "--dry-run",
            "--now",
            "2026-06-30T12:00:00Z",
        ],
    );
    let stderr = run.stderr.clone();
    run.ok();
    for day in 1..=2 {
        let name = format!("orca-db-2026-06-0{day}-12-00.tar.gz");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("would remove") && l.contains(&name)),
            "{name} not named: {stderr}"
        );
    }
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        3 + usize::from(Path::new(&dir.join(".orca-backup.lock")).exists())
    );
}

#[test]
fn a_docker_host_with_an_unknown_scheme_is_a_usage_error() {
    let env = Env::new();
    let mut c = env.cmd("orca-find-volume", &[]);
    c.env("DOCKER_HOST", "htps://127.0.0.1:2375");
    let run = Run::from_output(c.output().unwrap());
    run.fails_saying(2, "unset DOCKER_HOST");
}

/// `scripts/orca-backup.sh` answers its own argument errors (exit 2, its own
/// help), takes `--opt=value`, and passes values that start with `-` or
/// look like test operators to the tools intact.
#[test]
fn the_workflow_script_parses_its_arguments_itself() {
    let env = Env::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/orca-backup.sh");
    let run = |args: &[&str]| {
        Run::from_output(
            Command::new(&script)
                .args(args)
                .env("ORCA_BIN_DIR", bin_dir())
                .env("ORCA_HOME", env.base())
                .env("DOCKER_HOST", "unix:///nonexistent.sock")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap(),
        )
    };
    for args in [
        &["--name"][..],
        &["--name", "--overwrite"],
        &["--name="],
        &["--overwrite=yes"],
        &["--compression", "bz2"],
        &["--drill-timeout", "soon"],
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("orca-backup.sh: ")
                && r.stderr.contains("scripts/orca-backup.sh --help")
                && !r.stderr.contains("orca-backup-name --help"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Accepted: the run goes on to the first step (no engine here: exit 3).
    for args in [
        &["--name=before-migration"][..],
        &["--description=-o", "--tag", "("],
        &["--name", "("],
    ] {
        let r = run(args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
    }
}
