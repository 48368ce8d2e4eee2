//! The `orca-copy` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-copy", orca_copy::run)
}
