//! Progress on stderr for long streams: bytes, rate, elapsed, and a percentage
//! when the total is known. Drawn only when stderr is a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress display (invisible when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Start showing progress of `what`; `total` bytes when known.
    pub fn new(what: &str, total: Option<u64>) -> Progress {
        let bar = match total {
            Some(t) if t > 0 => {
                let bar = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}",
                    )
                    .expect("valid template"),
                );
                bar
            }
            _ => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{msg} {bytes} {binary_bytes_per_sec} {elapsed}")
                        .expect("valid template"),
                );
                bar
            }
        };
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar }
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Remove the display.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The seed's size format: MiB with two decimals and " MB" ("145.23 MB").
pub fn seed_size(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_size_format() {
        assert_eq!(super::seed_size(152_283_791), "145.23 MB");
        assert_eq!(super::seed_size(0), "0.00 MB");
    }
}
