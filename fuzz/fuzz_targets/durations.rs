//! Ages and times users give (`--since`, retention): no panic, no overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(d) = orca_shared::limits::parse_age(s) {
        assert!(d.num_days() <= orca_shared::limits::MAX_AGE_DAYS as i64);
    }
    let now = chrono::Utc::now();
    let _ = orca_list::parse_since(s, now);
});
