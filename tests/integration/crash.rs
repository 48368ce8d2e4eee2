//! A restore that nothing can break: killed (SIGKILL) or interrupted (Ctrl-C
//! three times) at every phase, then at most one recovery command, and the
//! volume holds exactly its old contents or exactly the archive's, with the
//! database container running. Plus the wipe helper that cannot be removed,
//! the target discovery must not guess, and the `sa` password fingerprints.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;
use crate::need_docker;

/// A volume with old contents, a running "SQL Server" on it, and an archive
/// of other contents to restore.
struct Scene {
    env: Env,
    vol: TestVolume,
    sql: Option<TestContainer>,
    archive: PathBuf,
    old: listing::Listing,
    new: listing::Listing,
    _src: TestVolume,
}

impl Scene {
    fn new(with_container: bool) -> Scene {
        let env = Env::new();
        env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 5}"#);
        let src = TestVolume::named(&unique("orca-test-crash-src"));
        src.fill_sql_like(6 << 20, 31);
        src.sh("echo new > /v/marker.mdf");
        let archive = env.backups().join("orca-db-new.tar.gz");
        export_run(&env, &src.name, &archive, &[]).ok();
        let vol = TestVolume::named(&unique("orca-test-crash"));
        vol.fill_sql_like(5 << 20, 32);
        vol.sh("echo old > /v/marker.mdf && mkdir -p /v/only-old && echo x > /v/only-old/f");
        let sql = with_container.then(|| TestContainer::running_on(&vol.name));
        let old = listing::of_volume(&vol.name);
        let new = listing::of_volume(&src.name);
        Scene {
            env,
            vol,
            sql,
            archive,
            old,
            new,
            _src: src,
        }
    }

    fn restore_cmd(&self, pause_at: &str) -> Command {
        let mut args = vec![self.archive.to_str().unwrap(), "--volume", &self.vol.name];
        if self.sql.is_some() {
            args.push("--stop");
        }
        let mut c = self.env.cmd("orca-restore", &args);
        c.env("ORCA_TEST_PAUSE_AT", pause_at)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn journal(&self) -> PathBuf {
        self.env
            .backups()
            .join(format!(".orca-restore.{}.journal", self.vol.name))
    }

    /// The volume holds exactly the old contents or exactly the archive's.
    fn whole(&self) -> &'static str {
        let now = listing::of_volume(&self.vol.name);
        if listing::diff(&self.old, &now).is_empty() {
            "old"
        } else if listing::diff(&self.new, &now).is_empty() {
            "new"
        } else {
            panic!(
                "the volume holds a mix:\n vs old: {}\n vs new: {}",
                listing::diff(&self.old, &now).join("; "),
                listing::diff(&self.new, &now).join("; ")
            );
        }
    }
}

/// Start the restore and wait until it pauses at `point`; the stderr so far.
fn paused_at(
    scene: &Scene,
    point: &str,
    proxy: Option<&EngineProxy>,
) -> (Child, mpsc::Receiver<String>) {
    let mut c = scene.restore_cmd(point);
    if let Some(p) = proxy {
        c.env("DOCKER_HOST", p.host());
    }
    spawn_paused(c, point)
}

/// Kill (or interrupt three times) at `point`, recover with `how` when a
/// journal is left, and check what the volume and the container hold.
fn crash_at(point: &str, how: &str, ctrl_c: bool, with_container: bool, fail_put: bool) {
    let scene = Scene::new(with_container);
    let proxy = fail_put.then(|| {
        let p = EngineProxy::in_front_of_docker();
        // The restore's extraction breaks: the rollback runs.
        p.rule(
            "PUT",
            "path=%2Fvolume",
            Action::CutRequest(200_000),
            Some(1),
        );
        p
    });
    let (mut child, _rx) = paused_at(&scene, point, proxy.as_ref());
    if ctrl_c {
        for _ in 0..3 {
            signal(&child, "-INT");
            std::thread::sleep(Duration::from_millis(30));
        }
        let status = child.wait().unwrap();
        let code = status.code().unwrap_or(-1);
        assert!(
            [0, 10, 13, 130].contains(&code),
            "{point}: exit {code} after three interrupts"
        );
    } else {
        signal(&child, "-KILL");
        child.wait().unwrap();
    }
    drop(proxy);
    if scene.journal().exists() {
        // Anyone else is refused meanwhile.
        let out = scene.env.backups().join("orca-db-meanwhile.tar.gz");
        export_run(&scene.env, &scene.vol.name, &out, &[]).fails_with(13);
        let mut args = vec![how, "--volume", &scene.vol.name];
        if with_container {
            args.push("--stop");
        }
        let run = scene.env.run("orca-restore", &args);
        let stderr = run.stderr.clone();
        run.ok();
        assert!(!scene.journal().exists(), "{point}: {stderr}");
        let expect = if how == "--resume" { "new" } else { "old" };
        assert_eq!(scene.whole(), expect, "{point} then {how}: {stderr}");
    } else {
        scene.whole();
    }
    if let Some(sql) = &scene.sql {
        assert_eq!(
            sql.state(),
            "running",
            "{point}: the container stays stopped"
        );
    }
    let left = helpers_on(&scene.vol.name);
    assert!(
        left.is_empty(),
        "{point}: helpers left: {}",
        docker_ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.Status}} {{.Labels}}"
        ])
    );
    // And the volume is free again.
    let out = scene.env.backups().join("orca-db-after.tar.gz");
    export_run(&scene.env, &scene.vol.name, &out, &[]).ok();
}

