//! The record contract, exit codes, config, orca-find-volume and orca-backup-name.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::need_docker;

fn unique_app() -> String {
    format!("orcat{}", &unique_hex10()[..8])
}

#[test]
fn every_tool_has_help_with_exit_status_and_version() {
    let env = Env::new();
    for tool in TOOLS {
        let help = env.run(tool, &["--help"]);
        assert_eq!(help.code, 0, "{tool}");
        assert!(
            help.stdout.contains("EXIT STATUS:"),
            "{tool} --help lacks EXIT STATUS"
        );
        assert!(help.stdout.contains("130  interrupted"), "{tool}");
        let version = env.run(tool, &["--version"]);
        assert_eq!(version.code, 0);
        assert!(
            version.stdout.starts_with(tool),
            "{tool}: {}",
            version.stdout
        );
    }
}

#[test]
fn every_tool_prints_completions() {
    let env = Env::new();
    for tool in TOOLS {
        for shell in ["bash", "zsh", "fish", "powershell"] {
            let run = env.run(tool, &["--completions", shell]);
            assert_eq!(run.code, 0, "{tool} {shell}");
            assert!(run.stdout.contains(tool), "{tool} {shell}");
        }
    }
}

#[test]
fn usage_errors_write_a_failed_record_and_exit_2() {
    let env = Env::new();
    for tool in TOOLS {
        let run = env.run(tool, &["--no-such-flag"]);
        let rec = run.fails_with(2);
        assert_eq!(rec["error"]["code"], "usage");
        assert_eq!(rec["error"]["step"], *tool);
    }
}

#[test]
fn bad_stdin_is_a_usage_error_naming_the_problem() {
    let env = Env::new();
    for (input, needle) in [
        ("[1, 2]", "an array"),
        ("{\"volume\": ", "not valid JSON"),
        ("\"text\"", "a string"),
        ("{\"compression\": 42}", "'compression'"),
    ] {
        let run = env.run_with("orca-backup-name", &[], input);
        let msg = run.message();
        let rec = run.fails_with(2);
        assert_eq!(rec["error"]["code"], "usage");
        assert!(msg.contains(needle), "{input}: {msg}");
    }
}

#[test]
fn a_failed_record_passes_through_unchanged_with_its_code() {
    let env = Env::new();
    let failed = r#"{"success":false,"error":{"code":"volume_not_found","message":"gone","exit_code":4,"step":"orca-find-volume"},"extra":[1]}"#;
    // orca-guard and orca-backup read no record: they run steps, they are
    // not one.
    for tool in TOOLS.iter().filter(|t| {
        !matches!(
            **t,
            "orca-guard" | "orca-backup" | "orca-schedule" | "orca-status"
        )
    }) {
        // The tools that start a pipeline read a record only when told (`-`).
        let args: &[&str] = if matches!(*tool, "orca-find-volume" | "orca-list") {
            &["-"]
        } else {
            &[]
        };
        let run = env.run_with(tool, args, failed);
        assert_eq!(run.code, 4, "{tool}: {}", run.stderr);
        let want: Value = serde_json::from_str(failed).unwrap();
        assert_eq!(run.json, want, "{tool} changed the failed record");
    }
}

#[test]
fn config_errors_name_file_key_and_line() {
    let env = Env::new();
    env.config("{\n  \"retention\": {\n    \"max_count\": -3\n  }\n}\n");
    let run = env.run("orca-backup-name", &[]);
    let msg = run.message();
    run.fails_with(2);
    assert!(
        msg.contains("config.json")
            && msg.contains("line 3")
            && msg.contains("retention.max_count"),
        "{msg}"
    );
    // Unknown keys only warn.
    env.config("{\"colour\": \"blue\"}");
    let run = env.run("orca-backup-name", &[]);
    assert!(
        run.stderr.contains("unknown key 'colour'"),
        "{}",
        run.stderr
    );
    run.ok();
    // An explicitly named config must exist.
    let run = env.run("orca-backup-name", &["--config", "/nonexistent/orca.json"]);
    run.fails_saying(2, "/nonexistent/orca.json");
}

