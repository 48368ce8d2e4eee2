//! What every end-to-end test needs: the built binaries, a private ORCA_HOME,
//! JSON output decoded into values, and real pipes between tools.
//!
//! The binaries are found next to this test executable (`target/<profile>/`).
//! `cargo test --workspace` builds them first: every tool crate has tests of
//! its own, and cargo builds a package's binaries for its integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub use orca_test_support::*;

/// Every tool.
pub const TOOLS: &[&str] = &[
    "orca-find-volume",
    "orca-backup-name",
    "orca-export",
    "orca-verify",
    "orca-prune",
    "orca-restore",
    "orca-list",
    "orca-copy",
    "orca-guard",
    "orca-backup",
    "orca-schedule",
    "orca-notify",
    "orca-status",
];

/// The path of a built binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (it builds every tool)",
        path.display()
    );
    path
}

/// The directory holding the binaries (for PATH in script tests).
pub fn bin_dir() -> PathBuf {
    bin("orca-find-volume")
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

/// A private ORCA_HOME and the commands that use it.
pub struct Env {
    /// The temporary base directory.
    pub home: TempDir,
}

/// A finished command: exit code, decoded stdout record, stderr text.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// The JSON record on stdout (Null when stdout was not one JSON object).
    pub json: Value,
    /// Raw stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Run {
    /// Decode a finished process.
    pub fn from_output(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            json,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Assert success and return the record.
    pub fn ok(self) -> Value {
        assert_eq!(
            self.code, 0,
            "expected success; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        assert_eq!(self.json["success"], true, "{}", self.stdout);
        self.json
    }

    /// Assert failure with `code` and a record saying so; return the record.
    pub fn fails_with(self, code: i32) -> Value {
        assert_eq!(
            self.code, code,
            "expected exit {code}; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        assert_eq!(self.json["success"], false, "{}", self.stdout);
        assert_eq!(self.json["error"]["exit_code"], code, "{}", self.stdout);
        assert!(
            self.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && !m.contains('\n'))
        );
        self.json
    }

    /// Assert failure with `code` and a message holding `needle`; return the
    /// record.
    pub fn fails_saying(self, code: i32, needle: &str) -> Value {
        let msg = self.message();
        let record = self.fails_with(code);
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        record
    }

    /// The error message of a failed record.
    pub fn message(&self) -> String {
        self.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Env {
    /// A fresh ORCA_HOME.
    pub fn new() -> Env {
        Env {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        self.home.path()
    }

    /// The default backups directory.
    pub fn backups(&self) -> PathBuf {
        self.home.path().join("backups")
    }

    /// Write `<base>/config.json`.
    pub fn config(&self, json: &str) {
        std::fs::write(self.home.path().join("config.json"), json).expect("write config");
    }

    /// A config whose filter only sees volumes of app `app` (other tests' volumes stay invisible).
    pub fn config_for_app(&self, app: &str) {
        self.config(&format!(
            r#"{{"volume_filter": "{app}.apphost", "stop_timeout_seconds": 5}}"#
        ));
    }

    /// `tool args...` with this env (stdin empty, no terminal).
    pub fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin(tool));
        c.args(args)
            .env("ORCA_HOME", self.home.path())
            .env_remove("ORCA_CONFIG")
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        c
    }

    /// Run `tool args...`.
    pub fn run(&self, tool: &str, args: &[&str]) -> Run {
        Run::from_output(self.cmd(tool, args).output().expect("run tool"))
    }

    /// Run `tool args...` with `input` on stdin.
    pub fn run_with(&self, tool: &str, args: &[&str], input: &str) -> Run {
        run_with_stdin(self.cmd(tool, args), input)
    }

    /// Run a shell pipeline (bash, pipefail) with the tools on PATH; the exit
    /// code is the first failing stage's.
    pub fn pipeline(&self, script: &str) -> Run {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", script])
            .env("PATH", path)
            .env("ORCA_HOME", self.home.path())
            .env_remove("ORCA_CONFIG")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        Run::from_output(out)
    }
}

/// `orca-export --volume VOL --output OUT EXTRA...` in `env`.
pub fn export_run(env: &Env, volume: &str, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--volume",
        volume,
        "--output",
        out.to_str().expect("UTF-8 test path"),
    ];
    args.extend_from_slice(extra);
    env.run("orca-export", &args)
}

/// Run a prepared command with `input` on stdin.
pub fn run_with_stdin(mut c: Command, input: &str) -> Run {
    use std::io::Write;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn tool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    Run::from_output(child.wait_with_output().expect("wait tool"))
}

/// Files in a directory (names), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files of ours that say "being written" (must never survive a failure).
pub fn incomplete_files(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".incomplete"))
        .collect()
}

