//! Reading an archive back: detect the compression from the content, hash the
//! file, decompress the whole stream and feed it to a tar scanner.
//!
//! Two threads: one reads the file in 1 MiB chunks and hashes it (SHA-256),
//! the other decompresses. Archives written by orca-export carry an `OB` extra
//! field in every gzip member, so each member is decompressed in one libdeflate
//! call (several times faster than streaming zlib); any other gzip (today's
//! `tar -czf`, pigz, a mix) goes through a streaming multi-member decoder.
//! Either way every member's CRC-32 and length are checked, and bytes after the
//! last member fail.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread;

use orca_shared::fsutil::read_full;
use orca_shared::tarscan::{Scanner, Summary, Visitor};
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
/// Largest member the fast path accepts (ours are 1 MiB of input).
const MAX_MEMBER: u32 = 64 << 20;

/// How an archive is compressed, as its first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gzip (one or many members).
    Gzip,
    /// zstd (one or many frames).
    Zstd,
    /// An uncompressed tar.
    Tar,
}

impl Format {
    /// The name used in records (matches `compression`: gzip, zstd, none).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Tar => "none",
        }
    }

    /// Detect from the first bytes; `None` when it is none of them.
    pub fn detect(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Format::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
        {
            // A zstd frame, or a skippable frame first (pzstd writes one).
            Some(Format::Zstd)
        } else if head.len() >= 512
            && (&head[257..262] == b"ustar" || tar_checksum_ok(&head[..512]))
        {
            Some(Format::Tar)
        } else {
            None
        }
    }
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let field = String::from_utf8_lossy(&h[148..156]);
    let Ok(stored) = u64::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    stored == sum && h.iter().any(|b| *b != 0)
}

/// The result of reading an archive through.
#[derive(Debug)]
pub struct Decoded<V> {
    /// Detected format (None: unrecognized; `integrity` then says why).
    pub format: Option<Format>,
    /// SHA-256 of the file, lowercase hex (of all bytes read).
    pub sha256: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Gzip members / zstd frames seen, when known.
    pub members: u64,
    /// The tar stream's totals, or why the archive is not whole.
    pub integrity: Result<Summary, String>,
    /// The visitor, after the scan.
    pub visitor: V,
    /// Why the tap stopped taking bytes, if it did (then `integrity` is an error too).
    pub tap_error: Option<io::Error>,
    /// Things a person should know that do not make the archive damaged.
    pub warnings: Vec<String>,
}

/// Read `path` through: hash it, decompress it, scan the tar with `visitor`.
/// I/O errors opening or reading the file are returned as `Err`; a damaged
/// archive is an `Ok` with `integrity: Err(why)`.
pub fn decode<V: Visitor>(path: &Path, visitor: V) -> io::Result<Decoded<V>> {
    decode_tee(path, visitor, None)
}

/// Like [`decode`], also writing the decompressed tar stream to `tap` (as it
/// is verified, so a damaged archive stops the tap where the damage starts).
pub fn decode_tee<V: Visitor>(
    path: &Path,
    visitor: V,
    tap: Option<&mut dyn Write>,
) -> io::Result<Decoded<V>> {
    let mut file = File::open(path)?;
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(6);
    for _ in 0..5 {
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<(String, u64)> {
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            loop {
                let mut buf = free_rx.recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                buf.resize(CHUNK, 0);
                let n = read_full(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                hasher.update(&buf);
                total += n as u64;
                if tx.send(buf).is_err() {
                    // The decoder stopped early (damaged archive): keep hashing.
                    let mut rest = vec![0u8; CHUNK];
                    loop {
                        let n = read_full(&mut file, &mut rest)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&rest[..n]);
                        total += n as u64;
                    }
                    break;
                }
            }
            drop(tx);
            Ok((hex(&hasher.finalize()), total))
        });
        let mut chunks = Chunks { rx, free: free_tx };
        let mut sink = Sink {
            scanner: Scanner::new(visitor),
            tap,
            tap_error: None,
            warnings: Vec::new(),
        };
        let (format, members, integrity) = decode_stream(&mut chunks, &mut sink);
        let Sink {
            scanner,
            tap_error,
            warnings,
            ..
        } = sink;
        let (scanned, visitor) = scanner.finish();
        // A decompression error is the cause of whatever the tar scan says then.
        let integrity = match (integrity, scanned) {
            (Err(why), _) => Err(why),
            (Ok(()), Err(e)) => Err(e.to_string()),
            (Ok(()), Ok(summary)) => Ok(summary),
        };
        drop(chunks);
        let (sha256, file_bytes) = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")))?;
        Ok(Decoded {
            format,
            sha256,
            file_bytes,
            members,
            integrity,
            visitor,
            tap_error,
            warnings,
        })
    })
}

