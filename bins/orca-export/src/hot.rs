//! The export's side of a hot copy: the spool that keeps a freeze short, and
//! the archive's last touches for PostgreSQL.
//!
//! While the database holds its writes, the volume's tar stream goes to a
//! spool file at disk speed (no compression, which is what costs time); it is
//! compressed into the archive after the thaw. An encrypted backup spools
//! through age to a one-time key that lives only in this process, so nothing
//! of the volume reaches the disk in the clear. The spool is a temporary file
//! beside the archive, named as one being written (`.incomplete`), locked,
//! and removed when the export ends, whatever the outcome.
//!
//! For PostgreSQL, the spooled stream is rewritten on its way into the
//! archive ([`rewrite`]): the WAL files read while backup mode ran (torn
//! copies of files being written) and `postmaster.pid` are left out, and the
//! `backup_label`, `tablespace_map` and the WAL segments from start to stop,
//! read after the stop, are added, as `pg_basebackup -X fetch` would.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::Context;
use orca_shared::engine::{ArchiveReader, Mode};
use orca_shared::fsutil::AtomicFile;
use orca_shared::{docker, fail};

use crate::sink::ThreadedWriter;

const BLOCK: usize = 512;

/// Where the stream waits between the freeze and the compression.
pub struct Spool {
    file: AtomicFile,
    key: Option<age::x25519::Identity>,
}

/// The spool's writer: plain, or age to the one-time key.
pub enum SpoolSink {
    /// Unencrypted backups.
    Plain(BufWriter<File>),
    /// Encrypted backups.
    Age(age::stream::StreamWriter<BufWriter<File>>),
}

impl Write for SpoolSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SpoolSink::Plain(w) => w.write(buf),
            SpoolSink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            SpoolSink::Plain(w) => w.flush(),
            SpoolSink::Age(w) => w.flush(),
        }
    }
}

impl SpoolSink {
    /// Write the end (age's last chunk) and flush.
    pub fn finish(self) -> io::Result<()> {
        match self {
            SpoolSink::Plain(mut w) => w.flush(),
            SpoolSink::Age(w) => w.finish()?.flush(),
        }
    }
}

impl Spool {
    /// A spool beside `archive`; `encrypted`: through age to a one-time key.
    pub fn create(archive: &Path, encrypted: bool) -> anyhow::Result<Spool> {
        Ok(Spool {
            file: AtomicFile::create(archive)?,
            key: encrypted.then(age::x25519::Identity::generate),
        })
    }

    /// Its path, for messages.
    pub fn path(&self) -> &Path {
        self.file.temp_path()
    }

    /// A writer on its own thread.
    pub fn writer(&mut self) -> anyhow::Result<ThreadedWriter<SpoolSink>> {
        let path = self.file.temp_path().to_path_buf();
        let f = self
            .file
            .file()
            .try_clone()
            .with_context(|| format!("cannot write {}", path.display()))?;
        let buffered = BufWriter::with_capacity(1 << 20, f);
        let sink = match &self.key {
            Some(id) => {
                let public = id.to_public();
                let enc = age::Encryptor::with_recipients(std::iter::once(
                    &public as &dyn age::Recipient,
                ))
                .map_err(|e| anyhow::anyhow!("cannot encrypt the spool: {e}"))?;
                SpoolSink::Age(enc.wrap_output(buffered)?)
            }
            None => SpoolSink::Plain(buffered),
        };
        Ok(ThreadedWriter::new(sink)?)
    }

    /// Read it back from the start.
    pub fn reader(&mut self) -> anyhow::Result<Box<dyn Read>> {
        let path = self.file.temp_path().to_path_buf();
        let mut f = self
            .file
            .file()
            .try_clone()
            .with_context(|| format!("cannot read {}", path.display()))?;
        f.rewind()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let r = BufReader::with_capacity(1 << 20, f);
        Ok(match &self.key {
            Some(id) => {
                let d = age::Decryptor::new_buffered(r)
                    .map_err(|e| anyhow::anyhow!("cannot read the spool back: {e}"))?;
                Box::new(
                    d.decrypt(std::iter::once(id as &dyn age::Identity))
                        .map_err(|e| anyhow::anyhow!("cannot read the spool back: {e}"))?,
                )
            }
            None => Box::new(r),
        })
    }
}

/// A numeric field of a tar header (`range` of its bytes); 0 when unreadable.
pub fn header_number(header: &[u8; BLOCK], range: std::ops::Range<usize>) -> u64 {
    number(&header[range]).unwrap_or(0)
}

/// A tar header's numeric field: octal, or GNU base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(t, 8).ok()
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The pax records `path` and `size` of an extended header's data.
fn pax_fields(data: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            let (k, v) = (&record[..eq], &record[eq + 1..]);
            match k {
                b"path" => path = Some(String::from_utf8_lossy(v).into_owned()),
                b"size" => size = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()),
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    (path, size)
}

