//! The safety scan before a restore: every entry read as Docker reads it (Go's
//! `archive/tar`, names cleaned with Go's `path.Clean`), and the archive
//! refused (exit 6, before anything changes) when extracting it could write
//! outside the volume, through a symbolic link, or where tar readers disagree
//! about what an entry is.
//!
//! Refused:
//! - absolute names, drive letters, `..` components (in the raw name, so
//!   names that only clean up to something safe are refused too);
//! - an entry written through a symbolic link the archive made earlier
//!   (`./a/./s`, `a//s` and `a/s` are one path to Docker);
//! - a hard link whose target is missing, a directory, outside the volume or
//!   reached through a symbolic link; a symbolic link pointing out of the
//!   volume (Docker refuses those half-way through);
//! - several extended headers naming one entry (two pax headers, two GNU long
//!   names, a GNU long name and a pax path): Go lets one win, GNU tar another;
//! - the same path twice (except a directory repeated);
//! - entry types Docker cannot extract (old-GNU sparse `S`, contiguous `7`,
//!   volume labels...), negative owners, and sparse files whose data does not
//!   fit their map.

use std::collections::BTreeMap;

use orca_shared::tarscan::{self, Entry, EntryType, Visitor, go_clean};

use crate::tree::TreeBuilder;

/// Checks every entry before a restore, and builds the archive's tree.
#[derive(Debug, Default)]
pub struct Prescan {
    /// The archive's tree.
    pub tree: TreeBuilder,
    /// Cleaned path -> what the last entry there is.
    kinds: BTreeMap<Vec<u8>, EntryType>,
    current: String,
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// The first proper prefix of `path` (cleaned) that is a symbolic link.
fn symlink_prefix<'a>(kinds: &BTreeMap<Vec<u8>, EntryType>, path: &'a [u8]) -> Option<&'a [u8]> {
    path.iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i > 0)
        .map(|(i, _)| &path[..i])
        .find(|prefix| kinds.get(*prefix) == Some(&EntryType::Symlink))
}

fn escapes(clean: &[u8]) -> bool {
    clean == b".." || clean.starts_with(b"../")
}

impl Prescan {
    fn check(&mut self, e: &Entry) -> Result<(), String> {
        let shown = e.display_path();
        let x = e.extended;
        if x.pax > 1
            || x.long_name > 1
            || x.long_link > 1
            || (x.long_name > 0 && x.pax_path)
            || (x.long_link > 0 && x.pax_linkpath)
        {
            return Err(format!(
                "entry '{shown}' is named by several extended headers ({} pax, {} GNU long name, {} GNU long link); tar readers disagree about which one wins, so this archive could restore something else than it shows",
                x.pax, x.long_name, x.long_link
            ));
        }
        match e.typeflag {
            b'0'..=b'6' => {}
            b'S' => {
                return Err(format!(
                    "entry '{shown}' is an old-GNU sparse file (GNU tar -S); Docker cannot extract it (\"unhandled tar header type 83\"): re-create the archive without -S, or with --format=posix"
                ));
            }
            other => {
                return Err(format!(
                    "entry '{shown}' has tar type '{}', which Docker cannot extract",
                    char::from(other).escape_default()
                ));
            }
        }
        if let Some(why) = tarscan::unsafe_path_reason(&e.path) {
            return Err(format!("unsafe entry '{shown}' ({why})"));
        }
        if e.uid < 0 || e.gid < 0 {
            return Err(format!(
                "entry '{shown}' has a negative owner ({}:{})",
                e.uid, e.gid
            ));
        }
        let path = go_clean(&e.path);
        if path == b"." && e.kind != EntryType::Directory {
            return Err(format!(
                "entry '{shown}' stands for the root of the volume but is not a directory"
            ));
        }
        if let Some(link) = symlink_prefix(&self.kinds, &path) {
            return Err(format!(
                "unsafe entry '{shown}': it would be written through the symbolic link '{}'",
                show(link)
            ));
        }
        if let Some(before) = self.kinds.get(&path)
            && !(*before == EntryType::Directory && e.kind == EntryType::Directory)
        {
            return Err(format!(
                "the archive holds '{}' twice; tar readers disagree about which one is extracted",
                show(&path)
            ));
        }
        match e.kind {
            EntryType::HardLink => {
                if let Some(why) = tarscan::unsafe_path_reason(&e.link) {
                    return Err(format!("unsafe hard link '{shown}' ({why} in its target)"));
                }
                let target = go_clean(&e.link);
                if let Some(link) = symlink_prefix(&self.kinds, &target) {
                    return Err(format!(
                        "unsafe hard link '{shown}': its target '{}' goes through the symbolic link '{}'",
                        show(&e.link),
                        show(link)
                    ));
                }
                match self.kinds.get(&target) {
                    None => {
                        return Err(format!(
                            "hard link '{shown}' points to '{}', which the archive does not hold before it",
                            show(&e.link)
                        ));
                    }
                    Some(EntryType::Directory) => {
                        return Err(format!(
                            "hard link '{shown}' points to the directory '{}'",
                            show(&e.link)
                        ));
                    }
                    Some(_) => {}
                }
            }
            EntryType::Symlink if !e.link.starts_with(b"/") => {
                // Docker refuses a link whose target leaves the volume.
                let parent = match path.iter().rposition(|b| *b == b'/') {
                    Some(i) => &path[..i],
                    None => &b"."[..],
                };
                let mut joined = parent.to_vec();
                joined.push(b'/');
                joined.extend_from_slice(&e.link);
                if escapes(&go_clean(&joined)) {
                    return Err(format!(
                        "symbolic link '{shown}' points outside the volume ('{}'); Docker refuses to extract it",
                        show(&e.link)
                    ));
                }
            }
            _ => {}
        }
        self.kinds.insert(path, e.kind);
        Ok(())
    }
}

