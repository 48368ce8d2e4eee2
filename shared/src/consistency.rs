//! How consistent a backup's copy of the database files is: what
//! orca-export records, and what orca-list, orca-restore and the reports say.

use serde::{Deserialize, Serialize};

/// How the files were copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// No running container used the volume: a plain copy of files at rest.
    Offline,
    /// The containers were stopped cleanly for the copy and started again.
    Stopped,
    /// A container did not stop within the grace period and was killed: the
    /// files are a crash's (only the database's crash recovery can use them).
    Killed,
    /// Copied while the database ran, without its help: may not restore.
    Live,
}

impl Consistency {
    /// The name in records and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Offline => "offline",
            Consistency::Stopped => "stopped",
            Consistency::Killed => "killed",
            Consistency::Live => "live",
        }
    }

    /// The value of `name` (`None` for anything else).
    pub fn from_name(name: &str) -> Option<Consistency> {
        [
            Consistency::Offline,
            Consistency::Stopped,
            Consistency::Killed,
            Consistency::Live,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    /// Whether the copy is a consistent one (the `consistent` field).
    pub fn is_consistent(self) -> bool {
        matches!(self, Consistency::Offline | Consistency::Stopped)
    }

    /// What it means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Consistency::Offline => "consistent: no database was running on the volume",
            Consistency::Stopped => "consistent: the database was stopped cleanly for the copy",
            Consistency::Killed => {
                "NOT consistent: the database did not stop in time and was killed; only its crash recovery can use these files"
            }
            Consistency::Live => {
                "NOT consistent: a live copy taken while the database ran; it may not restore"
            }
        }
    }

    /// What a manifest or record that predates the `consistency` field says:
    /// `consistent` and whether containers were stopped.
    pub fn derived(consistent: bool, stopped_any: bool) -> Consistency {
        match (consistent, stopped_any) {
            (true, true) => Consistency::Stopped,
            (true, false) => Consistency::Offline,
            (false, _) => Consistency::Live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_two_are_consistent() {
        for c in [
            Consistency::Offline,
            Consistency::Stopped,
            Consistency::Killed,
            Consistency::Live,
        ] {
            assert_eq!(Consistency::from_name(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
        assert!(!Consistency::Killed.is_consistent());
        assert!(!Consistency::Live.is_consistent());
        assert_eq!(Consistency::from_name("crash"), None);
        assert_eq!(Consistency::derived(true, true), Consistency::Stopped);
        assert_eq!(Consistency::derived(false, true), Consistency::Live);
    }
}
