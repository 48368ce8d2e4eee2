//! What restore does to a volume, all through Docker (no host bind mount, no
//! image pull): empty it, extract an archive into it, read it back.
//!
//! Extraction goes through `docker cp - CONTAINER:/volume` into a created,
//! never-started helper container. Docker ignores a tar's `./` entry, so the
//! volume root's owner and mode are applied afterwards with a one-entry archive
//! (`volume/`) extracted at `/`, which lands on the mount point itself.
//!
//! Emptying has no archive-API equivalent, so it takes one of two ways:
//! - a volume no container references, on the `local` driver without a bind
//!   device, is removed and created again with the same driver options and
//!   labels (no image needed);
//! - otherwise a helper container runs `rm -rf` as root from an image that has
//!   a shell: `helper_image` from config, else the image of a container that
//!   uses the volume (SQL Server's image when Orca is installed).

use std::path::Path;

use anyhow::Context;
use orca_shared::docker::{self, HelperContainer, Removed, RunError, VolumeInfo};
use orca_shared::engine::{self, ArchiveReader, ArchiveWriter, Mode};
use orca_shared::tarscan::Scanner;
use orca_shared::{err, fail};

use crate::tree::{Node, Tree, TreeBuilder};

/// The shell script that empties a volume mounted at /volume.
const WIPE: &str = "cd /volume && rm -rf -- ./* ./.[!.]* ./..?* && [ -z \"$(ls -A /volume)\" ]";

/// Whether removing and re-creating the volume really empties it.
pub fn can_recreate(info: &VolumeInfo, used_by_containers: bool) -> bool {
    let bind = info.options.get("o").is_some_and(|o| o.contains("bind"))
        || info.options.contains_key("device");
    info.driver == "local" && !bind && !used_by_containers
}

/// How the volume will be emptied, for plans and reports.
pub fn strategy(info: &VolumeInfo, used_by_containers: bool) -> &'static str {
    if can_recreate(info, used_by_containers) {
        "re-create the volume (same driver options and labels)"
    } else {
        "remove its contents from a helper container"
    }
}

/// Create a volume with `info`'s driver, options and labels (plus `extra_labels`).
pub fn create(info: &VolumeInfo, extra_labels: &[(String, String)]) -> anyhow::Result<()> {
    docker::volume_create(info, extra_labels)
}

/// Empty the volume; `shell_images` are tried in order when it cannot be
/// re-created. `touched` turns true as soon as anything may have been removed.
pub fn empty(
    tool: &str,
    info: &VolumeInfo,
    shell_images: &[String],
    touched: &mut bool,
) -> anyhow::Result<()> {
    let users = docker::containers_using(&info.name)?;
    if can_recreate(info, !users.is_empty()) {
        match docker::volume_remove(&info.name)? {
            Removed::Yes => {
                *touched = true;
                orca_shared::testpoint::point("emptying-recreate");
                return create(info, &[]);
            }
            // Someone started using it meanwhile: fall back to wiping.
            Removed::InUse(_) => {}
        }
    }
    let mut tried = Vec::new();
    // Once it runs, emptying must not be cut short by Ctrl-C.
    let _critical = orca_shared::interrupt::critical("emptying the volume");
    for image in shell_images {
        let helper = HelperContainer::create_shell(tool, image, &info.name, WIPE)?;
        match helper.run() {
            // An image without /bin/sh is not started: nothing was removed.
            Err(RunError::NotStarted(e)) => {
                tried.push(format!(
                    "{image} ({})",
                    orca_shared::exit::one_line(&format!("{e:#}"))
                ));
                drop(helper);
            }
            Err(RunError::Started(e)) => {
                *touched = true;
                return Err(e.context(format!(
                    "emptying volume '{}' was interrupted half-way",
                    info.name
                )));
            }
            Ok((code, output)) => {
                *touched = true;
                if let Err(e) = helper.remove() {
                    eprintln!("{tool}: warning: {e:#}");
                }
                if code == 0 {
                    return Ok(());
                }
                tried.push(format!(
                    "{image} (exit {code}: {})",
                    orca_shared::exit::one_line(&output)
                ));
            }
        }
    }
    if tried.is_empty() {
        fail!(
            Failure,
            "cannot empty volume '{}': containers use it and no image with a shell is known (set helper_image in config to a local image with /bin/sh, e.g. SQL Server's)",
            info.name
        );
    }
    fail!(
        Failure,
        "cannot empty volume '{}': {} (set helper_image in config to a local image with /bin/sh)",
        info.name,
        tried.join("; ")
    )
}