macro_rules! crash_tests {
    ($($name:ident: $point:expr, $how:expr, $container:expr, $fail:expr;)*) => {
        mod killed {
            use super::*;
            $(
                #[test]
                fn $name() {
                    need_docker!();
                    crash_at($point, $how, false, $container, $fail);
                }
            )*
        }
        mod interrupted_three_times {
            use super::*;
            $(
                #[test]
                fn $name() {
                    need_docker!();
                    crash_at($point, $how, true, $container, $fail);
                }
            )*
        }
    };
}

crash_tests! {
    journaled: "journaled", "--rollback", true, false;
    containers_stopped: "stopped", "--resume", true, false;
    saving_the_safety_copy: "export-streaming", "--rollback", true, false;
    before_emptying: "emptying", "--rollback", true, false;
    between_removing_and_creating_the_volume: "emptying-recreate", "--resume", false, false;
    extracting: "extracting", "--rollback", true, false;
    comparing: "comparing", "--resume", true, false;
    rolling_back: "rollback-extracting", "--rollback", true, true;
    wiping_with_rm_in_a_helper: "wiping", "--rollback", true, false;
    restarting_containers: "restarting", "--rollback", true, false;
    restarting_containers_then_resume: "restarting", "--resume", true, false;
}

/// Kill a restore of `scene` at `point` and check it left its journal.
fn killed_at(scene: &Scene, point: &str) {
    let (mut child, _rx) = paused_at(scene, point, None);
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert!(scene.journal().exists(), "{point}: no journal");
}

#[test]
fn the_journal_names_the_archive_by_its_absolute_path() {
    need_docker!();
    let scene = Scene::new(false);
    killed_at(&scene, "extracting");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.journal()).unwrap()).unwrap();
    let archive = j["archive"].as_str().unwrap();
    assert!(Path::new(archive).is_absolute(), "{archive}");
    scene
        .env
        .run("orca-restore", &["--rollback", "--volume", &scene.vol.name])
        .ok();
}

/// The recovery does not start SQL Server on a half-restored volume: the
/// container stays stopped until the volume is whole.
#[test]
fn recovery_keeps_the_database_stopped_until_the_volume_is_whole() {
    need_docker!();
    let scene = Scene::new(true);
    killed_at(&scene, "extracting");
    let sql = scene.sql.as_ref().unwrap();
    assert_eq!(sql.state(), "exited");
    // The resume pauses as it extracts again: the container is still down.
    let mut c = scene.env.cmd(
        "orca-restore",
        &["--resume", "--volume", &scene.vol.name, "--stop"],
    );
    let go = scene.env.backups().with_file_name("continue");
    c.env("ORCA_TEST_PAUSE_AT", "extracting")
        .env("ORCA_TEST_CONTINUE_FILE", &go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, _rx) = spawn_paused(c, "extracting");
    assert_eq!(sql.state(), "exited", "started on a half-restored volume");
    std::fs::write(&go, b"").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(scene.whole(), "new");
    assert_eq!(sql.state(), "running");
}

