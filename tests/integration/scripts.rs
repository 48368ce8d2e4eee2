//! The workflow scripts as a newcomer meets them, against a real engine.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use crate::need_docker;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run scripts/orca-backup.sh with the built binaries and this env.
pub(crate) fn backup(env: &Env, args: &[&str]) -> Run {
    Run::from_output(
        Command::new(repo().join("scripts/orca-backup.sh"))
            .args(args)
            .env("ORCA_BIN_DIR", bin_dir())
            .env("ORCA_HOME", env.base())
            .env_remove("ORCA_CONFIG")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

fn app_with_volume(env: &Env) -> (String, TestVolume) {
    let app = format!("orcat{}", &unique_hex10()[..8]);
    let vol = TestVolume::aspire(&app);
    vol.fill_sql_like(1 << 20, 31);
    env.config(&format!(
        r#"{{"volume_filter": "{app}.apphost", "min_size_warning_mb": 0}}"#
    ));
    (app, vol)
}

fn assert_report(stderr: &str, path: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "✅ Backup complete!")
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert_eq!(lines[at + 1], format!("  Path: {path}"));
    assert!(
        lines[at + 2].starts_with("  Size: ") && lines[at + 2].ends_with(" MB"),
        "{}",
        lines[at + 2]
    );
    // How the files were copied (no container runs on these volumes).
    assert_eq!(lines[at + 3], "  Copy: offline");
}

#[test]
fn happy_path_default_and_named() {
    need_docker!();
    let env = Env::new();
    let (_app, vol) = app_with_volume(&env);
    let run = backup(&env, &[]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    let path = rec["backup_path"].as_str().unwrap().to_string();
    assert!(
        Path::new(&path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("orca-db-20")
    );
    assert_eq!(rec["message"], "Backup created successfully");
    assert_eq!(rec["verified"], true);
    assert_eq!(rec["volume"], vol.name);
    assert!(rec["size"].as_str().unwrap().ends_with(" MB"));
    assert!(Path::new(&path).exists());
    assert_report(&stderr, &path);

    let run = backup(
        &env,
        &[
            "--name",
            "before-migration",
            "--compression",
            "zstd",
            "--tag",
            "m",
            "--description",
            "d",
        ],
    );
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["backup_name"], "orca-db-before-migration.tar.zst");
    assert_eq!(rec["kind"], "named");
    assert_eq!(rec["tags"], serde_json::json!(["m"]));
    assert!(stderr.contains("✅ Backup complete!"));
    // The stdout is exactly one JSON record.
    let again = backup(&env, &["--name", "second"]);
    assert_eq!(again.stdout.trim().lines().count(), 1);
}

#[test]
fn collision_fails_with_5_and_the_cross() {
    need_docker!();
    let env = Env::new();
    let (_app, _vol) = app_with_volume(&env);
    let first = backup(&env, &["--name", "same"]).ok();
    let path = first["backup_path"].as_str().unwrap().to_string();
    let before = std::fs::read(&path).unwrap();
    let run = backup(&env, &["--name", "same"]);
    assert!(
        run.stderr.contains("❌ Backup failed: backup ") && run.stderr.contains("already exists"),
        "{}",
        run.stderr
    );
    let rec = run.fails_with(5);
    assert_eq!(rec["error"]["step"], "orca-backup-name");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    backup(&env, &["--name", "same", "--overwrite"]).ok();
}

#[test]
fn auto_cleanup_removes_exactly_what_the_policy_says() {
    need_docker!();
    let env = Env::new();
    let (app, _vol) = app_with_volume(&env);
    env.config(&format!(
        r#"{{"volume_filter": "{app}.apphost", "min_size_warning_mb": 0, "retention": {{"max_count": 2, "max_age_days": 0}}}}"#
    ));
    let dir = env.backups();
    std::fs::create_dir_all(&dir).unwrap();
    let old: Vec<String> = ["2020-01-01-00-00", "2020-01-02-00-00", "2020-01-03-00-00"]
        .iter()
        .map(|t| format!("orca-db-{t}.tar.gz"))
        .collect();
    for n in &old {
        std::fs::write(dir.join(n), b"old").unwrap();
        std::fs::write(dir.join(format!("{n}.sha256")), b"x").unwrap();
    }
    std::fs::write(dir.join("orca-db-milestone.tar.gz"), b"named").unwrap();
    // Without --auto-cleanup (and auto_cleanup false): nothing is pruned.
    let rec = backup(&env, &[]).ok();
    assert!(rec.get("pruned").is_none());
    for n in &old {
        assert!(dir.join(n).exists());
    }
    // With it: the new one and the newest old one stay (newest 2), named stays.
    let run = backup(&env, &["--name", "x", "--auto-cleanup"]);
    assert!(
        run.stderr.contains("Pruned: 2 old backup(s)"),
        "{}",
        run.stderr
    );
    let rec = run.ok();
    let pruned: Vec<String> = rec["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(pruned, [old[1].clone(), old[0].clone()]);
    assert!(!dir.join(&old[0]).exists() && !dir.join(format!("{}.sha256", old[0])).exists());
    assert!(dir.join(&old[2]).exists() && dir.join("orca-db-milestone.tar.gz").exists());
    // auto_cleanup in config does the same without the flag.
    env.config(&format!(
        r#"{{"volume_filter": "{app}.apphost", "min_size_warning_mb": 0, "auto_cleanup": true, "retention": {{"max_count": 1, "max_age_days": 0}}}}"#
    ));
    let rec = backup(&env, &["--name", "y"]).ok();
    let pruned = rec["pruned"].as_array().unwrap();
    assert_eq!(pruned.len(), 1, "{rec}");
    assert!(pruned[0]["path"].as_str().unwrap().ends_with(&old[2]));
    assert_eq!(pruned[0]["reason"], "beyond newest 1");
}

#[test]
fn failures_propagate_with_the_failing_steps_code() {
    need_docker!();
    let env = Env::new();
    env.config(&format!(
        r#"{{"volume_filter": "orcat{}.apphost"}}"#,
        &unique_hex10()[..8]
    ));
    let run = backup(&env, &[]);
    assert!(
        run.stderr
            .contains("❌ Backup failed: Orca SQL volume not found. Is Orca installed?"),
        "{}",
        run.stderr
    );
    let rec = run.fails_with(4);
    assert_eq!(rec["error"]["step"], "orca-find-volume");

    let run = Run::from_output(
        Command::new(repo().join("scripts/orca-backup.sh"))
            .env("ORCA_BIN_DIR", bin_dir())
            .env("ORCA_HOME", env.base())
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    assert!(
        run.stderr
            .contains("❌ Backup failed: Docker is not reachable"),
        "{}",
        run.stderr
    );
    run.fails_with(3);
    assert!(!env.backups().exists() || files_in(&env.backups()).iter().all(|f| f.starts_with('.')));
}

#[test]
fn help_and_bad_options() {
    let out = Command::new(repo().join("scripts/orca-backup.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--name",
        "--volume",
        "--overwrite",
        "--stop",
        "--compression",
        "--auto-cleanup",
    ] {
        assert!(text.contains(opt), "{opt} missing from --help");
    }
    let out = Command::new(repo().join("scripts/orca-backup.sh"))
        .arg("--frob")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_demo_runs_and_leaves_nothing_behind() {
    need_docker!();
    // What other tests create anyway exists before, so the image list must not change.
    busybox_image();
    empty_image();
    let env = Env::new();
    let warm = TestVolume::named(&unique("orca-test-demo-warm"));
    export_run(&env, &warm.name, &env.backups().join("orca-db-w.tar"), &[]).ok();
    let images = || {
        let mut list: Vec<String> =
            docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])
                .lines()
                .map(String::from)
                .collect();
        list.sort();
        list
    };
    let before = images();
    let out = Command::new(repo().join("scripts/demo.sh"))
        .env("ORCA_BIN_DIR", bin_dir())
        .env("DEMO_SIZE_MIB", "16")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed:\n{stderr}");
    assert!(
        stderr.contains("✅ Backup complete!") && stderr.contains("orca-db-demo-milestone.tar.zst"),
        "{stderr}"
    );
    assert!(
        stderr.contains("checked them against the archive"),
        "{stderr}"
    );
    let created: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("removed volume "))
        .collect();
    assert_eq!(created.len(), 2, "{stderr}");
    for v in &created {
        assert!(v.starts_with("orca-demo"), "{v}");
        assert!(
            !docker(&["volume", "inspect", v]).status.success(),
            "volume {v} left behind"
        );
        assert!(
            docker_ok(&["ps", "-aq", "--filter", &format!("volume={v}")])
                .trim()
                .is_empty()
        );
    }
    let home = stderr
        .lines()
        .find_map(|l| l.strip_prefix("removed ").filter(|p| p.starts_with('/')))
        .unwrap();
    assert!(!Path::new(home).exists());
    assert_eq!(
        images(),
        before,
        "the demo left an image behind or removed one it did not create"
    );
}

#[test]
fn the_workflow_copies_off_the_machine_with_copy_to() {
    need_docker!();
    let env = Env::new();
    let (_app, _vol) = app_with_volume(&env);
    let nas = tempfile::tempdir().unwrap();
    let run = backup(
        &env,
        &[
            "--name",
            "offsite",
            "--copy-to",
            nas.path().to_str().unwrap(),
        ],
    );
    let stderr = run.stderr.clone();
    let rec = run.ok();
    let copy = nas.path().join("orca-db-offsite.tar.gz");
    assert_eq!(rec["copies"][0]["url"], copy.to_str().unwrap());
    assert_eq!(rec["copies"][0]["verified"], true);
    assert!(
        stderr.contains(&format!(
            "  Copied to: {} (read back, SHA-256 matches)",
            copy.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(env.backups().join("orca-db-offsite.tar.gz")).unwrap()
    );
    // Without --copy-to nor copy_to, the copy step passes the record on.
    let rec = backup(&env, &["--name", "local-only"]).ok();
    assert!(rec.get("copies").is_none(), "{rec}");
    // A destination that is not there fails the workflow with its code.
    let run = backup(
        &env,
        &["--name", "nowhere", "--copy-to", "/nonexistent/share"],
    );
    assert!(run.stderr.contains("❌ Backup failed"), "{}", run.stderr);
    run.fails_with(17);
}
