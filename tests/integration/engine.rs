//! The engine client: endpoints resolved as the docker CLI resolves them (real
//! contexts made by the real CLI, TCP, TLS, the CLI's dial-stdio), deadlines
//! and Ctrl-C against an engine that stops answering (a proxy in front of the
//! real engine), helpers and locks left by killed runs, `--rm` containers, and
//! one writer per volume.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::*;
use crate::need_docker;

const SOCKET: &str = "/var/run/docker.sock";

fn find(env: &Env, vars: &[(&str, &str)], vol: &str) -> Run {
    let mut c = env.cmd("orca-find-volume", &["--volume", vol]);
    c.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    for (k, v) in vars {
        c.env(k, v);
    }
    Run::from_output(c.output().unwrap())
}

/// `docker --config DIR args...` with the real CLI.
fn cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn endpoints_resolve_as_the_docker_cli_resolves_them() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-ep"));
    let found = |r: Run| assert_eq!(r.ok()["volume"], vol.name);

    // DOCKER_HOST: a Unix socket and TCP.
    found(find(
        &env,
        &[("DOCKER_HOST", &format!("unix://{SOCKET}"))],
        &vol.name,
    ));
    let bridge = TcpBridge::to_docker();
    found(find(&env, &[("DOCKER_HOST", &bridge.host())], &vol.name));

    // A context made by the real CLI, pointing at a socket (a proxy, so we see
    // that this endpoint and no other is the one used).
    let config = tempfile::tempdir().unwrap();
    let proxy = EngineProxy::in_front_of_docker();
    cli(
        config.path(),
        &[
            "context",
            "create",
            "orca-ctx",
            "--docker",
            &format!("host={}", proxy.host()),
        ],
    );
    let cfg = config.path().to_str().unwrap();
    found(find(
        &env,
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "orca-ctx")],
        &vol.name,
    ));
    let by_env = proxy.requests().len();
    assert!(by_env > 0, "DOCKER_CONTEXT did not select the context");
    // ...and selected by `docker context use` (config.json's currentContext).
    cli(config.path(), &["context", "use", "orca-ctx"]);
    found(find(&env, &[("DOCKER_CONFIG", cfg)], &vol.name));
    assert!(
        proxy.requests().len() > by_env,
        "`docker context use` did not select the context"
    );
    // DOCKER_HOST wins over the current context.
    let before = proxy.requests().len();
    found(find(
        &env,
        &[
            ("DOCKER_CONFIG", cfg),
            ("DOCKER_HOST", &format!("unix://{SOCKET}")),
        ],
        &vol.name,
    ));
    assert_eq!(proxy.requests().len(), before);
    // A context that does not exist: exit 3, naming it and what to do.
    let run = find(
        &env,
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "no-such-ctx")],
        &vol.name,
    );
    let msg = run.message();
    run.fails_with(3);
    assert!(
        msg.contains("'no-such-ctx'") && msg.contains("docker context ls"),
        "{msg}"
    );
}

#[test]
fn ssh_style_hosts_go_through_the_clis_dial_stdio() {
    need_docker!();
    // The transport ssh:// hosts use (`docker -H HOST system dial-stdio`),
    // forced here for the local socket: the same code path minus ssh itself.
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-dial"));
    let run = find(
        &env,
        &[
            ("DOCKER_HOST", &format!("unix://{SOCKET}")),
            ("ORCA_DOCKER_VIA_CLI", "1"),
        ],
        &vol.name,
    );
    assert_eq!(run.ok()["volume"], vol.name);
    // Without a docker CLI that path says what is missing.
    let mut c = env.cmd("orca-find-volume", &["--volume", &vol.name]);
    c.env("DOCKER_HOST", "ssh://nobody@127.0.0.1:1")
        .env("PATH", "/nonexistent");
    let run = Run::from_output(c.output().unwrap());
    run.fails_saying(3, "docker CLI");
}

/// A TLS front (client certificates required) in front of the engine: Python's
/// ssl module, an implementation independent of the client under test.
struct TlsFront {
    child: Child,
    port: u16,
}

