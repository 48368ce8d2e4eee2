//! Off-machine copies against real servers: SeaweedFS (S3) on 127.0.0.1,
//! started once for this test binary (a private one where a test stops it),
//! and directories. Copy, list, restore from the copy, prune remote (the dry
//! run equal to the real run), an encrypted backup end to end, a server
//! stopped mid-upload, wrong credentials, a missing bucket, an unreachable
//! endpoint, and a backup that failed verification.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orca_test_support::seaweed::{self, BUCKET, Seaweed};
use serde_json::Value;

use crate::common::*;
use crate::need_docker;

macro_rules! need_s3 {
    () => {
        if !seaweed::or_skip(module_path!()) {
            return;
        }
    };
}

/// `tool args...` in `env`, reaching `sw` with the right credentials.
fn s3_run(env: &Env, sw: &Seaweed, tool: &str, args: &[&str]) -> Run {
    let mut c = env.cmd(tool, args);
    c.envs(sw.env());
    Run::from_output(c.output().unwrap())
}

/// A volume of incompressible data (so the archive takes several parts).
fn random_volume(name: &str, mib: u32) -> TestVolume {
    let vol = TestVolume::named(&unique(name));
    vol.sh(&format!(
        "mkdir -p /v/data && dd if=/dev/urandom of=/v/data/orca.mdf bs=1M count={mib} 2>/dev/null && echo log > /v/data/orca_log.ldf"
    ));
    vol
}

fn env() -> Env {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    env
}

fn export(env: &Env, vol: &str, name: &str, extra: &[&str]) -> PathBuf {
    let out = env.backups().join(name);
    let rec = export_run(env, vol, &out, extra).ok();
    PathBuf::from(rec["backup_path"].as_str().unwrap())
}

/// The files of a directory but orca's lock (`.orca-backup.lock`).
fn visible(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|n| n != ".orca-backup.lock")
        .collect()
}

