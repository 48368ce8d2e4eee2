//! Encrypted backups (age): round trips with every kind of recipient, the
//! reference `age` CLI both ways, every way an encrypted archive can fail to
//! open (each with its code, a restore changing nothing), no plaintext on disk
//! while exporting, orca-keygen, and prune and list over a mix.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::need_docker;

/// Skip (loudly) unless the reference `age` CLI is there; CI sets
/// ORCA_REQUIRE_AGE=1 and fails instead.
fn have_age() -> bool {
    let ok = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("ORCA_REQUIRE_AGE").as_deref() != Ok("1"),
            "the age CLI is required (ORCA_REQUIRE_AGE=1): apt-get install age"
        );
        eprintln!("\n*** SKIPPED: no age CLI (apt-get install age) ***\n");
    }
    ok
}

macro_rules! need_age {
    () => {
        if !have_age() {
            return;
        }
    };
}

/// A new identity made by orca-keygen in `env`: (identity path, recipient).
fn keygen(env: &Env, name: &str) -> (PathBuf, String) {
    let path = env.base().join(name);
    let rec = env
        .run("orca-keygen", &["--output", path.to_str().unwrap()])
        .ok();
    (path, rec["recipient"].as_str().unwrap().to_string())
}

/// A small volume with known content (a marker that must never reach the
/// disk in the clear).
fn source(name: &str) -> TestVolume {
    let vol = TestVolume::named(&unique(name));
    vol.fill_sql_like(3 << 20, 61);
    vol.sh("echo ORCA-PLAINTEXT-MARKER-7f3a > /v/marker.mdf");
    vol
}

fn env() -> Env {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    env
}

/// Restore `archive` into a new volume and check it equals `src`.
fn restores_to(env: &Env, archive: &Path, src: &TestVolume, keys: &[&str]) {
    let target = unique("orca-test-dec");
    let _gone = GoneVolume(target.clone());
    let mut args = vec![archive.to_str().unwrap(), "--to-new-volume", &target];
    args.extend_from_slice(keys);
    env.run("orca-restore", &args).ok();
    let diff = listing::diff(&listing::of_volume(&src.name), &listing::of_volume(&target));
    assert!(diff.is_empty(), "{diff:?}");
}