/// One entry of a tar stream, as [`rewrite`] sees it.
pub struct Seen<'a> {
    /// Its path without the leading `./`.
    pub path: &'a str,
    /// Its type flag.
    pub typeflag: u8,
    /// Its header block.
    pub header: &'a [u8; BLOCK],
}

fn read_block(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<()> {
    r.read_exact(buf)
        .context("the spooled stream ended early (is the disk full?)")
}

fn copy_exact(
    r: &mut impl Read,
    mut len: u64,
    out: &mut impl FnMut(&[u8]) -> anyhow::Result<()>,
    keep: bool,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while len > 0 {
        let n = len.min(buf.len() as u64) as usize;
        read_block(r, &mut buf[..n])?;
        if keep {
            out(&buf[..n])?;
        }
        len -= n as u64;
    }
    Ok(())
}

/// Copy the tar stream `r` to `out` without the entries `keep` refuses (and
/// their extended headers), up to its end-of-archive marker, which is not
/// written: the caller adds entries and the marker.
pub fn rewrite(
    mut r: impl Read,
    mut keep: impl FnMut(&Seen) -> bool,
    mut out: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut header = [0u8; BLOCK];
    let mut pending: Vec<u8> = Vec::new();
    let mut long_name: Option<String> = None;
    let mut pax_path: Option<String> = None;
    let mut pax_size: Option<u64> = None;
    loop {
        read_block(&mut r, &mut header)?;
        if header.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let typeflag = header[156];
        let Some(size) = number(&header[124..136]) else {
            fail!(
                Failure,
                "the volume's stream has a tar header orca cannot read"
            );
        };
        match typeflag {
            b'x' | b'L' | b'K' => {
                if size > 1 << 20 {
                    fail!(Failure, "the volume's stream has an oversized tar header");
                }
                let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
                let mut data = vec![0u8; padded as usize];
                read_block(&mut r, &mut data)?;
                match typeflag {
                    b'L' => long_name = Some(c_string(&data[..size as usize])),
                    b'x' => {
                        let (p, s) = pax_fields(&data[..size as usize]);
                        pax_path = p.or(pax_path);
                        pax_size = s.or(pax_size);
                    }
                    _ => {}
                }
                pending.extend_from_slice(&header);
                pending.extend_from_slice(&data);
                continue;
            }
            b'g' => {
                let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
                out(&header)?;
                copy_exact(&mut r, padded, &mut out, true)?;
                continue;
            }
            b'S' => fail!(
                Failure,
                "the volume's stream has an old GNU sparse entry, which a hot copy cannot rewrite"
            ),
            _ => {}
        }
        let size = pax_size.unwrap_or(size);
        let ustar_name = {
            let name = c_string(&header[..100]);
            let prefix = if &header[257..262] == b"ustar" {
                c_string(&header[345..500])
            } else {
                String::new()
            };
            if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            }
        };
        let full = pax_path.take().or(long_name.take()).unwrap_or(ustar_name);
        let path = full
            .strip_prefix("./")
            .unwrap_or(&full)
            .trim_end_matches('/');
        // Links, directories, devices: no data whatever the size says.
        let data = match typeflag {
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => 0,
            _ => size,
        };
        let padded = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        let kept = keep(&Seen {
            path,
            typeflag,
            header: &header,
        });
        if kept {
            out(&pending)?;
            out(&header)?;
        }
        copy_exact(&mut r, padded, &mut out, kept)?;
        pending.clear();
        pax_size = None;
    }
}

/// A tar entry for a regular file (GNU long names where needed), without
/// the end-of-archive marker.
pub fn file_entry(
    path: &str,
    contents: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(contents.len() as u64);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    let name = format!("./{path}");
    if name.len() < 100 {
        // As Docker names them: rooted at `./`.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        let padded = contents.len().div_ceil(BLOCK) * BLOCK;
        let mut v = Vec::with_capacity(BLOCK + padded);
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(contents);
        v.resize(BLOCK + padded, 0);
        return Ok(v);
    }
    let mut b = tar::Builder::new(Vec::with_capacity(contents.len() + 2048));
    b.mode(tar::HeaderMode::Complete);
    b.append_data(&mut h, &name, contents)
        .with_context(|| format!("cannot add {path} to the archive"))?;
    let mut v = b.into_inner().context("cannot finish a tar entry")?;
    // into_inner wrote the end-of-archive marker: not ours to write yet.
    v.truncate(v.len() - 2 * BLOCK);
    Ok(v)
}

