//! Errors and exit codes: one public table for every orca tool.
//!
//! Each failure a user can cause maps to an [`ErrorKind`], which fixes both the
//! process exit code and the snake_case `error.code` of the JSON record. Codes are
//! only ever added, never re-purposed: scripts branch on them.

use std::fmt;
use std::io;

/// What went wrong, as far as a script needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Anything not covered below.
    Failure,
    /// Bad flags, bad stdin record, bad config.
    Usage,
    /// The engine cannot be reached, does not answer, or its context is missing.
    DockerUnavailable,
    /// The volume does not exist or no Orca volume matched.
    VolumeNotFound,
    /// The backup (or target volume) already exists and overwriting was refused.
    AlreadyExists,
    /// The archive failed a verification check or is unsafe to restore.
    VerificationFailed,
    /// No space left on the device being written.
    NoSpace,
    /// The operating system refused access to a path.
    PermissionDenied,
    /// A running container uses the volume and `--stop` was not given.
    VolumeInUse,
    /// The restore failed; the volume was put back as it was before.
    RestoreRolledBack,
    /// The restore failed and so did putting the old contents back.
    RollbackFailed,
    /// Another orca process exports or restores the volume.
    VolumeBusy,
    /// A restore stopped half-way; its journal is kept for --resume/--rollback.
    RestoreInterrupted,
    /// An encrypted archive and no identity (or passphrase) that opens it.
    DecryptionFailed,
    /// Remote storage cannot be reached or keeps failing (network, server errors).
    RemoteUnavailable,
    /// Remote storage refused the credentials or the access.
    RemoteDenied,
    /// The remote bucket, directory or backup does not exist.
    RemoteNotFound,
    /// A restore drill: the database did not start on the scratch copy, or
    /// its checks failed.
    DrillFailed,
    /// The archive named is not a file and no backup of that name is in the
    /// backups directory.
    NoSuchBackup,
    /// A hot copy could not be made consistent: the database's freeze or
    /// backup mode could not begin, or ended before the copy was complete
    /// (its guard's time limit, the link to orca lost). Nothing was kept.
    HotCopyFailed,
    /// orca-guard: the guarded command or a check failed (or was ended); the
    /// database was restored to the backup taken before it.
    GuardRestored,
    /// orca-guard: the guarded command or a check failed and the database was
    /// left as it was (`--keep-on-failure`).
    GuardFailed,
    /// orca-status: the newest backup (or passing drill) is older than
    /// `--max-age` (`--max-drill-age`), or there is none.
    Stale,
    /// orca-notify --test: a notification could not be sent.
    NotifyFailed,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
}

/// The public exit code table: kind, exit code, `error.code`, meaning.
pub const TABLE: &[(ErrorKind, u8, &str, &str)] = &[
    (ErrorKind::Failure, 1, "failure", "other failure"),
    (
        ErrorKind::Usage,
        2,
        "usage",
        "usage error or bad input (flags, stdin record, config)",
    ),
    (
        ErrorKind::DockerUnavailable,
        3,
        "docker_unavailable",
        "Docker unavailable (engine not reachable, not answering, or no such context)",
    ),
    (
        ErrorKind::VolumeNotFound,
        4,
        "volume_not_found",
        "volume not found",
    ),
    (
        ErrorKind::AlreadyExists,
        5,
        "already_exists",
        "backup or target volume already exists and overwrite was refused",
    ),
    (
        ErrorKind::VerificationFailed,
        6,
        "verification_failed",
        "verification failed (damaged, mismatching or unsafe archive)",
    ),
    (ErrorKind::NoSpace, 7, "no_space", "no space left on device"),
    (
        ErrorKind::PermissionDenied,
        8,
        "permission_denied",
        "permission denied",
    ),
    (
        ErrorKind::VolumeInUse,
        9,
        "volume_in_use",
        "a running container uses the volume (pass --stop)",
    ),
    (
        ErrorKind::RestoreRolledBack,
        10,
        "restore_rolled_back",
        "restore failed; the volume holds its previous contents again",
    ),
    (
        ErrorKind::RollbackFailed,
        11,
        "rollback_failed",
        "restore failed and the rollback failed too; the safety backup is kept",
    ),
    (
        ErrorKind::VolumeBusy,
        12,
        "volume_busy",
        "another orca process is exporting or restoring the volume",
    ),
    (
        ErrorKind::RestoreInterrupted,
        13,
        "restore_interrupted",
        "a restore was interrupted; finish it with orca-restore --resume or --rollback",
    ),
    (
        ErrorKind::DecryptionFailed,
        14,
        "decryption_failed",
        "encrypted archive: no identity or passphrase given, or none that opens it",
    ),
    (
        ErrorKind::RemoteUnavailable,
        15,
        "remote_unavailable",
        "remote storage unreachable or failing (endpoint down, network or server error); nothing is left under a final name",
    ),
    (
        ErrorKind::RemoteDenied,
        16,
        "remote_denied",
        "remote storage refused the credentials or the access",
    ),
    (
        ErrorKind::RemoteNotFound,
        17,
        "remote_not_found",
        "remote bucket, directory or backup not found",
    ),
    (
        ErrorKind::DrillFailed,
        18,
        "drill_failed",
        "restore drill failed: the database did not start on the scratch copy, or its checks failed",
    ),
    (
        ErrorKind::NoSuchBackup,
        19,
        "no_such_backup",
        "no such backup: the archive named is not a file, nor a backup's name in the backups directory",
    ),
    (
        ErrorKind::HotCopyFailed,
        20,
        "hot_copy_failed",
        "hot copy failed: the database's freeze or backup mode could not begin or ended before the copy was complete; nothing was kept",
    ),
    (
        ErrorKind::GuardRestored,
        21,
        "command_failed_restored",
        "orca-guard: the command or a check failed; the database was restored to the backup taken before it",
    ),
    (
        ErrorKind::GuardFailed,
        22,
        "command_failed",
        "orca-guard: the command or a check failed; the database was left as it was (--keep-on-failure)",
    ),
    (
        ErrorKind::Stale,
        23,
        "stale",
        "orca-status: no backup (or passing drill) newer than --max-age (--max-drill-age)",
    ),
    (
        ErrorKind::NotifyFailed,
        24,
        "notify_failed",
        "orca-notify --test: a notification could not be sent",
    ),
    (
        ErrorKind::Interrupted,
        130,
        "interrupted",
        "interrupted (Ctrl-C, SIGTERM)",
    ),
];