/// Where decompressed bytes go: the optional tap, then the tar scanner.
struct Sink<'t, V: Visitor> {
    scanner: Scanner<V>,
    tap: Option<&'t mut dyn Write>,
    tap_error: Option<io::Error>,
    warnings: Vec<String>,
}

impl<V: Visitor> Sink<'_, V> {
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        // Scan first: a damaged stretch must not reach the tap.
        self.scanner.feed(data).map_err(|e| e.to_string())?;
        if let Some(tap) = self.tap.as_mut()
            && let Err(e) = tap.write_all(data)
        {
            let msg = format!("the extraction stopped taking data ({e})");
            self.tap_error = Some(e);
            return Err(msg);
        }
        Ok(())
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The chunks the reader thread sends, as a byte source.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    free: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Chunks {
    fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().ok()
    }

    fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.try_send(buf);
    }
}

/// `Read` over chunks, starting with `prefix`.
struct ChunkReader<'a> {
    chunks: &'a mut Chunks,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.next() {
                Some(c) => {
                    let old = std::mem::replace(&mut self.current, c);
                    self.chunks.recycle(old);
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = (self.current.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn decode_stream<V: Visitor>(
    chunks: &mut Chunks,
    sink: &mut Sink<'_, V>,
) -> (Option<Format>, u64, Result<(), String>) {
    let Some(first) = chunks.next() else {
        return (None, 0, Err("the file is empty".into()));
    };
    let format = Format::detect(&first);
    let (members, result) = match format {
        None => (
            0,
            Err("not a gzip, zstd or tar archive (unrecognized first bytes)".to_string()),
        ),
        Some(Format::Gzip) => gzip(first, chunks, sink),
        Some(Format::Zstd) => {
            let reader = ChunkReader {
                chunks,
                current: first,
                pos: 0,
            };
            match zstd::stream::read::Decoder::new(reader) {
                Ok(d) => (0, pump(d, sink, "zstd")),
                Err(e) => (0, Err(format!("zstd: {e}"))),
            }
        }
        Some(Format::Tar) => {
            let reader = ChunkReader {
                chunks,
                current: first,
                pos: 0,
            };
            (0, pump(reader, sink, "tar"))
        }
    };
    (format, members, result)
}

/// Decompress everything `r` yields into the scanner.
fn pump<V: Visitor>(mut r: impl Read, scanner: &mut Sink<'_, V>, what: &str) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(format!(
                    "{what} stream is truncated (unexpected end of file)"
                ));
            }
            Err(e) => return Err(format!("{what} stream is damaged: {e}")),
        };
        scanner.feed(&buf[..n])?;
    }
}

