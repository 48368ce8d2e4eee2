//! The `orca-list` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-list", orca_list::run)
}
