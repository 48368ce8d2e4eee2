//! Who created a helper container or a volume lock, as labels, and whether that
//! process still runs.
//!
//! A process is named by host, operating system, machine id (Linux), pid and
//! start time: a pid alone is reused, and two machines (or Windows and a WSL
//! distribution on one machine) share one engine. Liveness is only judged for
//! processes of this same machine; anything else is "unknown" and left alone.

use std::collections::HashMap;
use std::sync::OnceLock;

use sysinfo::System;
#[cfg(not(target_os = "linux"))]
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};

/// Label: the host name of the creating process.
pub const HOST_LABEL: &str = "org.orca-backup.host";
/// Label: its operating system (`linux`, `windows`, `macos`).
pub const OS_LABEL: &str = "org.orca-backup.os";
/// Label: the machine id (Linux `/etc/machine-id`; empty elsewhere).
pub const MACHINE_LABEL: &str = "org.orca-backup.machine";
/// Label: its process id.
pub const PID_LABEL: &str = "org.orca-backup.pid";
/// Label: its start time: on Linux the kernel's boot id and the start tick
/// (exact, and immune to wall-clock steps), elsewhere seconds since the epoch.
pub const STARTED_LABEL: &str = "org.orca-backup.started";
/// Label: the tool that created it.
pub const TOOL_LABEL: &str = "org.orca-backup.tool";

/// A process that created something in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creator {
    /// Host name.
    pub host: String,
    /// Operating system.
    pub os: String,
    /// Machine id, where there is one.
    pub machine: String,
    /// Process id.
    pub pid: u32,
    /// Start time (see [`STARTED_LABEL`]).
    pub started: String,
}

/// Whether a creator still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs.
    Alive,
    /// It ran on this machine and is gone.
    Gone,
    /// It ran elsewhere (another host, OS or machine): cannot tell.
    Unknown,
}

impl Creator {
    /// This process.
    pub fn current() -> &'static Creator {
        static ME: OnceLock<Creator> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            Creator {
                host: host_name(),
                os: std::env::consts::OS.to_string(),
                machine: machine_id(),
                pid,
                started: start_token(pid).unwrap_or_default(),
            }
        })
    }

    /// The labels naming it (plus the tool).
    pub fn labels(&self, tool: &str) -> HashMap<String, String> {
        HashMap::from([
            (HOST_LABEL.to_string(), self.host.clone()),
            (OS_LABEL.to_string(), self.os.clone()),
            (MACHINE_LABEL.to_string(), self.machine.clone()),
            (PID_LABEL.to_string(), self.pid.to_string()),
            (STARTED_LABEL.to_string(), self.started.to_string()),
            (TOOL_LABEL.to_string(), tool.to_string()),
        ])
    }

    /// Read it back from labels; `None` when they do not name a process.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Creator> {
        Some(Creator {
            host: labels.get(HOST_LABEL)?.clone(),
            os: labels.get(OS_LABEL)?.clone(),
            machine: labels.get(MACHINE_LABEL).cloned().unwrap_or_default(),
            pid: labels.get(PID_LABEL)?.parse().ok()?,
            started: labels.get(STARTED_LABEL)?.clone(),
        })
    }

    /// Whether it still runs, as far as this machine can tell.
    pub fn liveness(&self) -> Liveness {
        let me = Creator::current();
        if self.host != me.host || self.os != me.os || self.machine != me.machine {
            return Liveness::Unknown;
        }
        if self.pid == me.pid && self.started == me.started {
            return Liveness::Alive;
        }
        match start_token(self.pid) {
            Some(t) if same_start(&t, &self.started) => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }

    /// "pid 123 on host" for messages.
    pub fn describe(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }

    /// A short name for this process, fit for a volume or container name
    /// (`<machine>-<pid>-<start>`), when labels cannot be attached (volumes
    /// that another tool creates); [`tag_liveness`] reads it back.
    pub fn tag(&self) -> String {
        format!(
            "{}-{}-{}",
            machine_hash(self),
            self.pid,
            start_repr(&self.started)
        )
    }
}

