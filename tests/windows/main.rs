//! The Windows build, end to end, under Wine, against the real engine.
//!
//! The `.exe` files come from `ORCA_WINDOWS_BIN_DIR` (scripts/test.sh builds
//! them with `cargo build --target x86_64-pc-windows-gnu`). The engine reaches
//! Wine through a loopback TCP bridge to its Unix socket and, for the default
//! Windows endpoint, `orca-pipe-relay.exe` serving `\\.\pipe\docker_engine`
//! (and Docker Desktop's `\\.\pipe\dockerDesktopLinuxEngine`) inside Wine.
//! Without the variable these tests skip loudly, or fail when
//! `ORCA_REQUIRE_WINE=1` (CI).

#![cfg(unix)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

#[path = "../integration/common.rs"]
#[allow(unused_imports)]
mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// The directory of the Windows `.exe` files, or `None` (skip) / panic (CI).
fn windows_bins(test: &str) -> Option<PathBuf> {
    if !docker_or_skip(test) {
        return None;
    }
    let required = std::env::var("ORCA_REQUIRE_WINE").is_ok_and(|v| v == "1");
    let dir = std::env::var_os("ORCA_WINDOWS_BIN_DIR").map(PathBuf::from);
    let usable = dir
        .as_ref()
        .is_some_and(|d| d.join("orca-export.exe").exists())
        && Command::new("wine")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if usable {
        wine_desktop();
        return dir;
    }
    let why =
        "set ORCA_WINDOWS_BIN_DIR to the Windows build (scripts/test.sh does) and install Wine";
    if required {
        panic!("{test}: the Windows build under Wine is required (ORCA_REQUIRE_WINE=1): {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why}. ***\n");
    None
}

macro_rules! need_wine {
    () => {
        match windows_bins(module_path!()) {
            Some(d) => d,
            None => return,
        }
    };
}

/// `Z:\...`: how Wine names a Unix path.
fn z(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// `wine TOOL.exe args...` with a private ORCA_HOME and no Docker settings
/// from the outside (so the default Windows endpoint applies).
fn wine(bins: &Path, home: &Path, tool: &str, args: &[&str]) -> Command {
    let mut c = Command::new("wine");
    c.arg(bins.join(format!("{tool}.exe")))
        .args(args)
        .env("WINEDEBUG", "-all")
        .env("ORCA_HOME", z(home))
        .env_remove("ORCA_CONFIG")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null());
    c
}

fn bridge() -> &'static TcpBridge {
    static B: OnceLock<TcpBridge> = OnceLock::new();
    B.get_or_init(TcpBridge::to_docker)
}

/// `wine ARGS...` for the rest of this test process, behind a shell that waits
/// for EOF on its stdin (a pipe whose other end only this process holds, so it
/// comes when this process exits, however it ends, Ctrl-C included: the shell
/// ignores SIGINT) and then kills it. Wine itself never told a Windows program
/// of that EOF. The shell lets go of `stdout` at once: only the program holds
/// it, so a program that dies before its first line is an EOF, not a hang.
fn wine_until_exit(args: &[&OsStr], stdout: Stdio) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' INT; wine "$@" </dev/null & w=$!; exec >/dev/null; read -r _; kill -KILL "$w" 2>/dev/null; wait "$w" 2>/dev/null"#)
        .arg("wine-until-exit")
        .args(args)
        .env("WINEDEBUG", "-all")
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sh runs wine")
}

