//! A streaming tar parser that checks structure without extracting anything.
//!
//! Fed the uncompressed stream in chunks of any size, it parses every header
//! (ustar, GNU long names, pax), verifies header checksums, hands entries and
//! their data to a [`Visitor`], and on [`Scanner::finish`] insists on an
//! end-of-archive marker with nothing but zero padding after it. Export uses it
//! to count what it streams, verify to prove an archive is whole, restore to
//! refuse unsafe entries and to compare a restored volume with its archive.
//!
//! Which entry types carry data follows Python's `tarfile` (the de-facto rule):
//! regular files, contiguous files, GNU sparse files, extended headers and
//! unknown types do; links, devices, directories and fifos do not.

use std::fmt;

const BLOCK: usize = 512;
/// Extended headers (long names, pax records) larger than this are refused.
const MAX_META: u64 = 1 << 20;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryType {
    /// Regular file (also contiguous and GNU sparse files).
    File,
    /// Hard link to an earlier entry.
    HardLink,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Directory.
    Directory,
    /// Named pipe.
    Fifo,
    /// A type flag we do not know.
    Other(u8),
}

impl EntryType {
    fn from_flag(flag: u8, path: &[u8]) -> EntryType {
        match flag {
            b'0' | b'7' | b'S' => EntryType::File,
            0 if path.ends_with(b"/") => EntryType::Directory,
            0 => EntryType::File,
            b'1' => EntryType::HardLink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::CharDevice,
            b'4' => EntryType::BlockDevice,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            other => EntryType::Other(other),
        }
    }

    fn has_data(self) -> bool {
        matches!(self, EntryType::File | EntryType::Other(_))
    }

    /// A short name for reports ("file", "dir", ...).
    pub fn name(self) -> &'static str {
        match self {
            EntryType::File => "file",
            EntryType::HardLink => "hardlink",
            EntryType::Symlink => "symlink",
            EntryType::CharDevice => "char",
            EntryType::BlockDevice => "block",
            EntryType::Directory => "dir",
            EntryType::Fifo => "fifo",
            EntryType::Other(_) => "other",
        }
    }
}

/// One archive member, with long names and pax overrides applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored (bytes: names need not be UTF-8).
    pub path: Vec<u8>,
    /// Type.
    pub kind: EntryType,
    /// Size of the data that follows (0 for links, dirs...).
    pub size: u64,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Link target for symlinks and hard links.
    pub link: Vec<u8>,
    /// Device numbers for char and block devices.
    pub device: (u64, u64),
}

impl Entry {
    /// The path for messages (lossy, never used to touch files).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Receives what the scanner finds.
pub trait Visitor {
    /// A new entry; an `Err` stops the scan with that message.
    fn entry(&mut self, _entry: &Entry) -> Result<(), String> {
        Ok(())
    }
    /// Data of the current entry, in order.
    fn data(&mut self, _chunk: &[u8]) {}
    /// The current entry's data is complete.
    fn end_entry(&mut self) {}
}

/// A visitor that only counts.
impl Visitor for () {}

/// What went wrong, and where in the uncompressed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset in the tar stream.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at byte {} of the tar stream)",
            self.message, self.offset
        )
    }
}

impl std::error::Error for ScanError {}

/// Totals of a complete scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries (not counting long-name and pax headers).
    pub entries: u64,
    /// Bytes of the tar stream, padding included.
    pub tar_bytes: u64,
    /// Bytes of regular file data.
    pub content_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meta {
    LongName,
    LongLink,
    Pax,
    Global,
}

#[derive(Debug)]
enum State {
    Header,
    Data {
        remaining: u64,
        pad: u64,
        meta: Option<Meta>,
    },
    End,
}

#[derive(Debug, Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
}

/// The streaming parser.
#[derive(Debug)]
pub struct Scanner<V: Visitor> {
    visitor: V,
    state: State,
    header: [u8; BLOCK],
    header_len: usize,
    meta_buf: Vec<u8>,
    pending: Pending,
    offset: u64,
    summary: Summary,
    headers_seen: u64,
    /// Zero bytes seen after the first zero block (the marker is two blocks).
    trailing_zeros: u64,
}

