//! `orca-walk ROOT OUT`: runs inside a helper container (a static Linux
//! binary that orca-restore copies into it) and writes to OUT one line per
//! entry under ROOT, as orca-restore's comparison reads them:
//!
//! ```text
//! KIND MODE UID GID SIZE MTIME HASH LINK GROUP PATH
//! ```
//!
//! KIND is file, dir, symlink, fifo, char, block or other; MODE the
//! permission bits in octal; SIZE the content size of files (0 otherwise);
//! MTIME whole seconds; HASH the 128-bit XXH3 of file content in hex (0
//! otherwise); LINK the symlink target in hex (`-` for none); GROUP `dev:ino`
//! for a file with more than one link (`-` otherwise); PATH in hex, relative
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
mod walk {
    use std::fs::{self, File};
    use std::io::{self, BufWriter, Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use xxhash_rust::xxh3::Xxh3;

    pub fn run(root: &Path, out: &Path) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 16, File::create(out)?);
        let mut buf = vec![0u8; 1 << 20];
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
                let mut f = File::open(&full).map_err(|e| at(&full, e))?;
                let mut h = Xxh3::new();
                let mut size = 0u64;
                loop {
                    let n = match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(at(&full, e)),
                    };
                    h.update(&buf[..n]);
                    size += n as u64;
                }
                (size, h.digest128())
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
            let group = if ft.is_file() && meta.nlink() > 1 {
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