/// Wine's desktop, made once for this test process by programs that hold none
/// of the tests' pipes, and kept until it exits.
///
/// Without it the first program that needs a desktop (schtasks, through COM)
/// makes Wine start `explorer.exe /desktop`, which inherits that program's
/// stderr, the pipe the test reads to its end, and stays while the program
/// waits: orca-schedule under test then hung. A file browser (`explorer.exe`)
/// keeps the desktop up; `rundll32 user32.dll,GetDesktopWindow` returns once
/// it is.
fn wine_desktop() {
    static DESKTOP: OnceLock<Child> = OnceLock::new();
    DESKTOP.get_or_init(|| {
        let keeper = wine_until_exit(&[OsStr::new("explorer.exe")], Stdio::null());
        let ready = Command::new("wine")
            .args(["rundll32.exe", "user32.dll,GetDesktopWindow"])
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("wine runs rundll32.exe");
        assert!(
            ready.success(),
            "rundll32 user32.dll,GetDesktopWindow: {ready}"
        );
        keeper
    });
}

/// Serve `\\.\pipe\NAME` inside Wine, relayed to the engine, for the rest of
/// this test process: one relay per name, started by the first test asking.
///
/// One relay per test, killed at its end, broke the other tests' requests now
/// and then ("connection closed before message completed"): Wine lets a second
/// server serve a name already served, a client's connection lands on either,
/// and killing one cut the connections it held.
fn relay(bins: &Path, pipe: &str) {
    static RELAYS: Mutex<Vec<(String, Child)>> = Mutex::new(Vec::new());
    let mut relays = RELAYS.lock().unwrap_or_else(PoisonError::into_inner);
    if relays.iter().any(|(name, _)| name == pipe) {
        return;
    }
    let exe = bins.join("orca-pipe-relay.exe");
    let name = format!(r"\\.\pipe\{pipe}");
    let target = format!("127.0.0.1:{}", bridge().port());
    let mut child = wine_until_exit(
        &[exe.as_os_str(), OsStr::new(&name), OsStr::new(&target)],
        Stdio::piped(),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "relay said {line:?}");
    relays.push((pipe.to_owned(), child));
}

