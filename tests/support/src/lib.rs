//! Helpers for orca-backup's tests and benchmarks, never shipped in a tool.
//!
//! - [`docker_or_skip`]: Docker-backed tests run against a real engine; without
//!   one they fail when `ORCA_REQUIRE_DOCKER=1` (CI) and skip loudly otherwise.
//! - [`busybox_image`]: a tiny local image made with `docker import` from the
//!   host's static busybox (Debian's `busybox-static`): no registry needed.
//! - [`TestVolume`], [`TestContainer`]: uniquely named, removed on drop, also
//!   when the test panics.
//! - [`sqldata`]: deterministic SQL-Server-like files (8 KiB pages: zeroed,
//!   row-like text and random) streamed into a volume as a tar.
//! - [`listing`]: a volume or archive as comparable entries (type, size, mode,
//!   owner, link target, content hash).

pub mod corpus;
pub mod databases;
#[cfg(unix)]
pub mod engine_proxy;
pub mod listing;
#[cfg(unix)]
pub mod seaweed;
pub mod sqldata;

#[cfg(unix)]
pub use engine_proxy::{Action, EngineProxy, TcpBridge, http_response, wait_for};

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The local test image: static busybox with the applets tests use.
pub const BUSYBOX_IMAGE: &str = "orca-test-busybox:1";
/// Label on everything tests create, for cleanup and leak checks.
pub const TEST_LABEL: &str = "org.orca-backup.test";

/// Run `docker args...`, returning the output whatever the status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the docker CLI")
}

/// Run `docker args...`; panic with docker's stderr on failure; return stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `docker args...` with `input` on stdin; panic on failure.
pub fn docker_with_input(args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the docker CLI");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("docker runs");
    let _ = feeder.join();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a Docker engine answers.
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// `true` when Docker-backed tests can run. Without an engine: panic when
/// `ORCA_REQUIRE_DOCKER=1` (CI must not pass by skipping), else print a loud
/// skip notice and return `false`.
pub fn docker_or_skip(test: &str) -> bool {
    if docker_available() {
        return true;
    }
    if std::env::var("ORCA_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: Docker is required (ORCA_REQUIRE_DOCKER=1) but no engine answers `docker version`"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: no Docker engine answers. Start Docker to run it (CI sets ORCA_REQUIRE_DOCKER=1 and fails instead). ***\n"
    );
    false
}

/// A name no other test or run uses: `<prefix>-<pid>-<n>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Ten lowercase hex digits, unique per call (for Aspire-style names).
pub fn unique_hex10() -> String {
    let u = unique("x");
    let mut h: u64 = 0xcbf29ce484222325;
    for b in u.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

/// Make sure [`BUSYBOX_IMAGE`] exists, building it from the host's static
/// busybox. Panics with what to install when there is none.
pub fn busybox_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if docker(&["image", "inspect", BUSYBOX_IMAGE])
            .status
            .success()
        {
            return;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "tests need a static busybox to build their image: apt-get install busybox-static",
            );
        let tar = busybox_rootfs(busybox);
        let label = format!("LABEL {TEST_LABEL}=true");
        docker_with_input(
            &[
                "import",
                "--change",
                "CMD [\"/bin/sh\"]",
                "--change",
                &label,
                "-",
                BUSYBOX_IMAGE,
            ],
            &tar,
        );
    });
    BUSYBOX_IMAGE
}

/// An empty image (made with `docker import` of an empty tar) for containers
/// that are only created, never started: enough for `docker cp` in and out.
pub const EMPTY_IMAGE: &str = "orca-test-empty:1";

/// Make sure [`EMPTY_IMAGE`] exists; needs nothing but Docker.
pub fn empty_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if docker(&["image", "inspect", EMPTY_IMAGE]).status.success() {
            return;
        }
        let label = format!("LABEL {TEST_LABEL}=true");
        docker_with_input(
            &["import", "--change", &label, "-", EMPTY_IMAGE],
            &[0u8; 1024],
        );
    });
    EMPTY_IMAGE
}

/// Whether `path` is an ELF executable without a program interpreter (static).
pub fn is_static_elf(path: &str) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false; // not a 64-bit ELF
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        // PT_INTERP (3) names the dynamic loader: a dynamic executable.
        at + 4 <= bytes.len()
            && u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) != 3
    })
}

/// A rootfs tar: /bin/busybox plus applet links, /tmp.
pub fn busybox_rootfs(busybox: &str) -> Vec<u8> {
    busybox_rootfs_with(busybox, &[])
}

