//! The generator's command line (this also makes `cargo test --workspace`
//! build it, for the demo test that runs it).

#![allow(clippy::unwrap_used)]

#[test]
fn gen_volume_explains_its_usage() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orca-gen-volume"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usage: orca-gen-volume VOLUME SIZE_MIB")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orca-gen-volume"))
        .args(["v", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
