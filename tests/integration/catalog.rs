//! Manifests beside archives, and orca-list.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::need_docker;

fn manifest(archive: &Path) -> Value {
    let text = std::fs::read_to_string(format!("{}.json", archive.display()))
        .expect("manifest beside the archive");
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn list(env: &Env, args: &[&str]) -> Value {
    env.run("orca-list", args).ok()
}

fn names(rec: &Value) -> Vec<String> {
    rec["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn manifests_are_written_for_every_compression_and_read_back() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-manifest"));
    vol.fill_sql_like(2 << 20, 4);
    let idle = TestContainer::created_on(&vol.name);
    for (ext, compression) in [("tar.gz", "gzip"), ("tar.zst", "zstd"), ("tar", "none")] {
        // One name is one backup: each compression gets its own.
        let out = env.backups().join(format!("orca-db-m-{compression}.{ext}"));
        let rec = env
            .run(
                "orca-export",
                &[
                    "--volume",
                    &vol.name,
                    "--output",
                    out.to_str().unwrap(),
                    "--description",
                    "before the migration",
                    "--tag",
                    "migration",
                    "--tag",
                    "v2",
                ],
            )
            .ok();
        let m = manifest(&out);
        assert_eq!(rec["manifest_path"], format!("{}.json", out.display()));
        assert_eq!(m["format_version"], 1);
        assert_eq!(m["backup_name"], format!("orca-db-m-{compression}.{ext}"));
        assert_eq!(m["volume"], vol.name);
        assert_eq!(m["volume_driver"], "local");
        assert_eq!(m["volume_labels"]["org.orca-backup.test"], "true");
        assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(!m["created_at_local"].as_str().unwrap().is_empty());
        assert_eq!(m["kind"], "named");
        assert_eq!(m["description"], "before the migration");
        assert_eq!(m["tags"], serde_json::json!(["migration", "v2"]));
        assert_eq!(m["compression"], compression);
        assert_eq!(m["size_bytes"], std::fs::metadata(&out).unwrap().len());
        assert_eq!(m["sha256"], rec["sha256"]);
        assert_eq!(m["uncompressed_bytes"], rec["uncompressed_bytes"]);
        assert_eq!(m["entries"], rec["entries"]);
        assert_eq!(m["consistent"], true);
        assert_eq!(m["containers"][0]["name"], idle.name);
        assert_eq!(m["containers"][0]["image"], BUSYBOX_IMAGE);
        assert_eq!(m["containers"][0]["stopped_for_backup"], false);
        assert_eq!(m["toolkit_version"], env!("CARGO_PKG_VERSION"));
        assert!(!m["docker_version"].as_str().unwrap().is_empty());
        assert_eq!(m["verification"], Value::Null);
        // orca-verify checks the archive against it and records the result.
        let v = env.run("orca-verify", &[out.to_str().unwrap()]).ok();
        assert_eq!(v["checks"][5]["name"], "manifest");
        assert_eq!(v["checks"][5]["status"], "pass");
        let m = manifest(&out);
        assert_eq!(m["verification"]["verified"], true);
        assert!(
            m["verification"]["verified_at"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }
    // A live copy is recorded as such.
    let _running = TestContainer::running_on(&vol.name);
    let out = env.backups().join("orca-db-live.tar.gz");
    env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    )
    .ok();
    assert_eq!(manifest(&out)["consistent"], false);
}

#[test]
fn verify_fails_when_the_archive_disagrees_with_its_manifest() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-mdis"));
    vol.sh("echo a > /v/a.mdf");
    let out = env.backups().join("orca-db-mdis.tar.gz");
    env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    )
    .ok();
    let mut m = manifest(&out);
    m["entries"] = serde_json::json!(999);
    std::fs::write(
        format!("{}.json", out.display()),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let run = env.run("orca-verify", &[out.to_str().unwrap()]);
    let msg = run.message();
    run.fails_with(6);
    assert!(
        msg.contains("manifest check") && msg.contains("999"),
        "{msg}"
    );
    assert_eq!(manifest(&out)["verification"]["verified"], false);
    assert_eq!(
        manifest(&out)["verification"]["failed_checks"],
        serde_json::json!(["manifest"])
    );
}