fn sha256_file(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A volume made by a test and removed on drop, without creating it.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_containers_using(&self.0);
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn the_windows_build_backs_up_and_restores_through_the_default_named_pipe() {
    let bins = need_wine!();
    relay(&bins, "docker_engine");
    let home = tempfile::tempdir().unwrap();
    let vol = tricky_volume();
    vol.fill_sql_like(3 << 20, 77);

    // find -> name -> export -> verify -> prune --dry-run -> report, JSON piped
    // from one Windows process to the next.
    let step = |tool: &str, args: &[&str], input: Option<&str>| -> Run {
        let c = wine(&bins, home.path(), tool, args);
        match input {
            Some(i) => run_with_stdin(c, i),
            None => Run::from_output({
                let mut c = c;
                c.output().unwrap()
            }),
        }
    };
    let found = step("orca-find-volume", &["--volume", &vol.name], None);
    let named = step(
        "orca-backup-name",
        &["--name", "win-e2e"],
        Some(&found.stdout),
    );
    let exported = step("orca-export", &[], Some(&named.stdout));
    let verified = step("orca-verify", &[], Some(&exported.stdout));
    let pruned = step("orca-prune", &["--dry-run"], Some(&verified.stdout));
    let reported = step("orca-report", &[], Some(&pruned.stdout));
    let stderr = reported.stderr.clone();
    let rec = reported.ok();
    assert!(stderr.contains("Backup complete"), "{stderr}");
    assert_eq!(rec["verified"], true);
    assert_eq!(
        rec["backup_path"],
        z(&home.path().join("backups/orca-db-win-e2e.tar.gz"))
    );
    let archive = home.path().join("backups/orca-db-win-e2e.tar.gz");
    assert!(archive.exists());

    // The Linux build makes the same bytes from the same volume.
    let linux = tempfile::tempdir().unwrap();
    let linux_archive = linux.path().join("orca-db-linux.tar.gz");
    let env = Env::new();
    export_run(&env, &vol.name, &linux_archive, &[]).ok();
    assert_eq!(
        sha256_file(&archive),
        sha256_file(&linux_archive),
        "the Windows and Linux builds wrote different archives"
    );

    // Restore with the Windows build into a new volume: entry by entry equal.
    let target = unique("orca-test-win-restored");
    let _gone = Cleanup(target.clone());
    let restored = step(
        "orca-restore",
        &[&z(&archive), "--to-new-volume", &target],
        None,
    );
    restored.ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{}", d.join("\n"));
}

#[test]
fn docker_desktops_context_and_tcp_work_from_windows() {
    let bins = need_wine!();
    relay(&bins, "dockerDesktopLinuxEngine");
    let home = tempfile::tempdir().unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-ctx"));
    // Docker Desktop's context as the CLI stores it: made by the real (Linux)
    // CLI, which refuses npipe:// hosts on Linux, so its host is then set to
    // the one Docker Desktop gives it on Windows.
    let config = tempfile::tempdir().unwrap();
    for args in [
        &[
            "context",
            "create",
            "desktop-linux",
            "--docker",
            "host=unix:///placeholder.sock",
        ][..],
        &["context", "use", "desktop-linux"][..],
    ] {
        let st = Command::new("docker")
            .arg("--config")
            .arg(config.path())
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "docker {args:?}");
    }
    let meta_dir = config.path().join("contexts/meta");
    let meta = std::fs::read_dir(&meta_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains("unix:///placeholder.sock"), "{text}");
    std::fs::write(
        &meta,
        text.replace(
            "unix:///placeholder.sock",
            "npipe:////./pipe/dockerDesktopLinuxEngine",
        ),
    )
    .unwrap();
    let mut c = wine(
        &bins,
        home.path(),
        "orca-find-volume",
        &["--volume", &vol.name],
    );
    c.env("DOCKER_CONFIG", z(config.path()));
    let rec = Run::from_output(c.output().unwrap()).ok();
    assert_eq!(rec["volume"], vol.name);
    // DOCKER_HOST over TCP.
    let mut c = wine(
        &bins,
        home.path(),
        "orca-find-volume",
        &["--volume", &vol.name],
    );
    c.env("DOCKER_HOST", bridge().host());
    let rec = Run::from_output(c.output().unwrap()).ok();
    assert_eq!(rec["volume"], vol.name);
    // And when nothing answers, the hint names Docker Desktop.
    let mut c = wine(
        &bins,
        home.path(),
        "orca-find-volume",
        &["--volume", &vol.name],
    );
    c.env("DOCKER_HOST", "npipe:////./pipe/orca_nobody_here");
    let run = Run::from_output(c.output().unwrap());
    let msg = run.message();
    run.fails_with(3);
    assert!(msg.contains("Docker Desktop"), "{msg}");
}

#[test]
fn ctrl_c_during_a_stop_leaves_the_container_running_on_windows() {
    let bins = need_wine!();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.json"),
        r#"{"stop_timeout_seconds": 30, "engine_timeout_seconds": 60}"#,
    )
    .unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-int"));
    vol.sh("echo x > /v/a.mdf");
    let sql = TestContainer::running_on(&vol.name);
    // The engine gets the stop, but its answer never comes: we are mid-stop.
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("POST", "/stop", Action::ForwardThenHang, Some(1));
    let front = TcpBridge::start(Path::new(&proxy.host()["unix://".len()..]));
    let out = home.path().join("backups/orca-db-int.tar.gz");
    let mut c = wine(
        &bins,
        home.path(),
        "orca-export",
        &["--volume", &vol.name, "--output", &z(&out), "--stop"],
    );
    c.env("DOCKER_HOST", front.host())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || proxy
            .requests()
            .iter()
            .any(|r| r.contains("/stop"))),
        "the stop was never sent"
    );
    std::thread::sleep(Duration::from_millis(500));
    // Wine turns SIGINT into the console's Ctrl-C event.
    let t = Instant::now();
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let run = Run::from_output(child.wait_with_output().unwrap());
    let took = t.elapsed();
    let stderr = run.stderr.clone();
    run.fails_with(130);
    assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
    assert_eq!(sql.state(), "running", "{stderr}");
    assert!(helpers_on(&vol.name).is_empty());
    assert!(!out.exists());
}