/// The EXIT STATUS section every `--help` ends with (kept equal to [`TABLE`] by a test).
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0    success
    1    other failure
    2    usage error or bad input (flags, stdin record, config)
    3    Docker unavailable (engine not reachable, not answering, or no such context)
    4    volume not found
    5    backup or target volume already exists and overwrite was refused
    6    verification failed (damaged, mismatching or unsafe archive)
    7    no space left on device
    8    permission denied
    9    a running container uses the volume (pass --stop)
    10   restore failed; the volume holds its previous contents again
    11   restore failed and the rollback failed too; the safety backup is kept
    12   another orca process is exporting or restoring the volume
    13   a restore was interrupted; finish it with orca-restore --resume or --rollback
    14   encrypted archive: no identity or passphrase given, or none that opens it
    15   remote storage unreachable or failing (endpoint down, network or server error); nothing is left under a final name
    16   remote storage refused the credentials or the access
    17   remote bucket, directory or backup not found
    18   restore drill failed: the database did not start on the scratch copy, or its checks failed
    19   no such backup: the archive named is not a file, nor a backup's name in the backups directory
    20   hot copy failed: the database's freeze or backup mode could not begin or ended before the copy was complete; nothing was kept
    21   orca-guard: the command or a check failed; the database was restored to the backup taken before it
    22   orca-guard: the command or a check failed; the database was left as it was (--keep-on-failure)
    23   orca-status: no backup (or passing drill) newer than --max-age (--max-drill-age)
    24   orca-notify --test: a notification could not be sent
    130  interrupted (Ctrl-C, SIGTERM)
Any other non-zero code also means failure. The JSON record on stdout carries
the same code in error.exit_code and a stable name in error.code.";

impl ErrorKind {
    fn row(self) -> &'static (ErrorKind, u8, &'static str, &'static str) {
        TABLE
            .iter()
            .find(|row| row.0 == self)
            .expect("every ErrorKind has a row in TABLE")
    }

    /// The kind an exit code stands for (another orca tool's).
    pub fn from_exit_code(code: u8) -> Option<ErrorKind> {
        TABLE.iter().find(|row| row.1 == code).map(|row| row.0)
    }

    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        self.row().1
    }

    /// The stable snake_case name written as `error.code`.
    pub fn code(self) -> &'static str {
        self.row().2
    }

    /// The kind whose `error.code` is `code`, if any.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        TABLE.iter().find(|row| row.2 == code).map(|row| row.0)
    }
}

/// An error that knows its kind; anything else in an error chain is `Failure`
/// unless it is an I/O error that maps to a kind (no space, permission denied).
#[derive(Debug)]
pub struct OrcaError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// One line: the thing, the cause, the next step.
    pub message: String,
}

