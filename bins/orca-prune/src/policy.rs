//! The retention policy as a pure function: backups and a time in, a decision
//! with its reason for each backup out. Nothing here touches a file.
//!
//! Keep rules are a union, as in restic's `forget`: a timestamped backup is kept
//! when it is among the newest `max_count` OR younger than `max_age_days`; `0`
//! disables a rule. The newest backup is always kept, and so is the backup the
//! pipeline just made. Named backups are milestones: kept, unless
//! `include_named`, in which case they join the timestamped ones, judged by
//! their file's modification time.

use chrono::{DateTime, Duration, Utc};
use orca_shared::names::Kind;

/// The rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest N (0: rule off).
    pub max_count: u64,
    /// Keep those younger than N days (0: rule off).
    pub max_age_days: u64,
    /// Judge named backups too.
    pub include_named: bool,
}

/// What the policy needs to know about a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// File name (for a stable order among equal times).
    pub name: String,
    /// Timestamped or named.
    pub kind: Kind,
    /// The time in its name (timestamped) or its modification time (named).
    pub time: DateTime<Utc>,
    /// Reasons outside the rules that keep it (the backup just made, one an
    /// interrupted restore needs).
    pub pinned: Vec<String>,
}

/// Keep or remove, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep, with the rule(s) that keep it.
    Keep(String),
    /// Remove, with the rule that lets it go.
    Prune(String),
}

impl Decision {
    /// Whether the backup stays.
    pub fn keeps(&self) -> bool {
        matches!(self, Decision::Keep(_))
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Keep(r) | Decision::Prune(r) => r,
        }
    }
}

/// Decide for every item (same order as `items`).
pub fn decide(items: &[Item], policy: Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut decisions: Vec<Option<Decision>> = vec![None; items.len()];
    let mut pool: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.kind == Kind::Named && !policy.include_named {
            let mut reasons = vec!["named".to_string()];
            reasons.extend(item.pinned.iter().cloned());
            decisions[i] = Some(Decision::Keep(reasons.join(", ")));
        } else {
            pool.push(i);
        }
    }
    // Newest first; equal times by their place in the minute (`-2` after
    // the first), then by name, so the order is total.
    pool.sort_by(|&a, &b| {
        items[b]
            .time
            .cmp(&items[a].time)
            .then_with(|| {
                orca_shared::names::minute_seq(&items[b].name)
                    .cmp(&orca_shared::names::minute_seq(&items[a].name))
            })
            .then_with(|| items[b].name.cmp(&items[a].name))
    });
    let max_age = Duration::days(policy.max_age_days.min(i64::MAX as u64 / 86_400) as i64);
    for (rank, &i) in pool.iter().enumerate() {
        let item = &items[i];
        let by_count = policy.max_count > 0 && (rank as u64) < policy.max_count;
        let by_age = policy.max_age_days > 0 && now - item.time < max_age;
        let mut reasons = Vec::new();
        if by_count {
            reasons.push(format!("newest {}", policy.max_count));
        }
        if by_age {
            reasons.push(format!("within {} days", policy.max_age_days));
        }
        reasons.extend(item.pinned.iter().cloned());
        if rank == 0 && reasons.is_empty() {
            reasons.push("newest backup (always kept)".to_string());
        }
        decisions[i] = Some(if reasons.is_empty() {
            Decision::Prune(prune_reason(policy))
        } else {
            Decision::Keep(reasons.join(", "))
        });
    }
    decisions
        .into_iter()
        .map(|d| d.expect("every item decided"))
        .collect()
}