/// A file of the volume, read through the helper container after the
/// database's stop (a WAL segment): its contents and header fields.
pub struct Fetched {
    /// Contents.
    pub contents: Vec<u8>,
    /// Mode bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time.
    pub mtime: u64,
}

/// Read `path` (relative to the volume's root) through `helper`.
pub fn fetch(helper: &docker::HelperContainer, path: &str) -> anyhow::Result<Fetched> {
    let full = format!("{}/{path}", docker::MOUNT_PATH);
    let mut source = ArchiveReader::open(helper.id(), &full, Mode::Interruptible)
        .with_context(|| format!("cannot read {path} from the volume"))?;
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = source
        .next_chunk()
        .with_context(|| format!("cannot read {path} from the volume"))?
    {
        tar_bytes.extend_from_slice(&chunk);
    }
    match first_file(&tar_bytes) {
        Some(f) => Ok(f),
        None => fail!(
            Failure,
            "{path} is not on the volume any more (PostgreSQL recycled it before orca could read it): try again"
        ),
    }
}

/// The first regular file of an in-memory tar.
fn first_file(tar_bytes: &[u8]) -> Option<Fetched> {
    let mut off = 0usize;
    let mut pax_size: Option<u64> = None;
    while off + BLOCK <= tar_bytes.len() {
        let h = &tar_bytes[off..off + BLOCK];
        if h.iter().all(|b| *b == 0) {
            return None;
        }
        let size = number(&h[124..136])?;
        let padded = size.div_ceil(BLOCK as u64) as usize * BLOCK;
        let body = off + BLOCK;
        match h[156] {
            b'x' => {
                let end = body.checked_add(size as usize)?;
                pax_size = pax_fields(tar_bytes.get(body..end)?).1.or(pax_size);
            }
            b'0' | 0 => {
                let size = pax_size.unwrap_or(size) as usize;
                return Some(Fetched {
                    contents: tar_bytes.get(body..body.checked_add(size)?)?.to_vec(),
                    mode: number(&h[100..108]).unwrap_or(0o600) as u32,
                    uid: number(&h[108..116]).unwrap_or(0),
                    gid: number(&h[116..124]).unwrap_or(0),
                    mtime: number(&h[136..148]).unwrap_or(0),
                });
            }
            _ => pax_size = None,
        }
        off = body + padded;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn rewrite_drops_entries_and_their_long_names() {
        let long = format!("./pg_wal/{}", "x".repeat(150));
        let src = archive(&[
            ("./PG_VERSION", b"15\n"),
            (&long, b"torn"),
            ("./pg_wal/000000010000000000000001", &[7u8; 1000]),
            ("./base/1/1259", &[1u8; 600]),
        ]);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        rewrite(
            &src[..],
            |s| {
                seen.push(s.path.to_string());
                !s.path.starts_with("pg_wal/")
            },
            |b| {
                out.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen[0], "PG_VERSION");
        assert_eq!(seen[1], long.trim_start_matches("./"));
        out.extend(file_entry("backup_label", b"START WAL", 0o600, 5, 6, 7).unwrap());
        out.extend_from_slice(&[0u8; 1024]);
        let mut a = tar::Archive::new(&out[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect();
        assert_eq!(names, vec!["PG_VERSION", "base/1/1259", "./backup_label"]);
        let mut scan = orca_shared::tarscan::Scanner::new(());
        scan.feed(&out).unwrap();
        assert_eq!(scan.finish().0.unwrap().entries, 3);
    }

    #[test]
    fn the_first_file_of_a_fetched_archive_is_found() {
        let src = archive(&[("000000010000000000000001", &[9u8; 700])]);
        let f = first_file(&src).unwrap();
        assert_eq!(f.contents, vec![9u8; 700]);
        assert_eq!(f.mode, 0o600);
        assert!(first_file(&[0u8; 1024]).is_none());
    }

    #[test]
    fn numbers_read_octal_and_base256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   12 \0"), Some(0o12));
        assert_eq!(number(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"\0\0"), Some(0));
        assert_eq!(number(b"9"), None);
    }

    #[test]
    fn spools_round_trip_encrypted_without_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("orca-db-x.tar.gz.age");
        let mut s = Spool::create(&target, true).unwrap();
        let mut w = s.writer().unwrap();
        let secret = b"SECRET-PAGE-CONTENT".repeat(1000);
        w.write_all(&secret).unwrap();
        w.finish().unwrap().finish().unwrap();
        let on_disk = std::fs::read(s.path()).unwrap();
        assert!(
            !on_disk.windows(19).any(|w| w == b"SECRET-PAGE-CONTENT"),
            "the spool holds the clear text"
        );
        let mut back = Vec::new();
        s.reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, secret);
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists(), "the spool outlived the export");
    }
}
