//! orca-walk (the program orca-restore runs inside a helper container to read
//! a restored volume back) describes a directory exactly as the tar route
//! does: both listings of the same tree compare equal, and a change shows.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use orca_restore::tree::{Tree, TreeBuilder};
use orca_restore::volume::{compare, parse_listing, walker_for};
use orca_shared::tarscan::Scanner;

fn walk(dir: &Path) -> Tree {
    let program = walker_for("amd64");
    assert!(
        !program.is_empty(),
        "this build carries no orca-walk for amd64: rustup target add x86_64-unknown-linux-musl"
    );
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("orca-walk");
    std::fs::write(&bin, program).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("listing");
    let st = run(Command::new(&bin).arg(dir).arg(&out)).status;
    assert!(st.success());
    parse_listing(&std::fs::read(&out).unwrap()).unwrap()
}

/// Run a program this test just wrote. Another test thread forking while
/// the file was open for writing holds it open in its child until that
/// child execs, so exec may see ETXTBSY for a moment: try again.
fn run(cmd: &mut Command) -> std::process::Output {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("the program stayed busy (ETXTBSY) for a second");
}

/// The tree of `tar -cf - -C dir .` (GNU tar, as the engine's archives carry
/// the same facts).
fn tarred(dir: &Path) -> Tree {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-cf", "-", "-C"])
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut s = Scanner::new(TreeBuilder::default());
    s.feed(&out.stdout).unwrap();
    let (r, v) = s.finish();
    r.unwrap();
    v.finish()
}

fn populate(dir: &Path) {
    let d = dir.join("data");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("Orca.mdf"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(d.join("Orca_log.ldf"), b"log").unwrap();
    std::fs::set_permissions(
        d.join("Orca_log.ldf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::hard_link(d.join("Orca_log.ldf"), dir.join("hard")).unwrap();
    std::os::unix::fs::symlink("data/Orca.mdf", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere", dir.join("dangling")).unwrap();
    let name = std::ffi::OsStr::new("spaced and \u{e9} \n name");
    std::fs::write(dir.join(name), b"odd name").unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    // setuid and sticky bits, a hard link to a symlink (Docker's archives
    // make it a hard link too), a time before 1970.
    std::fs::write(dir.join("suid"), b"#!").unwrap();
    std::fs::set_permissions(dir.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::create_dir(dir.join("sticky")).unwrap();
    std::fs::set_permissions(dir.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::hard_link(dir.join("link"), dir.join("link2")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(d.join("Orca_log.ldf"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400))
        .unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).unwrap();
}

#[test]
fn walker_and_tar_describe_a_tree_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volume");
    std::fs::create_dir(&dir).unwrap();
    populate(&dir);
    let walked = walk(&dir);
    let tarred = tarred(&dir);
    assert_eq!(walked.entries(), 13, "{:?}", walked.nodes.keys());
    compare(&walked, &tarred).unwrap();
    assert_eq!(walked.content_bytes(), tarred.content_bytes());
    // The log file and its link; the symlink and its link.
    assert_eq!(walked.groups.iter().filter(|g| g.len() > 1).count(), 2);
    assert_eq!(walked.nodes[&b"suid"[..]].mode, 0o4755);
    assert!(walked.nodes[&b"data/Orca_log.ldf"[..]].mtime < 0);
}

#[test]
fn the_walker_sees_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volume");
    std::fs::create_dir(&dir).unwrap();
    populate(&dir);
    let want = tarred(&dir);
    // One byte in the middle of the big file, its mtime kept.
    let f = dir.join("data/Orca.mdf");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[1 << 20] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let e = compare(&walk(&dir), &want).unwrap_err().to_string();
    assert!(e.contains("data/Orca.mdf differs (content)"), "{e}");
    // A mode, an extra file.
    std::fs::write(&f, vec![7u8; 3 << 20]).unwrap();
    std::fs::set_permissions(dir.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.join("extra"), b"x").unwrap();
    let e = compare(&walk(&dir), &tarred(&dir).clone()).err();
    assert!(e.is_none(), "{e:?}");
    let e = compare(&walk(&dir), &want).unwrap_err().to_string();
    assert!(
        e.contains("empty differs (mode") && e.contains("unexpected extra"),
        "{e}"
    );
}

#[test]
fn a_listing_cut_short_or_garbled_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volume");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), b"a").unwrap();
    let program = walker_for("amd64");
    let bin = tmp.path().join("orca-walk");
    std::fs::write(&bin, program).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("listing");
    assert!(run(Command::new(&bin).arg(&dir).arg(&out)).status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(parse_listing(text.as_bytes()).is_ok());
    let cut = text.rsplit_once("end").unwrap().0;
    assert!(
        parse_listing(cut.as_bytes())
            .unwrap_err()
            .contains("cut short")
    );
    let dropped: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert!(
        parse_listing(dropped.as_bytes())
            .unwrap_err()
            .contains("end line says")
    );
    let garbled = text.replacen("file", "flie", 1);
    let stale = text.replacen("orca-walk 1", "orca-walk 0", 1);
    assert!(
        parse_listing(stale.as_bytes())
            .unwrap_err()
            .contains("format")
    );
    assert!(parse_listing(garbled.as_bytes()).is_err());
    // Unreadable input is the walker's error, not a listing.
    let st = run(Command::new(&bin).arg(tmp.path().join("missing")).arg(&out));
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("missing"));
}

#[test]
fn holes_are_skipped_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("volume");
    std::fs::create_dir(&dir).unwrap();
    let f = std::fs::File::create(dir.join("huge.mdf")).unwrap();
    // 1 TiB, nearly all hole: reading it would take an hour.
    f.set_len(1 << 40).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(&[7u8; 10000], 1 << 30).unwrap();
    f.write_all_at(b"end", (1 << 40) - 3).unwrap();
    drop(f);
    let started = std::time::Instant::now();
    let walked = walk(&dir);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The same as a sparse tar of it (GNU tar finds the holes with SEEK_HOLE).
    let out = Command::new("tar")
        .args(["--numeric-owner", "--format=posix", "-S", "-cf", "-", "-C"])
        .arg(&dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut s = Scanner::new(TreeBuilder::default());
    s.feed(&out.stdout).unwrap();
    let (r, v) = s.finish();
    r.unwrap();
    let tarred = v.finish();
    compare(&walked, &tarred).unwrap();
    assert_eq!(walked.nodes[&b"huge.mdf"[..]].size, 1 << 40);
}
