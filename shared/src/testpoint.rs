//! Named points where tests stop a tool to kill or interrupt it: with
//! `ORCA_TEST_PAUSE_AT=<name>` the tool says `orca-test: paused at <name>` on
//! stderr and waits there (until killed, or until an interrupt arrives, which
//! it then handles as the step in progress would, or until the file named by
//! `ORCA_TEST_CONTINUE_FILE` appears, which it removes and goes on). A tool
//! left paused for [`DEADLINE`] (its test failed before releasing it) acts as
//! if interrupted, so it cleans up and ends rather than hanging the suite.
//! For tests only; without the variable a point costs one environment lookup.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a point waits before acting as if interrupted
/// (`ORCA_TEST_PAUSE_SECONDS` changes it).
pub const DEADLINE: Duration = Duration::from_secs(300);

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
    let go_on = std::env::var_os("ORCA_TEST_CONTINUE_FILE").map(std::path::PathBuf::from);
    let deadline = std::env::var("ORCA_TEST_PAUSE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEADLINE, Duration::from_secs);
    let start = Instant::now();
    while !crate::interrupt::interrupted() {
        if start.elapsed() > deadline {
            eprintln!(
                "orca-test: nobody released {name} within {} s: acting as if interrupted",
                deadline.as_secs()
            );
            crate::interrupt::raise();
            return;
        }
        if let Some(f) = &go_on
            && std::fs::remove_file(f).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
