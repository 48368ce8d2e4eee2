//! Promises that broke when a reviewer tried to break them: Ctrl-C during a
//! wait for the backups directory's lock, two writers of one name at one S3
//! prefix, Ctrl-C during an upload to a stalled server, a restore killed
//! before its journal, safety copies of two restores in the same second,
//! secrets in messages, a stuck engine, and numbers out of range.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orca_test_support::seaweed::{self, BUCKET, Seaweed};

use crate::common::*;
use crate::need_docker;

macro_rules! need_s3 {
    () => {
        if !seaweed::or_skip(module_path!()) {
            return;
        }
    };
}

/// Spawn `c`, with its stderr lines on a channel.
fn spawn(mut c: Command) -> (Child, mpsc::Receiver<String>) {
    use std::io::BufRead;
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn tool");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Wait for a stderr line holding `needle`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains(needle) => return seen,
            Ok(l) => seen.push(l),
            Err(_) => panic!("never said {needle:?}:\n{}", seen.join("\n")),
        }
    }
}

/// A file of `bytes` random bytes.
fn random_file(path: &Path, bytes: usize) {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    fs::write(path, buf).unwrap();
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(fs::read(path).unwrap());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn s3_cmd(env: &Env, sw: &Seaweed, tool: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(tool, args);
    c.envs(sw.env());
    c
}

/// The bytes of `key` in the test bucket.
fn object(sw: &Seaweed, key: &str) -> Vec<u8> {
    let (status, body) = sw.curl("GET", key, None);
    assert_eq!(status, 200, "GET {key}");
    body
}

fn hex_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ctrl_c_while_prune_waits_for_the_lock_removes_nothing() {
    let env = Env::new();
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    let mut names = Vec::new();
    for day in 1..=4 {
        let name = format!("orca-db-2026-06-0{day}-12-00.tar.gz");
        fs::write(dir.join(&name), b"backup").unwrap();
        names.push(name);
    }
    // A running export holds the lock.
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".orca-backup.lock"))
        .unwrap();
    lock.lock_shared().unwrap();
    let (child, rx) = spawn(env.cmd(
        "orca-prune",
        &[
            "--max-count",
            "1",
            "--max-age-days",
            "0",
            "--now",
            "2026-06-30T12:00:00Z",
        ],
    ));
    wait_for(&rx, "waiting for");
    let sent = Instant::now();
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(130));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["success"], false);
    assert!(
        rec["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{rec}"
    );
    // The lock frees later: still nothing is removed.
    drop(lock);
    for n in &names {
        assert!(dir.join(n).exists(), "{n} was removed after Ctrl-C");
    }
}

#[test]
fn ctrl_c_ends_an_exports_wait_for_the_lock() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-lockwait"));
    vol.sh("echo db > /v/orca.mdf");
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    // A running prune holds the lock exclusively.
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".orca-backup.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = dir.join("orca-db-lockwait.tar.gz");
    let (child, rx) = spawn(env.cmd(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    ));
    wait_for(&rx, "waiting for");
    let pid = child.id();
    let sent = Instant::now();
    signal(&child, "-INT");
    let res = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(res.status.code(), Some(130));
    let rec: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let msg = rec["error"]["message"].as_str().unwrap();
    assert!(msg.contains("waiting for the lock"), "{msg}");
    drop(lock);
    // Nothing left: no file, no helper or lock container of that process.
    assert!(!out.exists());
    assert!(incomplete_files(&dir).is_empty());
    assert!(leftover_helpers(pid).is_empty());
    let locks = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.orca-backup.lock={}", vol.name),
    ]);
    assert!(locks.trim().is_empty(), "a lock was left: {locks}");
}