#[test]
fn corrupt_or_foreign_manifests_are_warnings_never_trusted() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-mbad"));
    vol.sh("echo a > /v/a.mdf");
    let corrupt = env.backups().join("orca-db-corrupt.tar.gz");
    let foreign = env.backups().join("orca-db-foreign.tar.gz");
    for out in [&corrupt, &foreign] {
        export_run(&env, &vol.name, out, &["--tag", "t"]).ok();
    }
    std::fs::write(
        format!("{}.json", corrupt.display()),
        b"{\"format_version\": 1, \"backup_na",
    )
    .unwrap();
    std::fs::write(
        format!("{}.json", foreign.display()),
        br#"{"tool":"someone else","tags":["t"]}"#,
    )
    .unwrap();
    for out in [&corrupt, &foreign] {
        let run = env.run("orca-verify", &[out.to_str().unwrap()]);
        assert!(run.stderr.contains("ignored"), "{}", run.stderr);
        let rec = run.ok();
        assert_eq!(rec["checks"][5]["status"], "warn");
    }
    // The foreign file is left as it was (verify rewrites only its own manifests).
    assert_eq!(
        std::fs::read(format!("{}.json", foreign.display())).unwrap(),
        br#"{"tool":"someone else","tags":["t"]}"#
    );
    let rec = list(&env, &[]);
    assert_eq!(rec["count"], 2);
    for b in rec["backups"].as_array().unwrap() {
        assert_eq!(b["has_manifest"], false);
        assert!(b["manifest_warning"].as_str().unwrap().contains("ignored"));
        assert_eq!(
            b["tags"],
            serde_json::json!([]),
            "tags from an untrusted file are not shown"
        );
    }
    assert_eq!(rec["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(list(&env, &["--tag", "t"])["count"], 0);
}

#[test]
fn list_filters_and_formats() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let a = TestVolume::named(&unique("orca-test-la"));
    let b = TestVolume::named(&unique("orca-test-lb"));
    a.sh("echo a > /v/a.mdf");
    b.sh("echo b > /v/b.mdf");
    let backups = env.backups();
    let out = |n: &str| backups.join(n).to_str().unwrap().to_string();
    env.run(
        "orca-export",
        &[
            "--volume",
            &a.name,
            "--output",
            &out("orca-db-before-migration.tar.gz"),
            "--description",
            "before the v2 migration",
            "--tag",
            "migration",
        ],
    )
    .ok();
    env.run(
        "orca-export",
        &[
            "--volume",
            &b.name,
            "--output",
            &out("orca-db-2026-01-01-10-00.tar.zst"),
        ],
    )
    .ok();
    env.run(
        "orca-export",
        &[
            "--volume",
            &a.name,
            "--output",
            &out("orca-db-2020-05-05-05-05.tar"),
        ],
    )
    .ok();
    // An archive made by today's method: no manifest, no checksum.
    let seed_gz = todays_archive(&a.name);
    std::fs::write(backups.join("orca-db-2025-10-31-14-30.tar.gz"), &seed_gz).unwrap();
    // Things that are not backups are not listed.
    std::fs::write(backups.join("notes.txt"), b"x").unwrap();
    std::fs::write(backups.join("orca-db-z.tar.gz.1a2b3c.incomplete"), b"x").unwrap();

    let all = list(&env, &[]);
    assert_eq!(all["count"], 4);
    // Newest first: the named one was made now.
    assert_eq!(
        names(&all),
        [
            "orca-db-before-migration.tar.gz",
            "orca-db-2026-01-01-10-00.tar.zst",
            "orca-db-2025-10-31-14-30.tar.gz",
            "orca-db-2020-05-05-05-05.tar"
        ]
    );
    assert_eq!(all["incomplete"].as_array().unwrap().len(), 1);
    let seed_entry = &all["backups"][2];
    assert_eq!(seed_entry["has_manifest"], false);
    assert_eq!(seed_entry["has_checksum"], false);
    assert_eq!(seed_entry["consistent"], Value::Null);
    assert_eq!(seed_entry["kind"], "timestamped");
    assert_eq!(seed_entry["time"], "2025-10-31T14:30:00Z");
    let named = &all["backups"][0];
    assert_eq!(named["description"], "before the v2 migration");
    assert_eq!(named["volume"], a.name);
    assert_eq!(named["has_checksum"], true);
    assert_eq!(named["has_manifest"], true);
    assert_eq!(named["consistent"], true);
    assert_eq!(named["verified"], Value::Null);

    assert_eq!(
        names(&list(&env, &["--tag", "migration"])),
        ["orca-db-before-migration.tar.gz"]
    );
    assert_eq!(list(&env, &["--kind", "named"])["count"], 1);
    assert_eq!(list(&env, &["--kind", "timestamped"])["count"], 3);
    assert_eq!(list(&env, &["--since", "2025-01-01"])["count"], 3);
    assert_eq!(list(&env, &["--since", "2026-01-01T09:00:00Z"])["count"], 2);
    assert_eq!(
        names(&list(&env, &["--volume", &b.name])),
        ["orca-db-2026-01-01-10-00.tar.zst"]
    );
    env.run("orca-list", &["--since", "last tuesday"])
        .fails_with(2);

    let table = env.run("orca-list", &["--format", "table"]);
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("DESCRIPTION"),
        "{}",
        table.stdout
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[1].starts_with("orca-db-before-migration.tar.gz")
            && lines[1].contains("offline")
            && lines[1].contains("before the v2 migration")
    );
    // Columns line up.
    let col = lines[0].find("KIND").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with("named") || l[col..].starts_with("timestamped"))
    );
}

