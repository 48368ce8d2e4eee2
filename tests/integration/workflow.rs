//! `orca-backup`, the workflow as one native command, against the pipe of
//! the step-by-step tools it replaces: the same archive and the same record
//! for the same options, and the first failing step's exit code and name.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::need_docker;

fn sha256_of(path: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Fields that differ between two runs by nature (names, times, paths).
const VARYING: &[&str] = &[
    "backup_name",
    "backup_path",
    "checksum_path",
    "manifest_path",
    "duration_ms",
    "verified_at",
    "verify_duration_ms",
];

#[test]
fn one_command_gives_what_the_pipe_gives() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-flow"));
    vol.fill_sql_like(2 << 20, 11);
    let piped = env
        .pipeline(&format!(
            "orca-find-volume --volume {v} | orca-backup-name --name piped --compression zstd \
             | orca-export --tag t1 | orca-verify | orca-copy --if-configured \
             | orca-prune --only-if-auto-cleanup | orca-report",
            v = vol.name
        ))
        .ok();
    let run = env.run(
        "orca-backup",
        &[
            "--volume",
            &vol.name,
            "--name",
            "native",
            "--compression",
            "zstd",
            "--tag",
            "t1",
        ],
    );
    assert!(run.stderr.contains("✅ Backup complete!"), "{}", run.stderr);
    assert!(run.stderr.contains("  Copy: offline"), "{}", run.stderr);
    let native = run.ok();
    assert_eq!(native["backup_name"], "orca-db-native.tar.zst");
    assert_eq!(native["message"], "Backup created successfully");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&native),
        keys(&piped),
        "the records have different fields"
    );
    for (k, v) in native.as_object().unwrap() {
        if VARYING.contains(&k.as_str()) || k == "checks" {
            continue;
        }
        assert_eq!(&piped[k], v, "field {k} differs");
    }
    assert_eq!(
        sha256_of(native["backup_path"].as_str().unwrap()),
        sha256_of(piped["backup_path"].as_str().unwrap()),
        "the archives differ"
    );
}

#[test]
fn a_failure_keeps_the_first_failing_steps_code_and_name() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-flowfail"));
    vol.sh("echo x > /v/f");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--volume", "orca-test-no-such-volume"],
            4,
            "orca-find-volume",
        ),
        (
            vec!["--volume", &vol.name, "--name", "taken"],
            5,
            "orca-backup-name",
        ),
        (
            vec![
                "--volume",
                &vol.name,
                "--name",
                "enc",
                "--recipient",
                "age1notakey",
            ],
            2,
            "orca-export",
        ),
        (
            vec![
                "--volume",
                &vol.name,
                "--name",
                "drilled",
                "--drill-image",
                "orca-test-no-such-image:1",
            ],
            2,
            "orca-drill",
        ),
        (
            vec![
                "--volume",
                &vol.name,
                "--name",
                "copied",
                "--copy-to",
                "file:///nonexistent-orca-dir/x",
            ],
            17,
            "orca-copy",
        ),
        (
            vec!["--volume", &vol.name, "--stop", "--consistency", "hot"],
            2,
            "orca-export",
        ),
    ];
    env.run("orca-backup", &["--volume", &vol.name, "--name", "taken"])
        .ok();
    for (args, code, step) in cases {
        let run = env.run("orca-backup", &args);
        assert!(
            run.stderr.contains("❌ Backup failed: "),
            "{args:?}: {}",
            run.stderr
        );
        let rec = run.fails_with(code);
        assert_eq!(rec["error"]["step"], step, "{args:?}: {rec}");
    }
    // The backup itself is there when a later step failed.
    assert!(Path::new(&env.backups().join("orca-db-copied.tar.gz")).exists());
}
