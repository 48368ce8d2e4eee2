//! The tar reader and restore's safety scan on arbitrary bytes: no panic, no
//! runaway memory, and the same verdict however the stream is chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_restore::prescan::Prescan;
use orca_shared::tarscan::{Scanner, Visitor};

#[derive(Default)]
struct Seen(Vec<(Vec<u8>, u64, i64)>, u64);

impl Visitor for Seen {
    fn entry(&mut self, e: &orca_shared::tarscan::Entry) -> Result<(), String> {
        self.0.push((e.path.clone(), e.size, e.mtime));
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) {
        self.1 += chunk.len() as u64;
    }
    fn hole(&mut self, len: u64) {
        self.1 = self.1.wrapping_add(len);
    }
}

fn read<V: Visitor>(data: &[u8], chunk: usize, v: V) -> (Result<u64, String>, V) {
    let mut s = Scanner::new(v);
    for c in data.chunks(chunk) {
        if let Err(e) = s.feed(c) {
            let (_, v) = s.finish();
            return (Err(e.message), v);
        }
    }
    let (r, v) = s.finish();
    (r.map(|s| s.tar_bytes).map_err(|e| e.message), v)
}

fuzz_target!(|data: &[u8]| {
    let chunk = 1 + data.first().copied().unwrap_or(0) as usize % 700;
    let (whole, a) = read(data, data.len().max(1), Seen::default());
    let (pieces, b) = read(data, chunk, Seen::default());
    assert_eq!(whole, pieces, "verdict depends on chunking");
    assert_eq!(a.0, b.0, "entries depend on chunking");
    let _ = read(data, chunk, Prescan::default());
});
