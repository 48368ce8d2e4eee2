//! Finding the Orca SQL Server data volume.
//!
//! Aspire names volumes `<app>.apphost-<10 hex>-<resource>-data` (older versions
//! without the hash). We list volumes with docker's `name=` filter
//! (`volume_filter`), keep those matching the glob `volume_pattern`, and when
//! several match choose deterministically: one mounted by a running container,
//! then one mounted by any container, then the newest, then by name.

use std::cmp::Reverse;

use chrono::DateTime;
use serde::Serialize;

use crate::config::Config;
use crate::docker::{self, ContainerRef};

/// A volume that matched, with what uses it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Candidate {
    /// Volume name.
    pub name: String,
    /// Creation time as docker reports it (RFC 3339).
    pub created_at: String,
    /// Containers (any state) that mount it.
    pub in_use_by: Vec<ContainerRef>,
}

impl Candidate {
    fn rank(&self) -> (bool, bool, i64) {
        let running = self.in_use_by.iter().any(ContainerRef::is_active);
        let used = !self.in_use_by.is_empty();
        let created = DateTime::parse_from_rfc3339(&self.created_at)
            .map(|t| t.timestamp())
            .unwrap_or(i64::MIN);
        (running, used, created)
    }

    fn why(&self) -> String {
        if let Some(c) = self.in_use_by.iter().find(|c| c.is_active()) {
            format!("it is mounted by running container '{}'", c.name)
        } else if let Some(c) = self.in_use_by.first() {
            format!(
                "it is mounted by container '{}' and no candidate is in use by a running one",
                c.name
            )
        } else {
            "no candidate is mounted by a container and it is the newest".to_string()
        }
    }
}

/// The chosen volume and every candidate.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The volume to use.
    pub chosen: Candidate,
    /// All matching volumes, best first.
    pub candidates: Vec<Candidate>,
    /// Why this one was chosen, when there was a choice.
    pub explanation: Option<String>,
}

/// Describe one named volume, which must exist (exit 4 otherwise).
pub fn pinned(name: &str) -> anyhow::Result<Discovery> {
    let info = docker::require_volume(name)?;
    let chosen = Candidate {
        name: info.name,
        created_at: info.created_at,
        in_use_by: docker::containers_using(name)?,
    };
    Ok(Discovery {
        candidates: vec![chosen.clone()],
        chosen,
        explanation: None,
    })
}

/// Find the Orca volume by the configured filter and pattern.
pub fn discover(config: &Config) -> anyhow::Result<Discovery> {
    let pattern = glob::Pattern::new(&config.volume_pattern).map_err(|e| {
        crate::err!(
            Usage,
            "volume_pattern '{}' is not a valid glob: {e}",
            config.volume_pattern
        )
    })?;
    let infos: Vec<docker::VolumeInfo> = docker::volumes(&config.volume_filter)?
        .into_iter()
        .filter(|v| pattern.matches(&v.name))
        .collect();
    if infos.is_empty() {
        return Err(not_found(config));
    }
    let mut candidates = Vec::new();
    for info in infos {
        candidates.push(Candidate {
            in_use_by: docker::containers_using(&info.name)?,
            name: info.name,
            created_at: info.created_at,
        });
    }
    candidates.sort_by(|a, b| {
        Reverse(a.rank())
            .cmp(&Reverse(b.rank()))
            .then_with(|| a.name.cmp(&b.name))
    });
    let chosen = candidates[0].clone();
    let explanation = (candidates.len() > 1).then(|| {
        let others: Vec<&str> = candidates[1..].iter().map(|c| c.name.as_str()).collect();
        format!(
            "{} volumes match '{}'; chose '{}' because {}; others: {} (pick one with --volume NAME)",
            candidates.len(),
            config.volume_pattern,
            chosen.name,
            chosen.why(),
            others.join(", ")
        )
    });
    Ok(Discovery {
        chosen,
        candidates,
        explanation,
    })
}

fn not_found(config: &Config) -> anyhow::Error {
    let close: Vec<String> = docker::volume_names("")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            let l = n.to_lowercase();
            l.contains("orca") || l.contains("sql")
        })
        .take(10)
        .collect();
    let hint = if close.is_empty() {
        format!(
            "no volume matches filter '{}' and pattern '{}'; start Orca once so Aspire creates it, or pass --volume NAME",
            config.volume_filter, config.volume_pattern
        )
    } else {
        format!(
            "no volume matches filter '{}' and pattern '{}'; volumes that look close: {}; pick one with --volume NAME",
            config.volume_filter,
            config.volume_pattern,
            close.join(", ")
        )
    };
    crate::err!(
        VolumeNotFound,
        "Orca SQL volume not found. Is Orca installed? ({hint})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, created: &str, states: &[&str]) -> Candidate {
        Candidate {
            name: name.into(),
            created_at: created.into(),
            in_use_by: states
                .iter()
                .map(|s| ContainerRef {
                    id: "id".into(),
                    name: "c".into(),
                    image: "i".into(),
                    state: s.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn ranking_prefers_running_then_used_then_newest() {
        let old_running = cand("a", "2020-01-01T00:00:00Z", &["running"]);
        let new_used = cand("b", "2026-01-01T00:00:00Z", &["exited"]);
        let newest = cand("c", "2026-06-01T00:00:00+02:00", &[]);
        assert!(old_running.rank() > new_used.rank());
        assert!(new_used.rank() > newest.rank());
        assert!(
            cand("d", "2026-06-01T00:00:00Z", &[]).rank()
                > cand("e", "2026-05-01T00:00:00Z", &[]).rank()
        );
    }
}
