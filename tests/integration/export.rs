//! orca-export against a real engine: fidelity, compatibility, atomicity, failures.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::need_docker;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Owners survive a GNU tar extraction only as root; elsewhere compare the rest
/// (ownership is still checked against the archive itself by `listing::of_tar`).
fn extracted(dir: &Path) -> listing::Listing {
    let mut l = listing::of_dir(dir);
    if !is_root() {
        for item in l.values_mut() {
            (item.uid, item.gid) = (u64::MAX, u64::MAX);
        }
    }
    l
}

fn volume_as_extracted(vol: &str) -> listing::Listing {
    let mut l = listing::of_volume(vol);
    if !is_root() {
        for item in l.values_mut() {
            (item.uid, item.gid) = (u64::MAX, u64::MAX);
        }
    }
    l
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn export_to(env: &Env, vol: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    export_run(env, vol, out, extra).ok()
}

#[test]
fn gzip_round_trip_keeps_everything_and_gnu_tar_agrees() {
    need_docker!();
    let env = Env::new();
    let vol = tricky_volume();
    let out = env.backups().join("orca-db-tricky.tar.gz");
    let rec = export_to(&env, &vol.name, &out, &[]);
    assert_eq!(rec["compression"], "gzip");
    assert_eq!(rec["compression_level"], 6);
    assert_eq!(rec["size_bytes"], std::fs::metadata(&out).unwrap().len());
    assert!(rec["size"].as_str().unwrap().ends_with(" MB"));
    assert!(rec["entries"].as_u64().unwrap() >= 15);
    assert!(rec["uncompressed_bytes"].as_u64().unwrap() > 3 << 20);
    assert_eq!(rec["consistent"], true);
    assert_eq!(rec["in_use_by"], serde_json::json!([]));
    assert_eq!(rec["stopped_containers"], serde_json::json!([]));

    // Extract with GNU tar and compare entry by entry with the volume.
    let dir = tempfile::tempdir().unwrap();
    sh_ok(&format!(
        "tar -xzf '{}' -C '{}' --numeric-owner",
        out.display(),
        dir.path().display()
    ));
    let d = listing::diff(&volume_as_extracted(&vol.name), &extracted(dir.path()));
    assert!(
        d.is_empty(),
        "GNU tar extraction differs from the volume:\n{}",
        d.join("\n")
    );
    // And the archive itself, owners included, equals the volume.
    let want = listing::of_volume(&vol.name);
    let d = listing::diff(&want, &listing::of_tar(&gunzip(&out)[..]));
    assert!(
        d.is_empty(),
        "the archive differs from the volume:\n{}",
        d.join("\n")
    );
    // The things the issue names are really in there.
    assert_eq!(want["data/Orca.mdf"].uid, 10001);
    assert_eq!(want["data/Orca.mdf"].mode, 0o640);
    assert_eq!(want["suid-tool"].mode, 0o4755);
    assert_eq!(want["link-to-mdf"].link, "data/Orca.mdf");
    assert_eq!(want["data/hard-link.mdf"].hardlink_group, "data/Orca.mdf");
    assert_eq!(want["empty"].kind, "dir");
    assert!(want.keys().any(|k| k.len() > 200));
    assert_eq!(want["zero-bytes"].size, 0);
    assert_eq!(want["data/big.mdf"].size, 3 << 20);
}

#[test]
fn archive_layout_equals_todays_busybox_method() {
    need_docker!();
    let env = Env::new();
    let vol = tricky_volume();
    let out = env.backups().join("orca-db-layout.tar.gz");
    export_to(&env, &vol.name, &out, &[]);
    let seed_gz = todays_archive(&vol.name);
    let mut seed_tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&seed_gz[..])
        .read_to_end(&mut seed_tar)
        .unwrap();
    let ours = gunzip(&out);
    let d = listing::diff(&listing::of_tar(&seed_tar[..]), &listing::of_tar(&ours[..]));
    assert!(
        d.is_empty(),
        "differs from today's method:\n{}",
        d.join("\n")
    );
    // Same names, rooted at ./ like `tar -C /volume .`.
    let names = |t: &[u8]| {
        let mut v: Vec<String> = tar::Archive::new(t)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect();
        v.sort();
        v
    };
    let ours_names = names(&ours);
    assert_eq!(names(&seed_tar), ours_names);
    assert!(
        ours_names.iter().all(|n| n.starts_with("./")),
        "{ours_names:?}"
    );
}

