//! Deterministic SQL-Server-like volume contents.
//!
//! Database and log files made of 8 KiB pages: zero-filled (preallocated space),
//! row-like text, and random (compressed or encrypted data), mixed so that the
//! whole compresses to roughly 40% with gzip -6, like a real Orca volume. The
//! layout mimics `/var/opt/mssql`: `data/*.mdf|*.ldf`, `log/`, `secrets/`, owned
//! by uid 10001 (SQL Server's `mssql` user).

use std::io::{self, Write};
use std::process::{Command, Stdio};

const PAGE: usize = 8192;

/// Files (relative path, size) for a volume of about `total` bytes.
pub fn layout(total: u64) -> Vec<(String, u64)> {
    let pages = (total / PAGE as u64).max(16);
    let share = |num: u64, den: u64| ((pages * num / den).max(1)) * PAGE as u64;
    vec![
        ("data/Orca.mdf".into(), share(55, 100)),
        ("data/Orca_log.ldf".into(), share(15, 100)),
        ("data/master.mdf".into(), share(4, 100)),
        ("data/mastlog.ldf".into(), share(2, 100)),
        ("data/model.mdf".into(), share(2, 100)),
        ("data/modellog.ldf".into(), share(1, 100)),
        ("data/msdbdata.mdf".into(), share(8, 100)),
        ("data/msdblog.ldf".into(), share(2, 100)),
        ("data/tempdb.mdf".into(), share(8, 100)),
        ("data/templog.ldf".into(), share(3, 100)),
    ]
}

/// A small, fast, deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const STATUSES: &[&str] = &[
    "active",
    "pending",
    "shipped",
    "cancelled",
    "refunded",
    "on-hold",
];
const CITIES: &[&str] = &[
    "Oslo", "Lisbon", "Austin", "Osaka", "Nairobi", "Lima", "Perth", "Gdansk",
];

/// Fill one page: 40% zero, 33% row-like text, 27% random.
fn page(rng: &mut Rng, buf: &mut [u8; PAGE]) {
    let roll = rng.next_u64() % 100;
    if roll < 40 {
        buf.fill(0);
    } else if roll < 73 {
        // A page header, then rows until the page is full, then a slot array.
        let mut cur = io::Cursor::new(&mut buf[..]);
        let _ = write!(cur, "PAGE{:016x}", rng.next_u64());
        loop {
            let r = rng.next_u64();
            let row = format!(
                "|{:08}|Customer {:05}|cust{:05}@example.com|{}|{:>6}.{:02}|2025-{:02}-{:02}|{}\n",
                r % 100_000_000,
                (r >> 8) % 100_000,
                (r >> 12) % 100_000,
                CITIES[((r >> 20) % CITIES.len() as u64) as usize],
                (r >> 24) % 100_000,
                (r >> 40) % 100,
                1 + (r >> 48) % 12,
                1 + (r >> 52) % 28,
                STATUSES[((r >> 56) % STATUSES.len() as u64) as usize],
            );
            if cur.position() as usize + row.len() > PAGE - 256 {
                break;
            }
            let _ = cur.write_all(row.as_bytes());
        }
        let pos = cur.position() as usize;
        buf[pos..].fill(0);
        let mut slot = PAGE - 2;
        while slot > pos + 2 {
            let v = (rng.next_u64() % 8192) as u16;
            buf[slot..slot + 2].copy_from_slice(&v.to_le_bytes());
            slot = slot.saturating_sub(64);
        }
    } else {
        rng.fill(buf);
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(10001);
    h.set_gid(0);
    h.set_mtime(1_761_900_000);
    h.set_size(size);
    h
}

/// Append with the path stored exactly as given (the `tar` crate's own path
/// setters drop the leading `./` that `tar -C dir .` writes).
pub fn append_raw<W: Write, R: io::Read>(
    b: &mut tar::Builder<W>,
    mut h: tar::Header,
    path: &str,
    data: R,
) -> io::Result<()> {
    let name = &mut h.as_old_mut().name;
    assert!(path.len() < name.len(), "append_raw is for short paths");
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    b.append(&h, data)
}

struct Pages {
    rng: Rng,
    left: u64,
    buf: Box<[u8; PAGE]>,
    pos: usize,
}

impl io::Read for Pages {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.pos == PAGE {
            page(&mut self.rng, &mut self.buf);
            self.pos = 0;
        }
        let n = (PAGE - self.pos).min(out.len()).min(self.left as usize);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write the volume's contents as a tar rooted at `./` to `w`.
pub fn write_tar<W: Write>(w: W, total: u64, seed: u64) -> io::Result<W> {
    let mut b = tar::Builder::new(w);
    for (dir, mode) in [
        ("./", 0o755),
        ("./data/", 0o770),
        ("./log/", 0o770),
        ("./secrets/", 0o700),
    ] {
        let h = header(tar::EntryType::Directory, mode, 0);
        append_raw(&mut b, h, dir, io::empty())?;
    }
    let mut rng = Rng::new(seed);
    for (path, size) in layout(total) {
        let h = header(tar::EntryType::Regular, 0o660, size);
        let pages = Pages {
            rng: Rng::new(rng.next_u64()),
            left: size,
            buf: Box::new([0; PAGE]),
            pos: PAGE,
        };
        append_raw(&mut b, h, &format!("./{path}"), pages)?;
    }
    let errorlog =
        "2025-10-31 14:30:00.00 Server      Microsoft SQL Server 2022 (RTM-CU15)\n".repeat(200);
    let h = header(tar::EntryType::Regular, 0o640, errorlog.len() as u64);
    append_raw(&mut b, h, "./log/errorlog", errorlog.as_bytes())?;
    let mut key = [0u8; 44];
    rng.fill(&mut key);
    let h = header(tar::EntryType::Regular, 0o600, key.len() as u64);
    append_raw(&mut b, h, "./secrets/machine-key", &key[..])?;
    b.into_inner()
}

/// Stream generated contents of about `total` bytes into `volume` (through
/// `docker cp` into a created container: nothing touches the host disk).
pub fn fill_volume(volume: &str, total: u64, seed: u64) {
    let mount = format!("{volume}:/volume");
    let label = format!("{}=true", crate::TEST_LABEL);
    let id = crate::docker_ok(&[
        "create",
        "--label",
        &label,
        "-v",
        &mount,
        crate::empty_image(),
        "/never-started",
    ]);
    let id = id.trim().to_string();
    let target = format!("{id}:/volume");
    let mut child = Command::new("docker")
        .args(["cp", "-", &target])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run docker cp");
    let stdin = child.stdin.take().expect("piped stdin");
    let written = write_tar(io::BufWriter::with_capacity(1 << 20, stdin), total, seed)
        .and_then(|mut w| w.flush());
    let out = child.wait_with_output().expect("docker cp runs");
    let _ = crate::docker(&["rm", "-f", &id]);
    assert!(
        out.status.success() && written.is_ok(),
        "filling {volume} failed: {:?} {}",
        written.err(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_about_the_size_asked() {
        let a = write_tar(Vec::new(), 4 << 20, 7).unwrap();
        let b = write_tar(Vec::new(), 4 << 20, 7).unwrap();
        assert_eq!(a, b);
        let total: u64 = layout(4 << 20).iter().map(|(_, s)| s).sum();
        assert!(((4 << 20) * 95 / 100..=4 << 20).contains(&total), "{total}");
    }
}