impl TlsFront {
    fn start(certs: &Certs) -> TlsFront {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/scripts/tls_front.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(certs.path("server-cert.pem"))
            .arg(certs.path("server-key.pem"))
            .arg(certs.path("ca.pem"))
            .arg(SOCKET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        assert!(
            wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "the TLS front did not listen"
        );
        TlsFront { child, port }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_endpoints_from_the_environment_and_from_a_context() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-tls"));
    let certs = Certs::new();
    let front = TlsFront::start(&certs);
    let host = format!("tcp://127.0.0.1:{}", front.port);
    let dir = certs.dir.path().to_str().unwrap().to_string();
    // DOCKER_TLS_VERIFY with DOCKER_CERT_PATH.
    let run = find(
        &env,
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &dir),
        ],
        &vol.name,
    );
    assert_eq!(run.ok()["volume"], vol.name);
    // Plain HTTP to a TLS port fails cleanly.
    let run = find(&env, &[("DOCKER_HOST", &host)], &vol.name);
    run.fails_with(3);
    // A context whose TLS files the real CLI stored.
    let config = tempfile::tempdir().unwrap();
    cli(
        config.path(),
        &[
            "context",
            "create",
            "tls-ctx",
            "--docker",
            &format!(
                "host={host},ca={},cert={},key={}",
                certs.path("ca.pem").display(),
                certs.path("cert.pem").display(),
                certs.path("key.pem").display()
            ),
        ],
    );
    let cfg = config.path().to_str().unwrap();
    let run = find(
        &env,
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "tls-ctx")],
        &vol.name,
    );
    assert_eq!(run.ok()["volume"], vol.name);
    // The engine's certificate must chain to the CA given: another CA fails.
    let other = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(certs.path(f), other.path().join(f)).unwrap();
    }
    std::fs::copy(certs.path("other-ca.pem"), other.path().join("ca.pem")).unwrap();
    let run = find(
        &env,
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", other.path().to_str().unwrap()),
        ],
        &vol.name,
    );
    let msg = run.message();
    run.fails_with(3);
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
}

fn sha256_file(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_transport_makes_the_same_archive() {
    need_docker!();
    let env = Env::new();
    let vol = TestVolume::named(&unique("orca-test-transports"));
    vol.fill_sql_like(6 << 20, 5);
    let bridge = TcpBridge::to_docker();
    let mut sums = Vec::new();
    for (name, vars) in [
        ("unix", vec![("DOCKER_HOST", format!("unix://{SOCKET}"))]),
        ("tcp", vec![("DOCKER_HOST", bridge.host())]),
        (
            "cli",
            vec![
                ("DOCKER_HOST", format!("unix://{SOCKET}")),
                ("ORCA_DOCKER_VIA_CLI", "1".to_string()),
            ],
        ),
    ] {
        let out = env.backups().join(format!("orca-db-{name}.tar.gz"));
        let mut c = env.cmd(
            "orca-export",
            &["--volume", &vol.name, "--output", out.to_str().unwrap()],
        );
        for (k, v) in &vars {
            c.env(k, v);
        }
        Run::from_output(c.output().unwrap()).ok();
        sums.push((name, sha256_file(&out)));
    }
    assert!(
        sums.iter().all(|(_, s)| *s == sums[0].1),
        "archives differ by transport: {sums:?}"
    );
}

/// Orca's locks and helpers that still exist for `volume`.
fn leftovers(volume: &str) -> Vec<String> {
    let lock = format!("label=org.orca-backup.lock={volume}");
    let mut all = helpers_on(volume);
    all.extend(
        docker_ok(&["ps", "-aq", "--filter", &lock])
            .split_whitespace()
            .map(String::from),
    );
    all
}

fn export_through(env: &Env, proxy: &EngineProxy, vol: &str, extra: &[&str]) -> Command {
    let out = env.backups().join("orca-db-hang.tar.gz");
    let mut args = vec!["--volume", vol, "--output", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut c = env.cmd("orca-export", &args);
    c.env("DOCKER_HOST", proxy.host());
    c
}

#[test]
fn an_engine_that_accepts_and_never_answers_fails_within_its_deadline() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 2}"#);
    let vol = TestVolume::named(&unique("orca-test-mute"));
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("GET", "", Action::Hang, None);
    proxy.rule("POST", "", Action::Hang, None);
    let t = Instant::now();
    let run = Run::from_output(
        export_through(&env, &proxy, &vol.name, &[])
            .output()
            .unwrap(),
    );
    let took = t.elapsed();
    let msg = run.message();
    run.fails_with(3);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(msg.contains("within 2 s"), "{msg}");
    assert!(incomplete_files(&env.backups()).is_empty());
}

#[test]
fn ctrl_c_ends_a_wait_on_a_mute_engine_within_a_second() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 120}"#);
    let vol = TestVolume::named(&unique("orca-test-mutec"));
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("GET", "", Action::Hang, None);
    let child = export_through(&env, &proxy, &vol.name, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !proxy.requests().is_empty()),
        "no request reached the engine"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    interrupt(&child);
    let run = Run::from_output(child.wait_with_output().unwrap());
    let took = t.elapsed();
    run.fails_with(130);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(incomplete_files(&env.backups()).is_empty());
}