/// Whether the process a [`Creator::tag`] names still runs (`None`: not a tag).
pub fn tag_liveness(tag: &str) -> Option<Liveness> {
    let mut parts = tag.splitn(3, '-');
    let (machine, pid, start) = (parts.next()?, parts.next()?, parts.next()?);
    let pid: u32 = pid.parse().ok()?;
    let me = Creator::current();
    if machine != machine_hash(me) {
        return Some(Liveness::Unknown);
    }
    let alive = match start_token(pid) {
        Some(t) if cfg!(target_os = "linux") => start_repr(&t) == start,
        Some(t) => same_start(&t, start),
        None => false,
    };
    Some(if alive {
        Liveness::Alive
    } else {
        Liveness::Gone
    })
}

fn machine_hash(c: &Creator) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}\0{}\0{}", c.host, c.os, c.machine).as_bytes());
    d.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// The start as it goes into a tag: Linux's long token hashed (exact
/// comparison), elsewhere the seconds themselves (compared within a second).
fn start_repr(started: &str) -> String {
    use sha2::Digest;
    if cfg!(target_os = "linux") {
        let d = sha2::Sha256::digest(started.as_bytes());
        d.iter().take(4).map(|b| format!("{b:02x}")).collect()
    } else {
        started.to_string()
    }
}

fn host_name() -> String {
    System::host_name().unwrap_or_default()
}

fn machine_id() -> String {
    if cfg!(target_os = "linux") {
        for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let Ok(s) = std::fs::read_to_string(p) {
                let s = s.trim();
                if !s.is_empty() {
                    return s.to_string();
                }
            }
        }
    }
    String::new()
}

/// How a process's start is named, if it runs (see [`STARTED_LABEL`]).
#[cfg(target_os = "linux")]
fn start_token(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces; the start tick is field 22,
    // the 20th after the closing parenthesis.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks = after.split_whitespace().nth(19)?;
    Some(format!("{}/{ticks}", boot.trim()))
}

/// How a process's start is named, if it runs (see [`STARTED_LABEL`]).
#[cfg(not(target_os = "linux"))]
fn start_token(pid: u32) -> Option<String> {
    let pid = Pid::from_u32(pid);
    let mut sys = System::new().ok()?;
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    sys.process(pid).map(|p| p.start_time().to_string())
}

fn same_start(a: &str, b: &str) -> bool {
    if cfg!(target_os = "linux") {
        return a == b;
    }
    // Whole seconds: allow rounding between readings.
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.abs_diff(y) <= 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips_through_labels() {
        let me = Creator::current();
        assert!(!me.started.is_empty(), "start time of this process: {me:?}");
        let back = Creator::from_labels(&me.labels("t")).unwrap();
        assert_eq!(&back, me);
        assert_eq!(back.liveness(), Liveness::Alive);
    }

    #[test]
    fn tags_name_this_process_and_not_others() {
        let me = Creator::current();
        let tag = me.tag();
        assert_eq!(tag_liveness(&tag), Some(Liveness::Alive), "{tag}");
        let (machine, rest) = tag.split_once('-').unwrap();
        let (_, start) = rest.split_once('-').unwrap();
        assert_eq!(
            tag_liveness(&format!("{machine}-999999999-{start}")),
            Some(Liveness::Gone)
        );
        assert_eq!(
            tag_liveness(&format!("000000-{}-{start}", me.pid)).filter(|_| machine != "000000"),
            if machine == "000000" {
                None
            } else {
                Some(Liveness::Unknown)
            }
        );
        assert_eq!(tag_liveness("nonsense"), None);
    }

    #[test]
    fn a_finished_process_is_gone_and_other_hosts_unknown() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_token(pid).unwrap_or_else(|| "1".into());
        child.wait().unwrap();
        let me = Creator::current();
        let dead = Creator {
            pid,
            started,
            ..me.clone()
        };
        assert_eq!(dead.liveness(), Liveness::Gone);
        let elsewhere = Creator {
            host: format!("{}-other", me.host),
            ..dead
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        assert!(Creator::from_labels(&HashMap::new()).is_none());
    }
}
