//! Builds orca-walk (helper/walker), the static Linux binary orca-restore
//! copies into a helper container to read a restored volume back, for the
//! engine architectures Docker Desktop runs on (linux/amd64 and linux/arm64),
//! whatever this build targets (the Windows .exe carries them too). Linked
//! with rust-lld, which every rustup toolchain ships, so no cross C toolchain
//! is needed: only `rustup target add x86_64-unknown-linux-musl
//! aarch64-unknown-linux-musl`. When a target is missing the build goes on
//! with a warning, and orca-restore reads that engine's volumes back through
//! the archive API instead (correct, slower).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [(&str, &str); 2] = [
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("bins/orca-restore sits two levels below the workspace")
        .to_path_buf();
    let walker = root.join("helper/walker");
    // What goes into the walker: its sources, the hash it shares with
    // orca-restore (compiled in with #[path]), its profile and locked deps.
    println!("cargo:rerun-if-changed={}", walker.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        walker.join("Cargo.toml").display()
    );
    for f in ["shared/src/contenthash.rs", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=ORCA_WALKER_SKIP");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let skip = std::env::var_os("ORCA_WALKER_SKIP").is_some();
    for (arch, triple) in TARGETS {
        let dest = out.join(format!("orca-walk-{arch}"));
        let built = if skip {
            Err("ORCA_WALKER_SKIP is set".to_string())
        } else {
            build(&root, triple)
        };
        match built {
            Ok(bin) => {
                std::fs::copy(&bin, &dest).expect("copy orca-walk into OUT_DIR");
            }
            Err(why) => {
                println!(
                    "cargo:warning=orca-walk for linux/{arch} not built ({why}); orca-restore will read such engines' volumes back through the archive API (slower). Fix: rustup target add {triple}"
                );
                std::fs::write(&dest, b"").expect("write OUT_DIR");
            }
        }
    }
}

fn build(root: &Path, triple: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One target directory for every profile of the outer build (dev, test,
    // clippy, release): the walker is built once, not once per profile.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("orca-walk");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--quiet", "--profile", "walker", "-p", "orca-walk"])
        .args(["--target", triple])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags, wrappers (clippy) and target are not ours;
    // its jobserver (CARGO_MAKEFLAGS) is shared, so the two builds share the
    // cores rather than each take them all.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    cmd.env(linker_var, "rust-lld");
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or("cargo failed")
            .trim()
            .to_string();
        return Err(line);
    }
    Ok(target_dir.join(triple).join("walker").join("orca-walk"))
}