#[test]
fn a_stop_that_never_returns_times_out_and_the_container_runs_again() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 3, "stop_timeout_seconds": 1}"#);
    let vol = TestVolume::named(&unique("orca-test-stophang"));
    vol.sh("echo x > /v/a.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let proxy = EngineProxy::in_front_of_docker();
    // The engine stops the container, but the answer never comes back.
    proxy.rule("POST", "/stop", Action::ForwardThenHang, Some(1));
    let t = Instant::now();
    let run = Run::from_output(
        export_through(&env, &proxy, &vol.name, &["--stop"])
            .output()
            .unwrap(),
    );
    let took = t.elapsed();
    let stderr = run.stderr.clone();
    let msg = run.message();
    run.fails_with(3);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(msg.contains("stop container"), "{msg}");
    assert_eq!(sql.state(), "running", "{stderr}");
    assert!(leftovers(&vol.name).is_empty());
    assert!(incomplete_files(&env.backups()).is_empty());
}

fn interrupt(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn ctrl_c_during_a_hung_stop_cancels_it_and_the_container_runs_again() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 60, "stop_timeout_seconds": 30}"#);
    let vol = TestVolume::named(&unique("orca-test-stopint"));
    vol.sh("echo x > /v/a.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("POST", "/stop", Action::ForwardThenHang, Some(1));
    let child = export_through(&env, &proxy, &vol.name, &["--stop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || proxy
            .requests()
            .iter()
            .any(|r| r.contains("/stop"))),
        "the stop was never sent"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    interrupt(&child);
    let run = Run::from_output(child.wait_with_output().unwrap());
    let took = t.elapsed();
    let stderr = run.stderr.clone();
    run.fails_with(130);
    // Cancelled at once; the rest is cleanup (finish the stop, start it again).
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert!(stderr.contains("starting container"), "{stderr}");
    assert_eq!(sql.state(), "running", "{stderr}");
    assert!(leftovers(&vol.name).is_empty());
    assert!(incomplete_files(&env.backups()).is_empty());
}

#[test]
fn a_hung_archive_stream_fails_within_the_deadline_and_cleans_up() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"engine_timeout_seconds": 2, "stop_timeout_seconds": 1}"#);
    let vol = TestVolume::named(&unique("orca-test-streamhang"));
    vol.sh("echo x > /v/a.mdf");
    let sql = TestContainer::running_on(&vol.name);
    let proxy = EngineProxy::in_front_of_docker();
    proxy.rule("GET", "/archive", Action::Hang, None);
    let t = Instant::now();
    let run = Run::from_output(
        export_through(&env, &proxy, &vol.name, &["--stop"])
            .output()
            .unwrap(),
    );
    let took = t.elapsed();
    run.fails_with(3);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(sql.state(), "running");
    assert!(leftovers(&vol.name).is_empty());
    assert!(incomplete_files(&env.backups()).is_empty());
}

/// Start a slow export of `vol` and SIGKILL it once it writes its archive.
fn kill_an_export(env: &Env, vol: &str, extra: &[&str]) {
    let out = env.backups().join("orca-db-killed.tar.gz");
    let mut args = vec![
        "--volume",
        vol,
        "--output",
        out.to_str().unwrap(),
        "--level",
        "9",
    ];
    args.extend_from_slice(extra);
    let mut child = env
        .cmd("orca-export", &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || !incomplete_files(
            &env.backups()
        )
        .is_empty()),
        "the export never started writing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn what_a_killed_export_leaves_is_cleared_by_the_next_run() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-killed"));
    vol.fill_sql_like(192 << 20, 9);
    let sql = TestContainer::running_on(&vol.name);
    kill_an_export(&env, &vol.name, &["--stop"]);
    // The lock stays and SQL Server stays stopped. (The helper pins the
    // volume until a run clears it: any run does, so a test running in
    // parallel may have done so already.)
    assert_eq!(sql.state(), "exited");
    // Work on another volume leaves that lock alone (its containers must be
    // started again by the run that clears it).
    let other = TestVolume::named(&unique("orca-test-other"));
    let out = env.backups().join("orca-db-other.tar.gz");
    let run = export_run(&env, &other.name, &out, &[]);
    let stderr = run.stderr.clone();
    run.ok();
    // Any run clears a dead run's helpers (they pin the volume)...
    assert!(helpers_on(&vol.name).is_empty(), "{stderr}");
    // ...but only a run on that volume clears its lock.
    assert!(
        !leftovers(&vol.name).is_empty(),
        "another volume's run took the lock"
    );
    assert_eq!(sql.state(), "exited");
    let out = env.backups().join("orca-db-next.tar.gz");
    let run = export_run(&env, &vol.name, &out, &[]);
    let stderr = run.stderr.clone();
    let rec = run.ok();
    // The container it started again is seen running: a live copy.
    assert_eq!(rec["consistent"], false, "{stderr}");
    assert!(stderr.contains("live copy"), "{stderr}");
    assert!(stderr.contains("removing the lock on volume"), "{stderr}");
    assert!(
        stderr.contains("a killed orca run had stopped it"),
        "{stderr}"
    );
    assert_eq!(sql.state(), "running");
    assert!(leftovers(&vol.name).is_empty(), "{stderr}");
}

