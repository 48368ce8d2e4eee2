//! The real-world tar corpus in `../shared/corpus/tar/` (next to the
//! repository; CI has it there): where it is, what `SOURCES.md` expects of
//! each file, and Go's `TestReadTruncation` vectors cut from it. Never copied
//! into the repository.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The corpus directory, or `None` (with a notice) where it is absent.
pub fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/tar");
    if dir.join("SOURCES.md").exists() {
        Some(dir)
    } else {
        if std::env::var("ORCA_REQUIRE_CORPUS").is_ok_and(|v| v == "1") {
            panic!(
                "the tar corpus is required (ORCA_REQUIRE_CORPUS=1) at {}",
                dir.display()
            );
        }
        eprintln!(
            "\n*** SKIPPED: the tar corpus is not at {} (CI has it there) ***\n",
            dir.display()
        );
        None
    }
}

/// What `SOURCES.md` says orca-verify must do with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Verified.
    Accept,
    /// Refused (exit 6).
    Refuse,
    /// Experts disagree: not counted.
    Info,
}

/// Every file of the corpus with its verdict, from `SOURCES.md`; panics when
/// a file is missing or differs from `SHA256SUMS`.
pub fn verdicts(dir: &Path) -> Vec<(String, Verdict)> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("SHA256SUMS");
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hex, name) = line.split_once("  ").expect("sha256sum lines");
        let bytes = std::fs::read(dir.join(name.trim()))
            .unwrap_or_else(|_| panic!("the corpus misses {name}: refusing to run on it"));
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            got, hex,
            "{name} differs from SHA256SUMS: refusing to run on a changed corpus"
        );
    }
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).expect("SOURCES.md");
    let mut out = Vec::new();
    for line in sources.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((name, _)) = rest.split_once('`') else {
            continue;
        };
        let cells: Vec<&str> = line.split('|').collect();
        let last = cells
            .iter()
            .rev()
            .find(|c| !c.trim().is_empty())
            .copied()
            .unwrap_or("");
        let verdict = if last.contains("**accept**") {
            Verdict::Accept
        } else if last.contains("**refuse**") {
            Verdict::Refuse
        } else if last.contains("**info**") {
            Verdict::Info
        } else {
            continue;
        };
        out.push((name.to_string(), verdict));
    }
    out
}

/// Go's `TestReadTruncation` vectors: (input, headers Go reads, how Go ends:
/// `eof`, `unexpected_eof` or `header`).
/// Go's `TestReadTruncation` vectors: (input, headers Go reads, Go's end).
pub fn truncation_vectors(dir: &Path) -> Vec<(Vec<u8>, usize, &'static str)> {
    let read = |n: &str| {
        std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("the corpus misses {n}: {e}"))
    };
    let data1 = read("go-gnu.tar");
    let mut data2 = read("go-ustar-file-reg.tar");
    data2.extend_from_slice(&[0u8; 10 * 512]);
    let pax = read("go-pax-path-hdr.tar");
    let sparse = read("go-sparse-formats.tar");
    let trash: Vec<u8> = b"garbage ".repeat(64);
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    vec![
        (vec![], 0, "eof"),
        (data1[..511].to_vec(), 0, "unexpected_eof"),
        (data1[..512].to_vec(), 1, "unexpected_eof"),
        (data1[..1024].to_vec(), 1, "eof"),
        (data1[..1536].to_vec(), 2, "unexpected_eof"),
        (data1[..2048].to_vec(), 2, "eof"),
        (data1.clone(), 2, "eof"),
        (cat(&data1[..2048], &data2[..1536]), 3, "eof"),
        (data2[..511].to_vec(), 0, "unexpected_eof"),
        (data2[..512].to_vec(), 1, "unexpected_eof"),
        (data2[..1195].to_vec(), 1, "unexpected_eof"),
        (data2[..1196].to_vec(), 1, "eof"),
        (data2[..1200].to_vec(), 1, "eof"),
        (data2[..1535].to_vec(), 1, "eof"),
        (data2[..1536].to_vec(), 1, "eof"),
        (cat(&data2[..1536], &trash[..1]), 1, "unexpected_eof"),
        (cat(&data2[..1536], &trash[..511]), 1, "unexpected_eof"),
        (cat(&data2[..1536], &trash), 1, "header"),
        (data2[..2048].to_vec(), 1, "eof"),
        (cat(&data2[..2048], &trash[..1]), 1, "unexpected_eof"),
        (cat(&data2[..2048], &trash[..511]), 1, "unexpected_eof"),
        (cat(&data2[..2048], &trash), 1, "header"),
        (data2[..2560].to_vec(), 1, "eof"),
        (cat(&data2[..2560], &trash[..1]), 1, "eof"),
        (cat(&data2[..2560], &trash[..511]), 1, "eof"),
        (cat(&data2[..2560], &trash), 1, "eof"),
        (data2[..3072].to_vec(), 1, "eof"),
        (pax.clone(), 0, "eof"),
        (cat(&pax, &trash[..1]), 0, "unexpected_eof"),
        (cat(&pax, &trash[..511]), 0, "unexpected_eof"),
        (sparse[..511].to_vec(), 0, "unexpected_eof"),
        (sparse[..512].to_vec(), 0, "unexpected_eof"),
        (sparse[..3584].to_vec(), 1, "eof"),
        (sparse[..9200].to_vec(), 1, "eof"),
        (sparse[..9216].to_vec(), 1, "eof"),
        (sparse[..9728].to_vec(), 2, "unexpected_eof"),
        (sparse[..10240].to_vec(), 2, "eof"),
        (sparse[..11264].to_vec(), 2, "unexpected_eof"),
        (sparse.clone(), 5, "eof"),
        (cat(&sparse, &trash), 5, "eof"),
    ]
}