/// `docker container prune` removes the engine's lock (a created, never
/// started container): the journal in the backups directory still refuses.
#[test]
fn a_lost_engine_lock_still_refuses_through_the_journal() {
    need_docker!();
    let scene = Scene::new(false);
    killed_at(&scene, "extracting");
    let locks = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.orca-backup.lock={}", scene.vol.name),
    ]);
    for id in locks.split_whitespace() {
        docker_ok(&["rm", "-f", id]);
    }
    let out = scene.env.backups().join("orca-db-meanwhile.tar.gz");
    export_run(&scene.env, &scene.vol.name, &out, &[]).fails_with(13);
    let run = scene.env.run(
        "orca-restore",
        &[scene.archive.to_str().unwrap(), "--volume", &scene.vol.name],
    );
    run.fails_saying(13, "--rollback");
    scene
        .env
        .run("orca-restore", &["--rollback", "--volume", &scene.vol.name])
        .ok();
    assert_eq!(scene.whole(), "old");
}

/// A recovery refused before it starts (a container that appeared on the
/// volume, without --stop) keeps the lock: the volume stays refused.
#[test]
fn a_recovery_refused_early_keeps_the_volume_refused() {
    need_docker!();
    let scene = Scene::new(false);
    killed_at(&scene, "extracting");
    let intruder = TestContainer::running_on(&scene.vol.name);
    let run = scene
        .env
        .run("orca-restore", &["--resume", "--volume", &scene.vol.name]);
    let msg = run.message();
    run.fails_with(9);
    assert!(msg.contains("--stop") && msg.contains("journal"), "{msg}");
    assert_eq!(intruder.state(), "running");
    let out = scene.env.backups().join("orca-db-meanwhile.tar.gz");
    export_run(&scene.env, &scene.vol.name, &out, &[]).fails_with(13);
    scene
        .env
        .run(
            "orca-restore",
            &["--resume", "--volume", &scene.vol.name, "--stop"],
        )
        .ok();
    assert_eq!(scene.whole(), "new");
    assert_eq!(intruder.state(), "running");
}

/// A --resume whose extraction fails puts the safety backup back: exit 10,
/// the journal gone, the containers running, in one command.
#[test]
fn a_resume_that_fails_rolls_back_in_one_command() {
    need_docker!();
    let scene = Scene::new(true);
    killed_at(&scene, "extracting");
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule(
        "PUT",
        "path=%2Fvolume",
        Action::CutRequest(200_000),
        Some(1),
    );
    let run = Run::from_output(
        scene
            .env
            .cmd(
                "orca-restore",
                &["--resume", "--volume", &scene.vol.name, "--stop"],
            )
            .env("DOCKER_HOST", proxy.host())
            .output()
            .unwrap(),
    );
    let msg = run.message();
    let rec = run.fails_with(10);
    assert_eq!(rec["rolled_back"], true, "{msg}");
    assert!(rec.get("journal").is_none(), "{msg}");
    assert!(!scene.journal().exists(), "{msg}");
    drop(proxy);
    assert_eq!(scene.whole(), "old");
    assert_eq!(scene.sql.as_ref().unwrap().state(), "running");
    let out = scene.env.backups().join("orca-db-after.tar.gz");
    export_run(&scene.env, &scene.vol.name, &out, &[]).ok();
}

