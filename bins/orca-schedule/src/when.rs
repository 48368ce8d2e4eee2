//! When a schedule runs, and how each scheduler says it.

use chrono::{DateTime, Datelike, Duration as Days, Local, NaiveTime, TimeZone, Weekday};
use std::time::Duration;

/// When a schedule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Every day at this time (local).
    Daily(NaiveTime),
    /// Every week on this day at this time (local).
    Weekly(Weekday, NaiveTime),
    /// Every so often.
    Every(Duration),
}

/// `HH:MM`, 24-hour.
pub fn parse_time(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("'{text}' is not a time: give HH:MM, 24-hour (e.g. 02:30)"))
}

/// `mon`, `Monday`... (English, any case).
pub fn parse_day(text: &str) -> Result<Weekday, String> {
    text.trim()
        .parse::<Weekday>()
        .map_err(|_| format!("'{text}' is not a day: give mon, tue, wed, thu, fri, sat or sun"))
}

/// `30m`, `6h`, `1d`, `90s` (at least a minute, at most 31 days).
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("'{text}' is not a duration: give e.g. 30m, 6h or 1d");
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if !(60..=31 * 86_400).contains(&secs) {
        return Err(format!(
            "'{text}': give between 1 minute and 31 days (schedulers count in minutes)"
        ));
    }
    Ok(Duration::from_secs(secs))
}

impl When {
    /// For people and the registry: `daily 02:30`, `weekly mon 02:30`, `every 6h`.
    pub fn describe(&self) -> String {
        match self {
            When::Daily(t) => format!("daily {}", t.format("%H:%M")),
            When::Weekly(d, t) => format!("weekly {} {}", day_name(*d), t.format("%H:%M")),
            When::Every(d) => format!("every {}", human(*d)),
        }
    }

    /// Read back what [`When::describe`] wrote.
    pub fn parse(text: &str) -> Result<When, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        match parts.as_slice() {
            ["daily", t] => Ok(When::Daily(parse_time(t)?)),
            ["weekly", d, t] => Ok(When::Weekly(parse_day(d)?, parse_time(t)?)),
            ["every", d] => Ok(When::Every(parse_every(d)?)),
            _ => Err(format!("'{text}' is not a schedule")),
        }
    }

    /// The next run after `now` (`last`: the last run, for `Every`).
    pub fn next_after(
        &self,
        now: DateTime<Local>,
        last: Option<DateTime<Local>>,
    ) -> Option<DateTime<Local>> {
        match self {
            When::Daily(t) => (0..3).find_map(|d| {
                let day = now.date_naive() + Days::days(d);
                let at = Local.from_local_datetime(&day.and_time(*t)).earliest()?;
                (at > now).then_some(at)
            }),
            When::Weekly(wd, t) => (0..15).find_map(|d| {
                let day = now.date_naive() + Days::days(d);
                if day.weekday() != *wd {
                    return None;
                }
                let at = Local.from_local_datetime(&day.and_time(*t)).earliest()?;
                (at > now).then_some(at)
            }),
            When::Every(d) => {
                let step = Days::from_std(*d).ok()?;
                let mut at = last? + step;
                while at <= now {
                    at += step;
                }
                Some(at)
            }
        }
    }

    /// For `Every`: the next time on cron's grid (`*/N` minutes or hours).
    pub fn next_on_grid(&self, now: DateTime<Local>) -> Option<DateTime<Local>> {
        use chrono::Timelike;
        let When::Every(d) = self else {
            return self.next_after(now, None);
        };
        let step = (d.as_secs() / 60).max(1) as i64;
        let mut at = now.with_second(0)?.with_nanosecond(0)? + Days::minutes(1);
        for _ in 0..(60 * 24 * 2) {
            let ok = if step < 60 {
                i64::from(at.minute()) % step == 0
            } else {
                at.minute() == 0 && i64::from(at.hour()) % (step / 60) == 0
            };
            if ok {
                return Some(at);
            }
            at += Days::minutes(1);
        }
        None
    }

    /// systemd's `[Timer]` lines.
    pub fn systemd_timer(&self) -> String {
        match self {
            When::Daily(t) => format!(
                "OnCalendar=*-*-* {}\nPersistent=true\n",
                t.format("%H:%M:00")
            ),
            When::Weekly(d, t) => format!(
                "OnCalendar={} *-*-* {}\nPersistent=true\n",
                day_name_title(*d),
                t.format("%H:%M:00")
            ),
            When::Every(d) => format!("OnBootSec=5min\nOnUnitActiveSec={}s\n", d.as_secs()),
        }
    }

    /// The five time fields of a crontab line.
    pub fn cron_fields(&self) -> Result<String, String> {
        use chrono::Timelike;
        match self {
            When::Daily(t) => Ok(format!("{} {} * * *", t.minute(), t.hour())),
            When::Weekly(d, t) => Ok(format!(
                "{} {} * * {}",
                t.minute(),
                t.hour(),
                d.num_days_from_sunday()
            )),
            When::Every(d) => {
                let m = d.as_secs() / 60;
                if d.as_secs() % 60 != 0 {
                    Err("cron counts in whole minutes".into())
                } else if m < 60 && 60 % m == 0 {
                    Ok(if m == 1 {
                        "* * * * *".into()
                    } else {
                        format!("*/{m} * * * *")
                    })
                } else if m % 60 == 0 && 24 % (m / 60) == 0 && m / 60 <= 24 {
                    let h = m / 60;
                    Ok(if h == 24 {
                        "0 0 * * *".into()
                    } else {
                        format!("0 */{h} * * *")
                    })
                } else {
                    Err(format!(
                        "cron cannot run something every {}: give minutes that divide an hour (1m, 5m, 15m, 30m...) or hours that divide a day (1h, 2h, 6h, 12h, 24h)",
                        human(*d)
                    ))
                }
            }
        }
    }

    /// launchd's schedule keys, as plist XML.
    pub fn launchd_keys(&self) -> String {
        use chrono::Timelike;
        match self {
            When::Daily(t) => format!(
                "\t<key>StartCalendarInterval</key>\n\t<dict>\n\t\t<key>Hour</key>\n\t\t<integer>{}</integer>\n\t\t<key>Minute</key>\n\t\t<integer>{}</integer>\n\t</dict>\n",
                t.hour(),
                t.minute()
            ),
            When::Weekly(d, t) => format!(
                "\t<key>StartCalendarInterval</key>\n\t<dict>\n\t\t<key>Weekday</key>\n\t\t<integer>{}</integer>\n\t\t<key>Hour</key>\n\t\t<integer>{}</integer>\n\t\t<key>Minute</key>\n\t\t<integer>{}</integer>\n\t</dict>\n",
                d.num_days_from_sunday(),
                t.hour(),
                t.minute()
            ),
            When::Every(d) => format!(
                "\t<key>StartInterval</key>\n\t<integer>{}</integer>\n",
                d.as_secs()
            ),
        }
    }

    /// Task Scheduler's trigger, starting from `now`.
    pub fn task_trigger(&self, now: DateTime<Local>) -> String {
        let start = |at: DateTime<Local>| at.format("%Y-%m-%dT%H:%M:%S").to_string();
        match self {
            When::Daily(_) | When::Weekly(..) => {
                let first = self.next_after(now, None).unwrap_or(now);
                let by = match self {
                    When::Weekly(d, _) => format!(
                        "      <ScheduleByWeek>\n        <DaysOfWeek>\n          <{}/>\n        </DaysOfWeek>\n        <WeeksInterval>1</WeeksInterval>\n      </ScheduleByWeek>\n",
                        day_name_full(*d)
                    ),
                    _ => "      <ScheduleByDay>\n        <DaysInterval>1</DaysInterval>\n      </ScheduleByDay>\n"
                        .to_string(),
                };
                format!(
                    "    <CalendarTrigger>\n      <StartBoundary>{}</StartBoundary>\n      <Enabled>true</Enabled>\n{by}    </CalendarTrigger>\n",
                    start(first)
                )
            }
            When::Every(d) => format!(
                "    <TimeTrigger>\n      <StartBoundary>{}</StartBoundary>\n      <Enabled>true</Enabled>\n      <Repetition>\n        <Interval>PT{}M</Interval>\n        <StopAtDurationEnd>false</StopAtDurationEnd>\n      </Repetition>\n    </TimeTrigger>\n",
                start(now + Days::minutes(1)),
                (d.as_secs() / 60).max(1)
            ),
        }
    }
}

