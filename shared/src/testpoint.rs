//! Named points where tests stop a tool to kill or interrupt it: with
//! `ORCA_TEST_PAUSE_AT=<name>` the tool says `orca-test: paused at <name>` on
//! stderr and waits there (until killed, or until an interrupt arrives, which
//! it then handles as the step in progress would). For tests only; without
//! the variable a point costs one environment lookup.

use std::sync::OnceLock;
use std::time::Duration;

fn wanted() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        std::env::var("ORCA_TEST_PAUSE_AT")
            .ok()
            .filter(|v| !v.is_empty())
    })
    .as_deref()
}

/// Pause here when a test asked for this point.
pub fn point(name: &str) {
    if wanted() != Some(name) {
        return;
    }
    eprintln!("orca-test: paused at {name}");
    while !crate::interrupt::interrupted() {
        std::thread::sleep(Duration::from_millis(20));
    }
}