#[test]
fn an_x25519_backup_round_trips_and_the_age_cli_reads_it() {
    need_docker!();
    need_age!();
    let env = env();
    let src = source("orca-test-enc");
    let (id, recipient) = keygen(&env, "key.txt");
    let out = env.backups().join("orca-db-enc.tar.gz");
    let rec = export_run(&env, &src.name, &out, &["--recipient", &recipient]).ok();
    let archive = env.backups().join("orca-db-enc.tar.gz.age");
    assert_eq!(rec["backup_path"], archive.to_str().unwrap());
    assert_eq!(rec["backup_name"], "orca-db-enc.tar.gz.age");
    assert_eq!(rec["encrypted"], true);
    assert_eq!(rec["recipients"][0], recipient.as_str());
    assert!(!out.exists());
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    // The checksum covers the encrypted file; the manifest names the
    // recipient and nothing secret.
    let sha = std::fs::read_to_string(env.backups().join("orca-db-enc.tar.gz.age.sha256")).unwrap();
    assert!(sha.starts_with(&listing::sha256_hex(&bytes)), "{sha}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.backups().join("orca-db-enc.tar.gz.age.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["encryption"]["format"], "age");
    assert_eq!(manifest["encryption"]["recipients"][0], recipient.as_str());
    let secret = std::fs::read_to_string(&id).unwrap();
    assert!(
        !serde_json::to_string(&manifest)
            .unwrap()
            .contains("AGE-SECRET-KEY")
    );
    assert!(secret.contains("AGE-SECRET-KEY-1"));

    // The reference CLI opens it: `age -d -i KEY FILE | tar -tzf -`.
    let listed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | tar -tzf -",
            id.display(),
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("./marker.mdf"));

    // orca-verify with the identity checks everything, content included.
    let rec = env
        .run(
            "orca-verify",
            &[
                archive.to_str().unwrap(),
                "--identity",
                id.to_str().unwrap(),
            ],
        )
        .ok();
    assert_eq!(rec["verified"], true);
    assert_eq!(rec["checks"][2]["status"], "pass");
    assert!(
        rec["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .starts_with("age over gzip")
    );
    // Without one: the header and the checksum only, and it says so.
    let run = env.run("orca-verify", &[archive.to_str().unwrap()]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert_eq!(rec["verified"], true);
    assert_eq!(rec["checks"][2]["status"], "skipped");
    assert!(
        rec["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("encrypted, no identity"),
        "{rec}"
    );
    assert!(stderr.contains("content was not checked"), "{stderr}");

    // Restore decrypts as it streams; also with the identity from ORCA_IDENTITY.
    restores_to(&env, &archive, &src, &["--identity", id.to_str().unwrap()]);
    let target = unique("orca-test-dec-env");
    let _gone = GoneVolume(target.clone());
    let run = Run::from_output(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--to-new-volume", &target],
        )
        .env("ORCA_IDENTITY", &id)
        .output()
        .unwrap(),
    );
    run.ok();
}

#[test]
fn ssh_keys_several_recipients_and_a_passphrase() {
    need_docker!();
    need_age!();
    let env = env();
    let src = source("orca-test-enc2");
    // An ssh-ed25519 key, and an age key: each alone opens the archive.
    let ssh = env.base().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ssh)
        .status()
        .unwrap();
    assert!(st.success());
    let ssh_pub = std::fs::read_to_string(ssh.with_extension("pub")).unwrap();
    let (id, recipient) = keygen(&env, "key.txt");
    let recipients_file = env.base().join("recipients.txt");
    std::fs::write(&recipients_file, format!("# the team\n{ssh_pub}\n")).unwrap();
    let out = env.backups().join("orca-db-two.tar.zst");
    export_run(
        &env,
        &src.name,
        &out,
        &[
            "--recipient",
            &recipient,
            "--recipients-file",
            recipients_file.to_str().unwrap(),
        ],
    )
    .ok();
    let archive = env.backups().join("orca-db-two.tar.zst.age");
    for key in [&ssh, &id] {
        let rec = env
            .run(
                "orca-verify",
                &[archive.to_str().unwrap(), "-i", key.to_str().unwrap()],
            )
            .ok();
        assert_eq!(rec["checks"][2]["status"], "pass", "{}", key.display());
    }
    restores_to(&env, &archive, &src, &["-i", ssh.to_str().unwrap()]);
    // The age CLI opens it with the SSH key too.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | zstd -dc | tar -tf - >/dev/null",
            ssh.display(),
            archive.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());

    // A passphrase, from ORCA_PASSPHRASE_FILE (never argv, never the record).
    let pass = env.base().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let out = env.backups().join("orca-db-pass.tar.gz");
    let run = Run::from_output(
        env.cmd(
            "orca-export",
            &[
                "--volume",
                &src.name,
                "--output",
                out.to_str().unwrap(),
                "--passphrase",
            ],
        )
        .env("ORCA_PASSPHRASE_FILE", &pass)
        .output()
        .unwrap(),
    );
    let rec = run.ok();
    assert!(!serde_json::to_string(&rec).unwrap().contains("horse"));
    let archive = env.backups().join("orca-db-pass.tar.gz.age");
    let m = std::fs::read_to_string(env.backups().join("orca-db-pass.tar.gz.age.json")).unwrap();
    assert!(
        m.contains("\"passphrase\": true") && !m.contains("horse"),
        "{m}"
    );
    let rec = Run::from_output(
        env.cmd("orca-verify", &[archive.to_str().unwrap()])
            .env("ORCA_PASSPHRASE_FILE", &pass)
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        rec["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .starts_with("age (passphrase) over gzip"),
        "{rec}"
    );
    let target = unique("orca-test-dec-pass");
    let _gone = GoneVolume(target.clone());
    Run::from_output(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--to-new-volume", &target],
        )
        .env("ORCA_PASSPHRASE_FILE", &pass)
        .output()
        .unwrap(),
    )
    .ok();
    // A wrong passphrase: exit 14.
    std::fs::write(&pass, "wrong\n").unwrap();
    let run = Run::from_output(
        env.cmd("orca-verify", &[archive.to_str().unwrap()])
            .env("ORCA_PASSPHRASE_FILE", &pass)
            .output()
            .unwrap(),
    );
    run.fails_saying(14, "passphrase");
}