impl Visitor for Prescan {
    fn entry(&mut self, e: &Entry) -> Result<(), String> {
        self.current = e.display_path();
        self.check(e)?;
        self.tree.entry(e)
    }

    fn data(&mut self, chunk: &[u8]) {
        self.tree.data(chunk);
    }

    fn hole(&mut self, len: u64) {
        self.tree.hole(len);
    }

    fn sparse_mismatch(&mut self, message: &str) -> Result<(), String> {
        Err(format!(
            "entry '{}' is a sparse file whose data does not fit its map ({message}); Docker would fail to extract it",
            self.current
        ))
    }

    fn end_entry(&mut self) {
        self.tree.end_entry();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_shared::tarscan::Scanner;

    /// (name, type, link, data).
    type Raw<'a> = (&'a str, u8, &'a str, &'a [u8]);

    /// A tar of raw entries.
    fn tar(entries: &[Raw]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(tar::EntryType::new(*kind));
            h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link.as_bytes());
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn scan(bytes: &[u8]) -> Result<(), String> {
        let mut s = Scanner::new(Prescan::default());
        s.feed(bytes).map_err(|e| e.message)?;
        s.finish().0.map(drop).map_err(|e| e.message)
    }

    #[test]
    fn safe_archives_pass() {
        scan(&tar(&[
            ("./", b'5', "", b""),
            ("./data/", b'5', "", b""),
            ("./data/a.mdf", b'0', "", b"x"),
            ("./data/b.mdf", b'1', "./data/a.mdf", b""),
            ("./link", b'2', "data/a.mdf", b""),
            ("./abs", b'2', "/nonexistent/absolute", b""),
            ("./data/", b'5', "", b""),
        ]))
        .unwrap();
    }

    #[test]
    fn writes_through_symlinks_are_refused_however_the_name_is_spelled() {
        for name in ["./a/s/x", "a//s/x", "./a/./s/x", "a/s/./x"] {
            let e = scan(&tar(&[
                ("./a/", b'5', "", b""),
                ("./a/./s", b'2', "/etc", b""),
                (name, b'0', "", b"evil"),
            ]))
            .unwrap_err();
            assert!(e.contains("symbolic link"), "{name}: {e}");
        }
    }

    #[test]
    fn hard_links_through_symlinks_missing_or_outside_are_refused() {
        for (target, why) in [
            ("s/passwd", "symbolic link"),
            ("nope", "does not hold"),
            ("../x", "'..'"),
            ("/etc/x", "absolute"),
        ] {
            let e = scan(&tar(&[
                ("./s", b'2', "/etc", b""),
                ("./h", b'1', target, b""),
            ]))
            .unwrap_err();
            assert!(e.contains(why), "{target}: {e}");
        }
    }

    #[test]
    fn other_refusals() {
        let cases: &[(&[Raw], &str)] = &[
            (&[("../x", b'0', "", b"")], "'..'"),
            (&[("a/../b", b'0', "", b"")], "'..'"),
            (&[("/x", b'0', "", b"")], "absolute"),
            (&[("x", b'0', "", b""), ("./x", b'2', "y", b"")], "twice"),
            (&[("x", b'2', "../../etc", b"")], "outside"),
            (&[("x", b'7', "", b"")], "type '7'"),
            (&[(".", b'0', "", b"")], "root"),
        ];
        for (entries, why) in cases {
            let e = scan(&tar(entries)).unwrap_err();
            assert!(e.contains(why), "{entries:?}: {e}");
        }
    }
}
