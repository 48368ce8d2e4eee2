//! Running the `docker` CLI and making sense of what it says.
//!
//! We drive the CLI rather than the Engine API so that whatever the user's
//! `docker` talks to (contexts, Docker Desktop's sockets and named pipes,
//! `DOCKER_HOST`) is what we talk to. Errors are classified once, here: CLI
//! missing or daemon unreachable (exit 3), no such volume (exit 4), anything else
//! (exit 1, with docker's own message).
//!
//! Helper containers are created from a local image and never started: Docker's
//! archive API reads and writes a created container's mounts directly. They carry
//! the label `org.orca-backup.helper` (and the creating process id) and are
//! removed by a guard, also on errors and interrupts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::process::Output;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::exit::{ErrorKind, OrcaError};

/// The image orca creates when no `helper_image` is configured: empty, made
/// locally with `docker import`, never pulled, never run.
pub const HELPER_IMAGE: &str = "orca-backup-helper:empty";
/// Label on every helper container and on the helper image.
pub const HELPER_LABEL: &str = "org.orca-backup.helper";
/// Label holding the pid of the process that created a helper container.
pub const HELPER_PID_LABEL: &str = "org.orca-backup.pid";

/// The docker program: `docker` from PATH.
fn program() -> OsString {
    OsString::from("docker")
}

/// A `docker` command line, ready to run.
pub fn command(args: &[&str]) -> duct::Expression {
    let expr = duct::cmd(program(), args).unchecked();
    own_process_group(expr)
}

/// Run docker children in their own process group, so a Ctrl-C in the terminal
/// reaches only us: we then stop the stream ourselves and run the cleanup
/// commands (remove helper, restart containers) without them being killed too.
pub fn own_process_group(expr: duct::Expression) -> duct::Expression {
    #[cfg(unix)]
    {
        expr.before_spawn(|cmd| {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            Ok(())
        })
    }
    #[cfg(not(unix))]
    {
        expr
    }
}

/// Run `docker args...`, returning stdout; a failure is classified.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let output = command(args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .run();
    finish(args, output)
}

/// Run `docker args...` with `input` on stdin, returning stdout.
pub fn run_with_input(args: &[&str], input: Vec<u8>) -> anyhow::Result<String> {
    let output = command(args)
        .stdin_bytes(input)
        .stdout_capture()
        .stderr_capture()
        .run();
    finish(args, output)
}

fn finish(args: &[&str], output: io::Result<Output>) -> anyhow::Result<String> {
    let output = output.map_err(|e| spawn_error(&e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(classify(args, &String::from_utf8_lossy(&output.stderr)))
    }
}

/// The error for a docker CLI that could not be started.
pub fn spawn_error(e: &io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::NotFound {
        crate::err!(
            DockerUnavailable,
            "the docker CLI was not found on PATH: install Docker Desktop (or the docker CLI) and make sure `docker` is on PATH"
        )
    } else {
        crate::err!(DockerUnavailable, "cannot run the docker CLI: {e}")
    }
}

/// Turn docker's stderr into an error of the right kind.
pub fn classify(args: &[&str], stderr: &str) -> anyhow::Error {
    let text = crate::exit::one_line(stderr.trim());
    let lower = text.to_lowercase();
    let what = format!("docker {}", args.first().copied().unwrap_or(""));
    if lower.contains("permission denied while trying to connect to the docker") {
        return crate::err!(
            DockerUnavailable,
            "Docker is not reachable: permission denied on the Docker socket ({text}); add your user to the 'docker' group or run with the rights Docker needs"
        );
    }
    let unreachable = [
        "cannot connect to the docker daemon",
        "is the docker daemon running",
        "error during connect",
        "failed to connect to the docker api",
        "docker daemon is not running",
        "the docker daemon is not running",
        "connection refused",
    ];
    if unreachable.iter().any(|n| lower.contains(n)) {
        return crate::err!(
            DockerUnavailable,
            "Docker is not running or not reachable ({text}): start Docker Desktop, or the docker service (`sudo systemctl start docker`), and try again"
        );
    }
    if lower.contains("no such volume") {
        return crate::err!(VolumeNotFound, "{what} failed: {text}");
    }
    if text.is_empty() {
        return crate::err!(Failure, "{what} failed without a message");
    }
    crate::err!(Failure, "{what} failed: {text}")
}

/// A volume as `docker volume inspect` describes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct VolumeInfo {
    /// The volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// The volume driver (`local` almost always).
    #[serde(rename = "Driver", default)]
    pub driver: String,
    /// Labels (Aspire and compose set some).
    #[serde(rename = "Labels", default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
    /// Driver options (`type`, `o`, `device` for bind-backed local volumes).
    #[serde(rename = "Options", default, deserialize_with = "null_map")]
    pub options: BTreeMap<String, String>,
    /// When it was created (RFC 3339).
    #[serde(rename = "CreatedAt", default)]
    pub created_at: String,
    /// Where the data lives on the engine's host (not always visible to us).
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
}

