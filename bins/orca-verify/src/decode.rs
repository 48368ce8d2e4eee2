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

use orca_shared::crypt::Identities;
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
    /// For an age file: how it is encrypted and whether it was opened.
    pub encryption: Option<Encryption>,
}

/// An age-encrypted archive, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// ASCII-armored (`age -a`).
    pub armored: bool,
    /// Encrypted with a passphrase (scrypt) rather than to recipients.
    pub passphrase: bool,
    /// What happened when opening it.
    pub state: Opening,
}

/// Whether an age file could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// Decrypted: every check ran on the content.
    Opened,
    /// Nothing given fits it (no identity, or a passphrase file without a
    /// passphrase): only the header was checked; why.
    NoIdentity(String),
    /// It could not be opened: the kind (decryption failed, or damaged) and why.
    Failed(orca_shared::exit::ErrorKind, String),
}

/// Read `path` through: hash it, decompress it, scan the tar with `visitor`.
/// I/O errors opening or reading the file are returned as `Err`; a damaged
/// archive is an `Ok` with `integrity: Err(why)`.
pub fn decode<V: Visitor>(path: &Path, visitor: V, ids: &Identities) -> io::Result<Decoded<V>> {
    decode_tee(path, visitor, None, ids)
}

/// Like [`decode`], also writing the decompressed tar stream to `tap` (as it
/// is verified, so a damaged archive stops the tap where the damage starts).
/// An age file is decrypted with `ids` on the way.
pub fn decode_tee<V: Visitor>(
    path: &Path,
    visitor: V,
    tap: Option<&mut dyn Write>,
    ids: &Identities,
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
        let (format, members, integrity, encryption) = decode_outer(&mut chunks, &mut sink, ids);
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
            encryption,
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

type Outcome = (Option<Format>, u64, Result<(), String>, Option<Encryption>);

/// An age file is opened and its plaintext decoded; anything else decoded.
fn decode_outer<V: Visitor>(
    chunks: &mut Chunks,
    sink: &mut Sink<'_, V>,
    ids: &Identities,
) -> Outcome {
    let Some(first) = chunks.next() else {
        return (None, 0, Err("the file is empty".into()), None);
    };
    let Some(armored) = orca_shared::crypt::detect(&first) else {
        let (f, m, r) = decode_stream(first, chunks, sink);
        return (f, m, r, None);
    };
    let raw = ChunkReader {
        chunks,
        current: first,
        pos: 0,
    };
    let reader: Box<dyn Read + Send + '_> = if armored {
        Box::new(age::armor::ArmoredReader::new(raw))
    } else {
        Box::new(raw)
    };
    let mut enc = Encryption {
        armored,
        passphrase: false,
        state: Opening::Opened,
    };
    let decryptor = match age::Decryptor::new(reader) {
        Ok(d) => d,
        Err(e) => {
            let why = format!("the age header is damaged ({e})");
            enc.state = Opening::Failed(
                orca_shared::exit::ErrorKind::VerificationFailed,
                why.clone(),
            );
            return (None, 0, Err(why), Some(enc));
        }
    };
    enc.passphrase = decryptor.is_scrypt();
    let plain = match ids.decrypt(decryptor) {
        Ok(r) => r,
        Err(orca_shared::crypt::OpenError::Nothing(why)) => {
            enc.state = Opening::NoIdentity(why.clone());
            return (
                None,
                0,
                Err(format!("the content was not checked: {why}")),
                Some(enc),
            );
        }
        Err(e) => {
            let (kind, why) = e.explain(ids, &[]);
            enc.state = Opening::Failed(kind, why.clone());
            return (None, 0, Err(why), Some(enc));
        }
    };
    // Decrypt on a thread of its own, in 1 MiB chunks, while the plaintext
    // is decompressed and scanned here.
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(6);
    for _ in 0..5 {
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    let (format, members, result, decrypted) = thread::scope(|scope| {
        let decrypting = scope.spawn(move || -> io::Result<()> {
            let mut plain = plain;
            loop {
                let mut buf = free_rx.recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                buf.resize(CHUNK, 0);
                let n = read_full(&mut plain, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.send(buf).is_err() {
                    return Ok(()); // the decoder stopped (damage it reports)
                }
            }
        });
        let mut inner = Chunks { rx, free: free_tx };
        let (format, members, result) = match inner.next() {
            Some(first) => decode_stream(first, &mut inner, sink),
            None => (None, 0, Err("the encrypted archive is empty".into())),
        };
        drop(inner);
        let decrypted = decrypting
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the decrypting thread panicked")));
        (format, members, result, decrypted)
    });
    // Damage to the ciphertext explains whatever the decoder saw after it.
    let result = match decrypted {
        Err(e) => Err(format!(
            "the encrypted payload is damaged or truncated ({e}): it does not decrypt to what was encrypted"
        )),
        Ok(()) => result,
    };
    (format, members, result, Some(enc))
}

fn decode_stream<V: Visitor>(
    first: Vec<u8>,
    chunks: &mut Chunks,
    sink: &mut Sink<'_, V>,
) -> (Option<Format>, u64, Result<(), String>) {
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

/// gzip: orca's members (they carry the `OB` field) decompressed on every
/// core with libdeflate, in order; streaming for anything else. A member must
/// use exactly the bytes its `OB` field claims. Zeros after the last member
/// (tape blocking, `dd conv=sync`) are accepted with a warning, as `gzip -t`
/// does; anything else is damage.
fn gzip<V: Visitor>(
    first: Vec<u8>,
    chunks: &mut Chunks,
    sink: &mut Sink<'_, V>,
) -> (u64, Result<(), String>) {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let mut pool = MemberPool::start(workers);
    let mut buf = first;
    let mut pos = 0usize;
    let mut offset = 0u64; // file offset of buf[0]
    let mut members = 0u64;
    let mut eof = false;
    // Fed members come back in order; a failure stops everything.
    let result = (|| -> Result<Option<(Vec<u8>, u64)>, String> {
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
                            return Err(format!("gzip member at byte {at} has a damaged header"));
                        }
                        let msize = msize as usize;
                        if avail >= msize {
                            let member = buf[pos..pos + msize].to_vec();
                            pool.submit(member, isize as usize, at, |out| sink.feed(&out))?;
                            members += 1;
                            pos += msize;
                            continue;
                        }
                        if eof {
                            return Err(format!(
                                "gzip stream is truncated (the member at byte {at} is cut short)"
                            ));
                        }
                    }
                    // Not one of ours: hand the rest to the streaming path.
                    None => return Ok(Some((buf.split_off(pos), offset + pos as u64))),
                }
            }
            if eof {
                return Ok(None);
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
    })();
    // Everything submitted reaches the sink before we go on.
    let drained = pool.finish(|out| sink.feed(&out));
    let rest = match (result, drained) {
        (Err(e), _) | (Ok(_), Err(e)) => return (members, Err(e)),
        (Ok(rest), Ok(())) => rest,
    };
    let Some((rest, at)) = rest else {
        return (members, Ok(()));
    };
    let starts_gzip = rest.starts_with(&[0x1f, 0x8b]);
    let reader = ChunkReader {
        chunks,
        current: rest,
        pos: 0,
    };
    if starts_gzip || members == 0 {
        // A gzip member from another writer: stream the rest.
        let (more, result) = gzip_stream(reader, at, sink);
        return (members + more, result);
    }
    (members, zeros_after(reader, at, sink))
}

