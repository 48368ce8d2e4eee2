//! The `orca-notify` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_notify::main()
}
