//! orca-restore against a real engine: fidelity, safety, rollback.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

use crate::need_docker;

fn export(env: &Env, vol: &str, name: &str) -> PathBuf {
    let out = env.backups().join(name);
    env.run(
        "orca-export",
        &["--volume", vol, "--output", out.to_str().unwrap()],
    )
    .ok();
    out
}

fn restore(env: &Env, args: &[&str]) -> Run {
    env.run("orca-restore", args)
}

/// A volume name that does not exist yet, removed at the end of the test.
struct NewName(String);

impl NewName {
    fn new() -> NewName {
        NewName(unique("orca-test-new"))
    }
}

impl Drop for NewName {
    fn drop(&mut self) {
        remove_containers_using(&self.0);
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn round_trip_into_a_new_volume_is_identical_for_every_format() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = tricky_volume();
    let want = listing::of_volume(&vol.name);
    for name in [
        "orca-db-rt-gz.tar.gz",
        "orca-db-rt-zst.tar.zst",
        "orca-db-rt-none.tar",
    ] {
        let archive = export(&env, &vol.name, name);
        let new = NewName::new();
        let rec = restore(
            &env,
            &[archive.to_str().unwrap(), "--to-new-volume", &new.0],
        )
        .ok();
        assert_eq!(rec["restored_volume"], new.0);
        assert_eq!(rec["rolled_back"], false);
        assert_eq!(rec["safety_backup"], serde_json::Value::Null);
        let d = listing::diff(&want, &listing::of_volume(&new.0));
        assert!(
            d.is_empty(),
            "{name}: restored volume differs:\n{}",
            d.join("\n")
        );
        assert!(helpers_on(&new.0).is_empty());
        let labels = docker_ok(&["volume", "inspect", "--format", "{{json .Labels}}", &new.0]);
        assert!(labels.contains("org.orca-backup.restored-from"), "{labels}");
    }
}

#[test]
fn restores_archives_made_by_todays_method() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = tricky_volume();
    let out_gz = todays_archive(&vol.name);
    let seed = env.base().join("seed.tar.gz");
    std::fs::write(&seed, &out_gz).unwrap();
    let new = NewName::new();
    restore(&env, &[seed.to_str().unwrap(), "--to-new-volume", &new.0]).ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&new.0));
    assert!(d.is_empty(), "{}", d.join("\n"));
}

fn restore_over(with_container: bool) {
    let env = Env::new();
    // No helper_image: the wipe path must find a shell in the image of the
    // container that uses the volume (SQL Server's, in real life).
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let source = TestVolume::named(&unique("orca-test-src"));
    source.sh("mkdir -p /v/data && echo wanted > /v/data/Orca.mdf && chown -R 10001:0 /v/data && chmod 0770 /v");
    let archive = export(&env, &source.name, "orca-db-src.tar.gz");
    let target = TestVolume::named(&unique("orca-test-dst"));
    target.sh("mkdir -p /v/old/deep && echo stale > /v/old/deep/file && echo x > /v/.hidden && echo y > /v/..dots && echo z > '/v/data' ");
    let _stopped = with_container.then(|| TestContainer::created_on(&target.name));
    let before = listing::of_volume(&target.name);
    let rec = restore(&env, &[archive.to_str().unwrap(), "--volume", &target.name]).ok();
    let d = listing::diff(
        &listing::of_volume(&source.name),
        &listing::of_volume(&target.name),
    );
    assert!(
        d.is_empty(),
        "old contents left or new missing:\n{}",
        d.join("\n")
    );
    // The safety backup holds exactly what was there before.
    let safety = rec["safety_backup"]
        .as_str()
        .expect("a safety backup was made");
    assert!(
        Path::new(safety)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("orca-db-pre-restore-")
    );
    env.run("orca-verify", &[safety]).ok();
    let check = NewName::new();
    restore(&env, &[safety, "--to-new-volume", &check.0]).ok();
    assert!(listing::diff(&before, &listing::of_volume(&check.0)).is_empty());
    assert!(helpers_on(&target.name).is_empty());
}

#[test]
fn restore_over_different_contents_leaves_nothing_old_recreate_path() {
    need_docker!();
    restore_over(false);
}

#[test]
fn restore_over_different_contents_leaves_nothing_old_wipe_path() {
    need_docker!();
    restore_over(true);
}

