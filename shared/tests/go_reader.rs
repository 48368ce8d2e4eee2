//! orca's tar reader against the reference: Go's `archive/tar` (what Docker
//! extracts with), on the real-world corpus in `../shared/corpus/tar/`, the
//! truncations of Go's `TestReadTruncation` and hand-made hostile archives.
//!
//! Go reads each input with a few lines around `archive/tar`
//! (`tests/support/go/tarlist.go`, built here with the machine's Go); orca's
//! `Scanner` must see the same entries (name, type, size, mode, owner, time,
//! link, device, logical content) and stop where Go stops. Where Go ends
//! cleanly without an end-of-archive marker, orca refuses by contract.
//!
//! Without Go or the corpus these tests say so and skip (CI has both).
//! Unix only: Go is a host program, and a Windows test binary under Wine
//! cannot start it. The reader is the same code on every target, and the
//! Windows build verifies and restores real exports end to end in `tests/windows`.

#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use orca_shared::tarscan::{Entry, Scanner, Visitor};
use orca_test_support::corpus::{corpus, truncation_vectors};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The Go reference reader, built once.
fn tarlist() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/go/tarlist.go");
            let out = std::env::temp_dir().join(format!("orca-tarlist-{}", std::process::id()));
            let built = Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(&src)
                .env("GOFLAGS", "-mod=mod")
                .env(
                    "GOCACHE",
                    std::env::temp_dir().join("orca-go-cache"),
                )
                .status();
            match built {
                Ok(s) if s.success() => Some(out),
                _ => {
                    if std::env::var("ORCA_REQUIRE_GO").is_ok_and(|v| v == "1") {
                        panic!("Go is required (ORCA_REQUIRE_GO=1) to build {}", src.display());
                    }
                    eprintln!("\n*** SKIPPED: no Go to build the reference reader (apt-get install golang-go) ***\n");
                    None
                }
            }
        })
        .as_deref()
}

/// What a reader made of a stream.
#[derive(Debug, PartialEq)]
struct Reading {
    entries: Vec<Value>,
    /// eof, or an error class.
    end: String,
}

fn go_read(tool: &Path, input: &[u8]) -> Reading {
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let mut entries = Vec::new();
    let mut end = String::from("none");
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(e) = v.get("end") {
            end = e.as_str().unwrap().to_string();
        } else if v["typeflag"] != b'g' as u64 {
            // Go returns pax global headers as entries; Docker skips them.
            let mut v = v;
            v["mode"] = Value::from(v["mode"].as_i64().unwrap() & 0o7777);
            // orca reports the size of the data section, none for types
            // whose data Go ignores (links, directories, devices, fifos).
            let flag = v["typeflag"].as_u64().unwrap() as u8;
            if matches!(flag, b'1'..=b'6') {
                v["size"] = Value::from(0);
            }
            entries.push(v);
        }
    }
    Reading { entries, end }
}

#[derive(Default)]
struct Collect {
    entries: Vec<Value>,
    hash: Option<Sha256>,
    size: u64,
}

impl Visitor for Collect {
    fn entry(&mut self, e: &Entry) -> Result<(), String> {
        self.finish_hash();
        self.entries.push(serde_json::json!({
            "name": hex(&e.path),
            "typeflag": e.typeflag,
            "size": e.size,
            "mode": e.mode,
            "uid": e.uid,
            "gid": e.gid,
            "mtime": e.mtime,
            "linkname": hex(&e.link),
            "devmajor": e.device.0,
            "devminor": e.device.1,
        }));
        self.hash = (e.size <= 64 << 20).then(Sha256::new);
        self.size = e.size;
        Ok(())
    }
    fn sparse_mismatch(&mut self, message: &str) -> Result<(), String> {
        // The reference reads (and so fails on) the data of entries up to
        // 64 MiB, as extraction does; it skips bigger ones, as Next does.
        if self.size <= 64 << 20 {
            Err(message.to_string())
        } else {
            Ok(())
        }
    }
    fn data(&mut self, chunk: &[u8]) {
        if let Some(h) = self.hash.as_mut() {
            h.update(chunk);
        }
    }
    fn hole(&mut self, len: u64) {
        if let Some(h) = self.hash.as_mut() {
            h.update(vec![0u8; len as usize]);
        }
    }
    fn end_entry(&mut self) {
        self.finish_hash();
    }
}

