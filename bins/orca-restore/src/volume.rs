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
        // A removal that fails without an answer (a deadline, a broken
        // connection, the driver failing half-way) may have removed some.
        let before = *touched;
        *touched = true;
        match docker::volume_remove(&info.name)? {
            Removed::Yes => {
                orca_shared::testpoint::point("emptying-recreate");
                return create(info, &[]);
            }
            // Someone started using it meanwhile: nothing was removed; wipe.
            Removed::InUse(_) => *touched = before,
        }
    }
    let mut tried = Vec::new();
    // Once it runs, emptying must not be cut short by Ctrl-C.
    let _critical = orca_shared::interrupt::critical("emptying the volume");
    for image in shell_images {
        let helper = HelperContainer::create_shell(tool, image, &info.name, WIPE)?;
        match helper.run_with_point("wiping") {
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

/// What [`extract`] puts where.
pub struct Extraction<'a> {
    /// The tool, for helper labels and messages.
    pub tool: &'a str,
    /// The target volume.
    pub volume: &'a str,
    /// The helper image.
    pub image: &'a str,
    /// The archive (verified already).
    pub archive: &'a Path,
    /// The archive's `./` entry, from the verified tree.
    pub root: Option<&'a Node>,
    /// Whether Ctrl-C ends it.
    pub mode: Mode,
    /// The test point reached after the first MiB.
    pub point: &'a str,
    /// What opens an encrypted archive.
    pub ids: &'a orca_shared::crypt::Identities,
}

/// Extract the archive into the volume (the stream checked again as it goes)
/// and give the volume root the archive's owner and mode. Returns the
/// archive's SHA-256 as read this time.
pub fn extract(x: &Extraction) -> anyhow::Result<String> {
    let Extraction {
        tool,
        volume,
        image,
        archive,
        root,
        mode,
        point,
        ids,
    } = *x;
    let helper = HelperContainer::create(tool, image, volume, true)?;
    let sink = ArchiveWriter::open(helper.id(), docker::MOUNT_PATH, mode)?;
    let mut tap = TestPointAfter {
        inner: sink,
        written: 0,
        point,
    };
    let decoded = orca_verify::decode::decode_tee(archive, (), Some(&mut tap), ids)
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

/// Read the volume back as a tree: with orca-walk inside a helper container
/// when this build carries it for the engine's architecture (it reads the
/// files where they are), else, or when that fails, through the archive API.
/// `point` names the test point reached as the reading starts.
pub fn read_back(
    tool: &str,
    volume: &str,
    image: &str,
    mode: Mode,
    point: Option<&str>,
) -> anyhow::Result<Tree> {
    if std::env::var_os("ORCA_READ_BACK_VIA_ARCHIVE").is_none() {
        match walk_back(tool, volume, image, mode, point) {
            Ok(Some(tree)) => return Ok(tree),
            Ok(None) => {}
            Err(e) => {
                if mode == Mode::Interruptible {
                    orca_shared::interrupt::check()?;
                }
                eprintln!(
                    "{tool}: note: reading volume '{volume}' back in a helper container failed ({}); reading it through the archive API instead",
                    orca_shared::exit::one_line(&format!("{e:#}"))
                );
            }
        }
    }
    read_back_archive(tool, volume, image, mode, point)
}

/// orca-walk for an engine architecture ("amd64", "arm64"; empty when this
/// build does not carry it).
pub fn walker_for(arch: &str) -> &'static [u8] {
    match arch {
        "amd64" => include_bytes!(concat!(env!("OUT_DIR"), "/orca-walk-amd64")),
        "arm64" => include_bytes!(concat!(env!("OUT_DIR"), "/orca-walk-arm64")),
        _ => &[],
    }
}

const WALKER_PATH: &str = "/.orca-walk";
/// The first line of orca-walk's listing (helper/walker): its format, with
/// the content hash scheme it uses.
pub const LISTING_VERSION: &str = "orca-walk 1 xxh3-128-zero-runs-4k";
const LISTING_PATH: &str = "/.orca-walk.out";

/// The volume as orca-walk lists it from inside a helper container, or None
/// when there is no orca-walk for this engine.
fn walk_back(
    tool: &str,
    volume: &str,
    image: &str,
    mode: Mode,
    point: Option<&str>,
) -> anyhow::Result<Option<Tree>> {
    let (os, arch) = docker::server_platform()?;
    let program = walker_for(&arch);
    if os != "linux" || program.is_empty() {
        return Ok(None);
    }
    let helper = HelperContainer::create_command(
        tool,
        image,
        volume,
        false,
        &[WALKER_PATH, docker::MOUNT_PATH, LISTING_PATH],
    )?;
    // The program goes into the container's own filesystem, not the volume.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(program.len() as u64);
    h.set_mtime(0);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, &WALKER_PATH[1..], program)
        .map_err(|e| err!(Failure, "tar: {e}"))?;
    let bytes = b.into_inner().map_err(|e| err!(Failure, "tar: {e}"))?;
    let mut sink = ArchiveWriter::open(helper.id(), "/", mode)?;
    use std::io::Write;
    sink.write_all(&bytes)
        .context("cannot copy orca-walk into the helper container")?;
    sink.finish()
        .context("cannot copy orca-walk into the helper container")?;
    if let Some(point) = point {
        orca_shared::testpoint::point(point);
    }
    let (code, output) = match helper.run_in(mode) {
        Ok(r) => r,
        Err(RunError::NotStarted(e) | RunError::Started(e)) => return Err(e),
    };
    if code != 0 {
        fail!(
            Failure,
            "orca-walk exited with {code}: {}",
            orca_shared::exit::one_line(&output)
        );
    }
    let mut stream = ArchiveReader::open(helper.id(), LISTING_PATH, mode)?;
    let mut tar_bytes = Vec::new();
    loop {
        match stream.next_chunk() {
            Ok(Some(c)) => tar_bytes.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                return Err(engine::engine_error_of(&e).unwrap_or_else(|| e.into()))
                    .context("cannot read orca-walk's listing");
            }
        }
    }
    drop(stream);
    let mut listing = Vec::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = archive
        .entries()
        .map_err(|e| err!(Failure, "orca-walk's listing: {e}"))?;
    match entries.next() {
        Some(Ok(mut entry)) => {
            use std::io::Read;
            entry
                .read_to_end(&mut listing)
                .map_err(|e| err!(Failure, "orca-walk's listing: {e}"))?;
        }
        _ => fail!(Failure, "orca-walk left no listing"),
    }
    let tree = parse_listing(&listing).map_err(|e| err!(Failure, "orca-walk's listing: {e}"))?;
    if let Err(e) = helper.remove() {
        eprintln!("{tool}: warning: {e:#}");
    }
    Ok(Some(tree))
}

