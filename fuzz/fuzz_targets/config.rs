//! config.json: no panic, and every accepted config is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_shared::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((c, _)) = Config::parse(text, std::path::Path::new("/fuzz/config.json")) {
        assert!(c.retention.max_age_days <= orca_shared::limits::MAX_AGE_DAYS);
        assert!(c.engine_timeout_seconds >= 1);
        let _ = c.timeouts();
        let _ = c.level_for(c.compression);
    }
});