/// Extract `archive` into the volume (the stream checked again as it goes)
/// and give the volume root the archive's owner and mode (`root`, from the
/// verified tree). Returns the archive's SHA-256 as read this time. `point`
/// names the test point reached after the first MiB.
pub fn extract(
    tool: &str,
    volume: &str,
    image: &str,
    archive: &Path,
    root: Option<&Node>,
    mode: Mode,
    point: &str,
) -> anyhow::Result<String> {
    let helper = HelperContainer::create(tool, image, volume, true)?;
    let sink = ArchiveWriter::open(helper.id(), docker::MOUNT_PATH, mode)?;
    let mut tap = TestPointAfter {
        inner: sink,
        written: 0,
        point,
    };
    let decoded = orca_verify::decode::decode_tee(archive, (), Some(&mut tap))
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let sink = tap.inner;
    if let Some(e) = decoded.tap_error {
        let why = match engine::engine_error_of(&e) {
            Some(err) => err,
            // The engine stopped reading: its answer says why.
            None => match sink.finish() {
                Err(err) => err,
                Ok(()) => anyhow::Error::from(e),
            },
        };
        return Err(why).context(format!("extracting into volume '{volume}' failed"));
    }
    if let Err(why) = decoded.integrity {
        sink.abort();
        fail!(
            VerificationFailed,
            "{} became unreadable during the restore: {why}",
            archive.display()
        );
    }
    sink.finish()
        .with_context(|| format!("extracting into volume '{volume}' failed"))?;
    if let Some(root) = root {
        apply_root(&helper, root, mode)?;
    }
    if let Err(e) = helper.remove() {
        eprintln!("{tool}: warning: {e:#}");
    }
    Ok(decoded.sha256)
}

/// A writer that reaches a test point once a MiB went through.
struct TestPointAfter<'a, W> {
    inner: W,
    written: u64,
    point: &'a str,
}

impl<W: std::io::Write> std::io::Write for TestPointAfter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let before = self.written;
        self.written += n as u64;
        if before < 1 << 20 && self.written >= 1 << 20 {
            orca_shared::testpoint::point(self.point);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Give the volume root the archive's `./` owner, mode and time.
fn apply_root(helper: &HelperContainer, root: &Node, mode: Mode) -> anyhow::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("volume/")
        .map_err(|e| err!(Failure, "tar header: {e}"))?;
    h.set_mode(root.mode);
    h.set_uid(u64::try_from(root.uid).unwrap_or(0));
    h.set_gid(u64::try_from(root.gid).unwrap_or(0));
    h.set_mtime(root.mtime.max(0) as u64);
    h.set_size(0);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, std::io::empty())
        .map_err(|e| err!(Failure, "tar: {e}"))?;
    let bytes = b.into_inner().map_err(|e| err!(Failure, "tar: {e}"))?;
    let mut sink = ArchiveWriter::open(helper.id(), "/", mode)?;
    use std::io::Write;
    sink.write_all(&bytes)
        .context("cannot set the owner and mode of the volume root")?;
    sink.finish()
        .context("cannot set the owner and mode of the volume root")
}

/// Read the volume back as a tree.
pub fn read_back(tool: &str, volume: &str, image: &str, mode: Mode) -> anyhow::Result<Tree> {
    let helper = HelperContainer::create(tool, image, volume, false)?;
    let mut stream = ArchiveReader::open(helper.id(), &format!("{}/.", docker::MOUNT_PATH), mode)?;
    let mut scanner = Scanner::new(TreeBuilder::default());
    let mut read = 0u64;
    loop {
        let chunk = match stream.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Err(engine::engine_error_of(&e).unwrap_or_else(|| e.into()))
                    .context("cannot read the volume back");
            }
        };
        if let Err(e) = scanner.feed(&chunk) {
            stream.abort();
            fail!(Failure, "reading volume '{volume}' back failed: {e}");
        }
        if read < 1 << 20 && read + chunk.len() as u64 >= 1 << 20 {
            orca_shared::testpoint::point("comparing");
        }
        read += chunk.len() as u64;
    }
    drop(stream);
    let (result, builder) = scanner.finish();
    result.map_err(|e| err!(Failure, "reading volume '{volume}' back failed: {e}"))?;
    if let Err(e) = helper.remove() {
        eprintln!("{tool}: warning: {e:#}");
    }
    Ok(builder.finish())
}

/// Compare what is in the volume with what the archive says.
pub fn compare(got: &Tree, want: &Tree) -> anyhow::Result<()> {
    let mut want = want.clone();
    let mut got = got.clone();
    if !want.nodes.contains_key(&b"."[..]) {
        // The archive says nothing about the root: nothing to hold it to.
        got.nodes.remove(&b"."[..]);
    }
    want.groups.retain(|g| g.len() > 1);
    got.groups.retain(|g| g.len() > 1);
    // Docker creates the missing parents of an entry (root's, 0755): an
    // archive need not list its directories.
    let mut implied = std::collections::BTreeSet::new();
    for path in want.nodes.keys() {
        for (i, b) in path.iter().enumerate() {
            if *b == b'/' {
                implied.insert(path[..i].to_vec());
            }
        }
    }
    got.nodes.retain(|path, node| {
        want.nodes.contains_key(path) || !(node.kind == "dir" && implied.contains(path))
    });
    let diffs = got.differences(&want, 5);
    if diffs.is_empty() {
        Ok(())
    } else {
        fail!(
            Failure,
            "the restored volume does not match the archive: {}",
            diffs.join("; ")
        )
    }
}