#[test]
fn without_a_shell_image_the_volume_is_left_untouched() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-noshell"));
    vol.sh("echo a > /v/a.mdf");
    let archive = export(&env, &vol.name, "orca-db-ns.tar.gz");
    vol.sh("echo b > /v/b.mdf");
    // A container whose image has no shell uses the volume: it cannot be
    // re-created, and there is nothing to run rm with.
    let name = unique("orca-test-noshell-ctr");
    let mount = format!("{}:/data", vol.name);
    docker_ok(&[
        "create",
        "--name",
        &name,
        "-v",
        &mount,
        "orca-backup-helper:empty",
        "/nothing",
    ]);
    let _c = TestContainer { name };
    let before = listing::of_volume(&vol.name);
    let run = restore(&env, &[archive.to_str().unwrap(), "--volume", &vol.name]);
    let msg = run.message();
    let rec = run.fails_with(1);
    assert!(
        msg.contains("helper_image") && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(rec["rolled_back"], false);
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
}

#[test]
fn recreating_keeps_the_volume_labels() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let name = unique("orca-test-lbl");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        "com.microsoft.aspire.x=1",
        "--label",
        "org.orca-backup.test=true",
        &name,
    ]);
    let vol = TestVolume { name };
    vol.sh("echo a > /v/a");
    let archive = export(&env, &vol.name, "orca-db-lbl.tar.gz");
    vol.sh("rm /v/a && echo b > /v/b");
    restore(&env, &[archive.to_str().unwrap(), "--volume", &vol.name]).ok();
    let labels = docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &vol.name,
    ]);
    assert!(labels.contains("com.microsoft.aspire.x"), "{labels}");
    let l = listing::of_volume(&vol.name);
    assert!(l.contains_key("a") && !l.contains_key("b"));
}

#[test]
fn a_running_container_is_refused_without_stop_and_restarted_with_it() {
    need_docker!();
    let env = Env::new();
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "stop_timeout_seconds": 5, "helper_image": "{}"}}"#,
        busybox_image()
    ));
    let vol = TestVolume::named(&unique("orca-test-busy"));
    vol.sh("echo v1 > /v/f");
    let archive = export(&env, &vol.name, "orca-db-busy.tar.gz");
    vol.sh("echo v2 > /v/f");
    let sql = TestContainer::running_on(&vol.name);
    let started = sql.started_at();
    let before = listing::of_volume(&vol.name);
    let run = restore(&env, &[archive.to_str().unwrap(), "--volume", &vol.name]);
    let msg = run.message();
    let rec = run.fails_with(9);
    assert_eq!(rec["error"]["code"], "volume_in_use");
    assert!(msg.contains(&sql.name) && msg.contains("--stop"), "{msg}");
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
    assert_eq!(sql.started_at(), started);

    let rec = restore(
        &env,
        &[archive.to_str().unwrap(), "--volume", &vol.name, "--stop"],
    )
    .ok();
    assert_eq!(rec["stopped_containers"][0]["name"], sql.name);
    assert_eq!(sql.state(), "running");
    assert_ne!(sql.started_at(), started);
    let out = docker_ok(&["exec", &sql.name, "cat", "/var/opt/mssql/f"]);
    assert_eq!(out.trim(), "v1");
}

/// Archives that must never be extracted, made with GNU tar and by hand.
fn hostile_archives(dir: &Path) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(dir.join("escape"), b"outside").unwrap();
    std::fs::write(work.join("sub/ok"), b"ok").unwrap();
    // GNU tar -P keeps "../escape" and "/abs/path" as they are.
    let dotdot = dir.join("dotdot.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(work.join("sub"))
        .args(["-czPf"])
        .arg(&dotdot)
        .args(["ok", "../../escape"])
        .status()
        .unwrap();
    assert!(st.success());
    made.push(dotdot);
    let abs = dir.join("abs.tar.gz");
    let st = Command::new("tar")
        .args(["-czPf"])
        .arg(&abs)
        .arg(work.join("sub/ok"))
        .status()
        .unwrap();
    assert!(st.success());
    made.push(abs);
    // A symlink to / followed by a file "through" it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "evil", "/").unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_size(4);
    f.set_mode(0o644);
    orca_test_support::sqldata::append_raw(&mut b, f, "evil/etc/pwned", &b"pwnd"[..]).unwrap();
    let through = dir.join("through-link.tar");
    std::fs::write(&through, b.into_inner().unwrap()).unwrap();
    made.push(through);
    made
}