/// [`busybox_rootfs`] plus `extra` files (path without the leading `/`,
/// mode, contents); their directories are made 0755.
pub fn busybox_rootfs_with(busybox: &str, extra: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, _, _) in extra {
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if at != "bin" && at != "tmp" && !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).expect("tar");
    }
    for (path, mode, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).expect("tar");
    }
    let bin = std::fs::read(busybox).expect("read busybox");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h.clone(), "bin", std::io::empty())
        .expect("tar");
    let mut t = h.clone();
    t.set_mode(0o1777);
    b.append_data(&mut t, "tmp", std::io::empty()).expect("tar");
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_mode(0o755);
    f.set_size(bin.len() as u64);
    b.append_data(&mut f, "bin/busybox", &bin[..]).expect("tar");
    for applet in [
        "sh",
        "tar",
        "gzip",
        "gunzip",
        "sleep",
        "rm",
        "find",
        "ls",
        "mkdir",
        "chmod",
        "chown",
        "ln",
        "cat",
        "sha256sum",
        "dd",
        "stat",
        "touch",
        "mkfifo",
        "echo",
        "head",
        "true",
        "xargs",
        "wc",
        "sync",
        "cp",
        "mv",
        "printf",
        "seq",
    ] {
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mode(0o777);
        l.set_size(0);
        b.append_link(&mut l, format!("bin/{applet}"), "busybox")
            .expect("tar");
    }
    b.into_inner().expect("tar")
}

/// An archive of `volume` made by today's method, `tar -czf - -C /volume .`
/// in a busybox container (the gzip bytes).
pub fn todays_archive(volume: &str) -> Vec<u8> {
    let mount = format!("{volume}:/volume:ro");
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mount,
            busybox_image(),
        ])
        .args(["tar", "-czf", "-", "-C", "/volume", "."])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the docker CLI");
    assert!(
        out.status.success(),
        "today's method failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A volume created for one test, removed (with its containers) on drop.
pub struct TestVolume {
    /// The volume name.
    pub name: String,
}

impl TestVolume {
    /// Create a volume named `name`.
    pub fn named(name: &str) -> TestVolume {
        let label = format!("{TEST_LABEL}=true");
        docker_ok(&["volume", "create", "--label", &label, name]);
        TestVolume {
            name: name.to_string(),
        }
    }

    /// An Aspire-style `<app>.apphost-<hex>-sql-data` volume for a unique app.
    pub fn aspire(app: &str) -> TestVolume {
        Self::named(&format!("{app}.apphost-{}-sql-data", unique_hex10()))
    }

    /// Run `script` with busybox sh in a throwaway container with the volume at /v.
    pub fn sh(&self, script: &str) {
        let mount = format!("{}:/v", self.name);
        let label = format!("{TEST_LABEL}=true");
        docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            &label,
            "-v",
            &mount,
            busybox_image(),
            "sh",
            "-c",
            script,
        ]);
    }

    /// Fill the volume with SQL-Server-like data of about `bytes`.
    pub fn fill_sql_like(&self, bytes: u64, seed: u64) {
        sqldata::fill_volume(&self.name, bytes, seed);
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        remove_containers_using(&self.name);
        let _ = docker(&["volume", "rm", "-f", &self.name]);
    }
}

/// Force-remove every container (ours, the product's helpers, anything) that mounts `volume`.
pub fn remove_containers_using(volume: &str) {
    let filter = format!("volume={volume}");
    let ids = docker(&["ps", "-aq", "--filter", &filter]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let _ = docker(&["rm", "-f", "-v", id]);
    }
}

