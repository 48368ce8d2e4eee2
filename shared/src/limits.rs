//! The ranges of the numbers and durations a user can give (flags, config,
//! record fields), in one place: out of range is a usage error (exit 2) that
//! names the value, never an overflow or a panic.

use chrono::Duration;

/// The most days a retention rule may span (100 years).
pub const MAX_AGE_DAYS: u64 = 36_500;
/// The most backups a count rule may keep.
pub const MAX_COUNT: u64 = 1_000_000;
/// The largest size warning, in MB (1 TiB).
pub const MAX_MIN_SIZE_MB: u64 = 1 << 20;
/// The longest `docker stop` grace period (a day).
pub const MAX_STOP_SECONDS: u64 = 86_400;
/// The range of `engine_timeout_seconds`.
pub const ENGINE_TIMEOUT: (u64, u64) = (1, 3_600);
/// `max_freeze_seconds`: a freeze of writes longer than an hour is an outage.
pub const FREEZE_SECONDS: (u64, u64) = (1, 3_600);

/// Whether `value` is in `min..=max`, as a message naming it when not.
pub fn check(what: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{what} {value} is out of range (give {min} to {max})"
        ))
    }
}

/// An age like `7d`, `12h` or `30m` (at most 100 years), as a duration.
pub fn parse_age(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let minutes_per = match unit {
        'd' => 24 * 60,
        'h' => 60,
        'm' => 1,
        _ => return None,
    };
    let minutes = n.checked_mul(minutes_per)?;
    if minutes > MAX_AGE_DAYS * 24 * 60 {
        return None;
    }
    Some(Duration::minutes(minutes as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Some(Duration::days(7)));
        assert_eq!(parse_age("12h"), Some(Duration::hours(12)));
        assert_eq!(parse_age("30m"), Some(Duration::minutes(30)));
        assert_eq!(parse_age("36500d"), Some(Duration::days(36_500)));
        for bad in [
            "",
            "d",
            "7",
            "-7d",
            "+7d",
            "7é",
            "é",
            "7 d",
            "36501d",
            "100000000d",
            "999999999999d",
            "99999999999999999999999d",
            "7dd",
            "٧d",
        ] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_name_the_value() {
        assert!(check("x", 5, 0, 10).is_ok());
        let e = check("--max-age-days", 200_000_000_000, 0, MAX_AGE_DAYS).unwrap_err();
        assert!(e.contains("200000000000") && e.contains("36500"), "{e}");
    }
}