fn null_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Inspect a volume; `None` when it does not exist.
pub fn volume_inspect(name: &str) -> anyhow::Result<Option<VolumeInfo>> {
    match run(&["volume", "inspect", "--", name]) {
        Ok(out) => {
            let mut list: Vec<VolumeInfo> = serde_json::from_str(&out)
                .with_context(|| format!("cannot read `docker volume inspect {name}` output"))?;
            Ok(list.pop())
        }
        Err(e) if crate::exit::kind_of(&e) == ErrorKind::VolumeNotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Inspect a volume that must exist: exit 4 naming it when it does not.
pub fn require_volume(name: &str) -> anyhow::Result<VolumeInfo> {
    match volume_inspect(name)? {
        Some(info) => Ok(info),
        None => crate::fail!(
            VolumeNotFound,
            "volume '{name}' not found (list volumes with `docker volume ls`, or let orca-find-volume find it)"
        ),
    }
}

/// Names of volumes whose name matches docker's `name=` filter (empty: all).
pub fn volume_names(name_filter: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("name={name_filter}");
    let mut args = vec!["volume", "ls", "--format", "{{.Name}}"];
    if !name_filter.is_empty() {
        args.extend(["--filter", filter.as_str()]);
    }
    let out = run(&args)?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// A container that mounts a volume.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ContainerRef {
    /// Full container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image the container runs.
    pub image: String,
    /// running, exited, created, paused, restarting...
    pub state: String,
}

impl ContainerRef {
    /// Whether the container's processes may be writing to the volume.
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "restarting")
    }
}

#[derive(Deserialize)]
struct PsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Labels", default)]
    labels: String,
}