/// Today's method, encrypted with the age CLI (`tar -cz ... | age -r KEY`),
/// and also ASCII-armored: orca-verify and orca-restore read both.
#[test]
fn archives_encrypted_by_the_age_cli_verify_and_restore() {
    need_docker!();
    need_age!();
    let env = env();
    let src = source("orca-test-cli");
    let (id, recipient) = keygen(&env, "key.txt");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(env.backups()).unwrap();
    for (name, armor) in [
        ("orca-db-cli.tar.gz.age", ""),
        ("orca-db-armored.tar.gz.age", "-a"),
    ] {
        let archive = env.backups().join(name);
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        // Today's method: tar of the volume's contents, then the age CLI.
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker run --rm --network none -v {}:/volume:ro {} tar -czf - -C /volume . | age {armor} -r {recipient} > '{}'",
                src.name,
                busybox_image(),
                archive.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        let rec = env
            .run(
                "orca-verify",
                &[archive.to_str().unwrap(), "-i", id.to_str().unwrap()],
            )
            .ok();
        assert_eq!(rec["checks"][2]["status"], "pass", "{rec}");
        restores_to(&env, &archive, &src, &["-i", id.to_str().unwrap()]);
        // No sidecar to compare with and no identity: it cannot be verified.
        let run = env.run("orca-verify", &[archive.to_str().unwrap()]);
        let msg = run.message();
        run.fails_with(14);
        assert!(
            msg.contains("no checksum") && msg.contains("--identity"),
            "{msg}"
        );
    }
}

/// Every way an encrypted archive fails to open has its code, and a restore
/// changes nothing.
#[test]
fn wrong_missing_truncated_and_tampered_are_refused_before_anything_changes() {
    need_docker!();
    need_age!();
    let env = env();
    let src = source("orca-test-bad");
    let (id, recipient) = keygen(&env, "key.txt");
    let (other, _) = keygen(&env, "other.txt");
    let out = env.backups().join("orca-db-bad.tar.gz");
    export_run(&env, &src.name, &out, &["--recipient", &recipient]).ok();
    let archive = env.backups().join("orca-db-bad.tar.gz.age");
    let target = TestVolume::named(&unique("orca-test-target"));
    target.sh("echo keep > /v/keep.mdf");
    let before = listing::of_volume(&target.name);
    let restore = |archive: &Path, keys: &[&str]| {
        let mut args = vec![archive.to_str().unwrap(), "--volume", &target.name];
        args.extend_from_slice(keys);
        env.run("orca-restore", &args)
    };

    // No identity: restore exit 14, naming the recipient from the manifest.
    let run = restore(&archive, &[]);
    let msg = run.message();
    run.fails_with(14);
    assert!(
        msg.contains("no identity") && msg.contains("nothing was changed"),
        "{msg}"
    );
    // The wrong identity: 14 for verify and restore.
    let run = env.run(
        "orca-verify",
        &[archive.to_str().unwrap(), "-i", other.to_str().unwrap()],
    );
    let msg = run.message();
    run.fails_with(14);
    assert!(msg.contains(&recipient), "{msg}");
    restore(&archive, &["-i", other.to_str().unwrap()]).fails_with(14);

    // Truncated: 6.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = env.backups().join("orca-db-cut.tar.gz.age");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let run = env.run(
        "orca-verify",
        &[cut.to_str().unwrap(), "-i", id.to_str().unwrap()],
    );
    run.fails_saying(6, "damaged or truncated");
    restore(&cut, &["-i", id.to_str().unwrap()]).fails_with(6);

    // One flipped byte in the payload: 6.
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x40;
    let bad = env.backups().join("orca-db-flip.tar.gz.age");
    std::fs::write(&bad, &flipped).unwrap();
    let run = env.run(
        "orca-verify",
        &[bad.to_str().unwrap(), "-i", id.to_str().unwrap()],
    );
    run.fails_saying(6, "damaged");
    restore(&bad, &["-i", id.to_str().unwrap()]).fails_with(6);

    // A flipped byte in the header: 6 too (its MAC does not match).
    let mut header = bytes.clone();
    header[40] ^= 0x01;
    let bad = env.backups().join("orca-db-head.tar.gz.age");
    std::fs::write(&bad, &header).unwrap();
    let run = env.run(
        "orca-verify",
        &[bad.to_str().unwrap(), "-i", id.to_str().unwrap()],
    );
    let code = run.code;
    assert!(code == 6 || code == 14, "exit {code}: {}", run.message());

    assert!(listing::diff(&before, &listing::of_volume(&target.name)).is_empty());
    assert!(helpers_on(&target.name).is_empty());
}

