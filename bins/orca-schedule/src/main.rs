//! The `orca-schedule` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-schedule", orca_schedule::run)
}
