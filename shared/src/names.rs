//! Backup file names: making them, sanitizing custom ones, recognizing them.
//!
//! A backup is `orca-db-<stem>.<ext>`. The stem is either a timestamp
//! `YYYY-MM-DD-HH-mm` in local time ("timestamped", judged by that time by the
//! retention policy) or anything else ("named", a milestone). Beside an archive
//! live its sidecars (`<archive>.sha256`, `<archive>.json`); files being written
//! end in `.incomplete` until they are complete and renamed.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

/// Every backup file name starts with this.
pub const PREFIX: &str = "orca-db-";
/// Temporary files being written end with this (`orca-db-x.tar.gz.AbC12.incomplete`).
pub const INCOMPLETE_SUFFIX: &str = ".incomplete";
/// Files that belong to an archive and go with it: `<archive><suffix>`.
pub const SIDECAR_SUFFIXES: &[&str] = &[".sha256", ".json"];
/// Longest file name we create, in bytes (filesystems allow 255).
pub const MAX_NAME_BYTES: usize = 200;
/// The stem format of timestamped backups (chrono syntax).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d-%H-%M";
/// Appended to a custom name that would otherwise read as a timestamp.
pub const NAMED_MARKER: &str = "-named";

/// How an archive is compressed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`.tar.gz`), readable by every tar.
    #[default]
    Gzip,
    /// zstd (`.tar.zst`), much faster.
    Zstd,
    /// no compression (`.tar`).
    None,
}

impl Compression {
    /// Every compression, for listings.
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::None];

    /// The file extension, with its leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => ".tar.gz",
            Compression::Zstd => ".tar.zst",
            Compression::None => ".tar",
        }
    }

    /// The name used in records and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// Parse the name used in records and config.
    pub fn from_name(name: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The level used when neither flag nor config gives one.
    pub fn default_level(self) -> u64 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    /// Whether `level` is valid for this compression; the error says the range.
    pub fn check_level(self, level: u64) -> Result<(), String> {
        let range = match self {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=19,
            Compression::None => return Ok(()),
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(format!(
                "level {level} is out of range for {} ({}-{})",
                self.as_str(),
                range.start(),
                range.end()
            ))
        }
    }

    /// The compression an archive file name says, from its extension.
    pub fn from_file_name(name: &str) -> Option<Compression> {
        // Longest extension first: ".tar" is a suffix of neither of the others,
        // but check the compressed ones first anyway for clarity.
        [Compression::Gzip, Compression::Zstd, Compression::None]
            .into_iter()
            .find(|c| name.ends_with(c.extension()))
    }
}

/// Whether a backup marks a moment (timestamped) or a milestone (named).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `orca-db-YYYY-MM-DD-HH-mm.*`: judged by the time in its name.
    Timestamped,
    /// Any other name: kept unless asked otherwise.
    Named,
}

impl Kind {
    /// The name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Timestamped => "timestamped",
            Kind::Named => "named",
        }
    }
}

/// What a backup file name says about the backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFileName {
    /// The part between `orca-db-` and the extension.
    pub stem: String,
    /// From the extension.
    pub compression: Compression,
    /// The local time in a timestamped name.
    pub timestamp: Option<NaiveDateTime>,
    /// Ends in `.age`: encrypted.
    pub encrypted: bool,
}