/// Encryption from Windows: orca-keygen.exe makes the identity, the export
/// encrypts to it, the age CLI here opens what Windows wrote, and the Windows
/// restore decrypts as it streams.
#[test]
fn the_windows_build_encrypts_and_decrypts() {
    let bins = need_wine!();
    relay(&bins, "docker_engine");
    let home = tempfile::tempdir().unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-age"));
    vol.fill_sql_like(2 << 20, 78);
    let key = home.path().join("keys").join("me.txt");
    let rec = Run::from_output(
        wine(&bins, home.path(), "orca-keygen", &["--output", &z(&key)])
            .output()
            .unwrap(),
    )
    .ok();
    let recipient = rec["recipient"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("AGE-SECRET-KEY-1")
    );
    let out = home.path().join("backups").join("orca-db-win-age.tar.gz");
    let rec = Run::from_output(
        wine(
            &bins,
            home.path(),
            "orca-export",
            &[
                "--volume",
                &vol.name,
                "--output",
                &z(&out),
                "--recipient",
                &recipient,
            ],
        )
        .output()
        .unwrap(),
    )
    .ok();
    assert_eq!(rec["encrypted"], true);
    let archive = home
        .path()
        .join("backups")
        .join("orca-db-win-age.tar.gz.age");
    assert!(
        std::fs::read(&archive)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    if Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "age -d -i '{}' '{}' | tar -tzf - >/dev/null",
                key.display(),
                archive.display()
            ))
            .status()
            .unwrap();
        assert!(st.success(), "the age CLI cannot open what Windows wrote");
    }
    // Without the identity, the Windows restore refuses (14), nothing changed.
    let target = unique("orca-test-win-age-restored");
    let _gone = Cleanup(target.clone());
    Run::from_output(
        wine(
            &bins,
            home.path(),
            "orca-restore",
            &[&z(&archive), "--to-new-volume", &target],
        )
        .output()
        .unwrap(),
    )
    .fails_with(14);
    Run::from_output(
        wine(
            &bins,
            home.path(),
            "orca-restore",
            &[
                &z(&archive),
                "--to-new-volume",
                &target,
                "--identity",
                &z(&key),
            ],
        )
        .output()
        .unwrap(),
    )
    .ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{}", d.join("\n"));
}

/// Off-machine copies from Windows: orca-copy.exe to SeaweedFS (S3 on
/// 127.0.0.1, credentials from the AWS variables), orca-list.exe --remote,
/// and orca-restore.exe straight from the s3:// URL, compared entry by entry.
#[test]
fn the_windows_build_copies_to_s3_and_restores_from_it() {
    let bins = need_wine!();
    if !orca_test_support::seaweed::or_skip(module_path!()) {
        return;
    }
    let sw = orca_test_support::seaweed::shared();
    relay(&bins, "docker_engine");
    let home = tempfile::tempdir().unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-s3"));
    vol.fill_sql_like(2 << 20, 79);
    let out = home.path().join("backups").join("orca-db-win-s3.tar.gz");
    let with_s3 = |mut c: Command| {
        c.envs(sw.env());
        Run::from_output(c.output().unwrap())
    };
    with_s3(wine(
        &bins,
        home.path(),
        "orca-export",
        &["--volume", &vol.name, "--output", &z(&out)],
    ))
    .ok();
    let prefix = unique("win");
    let dest = format!("s3://{}/{prefix}", orca_test_support::seaweed::BUCKET);
    let rec = with_s3(wine(
        &bins,
        home.path(),
        "orca-copy",
        &[&z(&out), "--to", &dest],
    ))
    .ok();
    assert_eq!(rec["copies"][0]["verified"], true);
    assert_eq!(
        sw.curl("GET", &format!("{prefix}/orca-db-win-s3.tar.gz"), None)
            .1,
        std::fs::read(&out).unwrap()
    );
    let listed = with_s3(wine(&bins, home.path(), "orca-list", &["--remote", &dest])).ok();
    assert_eq!(listed["count"], 1);
    // A Windows machine that has nothing but the copy.
    let fresh = tempfile::tempdir().unwrap();
    let target = unique("orca-test-win-s3-restored");
    let _gone = Cleanup(target.clone());
    with_s3(wine(
        &bins,
        fresh.path(),
        "orca-restore",
        &[
            &format!("{dest}/orca-db-win-s3.tar.gz"),
            "--to-new-volume",
            &target,
        ],
    ))
    .ok();
    let d = listing::diff(&listing::of_volume(&vol.name), &listing::of_volume(&target));
    assert!(d.is_empty(), "{}", d.join("\n"));
}

