//! Reading tar streams exactly as Docker does, without extracting anything.
//!
//! Docker extracts archives with Go's `archive/tar`: where tar readers differ
//! (GNU long names against pax paths, several extended headers for one entry,
//! sparse formats, odd numeric fields), what Go reads is what lands in the
//! volume. This is a port of Go 1.19's reader (`reader.go`, `strconv.go`,
//! `format.go`, the sparse code of `common.go`, the version Docker 20.10 was
//! built with), as a push parser: it is fed the uncompressed stream in chunks
//! of any size, so it sits behind the parallel decompressors and the engine's
//! archive stream alike. The `tar` crate serves for writing archives; it reads
//! differently from Go (no pax sparse files, other numeric and precedence
//! rules), so it cannot be the reader here.
//!
//! On top of Go's reading, orca's own contract: the stream must end with the
//! end-of-archive marker (two zero blocks) with nothing but zeros after it (Go
//! stops at the marker, or at a clean end of input without one: a backup cut
//! at an entry boundary would pass).
//!
//! Every entry is handed to a [`Visitor`] with its logical data: the data
//! fragments of a sparse file as [`Visitor::data`] and its holes as
//! [`Visitor::hole`], so a 60 GB sparse file costs nothing to verify.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

const BLOCK: usize = 512;
/// Go's `maxSpecialFileSize`: long names and pax headers larger than this are refused.
const MAX_SPECIAL: u64 = 1 << 20;
/// A pax 1.0 sparse map in the data section larger than this is refused (Go
/// has no limit; 16 MiB is a map of about a million fragments).
const MAX_SPARSE_MAP: usize = 16 << 20;

/// What an entry is (after Go's reading: `\0` is a file, or a directory when
/// the name ends in `/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryType {
    /// Regular file (`0`).
    File,
    /// Hard link to an earlier entry (`1`).
    HardLink,
    /// Symbolic link (`2`).
    Symlink,
    /// Character device (`3`).
    CharDevice,
    /// Block device (`4`).
    BlockDevice,
    /// Directory (`5`).
    Directory,
    /// Named pipe (`6`).
    Fifo,
    /// Any other type flag (contiguous `7`, old-GNU sparse `S`, volume label
    /// `V`...): Go reads them, Docker does not extract them.
    Other(u8),
}

