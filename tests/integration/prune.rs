//! orca-prune: the policy on real directories, hostile ones included.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::common::*;

const NOW: &str = "2026-06-30T12:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

/// Write a timestamped backup `days` (and `hours`) before NOW, with a .sha256.
fn backup_at(dir: &Path, days: i64, hours: i64) -> String {
    let t = now() - chrono::Duration::days(days) - chrono::Duration::hours(hours);
    let name = format!("orca-db-{}.tar.gz", t.format("%Y-%m-%d-%H-%M"));
    fs::write(dir.join(&name), vec![7u8; 1000]).unwrap();
    fs::write(
        dir.join(format!("{name}.sha256")),
        format!("{}  {name}\n", "a".repeat(64)),
    )
    .unwrap();
    name
}

fn named(dir: &Path, name: &str, age_days: u64) -> String {
    let file = format!("orca-db-{name}.tar.gz");
    let path = dir.join(&file);
    fs::write(&path, b"named").unwrap();
    let t = SystemTime::from(now()) - Duration::from_secs(age_days * 86_400);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(t)
        .unwrap();
    file
}

fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    (env, dir)
}

fn prune(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["--now", NOW];
    args.extend_from_slice(extra);
    env.run("orca-prune", &args).ok()
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            Path::new(o["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fn archives(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|f| f.ends_with(".tar.gz"))
        .collect()
}

#[test]
fn policy_table_with_default_rules() {
    // (backups, newest age in days, spacing in days, expected survivors)
    for (n, start, step, want) in [
        (0, 0, 1, 0),
        (1, 120, 1, 1),
        (10, 0, 1, 10),
        (10, 100, 2, 10),
        (11, 0, 1, 11),
        (11, 0, 5, 10),
        (11, 60, 6, 10),
        (13, 0, 10, 10),
        (50, 0, 2, 15),
        (50, 0, 1, 30),
    ] {
        let (env, dir) = setup();
        for i in 0..n {
            backup_at(&dir, start + i * step, 0);
        }
        let rec = prune(&env, &[]);
        let left = archives(&dir);
        let case = format!("{n} backups from {start} days every {step}");
        assert_eq!(left.len(), want, "{case}: {left:?}");
        assert_eq!(rec["kept"].as_array().unwrap().len(), want, "{case}");
        assert_eq!(
            rec["pruned"].as_array().unwrap().len(),
            n as usize - want,
            "{case}"
        );
        // Sidecars go with their archives, and only with them.
        let sums: Vec<String> = files_in(&dir)
            .into_iter()
            .filter(|f| f.ends_with(".sha256"))
            .collect();
        assert_eq!(sums.len(), want, "{case}");
        for s in sums {
            assert!(dir.join(s.trim_end_matches(".sha256")).exists());
        }
    }
}

#[test]
fn reasons_sizes_and_freed_bytes() {
    let (env, dir) = setup();
    for i in 0..12 {
        backup_at(&dir, i * 5, 0);
    }
    let rec = prune(&env, &[]);
    let pruned = rec["pruned"].as_array().unwrap();
    assert_eq!(pruned.len(), 2);
    for p in pruned {
        assert_eq!(p["reason"], "older than 30 days and beyond newest 10");
        assert_eq!(p["kind"], "timestamped");
        assert_eq!(p["size_bytes"], 1000);
    }
    // Each removed backup freed its archive and its 64+2+name+1 byte checksum line.
    let freed = rec["freed_bytes"].as_u64().unwrap();
    assert!(freed > 2000 && freed < 2400, "{freed}");
    let kept = rec["kept"].as_array().unwrap();
    assert_eq!(kept[0]["reason"], "newest 10, within 30 days");
    assert!(kept.iter().any(|k| k["reason"] == "newest 10"));
    assert_eq!(rec["dry_run"], false);
}

#[test]
fn named_and_invalid_timestamps_are_milestones() {
    let (env, dir) = setup();
    for i in 0..3 {
        backup_at(&dir, 100 + i, 0);
    }
    let milestone = named(&dir, "before-migration", 400);
    let invalid = "orca-db-2025-13-45-99-99.tar.gz".to_string();
    fs::write(dir.join(&invalid), b"x").unwrap();
    File::options()
        .write(true)
        .open(dir.join(&invalid))
        .unwrap()
        .set_modified(SystemTime::from(now()) - Duration::from_secs(500 * 86_400))
        .unwrap();
    let rec = prune(&env, &["--max-count", "1", "--max-age-days", "0"]);
    assert_eq!(names(&rec["pruned"]).len(), 2);
    let left = archives(&dir);
    assert!(
        left.contains(&milestone) && left.contains(&invalid),
        "{left:?}"
    );
    let k: Vec<&Value> = rec["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "named")
        .collect();
    assert_eq!(k.len(), 2);
    assert!(k.iter().all(|k| k["reason"] == "named"));
    // --include-named judges them by modification time: both are old.
    let rec = prune(
        &env,
        &["--max-count", "1", "--max-age-days", "0", "--include-named"],
    );
    assert_eq!(
        names(&rec["pruned"]),
        vec![invalid.clone(), milestone.clone()]
    );
    assert_eq!(archives(&dir).len(), 1);
    // Config can make including named the default; --keep-named overrides it.
    let (env, dir) = setup();
    backup_at(&dir, 0, 0);
    let m = named(&dir, "old-milestone", 400);
    env.config(r#"{"retention": {"keep_named": false, "max_count": 1, "max_age_days": 0}}"#);
    prune(&env, &["--keep-named"]);
    assert!(dir.join(&m).exists());
    prune(&env, &[]);
    assert!(!dir.join(&m).exists());
}

#[test]
fn dry_run_deletes_nothing_and_predicts_the_real_run() {
    let (env, dir) = setup();
    for i in 0..25 {
        backup_at(&dir, i * 3, 0);
    }
    named(&dir, "keep-me", 90);
    let ours = |d: &Path| -> Vec<String> {
        files_in(d)
            .into_iter()
            .filter(|f| f != ".orca-backup.lock")
            .collect()
    };
    let before = ours(&dir);
    let dry = prune(
        &env,
        &["--dry-run", "--max-count", "4", "--max-age-days", "20"],
    );
    assert_eq!(ours(&dir), before, "a dry run touched files");
    assert_eq!(dry["dry_run"], true);
    let real = prune(&env, &["--max-count", "4", "--max-age-days", "20"]);
    assert_eq!(names(&dry["pruned"]), names(&real["pruned"]));
    assert_eq!(names(&dry["kept"]), names(&real["kept"]));
    assert_eq!(dry["freed_bytes"], real["freed_bytes"]);
    for gone in names(&real["pruned"]) {
        assert!(!dir.join(gone).exists());
    }
}

#[test]
fn hostile_directory_only_policy_victims_go() {
    let (env, dir) = setup();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious.tar.gz");
    fs::write(&target, b"not a backup").unwrap();
    // A symlink named like an old backup.
    let link = dir.join("orca-db-2020-01-01-00-00.tar.gz");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A directory named like an old backup.
    fs::create_dir(dir.join("orca-db-2020-01-02-00-00.tar.gz")).unwrap();
    // Other tools' files and an orphaned checksum.
    fs::write(dir.join("notes.txt"), b"mine").unwrap();
    fs::write(dir.join("other-backup-2020-01-01.tar.gz"), b"theirs").unwrap();
    fs::write(dir.join("orca-db-x.tar.gz.sha256"), b"orphan").unwrap();
    // A read-only old backup: the policy removes it (read-only is not "keep").
    let ro = backup_at(&dir, 200, 0);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join(&ro), fs::Permissions::from_mode(0o444)).unwrap();
    let newest = backup_at(&dir, 0, 0);
    let rec = prune(&env, &["--max-count", "1", "--max-age-days", "0"]);
    assert_eq!(names(&rec["pruned"]), vec![ro.clone()]);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link survives"
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        b"not a backup",
        "its target survives"
    );
    assert!(dir.join("orca-db-2020-01-02-00-00.tar.gz").is_dir());
    for f in [
        "notes.txt",
        "other-backup-2020-01-01.tar.gz",
        "orca-db-x.tar.gz.sha256",
        &newest,
    ] {
        assert!(dir.join(f).exists(), "{f} was touched");
    }
    assert!(!dir.join(&ro).exists());
}

#[test]
fn a_file_that_cannot_be_deleted_is_reported_and_the_rest_goes_on() {
    let (env, dir) = setup();
    let stuck = backup_at(&dir, 300, 0);
    let other = backup_at(&dir, 301, 0);
    backup_at(&dir, 0, 0);
    let guard = if is_root() {
        immutable(&dir.join(&stuck))
    } else {
        // Without root, a read-only directory stops every deletion in it.
        ReadOnlyDir::new(&dir)
    };
    let run = env.run(
        "orca-prune",
        &["--now", NOW, "--max-count", "1", "--max-age-days", "0"],
    );
    let msg = run.message();
    let rec = run.fails_with(8);
    assert_eq!(rec["error"]["code"], "permission_denied");
    assert!(msg.contains(&stuck), "{msg}");
    let failed = rec["failed"].as_array().unwrap();
    assert!(
        failed
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with(&stuck) && f["error"].is_string())
    );
    drop(guard);
    assert!(dir.join(&stuck).exists() && dir.join(format!("{stuck}.sha256")).exists());
    if is_root() {
        assert_eq!(
            names(&rec["pruned"]),
            vec![other.clone()],
            "the run went on"
        );
        assert!(!dir.join(&other).exists());
    }
}

#[test]
fn nothing_is_pruned_after_a_failed_backup() {
    let (env, dir) = setup();
    for i in 0..5 {
        backup_at(&dir, 100 + i, 0);
    }
    let before = files_in(&dir);
    let run = env.run_with(
        "orca-prune",
        &["--now", NOW, "--max-count", "1"],
        r#"{"success":true,"verified":false}"#,
    );
    run.fails_saying(6, "nothing was pruned");
    assert_eq!(files_in(&dir), before);
    let failed = r#"{"success":false,"error":{"code":"no_space","message":"full","exit_code":7}}"#;
    assert_eq!(
        env.run_with("orca-prune", &["--now", NOW, "--max-count", "1"], failed)
            .code,
        7
    );
    assert_eq!(files_in(&dir), before);
}

#[test]
fn the_backup_just_made_is_kept() {
    let (env, dir) = setup();
    let old = backup_at(&dir, 90, 0);
    let newer = backup_at(&dir, 80, 0);
    let input = format!(
        r#"{{"success":true,"verified":true,"backup_path":"{}"}}"#,
        dir.join(&old).display()
    );
    let rec = env
        .run_with(
            "orca-prune",
            &["--now", NOW, "--max-count", "1", "--max-age-days", "0"],
            &input,
        )
        .ok();
    assert!(dir.join(&old).exists() && dir.join(&newer).exists());
    assert!(
        rec["kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["reason"] == "just created")
    );
}

#[test]
fn incomplete_files_go_only_when_abandoned() {
    let (env, dir) = setup();
    backup_at(&dir, 0, 0);
    let old_time = SystemTime::from(now()) - Duration::from_secs(2 * 3600);
    let abandoned = dir.join("orca-db-a.tar.gz.Ab12Cd.incomplete");
    let busy = dir.join("orca-db-b.tar.gz.Ef34Gh.incomplete");
    let fresh = dir.join("orca-db-c.tar.gz.Ij56Kl.incomplete");
    for p in [&abandoned, &busy, &fresh] {
        fs::write(p, b"partial").unwrap();
    }
    File::options()
        .write(true)
        .open(&abandoned)
        .unwrap()
        .set_modified(old_time)
        .unwrap();
    File::options()
        .write(true)
        .open(&busy)
        .unwrap()
        .set_modified(old_time)
        .unwrap();
    let holder = File::open(&busy).unwrap();
    holder.lock().unwrap(); // a running export holds its temporary file
    let rec = prune(&env, &[]);
    assert!(!abandoned.exists());
    assert!(busy.exists() && fresh.exists());
    let p: Vec<&Value> = rec["pruned"].as_array().unwrap().iter().collect();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["kind"], "incomplete");
    drop(holder);
}

#[test]
fn prune_waits_for_a_running_export() {
    let (env, dir) = setup();
    for i in 0..3 {
        backup_at(&dir, 100 + i, 0);
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".orca-backup.lock"))
        .unwrap();
    lock.lock_shared().unwrap(); // as orca-export holds it
    let mut child = env
        .cmd(
            "orca-prune",
            &["--now", NOW, "--max-count", "1", "--max-age-days", "0"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "prune must wait for the lock"
    );
    assert_eq!(
        archives(&dir).len(),
        3,
        "nothing removed while an export runs"
    );
    drop(lock);
    let out = child.wait_with_output().unwrap();
    let run = Run::from_output(out);
    assert!(
        run.stderr.contains("waiting for a running orca-export"),
        "{}",
        run.stderr
    );
    run.ok();
    assert_eq!(archives(&dir).len(), 1);
}

#[test]
fn bad_rule_values_are_usage_errors() {
    let (env, _dir) = setup();
    env.run("orca-prune", &["--max-count", "-1"]).fails_with(2);
    env.run("orca-prune", &["--max-age-days", "1.5"])
        .fails_with(2);
    env.config(r#"{"retention": {"max_age_days": -2}}"#);
    env.run("orca-prune", &[]).fails_with(2);
    env.config(r#"{"retention": {"max_count": 2.5}}"#);
    env.run("orca-prune", &[]).fails_with(2);
}