/// While the export writes, the temporary file holds ciphertext from its
/// first bytes: never a byte of the volume in the clear (here uncompressed,
/// so any leak would show the marker).
#[test]
fn no_plaintext_reaches_the_disk_while_exporting() {
    need_docker!();
    let env = env();
    let src = source("orca-test-leak");
    let (_, recipient) = keygen(&env, "key.txt");
    let out = env.backups().join("orca-db-leak.tar");
    let go = env.base().join("continue");
    let mut child = env
        .cmd(
            "orca-export",
            &[
                "--volume",
                &src.name,
                "--output",
                out.to_str().unwrap(),
                "--compression",
                "none",
                "--recipient",
                &recipient,
            ],
        )
        .env("ORCA_TEST_PAUSE_AT", "export-streaming")
        .env("ORCA_TEST_CONTINUE_FILE", &go)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("paused").unwrap();
        if line == "orca-test: paused at export-streaming" {
            break;
        }
    }
    // Let the writer thread flush what it has.
    std::thread::sleep(Duration::from_millis(300));
    let temps = incomplete_files(&env.backups());
    let temp = temps
        .first()
        .map(|t| std::fs::read(env.backups().join(t)).unwrap())
        .unwrap_or_default();
    // Let the export go on before asserting: a failed check must not leave
    // it paused (holding the volume) for ever.
    std::fs::write(&go, b"").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(
        temp.starts_with(b"age-encryption.org/v1\n"),
        "{:?}",
        &temp[..20.min(temp.len())]
    );
    let done = std::fs::read(env.backups().join("orca-db-leak.tar.age")).unwrap();
    assert!(done.starts_with(b"age-encryption.org/v1\n"));
    let marker = b"ORCA-PLAINTEXT-MARKER";
    assert!(!done.windows(marker.len()).any(|w| w == marker));
    assert!(!temp.windows(marker.len()).any(|w| w == marker));
    // The same export unencrypted shows the marker: the check can fail.
    let plain = env.backups().join("orca-db-plain.tar");
    export_run(&env, &src.name, &plain, &["--compression", "none"]).ok();
    let plain = std::fs::read(plain).unwrap();
    assert!(plain.windows(marker.len()).any(|w| w == marker));
}

