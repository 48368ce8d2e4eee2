//! The `orca-keygen` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-keygen", orca_keygen::run)
}
