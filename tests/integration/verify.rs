//! orca-verify: a corruption matrix on real archives.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::need_docker;

/// A small SQL-Server-like volume and its archives in every compression, plus
/// one made by today's method (busybox `tar -czf`).
struct Fixture {
    env: Env,
    _vol: TestVolume,
    gzip: PathBuf,
    zstd: PathBuf,
    plain: PathBuf,
    seed: PathBuf,
}

fn fixture() -> Fixture {
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 1}"#);
    let vol = TestVolume::named(&unique("orca-test-verify"));
    vol.fill_sql_like(6 << 20, 11);
    let b = env.backups();
    let mut made = Vec::new();
    // One name is one backup: each compression gets its own.
    for name in [
        "orca-db-v-gz.tar.gz",
        "orca-db-v-zst.tar.zst",
        "orca-db-v-none.tar",
    ] {
        let out = b.join(name);
        env.run(
            "orca-export",
            &["--volume", &vol.name, "--output", out.to_str().unwrap()],
        )
        .ok();
        made.push(out);
    }
    let seed = b.join("orca-db-seed.tar.gz");
    let out_gz = todays_archive(&vol.name);
    std::fs::write(&seed, &out_gz).unwrap();
    Fixture {
        env,
        _vol: vol,
        gzip: made[0].clone(),
        zstd: made[1].clone(),
        plain: made[2].clone(),
        seed,
    }
}

/// Copy `src` (and its .sha256 when `with_sidecar`) to a new name, apply `damage`.
fn damaged(
    src: &Path,
    tag: &str,
    with_sidecar: bool,
    damage: impl FnOnce(&mut Vec<u8>),
) -> PathBuf {
    let name = src.file_name().unwrap().to_str().unwrap();
    let dst = src.with_file_name(format!("{tag}-{name}"));
    let mut bytes = std::fs::read(src).unwrap();
    damage(&mut bytes);
    std::fs::write(&dst, &bytes).unwrap();
    let sidecar = PathBuf::from(format!("{}.sha256", src.display()));
    if with_sidecar && sidecar.exists() {
        let line = std::fs::read_to_string(&sidecar).unwrap();
        let hash = line.split_whitespace().next().unwrap();
        std::fs::write(
            format!("{}.sha256", dst.display()),
            format!("{hash}  {tag}-{name}\n"),
        )
        .unwrap();
    }
    dst
}