#[test]
fn the_backups_directory_lock_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let dir = env.backups();
    fs::create_dir_all(&dir).unwrap();
    env.run("orca-prune", &["--max-count", "5"]).ok();
    let mode = fs::metadata(dir.join(".orca-backup.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// Two machines copy a backup of the same name, with other bytes, to one
/// prefix: one wins, the other exits 5 and the winner's copy, checksum and
/// manifest stay true. Once with both held at a pause point mid-upload (so
/// both found the name free), then 20 times as they come.
#[test]
fn two_writers_of_one_name_never_clobber_each_other() {
    need_s3!();
    let sw = seaweed::shared();
    let name = "orca-db-2026-06-30-12-00.tar.gz";
    let prefix = unique("race");
    let to = format!("s3://{BUCKET}/{prefix}");
    let key = format!("{prefix}/{name}");
    let machine = |bytes: usize| {
        let env = Env::new();
        fs::create_dir_all(env.backups()).unwrap();
        let archive = env.backups().join(name);
        random_file(&archive, bytes);
        (env, archive)
    };
    // Both past the "is the name free?" look, then let go together.
    let (a, a_file) = machine(11 << 20);
    let (b, b_file) = machine(11 << 20);
    let go_a = a.base().join("go");
    let go_b = b.base().join("go");
    let mut ca = s3_cmd(
        &a,
        sw,
        "orca-copy",
        &[a_file.to_str().unwrap(), "--to", &to],
    );
    ca.env("ORCA_TEST_CONTINUE_FILE", &go_a);
    let mut cb = s3_cmd(
        &b,
        sw,
        "orca-copy",
        &[b_file.to_str().unwrap(), "--to", &to],
    );
    cb.env("ORCA_TEST_CONTINUE_FILE", &go_b);
    let (pa, ra) = spawn_paused(ca, "copy-claiming");
    let (pb, rb) = spawn_paused(cb, "copy-claiming");
    fs::write(&go_a, b"").unwrap();
    fs::write(&go_b, b"").unwrap();
    let ra = finish_paused(pa, ra);
    let rb = finish_paused(pb, rb);
    judge_race(sw, &key, (ra, &a_file), (rb, &b_file));
    // A slow first writer, held mid-upload while a second one copies the
    // same name and finishes: the second must not be replaced, and the
    // first leaves nothing of its own.
    let key = format!("{prefix}-slow/{name}");
    let to = format!("s3://{BUCKET}/{prefix}-slow");
    let (a, a_file) = machine(11 << 20);
    let (b, b_file) = machine(6 << 20);
    let go_a = a.base().join("go");
    let mut ca = s3_cmd(
        &a,
        sw,
        "orca-copy",
        &[a_file.to_str().unwrap(), "--to", &to],
    );
    ca.env("ORCA_TEST_CONTINUE_FILE", &go_a);
    let (pa, ra) = spawn_paused(ca, "copy-uploading");
    let rb = Run::from_output(
        s3_cmd(
            &b,
            sw,
            "orca-copy",
            &[b_file.to_str().unwrap(), "--to", &to],
        )
        .output()
        .unwrap(),
    );
    fs::write(&go_a, b"").unwrap();
    let ra = finish_paused(pa, ra);
    judge_race(sw, &key, (ra, &a_file), (rb, &b_file));

    // Twenty more, started together with nothing held; every fourth is a
    // multipart upload (two parts), the others one PUT.
    for round in 0..20 {
        let key = format!("{prefix}-{round}/{name}");
        let to = format!("s3://{BUCKET}/{prefix}-{round}");
        let size = if round % 4 == 0 { 6 << 20 } else { 256 << 10 };
        let (a, a_file) = machine(size);
        let (b, b_file) = machine(size);
        let pa = s3_cmd(
            &a,
            sw,
            "orca-copy",
            &[a_file.to_str().unwrap(), "--to", &to],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let pb = s3_cmd(
            &b,
            sw,
            "orca-copy",
            &[b_file.to_str().unwrap(), "--to", &to],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let ra = Run::from_output(pa.wait_with_output().unwrap());
        let rb = Run::from_output(pb.wait_with_output().unwrap());
        judge_race(sw, &key, (ra, &a_file), (rb, &b_file));
    }
}

/// A claim left by a killed copy: the same backup takes it over (and the
/// claim goes), another backup is refused (exit 5) until --overwrite.
#[test]
fn a_claim_left_by_a_killed_copy_is_taken_over_or_refused() {
    need_s3!();
    let sw = seaweed::shared();
    let name = "orca-db-claimed.tar.gz";
    let prefix = unique("claim");
    let to = format!("s3://{BUCKET}/{prefix}");
    let key = format!("{prefix}/{name}");
    let env = Env::new();
    fs::create_dir_all(env.backups()).unwrap();
    let archive = env.backups().join(name);
    random_file(&archive, 64 << 10);
    let line = |sha: &str| format!("{sha}  {name}\n");
    // Another backup's claim: refused, nothing uploaded, the claim stays.
    let (status, _) = sw.curl(
        "PUT",
        &format!("{key}.claim"),
        Some(line(&"a".repeat(64)).as_bytes()),
    );
    assert_eq!(status, 200);
    let run = Run::from_output(
        s3_cmd(
            &env,
            sw,
            "orca-copy",
            &[archive.to_str().unwrap(), "--to", &to],
        )
        .output()
        .unwrap(),
    );
    run.fails_saying(5, "other bytes are another backup");
    assert!(!sw.exists(&key));
    assert!(sw.exists(&format!("{key}.claim")));
    // --overwrite replaces it.
    Run::from_output(
        s3_cmd(
            &env,
            sw,
            "orca-copy",
            &[archive.to_str().unwrap(), "--to", &to, "--overwrite"],
        )
        .output()
        .unwrap(),
    )
    .ok();
    assert!(sw.exists(&key) && !sw.exists(&format!("{key}.claim")));
    // This backup's own claim, left by a killed run: taken over.
    let key2 = format!("{prefix}-2/{name}");
    let (status, _) = sw.curl(
        "PUT",
        &format!("{key2}.claim"),
        Some(line(&sha256_hex(&archive)).as_bytes()),
    );
    assert_eq!(status, 200);
    Run::from_output(
        s3_cmd(
            &env,
            sw,
            "orca-copy",
            &[
                archive.to_str().unwrap(),
                "--to",
                &format!("s3://{BUCKET}/{prefix}-2"),
            ],
        )
        .output()
        .unwrap(),
    )
    .ok();
    assert!(sw.exists(&key2) && !sw.exists(&format!("{key2}.claim")));
}

/// A run interrupted after its upload, while another run of the same bytes
/// found the object, read it back and recorded it: the first run's cleanup
/// leaves that proven copy alone.
#[test]
fn an_interrupted_copy_leaves_a_copy_another_run_proved() {
    need_s3!();
    let sw = seaweed::shared();
    let name = "orca-db-proven.tar.gz";
    let prefix = unique("proven");
    let to = format!("s3://{BUCKET}/{prefix}");
    let key = format!("{prefix}/{name}");
    let a = Env::new();
    let b = Env::new();
    for e in [&a, &b] {
        fs::create_dir_all(e.backups()).unwrap();
    }
    let a_file = a.backups().join(name);
    random_file(&a_file, 256 << 10);
    let b_file = b.backups().join(name);
    fs::copy(&a_file, &b_file).unwrap();
    let (child, rx) = spawn_paused(
        s3_cmd(
            &a,
            sw,
            "orca-copy",
            &[a_file.to_str().unwrap(), "--to", &to],
        ),
        "copy-uploaded",
    );
    let rec = Run::from_output(
        s3_cmd(
            &b,
            sw,
            "orca-copy",
            &[b_file.to_str().unwrap(), "--to", &to],
        )
        .output()
        .unwrap(),
    )
    .ok();
    assert_eq!(rec["copies"][0]["verified"], true);
    signal(&child, "-INT");
    assert_eq!(finish_paused(child, rx).code, 130);
    assert_eq!(hex_of(&object(sw, &key)), sha256_hex(&b_file));
    // (These archives have no manifest, so the copies carry none.)
    assert!(sw.exists(&format!("{key}.sha256")));
    assert!(!sw.exists(&format!("{key}.claim")));
}

/// Exactly one of two runs won: the object, its checksum and its manifest
/// are the winner's; the loser said "another backup" with exit 5.
fn judge_race(sw: &Seaweed, key: &str, a: (Run, &PathBuf), b: (Run, &PathBuf)) {
    let ((won, won_file), (lost, _)) = match (a.0.code, b.0.code) {
        (0, _) => (a, b),
        (_, 0) => (b, a),
        _ => panic!("neither copy won:\n{}\n{}", a.0.stderr, b.0.stderr),
    };
    assert_eq!(
        lost.code, 5,
        "the loser must exit 5: {}\n{}",
        lost.stderr, lost.stdout
    );
    assert!(
        lost.message().contains("another backup"),
        "{}",
        lost.message()
    );
    let want = sha256_hex(won_file);
    assert_eq!(
        hex_of(&object(sw, key)),
        want,
        "the winner's copy was replaced"
    );
    let sidecar = String::from_utf8(object(sw, &format!("{key}.sha256"))).unwrap();
    assert!(sidecar.starts_with(&want), "{sidecar}");
    assert_eq!(won.json["copies"][0]["sha256"], want.as_str());
    assert_eq!(won.json["copies"][0]["verified"], true);
    // Both ended: neither left its claim on the name.
    assert!(!sw.exists(&format!("{key}.claim")), "a claim was left");
}

/// Ctrl-C during an upload to a server that stopped answering: the run ends
/// within seconds, says plainly that the upload could not be aborted and
/// how to clean up, and leaves no object under the name.
#[test]
fn ctrl_c_during_an_upload_to_a_stalled_server_ends_within_seconds() {
    need_s3!();
    let sw = Seaweed::start();
    let env = Env::new();
    fs::create_dir_all(env.backups()).unwrap();
    let archive = env.backups().join("orca-db-stall.tar.gz");
    random_file(&archive, 24 << 20);
    let prefix = unique("stall");
    let go_on = env.base().join("go-on");
    let mut cmd = s3_cmd(
        &env,
        &sw,
        "orca-copy",
        &[
            archive.to_str().unwrap(),
            "--to",
            &format!("s3://{BUCKET}/{prefix}"),
        ],
    );
    cmd.env("ORCA_TEST_CONTINUE_FILE", &go_on);
    let (child, rx) = spawn_paused(cmd, "copy-uploading");
    sw.pause();
    fs::write(&go_on, b"").unwrap();
    // The next parts are sent to a server that takes them and never answers.
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    signal(&child, "-INT");
    let run = finish_paused(child, rx);
    let took = sent.elapsed();
    sw.resume();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(run.code, 130, "{}", run.stderr);
    let msg = run.message();
    assert!(!msg.contains("nothing was left half-done"), "{msg}");
    assert!(
        msg.contains("could not be aborted") && msg.contains("list-multipart-uploads"),
        "{msg}"
    );
    assert!(!sw.exists(&format!("{prefix}/orca-db-stall.tar.gz")));
}

/// A restore SIGKILLed after taking its lock and before writing its journal
/// changed nothing: `--resume` says there is nothing to do and clears the
/// lock, and the next restore runs.
#[test]
fn a_restore_killed_before_its_journal_does_not_block_the_next() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-nojournal"));
    vol.sh("echo one > /v/orca.mdf");
    let archive = env.backups().join("orca-db-nojournal.tar.gz");
    export_run(&env, &vol.name, &archive, &[]).ok();
    vol.sh("echo two > /v/orca.mdf");
    let (child, rx) = spawn_paused(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name],
        ),
        "locked",
    );
    signal(&child, "-KILL");
    let _ = finish_paused(child, rx);
    // The lock is there, naming a journal that was never written.
    let locks = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.orca-backup.lock={}", vol.name),
    ]);
    assert!(!locks.trim().is_empty(), "the killed restore left no lock");
    let rec = env
        .run("orca-restore", &["--resume", "--volume", &vol.name])
        .ok();
    assert_eq!(rec["nothing_to_do"], true);
    let locks = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.orca-backup.lock={}", vol.name),
    ]);
    assert!(locks.trim().is_empty(), "--resume left the lock");
    // A second kill, then a plain restore clears the lock itself.
    let (child, rx) = spawn_paused(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name],
        ),
        "locked",
    );
    signal(&child, "-KILL");
    let _ = finish_paused(child, rx);
    env.run(
        "orca-restore",
        &[archive.to_str().unwrap(), "--volume", &vol.name],
    )
    .ok();
    let listing = listing::of_volume(&vol.name);
    assert!(format!("{listing:?}").contains("orca.mdf"));
}

