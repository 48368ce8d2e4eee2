//! The `orca-status` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-status", orca_status::run)
}