/// A member to decompress: (sequence, bytes, uncompressed size, file offset).
type MemberJob = (u64, Vec<u8>, usize, u64);

/// Decompresses orca's gzip members on worker threads; results are handed
/// back in submission order.
struct MemberPool {
    jobs: Option<std::sync::mpsc::SyncSender<MemberJob>>,
    results: Receiver<(u64, Result<Vec<u8>, String>)>,
    handles: Vec<thread::JoinHandle<()>>,
    next_in: u64,
    next_out: u64,
    waiting: std::collections::BTreeMap<u64, Result<Vec<u8>, String>>,
    limit: u64,
}

impl MemberPool {
    fn start(workers: usize) -> MemberPool {
        let (job_tx, job_rx) = sync_channel::<MemberJob>(workers * 2);
        let (res_tx, res_rx) = sync_channel(workers * 4);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let handles = (0..workers)
            .map(|_| {
                let rx = std::sync::Arc::clone(&job_rx);
                let tx = res_tx.clone();
                thread::spawn(move || {
                    let mut d = crate::member::MemberDecoder::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, member, isize, at)) = job else { return };
                        let mut out = vec![0u8; isize];
                        let r = match d.gzip(&member, &mut out) {
                            Some((used, n)) if used == member.len() && n == isize => Ok(out),
                            Some((used, _)) if used != member.len() => Err(format!(
                                "gzip member at byte {at} is {used} bytes long, not the {} its header claims (bytes hidden after it)",
                                member.len()
                            )),
                            _ => Err(format!(
                                "gzip member at byte {at} is damaged (data, CRC-32 or length do not match)"
                            )),
                        };
                        if tx.send((seq, r)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        MemberPool {
            jobs: Some(job_tx),
            results: res_rx,
            handles,
            next_in: 0,
            next_out: 0,
            waiting: std::collections::BTreeMap::new(),
            limit: (workers * 3) as u64,
        }
    }

    /// Queue a member; deliver finished ones (in order) to `deliver` while
    /// too many are in flight.
    fn submit(
        &mut self,
        member: Vec<u8>,
        isize: usize,
        at: u64,
        mut deliver: impl FnMut(Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        while self.next_in - self.next_out >= self.limit {
            self.deliver_one(&mut deliver)?;
        }
        let seq = self.next_in;
        self.next_in += 1;
        match &self.jobs {
            Some(tx) => tx
                .send((seq, member, isize, at))
                .map_err(|_| "the gzip workers stopped".to_string()),
            None => Err("the gzip workers stopped".to_string()),
        }
    }

    fn deliver_one(
        &mut self,
        deliver: &mut impl FnMut(Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            if let Some(r) = self.waiting.remove(&self.next_out) {
                self.next_out += 1;
                return deliver(r?);
            }
            match self.results.recv() {
                Ok((seq, r)) => {
                    self.waiting.insert(seq, r);
                }
                Err(_) => return Err("the gzip workers stopped".to_string()),
            }
        }
    }

    /// Deliver everything still in flight, then stop the workers.
    fn finish(
        mut self,
        mut deliver: impl FnMut(Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut result = Ok(());
        while result.is_ok() && self.next_out < self.next_in {
            result = self.deliver_one(&mut deliver);
        }
        self.jobs = None;
        // Unblock workers waiting to hand in results nobody takes any more.
        while self.results.try_recv().is_ok() {}
        drop(self.results);
        for h in self.handles {
            let _ = h.join();
        }
        result
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