/// Whether we run as root (some failure tests need mounts or immutable files).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A tiny tmpfs mounted for one test (root only), unmounted on drop.
pub struct Tmpfs {
    /// Mount point.
    pub dir: TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "2m").
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let opt = format!("size={size},mode=0700");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opt, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(st.success(), "cannot mount a tmpfs (needs root)");
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Make a directory immutable (root: chattr +i) or read-only (others), undone on drop.
pub struct ReadOnlyDir {
    path: PathBuf,
    chattr: bool,
}

impl ReadOnlyDir {
    /// Lock `path` against changes.
    pub fn new(path: &Path) -> ReadOnlyDir {
        if is_root() {
            let st = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .expect("chattr runs");
            assert!(st.success(), "chattr +i failed on {}", path.display());
            ReadOnlyDir {
                path: path.to_path_buf(),
                chattr: true,
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o500)).expect("chmod");
            ReadOnlyDir {
                path: path.to_path_buf(),
                chattr: false,
            }
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.chattr {
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// Make a file immutable (root) or read-only, undone on drop (for "cannot delete").
pub fn immutable(path: &Path) -> ReadOnlyDir {
    ReadOnlyDir::new(path)
}

/// Skip (loudly) unless Docker is there; in CI missing Docker fails the test.
#[macro_export]
macro_rules! need_docker {
    () => {
        if !$crate::common::docker_or_skip(module_path!()) {
            return;
        }
    };
}

/// Spawn `c` with `ORCA_TEST_PAUSE_AT=point` and wait until it pauses there;
/// its stderr is read to the end on a thread (a closed pipe would make the
/// tool's own messages fail) and its lines keep coming on the receiver.
pub fn spawn_paused(mut c: Command, point: &str) -> (Child, mpsc::Receiver<String>) {
    c.env("ORCA_TEST_PAUSE_AT", point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn tool");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let want = format!("orca-test: paused at {point}");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == want => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("never paused at {point}:\n{}", seen.join("\n"));
            }
        }
    }
    (child, rx)
}

/// Wait for a tool started with [`spawn_paused`]: its outcome, with the rest
/// of its stderr.
pub fn finish_paused(child: Child, rx: mpsc::Receiver<String>) -> Run {
    let out = child.wait_with_output().expect("wait tool");
    let stderr: Vec<String> = rx.iter().collect();
    Run::from_output(Output {
        stderr: stderr.join("\n").into_bytes(),
        ..out
    })
}

/// Send `sig` (`-INT`, `-KILL`...) to a child.
pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success());
}

/// A volume a test made through a tool (not created by the test itself),
/// removed on drop.
pub struct GoneVolume(pub String);

impl Drop for GoneVolume {
    fn drop(&mut self) {
        remove_containers_using(&self.0);
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// A script of tests/support/scripts.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/scripts")
        .join(name)
}

/// A recording server (tests/support/scripts/*_sink.py), killed on drop.
pub struct Sink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Sink {
    fn spawn(mut cmd: Command, dir: TempDir, log: PathBuf) -> Sink {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (the CI installs aiosmtpd with pip)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the test server did not start (pip install aiosmtpd?): {line:?}")
        });
        Sink {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// An HTTP server answering `status` after `delay` seconds.
    pub fn http(status: u16, delay: f64) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut c = Command::new("python3");
        c.arg(script("http_sink.py")).arg(&log).args([
            "--status",
            &status.to_string(),
            "--delay",
            &delay.to_string(),
        ]);
        Sink::spawn(c, dir, log)
    }

    /// An SMTP server (`starttls` or `implicit`) with AUTH for alice, with
    /// `server-cert.pem` and `server-key.pem` from `certs`.
    pub fn smtp(mode: &str, certs: &Path, password: &str) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mails.jsonl");
        let mut c = Command::new("python3");
        c.arg(script("smtp_sink.py"))
            .arg(&log)
            .arg(certs.join("server-cert.pem"))
            .arg(certs.join("server-key.pem"))
            .args(["alice", password, mode]);
        Sink::spawn(c, dir, log)
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it received, in order.
    pub fn got(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
pub struct Certs {
    /// Where the files are.
    pub dir: tempfile::TempDir,
}

impl Certs {
    /// Make them (openssl).
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"
set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=orca-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=orca-client 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile client.ext 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-key.pem -out other-ca.pem -days 2 -subj /CN=other-ca 2>/dev/null
"#;
        let st = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir.path())
            .status()
            .expect("openssl runs (apt-get install openssl)");
        assert!(st.success(), "making test certificates failed");
        Certs { dir }
    }

    /// One of the files: ca.pem, server-cert.pem, server-key.pem, cert.pem, key.pem...
    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}
