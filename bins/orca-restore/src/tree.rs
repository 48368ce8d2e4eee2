//! A tar stream reduced to what must survive a restore, for comparing an
//! archive with the volume restored from it.
//!
//! Per path: type, size, permission bits, owner, symlink target, a 128-bit
//! XXH3 hash of file content ([`ContentHasher`]: holes cost nothing) and file
//! mtime; plus which paths are hard links of each other. XXH3 rather than
//! SHA-256: both trees are computed by orca from data it reads itself
//! (nothing to forge), and it is ten times cheaper, which a restore of a
//! large database feels.
//! Hard links are compared as groups because tar writers choose different
//! members to carry the data. Directory mtimes are not compared: extracting
//! into a directory changes them.

use std::collections::{BTreeMap, BTreeSet};

use orca_shared::contenthash::ContentHasher;
use orca_shared::tarscan::{self, Entry, EntryType, Visitor};

/// What is compared for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// file, dir, symlink, fifo, char, block, other.
    pub kind: &'static str,
    /// Content size (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Symlink target.
    pub link: Vec<u8>,
    /// Content hash (files).
    pub hash: u128,
    /// Modification time (compared for files only).
    pub mtime: i64,
}

/// A whole archive or volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// Normalized path ("." for the root) -> node.
    pub nodes: BTreeMap<Vec<u8>, Node>,
    /// Sets of paths that are hard links to one another.
    pub groups: BTreeSet<BTreeSet<Vec<u8>>>,
}

impl Tree {
    /// Entries, the root `./` included (as orca-export and orca-verify count them).
    pub fn entries(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// Bytes of file content (each hard-linked file once).
    pub fn content_bytes(&self) -> u64 {
        let linked: BTreeSet<&Vec<u8>> =
            self.groups.iter().flat_map(|g| g.iter().skip(1)).collect();
        self.nodes
            .iter()
            .filter(|(p, n)| n.kind == "file" && !linked.contains(p))
            .map(|(_, n)| n.size)
            .sum()
    }

    /// Differences from `want` (what the archive says) to `self` (what is there), at most `limit`.
    pub fn differences(&self, want: &Tree, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        for (path, w) in &want.nodes {
            match self.nodes.get(path) {
                None => out.push(format!("missing {}", show(path))),
                Some(g) if !same(path, w, g) => {
                    out.push(format!("{} differs ({})", show(path), describe(w, g)))
                }
                _ => {}
            }
        }
        for path in self.nodes.keys() {
            if !want.nodes.contains_key(path) {
                out.push(format!("unexpected {}", show(path)));
            }
        }
        if out.is_empty() && self.groups != want.groups {
            out.push("hard links differ".to_string());
        }
        out.truncate(limit);
        out
    }
}

fn same(path: &[u8], w: &Node, g: &Node) -> bool {
    let meta = w.kind == g.kind && w.mode == g.mode && w.uid == g.uid && w.gid == g.gid;
    if path == b"." {
        // The root's type and owner matter; its size and times do not.
        return meta;
    }
    // Extracting into a directory changes its mtime; only files keep theirs.
    meta && w.size == g.size
        && w.link == g.link
        && w.hash == g.hash
        && (w.kind != "file" || same_time(w.mtime, g.mtime))
}

/// Docker 20.10 extracts times before 1970 as 1970 (moby's Chtimes clamps
/// them), so a file from before the epoch compares equal to one at it.
fn same_time(want: i64, got: i64) -> bool {
    want.max(0) == got.max(0)
}

fn describe(w: &Node, g: &Node) -> String {
    let mut parts = Vec::new();
    if w.kind != g.kind {
        parts.push(format!("type {} vs {}", w.kind, g.kind));
    }
    if w.size != g.size {
        parts.push(format!("size {} vs {}", w.size, g.size));
    }
    if w.mode != g.mode {
        parts.push(format!("mode {:o} vs {:o}", w.mode, g.mode));
    }
    if (w.uid, w.gid) != (g.uid, g.gid) {
        parts.push(format!("owner {}:{} vs {}:{}", w.uid, w.gid, g.uid, g.gid));
    }
    if w.link != g.link {
        parts.push("link target".into());
    }
    if w.hash != g.hash {
        parts.push("content".into());
    }
    if w.kind == "file" && !same_time(w.mtime, g.mtime) {
        parts.push(format!("mtime {} vs {}", w.mtime, g.mtime));
    }
    parts.join(", ")
}

/// Builds a [`Tree`] while a scanner reads a tar stream.
#[derive(Default)]
pub struct TreeBuilder {
    nodes: BTreeMap<Vec<u8>, Node>,
    hardlinks: Vec<(Vec<u8>, Vec<u8>)>,
    current: Option<(Vec<u8>, ContentHasher)>,
}

impl std::fmt::Debug for TreeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeBuilder")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl TreeBuilder {
    /// The finished tree (hard links resolved to their targets' content).
    pub fn finish(mut self) -> Tree {
        let mut groups: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for (path, target) in std::mem::take(&mut self.hardlinks) {
            let node = self.nodes.get(&target).cloned();
            if let Some(node) = node {
                self.nodes.insert(path.clone(), node);
            }
            let group = groups
                .entry(target.clone())
                .or_insert_with(|| BTreeSet::from([target]));
            group.insert(path);
        }
        Tree {
            nodes: self.nodes,
            groups: groups.into_values().collect(),
        }
    }
}