#[test]
fn the_windows_build_guards_a_command_that_fails_and_puts_the_volume_back() {
    let bins = need_wine!();
    relay(&bins, "docker_engine");
    let home = tempfile::tempdir().unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-guard"));
    vol.sh("mkdir -p /v/data && echo before > /v/data/Orca.mdf && echo log > /v/data/Orca_log.ldf");
    let before = listing::of_volume(&vol.name);
    // The "migration": replace the volume's contents (a restore of another
    // archive, with the Windows build), then fail.
    let other = TestVolume::named(&unique("orca-test-win-other"));
    other.sh("echo migrated > /v/changed.txt");
    let other_archive = home.path().join("other.tar.gz");
    export_run(&Env::new(), &other.name, &other_archive, &[]).ok();
    let migration = format!(
        "{} {} --volume {} --no-safety-backup & exit 3",
        z(&bins.join("orca-restore.exe")),
        z(&other_archive),
        vol.name
    );
    let run = Run::from_output(
        wine(
            &bins,
            home.path(),
            "orca-guard",
            &[
                "--volume",
                &vol.name,
                "--name",
                "win-guard",
                "--",
                "cmd",
                "/C",
                &migration,
            ],
        )
        .output()
        .unwrap(),
    );
    let stderr = run.stderr.clone();
    let rec = run.fails_saying(21, "exit code 3");
    assert_eq!(rec["guard"]["restored"], true, "{rec}");
    // The command ran and changed the volume before it failed.
    assert!(stderr.contains("orca-restore"), "{stderr}");
    assert_eq!(rec["guard"]["command_result"]["exit_code"], 3);
    let kept = rec["guard"]["failed_state"].as_str().unwrap().to_string();
    assert!(kept.starts_with("Z:\\"), "{kept}");
    let d = listing::diff(&before, &listing::of_volume(&vol.name));
    assert!(
        d.is_empty(),
        "the volume was not put back: {}",
        d.join("\n")
    );
    // The failed state was kept: it holds what the command left.
    let kept_unix = kept.trim_start_matches("Z:").replace('\\', "/");
    let names = Command::new("tar")
        .args(["-tf", &kept_unix])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&names.stdout).contains("changed.txt"),
        "the failed state {kept_unix} lacks the command's change: {} {}",
        String::from_utf8_lossy(&names.stdout),
        String::from_utf8_lossy(&names.stderr)
    );
}

