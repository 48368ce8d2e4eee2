//! Named points where tests stop a tool to kill or interrupt it: with
//! `ORCA_TEST_PAUSE_AT=<name>` the tool says `orca-test: paused at <name>` on
//! stderr and waits there (until killed, or until an interrupt arrives, which
//! it then handles as the step in progress would, or until the file named by
//! `ORCA_TEST_CONTINUE_FILE` appears, which it removes and goes on). For
//! tests only; without the variable a point costs one environment lookup.

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
    let go_on = std::env::var_os("ORCA_TEST_CONTINUE_FILE").map(std::path::PathBuf::from);
    while !crate::interrupt::interrupted() {
        if let Some(f) = &go_on
            && std::fs::remove_file(f).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