impl Collect {
    fn finish_hash(&mut self) {
        if let (Some(h), Some(last)) = (self.hash.take(), self.entries.last_mut()) {
            last["sha256"] = Value::from(hex(&h.finalize()));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// orca's reading, in chunks of `chunk` bytes.
fn orca_read(input: &[u8], chunk: usize) -> (Reading, Option<String>) {
    let mut s = Scanner::new(Collect::default());
    let mut error = None;
    for c in input.chunks(chunk.max(1)) {
        if let Err(e) = s.feed(c) {
            error = Some(e.message);
            break;
        }
    }
    let (result, mut visitor) = s.finish();
    visitor.finish_hash();
    let error = error.or_else(|| result.err().map(|e| e.message));
    let end = match &error {
        None => "eof".to_string(),
        Some(m) if is_contract(m) => "eof".to_string(), // Go's view of it
        Some(_) => "error".to_string(),
    };
    (
        Reading {
            entries: visitor.entries,
            end,
        },
        error,
    )
}

/// orca's own contract refusals, where Go stops cleanly.
fn is_contract(message: &str) -> bool {
    message.contains("end-of-archive marker") || message.contains("archive is empty")
}

/// Compare orca with Go on one input; a description of the difference.
fn differ(tool: &Path, input: &[u8]) -> Option<String> {
    let go = go_read(tool, input);
    // Entries Go read but failed to read the data of: Go lists them with
    // data_err; orca stops at the entry's data.
    let go_failed_in_data = go.end == "data";
    for chunk in [usize::MAX, 512, 7] {
        let (ours, error) = orca_read(input, chunk);
        let go_end = if go.end == "eof" { "eof" } else { "error" };
        if ours.end != go_end {
            return Some(format!(
                "Go ends with {}, orca with {:?} (chunk {chunk})",
                go.end, error
            ));
        }
        let mut want = go.entries.clone();
        let mut got = ours.entries.clone();
        if go_failed_in_data {
            // The entry whose data broke: compare its header only.
            if let Some(w) = want.last_mut() {
                w.as_object_mut().unwrap().remove("data_err");
                w.as_object_mut().unwrap().remove("sha256");
            }
            if let Some(g) = got.last_mut() {
                g.as_object_mut().unwrap().remove("sha256");
            }
        }
        if want != got {
            return Some(format!(
                "entries differ (chunk {chunk}):\n  Go:   {want:?}\n  orca: {got:?}"
            ));
        }
    }
    None
}

/// A corpus file as a plain tar (gzip and zstd decompressed).
fn plain(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    if name.ends_with(".gz") || name.ends_with(".tgz") {
        // As much as decompresses (one corpus file has junk after its gzip
        // stream: a gzip matter, not a tar one).
        let mut out = Vec::new();
        let mut d = flate2::read::MultiGzDecoder::new(&raw[..]);
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = d.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    } else if name.ends_with(".zst") {
        zstd::stream::decode_all(&raw[..]).unwrap()
    } else {
        raw
    }
}

#[test]
fn orca_reads_the_corpus_as_go_does() {
    let (Some(dir), Some(tool)) = (corpus(), tarlist()) else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(".tar") || n.ends_with(".gz") || n.ends_with(".tgz") || n.ends_with(".zst")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 140,
        "the corpus looks incomplete: {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        if let Some(why) = differ(tool, &plain(f)) {
            failures.push(format!(
                "{}: {why}",
                f.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files read differently:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn orca_stops_where_go_stops_on_every_truncation() {
    let (Some(dir), Some(tool)) = (corpus(), tarlist()) else {
        return;
    };
    for (input, _, _) in truncation_vectors(&dir) {
        if let Some(why) = differ(tool, &input) {
            panic!("truncated input of {} bytes: {why}", input.len());
        }
    }
}
