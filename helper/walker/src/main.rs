//! `orca-walk ROOT OUT`: runs inside a helper container (a static Linux
//! binary that orca-restore copies into it) and writes to OUT one line per
//! entry under ROOT, as orca-restore's comparison reads them:
//!
//! ```text
//! orca-walk 1 xxh3-128-zero-runs-4k
//! KIND MODE UID GID SIZE MTIME HASH LINK GROUP PATH
//! ...
//! end COUNT
//! ```
//!
//! The first line names the format and the hash scheme (orca-restore refuses
//! any other, so a stale build is never misread).
//!
//! KIND is file, dir, symlink, fifo, char, block or other; MODE the
//! permission bits in octal; SIZE the content size of files (0 otherwise);
//! MTIME whole seconds; HASH the content hash of files in hex
//! (shared/src/contenthash.rs, compiled in here too; holes are skipped with
//! SEEK_DATA/SEEK_HOLE, not read; 0 for other types); LINK the symlink
//! target in hex (`-` for none); GROUP `dev:ino` for anything but a directory
//! that has more than one link, as Docker's archives make those hard links
//! (`-` otherwise); PATH in hex, relative
//! to ROOT (`.` is ROOT itself, `2e`). The last line is `end COUNT`: a listing
//! without it was cut short. Sockets are left out, as Docker's archives leave
//! them out. Reading straight from the volume spares the engine from
//! streaming every byte out as a tar (its slowest path), which is what makes
//! the comparison cheap.

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() != 3 {
        eprintln!("usage: orca-walk ROOT OUT");
        std::process::exit(2);
    }
    if let Err(e) = walk::run(
        std::path::Path::new(&args[1]),
        std::path::Path::new(&args[2]),
    ) {
        eprintln!("orca-walk: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("orca-walk runs inside Linux containers only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
#[path = "../../../shared/src/contenthash.rs"]
#[allow(dead_code)]
mod contenthash;

#[cfg(target_os = "linux")]
mod walk {
    use std::fs::{self, File};
    use std::io::{self, BufWriter, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use crate::contenthash::ContentHasher;

    pub fn run(root: &Path, out: &Path) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 16, File::create(out)?);
        let mut buf = vec![0u8; 1 << 20];
        writeln!(w, "orca-walk 1 xxh3-128-zero-runs-4k")?;
        let mut count = 0u64;
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = stack.pop() {
            let full = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(std::ffi::OsStr::from_bytes(&rel))
            };
            let meta = fs::symlink_metadata(&full).map_err(|e| at(&full, e))?;
            let ft = meta.file_type();
            if ft.is_socket() {
                continue;
            }
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
            } else if ft.is_block_device() {
                "block"
            } else {
                "other"
            };
            let (size, hash) = if ft.is_file() {
                let f = File::open(&full).map_err(|e| at(&full, e))?;
                hash_file(&f, meta.len(), &mut buf).map_err(|e| at(&full, e))?
            } else {
                (0, 0)
            };
            let link = if ft.is_symlink() {
                hex(fs::read_link(&full)
                    .map_err(|e| at(&full, e))?
                    .as_os_str()
                    .as_bytes())
            } else {
                "-".to_string()
            };
            let group = if !ft.is_dir() && meta.nlink() > 1 {
                format!("{}:{}", meta.dev(), meta.ino())
            } else {
                "-".to_string()
            };
            let path = if rel.is_empty() { hex(b".") } else { hex(&rel) };
            writeln!(
                w,
                "{kind} {:o} {} {} {size} {} {hash:032x} {link} {group} {path}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.mtime(),
            )?;
            count += 1;
            if ft.is_dir() {
                let mut names: Vec<Vec<u8>> = fs::read_dir(&full)
                    .map_err(|e| at(&full, e))?
                    .map(|d| d.map(|d| d.file_name().as_bytes().to_vec()))
                    .collect::<io::Result<_>>()
                    .map_err(|e| at(&full, e))?;
                // Popped in name order.
                names.sort_unstable_by(|a, b| b.cmp(a));
                for name in names {
                    let mut child = rel.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&name);
                    stack.push(child);
                }
            }
        }
        writeln!(w, "end {count}")?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Size and content hash of `f` (`len` bytes when opened): its data
    /// extents read, its holes counted (SEEK_DATA/SEEK_HOLE; plain reading
    /// where the filesystem does not support them).
    fn hash_file(f: &File, len: u64, buf: &mut [u8]) -> io::Result<(u64, u128)> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let fd = f.as_raw_fd();
        let mut h = ContentHasher::new();
        let mut off = 0u64;
        let seek = |whence: libc::c_int, at: u64| -> io::Result<Option<u64>> {
            let Ok(at) = libc::off_t::try_from(at) else {
                return Ok(None);
            };
            // SAFETY: lseek on a descriptor we own; no memory is involved.
            #[allow(unsafe_code)]
            let r = unsafe { libc::lseek(fd, at, whence) };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::ENXIO) => Ok(None), // no data after `at`
                    _ => Err(e),
                };
            }
            Ok(Some(r as u64))
        };
        let sparse_aware = seek(libc::SEEK_DATA, 0).is_ok();
        while off < len {
            let (data, end) = if sparse_aware {
                match seek(libc::SEEK_DATA, off)? {
                    None => (len, len),
                    Some(d) => (
                        d.min(len),
                        seek(libc::SEEK_HOLE, d)?.unwrap_or(len).min(len),
                    ),
                }
            } else {
                (off, len)
            };
            h.zeros(data - off);
            off = data;
            while off < end {
                let want = ((end - off) as usize).min(buf.len());
                let n = match f.read_at(&mut buf[..want], off) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                h.update(&buf[..n]);
                off += n as u64;
            }
            if off < end {
                break; // shorter than it said: the size tells
            }
        }
        // Grown meanwhile: what is there now counts.
        loop {
            let n = match f.read_at(buf, off) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok((off, h.finish()))
    }

    fn at(path: &Path, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    }

    fn hex(b: &[u8]) -> String {
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        s
    }
}