impl Visitor for TreeBuilder {
    fn entry(&mut self, e: &Entry) -> Result<(), String> {
        let path = tarscan::normalize(&e.path);
        if e.kind == EntryType::HardLink {
            self.hardlinks.push((path, tarscan::normalize(&e.link)));
            return Ok(());
        }
        let kind = match e.kind {
            EntryType::File => "file",
            EntryType::Directory => "dir",
            EntryType::Symlink => "symlink",
            EntryType::Fifo => "fifo",
            EntryType::CharDevice => "char",
            EntryType::BlockDevice => "block",
            EntryType::HardLink | EntryType::Other(_) => "other",
        };
        let is_file = kind == "file";
        self.nodes.insert(
            path.clone(),
            Node {
                kind,
                size: if is_file { e.size } else { 0 },
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                link: if kind == "symlink" {
                    e.link.clone()
                } else {
                    Vec::new()
                },
                hash: 0,
                mtime: e.mtime,
            },
        );
        self.current = is_file.then(|| (path, ContentHasher::new()));
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) {
        if let Some((_, h)) = self.current.as_mut() {
            h.update(chunk);
        }
    }

    fn hole(&mut self, len: u64) {
        // A sparse file's hole is zeros in the extracted file.
        if let Some((_, h)) = self.current.as_mut() {
            h.zeros(len);
        }
    }

    fn end_entry(&mut self) {
        if let Some((path, h)) = self.current.take()
            && let Some(node) = self.nodes.get_mut(&path)
        {
            node.hash = h.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_shared::tarscan::Scanner;

    fn tree_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Tree {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let bytes = b.into_inner().unwrap();
        let mut s = Scanner::new(TreeBuilder::default());
        s.feed(&bytes).unwrap();
        let (r, v) = s.finish();
        r.unwrap();
        v.finish()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1000);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, path, target).unwrap();
    }

    #[test]
    fn hard_links_compare_as_groups_whoever_carries_the_data() {
        let a = tree_of(|b| {
            file(b, "a", b"same", 0o644);
            link(b, "b", "a");
        });
        let b = tree_of(|b| {
            file(b, "b", b"same", 0o644);
            link(b, "a", "b");
        });
        assert!(
            a.differences(&b, 10).is_empty(),
            "{:?}",
            a.differences(&b, 10)
        );
        assert_eq!(a.content_bytes(), 4);
        assert_eq!(a.entries(), 2); // a and b (no ./ in this archive)
        let separate = tree_of(|b| {
            file(b, "a", b"same", 0o644);
            file(b, "b", b"same", 0o644);
        });
        assert_eq!(
            separate.differences(&a, 10),
            vec!["hard links differ".to_string()]
        );
    }

    #[test]
    fn reports_what_differs() {
        let a = tree_of(|b| file(b, "x", b"one", 0o644));
        let b = tree_of(|b| {
            file(b, "x", b"two", 0o600);
            file(b, "y", b"", 0o644);
        });
        let d = b.differences(&a, 10);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].contains("mode 644 vs 600") && d[0].contains("content"),
            "{d:?}"
        );
        assert_eq!(d[1], "unexpected y");
        assert_eq!(a.differences(&b, 10)[1], "missing y");
    }
}