fn names_in(listing: &Value) -> Vec<String> {
    let mut v: Vec<String> = listing["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn outcome_names(rec: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = rec[key]
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

#[test]
fn s3_copies_list_restore_and_prune() {
    need_docker!();
    need_s3!();
    let sw = seaweed::shared();
    let env = env();
    let prefix = unique("team");
    let dest = format!("s3://{BUCKET}/{prefix}");
    let vol = TestVolume::named(&unique("orca-test-s3"));
    vol.fill_sql_like(6 << 20, 11);
    // Three timestamped backups a day apart and one named.
    let mut made = Vec::new();
    for name in [
        "orca-db-2026-11-01-10-00.tar.gz",
        "orca-db-2026-11-02-10-00.tar.gz",
        "orca-db-2026-11-03-10-00.tar.zst",
        "orca-db-before-migration.tar.gz",
    ] {
        made.push(export(&env, &vol.name, name, &[]));
    }
    for archive in &made {
        let rec = s3_run(
            &env,
            sw,
            "orca-copy",
            &[archive.to_str().unwrap(), "--to", &dest],
        )
        .ok();
        let copies = rec["copies"].as_array().unwrap();
        assert_eq!(copies.len(), 1);
        let name = archive.file_name().unwrap().to_str().unwrap();
        assert_eq!(copies[0]["url"], format!("{dest}/{name}"));
        assert_eq!(copies[0]["verified"], true);
        assert_eq!(
            copies[0]["size_bytes"],
            std::fs::metadata(archive).unwrap().len()
        );
        let sha = std::fs::read_to_string(format!("{}.sha256", archive.display())).unwrap();
        assert_eq!(copies[0]["sha256"].as_str().unwrap(), &sha[..64]);
        // The local manifest says where the copy is; so does the copy's.
        let m: Value =
            serde_json::from_slice(&std::fs::read(format!("{}.json", archive.display())).unwrap())
                .unwrap();
        assert_eq!(m["copies"][0]["url"], copies[0]["url"]);
        let (status, body) = sw.curl("GET", &format!("{prefix}/{name}.json"), None);
        assert_eq!(status, 200);
        let remote_m: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(remote_m["copies"][0]["url"], copies[0]["url"]);
        // What another client reads is byte for byte the archive.
        let (status, body) = sw.curl("GET", &format!("{prefix}/{name}"), None);
        assert_eq!(status, 200);
        assert_eq!(body, std::fs::read(archive).unwrap());
    }
    // A second copy of the same backup finds it there and checks it.
    let again = s3_run(
        &env,
        sw,
        "orca-copy",
        &[made[0].to_str().unwrap(), "--to", &dest],
    );
    assert!(again.stderr.contains("already there"), "{}", again.stderr);
    again.ok();
    // A copy damaged at the destination (its checksum intact): found, and
    // replaced with --overwrite.
    let first = made[0].file_name().unwrap().to_str().unwrap().to_string();
    let junk = vec![0x5au8; std::fs::metadata(&made[0]).unwrap().len() as usize];
    assert_eq!(
        sw.curl("PUT", &format!("{prefix}/{first}"), Some(&junk)).0,
        200
    );
    let run = s3_run(
        &env,
        sw,
        "orca-copy",
        &[made[0].to_str().unwrap(), "--to", &dest],
    );
    let msg = run.message();
    run.fails_with(6);
    assert!(
        msg.contains("damaged") && msg.contains("--overwrite"),
        "{msg}"
    );
    s3_run(
        &env,
        sw,
        "orca-copy",
        &[made[0].to_str().unwrap(), "--to", &dest, "--overwrite"],
    )
    .ok();
    assert_eq!(
        sw.curl("GET", &format!("{prefix}/{first}"), None).1,
        std::fs::read(&made[0]).unwrap()
    );
    // Something that is not a backup shares the prefix.
    assert_eq!(
        sw.curl("PUT", &format!("{prefix}/notes.txt"), Some(b"hello"))
            .0,
        200
    );

    // The remote catalog, from the manifests.
    let listed = s3_run(&env, sw, "orca-list", &["--remote", &dest]).ok();
    assert_eq!(listed["remote"], dest);
    assert_eq!(listed["count"], 4);
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups[0]["name"], "orca-db-before-migration.tar.gz");
    assert!(backups.iter().all(|b| b["volume"] == vol.name.as_str()));
    assert!(backups.iter().all(|b| b["has_checksum"] == true));
    let checked = s3_run(&env, sw, "orca-list", &["--remote", &dest, "--verify"]).ok();
    assert!(
        checked["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["verified"] == true)
    );

    // Restore from the copy on a machine that has none of it.
    let fresh = Env::new();
    let target = unique("orca-test-from-s3");
    let _gone = GoneVolume(target.clone());
    let url = format!("{dest}/orca-db-2026-11-03-10-00.tar.zst");
    let rec = s3_run(
        &fresh,
        sw,
        "orca-restore",
        &[&url, "--to-new-volume", &target],
    )
    .ok();
    assert_eq!(rec["fetched_from"], url.as_str());
    assert!(
        fresh
            .backups()
            .join("orca-db-2026-11-03-10-00.tar.zst")
            .is_file()
    );
    assert!(
        fresh
            .backups()
            .join("orca-db-2026-11-03-10-00.tar.zst.sha256")
            .is_file()
    );
    assert!(incomplete_files(&fresh.backups()).is_empty());
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{d:?}");
    // A dry run from a URL leaves nothing behind.
    let dry_home = Env::new();
    s3_run(
        &dry_home,
        sw,
        "orca-restore",
        &[
            &url,
            "--to-new-volume",
            &unique("orca-test-dry-s3"),
            "--dry-run",
        ],
    )
    .ok();
    assert!(
        files_in(&dry_home.backups()).is_empty(),
        "{:?}",
        files_in(&dry_home.backups())
    );
    // A stale checksum of that name here does not fail a good copy.
    let stale = Env::new();
    std::fs::create_dir_all(stale.backups()).unwrap();
    std::fs::write(
        stale
            .backups()
            .join("orca-db-2026-11-03-10-00.tar.zst.sha256"),
        format!("{}  orca-db-2026-11-03-10-00.tar.zst\n", "0".repeat(64)),
    )
    .unwrap();
    let target2 = unique("orca-test-from-s3-stale");
    let _gone2 = GoneVolume(target2.clone());
    s3_run(
        &stale,
        sw,
        "orca-restore",
        &[&url, "--to-new-volume", &target2],
    )
    .ok();
    // A backup that is not there: 17.
    s3_run(
        &fresh,
        sw,
        "orca-restore",
        &[
            &format!("{dest}/orca-db-nope.tar.gz"),
            "--to-new-volume",
            &unique("x"),
        ],
    )
    .fails_with(17);

    // Retention at the destination: the dry run names exactly what the real run removes.
    let policy = [
        "--remote",
        &dest,
        "--max-count",
        "1",
        "--max-age-days",
        "0",
        "--now",
        "2026-12-01T00:00:00Z",
    ];
    let mut dry_args = policy.to_vec();
    dry_args.push("--dry-run");
    let dry = s3_run(&env, sw, "orca-prune", &dry_args).ok();
    assert_eq!(
        outcome_names(&dry, "pruned"),
        [
            "orca-db-2026-11-01-10-00.tar.gz",
            "orca-db-2026-11-02-10-00.tar.gz"
        ]
    );
    assert_eq!(sw.keys(&prefix).len(), 13, "the dry run removed nothing");
    let real = s3_run(&env, sw, "orca-prune", &policy).ok();
    assert_eq!(real["freed_bytes"], dry["freed_bytes"]);
    assert_eq!(
        outcome_names(&real, "pruned"),
        outcome_names(&dry, "pruned")
    );
    assert_eq!(outcome_names(&real, "kept"), outcome_names(&dry, "kept"));
    let left: Vec<String> = sw
        .keys(&prefix)
        .into_iter()
        .map(|k| k.trim_start_matches(&format!("{prefix}/")).to_string())
        .collect();
    assert_eq!(
        left,
        [
            "notes.txt",
            "orca-db-2026-11-03-10-00.tar.zst",
            "orca-db-2026-11-03-10-00.tar.zst.json",
            "orca-db-2026-11-03-10-00.tar.zst.sha256",
            "orca-db-before-migration.tar.gz",
            "orca-db-before-migration.tar.gz.json",
            "orca-db-before-migration.tar.gz.sha256",
        ]
    );
}

#[test]
fn an_encrypted_backup_goes_and_comes_back() {
    need_docker!();
    need_s3!();
    let sw = seaweed::shared();
    let env = env();
    let key = env.base().join("key.txt");
    let recipient = env
        .run("orca-keygen", &["--output", key.to_str().unwrap()])
        .ok()["recipient"]
        .as_str()
        .unwrap()
        .to_string();
    let vol = TestVolume::named(&unique("orca-test-s3-age"));
    vol.fill_sql_like(3 << 20, 12);
    let prefix = unique("enc");
    let dest = format!("s3://{BUCKET}/{prefix}");
    // The whole pipeline, encrypted, verified with the key, copied.
    let run = env.pipeline(&format!(
        "orca-find-volume --volume {v} | orca-backup-name --name secret | orca-export --recipient {recipient} | orca-verify --identity {k} | env {creds} orca-copy --to {dest}",
        v = vol.name,
        k = key.display(),
        creds = sw
            .env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    let rec = run.ok();
    assert_eq!(rec["encrypted"], true);
    assert_eq!(
        rec["copies"][0]["url"],
        format!("{dest}/orca-db-secret.tar.gz.age")
    );
    // What is stored is ciphertext.
    let (_, body) = sw.curl("GET", &format!("{prefix}/orca-db-secret.tar.gz.age"), None);
    assert!(body.starts_with(b"age-encryption.org/v1\n"));
    let listed = s3_run(&env, sw, "orca-list", &["--remote", &dest]).ok();
    assert_eq!(listed["backups"][0]["encrypted"], true);
    assert_eq!(listed["backups"][0]["recipients"][0], recipient.as_str());
    // Elsewhere: without the key nothing changes (14); with it, the volume comes back.
    let fresh = Env::new();
    let target = unique("orca-test-s3-dec");
    let _gone = GoneVolume(target.clone());
    let url = format!("{dest}/orca-db-secret.tar.gz.age");
    s3_run(
        &fresh,
        sw,
        "orca-restore",
        &[&url, "--to-new-volume", &target],
    )
    .fails_with(14);
    assert!(docker(&["volume", "inspect", &target]).status.code() != Some(0));
    s3_run(
        &fresh,
        sw,
        "orca-restore",
        &[
            &url,
            "--to-new-volume",
            &target,
            "--identity",
            key.to_str().unwrap(),
        ],
    )
    .ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_server_stopped_mid_upload_leaves_no_object_and_a_rerun_succeeds() {
    need_docker!();
    need_s3!();
    let mut sw = Seaweed::start();
    let env = env();
    let vol = random_volume("orca-test-s3-cut", 24);
    let archive = export(&env, &vol.name, "orca-db-cut.tar.gz", &[]);
    let key = "cut/orca-db-cut.tar.gz";
    let go_on = env.base().join("go-on");
    let mut cmd = env.cmd(
        "orca-copy",
        &[
            archive.to_str().unwrap(),
            "--to",
            &format!("s3://{BUCKET}/cut"),
        ],
    );
    cmd.envs(sw.env()).env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(cmd, "copy-uploading");
    // Parts are on the server; now it dies.
    sw.stop();
    std::fs::write(&go_on, b"").unwrap();
    let started = Instant::now();
    let run = finish_paused(child, rx);
    run.fails_saying(15, "unreachable or failing");
    assert!(started.elapsed() < Duration::from_secs(120));
    // Nothing under the final name, locally or there; the archive is intact.
    sw.restart();
    assert!(
        !sw.exists(key),
        "a cut upload left an object under its final name"
    );
    assert!(!sw.exists(&format!("{key}.sha256")));
    assert!(incomplete_files(&env.backups()).is_empty());
    env.run("orca-verify", &[archive.to_str().unwrap()]).ok();
    // Run again: it goes through.
    let rec = s3_run(
        &env,
        &sw,
        "orca-copy",
        &[
            archive.to_str().unwrap(),
            "--to",
            &format!("s3://{BUCKET}/cut"),
        ],
    )
    .ok();
    assert_eq!(rec["copies"][0]["verified"], true);
    assert!(sw.exists(key));
}

/// Ctrl-C in the middle of an upload: no object, and no unfinished upload
/// left on the server (its parts would stay, and cost, until removed).
#[test]
fn ctrl_c_during_an_upload_aborts_it() {
    need_docker!();
    need_s3!();
    let sw = seaweed::shared();
    let env = env();
    let vol = random_volume("orca-test-s3-int", 24);
    let archive = export(&env, &vol.name, "orca-db-int.tar.gz", &[]);
    let prefix = unique("int");
    let mut cmd = env.cmd(
        "orca-copy",
        &[
            archive.to_str().unwrap(),
            "--to",
            &format!("s3://{BUCKET}/{prefix}"),
        ],
    );
    cmd.envs(sw.env());
    let (child, rx) = spawn_paused(cmd, "copy-uploading");
    signal(&child, "-INT");
    let run = finish_paused(child, rx);
    let (out, err) = (run.code, run.stderr.clone());
    assert_eq!(out, 130, "{err}");
    assert!(!err.contains("could not abort"), "{err}");
    assert!(sw.keys(&prefix).is_empty(), "{:?}", sw.keys(&prefix));
    let (status, body) = sw.curl("GET", &format!("?prefix={prefix}&uploads="), None);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("<Upload>"),
        "an unfinished upload was left: {text}"
    );
}

#[test]
fn bad_credentials_a_missing_bucket_and_no_server_are_told_apart() {
    need_docker!();
    need_s3!();
    let sw = seaweed::shared();
    let env = env();
    let vol = TestVolume::named(&unique("orca-test-s3-err"));
    vol.fill_sql_like(1 << 20, 13);
    let archive = export(&env, &vol.name, "orca-db-err.tar.gz", &[]);
    let a = archive.to_str().unwrap();
    let prefix = unique("err");
    let before = std::fs::read(format!("{a}.json")).unwrap();

    // Wrong secret: 16, naming the credentials.
    let mut c = env.cmd(
        "orca-copy",
        &[a, "--to", &format!("s3://{BUCKET}/{prefix}")],
    );
    c.envs(sw.env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let run = Run::from_output(c.output().unwrap());
    let msg = run.message();
    run.fails_with(16);
    assert!(
        msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("SignatureDoesNotMatch"),
        "{msg}"
    );
    // No credentials at all: 16 too.
    let mut c = env.cmd(
        "orca-copy",
        &[a, "--to", &format!("s3://{BUCKET}/{prefix}")],
    );
    c.envs(sw.env())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", env.base().join("none"))
        .env("AWS_CONFIG_FILE", env.base().join("none"));
    c.output().map(Run::from_output).unwrap().fails_with(16);
    // A missing bucket: 17.
    let run = s3_run(
        &env,
        sw,
        "orca-copy",
        &[a, "--to", "s3://orca-no-such-bucket/x"],
    );
    let msg = run.message();
    run.fails_with(17);
    assert!(
        msg.contains("orca-no-such-bucket") && msg.contains("does not exist"),
        "{msg}"
    );
    // Nobody listening: 15, after retrying.
    let mut c = env.cmd(
        "orca-copy",
        &[a, "--to", &format!("s3://{BUCKET}/{prefix}")],
    );
    c.envs(sw.env())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let run = Run::from_output(c.output().unwrap());
    assert!(run.stderr.contains("retry"), "{}", run.stderr);
    run.fails_with(15);
    // A profile from the shared credentials file works.
    let creds = env.base().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[orca-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            seaweed::ACCESS_KEY,
            seaweed::SECRET_KEY
        ),
    )
    .unwrap();
    let mut c = env.cmd(
        "orca-copy",
        &[a, "--to", &format!("s3://{BUCKET}/{prefix}")],
    );
    c.envs(sw.env())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .env("AWS_PROFILE", "orca-test");
    Run::from_output(c.output().unwrap()).ok();
    assert!(sw.exists(&format!("{prefix}/orca-db-err.tar.gz")));
    // The failures changed nothing here but the record of the one copy made.
    let after: Value =
        serde_json::from_slice(&std::fs::read(format!("{a}.json")).unwrap()).unwrap();
    let mut was: Value = serde_json::from_slice(&before).unwrap();
    was["copies"] = after["copies"].clone();
    assert_eq!(after, was);
    assert_eq!(after["copies"].as_array().unwrap().len(), 1);
}

#[test]
fn a_damaged_or_unverified_backup_is_not_copied() {
    need_docker!();
    need_s3!();
    let sw = seaweed::shared();
    let env = env();
    let vol = TestVolume::named(&unique("orca-test-s3-bad"));
    vol.fill_sql_like(2 << 20, 14);
    let archive = export(&env, &vol.name, "orca-db-bad.tar.gz", &[]);
    let prefix = unique("bad");
    let dest = format!("s3://{BUCKET}/{prefix}");
    // Flip a byte: its .sha256 no longer matches.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    // Alone: the bytes read do not match the checksum, the upload is abandoned.
    let run = s3_run(
        &env,
        sw,
        "orca-copy",
        &[archive.to_str().unwrap(), "--to", &dest],
    );
    let msg = run.message();
    run.fails_with(6);
    assert!(
        msg.contains("does not match") || msg.contains("checksum says"),
        "{msg}"
    );
    assert!(sw.keys(&prefix).is_empty(), "{:?}", sw.keys(&prefix));
    // In the pipeline: verify fails, and the failed record passes orca-copy untouched.
    let run = env.pipeline(&format!(
        "orca-verify {a} | env {creds} orca-copy --to {dest}",
        a = archive.display(),
        creds = sw
            .env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    assert_eq!(run.code, 6);
    assert_eq!(run.json["error"]["step"], "orca-verify");
    assert!(sw.keys(&prefix).is_empty());
    // Now its manifest says it failed verification: refused before reading it.
    let run = s3_run(
        &env,
        sw,
        "orca-copy",
        &[archive.to_str().unwrap(), "--to", &dest],
    );
    run.fails_saying(6, "failed its last verification");
    assert!(sw.keys(&prefix).is_empty());
}

#[test]
fn directory_copies_list_prune_and_restore() {
    need_docker!();
    let env = env();
    let nas = tempfile::tempdir().unwrap();
    let vol = TestVolume::named(&unique("orca-test-dir-copy"));
    vol.fill_sql_like(2 << 20, 15);
    let old = export(&env, &vol.name, "orca-db-2026-10-01-08-00.tar.gz", &[]);
    let new = export(&env, &vol.name, "orca-db-2026-11-20-08-00.tar.gz", &[]);
    let url = format!("file://{}", nas.path().display());
    // Through config copy_to (no --to), both at once.
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "copy_to": ["{}"]}}"#,
        nas.path().display()
    ));
    for a in [&old, &new] {
        let rec = env.run("orca-copy", &[a.to_str().unwrap()]).ok();
        assert_eq!(rec["copies"][0]["verified"], true);
    }
    assert_eq!(
        visible(nas.path()),
        [
            "orca-db-2026-10-01-08-00.tar.gz",
            "orca-db-2026-10-01-08-00.tar.gz.json",
            "orca-db-2026-10-01-08-00.tar.gz.sha256",
            "orca-db-2026-11-20-08-00.tar.gz",
            "orca-db-2026-11-20-08-00.tar.gz.json",
            "orca-db-2026-11-20-08-00.tar.gz.sha256",
        ]
    );
    // The copy is private like the original.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(nas.path().join("orca-db-2026-10-01-08-00.tar.gz"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A copy directory is a backups directory: every tool reads it.
    let listed = env.run("orca-list", &["--remote", &url, "--verify"]).ok();
    assert_eq!(
        names_in(&listed),
        [
            "orca-db-2026-10-01-08-00.tar.gz",
            "orca-db-2026-11-20-08-00.tar.gz"
        ]
    );
    assert!(
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["verified"] == true)
    );
    // --if-configured with nothing configured passes the record on.
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let rec = env
        .run_with(
            "orca-copy",
            &["--if-configured"],
            r#"{"backup_path":"/x","success":true}"#,
        )
        .ok();
    assert!(rec.get("copies").is_none());
    env.run("orca-copy", &[old.to_str().unwrap()]).fails_with(2);
    // Restore from the copy directory by URL (a path works as any archive does).
    let fresh = Env::new();
    let target = unique("orca-test-from-dir");
    let _gone = GoneVolume(target.clone());
    fresh
        .run(
            "orca-restore",
            &[
                &format!("{url}/orca-db-2026-11-20-08-00.tar.gz"),
                "--to-new-volume",
                &target,
            ],
        )
        .ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{d:?}");
    // Prune there: dry run and real run agree; only backups and their sidecars go.
    std::fs::write(nas.path().join("README.txt"), b"the team's backups").unwrap();
    let args = ["--remote", &url, "--max-count", "1", "--max-age-days", "0"];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = env.run("orca-prune", &dry_args).ok();
    assert_eq!(
        outcome_names(&dry, "pruned"),
        ["orca-db-2026-10-01-08-00.tar.gz"]
    );
    assert_eq!(visible(nas.path()).len(), 7);
    let real = env.run("orca-prune", &args).ok();
    assert_eq!(
        outcome_names(&real, "pruned"),
        outcome_names(&dry, "pruned")
    );
    assert_eq!(
        visible(nas.path()),
        [
            "README.txt",
            "orca-db-2026-11-20-08-00.tar.gz",
            "orca-db-2026-11-20-08-00.tar.gz.json",
            "orca-db-2026-11-20-08-00.tar.gz.sha256",
        ]
    );
    // A backup with no checksum of its own is copied twice: the second time
    // it is found there, the same.
    let bare = tempfile::tempdir().unwrap();
    let bare_archive = bare.path().join("orca-db-bare.tar.gz");
    std::fs::copy(&new, &bare_archive).unwrap();
    let nas2 = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        env.run(
            "orca-copy",
            &[
                bare_archive.to_str().unwrap(),
                "--to",
                nas2.path().to_str().unwrap(),
            ],
        )
        .ok();
    }
    // The source is never the destination, even mounted a second time.
    if is_root() {
        let again = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["--bind"])
            .arg(env.backups())
            .arg(again.path())
            .status()
            .unwrap();
        assert!(st.success());
        let run = env.run(
            "orca-copy",
            &[
                new.to_str().unwrap(),
                "--to",
                again.path().to_str().unwrap(),
            ],
        );
        let _ = Command::new("umount").arg(again.path()).status();
        run.fails_with(2);
    }
    // The source is never the destination.
    env.run(
        "orca-copy",
        &[
            new.to_str().unwrap(),
            "--to",
            env.backups().to_str().unwrap(),
        ],
    )
    .fails_with(2);
    // A destination that is not there (an unmounted share): 17.
    env.run(
        "orca-copy",
        &[new.to_str().unwrap(), "--to", "/nonexistent/share"],
    )
    .fails_with(17);
}
