//! The `orca-drill` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-drill", orca_drill::run)
}