#[test]
fn a_wipe_helper_that_cannot_be_removed_is_a_warning_not_nothing_changed() {
    need_docker!();
    let scene = Scene::new(true);
    let proxy = EngineProxy::in_front_of_docker();
    // Without a safety copy the first container removal is the wipe helper's.
    proxy.rule(
        "DELETE",
        "/containers/",
        Action::Respond(http_response(
            "500 Internal Server Error",
            "application/json",
            br#"{"message":"driver failed removing container"}"#,
        )),
        Some(1),
    );
    let run = Run::from_output(
        scene
            .env
            .cmd(
                "orca-restore",
                &[
                    scene.archive.to_str().unwrap(),
                    "--volume",
                    &scene.vol.name,
                    "--stop",
                    "--no-safety-backup",
                ],
            )
            .env("DOCKER_HOST", proxy.host())
            .output()
            .unwrap(),
    );
    let stderr = run.stderr.clone();
    run.ok();
    assert!(
        stderr.contains("warning") && stderr.contains("remove"),
        "{stderr}"
    );
    assert!(!stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(scene.whole(), "new");
    assert_eq!(scene.sql.as_ref().unwrap().state(), "running");
    remove_containers_using(&scene.vol.name);
}

#[test]
fn a_volume_found_by_discovery_must_be_the_one_the_archive_came_from() {
    need_docker!();
    let env = Env::new();
    let app = format!("orcad{}", &unique_hex10()[..8]);
    env.config_for_app(&app);
    let found = TestVolume::aspire(&app);
    found.sh("echo mine > /v/mine.mdf");
    let other = TestVolume::named(&unique("orca-test-elsewhere"));
    other.sh("echo theirs > /v/theirs.mdf");
    let archive = env.backups().join("orca-db-theirs.tar.gz");
    export_run(&env, &other.name, &archive, &[]).ok();
    let before = listing::of_volume(&found.name);
    let run = env.run("orca-restore", &[archive.to_str().unwrap()]);
    let msg = run.message();
    run.fails_with(2);
    assert!(
        msg.contains(&other.name) && msg.contains(&found.name) && msg.contains("--volume"),
        "{msg}"
    );
    assert!(listing::diff(&before, &listing::of_volume(&found.name)).is_empty());
    // Saying so is enough.
    env.run(
        "orca-restore",
        &[archive.to_str().unwrap(), "--volume", &found.name],
    )
    .ok();
}

/// A "SQL Server" on `volume` with this `sa` password in its environment.
fn sql_with_password(volume: &str, password: &str) -> TestContainer {
    let name = unique("orca-test-sql-pw");
    let mount = format!("{volume}:/var/opt/mssql");
    let env = format!("MSSQL_SA_PASSWORD={password}");
    docker_ok(&[
        "create",
        "--name",
        &name,
        "--label",
        TEST_LABEL,
        "--network",
        "none",
        "-e",
        &env,
        "-e",
        "ACCEPT_EULA=Y",
        "-v",
        &mount,
        busybox_image(),
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    TestContainer { name }
}

#[test]
fn a_backup_taken_under_another_sa_password_is_warned_about() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-pw"));
    vol.sh("echo db > /v/Orca.mdf");
    let first = sql_with_password(&vol.name, "First#Pass1");
    let archive = env.backups().join("orca-db-pw.tar.gz");
    export_run(&env, &vol.name, &archive, &[]).ok();
    let manifest = std::fs::read_to_string(format!("{}.json", archive.display())).unwrap();
    assert!(
        manifest.contains("sa_password") && !manifest.contains("First#Pass1"),
        "{manifest}"
    );
    // The same password: no warning.
    let run = env.run(
        "orca-restore",
        &[archive.to_str().unwrap(), "--volume", &vol.name],
    );
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["password_differs"], false, "{stderr}");
    assert!(!stderr.contains("Login failed"), "{stderr}");
    let list = env.run("orca-list", &[]).ok();
    assert_eq!(list["backups"][0]["password_differs"], false);
    // Orca's password changed since: warned before anything changes.
    drop(first);
    let _second = sql_with_password(&vol.name, "Second#Pass2");
    let run = env.run(
        "orca-restore",
        &[archive.to_str().unwrap(), "--volume", &vol.name],
    );
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["password_differs"], true, "{stderr}");
    assert!(
        stderr.contains("Login failed for user 'sa'") && stderr.contains("ALTER LOGIN"),
        "{stderr}"
    );
    let warned = stderr.find("Login failed").unwrap();
    let saved = stderr.find("saving the current contents").unwrap();
    assert!(
        warned < saved,
        "the warning comes before any change: {stderr}"
    );
    let list = env.run("orca-list", &["--format", "table"]);
    assert!(list.stdout.contains("password differs"), "{}", list.stdout);
}

/// Something changes the volume between the extraction and the comparison:
/// the comparison sees it (through orca-walk in a helper container, and
/// through the archive API) and the restore rolls back.
fn tampered_while_comparing(via_archive: bool) {
    let scene = Scene::new(false);
    let go = scene.env.backups().with_file_name("continue");
    let mut c = scene.restore_cmd("comparing");
    c.env("ORCA_TEST_CONTINUE_FILE", &go);
    if via_archive {
        c.env("ORCA_READ_BACK_VIA_ARCHIVE", "1");
    }
    let (mut child, rx) = spawn_paused(c, "comparing");
    scene.vol.sh("echo tampered > /v/marker.mdf");
    std::fs::write(&go, b"").unwrap();
    let status = child.wait().unwrap();
    let stderr: Vec<String> = rx.try_iter().collect();
    let stderr = stderr.join("\n");
    assert_eq!(status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains("does not match the archive") && stderr.contains("marker.mdf differs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reading it through the archive API instead"),
        "{stderr}"
    );
    assert_eq!(scene.whole(), "old", "{stderr}");
    assert!(helpers_on(&scene.vol.name).is_empty());
}

#[test]
fn a_change_during_the_comparison_is_caught_in_a_helper_container() {
    need_docker!();
    tampered_while_comparing(false);
}

#[test]
fn a_change_during_the_comparison_is_caught_through_the_archive_api() {
    need_docker!();
    tampered_while_comparing(true);
}
