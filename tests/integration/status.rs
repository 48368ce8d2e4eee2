//! orca-status: the health of real backups (made, verified and copied by
//! orca-backup on the real engine, a restore really interrupted), as a
//! check (exit 23 when stale), a table, and a Prometheus textfile parsed by
//! prometheus-client's own parser (PyPI).

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::common::*;
use crate::need_docker;

/// The samples of a Prometheus text file, as prometheus-client's parser
/// reads them: `name{labels as JSON}` -> value.
fn parse_prometheus(path: &std::path::Path) -> BTreeMap<String, f64> {
    let py = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert fam.type == "gauge", fam
    for s in fam.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(path)
        .output()
        .expect("python3 runs (the CI installs prometheus-client with pip)");
    assert!(
        out.status.success(),
        "prometheus-client's parser refused the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn time_of(v: &Value) -> i64 {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
        .timestamp()
}

#[test]
fn fresh_and_stale_backups_copies_interruptions_and_the_prometheus_file() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 5}"#);
    // Nothing yet: a check fails, naming what to do.
    env.run("orca-status", &["--max-age", "1d"])
        .fails_saying(23, "no backup in");
    let run = env.run("orca-status", &["--max-drill-age", "1d"]);
    let rec = run.fails_saying(23, "no drill has passed");
    assert!(
        rec["problems"].to_string().contains("no backup in"),
        "{rec}"
    );
    let rec = env.run("orca-status", &[]).ok();
    assert_eq!(rec["last_backup"], Value::Null);
    assert_eq!(rec["healthy"], false);
    assert!(
        rec["problems"][0]
            .as_str()
            .unwrap()
            .contains("no backup in")
    );

    let vol = TestVolume::named(&unique("orca-test-status"));
    vol.sh("echo one > /v/f");
    let offsite = env.base().join("offsite");
    std::fs::create_dir(&offsite).unwrap();
    let made = env
        .run(
            "orca-backup",
            &[
                "--volume",
                &vol.name,
                "--name",
                "first",
                "--copy-to",
                offsite.to_str().unwrap(),
            ],
        )
        .ok();
    let rec = env.run("orca-status", &["--max-age", "1h"]).ok();
    assert_eq!(rec["healthy"], true, "{rec}");
    assert_eq!(rec["stale"], false);
    assert_eq!(rec["count"], 1);
    let last = &rec["last_backup"];
    assert_eq!(last["name"], "orca-db-first.tar.gz");
    assert!(last["age_seconds"].as_i64().unwrap() < 600, "{last}");
    assert_eq!(rec["last_verified"]["name"], "orca-db-first.tar.gz");
    assert_eq!(rec["last_drill"], Value::Null);
    let copies = rec["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{rec}");
    assert_eq!(copies[0]["destination"], offsite.to_str().unwrap());
    assert_eq!(copies[0]["verified"], true);
    assert_eq!(rec["used_bytes"], made["size_bytes"]);
    assert!(rec["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(rec["interrupted_restores"], serde_json::json!([]));

    // No drill has passed: --max-drill-age says so.
    env.run("orca-status", &["--max-drill-age", "7d"])
        .fails_saying(23, "no drill has passed");

    // A restore's safety copy of what it replaced is newer, but it is not
    // a backup anyone made: the last backup stays the same.
    env.run(
        "orca-restore",
        &[made["backup_path"].as_str().unwrap(), "--volume", &vol.name],
    )
    .ok();
    assert!(
        files_in(&env.backups())
            .iter()
            .any(|f| f.starts_with("orca-db-pre-restore-"))
    );
    let rec = env.run("orca-status", &[]).ok();
    assert_eq!(rec["last_backup"]["name"], "orca-db-first.tar.gz");
    assert_eq!(rec["count"], 2);

    // A restore killed half-way leaves its journal: a problem to see.
    let (child, rx) = spawn_paused(
        env.cmd(
            "orca-restore",
            &[made["backup_path"].as_str().unwrap(), "--volume", &vol.name],
        ),
        "journaled",
    );
    signal(&child, "-KILL");
    let _ = finish_paused(child, rx);
    // orca-status reads the journal in the backups directory. The engine's
    // lock of the killed restore is removed at once: orca-list in the tests
    // that run beside this one would list it as an interrupted restore.
    let filter = format!("label=org.orca-backup.lock={}", vol.name);
    let ids = docker(&["ps", "-aq", "--filter", &filter]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        docker(&["rm", "-f", id]);
    }

    // Two days later, the same backups are stale.
    let later = (Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = prom_dir.path().join("orca.prom");
    let run = env.run(
        "orca-status",
        &[
            "--max-age",
            "1d",
            "--now",
            &later,
            "--prometheus",
            prom.to_str().unwrap(),
        ],
    );
    let rec = run.fails_saying(23, "orca-db-first.tar.gz");
    assert!(
        rec["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 d 0 h old")
    );
    assert_eq!(rec["error"]["code"], "stale");
    assert_eq!(rec["stale"], true);
    assert_eq!(rec["healthy"], false);
    let interrupted = rec["interrupted_restores"].as_array().unwrap();
    assert_eq!(interrupted.len(), 1, "{rec}");
    assert_eq!(interrupted[0]["volume"], vol.name);
    assert!(
        rec["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("orca-restore --resume")),
        "{rec}"
    );

    // The textfile: written whole (nothing else in its directory), parsed
    // by Prometheus' own client library.
    assert_eq!(files_in(prom_dir.path()), vec!["orca.prom".to_string()]);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&prom).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the exporter's user must read it");
    }
    let m = parse_prometheus(&prom);
    assert_eq!(m["orca_backup_stale{}"], 1.0);
    assert_eq!(m["orca_backup_count{}"], 2.0);
    assert_eq!(m["orca_backup_interrupted_restores{}"], 1.0);
    assert_eq!(
        m["orca_backup_last_success_timestamp_seconds{}"] as i64,
        time_of(&rec["last_backup"]["at"])
    );
    assert_eq!(
        m["orca_backup_last_verified_timestamp_seconds{}"] as i64,
        time_of(&rec["last_verified"]["at"])
    );
    // As Python's json.dumps writes the labels.
    let copy_key = format!(
        "orca_backup_last_copy_timestamp_seconds{{\"destination\": \"{}\"}}",
        offsite.display()
    );
    assert_eq!(m[&copy_key] as i64, time_of(&copies[0]["at"]));
    assert!(m["orca_backup_free_bytes{}"] > 0.0);
    assert!(!m.contains_key("orca_backup_last_drill_success_timestamp_seconds{}"));

    // For a person.
    let run = env.run("orca-status", &["--format", "table"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Last backup:       orca-db-first.tar.gz"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Interrupted:       1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("orca-restore --resume"),
        "{}",
        run.stdout
    );

    // Bad input: named.
    env.run("orca-status", &["--max-age", "soon"])
        .fails_saying(2, "--max-age \"soon\"");
    env.run(
        "orca-status",
        &["--prometheus", "/nonexistent-dir/orca.prom"],
    )
    .fails_saying(2, "/nonexistent-dir");
    let link = prom_dir.path().join("link.prom");
    std::os::unix::fs::symlink(&prom, &link).unwrap();
    env.run("orca-status", &["--prometheus", link.to_str().unwrap()])
        .fails_saying(2, "not a regular file");
    env.run("orca-status", &["--backups-dir", "/nonexistent-backups"])
        .fails_saying(2, "is not a directory");

    // Put the volume back for the next tests.
    env.run("orca-restore", &["--rollback", "--volume", &vol.name])
        .ok();
}