impl EntryType {
    fn from_flag(flag: u8) -> EntryType {
        match flag {
            b'0' => EntryType::File,
            b'1' => EntryType::HardLink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::CharDevice,
            b'4' => EntryType::BlockDevice,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            other => EntryType::Other(other),
        }
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

/// Go's `isHeaderOnlyType`: types whose data section is ignored.
fn header_only(flag: u8) -> bool {
    matches!(flag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Which sparse format an entry used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sparse {
    /// Old GNU (`S` type flag, map in the header and extension headers).
    OldGnu,
    /// GNU pax 0.0 or 0.1 (map in pax records).
    Pax0,
    /// GNU pax 1.0 (map at the start of the data section).
    Pax1,
}

/// The extended headers that preceded an entry: several of them for one entry
/// are where tar readers disagree about its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extended {
    /// pax `x` headers (Go uses only the last one; GNU tar merges them).
    pub pax: u32,
    /// GNU `L` long-name headers.
    pub long_name: u32,
    /// GNU `K` long-link headers.
    pub long_link: u32,
    /// Whether the pax header in effect has a `path`.
    pub pax_path: bool,
    /// Whether the pax header in effect has a `linkpath`.
    pub pax_linkpath: bool,
}

/// One archive member as Go reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path as Go reports it (bytes: names need not be UTF-8).
    pub path: Vec<u8>,
    /// The type flag (after Go turns `\0` into `0` or `5`).
    pub typeflag: u8,
    /// Type.
    pub kind: EntryType,
    /// Logical size of its data (the real size of a sparse file; 0 for
    /// links, directories, devices and fifos).
    pub size: u64,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner (may be negative in base-256 or pax).
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Link target for symlinks and hard links.
    pub link: Vec<u8>,
    /// Device numbers for char and block devices.
    pub device: (i64, i64),
    /// The sparse format, for sparse files.
    pub sparse: Option<Sparse>,
    /// The extended headers before it.
    pub extended: Extended,
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
    /// Logical data of the current entry, in order.
    fn data(&mut self, _chunk: &[u8]) {}
    /// `len` zero bytes of a sparse file's hole, in order with the data.
    fn hole(&mut self, _len: u64) {}
    /// A sparse file's data does not fit its map. Go's `Next` does not see
    /// this (it skips data), but extraction reads the data and fails: `Err`
    /// to refuse the archive, `Ok` to go on as `Next` does (the entry's
    /// remaining data is skipped).
    fn sparse_mismatch(&mut self, _message: &str) -> Result<(), String> {
        Ok(())
    }
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
    /// Entries (not counting long-name, pax and global headers).
    pub entries: u64,
    /// Bytes of the tar stream, padding included.
    pub tar_bytes: u64,
    /// Logical bytes of regular file data.
    pub content_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    LongName,
    LongLink,
    Pax,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting a header block.
    Header,
    /// After one zero block: the second half of the marker, or damage.
    SecondZero,
    /// The data section of a long name or pax header.
    Special { kind: Special, remaining: u64 },
    /// An old-GNU sparse extension header block.
    SparseExt,
    /// A block of a pax 1.0 sparse map, from the entry's data section.
    SparseMap,
    /// An entry's data.
    Data,
    /// Padding after a data section.
    Pad { remaining: u64 },
    /// After the marker: only zeros may follow.
    End,
}

/// Everything the extended headers said for the next entry.
#[derive(Debug, Default)]
struct Pending {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    extended: Extended,
}

type Pax = BTreeMap<Vec<u8>, Vec<u8>>;

/// The entry being read, between its header and the end of its data.
#[derive(Debug)]
struct Current {
    entry: Entry,
    /// Physical bytes of the data section left.
    physical: u64,
    /// Padding after the whole data section.
    pad: u64,
    /// The sparse map (data fragments) while it is read.
    datas: Vec<(i64, i64)>,
    /// The holes of a sparse file (Go's `sparseHoles`; the last one stays).
    holes: VecDeque<(u64, u64)>,
    /// Logical position in a sparse file.
    pos: u64,
    sparse: bool,
    /// The data stopped fitting the map: the rest is skipped.
    skipping: bool,
    /// A pax 1.0 sparse map being gathered.
    map: Vec<u8>,
}

/// The streaming parser.
pub struct Scanner<V: Visitor> {
    visitor: V,
    state: State,
    block: [u8; BLOCK],
    block_len: usize,
    special: Vec<u8>,
    pending: Pending,
    current: Option<Current>,
    offset: u64,
    summary: Summary,
    headers_seen: u64,
    /// Zero bytes at the end of what was fed so far.
    zero_run: u64,
}

impl<V: Visitor> fmt::Debug for Scanner<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("state", &self.state)
            .field("offset", &self.offset)
            .finish()
    }
}

type Step = Result<(), ScanError>;

impl<V: Visitor> Scanner<V> {
    /// A scanner reporting to `visitor`.
    pub fn new(visitor: V) -> Self {
        Scanner {
            visitor,
            state: State::Header,
            block: [0; BLOCK],
            block_len: 0,
            special: Vec::new(),
            pending: Pending::default(),
            current: None,
            offset: 0,
            summary: Summary::default(),
            headers_seen: 0,
            zero_run: 0,
        }
    }

    /// An error at the current offset.
    fn error(&self, message: impl Into<String>) -> ScanError {
        ScanError {
            offset: self.offset,
            message: message.into(),
        }
    }