#[test]
fn orca_keygen_writes_a_private_identity_and_never_overwrites() {
    need_age!();
    let env = env();
    // The default place, under ORCA_HOME.
    let rec = env.run("orca-keygen", &[]).ok();
    let path = PathBuf::from(rec["identity_path"].as_str().unwrap());
    assert_eq!(path, env.base().join("age-identity.txt"));
    let recipient = rec["recipient"].as_str().unwrap().to_string();
    assert!(recipient.starts_with("age1"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // age-keygen -y derives the same recipient: a standard identity file.
    let y = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&y.stdout).trim(), recipient);
    // Never overwritten.
    let before = std::fs::read(&path).unwrap();
    let run = env.run("orca-keygen", &[]);
    run.fails_saying(5, "never overwritten");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // --output into a new directory (created private).
    let other = env.base().join("keys/team.txt");
    env.run("orca-keygen", &["--output", other.to_str().unwrap()])
        .ok();
    let dmode = std::fs::metadata(env.base().join("keys"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
    // A recipient given where a key is expected, and the reverse, are usage errors.
    let secret = std::fs::read_to_string(&path).unwrap();
    let key_line = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY"))
        .unwrap();
    let run = env.run("orca-export", &["--volume", "x", "--recipient", key_line]);
    let msg = run.message();
    run.fails_with(2);
    assert!(
        msg.contains("secret key") && !msg.contains(key_line),
        "{msg}"
    );
}

/// Encrypted and plain backups side by side: prune judges them alike, list
/// marks which are encrypted.
#[test]
fn prune_and_list_over_encrypted_and_plain_backups() {
    need_docker!();
    let env = env();
    let src = TestVolume::named(&unique("orca-test-mix"));
    src.sh("echo x > /v/a.mdf");
    let (_, recipient) = keygen(&env, "key.txt");
    let mut names = Vec::new();
    for (i, enc) in [(1, true), (2, false), (3, true), (4, false), (5, true)] {
        let out = env
            .backups()
            .join(format!("orca-db-2026-11-0{i}-10-00.tar.gz"));
        let extra: Vec<&str> = if enc {
            vec!["--recipient", &recipient]
        } else {
            vec![]
        };
        let rec = export_run(&env, &src.name, &out, &extra).ok();
        names.push(rec["backup_name"].as_str().unwrap().to_string());
    }
    assert!(names[0].ends_with(".tar.gz.age") && names[1].ends_with(".tar.gz"));
    let rec = env.run("orca-list", &[]).ok();
    assert_eq!(rec["count"], 5);
    let backups = rec["backups"].as_array().unwrap();
    let newest = &backups[0];
    assert_eq!(newest["name"], "orca-db-2026-11-05-10-00.tar.gz.age");
    assert_eq!(newest["encrypted"], true);
    assert_eq!(newest["recipients"][0], recipient.as_str());
    assert_eq!(backups[1]["encrypted"], false);
    // Keep the newest 3 (no age rule): the two oldest go, one of each kind,
    // with their sidecars; the dry run says exactly the same.
    let args = [
        "--max-count",
        "3",
        "--max-age-days",
        "0",
        "--now",
        "2026-11-27T00:00:00Z",
    ];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = env.run("orca-prune", &dry_args).ok();
    let real = env.run("orca-prune", &args).ok();
    assert_eq!(dry["pruned"], real["pruned"]);
    let pruned: Vec<&str> = real["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(pruned.len(), 2, "{pruned:?}");
    assert!(
        pruned
            .iter()
            .any(|p| p.ends_with("orca-db-2026-11-01-10-00.tar.gz.age"))
    );
    assert!(
        pruned
            .iter()
            .any(|p| p.ends_with("orca-db-2026-11-02-10-00.tar.gz"))
    );
    let left = files_in(&env.backups());
    assert!(
        !left.iter().any(|f| f.starts_with("orca-db-2026-11-01")),
        "{left:?}"
    );
    assert!(left.contains(&"orca-db-2026-11-03-10-00.tar.gz.age.sha256".to_string()));
}

/// With recipients in config, the restore's safety copy is encrypted too,
/// and the rollback opens it.
#[test]
fn the_safety_copy_is_encrypted_when_recipients_are_configured() {
    need_docker!();
    let env = Env::new();
    let src = source("orca-test-safe-src");
    let (id, recipient) = keygen(&env, "key.txt");
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "encryption": {{"recipients": ["{recipient}"], "identity_file": "{}"}}}}"#,
        id.display()
    ));
    let out = env.backups().join("orca-db-s.tar.gz");
    export_run(&env, &src.name, &out, &["--encrypt"]).ok();
    let archive = env.backups().join("orca-db-s.tar.gz.age");
    let vol = TestVolume::named(&unique("orca-test-safe"));
    vol.sh("echo old > /v/old.mdf");
    let before = listing::of_volume(&vol.name);
    // Every extraction into /volume but the rollback's is cut.
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule(
        "PUT",
        "path=%2Fvolume",
        Action::CutRequest(100_000),
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
    let msg = run.message();
    let rec = run.fails_with(10);
    let safety = rec["safety_backup"].as_str().unwrap();
    assert!(safety.ends_with(".tar.zst.age"), "{safety}: {msg}");
    assert!(
        std::fs::read(safety)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
}

/// Kill a restore of `archive` into `vol` once it extracts (the volume half
/// written, the journal left).
fn killed_while_extracting(env: &Env, archive: &Path, vol: &str, keys: &[&str]) {
    let mut args = vec![archive.to_str().unwrap(), "--volume", vol];
    args.extend_from_slice(keys);
    let (mut child, _rx) = spawn_paused(env.cmd("orca-restore", &args), "extracting");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A rollback whose safety copy is encrypted needs its key: without it,
/// exit 14 and the volume untouched (not emptied); with it, the old contents.
#[test]
fn a_rollback_without_the_key_touches_nothing() {
    need_docker!();
    let env = Env::new();
    let src = source("orca-test-rb-src");
    let (id, recipient) = keygen(&env, "key.txt");
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "encryption": {{"recipients": ["{recipient}"]}}}}"#
    ));
    let out = env.backups().join("orca-db-rb.tar.gz");
    export_run(&env, &src.name, &out, &["--encrypt"]).ok();
    let archive = env.backups().join("orca-db-rb.tar.gz.age");
    let vol = TestVolume::named(&unique("orca-test-rb"));
    vol.sh("echo old > /v/old.mdf && mkdir /v/d && echo x > /v/d/x.ldf");
    let old = listing::of_volume(&vol.name);
    killed_while_extracting(&env, &archive, &vol.name, &["-i", id.to_str().unwrap()]);
    let half = listing::of_volume(&vol.name);
    let run = env.run("orca-restore", &["--rollback", "--volume", &vol.name]);
    let msg = run.message();
    run.fails_with(14);
    assert!(
        msg.contains("--identity") && msg.contains("not touched"),
        "{msg}"
    );
    assert!(
        listing::diff(&half, &listing::of_volume(&vol.name)).is_empty(),
        "a rollback without the key changed the volume"
    );
    env.run(
        "orca-restore",
        &[
            "--rollback",
            "--volume",
            &vol.name,
            "-i",
            id.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(listing::diff(&old, &listing::of_volume(&vol.name)).is_empty());
}

/// What the first review found, each pinned: a key given as the text of an
/// age-keygen file; a key that does not fit leaves the manifest as it was;
/// ORCA_PASSPHRASE_FILE does not get in the way of key-encrypted archives;
/// an identity_file the config names but that is elsewhere does not break
/// plain archives; verify without a key keeps the export's figures; a
/// passphrase file of two lines is refused; --encrypt with -r adds to the
/// configured recipients; the dry run names the encrypted safety copy.
#[test]
fn keys_from_the_environment_and_config_behave() {
    need_docker!();
    let env = env();
    let src = source("orca-test-keys");
    let (id, recipient) = keygen(&env, "key.txt");
    let (other, other_recipient) = keygen(&env, "other.txt");
    let out = env.backups().join("orca-db-k.tar.gz");
    let exported = export_run(&env, &src.name, &out, &["--recipient", &recipient]).ok();
    let archive = env.backups().join("orca-db-k.tar.gz.age");
    let a = archive.to_str().unwrap();
    let manifest = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(format!("{a}.json")).unwrap()).unwrap()
    };

    // The whole age-keygen file as ORCA_IDENTITY (how a CI secret holds it).
    let text = std::fs::read_to_string(&id).unwrap();
    let run = Run::from_output(
        env.cmd("orca-verify", &[a])
            .env("ORCA_IDENTITY", &text)
            .output()
            .unwrap(),
    );
    assert!(!run.stdout.contains("AGE-SECRET-KEY") && !run.stderr.contains("AGE-SECRET-KEY"));
    let rec = run.ok();
    assert_eq!(rec["checks"][2]["status"], "pass", "{rec}");
    // A broken key text never shows either.
    let broken = text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1ZZZ");
    let run = Run::from_output(
        env.cmd("orca-verify", &[a])
            .env("ORCA_IDENTITY", &broken)
            .output()
            .unwrap(),
    );
    assert!(
        !run.stdout.contains("SECRET-KEY-1") && !run.stderr.contains("SECRET-KEY-1"),
        "{}",
        run.stderr
    );
    run.fails_with(2);

    // A key that does not fit: exit 14, and the manifest's verification stays.
    env.run("orca-verify", &[a, "-i", id.to_str().unwrap()])
        .ok();
    let before = manifest()["verification"].clone();
    assert_eq!(before["verified"], true);
    env.run("orca-verify", &[a, "-i", other.to_str().unwrap()])
        .fails_with(14);
    assert_eq!(manifest()["verification"], before);

    // A passphrase file in the environment: ignored for a key-encrypted archive.
    let pw = env.base().join("pw");
    std::fs::write(&pw, "a passphrase\n").unwrap();
    let run = Run::from_output(
        env.cmd("orca-verify", &[a])
            .env("ORCA_PASSPHRASE_FILE", &pw)
            .output()
            .unwrap(),
    );
    let rec = run.ok();
    // Without a key: checksum only, and the export's figures stay in the record.
    assert_eq!(rec["checks"][2]["status"], "skipped");
    let piped = env.run_with("orca-verify", &[], &exported.to_string()).ok();
    assert_eq!(piped["entries"], exported["entries"]);
    assert_eq!(piped["uncompressed_bytes"], exported["uncompressed_bytes"]);
    // Two lines in a passphrase file: refused.
    std::fs::write(&pw, "one\ntwo\n").unwrap();
    let run = Run::from_output(
        env.cmd("orca-verify", &[a, "--passphrase"])
            .env("ORCA_PASSPHRASE_FILE", &pw)
            .output()
            .unwrap(),
    );
    run.fails_saying(2, "more than one line");

    // encryption.identity_file kept elsewhere: plain archives do not care;
    // encrypted ones say which setting is wrong (exit 2).
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "encryption": {{"identity_file": "{}", "recipients": ["{recipient}"]}}}}"#,
        env.base().join("on-a-usb-stick.txt").display()
    ));
    let plain = env.backups().join("orca-db-plain.tar.gz");
    export_run(&env, &src.name, &plain, &[]).ok();
    env.run("orca-verify", &[plain.to_str().unwrap()]).ok();
    let run = env.run("orca-verify", &[a]);
    run.fails_saying(2, "encryption.identity_file");

    // --encrypt and -r: the configured recipients and the one given.
    let both = env.backups().join("orca-db-both.tar.gz");
    let rec = export_run(
        &env,
        &src.name,
        &both,
        &["--encrypt", "-r", &other_recipient],
    )
    .ok();
    let mut got: Vec<String> = rec["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = vec![recipient.clone(), other_recipient.clone()];
    want.sort();
    assert_eq!(got, want);

    // The dry run names the encrypted safety copy, and refuses what the
    // real run would: no identity of those recipients given.
    let vol = TestVolume::named(&unique("orca-test-dry"));
    vol.sh("echo old > /v/old.mdf");
    let rec = env
        .run(
            "orca-restore",
            &[
                a,
                "--volume",
                &vol.name,
                "--dry-run",
                "-i",
                id.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(
        rec["plan"]["safety_backup"]
            .as_str()
            .unwrap()
            .ends_with(".tar.zst.age"),
        "{rec}"
    );
    env.config(&format!(
        r#"{{"min_size_warning_mb": 0, "encryption": {{"recipients": ["{other_recipient}"]}}}}"#
    ));
    let run = env.run(
        "orca-restore",
        &[
            a,
            "--volume",
            &vol.name,
            "--dry-run",
            "-i",
            id.to_str().unwrap(),
        ],
    );
    run.fails_saying(14, "could not be put back");
}

/// One backup name, encrypted or not, is one backup: an export refuses when
/// either form exists, and --overwrite replaces whichever there is.
#[test]
fn a_backup_name_is_one_backup_encrypted_or_not() {
    need_docker!();
    let env = env();
    let src = source("orca-test-twin");
    let (_, recipient) = keygen(&env, "key.txt");
    let plain = env.backups().join("orca-db-twin.tar.gz");
    let sealed = env.backups().join("orca-db-twin.tar.gz.age");
    export_run(&env, &src.name, &plain, &[]).ok();
    // The encrypted form of a name that exists in the clear: exit 5, named.
    let run = export_run(&env, &src.name, &plain, &["--recipient", &recipient]);
    run.fails_saying(5, "orca-db-twin.tar.gz");
    assert!(!sealed.exists());
    // Overwrite: the encrypted backup replaces the plain one (sidecars too).
    export_run(
        &env,
        &src.name,
        &plain,
        &["--recipient", &recipient, "--overwrite"],
    )
    .ok();
    assert!(sealed.exists());
    assert!(!plain.exists());
    assert!(!env.backups().join("orca-db-twin.tar.gz.sha256").exists());
    assert!(!env.backups().join("orca-db-twin.tar.gz.json").exists());
    // orca-backup-name sees the encrypted one under the plain name.
    let run = env.run("orca-backup-name", &["--name", "twin"]);
    run.fails_saying(5, "orca-db-twin.tar.gz.age");
    // And back: a plain export with --overwrite replaces the encrypted one.
    export_run(&env, &src.name, &plain, &["--overwrite"]).ok();
    assert!(plain.exists() && !sealed.exists());
}