#[test]
fn standard_tools_accept_every_compression() {
    need_docker!();
    let env = Env::new();
    let vol = tricky_volume();
    let backups = env.backups();
    for (compression, ext, checks) in [
        (
            "gzip",
            "tar.gz",
            vec![
                "gzip -t {}",
                "tar -tzf {} >/dev/null",
                "busybox tar -tzf {} >/dev/null",
                "busybox gzip -t {}",
            ],
        ),
        (
            "zstd",
            "tar.zst",
            vec!["zstd -q -t {}", "tar --zstd -tf {} >/dev/null"],
        ),
        (
            "none",
            "tar",
            vec!["tar -tf {} >/dev/null", "busybox tar -tf {} >/dev/null"],
        ),
    ] {
        let out = backups.join(format!("orca-db-{compression}.{ext}"));
        let rec = export_to(&env, &vol.name, &out, &["--compression", compression]);
        assert_eq!(rec["compression"], compression);
        for check in checks {
            sh_ok(&check.replace("{}", &format!("'{}'", out.display())));
        }
        // sha256sum -c works from the backups directory.
        let sidecar = format!("{}.sha256", out.display());
        assert_eq!(rec["checksum_path"], sidecar.as_str());
        sh_ok(&format!(
            "cd '{}' && sha256sum -c '{sidecar}'",
            backups.display()
        ));
        let line = std::fs::read_to_string(&sidecar).unwrap();
        assert_eq!(
            line,
            format!(
                "{}  orca-db-{compression}.{ext}\n",
                rec["sha256"].as_str().unwrap()
            )
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(incomplete_files(&backups).is_empty());
    }
    // zstd round trip is faithful too.
    let dir = tempfile::tempdir().unwrap();
    sh_ok(&format!(
        "tar --zstd -xf '{}' -C '{}' --numeric-owner",
        backups.join("orca-db-zstd.tar.zst").display(),
        dir.path().display()
    ));
    let d = listing::diff(&volume_as_extracted(&vol.name), &extracted(dir.path()));
    assert!(d.is_empty(), "{}", d.join("\n"));
}

#[test]
fn the_cli_transport_gives_the_same_archive_content() {
    need_docker!();
    let env = Env::new();
    let vol = tricky_volume();
    let direct = env.backups().join("orca-db-direct.tar");
    let cli = env.backups().join("orca-db-cli.tar");
    export_to(&env, &vol.name, &direct, &[]);
    let run = Run::from_output(
        env.cmd(
            "orca-export",
            &["--volume", &vol.name, "--output", cli.to_str().unwrap()],
        )
        .env("ORCA_DOCKER_TRANSPORT", "cli")
        .output()
        .unwrap(),
    );
    run.ok();
    let a = listing::of_tar(std::fs::File::open(&direct).unwrap());
    let b = listing::of_tar(std::fs::File::open(&cli).unwrap());
    assert!(listing::diff(&a, &b).is_empty());
}

#[test]
fn defaults_from_nothing_and_from_the_pipeline() {
    need_docker!();
    let env = Env::new();
    let app = format!("orcat{}", &unique_hex10()[..8]);
    env.config_for_app(&app);
    let vol = TestVolume::aspire(&app);
    vol.sh("mkdir /v/data && echo x > /v/data/Orca.mdf");
    // No flags, no record: discovery and a timestamped name.
    let rec = env.run("orca-export", &[]).ok();
    assert_eq!(rec["volume"], vol.name);
    let name = rec["backup_name"].as_str().unwrap();
    assert!(
        name.starts_with("orca-db-20") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert_eq!(rec["kind"], "timestamped");
    // The pipeline's record decides name and compression.
    let rec = env
        .pipeline(
            "orca-find-volume | orca-backup-name --name piped --compression zstd | orca-export",
        )
        .ok();
    assert_eq!(rec["backup_name"], "orca-db-piped.tar.zst");
    assert_eq!(rec["compression"], "zstd");
    assert!(env.backups().join("orca-db-piped.tar.zst").exists());
    assert!(env.backups().join("orca-db-piped.tar.zst.sha256").exists());
}

#[test]
fn refuses_to_overwrite_unless_granted() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-ow"));
    vol.sh("echo new > /v/f");
    let out = env.backups().join("orca-db-keep.tar.gz");
    std::fs::create_dir_all(env.backups()).unwrap();
    std::fs::write(&out, b"old archive").unwrap();
    let run = env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    run.fails_with(5);
    assert_eq!(std::fs::read(&out).unwrap(), b"old archive");
    // A record that says overwrite was granted (by orca-backup-name) is honoured.
    let input = format!(
        r#"{{"volume":"{}","backup_path":"{}","overwrite":true}}"#,
        vol.name,
        out.display()
    );
    env.run_with("orca-export", &[], &input).ok();
    assert_ne!(std::fs::read(&out).unwrap(), b"old archive");
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn mismatched_extension_and_bad_level_are_usage_errors() {
    let env = Env::new();
    let out = env.backups().join("orca-db-x.tar.gz");
    let run = export_run(&env, "v", &out, &["--compression", "zstd"]);
    run.fails_saying(2, ".tar.zst");
    export_run(&env, "v", &out, &["--level", "12"]).fails_with(2);
}

#[test]
fn missing_volume_is_exit_4_and_leaves_nothing() {
    need_docker!();
    let env = Env::new();
    let out = env.backups().join("orca-db-none.tar.gz");
    let run = export_run(&env, "orca-test-no-such-volume-xyz", &out, &[]);
    run.fails_saying(4, "orca-test-no-such-volume-xyz");
    assert!(
        files_in(&env.backups()).iter().all(|f| f.starts_with('.')),
        "{:?}",
        files_in(&env.backups())
    );
}

#[test]
fn unwritable_output_is_exit_8_naming_the_path() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-ro"));
    vol.sh("echo x > /v/f");
    let dir = tempfile::tempdir().unwrap();
    let _ro = ReadOnlyDir::new(dir.path());
    let out = dir.path().join("orca-db-x.tar.gz");
    let run = env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    let msg = run.message();
    let rec = run.fails_with(8);
    assert_eq!(rec["error"]["code"], "permission_denied");
    assert!(msg.contains(dir.path().to_str().unwrap()), "{msg}");
    assert!(files_in(dir.path()).is_empty());
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn disk_full_is_exit_7_and_leaves_no_partial_file() {
    need_docker!();
    if !is_root() {
        eprintln!("*** SKIPPED disk_full test: mounting a small tmpfs needs root ***");
        return;
    }
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-full"));
    vol.sh("dd if=/dev/urandom of=/v/random.mdf bs=1048576 count=8 2>/dev/null");
    let small = Tmpfs::new("2m");
    let out = small.path().join("orca-db-full.tar.gz");
    let run = env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    let msg = run.message();
    let rec = run.fails_with(7);
    assert_eq!(rec["error"]["code"], "no_space");
    assert!(msg.contains(small.path().to_str().unwrap()), "{msg}");
    assert!(msg.contains("orca-prune"), "{msg}");
    assert!(
        files_in(small.path()).is_empty(),
        "{:?}",
        files_in(small.path())
    );
    assert!(helpers_on(&vol.name).is_empty());
}

fn export_via(env: &Env, proxy: &EngineProxy, vol: &str, out: &Path) -> Run {
    Run::from_output(
        env.cmd(
            "orca-export",
            &["--volume", vol, "--output", out.to_str().unwrap()],
        )
        .env("DOCKER_HOST", proxy.host())
        .output()
        .unwrap(),
    )
}

#[test]
fn docker_dying_mid_stream_leaves_nothing() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-die"));
    vol.sh("dd if=/dev/urandom of=/v/random.mdf bs=1048576 count=4 2>/dev/null");
    let out = env.backups().join("orca-db-die.tar.gz");
    // The engine goes away after 100 kB of the archive stream.
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("GET", "/archive", Action::CutResponse(100_000), Some(1));
    let run = export_via(&env, &proxy, &vol.name, &out);
    let msg = run.message();
    let rec = run.fails_with(3);
    assert_eq!(rec["error"]["code"], "docker_unavailable");
    assert!(msg.contains("broke"), "{msg}");
    assert!(!out.exists());
    assert!(incomplete_files(&env.backups()).is_empty());
    assert!(helpers_on(&vol.name).is_empty());
    // A well-framed answer whose tar stops half-way: caught by the tar end check.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "./random.mdf", &vec![7u8; 1 << 20][..])
        .unwrap();
    let mut body = tar.into_inner().unwrap();
    body.truncate(100_000);
    proxy.rule(
        "GET",
        "/archive",
        Action::Respond(http_response("200 OK", "application/x-tar", &body)),
        Some(1),
    );
    let run = export_via(&env, &proxy, &vol.name, &out);
    run.fails_saying(1, "ended early");
    assert!(!out.exists());
    assert!(incomplete_files(&env.backups()).is_empty());
    assert!(helpers_on(&vol.name).is_empty());
}

fn interrupt_mid_export(signal: &str) {
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-int"));
    vol.fill_sql_like(256 << 20, 3);
    let out = env.backups().join("orca-db-int.tar.gz");
    let child = env
        .cmd(
            "orca-export",
            &[
                "--volume",
                &vol.name,
                "--output",
                out.to_str().unwrap(),
                "--level",
                "9",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the archive is being written, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while incomplete_files(&env.backups()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the export never started writing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    sh_ok(&format!("kill -{signal} {pid}"));
    let run = Run::from_output(child.wait_with_output().unwrap());
    let rec = run.fails_with(130);
    assert_eq!(rec["error"]["code"], "interrupted");
    assert!(!out.exists(), "no final archive after an interrupt");
    assert!(
        incomplete_files(&env.backups()).is_empty(),
        "{:?}",
        files_in(&env.backups())
    );
    assert!(
        leftover_helpers(pid).is_empty(),
        "helper container left behind"
    );
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn sigint_mid_export_leaves_nothing() {
    need_docker!();
    interrupt_mid_export("INT");
}

#[test]
fn sigterm_mid_export_leaves_nothing() {
    need_docker!();
    interrupt_mid_export("TERM");
}

#[test]
fn live_copy_warns_and_stop_restarts_exactly_those_containers() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-stop"));
    vol.sh("mkdir /v/data && echo x > /v/data/Orca.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let idle = TestContainer::created_on(&vol.name);
    let started = sql.started_at();

    // Without --stop: a warning, a live copy, nothing touched.
    let out = env.backups().join("orca-db-live.tar.gz");
    let run = env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    assert!(
        run.stderr.contains("live copy") && run.stderr.contains("--stop"),
        "{}",
        run.stderr
    );
    let rec = run.ok();
    assert_eq!(rec["consistent"], false);
    assert_eq!(rec["in_use_by"].as_array().unwrap().len(), 2);
    assert_eq!(sql.started_at(), started);

    // With --stop: stopped, exported, started again; the idle one is left alone.
    let out = env.backups().join("orca-db-stopped.tar.gz");
    let rec = env
        .run(
            "orca-export",
            &[
                "--volume",
                &vol.name,
                "--output",
                out.to_str().unwrap(),
                "--stop",
            ],
        )
        .ok();
    assert_eq!(rec["consistent"], true);
    let stopped = rec["stopped_containers"].as_array().unwrap();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["name"], sql.name);
    assert_eq!(sql.state(), "running");
    assert_ne!(
        sql.started_at(),
        started,
        "it was stopped and started again"
    );
    assert_eq!(idle.state(), "created");
}

#[test]
fn stop_restarts_containers_when_the_export_fails() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-stopfail"));
    vol.sh("echo x > /v/f");
    let sql = TestContainer::running_on(&vol.name);
    let started = sql.started_at();
    let dir = tempfile::tempdir().unwrap();
    let _ro = ReadOnlyDir::new(dir.path());
    let out = dir.path().join("orca-db-x.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--stop"]);
    assert!(run.stderr.contains("starting container"), "{}", run.stderr);
    run.fails_with(8);
    assert_eq!(sql.state(), "running");
    assert_ne!(sql.started_at(), started);
    assert!(helpers_on(&vol.name).is_empty());
}

#[test]
fn a_configured_helper_image_must_exist_locally() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"helper_image": "orca-test-never-built:none"}"#);
    let vol = TestVolume::named(&unique("orca-test-img"));
    let out = env.backups().join("orca-db-img.tar.gz");
    let run = env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    );
    let msg = run.message();
    run.fails_with(1);
    assert!(
        msg.contains("orca-test-never-built:none") && msg.contains("never pulls"),
        "{msg}"
    );
    // The busybox test image works as a helper image.
    env.config(&format!(r#"{{"helper_image": "{}"}}"#, busybox_image()));
    env.run(
        "orca-export",
        &["--volume", &vol.name, "--output", out.to_str().unwrap()],
    )
    .ok();
}

/// Where the export tests put archives for other modules.
#[allow(dead_code)]
pub fn export_archive(env: &Env, vol: &str, name: &str) -> PathBuf {
    let out = env.backups().join(name);
    export_to(env, vol, &out, &[]);
    out
}

#[test]
fn progress_shows_on_a_terminal_only() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-progress"));
    vol.fill_sql_like(64 << 20, 12);
    // Piped stderr: no progress, only the closing note.
    let out = env.backups().join("orca-db-p1.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--level", "9"]);
    assert!(!run.stderr.contains("exporting"), "{}", run.stderr);
    run.ok();
    // A terminal (script gives one): bytes, rate and elapsed are drawn.
    let out = env.backups().join("orca-db-p2.tar.gz");
    let cmd = format!(
        "{} --volume {} --output {} --level 9 > /dev/null",
        bin("orca-export").display(),
        vol.name,
        out.display()
    );
    let shown = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("ORCA_HOME", env.base())
        .env_remove("ORCA_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains(&format!("exporting {}", vol.name)), "{text}");
    assert!(text.contains("MiB/s") || text.contains("KiB/s"), "{text}");
    assert!(out.exists());
}