#[test]
fn corrupt_and_hostile_archives_are_refused_and_nothing_changes() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-hostile"));
    vol.sh("mkdir /v/data && echo keep > /v/data/Orca.mdf");
    let good = export(&env, &vol.name, "orca-db-good.tar.gz");
    let before = listing::of_volume(&vol.name);
    let tmp = tempfile::tempdir().unwrap();
    let mut archives = hostile_archives(tmp.path());
    let corrupt = tmp.path().join("corrupt.tar.gz");
    let mut bytes = std::fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&corrupt, bytes).unwrap();
    archives.push(corrupt);
    for a in &archives {
        let run = restore(&env, &[a.to_str().unwrap(), "--volume", &vol.name]);
        let msg = run.message();
        let rec = run.fails_with(6);
        assert_eq!(rec["error"]["code"], "verification_failed");
        assert!(
            msg.contains("refusing to restore") && msg.contains("nothing was changed"),
            "{msg}"
        );
        assert!(
            listing::diff(&before, &listing::of_volume(&vol.name)).is_empty(),
            "{} changed the volume",
            a.display()
        );
        assert!(
            !files_in(&env.backups())
                .iter()
                .any(|f| f.contains("pre-restore")),
            "no safety backup for refused archives"
        );
    }
    let dotdot_msg = restore(
        &env,
        &[archives[0].to_str().unwrap(), "--volume", &vol.name],
    )
    .message();
    assert!(dotdot_msg.contains("'..'"), "{dotdot_msg}");
    let abs_msg = restore(
        &env,
        &[archives[1].to_str().unwrap(), "--volume", &vol.name],
    )
    .message();
    assert!(abs_msg.contains("absolute path"), "{abs_msg}");
    let link_msg = restore(
        &env,
        &[archives[2].to_str().unwrap(), "--volume", &vol.name],
    )
    .message();
    assert!(link_msg.contains("symbolic link 'evil'"), "{link_msg}");
}

#[test]
fn a_failed_extraction_is_rolled_back_to_the_safety_copy() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-rollback"));
    vol.fill_sql_like(4 << 20, 21);
    let archive = export(&env, &vol.name, "orca-db-new.tar.gz");
    // The volume changes after the backup; the restore of the backup will be cut.
    vol.sh("echo 'changed since' > /v/data/extra.mdf && rm /v/log/errorlog");
    let before = listing::of_volume(&vol.name);
    // The first extraction into /volume gets 300 kB of the stream, then the engine "dies".
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule(
        "PUT",
        "path=%2Fvolume",
        Action::CutRequest(300_000),
        Some(1),
    );
    let run = Run::from_output(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name],
        )
        .env("DOCKER_HOST", proxy.host())
        .output()
        .unwrap(),
    );
    let puts = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT") && r.contains("path=%2Fvolume"))
        .count();
    assert!(
        puts >= 2,
        "the extraction was not cut and retried by the rollback: {puts}"
    );
    let msg = run.message();
    let rec = run.fails_with(10);
    assert_eq!(rec["error"]["code"], "restore_rolled_back");
    assert_eq!(rec["rolled_back"], true);
    assert!(
        msg.contains("rolled back") && msg.contains("pre-restore"),
        "{msg}"
    );
    let d = listing::diff(&before, &listing::of_volume(&vol.name));
    assert!(
        d.is_empty(),
        "the volume does not hold its previous contents:\n{}",
        d.join("\n")
    );
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_do() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-dry"));
    vol.sh("echo a > /v/a.mdf");
    let archive = export(&env, &vol.name, "orca-db-dry.tar.gz");
    vol.sh("echo b > /v/b.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let before = listing::of_volume(&vol.name);
    let rec = restore(
        &env,
        &[
            archive.to_str().unwrap(),
            "--volume",
            &vol.name,
            "--dry-run",
        ],
    )
    .ok();
    assert_eq!(rec["dry_run"], true);
    assert_eq!(rec["plan"]["volume"], vol.name);
    assert_eq!(rec["plan"]["containers_to_stop"][0]["name"], sql.name);
    assert_eq!(rec["plan"]["entries"], 2);
    assert!(
        rec["plan"]["safety_backup"]
            .as_str()
            .unwrap()
            .contains("pre-restore")
    );
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
    assert_eq!(sql.state(), "running");
    assert!(
        !files_in(&env.backups())
            .iter()
            .any(|f| f.contains("pre-restore"))
    );
}