#[test]
fn config_and_flags_precedence_for_names() {
    let env = Env::new();
    env.config(r#"{"compression": "zstd"}"#);
    let rec = env
        .run("orca-backup-name", &["--now", "2026-06-30T12:00:00Z"])
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-2026-06-30-12-00.tar.zst");
    // The record beats config; the flag beats the record.
    let rec = env
        .run_with(
            "orca-backup-name",
            &["--now", "2026-06-30T12:00:00Z"],
            r#"{"compression":"none"}"#,
        )
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-2026-06-30-12-00.tar");
    let rec = env
        .run_with(
            "orca-backup-name",
            &["--compression", "gzip", "--now", "2026-06-30T12:00:00Z"],
            r#"{"compression":"none"}"#,
        )
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-2026-06-30-12-00.tar.gz");
    assert_eq!(rec["compression"], "gzip");
}

#[test]
fn default_name_is_timestamped_in_a_private_backups_dir() {
    let env = Env::new();
    let rec = env
        .run("orca-backup-name", &["--now", "2025-10-31T14:30:59Z"])
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-2025-10-31-14-30.tar.gz");
    assert_eq!(rec["kind"], "timestamped");
    assert_eq!(rec["overwrite"], false);
    let backups = env.backups();
    assert_eq!(rec["backups_dir"], backups.to_str().unwrap());
    assert_eq!(
        rec["backup_path"],
        backups
            .join("orca-db-2025-10-31-14-30.tar.gz")
            .to_str()
            .unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn hostile_names_become_plain_files_inside_the_backups_dir() {
    let env = Env::new();
    let long = "x".repeat(300);
    let names = [
        "../../etc/passwd",
        "a/b:c*d?e\"f<g>h|i",
        "CON",
        "nul.txt",
        &long,
        "line\nbreak",
        "🚀 launch",
        "2025-10-31-14-30",
        " trailing dots... ",
    ];
    let backups = env.backups();
    for name in names {
        let rec = env.run("orca-backup-name", &["--name", name]).ok();
        let path = Path::new(rec["backup_path"].as_str().unwrap());
        let file = rec["backup_name"].as_str().unwrap();
        assert_eq!(
            path.parent().unwrap(),
            backups,
            "{name:?} escaped: {}",
            path.display()
        );
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), file);
        assert!(
            file.starts_with("orca-db-") && file.ends_with(".tar.gz"),
            "{file}"
        );
        assert!(file.len() <= 200, "{file}");
        assert!(
            !file.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|', '\n']),
            "{file:?}"
        );
        assert_eq!(rec["kind"], "named", "{name:?}");
        // It can really be created there.
        std::fs::write(path, b"x").unwrap();
        std::fs::remove_file(path).unwrap();
    }
    for bad in ["..", ".", "   ", ""] {
        env.run("orca-backup-name", &["--name", bad]).fails_with(2);
    }
}

#[test]
fn collision_fails_with_5_and_leaves_the_file_identical() {
    let env = Env::new();
    let first = env.run("orca-backup-name", &["--name", "milestone"]).ok();
    let path = first["backup_path"].as_str().unwrap().to_string();
    std::fs::write(&path, b"precious bytes").unwrap();
    let run = env.run("orca-backup-name", &["--name", "milestone"]);
    let msg = run.message();
    let rec = run.fails_with(5);
    assert_eq!(rec["error"]["code"], "already_exists");
    assert!(msg.contains(&path) && msg.contains("--overwrite"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious bytes");
    let rec = env
        .run("orca-backup-name", &["--name", "milestone", "--overwrite"])
        .ok();
    assert_eq!(rec["overwrite"], true);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"precious bytes",
        "naming never touches files"
    );
}

#[test]
fn collision_asks_on_the_terminal() {
    // `script` gives the tool a terminal while its stdin is a pipe.
    let env = Env::new();
    let rec = env.run("orca-backup-name", &["--name", "asked"]).ok();
    let path = rec["backup_path"].as_str().unwrap().to_string();
    std::fs::write(&path, b"old").unwrap();
    for (answer, want_code, want_overwrite) in [("y\n", 0, true), ("n\n", 5, false)] {
        let cmd = format!(
            "echo '{{}}' | {} --name asked",
            bin("orca-backup-name").display()
        );
        let run = run_with_stdin(
            {
                let mut c = std::process::Command::new("script");
                c.args(["-qec", &cmd, "/dev/null"])
                    .env("ORCA_HOME", env.base())
                    .env_remove("ORCA_CONFIG");
                c
            },
            answer,
        );
        assert!(
            run.stdout.contains("overwrite? [y/N]"),
            "no prompt: {}",
            run.stdout
        );
        let json_line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or("{}");
        // A terminal gets the record pretty-printed; take it from the first brace.
        let start = run.stdout.find('{').unwrap();
        let rec: Value = serde_json::from_str(run.stdout[start..].trim())
            .unwrap_or_else(|_| serde_json::from_str(json_line).expect("a JSON record"));
        assert_eq!(run.code, want_code, "{}", run.stdout);
        if want_code == 0 {
            assert_eq!(rec["overwrite"], want_overwrite);
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}

#[test]
fn find_volume_with_no_match_says_so_and_names_close_volumes() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let run = env.run("orca-find-volume", &[]);
    let msg = run.message();
    let rec = run.fails_with(4);
    assert_eq!(rec["error"]["code"], "volume_not_found");
    assert!(
        msg.starts_with("Orca SQL volume not found. Is Orca installed?"),
        "{msg}"
    );
    // A volume that does not match the pattern but looks close is suggested.
    let close = TestVolume::named(&format!("{app}.apphost-orca-cache"));
    let msg = env.run("orca-find-volume", &[]).message();
    assert!(msg.contains(&close.name), "{msg}");
}

#[test]
fn find_volume_with_one_match_reports_it_and_its_containers() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let vol = TestVolume::aspire(&app);
    let rec = env.run("orca-find-volume", &[]).ok();
    assert_eq!(rec["volume"], vol.name);
    assert_eq!(rec["in_use_by"], serde_json::json!([]));
    assert_eq!(rec["candidates"].as_array().unwrap().len(), 1);
    let sql = TestContainer::created_on(&vol.name);
    let rec = env.run("orca-find-volume", &[]).ok();
    let users = rec["in_use_by"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["name"], sql.name);
    assert_eq!(users[0]["id"], sql.id());
    assert_eq!(users[0]["image"], BUSYBOX_IMAGE);
    assert_eq!(users[0]["state"], "created");
}

#[test]
fn find_volume_accepts_old_aspire_names_without_hash() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let vol = TestVolume::named(&format!("{app}.apphost-sql-data"));
    assert_eq!(env.run("orca-find-volume", &[]).ok()["volume"], vol.name);
}

#[test]
fn find_volume_prefers_running_then_used_then_newest() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let oldest = TestVolume::aspire(&app);
    let middle = TestVolume::aspire(&app);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newest = TestVolume::aspire(&app);
    // Nobody uses any: the newest wins, and all are candidates.
    let run = env.run("orca-find-volume", &[]);
    assert!(run.stderr.contains("3 volumes match"), "{}", run.stderr);
    let rec = run.ok();
    assert_eq!(rec["volume"], newest.name);
    assert_eq!(rec["candidates"].as_array().unwrap().len(), 3);
    // A container (stopped) on the middle one beats newness.
    let _stopped = TestContainer::created_on(&middle.name);
    assert_eq!(env.run("orca-find-volume", &[]).ok()["volume"], middle.name);
    // A running one on the oldest beats everything.
    let running = TestContainer::running_on(&oldest.name);
    let run = env.run("orca-find-volume", &[]);
    assert!(
        run.stderr.contains(&running.name),
        "the choice is explained: {}",
        run.stderr
    );
    let rec = run.ok();
    assert_eq!(rec["volume"], oldest.name);
    assert_eq!(rec["in_use_by"][0]["state"], "running");
    // Deterministic: the same answer again.
    assert_eq!(env.run("orca-find-volume", &[]).ok()["volume"], oldest.name);
}