/// Containers (any state) that mount `volume`, our own helpers excluded.
pub fn containers_using(volume: &str) -> anyhow::Result<Vec<ContainerRef>> {
    let filter = format!("volume={volume}");
    let out = run(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{json .}}",
    ])?;
    let mut found = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let ps: PsLine = serde_json::from_str(line)
            .with_context(|| format!("cannot read `docker ps` output line {line:?}"))?;
        if ps.labels.contains(HELPER_LABEL) {
            continue;
        }
        found.push(ContainerRef {
            id: ps.id,
            name: ps.names,
            image: ps.image,
            state: ps.state,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The engine's version, e.g. "28.2.2".
pub fn server_version() -> anyhow::Result<String> {
    Ok(run(&["version", "--format", "{{.Server.Version}}"])?
        .trim()
        .to_string())
}

/// Whether a local image exists (never pulls).
pub fn image_exists(image: &str) -> anyhow::Result<bool> {
    let out = command(&["image", "inspect", "--format", "{{.Id}}", "--", image])
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .run()
        .map_err(|e| spawn_error(&e))?;
    if output_ok(&out) {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.to_lowercase().contains("no such image") {
        Ok(false)
    } else {
        Err(classify(&["image", "inspect"], &stderr))
    }
}

fn output_ok(out: &Output) -> bool {
    out.status.success()
}

/// The image for helper containers: `helper_image` from config (must exist
/// locally), else [`HELPER_IMAGE`], created on first use from an empty tar.
pub fn ensure_helper_image(configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(image) = configured.filter(|s| !s.trim().is_empty()) {
        if image_exists(image)? {
            return Ok(image.to_string());
        }
        crate::fail!(
            Failure,
            "helper_image '{image}' from config is not a local image (orca never pulls): load it with `docker load`/`docker pull` yourself, or remove helper_image to let orca create its own"
        );
    }
    if !image_exists(HELPER_IMAGE)? {
        // An empty tar archive is two zero blocks.
        let change = format!("LABEL {HELPER_LABEL}=true");
        run_with_input(
            &["import", "--change", &change, "-", HELPER_IMAGE],
            vec![0u8; 1024],
        )
        .context("cannot create the local helper image")?;
    }
    Ok(HELPER_IMAGE.to_string())
}

/// A created, never started container that mounts a volume; removed on drop.
#[derive(Debug)]
pub struct HelperContainer {
    id: String,
    removed: bool,
}

/// Where a helper container mounts the volume.
pub const MOUNT_PATH: &str = "/volume";

impl HelperContainer {
    /// Create a helper that mounts `volume` at [`MOUNT_PATH`], read-only unless `writable`.
    pub fn create(image: &str, volume: &str, writable: bool) -> anyhow::Result<HelperContainer> {
        let entrypoint = ["--entrypoint", "/orca-backup-helper-never-started"];
        Self::create_with(image, volume, writable, &entrypoint, &[])
            .with_context(|| format!("cannot create a helper container for volume '{volume}'"))
    }

    /// Create a container that runs `script` with `/bin/sh` as root, with
    /// `volume` mounted writable at [`MOUNT_PATH`]; start it with
    /// [`HelperContainer::run_attached`]. Only for images that have a shell.
    pub fn create_shell(
        image: &str,
        volume: &str,
        script: &str,
    ) -> anyhow::Result<HelperContainer> {
        let options = ["--user", "0:0", "--entrypoint", "/bin/sh"];
        Self::create_with(image, volume, true, &options, &["-c", script])
            .with_context(|| format!("cannot create a helper container from image '{image}'"))
    }

    /// `docker create` with our labels, no network, the volume mount,
    /// `options` before the image and `command` after it.
    fn create_with(
        image: &str,
        volume: &str,
        writable: bool,
        options: &[&str],
        command: &[&str],
    ) -> anyhow::Result<HelperContainer> {
        let mount = format!(
            "type=volume,source={volume},target={MOUNT_PATH}{}",
            if writable { "" } else { ",readonly" }
        );
        let label = format!("{HELPER_LABEL}=true");
        let pid_label = format!("{HELPER_PID_LABEL}={}", std::process::id());
        let mut args = vec![
            "create",
            "--label",
            &label,
            "--label",
            &pid_label,
            "--network",
            "none",
            "--mount",
            &mount,
        ];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        let id = run(&args)?.trim().to_string();
        if id.is_empty() {
            crate::fail!(Failure, "docker create printed no container id");
        }
        Ok(HelperContainer { id, removed: false })
    }

    /// Start the container and wait for it; Ok(exit code, output).
    pub fn run_attached(&self) -> anyhow::Result<(i32, String)> {
        let out = command(&["start", "--attach", &self.id])
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .run()
            .map_err(|e| spawn_error(&e))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `CONTAINER:path` for `docker cp`.
    pub fn path(&self, inner: &str) -> String {
        format!("{}:{inner}", self.id)
    }

    /// Remove it now, reporting failure.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        remove_container(&self.id)
    }
}

fn remove_container(id: &str) -> anyhow::Result<()> {
    run(&["rm", "--force", "--volumes", id])
        .map(drop)
        .with_context(|| {
            format!("cannot remove helper container {id} (remove it with `docker rm -f -v {id}`)")
        })
}

impl Drop for HelperContainer {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = remove_container(&self.id)
        {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Containers we stopped, started again when this guard goes (also on error or
/// interrupt), or explicitly with [`StoppedContainers::restart`].
#[derive(Debug, Default)]
pub struct StoppedContainers {
    stopped: Vec<ContainerRef>,
    restarted: bool,
}

impl StoppedContainers {
    /// Nothing stopped.
    pub fn none() -> Self {
        Self::default()
    }

    /// Stop the active containers among `containers`, waiting up to
    /// `timeout_secs` each for a clean shutdown before Docker kills them.
    pub fn stop(
        containers: &[ContainerRef],
        timeout_secs: u64,
    ) -> anyhow::Result<StoppedContainers> {
        let mut guard = StoppedContainers::none();
        let timeout = timeout_secs.to_string();
        for c in containers.iter().filter(|c| c.is_active()) {
            crate::interrupt::check()?;
            eprintln!(
                "stopping container '{}' (up to {timeout_secs} s for a clean shutdown)",
                c.name
            );
            run(&["stop", "--time", &timeout, &c.id])
                .with_context(|| format!("cannot stop container '{}'", c.name))?;
            guard.stopped.push(c.clone());
        }
        Ok(guard)
    }

    /// The containers that were stopped.
    pub fn containers(&self) -> &[ContainerRef] {
        &self.stopped
    }

    /// Start the stopped containers again; the error names those that did not start.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.restarted {
            return Ok(());
        }
        self.restarted = true;
        let mut failed = Vec::new();
        for c in &self.stopped {
            eprintln!("starting container '{}' again", c.name);
            if let Err(e) = run(&["start", &c.id]) {
                failed.push(format!("'{}' ({e:#})", c.name));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OrcaError::new(
                ErrorKind::Failure,
                format!(
                    "could not start container(s) {} again: start them with `docker start`",
                    failed.join(", ")
                ),
            )
            .into())
        }
    }
}

impl Drop for StoppedContainers {
    fn drop(&mut self) {
        if let Err(e) = self.restart() {
            eprintln!("warning: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::kind_of;

    #[test]
    fn classifies_unreachable_daemons() {
        for stderr in [
            "Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?",
            "error during connect: Get \"http://%2F%2F.%2Fpipe%2FdockerDesktopLinuxEngine/v1.47/volumes\": open //./pipe/dockerDesktopLinuxEngine: The system cannot find the file specified.",
            "failed to connect to the docker API at unix:///var/run/docker.sock; check if the path is correct and if the daemon is running",
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
        ] {
            let e = classify(&["volume", "ls"], stderr);
            assert_eq!(kind_of(&e), ErrorKind::DockerUnavailable, "{stderr}");
        }
    }

    #[test]
    fn classifies_missing_volumes_and_others() {
        let e = classify(
            &["volume", "inspect"],
            "Error response from daemon: get x: no such volume",
        );
        assert_eq!(kind_of(&e), ErrorKind::VolumeNotFound);
        let e = classify(&["cp"], "Error response from daemon: something odd\n");
        assert_eq!(kind_of(&e), ErrorKind::Failure);
        assert!(e.to_string().contains("something odd"), "{e}");
    }

    #[test]
    fn missing_cli_is_docker_unavailable() {
        let e = spawn_error(&io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(kind_of(&e), ErrorKind::DockerUnavailable);
        assert!(e.to_string().contains("PATH"));
    }

    #[test]
    fn volume_inspect_json_with_nulls() {
        let v: Vec<VolumeInfo> = serde_json::from_str(
            r#"[{"CreatedAt":"2026-11-26T19:53:55Z","Driver":"local","Labels":null,
                "Mountpoint":"/var/lib/docker/volumes/t1/_data","Name":"t1","Options":null,"Scope":"local"}]"#,
        )
        .unwrap();
        assert_eq!(v[0].name, "t1");
        assert!(v[0].labels.is_empty());
    }
}
