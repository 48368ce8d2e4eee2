//! The `orca-export` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-export", orca_export::run)
}
