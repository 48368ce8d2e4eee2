//! How consistent a backup's copy of the database files is: what
//! orca-export records, and what orca-list, orca-restore and the reports say.

use serde::{Deserialize, Serialize};

/// How the files were copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// No running container used the volume: a plain copy of files at rest.
    Offline,
    /// Copied while the database ran, with its help: SQL Server's snapshot
    /// freeze or PostgreSQL's backup mode (see [`HotCopy`]).
    Hot,
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
            Consistency::Hot => "hot",
            Consistency::Stopped => "stopped",
            Consistency::Killed => "killed",
            Consistency::Live => "live",
        }
    }

    /// The value of `name` (`None` for anything else).
    pub fn from_name(name: &str) -> Option<Consistency> {
        [
            Consistency::Offline,
            Consistency::Hot,
            Consistency::Stopped,
            Consistency::Killed,
            Consistency::Live,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    /// Whether the copy is a consistent one (the `consistent` field).
    pub fn is_consistent(self) -> bool {
        matches!(
            self,
            Consistency::Offline | Consistency::Hot | Consistency::Stopped
        )
    }

    /// What it means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Consistency::Offline => "consistent: no database was running on the volume",
            Consistency::Hot => {
                "consistent: a hot copy, taken while the database ran, with its help (snapshot freeze or backup mode)"
            }
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

/// How consistent a copy orca-export is asked for (`--consistency`, config
/// `consistency`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Wanted {
    /// Nothing running: a plain copy; a database orca can take a hot copy
    /// of: hot; anything else: a live copy with a warning.
    #[default]
    Auto,
    /// A hot copy, or nothing (exit 9) when the database cannot give one.
    Hot,
    /// Stop the containers for the copy and start them again.
    Stop,
    /// Copy while everything runs, without the database's help.
    Live,
}

impl Wanted {
    /// The name in flags, config and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Wanted::Auto => "auto",
            Wanted::Hot => "hot",
            Wanted::Stop => "stop",
            Wanted::Live => "live",
        }
    }
}

/// What a hot copy was: in the record and the manifest beside
/// `consistency: "hot"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotCopy {
    /// `sqlserver` or `postgres`.
    pub engine: String,
    /// The engine's version as it reported it.
    #[serde(default)]
    pub version: String,
    /// `snapshot-freeze` (SQL Server 2022+) or `backup-mode` (PostgreSQL).
    pub method: String,
    /// The database container that helped.
    pub container: String,
    /// The databases the copy is consistent for (SQL Server: the user
    /// databases frozen; PostgreSQL: the whole cluster).
    #[serde(default)]
    pub databases: Vec<String>,
    /// How long the database's writes were held, in milliseconds (0 for
    /// PostgreSQL, whose backup mode never holds them).
    pub frozen_ms: u64,
    /// From the start of the freeze or backup mode to its end.
    #[serde(default)]
    pub window_ms: u64,
    /// The longest the guard in the container would have let it last.
    #[serde(default)]
    pub max_freeze_seconds: u64,
    /// PostgreSQL: the WAL segments the archive carries for recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal_segments: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_two_are_consistent() {
        for c in [
            Consistency::Offline,
            Consistency::Hot,
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
        assert!(Consistency::Hot.is_consistent());
        assert!(!Consistency::Killed.is_consistent());
        assert!(!Consistency::Live.is_consistent());
        assert_eq!(Consistency::from_name("crash"), None);
        assert_eq!(Consistency::derived(true, true), Consistency::Stopped);
        assert_eq!(Consistency::derived(false, true), Consistency::Live);
    }
}
