//! orca-verify's verdict on every counted case of the real-world tar corpus
//! (`../shared/corpus/tar/`, verdicts in its `SOURCES.md`): the 148 files,
//! gzip'd copies of the counted plain tars, and the 40 truncations of Go's
//! `TestReadTruncation`; each within a time limit and 64 MiB of memory.

#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orca_test_support::corpus::{Verdict, corpus, truncation_vectors, verdicts};

const MAX_RSS_KIB: i64 = 64 * 1024;
const TIME_LIMIT: Duration = Duration::from_secs(60);

struct Outcome {
    code: i32,
    rss_kib: i64,
    took: Duration,
    stderr: String,
}

/// Run orca-verify on `path`, measuring its peak memory (wait4 reaps it).
#[allow(unsafe_code, clippy::zombie_processes)]
fn verify(path: &Path) -> Outcome {
    let home = std::env::temp_dir().join("orca-corpus-home");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orca-verify"))
        .arg(path)
        .env("ORCA_HOME", &home)
        .env_remove("ORCA_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let start = Instant::now();
    let (code, rss_kib) = loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter; pid is our child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
            break (code, usage.ru_maxrss);
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            panic!("orca-verify hangs on {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Outcome {
        code,
        rss_kib,
        took: start.elapsed(),
        stderr: reader.join().unwrap(),
    }
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    // As `gzip -c -n`: no name, no time.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_counted_case_of_the_corpus_gets_its_verdict() {
    let Some(dir) = corpus() else { return };
    let expected = verdicts(&dir);
    assert_eq!(expected.len(), 148, "SOURCES.md lists 148 files");
    let tmp = tempfile::tempdir().unwrap();
    // (case, path, accept?)
    let mut cases: Vec<(String, std::path::PathBuf, bool)> = Vec::new();
    for (name, verdict) in &expected {
        let accept = match verdict {
            Verdict::Info => continue,
            Verdict::Accept => true,
            Verdict::Refuse => false,
        };
        let path = dir.join(name);
        cases.push((name.clone(), path.clone(), accept));
        if name.ends_with(".tar") {
            let gz = tmp.path().join(format!("{name}.gz"));
            std::fs::write(&gz, gzip(&std::fs::read(&path).unwrap())).unwrap();
            cases.push((format!("{name} (gzip'd)"), gz, accept));
        }
    }
    for (i, (input, _, go_end)) in truncation_vectors(&dir).into_iter().enumerate() {
        // Refused where Go fails; where Go ends cleanly, accepted only when
        // the stream ends in its end-of-archive marker followed by zeros.
        let ends_in_zeros =
            input.len() >= 1024 && input[input.len() - 1024..].iter().all(|b| *b == 0);
        let accept = go_end == "eof" && ends_in_zeros;
        let path = tmp.path().join(format!("truncation-{i}.tar"));
        std::fs::write(&path, &input).unwrap();
        cases.push((format!("TestReadTruncation #{i}"), path, accept));
    }
    assert_eq!(
        cases.len(),
        308,
        "142 files, 126 gzip'd copies, 40 truncations"
    );
    let mut wrong = Vec::new();
    let mut peak = 0;
    for (case, path, accept) in &cases {
        let out = verify(path);
        peak = peak.max(out.rss_kib);
        let got_accept = match out.code {
            0 => true,
            6 => false,
            other => {
                wrong.push(format!("{case}: exit {other}: {}", out.stderr.trim()));
                continue;
            }
        };
        if got_accept != *accept {
            let last = out.stderr.lines().last().unwrap_or("").to_string();
            wrong.push(format!(
                "{case}: expected {}, got {} ({last})",
                if *accept { "accept" } else { "refuse" },
                if got_accept { "accept" } else { "refuse" }
            ));
        }
        assert!(
            out.rss_kib <= MAX_RSS_KIB,
            "{case}: {} KiB of memory",
            out.rss_kib
        );
        assert!(out.took < TIME_LIMIT, "{case}: took {:?}", out.took);
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    eprintln!(
        "corpus: {} cases right, peak memory {} KiB",
        cases.len(),
        peak
    );
}
