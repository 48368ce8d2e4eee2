//! The `orca-find-volume` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-find-volume", orca_find_volume::run)
}