fn day_name(d: Weekday) -> String {
    d.to_string().to_ascii_lowercase()
}

fn day_name_title(d: Weekday) -> String {
    d.to_string()
}

fn day_name_full(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// `6h`, `30m`, `1d`, `90s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_describe_round_trip() {
        for text in [
            "daily 02:30",
            "weekly mon 23:05",
            "every 6h",
            "every 15m",
            "every 1d",
        ] {
            assert_eq!(When::parse(text).unwrap().describe(), text);
        }
        assert!(parse_time("25:00").is_err());
        assert!(parse_day("someday").is_err());
        assert!(parse_every("30s").is_err());
        assert!(parse_every("6x").is_err());
        assert!(parse_every("40d").is_err());
    }

    #[test]
    fn cron_fields_follow_the_spec_or_refuse() {
        assert_eq!(
            When::parse("daily 02:30").unwrap().cron_fields().unwrap(),
            "30 2 * * *"
        );
        assert_eq!(
            When::parse("weekly sun 04:00")
                .unwrap()
                .cron_fields()
                .unwrap(),
            "0 4 * * 0"
        );
        assert_eq!(
            When::parse("every 1m").unwrap().cron_fields().unwrap(),
            "* * * * *"
        );
        assert_eq!(
            When::parse("every 15m").unwrap().cron_fields().unwrap(),
            "*/15 * * * *"
        );
        assert_eq!(
            When::parse("every 6h").unwrap().cron_fields().unwrap(),
            "0 */6 * * *"
        );
        assert!(When::parse("every 7m").unwrap().cron_fields().is_err());
        assert!(When::parse("every 5h").unwrap().cron_fields().is_err());
    }

    #[test]
    fn next_runs_are_in_the_future() {
        let now = Local.with_ymd_and_hms(2026, 12, 6, 23, 0, 0).unwrap();
        let next = When::parse("daily 02:30")
            .unwrap()
            .next_after(now, None)
            .unwrap();
        assert_eq!(
            next.format("%Y-%m-%d %H:%M").to_string(),
            "2026-12-07 02:30"
        );
        let next = When::parse("weekly mon 01:00")
            .unwrap()
            .next_after(now, None)
            .unwrap();
        assert_eq!(
            next.format("%Y-%m-%d %H:%M").to_string(),
            "2026-12-07 01:00"
        );
        let last = now - Days::hours(13);
        let next = When::parse("every 6h")
            .unwrap()
            .next_after(now, Some(last))
            .unwrap();
        assert_eq!(
            next.format("%Y-%m-%d %H:%M").to_string(),
            "2026-12-07 04:00"
        );
        assert!(
            When::parse("every 6h")
                .unwrap()
                .next_after(now, None)
                .is_none()
        );
    }
}