#[test]
fn the_windows_build_runs_the_whole_workflow_into_a_non_ascii_path() {
    let bins = need_wine!();
    relay(&bins, "docker_engine");
    let parent = tempfile::tempdir().unwrap();
    // A user name with letters Windows PowerShell 5.1 would mangle in a pipe.
    let home = parent.path().join("Jürgen Ørsted-Łukasz");
    std::fs::create_dir_all(&home).unwrap();
    let vol = TestVolume::named(&unique("orca-test-win-flow"));
    vol.fill_sql_like(2 << 20, 5);
    std::fs::write(home.join("config.json"), r#"{"min_size_warning_mb": 0}"#).unwrap();
    // Every run told to a webhook (a recording server on this side of Wine).
    let sink = Sink::http(200, 0.0);
    let hook = format!("generic+http://127.0.0.1:{}/hook", sink.port);
    let run = Run::from_output(
        wine(
            &bins,
            &home,
            "orca-backup",
            &[
                "--volume",
                &vol.name,
                "--name",
                "ünïcode",
                "--notify",
                &hook,
                "--notify-level",
                "info",
            ],
        )
        .output()
        .unwrap(),
    );
    let stderr = run.stderr.clone();
    let rec = run.ok();
    assert!(stderr.contains("Backup complete"), "{stderr}");
    // What `orca-backup | ConvertFrom-Json` gives a PowerShell script.
    assert_eq!(rec["success"], true);
    assert_eq!(rec["message"], "Backup created successfully");
    assert!(rec["size_bytes"].as_u64().unwrap() > 0);
    assert!(rec["size"].as_str().unwrap().ends_with(" MB"));
    assert_eq!(rec["verified"], true);
    let path = rec["backup_path"].as_str().unwrap();
    assert_eq!(
        path,
        z(&home.join("backups").join("orca-db-ünïcode.tar.gz"))
    );
    assert!(home.join("backups").join("orca-db-ünïcode.tar.gz").exists());
    assert_eq!(rec["notifications"][0]["sent"], true, "{rec}");
    let got = sink.got();
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert!(
        body["title"]
            .as_str()
            .unwrap()
            .contains("orca-db-ünïcode.tar.gz"),
        "{body}"
    );
    // orca-status from Windows: fresh, and its Prometheus file written
    // atomically into the non-ASCII directory.
    let prom = home.join("metrics.prom");
    let status = Run::from_output(
        wine(
            &bins,
            &home,
            "orca-status",
            &["--max-age", "1h", "--prometheus", &z(&prom)],
        )
        .output()
        .unwrap(),
    )
    .ok();
    assert_eq!(status["last_backup"]["name"], "orca-db-ünïcode.tar.gz");
    assert!(status["free_bytes"].as_u64().unwrap() > 0, "{status}");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("orca_backup_count 1\n"), "{text}");
}

#[test]
fn the_windows_build_installs_a_schedule_with_wines_schtasks() {
    let bins = need_wine!();
    let home = tempfile::tempdir().unwrap();
    let prefix = std::env::var_os("WINEPREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".wine"));
    let name = format!("win{}", &unique_hex10()[..6]);
    let task = prefix.join(format!("drive_c/windows/system32/tasks/orca-backup/{name}"));
    let run = Run::from_output(
        wine(
            &bins,
            home.path(),
            "orca-schedule",
            &[
                "install",
                "--name",
                &name,
                "--daily",
                "02:30",
                "--",
                "--compression",
                "zstd",
            ],
        )
        .output()
        .unwrap(),
    );
    let rec = run.ok();
    assert_eq!(rec["scheduler"], "schtasks");
    let command = rec["command"].as_array().unwrap();
    assert!(
        command[0].as_str().unwrap().ends_with("orca-backup.exe"),
        "{rec}"
    );
    // Wine's Task Scheduler parsed the XML and registered the task.
    assert!(task.exists(), "no task at {}", task.display());
    let stored = std::fs::read(&task).unwrap();
    let text = if stored.starts_with(&[0xFF, 0xFE]) {
        String::from_utf16_lossy(
            &stored[2..]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect::<Vec<_>>(),
        )
    } else {
        String::from_utf8_lossy(&stored).into_owned()
    };
    assert!(text.contains("StartWhenAvailable"), "{text}");
    let removed = Run::from_output(
        wine(&bins, home.path(), "orca-schedule", &["remove", &name])
            .output()
            .unwrap(),
    );
    removed.ok();
    assert!(!task.exists(), "the task is still registered");
}
