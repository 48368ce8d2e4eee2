//! The `orca-verify` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-verify", orca_verify::run)
}