fn assert_fails(env: &Env, archive: &Path, check: &str) {
    let run = env.run("orca-verify", &[archive.to_str().unwrap()]);
    let msg = run.message();
    let rec = run.fails_with(6);
    assert_eq!(rec["error"]["code"], "verification_failed");
    assert_eq!(rec["verified"], false, "{}", archive.display());
    assert!(msg.contains(archive.to_str().unwrap()), "{msg}");
    assert!(
        msg.contains(&format!("{check} check")),
        "{} should fail the {check} check: {msg}",
        archive.display()
    );
    let failed: Vec<&str> = rec["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&check), "{failed:?}");
}

#[test]
fn valid_archives_pass_in_every_format_and_from_todays_method() {
    need_docker!();
    let f = fixture();
    for (archive, format) in [
        (&f.gzip, "gzip"),
        (&f.zstd, "zstd"),
        (&f.plain, "none"),
        (&f.seed, "gzip"),
    ] {
        let rec = f.env.run("orca-verify", &[archive.to_str().unwrap()]).ok();
        assert_eq!(rec["verified"], true);
        assert_eq!(rec["format"], format);
        assert_eq!(rec["database_files"], 10, "{}", archive.display());
        assert!(rec["entries"].as_u64().unwrap() >= 16);
        let checks: Vec<&str> = rec["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            checks,
            [
                "exists",
                "size",
                "integrity",
                "checksum",
                "content",
                "manifest"
            ]
        );
    }
    // Our archives are checked against their .sha256; today's have none: reported, not failed.
    let rec = f.env.run("orca-verify", &[f.gzip.to_str().unwrap()]).ok();
    assert_eq!(rec["checks"][3]["status"], "pass");
    let rec = f.env.run("orca-verify", &[f.seed.to_str().unwrap()]).ok();
    assert_eq!(rec["checks"][3]["status"], "skipped");
    // The tar stream of today's method and ours hold the same bytes of content.
    let ours = f.env.run("orca-verify", &[f.plain.to_str().unwrap()]).ok();
    assert_eq!(ours["entries"], rec["entries"]);
}

#[test]
fn the_record_from_export_is_checked() {
    need_docker!();
    let f = fixture();
    let record = format!(
        r#"{{"backup_path":"{}","sha256":"{}","success":true}}"#,
        f.gzip.display(),
        "0".repeat(64)
    );
    let run = f.env.run_with("orca-verify", &[], &record);
    let msg = run.message();
    run.fails_with(6);
    assert!(
        msg.contains("checksum check") && msg.contains("the record says"),
        "{msg}"
    );
    // Through a real pipe from orca-export.
    let vol = TestVolume::named(&unique("orca-test-vpipe"));
    vol.fill_sql_like(2 << 20, 5);
    let rec = f
        .env
        .pipeline(&format!(
            "orca-export --volume {} --output {}/orca-db-p.tar.gz | orca-verify",
            vol.name,
            f.env.backups().display()
        ))
        .ok();
    assert_eq!(rec["verified"], true);
    assert!(
        rec["checks"][3]["detail"]
            .as_str()
            .unwrap()
            .contains("the record and the .sha256 file")
    );
}

#[test]
fn corruption_matrix_gzip() {
    need_docker!();
    let f = fixture();
    let len = std::fs::metadata(&f.gzip).unwrap().len() as usize;
    // Truncations: inside the gzip header, the middle, the last 8 bytes, one byte.
    for (tag, cut) in [
        ("t5", 5),
        ("tmid", len / 2),
        ("t8", len - 8),
        ("t1", len - 1),
    ] {
        for sidecar in [true, false] {
            let a = damaged(&f.gzip, &format!("{tag}{sidecar}"), sidecar, |b| {
                b.truncate(cut)
            });
            assert_fails(&f.env, &a, "integrity");
            if sidecar {
                assert_fails(&f.env, &a, "checksum");
            }
        }
    }
    // Flipped bytes in compressed data, a member header's sizes, the trailer.
    for (tag, at) in [
        ("f100", 100),
        ("fmid", len / 2),
        ("f17", 17),
        ("flast", len - 3),
        ("f3q", len * 3 / 4),
    ] {
        let a = damaged(&f.gzip, tag, false, |b| b[at] ^= 0x5a);
        assert_fails(&f.env, &a, "integrity");
    }
    // A flip the gzip format cannot see (the header's mtime) is caught by the checksum.
    let a = damaged(&f.gzip, "fmtime", true, |b| b[5] ^= 0x01);
    assert_fails(&f.env, &a, "checksum");
    // Junk appended.
    let a = damaged(&f.gzip, "junk", false, |b| {
        b.extend_from_slice(b"this is not gzip")
    });
    assert_fails(&f.env, &a, "integrity");
    // A wrong .sha256.
    let a = damaged(&f.gzip, "wrongsum", false, |_| {});
    std::fs::write(
        format!("{}.sha256", a.display()),
        format!("{}  x\n", "ab".repeat(32)),
    )
    .unwrap();
    assert_fails(&f.env, &a, "checksum");
}

#[test]
fn corruption_matrix_todays_archives_zstd_and_tar() {
    need_docker!();
    let f = fixture();
    for src in [&f.seed, &f.zstd, &f.plain] {
        let len = std::fs::metadata(src).unwrap().len() as usize;
        for (tag, cut) in [("t5", 5), ("tmid", len / 2), ("t8", len - 8)] {
            let a = damaged(src, tag, false, |b| b.truncate(cut));
            assert_fails(&f.env, &a, "integrity");
        }
        for (tag, at) in [("f600", 600), ("fmid", len / 2)] {
            let a = damaged(src, tag, false, |b| b[at] ^= 0x5a);
            // A flip inside a stored file's data of a plain tar is invisible to
            // integrity; the checksum catches it. Everything else breaks integrity.
            let check = if *src == f.plain && tag == "fmid" {
                "checksum"
            } else {
                "integrity"
            };
            if check == "checksum" {
                let a = damaged(src, &format!("{tag}s"), true, |b| b[at] ^= 0x5a);
                assert_fails(&f.env, &a, "checksum");
            } else {
                assert_fails(&f.env, &a, check);
            }
        }
        let a = damaged(src, "junk", false, |b| {
            b.extend_from_slice(b"trailing junk!")
        });
        assert_fails(&f.env, &a, "integrity");
    }
}

#[test]
fn things_that_are_not_archives() {
    let env = Env::new();
    std::fs::create_dir_all(env.backups()).unwrap();
    let b = env.backups();
    let empty = b.join("orca-db-empty.tar.gz");
    std::fs::write(&empty, b"").unwrap();
    assert_fails(&env, &empty, "integrity");
    let text = b.join("orca-db-text.tar.gz");
    std::fs::write(&text, "this is a text file, not an archive\n".repeat(50)).unwrap();
    assert_fails(&env, &text, "integrity");
    let not_tar = b.join("orca-db-notar.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&"plain text, gzip'd\n".repeat(1000).into_bytes())
        .unwrap();
    std::fs::write(&not_tar, gz.finish().unwrap()).unwrap();
    assert_fails(&env, &not_tar, "integrity");
    // A missing archive is "no such backup" (exit 19), naming the closest.
    let missing = b.join("orca-db-missing.tar.gz");
    env.run("orca-verify", &[missing.to_str().unwrap()])
        .fails_saying(19, "no such backup");
    assert_fails(&env, &b, "exists");
}

#[test]
fn small_and_foreign_archives_warn_but_pass() {
    let env = Env::new();
    std::fs::create_dir_all(env.backups()).unwrap();
    // A tiny valid tar.gz without database files: two warnings, still verified.
    let archive = env.backups().join("orca-db-tiny.tar.gz");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "notes.txt", &b"hello"[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    std::fs::write(&archive, gz.finish().unwrap()).unwrap();
    let run = env.run("orca-verify", &[archive.to_str().unwrap()]);
    assert!(run.stderr.contains("under 10 MB"), "{}", run.stderr);
    let rec = run.ok();
    assert_eq!(rec["verified"], true);
    assert_eq!(rec["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(rec["checks"][1]["status"], "warn");
    assert_eq!(rec["checks"][4]["status"], "warn");
    assert_eq!(rec["database_files"], 0);
}

#[test]
fn no_archive_given_is_a_usage_error() {
    let env = Env::new();
    let run = env.run("orca-verify", &[]);
    run.fails_saying(2, "backup_path");
}