/// A restore killed after writing its journal, whose backups directory is
/// then gone (a disk not mounted now): the journal cannot be seen, so the
/// lock still blocks (exit 13) instead of being taken for a journal never
/// written.
#[test]
fn a_journal_that_cannot_be_seen_still_blocks_the_volume() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-unmounted"));
    vol.sh("echo one > /v/orca.mdf");
    let archive = env.backups().join("orca-db-unmounted.tar.gz");
    export_run(&env, &vol.name, &archive, &[]).ok();
    let (child, rx) = spawn_paused(
        env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", &vol.name],
        ),
        "journaled",
    );
    signal(&child, "-KILL");
    let _ = finish_paused(child, rx);
    let away = env.base().join("backups.unmounted");
    fs::rename(env.backups(), &away).unwrap();
    let other = env.base().join("elsewhere.tar.gz");
    export_run(&env, &vol.name, &other, &[]).fails_with(13);
    // --resume says what is missing, not "no interrupted restore".
    env.run("orca-restore", &["--resume", "--volume", &vol.name])
        .fails_saying(13, "cannot be seen");
    // Back again: the rollback finishes it.
    fs::rename(&away, env.backups()).unwrap();
    env.run("orca-restore", &["--rollback", "--volume", &vol.name])
        .ok();
    export_run(&env, &vol.name, &other, &[]).ok();
}

