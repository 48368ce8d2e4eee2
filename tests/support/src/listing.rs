//! A volume, an archive or an extracted directory as a comparable listing:
//! path -> (type, size, mode, owner, link target, content hash, mtime).
//!
//! Independent of the product's own tar code on purpose: it is the oracle.

use std::collections::BTreeMap;
use std::io::Read;
#[cfg(unix)]
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a test compares about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// file, dir, symlink, fifo, char, block.
    pub kind: &'static str,
    /// Data size for files.
    pub size: u64,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Symlink target.
    pub link: String,
    /// SHA-256 of file content (hex), empty for non-files.
    pub sha256: String,
    /// Smallest path among the hard links sharing this file ("" when none).
    pub hardlink_group: String,
    /// Modification time (seconds) for files.
    pub mtime: i64,
}

/// Normalized path -> item; the root is ".".
pub type Listing = BTreeMap<String, Item>;

fn norm(p: &str) -> String {
    let mut s = p;
    while let Some(r) = s.strip_prefix("./") {
        s = r;
    }
    let s = s.trim_end_matches('/');
    if s.is_empty() || s == "." {
        ".".into()
    } else {
        s.into()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// List a tar stream (uncompressed).
pub fn of_tar(reader: impl Read) -> Listing {
    let mut ar = tar::Archive::new(reader);
    let mut out = Listing::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in ar.entries().expect("tar entries") {
        let mut e = entry.expect("tar entry");
        let h = e.header().clone();
        let path = norm(&String::from_utf8_lossy(&e.path_bytes()));
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Fifo => "fifo",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Link => {
                links.push((path, norm(&link)));
                continue;
            }
            other => panic!("unexpected entry type {other:?}"),
        };
        let mut sha = String::new();
        let mut size = 0;
        if kind == "file" {
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("entry data");
            size = data.len() as u64;
            sha = hex(&Sha256::digest(&data));
        }
        out.insert(
            path,
            Item {
                kind,
                size,
                mode: h.mode().expect("mode") & 0o7777,
                uid: h.uid().expect("uid"),
                gid: h.gid().expect("gid"),
                link: if kind == "symlink" {
                    link
                } else {
                    String::new()
                },
                sha256: sha,
                hardlink_group: String::new(),
                mtime: if kind == "file" {
                    h.mtime().expect("mtime") as i64
                } else {
                    0
                },
            },
        );
    }
    // Hard links: same item as their target, grouped under the smallest path.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, target) in links {
        groups.entry(target).or_default().push(path);
    }
    for (target, paths) in groups {
        let item = out
            .get(&target)
            .cloned()
            .expect("hard link target in archive");
        let mut all = paths.clone();
        all.push(target.clone());
        let group = all.iter().min().cloned().unwrap_or_default();
        for p in all {
            let mut it = item.clone();
            it.hardlink_group = group.clone();
            out.insert(p, it);
        }
    }
    out
}

/// List a volume through `docker cp` from a created container.
pub fn of_volume(volume: &str) -> Listing {
    let mount = format!("{volume}:/volume:ro");
    let id = crate::docker_ok(&[
        "create",
        "-v",
        &mount,
        crate::empty_image(),
        "/never-started",
    ]);
    let id = id.trim();
    let src = format!("{id}:/volume/.");
    let out = std::process::Command::new("docker")
        .args(["cp", &src, "-"])
        .output()
        .expect("docker cp");
    let _ = crate::docker(&["rm", "-f", "-v", id]);
    assert!(
        out.status.success(),
        "docker cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    of_tar(&out.stdout[..])
}

/// List an extracted directory (Unix only: modes and owners).
#[cfg(unix)]
pub fn of_dir(root: &Path) -> Listing {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Listing::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    fn walk(
        dir: &Path,
        root: &Path,
        out: &mut Listing,
        inodes: &mut BTreeMap<(u64, u64), Vec<String>>,
    ) {
        let meta = std::fs::symlink_metadata(dir).expect("lstat");
        let rel = dir
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        add(dir, &rel, &meta, out, inodes);
        if meta.is_dir() {
            for e in std::fs::read_dir(dir).expect("read_dir") {
                walk(&e.expect("entry").path(), root, out, inodes);
            }
        }
    }
    fn add(
        path: &Path,
        rel: &str,
        meta: &std::fs::Metadata,
        out: &mut Listing,
        inodes: &mut BTreeMap<(u64, u64), Vec<String>>,
    ) {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else {
            "block"
        };
        let (sha, size) = if kind == "file" {
            let data = std::fs::read(path).expect("read file");
            (hex(&Sha256::digest(&data)), data.len() as u64)
        } else {
            (String::new(), 0)
        };
        if kind == "file" && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.to_string());
        }
        out.insert(
            rel.to_string(),
            Item {
                kind,
                size,
                mode: meta.mode() & 0o7777,
                uid: u64::from(meta.uid()),
                gid: u64::from(meta.gid()),
                link: if kind == "symlink" {
                    std::fs::read_link(path)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned()
                } else {
                    String::new()
                },
                sha256: sha,
                hardlink_group: String::new(),
                mtime: if kind == "file" { meta.mtime() } else { 0 },
            },
        );
    }
    walk(root, root, &mut out, &mut inodes);
    for paths in inodes.values() {
        let group = paths.iter().min().cloned().unwrap_or_default();
        for p in paths {
            if let Some(it) = out.get_mut(p) {
                it.hardlink_group = group.clone();
            }
        }
    }
    out
}

/// Human-readable differences between two listings (empty when equal).
pub fn diff(want: &Listing, got: &Listing) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => d.push(format!("missing: {p}")),
            Some(g) if g != w => d.push(format!("differs: {p}\n  want {w:?}\n  got  {g:?}")),
            _ => {}
        }
    }
    for p in got.keys() {
        if !want.contains_key(p) {
            d.push(format!("extra: {p}"));
        }
    }
    d
}

/// SHA-256 of `bytes` as the listings show it (lowercase hex).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