#[test]
fn new_volume_must_not_exist_and_no_safety_backup_means_none() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-nsb"));
    vol.sh("echo a > /v/a.mdf");
    let archive = export(&env, &vol.name, "orca-db-nsb.tar.gz");
    let run = restore(
        &env,
        &[archive.to_str().unwrap(), "--to-new-volume", &vol.name],
    );
    run.fails_with(5);
    restore(
        &env,
        &[
            archive.to_str().unwrap(),
            "--volume",
            &vol.name,
            "--no-safety-backup",
        ],
    )
    .ok();
    assert!(
        !files_in(&env.backups())
            .iter()
            .any(|f| f.contains("pre-restore"))
    );
    // From the pipeline's record.
    let rec = env
        .pipeline(&format!("orca-export --volume {v} --output {b}/orca-db-p.tar.gz | orca-verify | orca-restore --no-safety-backup", v = vol.name, b = env.backups().display()))
        .ok();
    assert_eq!(rec["restored_volume"], vol.name);
    assert_eq!(rec["verified"], true);
}

#[test]
fn an_interrupted_restore_puts_everything_back() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-intr"));
    vol.fill_sql_like(384 << 20, 8);
    let archive = export(&env, &vol.name, "orca-db-intr.tar.gz");
    vol.sh("echo 'after the backup' > /v/data/new.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let before = listing::of_volume(&vol.name);
    let child = env
        .cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name, "--stop"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the safety backup is complete, during the extraction.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !files_in(&env.backups())
        .iter()
        .any(|f| f.starts_with("orca-db-pre-restore-") && f.ends_with(".sha256"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no safety backup appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let run = Run::from_output(child.wait_with_output().unwrap());
    let stderr = run.stderr.clone();
    let rec = run.fails_with(130);
    assert_eq!(rec["rolled_back"], true, "{stderr}");
    assert!(
        rec["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back")
    );
    let d = listing::diff(&before, &listing::of_volume(&vol.name));
    assert!(d.is_empty(), "{}", d.join("\n"));
    assert_eq!(sql.state(), "running");
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn when_the_rollback_fails_too_the_safety_backup_is_named_and_kept() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-rbfail"));
    vol.fill_sql_like(2 << 20, 41);
    let archive = export(&env, &vol.name, "orca-db-rb.tar.gz");
    vol.sh("echo changed > /v/changed.mdf");
    let before = listing::of_volume(&vol.name);
    // Every extraction into /volume is cut: the restore and its rollback fail.
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("PUT", "path=%2Fvolume", Action::CutRequest(100_000), None);
    let run = Run::from_output(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name],
        )
        .env("DOCKER_HOST", proxy.host())
        .output()
        .unwrap(),
    );
    let msg = run.message();
    let rec = run.fails_with(11);
    assert_eq!(rec["error"]["code"], "rollback_failed");
    assert_eq!(rec["rolled_back"], false);
    let safety = rec["safety_backup"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&safety) && msg.contains("orca-restore --rollback"),
        "{msg}"
    );
    let journal = rec["journal"].as_str().unwrap().to_string();
    assert!(Path::new(&journal).exists());
    // Until then the volume is refused to everyone else.
    let out = env.backups().join("orca-db-during.tar.gz");
    let run = export_run(&env, &vol.name, &out, &[]);
    run.fails_saying(13, "--rollback");
    // The previous contents are safe: the safety backup verifies, and the
    // rollback (now that the engine behaves) puts them back.
    env.run("orca-verify", &[&safety]).ok();
    drop(proxy);
    let rec = restore(&env, &["--rollback", "--volume", &vol.name]).ok();
    assert_eq!(rec["rolled_back"], true);
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
    assert!(!Path::new(&journal).exists());
    assert!(helpers_on(&vol.name).is_empty());
}

/// The engine's disk fills during the extraction (a tmpfs volume of 1 MiB,
/// an archive of 3 MiB): the restore says so and rolls back.
#[test]
fn a_full_engine_disk_is_reported_and_rolled_back() {
    need_docker!();
    let env = Env::new();
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "helper_image": "{}"}}"#,
        busybox_image()
    ));
    let src = TestVolume::named(&unique("orca-test-big"));
    src.fill_sql_like(3 << 20, 51);
    let archive = export(&env, &src.name, "orca-db-big.tar.gz");
    let name = unique("orca-test-tiny");
    let label = "org.orca-backup.test=true";
    docker_ok(&[
        "volume",
        "create",
        "--label",
        label,
        "--driver",
        "local",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        &name,
    ]);
    let vol = TestVolume { name };
    vol.sh("echo old > /v/old.mdf");
    let before = listing::of_volume(&vol.name);
    let run = restore(&env, &[archive.to_str().unwrap(), "--volume", &vol.name]);
    let msg = run.message();
    let rec = run.fails_with(10);
    assert!(
        msg.contains("no space left on device") && msg.contains("the engine's disk is full"),
        "{msg}"
    );
    assert_eq!(rec["rolled_back"], true);
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
    assert!(helpers_on(&vol.name).is_empty());
}