    /// Feed the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Step {
        // From the end: stops at the first non-zero byte, so cheap for data.
        match data.iter().rposition(|b| *b != 0) {
            Some(i) => self.zero_run = (data.len() - i - 1) as u64,
            None => self.zero_run += data.len() as u64,
        }
        while !data.is_empty() {
            match self.state {
                State::Header | State::SecondZero | State::SparseExt | State::SparseMap => {
                    let take = (BLOCK - self.block_len).min(data.len());
                    self.block[self.block_len..self.block_len + take]
                        .copy_from_slice(&data[..take]);
                    self.block_len += take;
                    data = &data[take..];
                    if self.block_len < BLOCK {
                        continue;
                    }
                    self.block_len = 0;
                    let block = self.block;
                    // Errors name the block's start; then the offset moves past it.
                    match self.state {
                        State::Header => self.header_block(&block)?,
                        State::SecondZero => self.second_zero(&block)?,
                        State::SparseExt => self.sparse_ext(&block)?,
                        _ => self.sparse_map_block(&block)?,
                    }
                    self.offset += BLOCK as u64;
                    self.after_block()?;
                }
                State::Special { kind, remaining } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    self.special.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.offset += take as u64;
                    let left = remaining - take as u64;
                    self.state = State::Special {
                        kind,
                        remaining: left,
                    };
                    if left == 0 {
                        self.special_done(kind)?;
                    }
                }
                State::Data => {
                    let physical = self.current.as_ref().map_or(0, |c| c.physical);
                    let take = physical.min(data.len() as u64) as usize;
                    self.entry_data(&data[..take])?;
                    data = &data[take..];
                    self.offset += take as u64;
                    if self.current.as_ref().is_some_and(|c| c.physical == 0) {
                        self.entry_done()?;
                    }
                }
                State::Pad { remaining } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    data = &data[take..];
                    self.offset += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Pad { remaining: left }
                    };
                }
                State::End => {
                    if let Some(i) = data.iter().position(|b| *b != 0) {
                        self.offset += i as u64;
                        return Err(self.error(
                            "unexpected data after the end-of-archive marker (junk appended to the archive?)",
                        ));
                    }
                    self.offset += data.len() as u64;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// Moves that follow a complete block without needing more input.
    fn after_block(&mut self) -> Step {
        match self.state {
            State::Special { kind, remaining: 0 } => self.special_done(kind),
            State::Data if self.current.as_ref().is_some_and(|c| c.physical == 0) => {
                self.entry_done()
            }
            _ => Ok(()),
        }
    }

    fn header_block(&mut self, h: &[u8; BLOCK]) -> Step {
        if h.iter().all(|b| *b == 0) {
            self.state = State::SecondZero;
            return Ok(());
        }
        let first = self.headers_seen == 0;
        self.headers_seen += 1;
        let hdr = match read_header(h) {
            Ok(hdr) => hdr,
            Err(HeaderError::Format) => {
                return Err(self.error(if first {
                    "not a tar archive (the first header's checksum is wrong)"
                } else {
                    "damaged tar header (checksum mismatch)"
                }));
            }
            Err(HeaderError::Field(what)) => {
                return Err(self.error(format!("invalid {what} field in tar header")));
            }
        };
        if hdr.size < 0 {
            return Err(self.error("tar header with a negative size"));
        }
        let nb = if header_only(hdr.typeflag) {
            0
        } else {
            hdr.size as u64
        };
        let special = match hdr.typeflag {
            b'x' => Some(Special::Pax),
            b'g' => Some(Special::Global),
            b'L' => Some(Special::LongName),
            b'K' => Some(Special::LongLink),
            _ => None,
        };
        if let Some(kind) = special {
            if nb > MAX_SPECIAL {
                return Err(self.error(format!(
                    "extended header of {nb} bytes is larger than Docker reads (1 MiB)"
                )));
            }
            self.special.clear();
            // An empty one is handled by after_block.
            self.state = State::Special {
                kind,
                remaining: nb,
            };
            return Ok(());
        }
        self.entry_header(hdr, h)
    }

    fn second_zero(&mut self, h: &[u8; BLOCK]) -> Step {
        if h.iter().all(|b| *b == 0) {
            self.state = State::End;
            Ok(())
        } else {
            Err(self.error(
                "a header follows a lone zero block (damaged archive, or two archives joined)",
            ))
        }
    }

    /// The data section of a special header is complete.
    fn special_done(&mut self, kind: Special) -> Step {
        let buf = std::mem::take(&mut self.special);
        let nb = buf.len() as u64;
        match kind {
            Special::LongName => {
                self.pending.long_name = Some(cstr(&buf).to_vec());
                self.pending.extended.long_name += 1;
            }
            Special::LongLink => {
                self.pending.long_link = Some(cstr(&buf).to_vec());
                self.pending.extended.long_link += 1;
            }
            Special::Pax => {
                let records =
                    parse_pax(&buf).ok_or_else(|| self.error("invalid pax extended header"))?;
                self.pending.extended.pax += 1;
                self.pending.extended.pax_path =
                    records.get(&b"path"[..]).is_some_and(|v| !v.is_empty());
                self.pending.extended.pax_linkpath =
                    records.get(&b"linkpath"[..]).is_some_and(|v| !v.is_empty());
                // Go keeps only the last pax header before an entry.
                self.pending.pax = Some(records);
            }
            Special::Global => {
                let records =
                    parse_pax(&buf).ok_or_else(|| self.error("invalid pax global header"))?;
                // Go checks a global header's values and returns it as an
                // entry of its own (Docker skips it); what came before it is
                // dropped.
                merge_pax(&mut GoHeader::default(), &records)
                    .map_err(|()| self.error("invalid value in a pax global header"))?;
                self.pending = Pending::default();
            }
        }
        self.state = pad_state(nb);
        Ok(())
    }

    /// An entry's header: apply the extended headers as Go does, then read its
    /// sparse map, then hand it over.
    fn entry_header(&mut self, mut hdr: GoHeader, raw: &[u8; BLOCK]) -> Step {
        let pending = std::mem::take(&mut self.pending);
        if let Some(pax) = &pending.pax {
            merge_pax(&mut hdr, pax).map_err(|()| self.error("invalid value in a pax header"))?;
        }
        if let Some(name) = pending.long_name.filter(|n| !n.is_empty()) {
            hdr.name = name;
        }
        if let Some(link) = pending.long_link.filter(|l| !l.is_empty()) {
            hdr.link = link;
        }
        if hdr.typeflag == 0 {
            // Legacy archives mark directories with a trailing slash.
            hdr.typeflag = if hdr.name.ends_with(b"/") { b'5' } else { b'0' };
        }
        if hdr.size < 0 {
            return Err(self.error("tar entry with a negative size"));
        }
        let physical = if header_only(hdr.typeflag) {
            0
        } else {
            hdr.size as u64
        };
        let mut cur = Current {
            entry: Entry {
                path: Vec::new(),
                typeflag: hdr.typeflag,
                kind: EntryType::from_flag(hdr.typeflag),
                size: physical,
                mode: (hdr.mode & 0o7777) as u32,
                uid: hdr.uid,
                gid: hdr.gid,
                mtime: hdr.mtime,
                link: hdr.link.clone(),
                device: (hdr.devmajor, hdr.devminor),
                sparse: None,
                extended: pending.extended,
            },
            physical,
            pad: padding(physical),
            datas: Vec::new(),
            holes: VecDeque::new(),
            pos: 0,
            sparse: false,
            skipping: false,
            map: Vec::new(),
        };
        if hdr.typeflag == b'S' {
            // Old GNU sparse; STAR has a look-alike with another layout.
            if block_format(raw) != Format::Gnu {
                return Err(self.error("old-GNU sparse entry whose header is not GNU"));
            }
            hdr.size = parse_numeric(&raw[483..495])
                .ok_or_else(|| self.error("invalid real size of a sparse file"))?;
            cur.entry.path = hdr.name;
            cur.entry.sparse = Some(Sparse::OldGnu);
            cur.entry.size = hdr.size.max(0) as u64;
            sparse_entries(&raw[386..482], 4, &mut cur.datas)
                .ok_or_else(|| self.error("invalid sparse map in tar header"))?;
            let real = hdr.size;
            self.current = Some(cur);
            if raw[482] != 0 {
                self.state = State::SparseExt;
                return Ok(());
            }
            return self.sparse_known(real);
        }
        let sparse = pax_sparse(&mut hdr, pending.pax.as_ref())
            .map_err(|()| self.error("invalid GNU sparse records in a pax header"))?;
        cur.entry.path = hdr.name;
        match sparse {
            None => {
                self.current = Some(cur);
                self.begin_data()
            }
            Some(PaxSparse::Map(datas)) => {
                cur.entry.sparse = Some(Sparse::Pax0);
                cur.datas = datas;
                self.current = Some(cur);
                self.sparse_known(hdr.size)
            }
            Some(PaxSparse::InData) => {
                cur.entry.sparse = Some(Sparse::Pax1);
                cur.entry.size = hdr.size.max(0) as u64;
                let short = cur.physical < BLOCK as u64;
                self.current = Some(cur);
                if short {
                    return Err(self.error("the sparse map of a sparse file is cut short"));
                }
                self.state = State::SparseMap;
                Ok(())
            }
        }
    }

    fn cur(&mut self) -> &mut Current {
        self.current
            .as_mut()
            .expect("an entry is being read in this state")
    }

    /// One old-GNU sparse extension header.
    fn sparse_ext(&mut self, blk: &[u8; BLOCK]) -> Step {
        let mut datas = std::mem::take(&mut self.cur().datas);
        let ok = sparse_entries(&blk[..504], 21, &mut datas);
        self.cur().datas = datas;
        if ok.is_none() {
            return Err(self.error("invalid old-GNU sparse extension header"));
        }
        if blk[504] != 0 {
            return Ok(()); // another extension header follows
        }
        let real = self.cur().entry.size as i64;
        self.sparse_known(real)
    }

    /// One block of a pax 1.0 sparse map (part of the entry's data), read as
    /// Go's `readGNUSparseMap1x0` does: block by block until it holds enough
    /// newline-ended numbers.
    fn sparse_map_block(&mut self, blk: &[u8; BLOCK]) -> Step {
        let offset = self.offset;
        let err = |m: &str| ScanError {
            offset,
            message: m.to_string(),
        };
        let cur = self.current.as_mut().expect("an entry is being read");
        cur.physical -= BLOCK as u64;
        cur.map.extend_from_slice(blk);
        if cur.map.len() > MAX_SPARSE_MAP {
            return Err(err("the sparse map of a sparse file is too large"));
        }
        let more = |physical: u64| {
            if physical < BLOCK as u64 {
                Err(err(
                    "the sparse map of a sparse file is cut short (the entry ends inside it)",
                ))
            } else {
                Ok(())
            }
        };
        let newlines = cur.map.iter().filter(|b| **b == b'\n').count() as u64;
        if newlines < 1 {
            return more(cur.physical);
        }
        let mut tokens = cur.map.split(|b| *b == b'\n');
        let n = tokens
            .next()
            .and_then(go_parse_int)
            .filter(|n| *n >= 0 && n.checked_mul(2).is_some())
            .ok_or_else(|| err("invalid entry count in a sparse map"))?;
        if newlines - 1 < 2 * n as u64 {
            return more(cur.physical);
        }
        let mut datas = Vec::with_capacity(n.min(1 << 16) as usize);
        for _ in 0..n {
            let offset = tokens.next().and_then(go_parse_int);
            let length = tokens.next().and_then(go_parse_int);
            match (offset, length) {
                (Some(o), Some(l)) => datas.push((o, l)),
                _ => return Err(err("invalid fragment in a sparse map")),
            }
        }
        cur.map = Vec::new();
        cur.datas = datas;
        let real = cur.entry.size as i64;
        self.sparse_known(real)
    }

    /// The sparse map is complete: check it as Go does and turn it into holes.
    fn sparse_known(&mut self, size: i64) -> Step {
        let cur = self.cur();
        let datas = std::mem::take(&mut cur.datas);
        if header_only(cur.entry.typeflag) || !valid_sparse(&datas, size) {
            return Err(self.error("invalid sparse map (fragments out of order or past the end)"));
        }
        cur.entry.size = size as u64;
        cur.holes = invert_sparse(&datas, size as u64).into();
        cur.sparse = true;
        self.begin_data()
    }

    /// Hand the entry over; its data follows.
    fn begin_data(&mut self) -> Step {
        let cur = self.current.as_ref().expect("an entry is being read");
        if let Err(m) = self.visitor.entry(&cur.entry) {
            return Err(self.error(m));
        }
        self.summary.entries += 1;
        if cur.entry.kind == EntryType::File {
            self.summary.content_bytes += cur.entry.size;
        }
        let empty = cur.physical == 0;
        self.state = State::Data;
        if empty {
            // No data section left (or none at all).
            return self.entry_done();
        }
        Ok(())
    }

    /// Physical data of the current entry, as Go's readers interpret it.
    fn entry_data(&mut self, mut chunk: &[u8]) -> Step {
        let offset = self.offset;
        let cur = self.current.as_mut().expect("an entry is being read");
        cur.physical -= chunk.len() as u64;
        if !cur.sparse {
            self.visitor.data(chunk);
            return Ok(());
        }
        while !chunk.is_empty() && !cur.skipping {
            let (start, end) = *cur.holes.front().expect("the last hole always stays");
            if cur.pos < start {
                let take = ((start - cur.pos) as usize).min(chunk.len());
                self.visitor.data(&chunk[..take]);
                cur.pos += take as u64;
                chunk = &chunk[take..];
            } else if cur.pos < end {
                self.visitor.hole(end - cur.pos);
                cur.pos = end;
            } else if cur.holes.len() > 1 {
                cur.holes.pop_front();
            } else {
                cur.skipping = true;
                self.visitor
                    .sparse_mismatch("sparse file contains unreferenced data")
                    .map_err(|message| ScanError { offset, message })?;
            }
        }
        Ok(())
    }

    /// The data section is consumed: finish the entry (a sparse file's
    /// trailing holes; data the map promised and the section lacks).
    fn entry_done(&mut self) -> Step {
        let mut cur = self.current.take().expect("an entry is being read");
        if cur.sparse && !cur.skipping {
            loop {
                let (start, end) = *cur.holes.front().expect("the last hole always stays");
                if cur.pos < start {
                    self.visitor
                        .sparse_mismatch("sparse file references non-existent data")
                        .map_err(|m| self.error(m))?;
                    break;
                } else if cur.pos < end {
                    self.visitor.hole(end - cur.pos);
                    cur.pos = end;
                } else if cur.holes.len() > 1 {
                    cur.holes.pop_front();
                } else {
                    break;
                }
            }
        }
        self.visitor.end_entry();
        self.state = if cur.pad == 0 {
            State::Header
        } else {
            State::Pad { remaining: cur.pad }
        };
        Ok(())
    }

    /// End of input: the archive must have ended properly. The visitor comes
    /// back either way.
    pub fn finish(self) -> (Result<Summary, ScanError>, V) {
        let result = match self.state {
            State::End => {
                let mut summary = self.summary;
                summary.tar_bytes = self.offset;
                Ok(summary)
            }
            // One zero block after data that ends in a whole zero block: the
            // last 1024 bytes are zeros, as a marker's are (libarchive writes
            // archives like this, and Go reads them to the end).
            State::SecondZero if self.block_len == 0 && self.zero_run >= 2 * BLOCK as u64 => {
                let mut summary = self.summary;
                summary.tar_bytes = self.offset;
                Ok(summary)
            }
            State::SecondZero if self.block_len == 0 => Err(self.error(
                "the end-of-archive marker is cut short (two zero blocks expected; truncated archive)",
            )),
            State::Header if self.block_len == 0 && self.offset == 0 => {
                Err(self.error("the archive is empty (no tar data at all)"))
            }
            State::Header if self.block_len == 0 => Err(self.error(
                "the tar stream ends without its end-of-archive marker (truncated archive)",
            )),
            State::Header | State::SecondZero => {
                Err(self.error("the tar stream ends inside a header (truncated archive)"))
            }
            State::Special { .. } => Err(self.error(
                "the tar stream ends inside an extended header (truncated archive)",
            )),
            State::SparseExt | State::SparseMap => Err(self.error(
                "the tar stream ends inside a sparse map (truncated archive)",
            )),
            State::Data => Err(self.error(
                "the tar stream ends inside an entry's data (truncated archive)",
            )),
            // Go stops cleanly here; a backup cut here still lacks its marker.
            State::Pad { .. } => Err(self.error(
                "the tar stream ends in the padding after an entry, without its end-of-archive marker (truncated archive)",
            )),
        };
        (result, self.visitor)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn pad_state(size: u64) -> State {
    match padding(size) {
        0 => State::Header,
        n => State::Pad { remaining: n },
    }
}

/// Go's `parseString`: up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|c| *c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's header formats, as `getFormat` tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Unknown,
    V7,
    Ustar,
    Gnu,
    Star,
}

/// Go's `getFormat`: the checksum (unsigned or signed sum), then the magic.
fn block_format(b: &[u8; BLOCK]) -> Format {
    let Some(value) = parse_octal(&b[148..156]) else {
        return Format::Unknown;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { *c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if value != unsigned && value != signed {
        return Format::Unknown;
    }
    let magic = &b[257..263];
    let version = &b[263..265];
    let trailer = &b[508..512];
    if magic == b"ustar\0" && trailer == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    }
}

/// A header as Go's `readHeader` and `mergePAX` leave it.
#[derive(Clone, Debug, Default)]
struct GoHeader {
    name: Vec<u8>,
    link: Vec<u8>,
    typeflag: u8,
    size: i64,
    mode: i64,
    uid: i64,
    gid: i64,
    mtime: i64,
    devmajor: i64,
    devminor: i64,
}

enum HeaderError {
    /// Checksum or magic: not a header.
    Format,
    /// A numeric field Go cannot parse.
    Field(&'static str),
}

/// Go's `readHeader` for a non-zero block.
fn read_header(b: &[u8; BLOCK]) -> Result<GoHeader, HeaderError> {
    let format = block_format(b);
    if format == Format::Unknown {
        return Err(HeaderError::Format);
    }
    let num = |r: std::ops::Range<usize>, what: &'static str| {
        parse_numeric(&b[r]).ok_or(HeaderError::Field(what))
    };
    let mut hdr = GoHeader {
        typeflag: b[156],
        name: cstr(&b[0..100]).to_vec(),
        link: cstr(&b[157..257]).to_vec(),
        size: num(124..136, "size")?,
        mode: num(100..108, "mode")?,
        uid: num(108..116, "uid")?,
        gid: num(116..124, "gid")?,
        mtime: num(136..148, "mtime")?,
        ..GoHeader::default()
    };
    if format != Format::V7 {
        hdr.devmajor = num(329..337, "devmajor")?;
        hdr.devminor = num(337..345, "devminor")?;
        let prefix: &[u8] = match format {
            Format::Ustar => cstr(&b[345..500]),
            Format::Star => {
                num(476..488, "atime")?;
                num(488..500, "ctime")?;
                cstr(&b[345..476])
            }
            _ => {
                // GNU: atime and ctime, unless a pre-Go 1.8 writer put a
                // ustar prefix there (then an ASCII prefix is the prefix).
                let bad = (b[345] != 0 && parse_numeric(&b[345..357]).is_none())
                    || (b[357] != 0 && parse_numeric(&b[357..369]).is_none());
                let p = cstr(&b[345..500]);
                if bad && p.is_ascii() { p } else { &[] }
            }
        };
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&hdr.name);
            hdr.name = name;
        }
    }
    Ok(hdr)
}