#[test]
fn find_volume_pinned_with_flag() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let _a = TestVolume::aspire(&app);
    let other = TestVolume::named(&unique("orca-test-any-name"));
    let rec = env.run("orca-find-volume", &["--volume", &other.name]).ok();
    assert_eq!(rec["volume"], other.name);
    let run = env.run(
        "orca-find-volume",
        &["--volume", "orca-test-no-such-volume-xyz"],
    );
    run.fails_saying(4, "orca-test-no-such-volume-xyz");
}

#[test]
fn docker_unreachable_is_exit_3_with_advice() {
    need_docker!();
    let env = Env::new();
    let run = Run::from_output(
        env.cmd("orca-find-volume", &[])
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .output()
            .unwrap(),
    );
    let msg = run.message();
    let rec = run.fails_with(3);
    assert_eq!(rec["error"]["code"], "docker_unavailable");
    // DOCKER_HOST chose it: check or unset that, not "start Docker".
    assert!(msg.contains("unset DOCKER_HOST"), "{msg}");
    assert!(msg.contains("unix:///nonexistent.sock"), "{msg}");
}

#[test]
fn the_tools_need_no_docker_cli() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-nocli"));
    let rec = Run::from_output(
        env.cmd("orca-find-volume", &["--volume", &vol.name])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(rec["volume"], vol.name);
}

#[test]
fn errors_propagate_through_a_real_pipe() {
    need_docker!();
    let env = Env::new();
    let run = env.pipeline(
        "orca-find-volume --volume orca-test-no-such-volume-xyz | orca-backup-name --name x",
    );
    let rec = run.fails_with(4);
    assert_eq!(
        rec["error"]["step"], "orca-find-volume",
        "the first failure is reported, not a second one"
    );
    assert!(!env.backups().join("orca-db-x.tar.gz").exists());
}

#[test]
fn a_successful_pipe_accumulates_fields() {
    need_docker!();
    let env = Env::new();
    let app = unique_app();
    env.config_for_app(&app);
    let vol = TestVolume::aspire(&app);
    let rec = env
        .pipeline("orca-find-volume | orca-backup-name --name before-migration")
        .ok();
    assert_eq!(rec["volume"], vol.name);
    assert_eq!(rec["backup_name"], "orca-db-before-migration.tar.gz");
    assert_eq!(rec["kind"], "named");
    assert!(rec["candidates"].is_array() && rec["in_use_by"].is_array());
}
