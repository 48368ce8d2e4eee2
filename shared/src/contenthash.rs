//! The content hash restore compares files by: XXH3-128 over the file's
//! logical content in 4 KiB blocks, where a run of all-zero blocks counts as
//! its length rather than its bytes. Equal content gives an equal hash however
//! it was read (a tar stream with or without sparse holes, a file on disk with
//! or without holes), and a hole costs the same whatever its length, so a tiny
//! archive that declares a sparse file of exabytes cannot keep a restore busy
//! hashing zeros. orca-walk (helper/walker) compiles this same file.

use xxhash_rust::xxh3::Xxh3;

/// The block size zero runs are counted in.
pub const BLOCK: usize = 4096;

/// Hashes one file's content; feed it bytes and zero runs in order.
pub struct ContentHasher {
    h: Xxh3,
    block: Box<[u8; BLOCK]>,
    fill: usize,
    zero_blocks: u64,
    total: u64,
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentHasher {
    /// A hasher for an empty file.
    pub fn new() -> ContentHasher {
        ContentHasher {
            h: Xxh3::new(),
            block: Box::new([0u8; BLOCK]),
            fill: 0,
            zero_blocks: 0,
            total: 0,
        }
    }

    /// The next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.fill > 0 {
            let take = (BLOCK - self.fill).min(data.len());
            self.block[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < BLOCK {
                return;
            }
            self.fill = 0;
            let block = std::mem::replace(&mut self.block, Box::new([0u8; BLOCK]));
            self.whole_block(&block[..]);
            self.block = block;
        }
        let mut blocks = data.chunks_exact(BLOCK);
        for b in &mut blocks {
            self.whole_block(b);
        }
        let rest = blocks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// The next `len` bytes of the file are zeros (a hole).
    pub fn zeros(&mut self, mut len: u64) {
        self.total = self.total.wrapping_add(len);
        if self.fill > 0 {
            let take = ((BLOCK - self.fill) as u64).min(len) as usize;
            self.block[self.fill..self.fill + take].fill(0);
            self.fill += take;
            len -= take as u64;
            if self.fill < BLOCK {
                return;
            }
            self.fill = 0;
            let block = std::mem::replace(&mut self.block, Box::new([0u8; BLOCK]));
            self.whole_block(&block[..]);
            self.block = block;
        }
        self.zero_blocks += len / BLOCK as u64;
        let rest = (len % BLOCK as u64) as usize;
        self.block[..rest].fill(0);
        self.fill = rest;
    }

    fn whole_block(&mut self, b: &[u8]) {
        if b.iter().all(|&x| x == 0) {
            self.zero_blocks += 1;
        } else {
            self.flush_zeros();
            self.h.update(&[1]);
            self.h.update(b);
        }
    }

    fn flush_zeros(&mut self) {
        if self.zero_blocks > 0 {
            self.h.update(&[0]);
            self.h.update(&self.zero_blocks.to_le_bytes());
            self.zero_blocks = 0;
        }
    }

    /// The hash.
    pub fn finish(mut self) -> u128 {
        self.flush_zeros();
        if self.fill > 0 {
            self.h.update(&[2]);
            self.h.update(&(self.fill as u64).to_le_bytes());
            self.h.update(&self.block[..self.fill]);
        }
        self.h.update(&self.total.to_le_bytes());
        self.h.digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(data: &[u8]) -> u128 {
        let mut h = ContentHasher::new();
        h.update(data);
        h.finish()
    }

    #[test]
    fn the_same_content_hashes_alike_however_it_is_fed() {
        let mut data = vec![0u8; 5 * BLOCK + 123];
        data[BLOCK + 7] = 1;
        data[4 * BLOCK + 100] = 9;
        let want = plain(&data);
        for step in [1, 3, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK] {
            let mut h = ContentHasher::new();
            for c in data.chunks(step) {
                h.update(c);
            }
            assert_eq!(h.finish(), want, "chunks of {step}");
        }
        // Zero stretches given as holes, at odd offsets.
        for (a, b) in [(0, BLOCK + 7), (BLOCK + 8, 4 * BLOCK + 100), (10, 20)] {
            let mut h = ContentHasher::new();
            h.update(&data[..a]);
            let zeros = data[a..b].iter().take_while(|&&x| x == 0).count();
            h.zeros(zeros as u64);
            h.update(&data[a + zeros..]);
            assert_eq!(h.finish(), want, "hole at {a}");
        }
    }

    #[test]
    fn lengths_and_contents_are_told_apart() {
        let hashes = [
            plain(b""),
            plain(&[0]),
            plain(&[0, 0]),
            plain(&[0; BLOCK]),
            plain(&[0; 2 * BLOCK]),
            plain(&[1]),
            plain(&[1; BLOCK]),
            plain(&[[1u8; BLOCK], [0u8; BLOCK]].concat()),
            plain(&[[0u8; BLOCK], [1u8; BLOCK]].concat()),
        ];
        for i in 0..hashes.len() {
            for j in i + 1..hashes.len() {
                assert_ne!(hashes[i], hashes[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn a_huge_hole_costs_nothing() {
        let mut h = ContentHasher::new();
        h.update(b"x");
        h.zeros(u64::MAX / 2);
        h.update(b"y");
        let _ = h.finish();
    }
}