impl BackupFileName {
    /// Recognize `orca-db-<stem>.tar.gz|.tar.zst|.tar`, each also with `.age`
    /// after it (encrypted); anything else is not a backup.
    pub fn parse(file_name: &str) -> Option<BackupFileName> {
        let rest = file_name.strip_prefix(PREFIX)?;
        let (rest, encrypted) = match rest.strip_suffix(crate::crypt::SUFFIX) {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let compression = Compression::from_file_name(rest)?;
        let stem = &rest[..rest.len() - compression.extension().len()];
        if stem.is_empty() {
            return None;
        }
        Some(BackupFileName {
            stem: stem.to_string(),
            compression,
            timestamp: parse_timestamp(stem),
            encrypted,
        })
    }

    /// Timestamped or named.
    pub fn kind(&self) -> Kind {
        if self.timestamp.is_some() {
            Kind::Timestamped
        } else {
            Kind::Named
        }
    }
}

/// The same backup file name in its other form, `x.tar.gz` <-> `x.tar.gz.age`:
/// one backup name is one backup, encrypted or not.
pub fn other_form(file_name: &str) -> String {
    match file_name.strip_suffix(crate::crypt::SUFFIX) {
        Some(plain) => plain.to_string(),
        None => format!("{file_name}{}", crate::crypt::SUFFIX),
    }
}

/// Every form of one backup name: `x.tar.gz`, `x.tar.zst`, `x.tar`, each
/// also encrypted (`.age`). One name is one backup, whatever its compression
/// or encryption: a second is refused, or replaces all of them. `file_name`
/// itself comes first. A name that is not a backup's has its `.age` twin only.
pub fn all_forms(file_name: &str) -> Vec<String> {
    let Some(parsed) = BackupFileName::parse(file_name) else {
        return vec![file_name.to_string(), other_form(file_name)];
    };
    let mut forms = vec![file_name.to_string()];
    for c in Compression::ALL {
        for age in ["", crate::crypt::SUFFIX] {
            let f = format!("{PREFIX}{}{}{age}", parsed.stem, c.extension());
            if !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms
}

/// The forms of `file_name` that exist in `dir` (as anything: a file, a
/// directory, a link).
pub fn existing_forms(dir: &std::path::Path, file_name: &str) -> Vec<std::path::PathBuf> {
    all_forms(file_name)
        .into_iter()
        .map(|f| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Whether any form of `file_name` exists in `dir`.
pub fn any_form_exists(dir: &std::path::Path, file_name: &str) -> bool {
    !existing_forms(dir, file_name).is_empty()
}

/// Whether `file_name` is a temporary file of ours (`orca-db-*.incomplete`).
pub fn is_incomplete(file_name: &str) -> bool {
    file_name.starts_with(PREFIX) && file_name.ends_with(INCOMPLETE_SUFFIX)
}

/// Parse a `YYYY-MM-DD-HH-mm` stem (exactly that shape, a real date and
/// time), or `YYYY-MM-DD-HH-mm-N` (N from 2 to 999, no leading zero): the
/// N-th backup made in that minute.
pub fn parse_timestamp(stem: &str) -> Option<NaiveDateTime> {
    let stem = match stem.get(16..) {
        None | Some("") => stem,
        Some(seq) => {
            let n = seq.strip_prefix('-')?;
            let ok = (1..=3).contains(&n.len())
                && n.bytes().all(|c| c.is_ascii_digit())
                && !n.starts_with('0')
                && n != "1";
            if !ok {
                return None;
            }
            &stem[..16]
        }
    };
    let b = stem.as_bytes();
    if b.len() != 16 {
        return None;
    }
    let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 | 10 | 13 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(stem, TIMESTAMP_FORMAT).ok()
}

/// A local naive time as an instant (the earliest, when DST repeats an hour).
pub fn local_instant(t: NaiveDateTime) -> Option<DateTime<Local>> {
    Local.from_local_datetime(&t).earliest()
}

/// The default name: `orca-db-YYYY-MM-DD-HH-mm<ext>` in local time.
pub fn timestamped_name(now: DateTime<Local>, compression: Compression) -> String {
    format!(
        "{PREFIX}{}{}",
        now.format(TIMESTAMP_FORMAT),
        compression.extension()
    )
}

/// The most backups one minute can name (`-2` ... `-999`).
pub const MAX_PER_MINUTE: u32 = 999;

/// The first timestamped name for `now` that no backup in `dir` has in any
/// form: `orca-db-YYYY-MM-DD-HH-mm<ext>`, else `...-HH-mm-2<ext>`, `-3`...
/// so a second backup in the same minute never fails or replaces the first.
pub fn free_timestamped_name(
    dir: &std::path::Path,
    now: DateTime<Local>,
    compression: Compression,
) -> anyhow::Result<String> {
    let mut name = timestamped_name(now, compression);
    while any_form_exists(dir, &name) {
        name = match next_in_minute(&name) {
            Some(next) => next,
            None => crate::fail!(
                AlreadyExists,
                "{MAX_PER_MINUTE} backups named after {} exist in {} already; wait a minute, or give a name with --name",
                now.format(TIMESTAMP_FORMAT),
                dir.display()
            ),
        };
    }
    Ok(name)
}

/// The place of a timestamped backup among those of its minute: 1 for
/// `...-HH-mm`, N for `...-HH-mm-N`; 0 for any other name. Among equal
/// times, the higher is the newer (`-10` after `-9`, both after the first).
pub fn minute_seq(file_name: &str) -> u32 {
    match BackupFileName::parse(file_name) {
        Some(b) if b.timestamp.is_some() => {
            b.stem.get(17..).and_then(|n| n.parse().ok()).unwrap_or(1)
        }
        _ => 0,
    }
}

/// The next timestamped name after `file_name` (`-2` after none, `-3` after
/// `-2`...), for a run that found its name taken when it came to commit.
pub fn next_in_minute(file_name: &str) -> Option<String> {
    let parsed = BackupFileName::parse(file_name)?;
    parsed.timestamp?;
    let (base, n) = match parsed.stem.get(16..) {
        Some(seq) if !seq.is_empty() => (&parsed.stem[..16], seq[1..].parse::<u32>().ok()?),
        _ => (parsed.stem.as_str(), 1),
    };
    if n >= MAX_PER_MINUTE {
        return None;
    }
    let age = if parsed.encrypted {
        crate::crypt::SUFFIX
    } else {
        ""
    };
    Some(format!(
        "{PREFIX}{base}-{}{}{age}",
        n + 1,
        parsed.compression.extension()
    ))
}

/// A custom name made safe, and whether it had to be marked as named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomName {
    /// The full file name: `orca-db-<safe><ext>`.
    pub file_name: String,
    /// What was changed, for a note on stderr (empty when nothing was).
    pub changes: Vec<String>,
}

/// Turn a user's `--name` into a plain, portable file name `orca-db-<safe><ext>`.
///
/// Each of `\ / : * ? " < > |` and every control character becomes `-`; an
/// `orca-db-` prefix or archive extension the user typed is not doubled; leading
/// and trailing spaces and trailing dots go; the result is cut to
/// [`MAX_NAME_BYTES`] on a character boundary. Empty, whitespace-only, `.` and
/// `..` are refused (usage error). A name that would read as a timestamp gets
/// [`NAMED_MARKER`] so retention keeps treating it as a milestone. Windows device
/// names (CON, NUL, COM1...) cannot occur: the file name always starts `orca-db-`.
pub fn sanitize(raw: &str, compression: Compression) -> anyhow::Result<CustomName> {
    let mut changes = Vec::new();
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        crate::fail!(
            Usage,
            "backup name {raw:?} is not usable: give a name with letters or digits (e.g. --name before-migration)"
        );
    }
    let mut name = trimmed.to_string();
    if let Some(stripped) = name.strip_suffix(crate::crypt::SUFFIX) {
        changes.push(format!(
            "dropped the extension '{}' (encryption adds it)",
            crate::crypt::SUFFIX
        ));
        name = stripped.to_string();
    }
    for ext in [".tar.gz", ".tgz", ".tar.zst", ".tar"] {
        if let Some(stripped) = name.strip_suffix(ext) {
            changes.push(format!(
                "dropped the extension '{ext}' (it follows the compression)"
            ));
            name = stripped.to_string();
            break;
        }
    }
    if let Some(stripped) = name.strip_prefix(PREFIX) {
        name = stripped.to_string();
    }
    let replaced: String = name
        .chars()
        .map(|c| if is_forbidden(c) { '-' } else { c })
        .collect();
    if replaced != name {
        changes.push("replaced characters not allowed in file names with '-'".into());
    }
    let mut safe = replaced;
    let budget = MAX_NAME_BYTES
        - PREFIX.len()
        - compression.extension().len()
        - crate::crypt::SUFFIX.len()
        - NAMED_MARKER.len();
    if safe.len() > budget {
        let mut cut = budget;
        while !safe.is_char_boundary(cut) {
            cut -= 1;
        }
        safe.truncate(cut);
        changes.push(format!("shortened to {MAX_NAME_BYTES} bytes"));
    }
    let before_trim = safe.len();
    safe = safe.trim().trim_end_matches(['.', ' ']).to_string();
    if safe.len() != before_trim {
        changes.push("removed trailing dots and spaces".into());
    }
    if safe.is_empty() || safe.chars().all(|c| c == '-' || c == '.') {
        crate::fail!(
            Usage,
            "backup name {raw:?} has nothing usable left once unsafe characters are removed: give a name with letters or digits"
        );
    }
    if parse_timestamp(&safe).is_some() {
        safe.push_str(NAMED_MARKER);
        changes.push(format!(
            "added '{NAMED_MARKER}' so the retention policy treats it as a named backup, not a timestamped one"
        ));
    }
    let file_name = format!("{PREFIX}{safe}{}", compression.extension());
    debug_assert!(is_portable_file_name(&file_name));
    Ok(CustomName { file_name, changes })
}

fn is_forbidden(c: char) -> bool {
    matches!(c, '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control()
}

/// Windows device names, which no file may be called (whatever its extension).
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Whether a file name is safe on Linux, macOS and Windows alike.
pub fn is_portable_file_name(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end();
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME_BYTES
        && !name.chars().any(is_forbidden)
        && !name.ends_with(['.', ' '])
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_forms_cover_every_compression_and_encryption() {
        let f = all_forms("orca-db-x.tar.zst.age");
        assert_eq!(f[0], "orca-db-x.tar.zst.age");
        assert_eq!(f.len(), 6);
        for want in [
            "orca-db-x.tar.gz",
            "orca-db-x.tar.gz.age",
            "orca-db-x.tar.zst",
            "orca-db-x.tar",
            "orca-db-x.tar.age",
        ] {
            assert!(f.contains(&want.to_string()), "{want} in {f:?}");
        }
        assert_eq!(all_forms("other.bin"), ["other.bin", "other.bin.age"]);
    }

    #[test]
    fn other_form_adds_or_drops_the_age_suffix() {
        assert_eq!(other_form("orca-db-x.tar.gz"), "orca-db-x.tar.gz.age");
        assert_eq!(other_form("orca-db-x.tar.gz.age"), "orca-db-x.tar.gz");
    }

    #[test]
    fn the_nth_backup_of_a_minute_is_timestamped_too() {
        let t = parse_timestamp("2025-10-31-14-30").unwrap();
        assert_eq!(parse_timestamp("2025-10-31-14-30-2"), Some(t));
        assert_eq!(parse_timestamp("2025-10-31-14-30-999"), Some(t));
        for bad in [
            "2025-10-31-14-30-1",
            "2025-10-31-14-30-02",
            "2025-10-31-14-30-1000",
            "2025-10-31-14-30-x",
            "2025-10-31-14-30-",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
        assert_eq!(
            next_in_minute("orca-db-2025-10-31-14-30.tar.gz").as_deref(),
            Some("orca-db-2025-10-31-14-30-2.tar.gz")
        );
        assert_eq!(
            next_in_minute("orca-db-2025-10-31-14-30-9.tar.zst.age").as_deref(),
            Some("orca-db-2025-10-31-14-30-10.tar.zst.age")
        );
        assert_eq!(next_in_minute("orca-db-before.tar.gz"), None);
        assert_eq!(minute_seq("orca-db-2025-10-31-14-30.tar.gz"), 1);
        assert_eq!(minute_seq("orca-db-2025-10-31-14-30-10.tar.zst.age"), 10);
        assert_eq!(minute_seq("orca-db-before.tar.gz"), 0);
        let dir = tempfile::tempdir().unwrap();
        let now = Local.from_local_datetime(&t).earliest().unwrap();
        let first = free_timestamped_name(dir.path(), now, Compression::Gzip).unwrap();
        assert_eq!(first, "orca-db-2025-10-31-14-30.tar.gz");
        // Taken in another compression: the next number.
        std::fs::write(dir.path().join("orca-db-2025-10-31-14-30.tar.zst"), b"").unwrap();
        let second = free_timestamped_name(dir.path(), now, Compression::Gzip).unwrap();
        assert_eq!(second, "orca-db-2025-10-31-14-30-2.tar.gz");
    }

    #[test]
    fn timestamps_must_be_exact_and_real() {
        assert!(parse_timestamp("2025-10-31-14-30").is_some());
        for bad in [
            "2025-13-45-99-99",
            "2025-1-31-14-30",
            "2025-10-31-14-3",
            "2025-02-30-10-00",
            "2025-10-31-24-00",
            "2025-10-31 14-30",
            "before-migration",
            "２０２５-10-31-14-30",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn recognizes_backup_files() {
        let f = BackupFileName::parse("orca-db-2025-10-31-14-30.tar.gz").unwrap();
        assert_eq!(f.kind(), Kind::Timestamped);
        assert_eq!(f.compression, Compression::Gzip);
        let f = BackupFileName::parse("orca-db-2025-13-45-99-99.tar.zst").unwrap();
        assert_eq!(f.kind(), Kind::Named);
        assert_eq!(f.compression, Compression::Zstd);
        assert_eq!(
            BackupFileName::parse("orca-db-x.tar").unwrap().compression,
            Compression::None
        );
        for not in [
            "orca-db-.tar.gz",
            "orca-db-x.tar.gz.sha256",
            "orca-db-x.tar.gz.json",
            "backup.tar.gz",
            "orca-db-x.zip",
            "orca-db-x.tar.gz.abc.incomplete",
        ] {
            assert_eq!(BackupFileName::parse(not), None, "{not}");
        }
        assert!(is_incomplete("orca-db-x.tar.gz.abc.incomplete"));
        assert!(!is_incomplete("other.incomplete"));
    }

    #[test]
    fn default_name_follows_compression() {
        let t = Local.with_ymd_and_hms(2025, 10, 31, 14, 30, 59).unwrap();
        assert_eq!(
            timestamped_name(t, Compression::Gzip),
            "orca-db-2025-10-31-14-30.tar.gz"
        );
        assert_eq!(
            timestamped_name(t, Compression::Zstd),
            "orca-db-2025-10-31-14-30.tar.zst"
        );
        assert_eq!(
            timestamped_name(t, Compression::None),
            "orca-db-2025-10-31-14-30.tar"
        );
    }

    #[test]
    fn hostile_names_become_plain_portable_files() {
        let cases: &[(&str, &str)] = &[
            ("before-migration", "orca-db-before-migration.tar.gz"),
            ("../../etc/passwd", "orca-db-..-..-etc-passwd.tar.gz"),
            ("a/b:c*d?e\"f<g>h|i", "orca-db-a-b-c-d-e-f-g-h-i.tar.gz"),
            ("CON", "orca-db-CON.tar.gz"),
            ("nul.txt", "orca-db-nul.txt.tar.gz"),
            ("line\nbreak", "orca-db-line-break.tar.gz"),
            ("🚀 release", "orca-db-🚀 release.tar.gz"),
            ("trailing. . ", "orca-db-trailing.tar.gz"),
            ("orca-db-x.tar.gz", "orca-db-x.tar.gz"),
            ("2025-10-31-14-30", "orca-db-2025-10-31-14-30-named.tar.gz"),
        ];
        for (raw, want) in cases {
            let got = sanitize(raw, Compression::Gzip).unwrap();
            assert_eq!(&got.file_name, want, "{raw:?}");
            assert!(is_portable_file_name(&got.file_name), "{raw:?}");
            assert_eq!(
                BackupFileName::parse(&got.file_name).unwrap().kind(),
                Kind::Named,
                "{raw:?}"
            );
        }
        let long = "x".repeat(300);
        let got = sanitize(&long, Compression::Zstd).unwrap();
        assert!(got.file_name.len() <= MAX_NAME_BYTES);
        assert!(got.file_name.ends_with(".tar.zst"));
        let emoji = "🚀".repeat(100);
        let got = sanitize(&emoji, Compression::Gzip).unwrap();
        assert!(got.file_name.len() <= MAX_NAME_BYTES && is_portable_file_name(&got.file_name));
    }

    #[test]
    fn unusable_names_are_usage_errors() {
        for raw in ["", "   ", ".", "..", "///", "...", "\n\t"] {
            let e = sanitize(raw, Compression::Gzip).unwrap_err();
            assert_eq!(
                crate::exit::kind_of(&e),
                crate::exit::ErrorKind::Usage,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn reserved_device_names_are_not_portable() {
        for n in ["CON", "con.tar.gz", "LPT1.txt", "nul"] {
            assert!(!is_portable_file_name(n), "{n}");
        }
        assert!(is_portable_file_name("orca-db-CON.tar.gz"));
    }
}
