//! The `orca-guard` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main_then("orca-guard", orca_guard::run, Some(orca_guard::hooks()))
}