/// Go's `parseNumeric`: base-256 when the high bit is set, else octal.
fn parse_numeric(b: &[u8]) -> Option<i64> {
    if let Some(first) = b.first()
        && first & 0x80 != 0
    {
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return None; // overflow
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 > 0 {
            return None;
        }
        return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    parse_octal(b)
}

/// Go's `parseOctal`: NULs and spaces trimmed on both ends, then up to a NUL.
fn parse_octal(b: &[u8]) -> Option<i64> {
    let start = b.iter().position(|c| *c != b' ' && *c != 0);
    let Some(start) = start else {
        return Some(0);
    };
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != 0)
        .unwrap_or(start)
        + 1;
    let s = cstr(&b[start..end]);
    let mut x: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for c in s {
        if !(b'0'..=b'7').contains(c) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(x as i64)
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign and decimal digits.
fn go_parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut x: i128 = 0;
    for d in digits {
        x = x * 10 + i128::from(d - b'0');
        if x > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let x = if neg { -x } else { x };
    i64::try_from(x).ok()
}

/// Go's `parsePAX`: every record, with GNU sparse 0.0 offsets and sizes
/// gathered into `GNU.sparse.map`. `None`: a bad record.
fn parse_pax(buf: &[u8]) -> Option<Pax> {
    let mut records = Pax::new();
    let mut sparse_map: Vec<&[u8]> = Vec::new();
    let mut s = buf;
    while !s.is_empty() {
        let (key, value, rest) = parse_pax_record(s)?;
        s = rest;
        match key {
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let want_offset = sparse_map.len().is_multiple_of(2);
                if (want_offset && key != b"GNU.sparse.offset")
                    || (!want_offset && key != b"GNU.sparse.numbytes")
                    || value.contains(&b',')
                {
                    return None;
                }
                sparse_map.push(value);
            }
            _ => {
                records.insert(key.to_vec(), value.to_vec());
            }
        }
    }
    if !sparse_map.is_empty() {
        records.insert(b"GNU.sparse.map".to_vec(), sparse_map.join(&b","[..]));
    }
    Some(records)
}

/// Go's `parsePAXRecord`: `"%d %s=%s\n"`.
fn parse_pax_record(s: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let sp = s.iter().position(|c| *c == b' ')?;
    let n = go_parse_int(&s[..sp])?;
    if n < 5 || n > s.len() as i64 {
        return None;
    }
    let n = n - (sp as i64 + 1);
    if n <= 0 {
        return None;
    }
    let n = n as usize;
    let rest = &s[sp + 1..];
    if rest.len() < n || rest[n - 1] != b'\n' {
        return None;
    }
    let rec = &rest[..n - 1];
    let eq = rec.iter().position(|c| *c == b'=')?;
    let (key, value) = (&rec[..eq], &rec[eq + 1..]);
    let valid = !key.is_empty()
        && match key {
            b"path" | b"linkpath" | b"uname" | b"gname" => !value.contains(&0),
            _ => !key.contains(&0),
        };
    valid.then_some((key, value, &rest[n..]))
}

/// Go's `parsePAXTime`, as whole seconds (rounded down).
fn parse_pax_time(v: &[u8]) -> Option<i64> {
    let (secs, frac) = match v.iter().position(|c| *c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    let s = go_parse_int(secs)?;
    if frac.is_empty() {
        return Some(s);
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let nonzero = frac.iter().take(9).any(|c| *c != b'0');
    // time.Unix(s, -ns) for a negative time: one second earlier when ns > 0.
    Some(if secs.first() == Some(&b'-') && nonzero {
        s - 1
    } else {
        s
    })
}

/// Go's `mergePAX`.
fn merge_pax(hdr: &mut GoHeader, pax: &Pax) -> Result<(), ()> {
    for (k, v) in pax {
        if v.is_empty() {
            continue; // keep the ustar value
        }
        match k.as_slice() {
            b"path" => hdr.name = v.clone(),
            b"linkpath" => hdr.link = v.clone(),
            b"uid" => hdr.uid = go_parse_int(v).ok_or(())?,
            b"gid" => hdr.gid = go_parse_int(v).ok_or(())?,
            b"atime" | b"ctime" => {
                parse_pax_time(v).ok_or(())?;
            }
            b"mtime" => hdr.mtime = parse_pax_time(v).ok_or(())?,
            b"size" => hdr.size = go_parse_int(v).ok_or(())?,
            _ => {}
        }
    }
    Ok(())
}

enum PaxSparse {
    /// 0.0 and 0.1: the map is in the records.
    Map(Vec<(i64, i64)>),
    /// 1.0: the map opens the data section.
    InData,
}

/// Go's `readGNUSparsePAXHeaders` (name and size applied to `hdr`).
fn pax_sparse(hdr: &mut GoHeader, pax: Option<&Pax>) -> Result<Option<PaxSparse>, ()> {
    let Some(pax) = pax else {
        return Ok(None);
    };
    let get = |k: &[u8]| pax.get(k).map(Vec::as_slice).unwrap_or(&[]);
    let (major, minor) = (get(b"GNU.sparse.major"), get(b"GNU.sparse.minor"));
    let is1x0 = if major == b"0" && (minor == b"0" || minor == b"1") {
        false
    } else if major == b"1" && minor == b"0" {
        true
    } else if !major.is_empty() || !minor.is_empty() {
        return Ok(None); // an unknown version: not sparse to Go
    } else if !get(b"GNU.sparse.map").is_empty() {
        false
    } else {
        return Ok(None);
    };
    let name = get(b"GNU.sparse.name");
    if !name.is_empty() {
        hdr.name = name.to_vec();
    }
    let mut size = get(b"GNU.sparse.size");
    if size.is_empty() {
        size = get(b"GNU.sparse.realsize");
    }
    if !size.is_empty() {
        hdr.size = go_parse_int(size).ok_or(())?;
    }
    if is1x0 {
        return Ok(Some(PaxSparse::InData));
    }
    let n = go_parse_int(get(b"GNU.sparse.numblocks")).ok_or(())?;
    if n < 0 || n.checked_mul(2).is_none() {
        return Err(());
    }
    let map = get(b"GNU.sparse.map");
    let parts: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|c| *c == b',').collect()
    };
    if parts.len() as i64 != 2 * n {
        return Err(());
    }
    let mut datas = Vec::with_capacity(parts.len() / 2);
    for pair in parts.chunks(2) {
        let o = go_parse_int(pair[0]).ok_or(())?;
        let l = go_parse_int(pair[1]).ok_or(())?;
        datas.push((o, l));
    }
    Ok(Some(PaxSparse::Map(datas)))
}

/// Up to `max` old-GNU sparse entries (12-byte offset, 12-byte length),
/// ending early at an empty offset (Go still reads the extension headers
/// then). `None`: a bad number.
fn sparse_entries(b: &[u8], max: usize, out: &mut Vec<(i64, i64)>) -> Option<()> {
    for i in 0..max {
        let e = &b[i * 24..i * 24 + 24];
        if e[0] == 0 {
            break; // as GNU and BSD tar
        }
        out.push((parse_numeric(&e[..12])?, parse_numeric(&e[12..])?));
    }
    Some(())
}

/// Go's `validateSparseEntries`.
fn valid_sparse(sp: &[(i64, i64)], size: i64) -> bool {
    if size < 0 {
        return false;
    }
    let mut pre_end: i64 = 0;
    for &(offset, length) in sp {
        if offset < 0 || length < 0 || offset > i64::MAX - length {
            return false;
        }
        let end = offset + length;
        if end > size || pre_end > offset {
            return false;
        }
        pre_end = end;
    }
    true
}

/// Go's `invertSparseEntries`: the holes between data fragments, the last
/// one always present (possibly empty, at the end).
fn invert_sparse(datas: &[(i64, i64)], size: u64) -> Vec<(u64, u64)> {
    let mut holes = Vec::new();
    let mut pre_offset: u64 = 0;
    for &(offset, length) in datas {
        if length == 0 {
            continue;
        }
        let (offset, length) = (offset as u64, length as u64);
        if offset > pre_offset {
            holes.push((pre_offset, offset));
        }
        pre_offset = offset + length;
    }
    holes.push((pre_offset, size));
    holes
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

/// Go's `path.Clean` (what Docker does to every name before extracting it):
/// one slash between components, no `.`, `..` resolved lexically, no
/// trailing slash; "." for nothing.
pub fn go_clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(part);
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::new();
    if rooted {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// The path as a key: Go's clean form ("." for the root).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    go_clean(path)
}