/// Two restores of different volumes into one backups directory in the
/// same second: each keeps its own safety copy.
#[test]
fn safety_copies_of_two_restores_in_one_second_have_their_own_names() {
    need_docker!();
    let env = Env::new();
    let v1 = TestVolume::named(&unique("orca-test-safe1"));
    let v2 = TestVolume::named(&unique("orca-test-safe2"));
    v1.sh("echo one > /v/a");
    v2.sh("echo two > /v/b");
    let archive = env.backups().join("orca-db-src.tar.gz");
    export_run(&env, &v1.name, &archive, &[]).ok();
    let go = env.base().join("go");
    let start = |vol: &str| {
        let mut c = env.cmd(
            "orca-restore",
            &[archive.to_str().unwrap(), "--volume", vol],
        );
        c.env("ORCA_TEST_CONTINUE_FILE", &go);
        spawn_paused(c, "stopped")
    };
    let (c1, r1) = start(&v1.name);
    let (c2, r2) = start(&v2.name);
    // Both go on together; the continue file is taken by one at a time.
    fs::write(&go, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while go.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    fs::write(&go, b"").unwrap();
    let a = finish_paused(c1, r1).ok();
    let b = finish_paused(c2, r2).ok();
    let (sa, sb) = (
        a["safety_backup"].as_str().unwrap().to_string(),
        b["safety_backup"].as_str().unwrap().to_string(),
    );
    assert_ne!(sa, sb);
    assert!(Path::new(&sa).exists() && Path::new(&sb).exists());
    assert!(sa.contains(&v1.name) && sb.contains(&v2.name), "{sa} {sb}");
}

/// Secrets planted in an S3 endpoint's URL, the AWS secret key, an env
/// file line without `=`, and a DOCKER_HOST's URL appear in no output of
/// the failing runs.
#[test]
fn no_secret_reaches_any_output_of_a_failing_run() {
    let env = Env::new();
    fs::create_dir_all(env.backups()).unwrap();
    let archive = env.backups().join("orca-db-secret.tar.gz");
    random_file(&archive, 1024);
    let secrets = [
        "Sup3rS3cret!",
        "hunter2-url-pass",
        "AKIDSECRETKEY0123456789",
    ];
    // A closed port: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut outputs = Vec::new();
    let mut c = env.cmd(
        "orca-copy",
        &[archive.to_str().unwrap(), "--to", "s3://some-bucket/x"],
    );
    c.env(
        "AWS_ENDPOINT_URL",
        format!("http://orca:hunter2-url-pass@127.0.0.1:{port}"),
    )
    .env("AWS_ACCESS_KEY_ID", "orca")
    .env("AWS_SECRET_ACCESS_KEY", "AKIDSECRETKEY0123456789")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_EC2_METADATA_DISABLED", "true");
    let run = Run::from_output(c.output().unwrap());
    assert_eq!(run.code, 15, "{}", run.stderr);
    assert!(run.message().contains("127.0.0.1"), "{}", run.message());
    outputs.push(run);
    // An env file whose second line is a password without `=`.
    let envfile = env.base().join("drill.env");
    fs::write(&envfile, "ACCEPT_EULA=Y\nMSSQL_SA_PASSWORD: Sup3rS3cret!\n").unwrap();
    let run = env.run(
        "orca-drill",
        &[
            archive.to_str().unwrap(),
            "--env-file",
            envfile.to_str().unwrap(),
            "--image",
            "none",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.message().contains("line 2"), "{}", run.message());
    outputs.push(run);
    // A DOCKER_HOST with a password in it (not a host docker accepts).
    let mut c = env.cmd("orca-find-volume", &[]);
    c.env(
        "DOCKER_HOST",
        format!("tcp://orca:hunter2-url-pass@127.0.0.1:{port}"),
    );
    let run = Run::from_output(c.output().unwrap());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.message().contains("DOCKER_HOST"), "{}", run.message());
    outputs.push(run);
    // A DOCKER_HOST that points at nothing: check or unset it.
    let mut c = env.cmd("orca-find-volume", &[]);
    c.env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"));
    let run = Run::from_output(c.output().unwrap());
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.message().contains("unset DOCKER_HOST"),
        "{}",
        run.message()
    );
    outputs.push(run);
    for run in &outputs {
        for s in secrets {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "{s} leaked:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
}

/// An engine that accepts and never answers is reported within the
/// deadline the message states.
#[test]
fn a_stuck_engine_fails_within_the_deadline_it_states() {
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 3}"#);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept, read, never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    // orca-export asked the engine twice (its version, then the volume),
    // each waiting the whole deadline: 6 s for a 3 s one.
    for (tool, args) in [
        ("orca-find-volume", vec![]),
        ("orca-export", vec!["--volume", "x"]),
        ("orca-list", vec![]),
    ] {
        let mut c = env.cmd(tool, &args);
        c.env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"));
        let started = Instant::now();
        let run = Run::from_output(c.output().unwrap());
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(4500),
            "{tool} took {took:?} for a 3 s deadline: {}",
            run.stderr
        );
        if tool != "orca-list" {
            let msg = run.message();
            assert_eq!(run.code, 3, "{tool}: {}", run.stderr);
            assert!(msg.contains("within 3 s"), "{tool}: {msg}");
        }
    }
}

#[test]
fn a_number_out_of_range_is_named() {
    let env = Env::new();
    let run = env.run_with(
        "orca-verify",
        &[],
        r#"{"success": true, "backup_path": "/x", "size_bytes": 1e400}"#,
    );
    run.fails_saying(2, "1e400");
    env.config("{\n  \"stop_timeout_seconds\": 1e400\n}\n");
    env.run("orca-list", &[]).fails_saying(2, "1e400");
}