#[test]
fn list_verify_flags_a_damaged_archive() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-lv"));
    vol.fill_sql_like(1 << 20, 9);
    let good = env.backups().join("orca-db-good.tar.gz");
    let bad = env.backups().join("orca-db-bad.tar.gz");
    for out in [&good, &bad] {
        env.run(
            "orca-export",
            &["--volume", &vol.name, "--output", out.to_str().unwrap()],
        )
        .ok();
    }
    let mut bytes = std::fs::read(&bad).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x33;
    std::fs::write(&bad, bytes).unwrap();
    let run = env.run("orca-list", &["--verify"]);
    let msg = run.message();
    let rec = run.fails_with(6);
    assert!(
        msg.contains("1 of 2") && msg.contains("orca-db-bad.tar.gz"),
        "{msg}"
    );
    let by_name = |n: &str| {
        rec["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("orca-db-good.tar.gz")["verified"], true);
    assert_eq!(by_name("orca-db-bad.tar.gz")["verified"], false);
    assert!(
        by_name("orca-db-bad.tar.gz")["failed_checks"]
            .as_array()
            .unwrap()
            .contains(&Value::from("integrity"))
    );
    // The result is remembered in the manifests, so a plain listing shows it.
    let rec = list(&env, &[]);
    assert_eq!(
        rec["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["verified"] == false)
            .count(),
        1
    );
}

#[test]
fn prune_removes_manifests_with_their_archives() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-pm"));
    vol.sh("echo a > /v/a.mdf");
    let old: PathBuf = env.backups().join("orca-db-2020-01-01-00-00.tar.gz");
    let new = env.backups().join("orca-db-2026-01-01-00-00.tar.gz");
    for out in [&old, &new] {
        env.run(
            "orca-export",
            &["--volume", &vol.name, "--output", out.to_str().unwrap()],
        )
        .ok();
    }
    env.run("orca-prune", &["--max-count", "1", "--max-age-days", "0"])
        .ok();
    let left = files_in(&env.backups());
    assert!(
        !left.iter().any(|f| f.starts_with("orca-db-2020")),
        "{left:?}"
    );
    for suffix in ["", ".sha256", ".json"] {
        assert!(
            left.contains(&format!("orca-db-2026-01-01-00-00.tar.gz{suffix}")),
            "{left:?}"
        );
    }
}

#[test]
fn restore_shows_what_the_manifest_says() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-rm"));
    vol.sh("echo a > /v/a.mdf");
    let out = env.backups().join("orca-db-shown.tar.gz");
    export_run(
        &env,
        &vol.name,
        &out,
        &["--description", "known good", "--tag", "golden"],
    )
    .ok();
    let run = env.run(
        "orca-restore",
        &[out.to_str().unwrap(), "--volume", &vol.name, "--dry-run"],
    );
    assert!(
        run.stderr.contains("known good")
            && run.stderr.contains("golden")
            && run.stderr.contains(&vol.name),
        "{}",
        run.stderr
    );
    let rec = run.ok();
    assert_eq!(rec["archive_manifest"]["description"], "known good");
}