/// gzip: member by member with libdeflate while members carry the `OB` field,
/// streaming for anything else. A member must use exactly the bytes its `OB`
/// field claims. Zeros after the last member (tape blocking, `dd conv=sync`)
/// are accepted with a warning, as `gzip -t` does; anything else is damage.
fn gzip<V: Visitor>(
    first: Vec<u8>,
    chunks: &mut Chunks,
    sink: &mut Sink<'_, V>,
) -> (u64, Result<(), String>) {
    let mut buf = first;
    let mut pos = 0usize;
    let mut offset = 0u64; // file offset of buf[0]
    let mut members = 0u64;
    let mut out = Vec::new();
    let mut inflate = crate::member::MemberDecoder::new();
    let mut eof = false;
    loop {
        let avail = buf.len() - pos;
        if avail >= orca_export::pargz::HEADER_LEN || (eof && avail > 0) {
            match orca_export::pargz::member_sizes(&buf[pos..]) {
                Some((msize, isize)) => {
                    let at = offset + pos as u64;
                    if msize < (orca_export::pargz::HEADER_LEN + 8) as u32
                        || msize > MAX_MEMBER
                        || isize > MAX_MEMBER
                    {
                        return (
                            members,
                            Err(format!("gzip member at byte {at} has a damaged header")),
                        );
                    }
                    let msize = msize as usize;
                    if avail >= msize {
                        out.resize(isize as usize, 0);
                        let member = &buf[pos..pos + msize];
                        match inflate.gzip(member, &mut out) {
                            Some((used, n)) if used == msize && n == isize as usize => {}
                            Some((used, _)) if used != msize => {
                                return (
                                    members,
                                    Err(format!(
                                        "gzip member at byte {at} is {used} bytes long, not the {msize} its header claims (bytes hidden after it)"
                                    )),
                                );
                            }
                            Some(_) | None => {
                                return (
                                    members,
                                    Err(format!(
                                        "gzip member at byte {at} is damaged (data, CRC-32 or length do not match)"
                                    )),
                                );
                            }
                        }
                        if let Err(e) = sink.feed(&out) {
                            return (members, Err(e));
                        }
                        members += 1;
                        pos += msize;
                        continue;
                    }
                    if eof {
                        return (
                            members,
                            Err(format!(
                                "gzip stream is truncated (the member at byte {at} is cut short)"
                            )),
                        );
                    }
                }
                None if buf[pos..].starts_with(&[0x1f, 0x8b]) || (pos == 0 && members == 0) => {
                    // A gzip member from another writer: stream the rest.
                    let rest = buf.split_off(pos);
                    let reader = ChunkReader {
                        chunks,
                        current: rest,
                        pos: 0,
                    };
                    let at = offset + pos as u64;
                    let (more, result) = gzip_stream(reader, at, sink);
                    return (members + more, result);
                }
                None => {
                    let at = offset + pos as u64;
                    let rest = buf.split_off(pos);
                    let reader = ChunkReader {
                        chunks,
                        current: rest,
                        pos: 0,
                    };
                    return (members, zeros_after(reader, at, sink));
                }
            }
        }
        if eof {
            return (members, Ok(()));
        }
        match chunks.next() {
            Some(c) => {
                // Keep only what is not consumed yet.
                if pos > 0 {
                    buf.drain(..pos);
                    offset += pos as u64;
                    pos = 0;
                }
                buf.extend_from_slice(&c);
                chunks.recycle(c);
            }
            None => eof = true,
        }
    }
}

/// gzip members from any writer, one after the other, with flate2 (each
/// member's CRC-32 and length checked). `at`: the file offset of the first.
fn gzip_stream<V: Visitor>(
    reader: impl Read,
    start: u64,
    sink: &mut Sink<'_, V>,
) -> (u64, Result<(), String>) {
    let mut input = io::BufReader::with_capacity(
        CHUNK,
        Counted {
            inner: reader,
            n: 0,
        },
    );
    let mut members = 0u64;
    loop {
        let decoder = flate2::bufread::GzDecoder::new(&mut input);
        if let Err(e) = pump(decoder, sink, "gzip") {
            return (members, Err(e));
        }
        members += 1;
        let at = start + input.get_ref().n - input.buffer().len() as u64;
        match io::BufRead::fill_buf(&mut input) {
            Ok([]) => return (members, Ok(())),
            Ok([0x1f, 0x8b, ..]) => continue,
            Ok(_) => return (members, zeros_after(&mut input, at, sink)),
            Err(e) => return (members, Err(format!("gzip stream is damaged: {e}"))),
        }
    }
}

/// What follows the last gzip member: zeros only (a warning) or damage.
fn zeros_after<V: Visitor>(
    mut rest: impl Read,
    at: u64,
    sink: &mut Sink<'_, V>,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut zeros = 0u64;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read past the gzip stream: {e}")),
        };
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(format!(
                "unexpected data after the gzip stream (at byte {})",
                at + zeros + i as u64
            ));
        }
        zeros += n as u64;
    }
    sink.warnings.push(format!(
        "{zeros} zero bytes follow the gzip stream (padding, as tape blocking or `dd conv=sync` leave; gzip -t accepts it)"
    ));
    Ok(())
}

/// A reader that counts what it hands out.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
