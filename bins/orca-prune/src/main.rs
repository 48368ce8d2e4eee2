//! The `orca-prune` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-prune", orca_prune::run)
}