#[test]
fn stop_refuses_a_container_started_with_rm_unless_told() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-autorm"));
    vol.sh("echo x > /v/a.mdf");
    let name = unique("orca-test-rm");
    let mount = format!("{}:/var/opt/mssql", vol.name);
    docker_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        &name,
        "--label",
        TEST_LABEL,
        "--network",
        "none",
        "-v",
        &mount,
        busybox_image(),
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let state = || {
        let o = docker(&["inspect", "--format", "{{.State.Status}}", &name]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let out = env.backups().join("orca-db-rm.tar.gz");
    let run = export_run(&env, &vol.name, &out, &["--stop"]);
    let msg = run.message();
    run.fails_with(9);
    assert!(msg.contains(&name) && msg.contains("--rm"), "{msg}");
    assert_eq!(state(), "running");
    assert!(!out.exists());
    let rec = export_run(&env, &vol.name, &out, &["--stop", "--allow-autoremove"]).ok();
    assert_eq!(rec["consistent"], true);
    assert_eq!(rec["stopped_containers"][0]["name"], name.as_str());
    assert!(
        wait_for(Duration::from_secs(10), || state().is_empty()),
        "the --rm container should be gone"
    );
}

/// Wait until an orca process holds a `mode` lock on `volume`.
fn wait_for_lock(volume: &str, mode: &str) -> bool {
    let lock = format!("label=org.orca-backup.lock={volume}");
    let m = format!("label=org.orca-backup.lock-mode={mode}");
    wait_for(Duration::from_secs(60), || {
        !docker_ok(&["ps", "-aq", "--filter", &lock, "--filter", &m])
            .trim()
            .is_empty()
    })
}

#[test]
fn a_restore_and_an_export_of_one_volume_exclude_each_other() {
    need_docker!();
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0}"#);
    let vol = TestVolume::named(&unique("orca-test-excl"));
    vol.fill_sql_like(160 << 20, 12);
    let small = env.backups().join("orca-db-small.tar.gz");
    let other = TestVolume::named(&unique("orca-test-excl-src"));
    other.sh("echo other > /v/other.mdf");
    export_run(&env, &other.name, &small, &[]).ok();

    // A slow export runs: a restore of that volume is refused, nothing changes.
    let before = listing::of_volume(&vol.name);
    let slow = env.backups().join("orca-db-slow.tar.gz");
    let export = env
        .cmd(
            "orca-export",
            &[
                "--volume",
                &vol.name,
                "--output",
                slow.to_str().unwrap(),
                "--level",
                "9",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for_lock(&vol.name, "export"),
        "the export took no lock"
    );
    let run = env.run(
        "orca-restore",
        &[small.to_str().unwrap(), "--volume", &vol.name],
    );
    let msg = run.message();
    run.fails_with(12);
    assert!(
        msg.contains("orca-export") && msg.contains("exporting"),
        "{msg}"
    );
    Run::from_output(export.wait_with_output().unwrap()).ok();
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());

    // A restore runs: an export of that volume is refused; the restore completes.
    let restore = env
        .cmd(
            "orca-restore",
            &[slow.to_str().unwrap(), "--volume", &vol.name],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for_lock(&vol.name, "restore"),
        "the restore took no lock"
    );
    let out = env.backups().join("orca-db-during.tar.gz");
    let run = export_run(&env, &vol.name, &out, &[]);
    let msg = run.message();
    run.fails_with(12);
    assert!(
        msg.contains("orca-restore") && msg.contains("restoring"),
        "{msg}"
    );
    assert!(!out.exists());
    Run::from_output(restore.wait_with_output().unwrap()).ok();
    assert!(listing::diff(&before, &listing::of_volume(&vol.name)).is_empty());
    assert!(leftovers(&vol.name).is_empty());
}