/// A volume with everything that is easy to get wrong.
pub fn tricky_volume() -> TestVolume {
    let vol = TestVolume::named(&unique("orca-test-tricky"));
    vol.sh(r#"set -e
cd /v
mkdir -p data empty "dir with spaces" "données" deep
dd if=/dev/urandom of=data/big.mdf bs=1048576 count=3 2>/dev/null
echo "orca database" > data/Orca.mdf
printf 'log' > data/Orca_log.ldf
chown 10001:10001 data data/Orca.mdf data/big.mdf data/Orca_log.ldf
chmod 0640 data/Orca.mdf
chmod 0755 data/big.mdf
echo root > root-owned.txt
: > zero-bytes
cp /bin/busybox suid-tool
chmod 04755 suid-tool
ln -s data/Orca.mdf link-to-mdf
ln -s /nonexistent/absolute dangling-absolute
ln data/Orca.mdf data/hard-link.mdf
L=$(printf 'n%.0s' $(seq 1 120))
mkdir -p "deep/$L"
echo long > "deep/$L/$L.mdf"
echo accent > "données/résumé é.txt"
echo spaces > "dir with spaces/file with spaces.txt"
chmod 0750 empty
"#);
    vol
}

/// A container for one test (e.g. "Orca's SQL Server" running on a volume), removed on drop.
pub struct TestContainer {
    /// Container name.
    pub name: String,
}

impl TestContainer {
    /// Start a long-running busybox shell with `volume` mounted at
    /// /var/opt/mssql, like SQL Server; it exits promptly on SIGTERM.
    pub fn running_on(volume: &str) -> TestContainer {
        let c = Self::created_on(volume);
        docker_ok(&["start", &c.name]);
        c
    }

    /// Create (not start) such a container.
    pub fn created_on(volume: &str) -> TestContainer {
        let name = unique("orca-test-sql");
        let mount = format!("{volume}:/var/opt/mssql");
        let label = format!("{TEST_LABEL}=true");
        docker_ok(&[
            "create",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            "none",
            "-v",
            &mount,
            busybox_image(),
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
        ]);
        TestContainer { name }
    }

    /// Docker's state for it: running, exited, created...
    pub fn state(&self) -> String {
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &self.name])
            .trim()
            .to_string()
    }

    /// When it last started (changes on every start).
    pub fn started_at(&self) -> String {
        docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", &self.name])
            .trim()
            .to_string()
    }

    /// Full id.
    pub fn id(&self) -> String {
        docker_ok(&["inspect", "--format", "{{.Id}}", &self.name])
            .trim()
            .to_string()
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// Helper containers the product created from process `pid` that still exist.
pub fn leftover_helpers(pid: u32) -> Vec<String> {
    let filter = format!("label=org.orca-backup.pid={pid}");
    let out = docker_ok(&["ps", "-aq", "--filter", &filter]);
    out.split_whitespace().map(String::from).collect()
}

/// Helper containers that mount `volume` (whatever process made them).
pub fn helpers_on(volume: &str) -> Vec<String> {
    let vf = format!("volume={volume}");
    let out = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &vf,
        "--filter",
        "label=org.orca-backup.helper",
    ]);
    out.split_whitespace().map(String::from).collect()
}

#[doc(hidden)]
pub use assert_cmd as __assert_cmd;
#[doc(hidden)]
pub use predicates as __predicates;

/// The command-line contract every tool keeps, as tests in the tool's own
/// crate: `--help` ends with the exit codes, `--version` names the tool, a bad
/// flag exits 2 with a failed record. (They also make `cargo test --workspace`
/// build the binary that the end-to-end tests in the root package run.)
#[macro_export]
macro_rules! cli_contract_tests {
    ($tool:literal) => {
        fn tool() -> $crate::__assert_cmd::Command {
            let mut c = $crate::__assert_cmd::Command::new(env!(concat!("CARGO_BIN_EXE_", $tool)));
            c.env(
                "ORCA_HOME",
                std::env::temp_dir().join("orca-cli-test-unused"),
            )
            .env_remove("ORCA_CONFIG");
            c
        }

        #[test]
        fn help_lists_the_exit_codes() {
            use $crate::__predicates::prelude::*;
            tool()
                .arg("--help")
                .assert()
                .success()
                .stdout(predicate::str::contains("EXIT STATUS:"))
                .stdout(predicate::str::contains("6    verification failed"));
        }

        #[test]
        fn version_names_the_tool() {
            use $crate::__predicates::prelude::*;
            tool()
                .arg("--version")
                .assert()
                .success()
                .stdout(predicate::str::starts_with(concat!($tool, " ")));
        }

        #[test]
        fn a_bad_flag_is_exit_2_with_a_failed_record() {
            let out = tool()
                .arg("--frobnicate")
                .assert()
                .code(2)
                .get_output()
                .stdout
                .clone();
            let rec: $crate::__serde_json::Value =
                $crate::__serde_json::from_slice(&out).expect("one JSON record");
            assert_eq!(rec["success"], false);
            assert_eq!(rec["error"]["code"], "usage");
            assert_eq!(rec["error"]["exit_code"], 2);
            assert_eq!(rec["error"]["step"], $tool);
        }
    };
}

#[doc(hidden)]
pub use serde_json as __serde_json;

#[cfg(test)]
mod tests {
    #[test]
    fn tells_static_from_dynamic_executables() {
        // /bin/sh is dynamically linked on every distribution we run on.
        assert!(!super::is_static_elf("/bin/sh"));
        assert!(!super::is_static_elf("/nonexistent"));
        if std::path::Path::new("/usr/share/doc/busybox-static").exists() {
            // Debian's busybox-static (the CI installs it) is static.
            assert!(super::is_static_elf("/bin/busybox"));
        }
    }
}
