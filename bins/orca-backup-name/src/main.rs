//! The `orca-backup-name` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    orca_shared::app::main("orca-backup-name", orca_backup_name::run)
}