impl OrcaError {
    /// An error of `kind` with a one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OrcaError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for OrcaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OrcaError {}

/// Return early with an [`OrcaError`] of the given kind: `fail!(Usage, "bad {x}")`.
#[macro_export]
macro_rules! fail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::exit::OrcaError::new($crate::exit::ErrorKind::$kind, format!($($arg)*)).into())
    };
}

/// Build an [`anyhow::Error`] of the given kind: `err!(Usage, "bad {x}")`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        anyhow::Error::from($crate::exit::OrcaError::new($crate::exit::ErrorKind::$kind, format!($($arg)*)))
    };
}

/// The kind an I/O error maps to, if it is one users can fix themselves.
pub fn io_kind(err: &io::Error) -> Option<ErrorKind> {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Some(ErrorKind::NoSpace),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            Some(ErrorKind::PermissionDenied)
        }
        _ => None,
    }
}

/// The kind of an error chain: the outermost [`OrcaError`], else the first I/O
/// error that maps to a kind, else `Failure`. An interrupt trumps nearly
/// everything: whatever broke after Ctrl-C broke because of it.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    // Except a failed rollback: that the volume may be incomplete matters more
    // than why it happened.
    if err
        .downcast_ref::<OrcaError>()
        .is_some_and(|e| e.kind == ErrorKind::RollbackFailed)
    {
        return ErrorKind::RollbackFailed;
    }
    if crate::interrupt::interrupted() {
        return ErrorKind::Interrupted;
    }
    // anyhow's own downcast also sees errors attached with `.context(...)`.
    if let Some(e) = err.downcast_ref::<OrcaError>() {
        return e.kind;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<OrcaError>() {
            return e.kind;
        }
    }
    for cause in err.chain() {
        if let Some(kind) = cause.downcast_ref::<io::Error>().and_then(io_kind) {
            return kind;
        }
    }
    ErrorKind::Failure
}

/// The one-line message of an error chain, with a next step for the I/O kinds
/// whose raw text ("No space left on device (os error 28)") says none.
pub fn message_of(err: &anyhow::Error, kind: ErrorKind) -> String {
    let mut msg = format!("{err:#}");
    if kind == ErrorKind::Interrupted && !msg.contains("interrupted") {
        msg = format!("interrupted ({msg}); nothing was left half-done");
    }
    let has_own_error = err.downcast_ref::<OrcaError>().is_some()
        || err.chain().any(|c| c.downcast_ref::<OrcaError>().is_some());
    if !has_own_error {
        match kind {
            ErrorKind::NoSpace => msg.push_str(
                " (free some space on that disk, e.g. remove old backups with orca-prune)",
            ),
            ErrorKind::PermissionDenied => {
                msg.push_str(" (check the owner and permissions of that path)")
            }
            _ => {}
        }
    }
    one_line(&msg)
}

/// Collapse newlines and runs of whitespace so a message fits on one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_lists_every_code_of_the_table() {
        for (_, code, _, meaning) in TABLE {
            let line = format!("{code:<4} {meaning}");
            assert!(
                EXIT_STATUS_HELP.contains(&line),
                "EXIT STATUS help is missing '{line}'"
            );
        }
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        for (kind, _, code, _) in TABLE {
            assert_eq!(ErrorKind::from_code(code), Some(*kind));
            assert_eq!(TABLE.iter().filter(|r| r.1 == kind.exit_code()).count(), 1);
        }
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let full = anyhow::Error::from(io::Error::from(io::ErrorKind::StorageFull))
            .context("writing /b/x.tar.gz");
        assert_eq!(kind_of(&full), ErrorKind::NoSpace);
        let msg = message_of(&full, ErrorKind::NoSpace);
        assert!(msg.starts_with("writing /b/x.tar.gz: "), "{msg}");
        assert!(msg.contains("orca-prune"), "{msg}");
        let denied = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(kind_of(&denied), ErrorKind::PermissionDenied);
        let other = anyhow::anyhow!("boom");
        assert_eq!(kind_of(&other), ErrorKind::Failure);
    }

    #[test]
    fn outermost_orca_error_wins() {
        let inner = anyhow::Error::from(OrcaError::new(ErrorKind::VolumeNotFound, "no vol"));
        let outer = inner.context(OrcaError::new(ErrorKind::DockerUnavailable, "no docker"));
        assert_eq!(kind_of(&outer), ErrorKind::DockerUnavailable);
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(one_line("a\n  b\tc \n"), "a b c");
    }
}
