//! The JSON record a tool reads on stdin: no panic; what parses keeps its
//! fields through a set and back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_shared::record::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = Record::parse(data) {
        let _ = r.str("volume");
        let _ = r.u64("size_bytes");
        let _ = r.bool("overwrite");
        let _ = r.failure_exit_code();
        let before = r.fields().len();
        r.set("fuzzed", true);
        assert!(r.fields().len() >= before);
    }
});
