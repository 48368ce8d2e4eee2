//! The `orca-restore` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-restore", orca_restore::run)
}