/// The tree orca-walk's listing describes (see helper/walker).
pub fn parse_listing(text: &[u8]) -> Result<Tree, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let mut tree = Tree::default();
    let mut groups: std::collections::BTreeMap<&str, std::collections::BTreeSet<Vec<u8>>> =
        Default::default();
    let mut ended = None;
    let mut lines = text.lines().enumerate();
    // The first line names the format: a listing from another orca-walk
    // (a stale build) is not guessed at.
    match lines.next() {
        Some((_, LISTING_VERSION)) => {}
        other => {
            return Err(format!(
                "not an orca-walk listing of format {LISTING_VERSION:?} (first line {:?})",
                other.map(|(_, l)| l).unwrap_or("")
            ));
        }
    }
    for (i, line) in lines {
        if ended.is_some() {
            return Err(format!("line {}: after the end", i + 1));
        }
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() == 2 && f[0] == "end" {
            ended = Some(
                f[1].parse::<usize>()
                    .map_err(|_| format!("line {}: bad count", i + 1))?,
            );
            continue;
        }
        let bad = || format!("line {}: {line:?}", i + 1);
        let [kind, mode, uid, gid, size, mtime, hash, link, group, path] = f[..] else {
            return Err(bad());
        };
        let kind = match kind {
            "file" => "file",
            "dir" => "dir",
            "symlink" => "symlink",
            "fifo" => "fifo",
            "char" => "char",
            "block" => "block",
            "other" => "other",
            _ => return Err(bad()),
        };
        let path = unhex(path).ok_or_else(bad)?;
        let node = Node {
            kind,
            size: size.parse().map_err(|_| bad())?,
            mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
            uid: uid.parse().map_err(|_| bad())?,
            gid: gid.parse().map_err(|_| bad())?,
            link: if link == "-" {
                Vec::new()
            } else {
                unhex(link).ok_or_else(bad)?
            },
            hash: u128::from_str_radix(hash, 16).map_err(|_| bad())?,
            mtime: mtime.parse().map_err(|_| bad())?,
        };
        if group != "-" {
            groups.entry(group).or_default().insert(path.clone());
        }
        tree.nodes.insert(path, node);
    }
    match ended {
        Some(n) if n == tree.nodes.len() => {}
        Some(n) => {
            return Err(format!(
                "{} entries, the end line says {n}",
                tree.nodes.len()
            ));
        }
        None => return Err("cut short (no end line)".into()),
    }
    tree.groups = groups.into_values().collect();
    Ok(tree)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Read the volume back through the archive API (the engine streams it as a tar).
fn read_back_archive(
    tool: &str,
    volume: &str,
    image: &str,
    mode: Mode,
    point: Option<&str>,
) -> anyhow::Result<Tree> {
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
        if read < 1 << 20
            && read + chunk.len() as u64 >= 1 << 20
            && let Some(point) = point
        {
            orca_shared::testpoint::point(point);
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
