//! The `orca-backup` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_backup_workflow::main()
}