fn prune_reason(p: Policy) -> String {
    match (p.max_age_days > 0, p.max_count > 0) {
        (true, true) => format!(
            "older than {} days and beyond newest {}",
            p.max_age_days, p.max_count
        ),
        (true, false) => format!("older than {} days", p.max_age_days),
        (false, true) => format!("beyond newest {}", p.max_count),
        (false, false) => "not the newest (both keep rules are off)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap()
    }

    /// `n` timestamped backups, one every `step_days`, the newest `start_days` ago.
    fn series(n: usize, start_days: i64, step_days: i64) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let t = now() - Duration::days(start_days + i as i64 * step_days);
                Item {
                    name: format!("orca-db-{}.tar.gz", t.format("%Y-%m-%d-%H-%M")),
                    kind: Kind::Timestamped,
                    time: t,
                    pinned: Vec::new(),
                }
            })
            .collect()
    }

    #[test]
    fn within_a_minute_the_later_backup_is_the_newer() {
        let t = now() - Duration::days(3);
        let items: Vec<Item> = ["", "-2", "-10", "-9"]
            .iter()
            .map(|seq| Item {
                name: format!("orca-db-{}{seq}.tar.gz", t.format("%Y-%m-%d-%H-%M")),
                kind: Kind::Timestamped,
                time: t,
                pinned: Vec::new(),
            })
            .collect();
        let policy = Policy {
            max_count: 1,
            max_age_days: 0,
            include_named: false,
        };
        let d = decide(&items, policy, now());
        let keeps: Vec<&str> = items
            .iter()
            .zip(&d)
            .filter(|(_, d)| d.keeps())
            .map(|(i, _)| i.name.as_str())
            .collect();
        assert_eq!(keeps.len(), 1, "{keeps:?}");
        assert!(keeps[0].ends_with("-10.tar.gz"), "{keeps:?}");
    }

    fn kept(items: &[Item], policy: Policy) -> usize {
        decide(items, policy, now())
            .iter()
            .filter(|d| d.keeps())
            .count()
    }

    const DEFAULT: Policy = Policy {
        max_count: 10,
        max_age_days: 30,
        include_named: false,
    };

    #[test]
    fn table_of_counts_and_ages() {
        // (backups, newest age, spacing in days, policy, expected kept)
        let cases: &[(usize, i64, i64, Policy, usize)] = &[
            (0, 0, 1, DEFAULT, 0),
            (1, 120, 1, DEFAULT, 1), // the newest is always kept, however old
            (10, 0, 1, DEFAULT, 10),
            (11, 0, 1, DEFAULT, 11),  // 11th is 10 days old: within 30 days
            (11, 40, 1, DEFAULT, 10), // all old: newest 10
            (50, 0, 1, DEFAULT, 30),  // days 0..29 are within 30 days
            (50, 0, 3, DEFAULT, 10),  // 0,3..27 within 30 days = 10, newest 10 = same
            (50, 0, 120 / 50, DEFAULT, 15), // every 2 days: 0..28 -> 15
            (
                50,
                0,
                1,
                Policy {
                    max_count: 0,
                    ..DEFAULT
                },
                30,
            ),
            (
                50,
                0,
                1,
                Policy {
                    max_age_days: 0,
                    ..DEFAULT
                },
                10,
            ),
            (
                50,
                0,
                1,
                Policy {
                    max_count: 0,
                    max_age_days: 0,
                    include_named: false,
                },
                1,
            ),
            (
                50,
                35,
                1,
                Policy {
                    max_count: 3,
                    max_age_days: 30,
                    include_named: false,
                },
                3,
            ),
            (10, 0, 12, DEFAULT, 10), // 0..108 days: newest 10 keeps all
            (11, 0, 12, DEFAULT, 10), // the 11th (120 days) goes
        ];
        for &(n, start, step, policy, want) in cases {
            assert_eq!(
                kept(&series(n, start, step), policy),
                want,
                "{n} backups from {start}d every {step}d, {policy:?}"
            );
        }
    }

    /// The worked example in the README, kept honest.
    #[test]
    fn readme_worked_example() {
        let mut items = series(15, 0, 5); // 0, 5, ..., 70 days
        items.push(Item {
            name: "orca-db-before-migration.tar.gz".into(),
            kind: Kind::Named,
            time: now() - Duration::days(365),
            pinned: Vec::new(),
        });
        let d = decide(&items, DEFAULT, now());
        let kept: Vec<bool> = d.iter().map(Decision::keeps).collect();
        assert_eq!(kept, [[true; 10].as_slice(), &[false; 5], &[true]].concat());
        assert_eq!(d[5].reason(), "newest 10, within 30 days");
        assert_eq!(d[6].reason(), "newest 10");
        assert_eq!(d[10].reason(), "older than 30 days and beyond newest 10");
        assert_eq!(d[15].reason(), "named");
        let d = decide(
            &items,
            Policy {
                max_count: 3,
                ..DEFAULT
            },
            now(),
        );
        let kept: Vec<bool> = d.iter().map(Decision::keeps).collect();
        assert_eq!(kept, [[true; 6].as_slice(), &[false; 9], &[true]].concat());
    }

    #[test]
    fn reasons_say_which_rule_decided() {
        let items = series(12, 0, 5); // 0, 5, ..., 55 days
        let d = decide(&items, DEFAULT, now());
        assert_eq!(d[0].reason(), "newest 10, within 30 days");
        assert_eq!(d[9].reason(), "newest 10");
        assert_eq!(
            d[10],
            Decision::Prune("older than 30 days and beyond newest 10".into())
        );
        let d = decide(
            &items,
            Policy {
                max_count: 2,
                max_age_days: 12,
                include_named: false,
            },
            now(),
        );
        assert_eq!(d[2].reason(), "within 12 days");
        assert!(!d[3].keeps());
        let d = decide(
            &series(3, 100, 1),
            Policy {
                max_count: 0,
                max_age_days: 30,
                include_named: false,
            },
            now(),
        );
        assert_eq!(d[0].reason(), "newest backup (always kept)");
        assert_eq!(d[1], Decision::Prune("older than 30 days".into()));
    }

    #[test]
    fn named_backups_are_kept_unless_included() {
        let mut items = series(3, 60, 1);
        items.push(Item {
            name: "orca-db-before-migration.tar.gz".into(),
            kind: Kind::Named,
            time: now() - Duration::days(400),
            pinned: Vec::new(),
        });
        let policy = Policy {
            max_count: 1,
            max_age_days: 0,
            include_named: false,
        };
        let d = decide(&items, policy, now());
        assert_eq!(d[3], Decision::Keep("named".into()));
        assert_eq!(d.iter().filter(|d| d.keeps()).count(), 2);
        let d = decide(
            &items,
            Policy {
                include_named: true,
                ..policy
            },
            now(),
        );
        assert_eq!(d[3], Decision::Prune("beyond newest 1".into()));
        // A recent named one, included, counts like any other.
        items[3].time = now();
        let d = decide(
            &items,
            Policy {
                include_named: true,
                ..policy
            },
            now(),
        );
        assert!(d[3].keeps() && !d[0].keeps());
    }

    #[test]
    fn the_just_made_backup_is_never_pruned() {
        let mut items = series(5, 100, 1);
        items[4].pinned = vec!["just created".into()]; // the oldest by name (e.g. --now in the past)
        let d = decide(
            &items,
            Policy {
                max_count: 1,
                max_age_days: 0,
                include_named: false,
            },
            now(),
        );
        assert_eq!(d[4].reason(), "just created");
        assert!(d[0].keeps());
        assert_eq!(d.iter().filter(|d| d.keeps()).count(), 2);
    }

    #[test]
    fn future_times_and_ties_are_stable() {
        let mut items = series(3, 0, 0); // three with the same time
        items[0].name = "orca-db-a.tar.gz".into();
        items[1].name = "orca-db-c.tar.gz".into();
        items[2].name = "orca-db-b.tar.gz".into();
        let p = Policy {
            max_count: 1,
            max_age_days: 0,
            include_named: false,
        };
        let d = decide(&items, p, now());
        assert!(d[1].keeps() && !d[0].keeps() && !d[2].keeps(), "{d:?}");
        let future = series(1, -3, 1);
        assert!(decide(&future, DEFAULT, now())[0].keeps());
    }
}