impl<V: Visitor> Scanner<V> {
    /// A scanner reporting to `visitor`.
    pub fn new(visitor: V) -> Self {
        Scanner {
            visitor,
            state: State::Header,
            header: [0; BLOCK],
            header_len: 0,
            meta_buf: Vec::new(),
            pending: Pending::default(),
            offset: 0,
            summary: Summary::default(),
            headers_seen: 0,
            trailing_zeros: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> ScanError {
        ScanError {
            offset: self.offset,
            message: message.into(),
        }
    }

    /// Feed the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ScanError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (BLOCK - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&data[..take]);
                    self.header_len += take;
                    data = &data[take..];
                    if self.header_len == BLOCK {
                        self.header_len = 0;
                        self.header_block()?;
                        self.offset += BLOCK as u64;
                        self.close_if_empty();
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    meta,
                } => {
                    let take;
                    if *remaining > 0 {
                        take = (*remaining).min(data.len() as u64) as usize;
                        *remaining -= take as u64;
                        let chunk = &data[..take];
                        if meta.is_some() {
                            self.meta_buf.extend_from_slice(chunk);
                        } else {
                            self.visitor.data(chunk);
                        }
                    } else {
                        take = (*pad).min(data.len() as u64) as usize;
                        *pad -= take as u64;
                    }
                    data = &data[take..];
                    self.offset += take as u64;
                    self.close_if_empty();
                }
                State::End => {
                    if let Some(i) = data.iter().position(|b| *b != 0) {
                        self.offset += i as u64;
                        return Err(self.error(
                            "unexpected data after the end-of-archive marker (junk appended to the archive?)",
                        ));
                    }
                    self.offset += data.len() as u64;
                    self.trailing_zeros += data.len() as u64;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// When the current entry's data and padding are consumed, finish it.
    fn close_if_empty(&mut self) {
        if let State::Data {
            remaining: 0,
            pad: 0,
            meta,
        } = self.state
        {
            match meta {
                None => self.visitor.end_entry(),
                Some(m) => self.apply_meta(m),
            }
            self.state = State::Header;
        }
    }

    fn apply_meta(&mut self, meta: Meta) {
        let buf = std::mem::take(&mut self.meta_buf);
        match meta {
            Meta::LongName => self.pending.path = Some(trim_nul(&buf).to_vec()),
            Meta::LongLink => self.pending.link = Some(trim_nul(&buf).to_vec()),
            Meta::Pax => {
                for (key, value) in pax_records(&buf) {
                    let text = std::str::from_utf8(value).ok();
                    match key {
                        b"path" => self.pending.path = Some(value.to_vec()),
                        b"linkpath" => self.pending.link = Some(value.to_vec()),
                        b"size" => self.pending.size = text.and_then(|t| t.parse().ok()),
                        b"uid" => self.pending.uid = text.and_then(|t| t.parse().ok()),
                        b"gid" => self.pending.gid = text.and_then(|t| t.parse().ok()),
                        b"mtime" => {
                            self.pending.mtime = text
                                .and_then(|t| t.split('.').next())
                                .and_then(|t| t.parse().ok())
                        }
                        _ => {}
                    }
                }
            }
            Meta::Global => {}
        }
    }

    fn header_block(&mut self) -> Result<(), ScanError> {
        let h = self.header;
        if h.iter().all(|b| *b == 0) {
            if self.headers_seen == 0 {
                return Err(self.error("the archive holds no entries (not a backup of a volume)"));
            }
            self.state = State::End;
            return Ok(());
        }
        let first = self.headers_seen == 0;
        self.headers_seen += 1;
        if !checksum_ok(&h) {
            return Err(self.error(if first {
                "not a tar archive (the first header's checksum is wrong)"
            } else {
                "damaged tar header (checksum mismatch)"
            }));
        }
        let flag = h[156];
        let raw_size =
            number(&h[124..136]).ok_or_else(|| self.error("invalid size field in tar header"))?;
        let meta = match flag {
            b'L' => Some(Meta::LongName),
            b'K' => Some(Meta::LongLink),
            b'x' | b'X' => Some(Meta::Pax),
            b'g' => Some(Meta::Global),
            _ => None,
        };
        if let Some(meta) = meta {
            if raw_size > MAX_META {
                return Err(self.error(format!("extended header of {raw_size} bytes is too large")));
            }
            self.meta_buf.clear();
            self.state = State::Data {
                remaining: raw_size,
                pad: padding(raw_size),
                meta: Some(meta),
            };
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let path = pending.path.unwrap_or_else(|| ustar_path(&h));
        let kind = EntryType::from_flag(flag, &path);
        let size = pending.size.unwrap_or(raw_size);
        let field = |r: std::ops::Range<usize>, what: &str| {
            number(&h[r]).ok_or_else(|| self.error(format!("invalid {what} field in tar header")))
        };
        let entry = Entry {
            mode: (field(100..108, "mode")? & 0o7777) as u32,
            uid: pending.uid.map_or_else(|| field(108..116, "uid"), Ok)?,
            gid: pending.gid.map_or_else(|| field(116..124, "gid"), Ok)?,
            mtime: pending
                .mtime
                .map_or_else(|| field(136..148, "mtime").map(|m| m as i64), Ok)?,
            link: pending
                .link
                .unwrap_or_else(|| trim_nul(&h[157..257]).to_vec()),
            device: if matches!(kind, EntryType::CharDevice | EntryType::BlockDevice) {
                (field(329..337, "devmajor")?, field(337..345, "devminor")?)
            } else {
                (0, 0)
            },
            path,
            kind,
            size,
        };
        if entry.path.is_empty() {
            return Err(self.error("tar entry with an empty name"));
        }
        self.visitor.entry(&entry).map_err(|m| self.error(m))?;
        self.summary.entries += 1;
        let data = if kind.has_data() { size } else { 0 };
        if kind == EntryType::File {
            self.summary.content_bytes += size;
        }
        self.state = State::Data {
            remaining: data,
            pad: padding(data),
            meta: None,
        };
        Ok(())
    }

    /// End of input: the archive must have ended properly. The visitor comes
    /// back either way.
    pub fn finish(self) -> (Result<Summary, ScanError>, V) {
        let result = match self.state {
            State::End if self.trailing_zeros < BLOCK as u64 => Err(self.error(
                "the end-of-archive marker is cut short (two zero blocks expected; truncated archive)",
            )),
            State::End => {
                let mut summary = self.summary;
                summary.tar_bytes = self.offset;
                Ok(summary)
            }
            State::Header if self.header_len == 0 && self.offset == 0 => {
                Err(self.error("the archive is empty (no tar data at all)"))
            }
            State::Header if self.header_len == 0 => Err(self.error(
                "the tar stream ends without its end-of-archive marker (truncated archive)",
            )),
            State::Header => Err(self.error("the tar stream ends inside a header (truncated archive)")),
            State::Data { .. } => Err(self.error("the tar stream ends inside an entry's data (truncated archive)")),
        };
        (result, self.visitor)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|c| *c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn ustar_path(h: &[u8; BLOCK]) -> Vec<u8> {
    let name = trim_nul(&h[0..100]);
    // POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar  ") uses those bytes otherwise.
    if &h[257..263] == b"ustar\0" {
        let prefix = trim_nul(&h[345..500]);
        if !prefix.is_empty() {
            let mut p = prefix.to_vec();
            p.push(b'/');
            p.extend_from_slice(name);
            return p;
        }
    }
    name.to_vec()
}

fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let Some(stored) = number(&h[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored as i64 == signed
}

/// An octal field (NUL/space padded) or GNU base-256 (high bit set).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let digits = field
        .iter()
        .skip_while(|b| **b == b' ' || **b == 0)
        .take_while(|b| **b != b' ' && **b != 0);
    let mut n: u64 = 0;
    for b in digits {
        if !(b'0'..=b'7').contains(b) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    // An all-blank field means 0 (some writers leave unused fields empty).
    Some(n)
}

/// `"<len> key=value\n"` records.
fn pax_records(mut buf: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let Some(space) = buf.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&buf[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= space + 1 || len > buf.len() {
            break;
        }
        let record = &buf[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((&record[..eq], &record[eq + 1..]));
        }
        buf = &buf[len..];
    }
    out
}

/// Why an entry path is unsafe to extract, if it is: absolute, a `..`
/// component, or a Windows drive or UNC form.
pub fn unsafe_path_reason(path: &[u8]) -> Option<&'static str> {
    if path.first() == Some(&b'/') || path.first() == Some(&b'\\') {
        return Some("absolute path");
    }
    if path.len() >= 2 && path[1] == b':' && path[0].is_ascii_alphabetic() {
        return Some("drive-letter path");
    }
    if path
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|c| c == b"..")
    {
        return Some("'..' component");
    }
    None
}

/// The path without a leading `./` and trailing `/` ("." for the root).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut p = path;
    while let Some(rest) = p.strip_prefix(b"./") {
        p = rest;
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p.is_empty() || p == b"." {
        b".".to_vec()
    } else {
        p.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build an archive with the `tar` crate (GNU long names included).
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_uid(10001);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[derive(Default, Debug)]
    struct Collect {
        entries: Vec<Entry>,
        data: Vec<u8>,
    }
    impl Visitor for Collect {
        fn entry(&mut self, e: &Entry) -> Result<(), String> {
            self.entries.push(e.clone());
            Ok(())
        }
        fn data(&mut self, chunk: &[u8]) {
            self.data.extend_from_slice(chunk);
        }
    }

    fn scan_in_chunks(bytes: &[u8], chunk: usize) -> Result<(Summary, Collect), ScanError> {
        let mut s = Scanner::new(Collect::default());
        for c in bytes.chunks(chunk) {
            s.feed(c)?;
        }
        let (result, visitor) = s.finish();
        result.map(|summary| (summary, visitor))
    }

    #[test]
    fn parses_long_names_in_any_chunking() {
        let long = format!("./data/{}.mdf", "n".repeat(150));
        let bytes = archive(&[("./data/a.mdf", b"hello"), (&long, b"world!")]);
        for chunk in [1, 7, 512, 513, 100_000] {
            let (summary, c) = scan_in_chunks(&bytes, chunk).unwrap();
            assert_eq!(summary.entries, 2);
            assert_eq!(summary.content_bytes, 11);
            assert_eq!(summary.tar_bytes, bytes.len() as u64);
            assert_eq!(c.entries[1].path, long.as_bytes());
            assert_eq!(c.entries[0].uid, 10001);
            assert_eq!(c.entries[0].mode, 0o640);
            assert_eq!(c.data, b"helloworld!");
        }
    }

    #[test]
    fn reads_pax_paths() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("./{}", "é".repeat(120));
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        h.set_path("./short").unwrap();
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let (summary, c) = scan_in_chunks(&bytes, 4096).unwrap();
        assert_eq!(summary.entries, 1);
        assert_eq!(c.entries[0].path, long.as_bytes());
    }

    #[test]
    fn detects_truncation_everywhere() {
        let bytes = archive(&[("./a", &[7u8; 3000]), ("./b", b"x")]);
        let (ok, _) = scan_in_chunks(&bytes, 999).unwrap();
        assert_eq!(ok.entries, 2);
        // Every cut before the end-of-archive marker fails.
        let end_marker = bytes.len() - 1024;
        for cut in (0..end_marker).step_by(97).chain([512, 1024, end_marker]) {
            assert!(scan_in_chunks(&bytes[..cut], 999).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn the_end_marker_is_two_whole_blocks() {
        let bytes = archive(&[("./a", b"1")]);
        assert!(scan_in_chunks(&bytes, 100).is_ok());
        for cut in [1, 8, 511, 512, 513, 1023] {
            let e = scan_in_chunks(&bytes[..bytes.len() - cut], 100).unwrap_err();
            assert!(e.message.contains("truncated"), "cut {cut}: {e}");
        }
    }

    #[test]
    fn rejects_junk_after_the_end_but_allows_zero_padding() {
        let mut bytes = archive(&[("./a", b"1")]);
        bytes.extend_from_slice(&[0u8; 8192]);
        assert!(scan_in_chunks(&bytes, 1000).is_ok());
        bytes.extend_from_slice(b"junk");
        let e = scan_in_chunks(&bytes, 1000).unwrap_err();
        assert!(e.message.contains("after the end-of-archive"), "{e}");
    }

    #[test]
    fn rejects_non_tar_and_damaged_headers() {
        let e = scan_in_chunks(&[b'x'; 4096], 4096).unwrap_err();
        assert!(e.message.contains("not a tar archive"), "{e}");
        let mut bytes = archive(&[("./a", b"1"), ("./b", b"2")]);
        bytes[1024 + 10] ^= 0x55; // second header's name
        let e = scan_in_chunks(&bytes, 4096).unwrap_err();
        assert!(e.message.contains("checksum"), "{e}");
        assert_eq!(e.offset, 1024);
        let e = scan_in_chunks(&[], 1).unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = scan_in_chunks(&[0u8; 1024], 1).unwrap_err();
        assert!(e.message.contains("no entries"), "{e}");
    }

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  755 \0"), Some(0o755));
        assert_eq!(number(b"\0\0\0\0"), Some(0));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
        assert_eq!(number(b"12a"), None);
    }

    #[test]
    fn unsafe_paths() {
        for p in [
            "/etc/passwd",
            "../escape",
            "./a/../../b",
            "a/..",
            "C:/x",
            "\\\\server\\x",
        ] {
            assert!(unsafe_path_reason(p.as_bytes()).is_some(), "{p}");
        }
        for p in ["./", "./data/a..b", "data/x", "./...", "./.hidden"] {
            assert!(unsafe_path_reason(p.as_bytes()).is_none(), "{p}");
        }
        assert_eq!(normalize(b"./"), b".");
        assert_eq!(normalize(b"./data/"), b"data");
        assert_eq!(normalize(b"data/x"), b"data/x");
    }
}
