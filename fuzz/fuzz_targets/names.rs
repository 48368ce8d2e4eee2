//! Backup names: sanitizing never panics and always gives a portable name;
//! parsing file names never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_shared::names::{self, BackupFileName, Compression};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        if let Ok(name) = names::sanitize(raw, c) {
            let file = name.file_name.as_str();
            assert!(names::is_portable_file_name(file), "{file:?}");
            assert!(file.len() <= 255);
        }
    }
    let _ = BackupFileName::parse(raw);
    let _ = names::parse_timestamp(raw);
    let _ = names::is_incomplete(raw);
});
