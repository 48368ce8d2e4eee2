//! A fingerprint of SQL Server's `sa` password, never the password.
//!
//! SQL Server keeps the `sa` password inside the volume: `MSSQL_SA_PASSWORD`
//! (or the older `SA_PASSWORD`) only applies when the master database is
//! first created, and Aspire keeps the value in the AppHost's user secrets. A
//! backup taken under another password restores a database Orca then cannot
//! log in to ("Login failed for user 'sa'"). orca-export records a fingerprint
//! of the password the containers on the volume had; orca-restore and
//! orca-list compare it with the current containers'.
//!
//! The fingerprint: `key = scrypt(password, SHA-256("orca-backup/sa-password/v1/"
//! || volume), log_n 14, r 8, p 1)`, then `SHA-256(key || salt)` with a random
//! salt per backup. scrypt makes every guess expensive for someone holding a
//! manifest (manifests stay readable even when archives are encrypted); the
//! per-volume scrypt salt lets orca-list derive the key once per volume and
//! compare many backups cheaply.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The environment variables SQL Server reads the password from, in order.
pub const VARIABLES: [&str; 2] = ["MSSQL_SA_PASSWORD", "SA_PASSWORD"];
/// The scheme written with each fingerprint.
pub const SCHEME: &str = "scrypt-14-8-1/sha256-v1";

/// One container's password, fingerprinted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The container whose environment it came from.
    pub container: String,
    /// The variable (`MSSQL_SA_PASSWORD` or `SA_PASSWORD`).
    pub variable: String,
    /// How it was computed.
    pub scheme: String,
    /// Random salt (hex).
    pub salt: String,
    /// The fingerprint (hex).
    pub value: String,
}

/// The password a container's environment (`KEY=value` lines) sets, with its variable.
pub fn from_env(env: &[String]) -> Option<(String, String)> {
    for var in VARIABLES {
        let prefix = format!("{var}=");
        if let Some(v) = env.iter().find_map(|e| e.strip_prefix(&prefix))
            && !v.is_empty()
        {
            return Some((var.to_string(), v.to_string()));
        }
    }
    None
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Derives keys, remembering each (volume, password) pair's.
#[derive(Default)]
pub struct Keys {
    cache: HashMap<(String, String), [u8; 32]>,
}

impl Keys {
    /// The scrypt key for a password on a volume.
    pub fn key(&mut self, volume: &str, password: &str) -> [u8; 32] {
        *self
            .cache
            .entry((volume.to_string(), password.to_string()))
            .or_insert_with(|| {
                let salt = Sha256::digest(format!("orca-backup/sa-password/v1/{volume}"));
                let params = scrypt::Params::new(14, 8, 1, 32).expect("valid scrypt parameters");
                let mut key = [0u8; 32];
                scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key)
                    .expect("a 32-byte scrypt output");
                key
            })
    }

    /// A new fingerprint of `password` with a fresh salt.
    pub fn fingerprint(
        &mut self,
        volume: &str,
        container: &str,
        variable: &str,
        password: &str,
    ) -> anyhow::Result<Fingerprint> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt)
            .map_err(|e| crate::err!(Failure, "no randomness for a salt: {e}"))?;
        let key = self.key(volume, password);
        Ok(Fingerprint {
            container: container.to_string(),
            variable: variable.to_string(),
            scheme: SCHEME.to_string(),
            value: hex(&mac(&key, &salt)),
            salt: hex(&salt),
        })
    }

    /// Whether `password` is the one fingerprinted (`None`: another scheme).
    pub fn matches(&mut self, fp: &Fingerprint, volume: &str, password: &str) -> Option<bool> {
        if fp.scheme != SCHEME {
            return None;
        }
        let salt: Vec<u8> = (0..fp.salt.len() / 2)
            .map(|i| u8::from_str_radix(fp.salt.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        let key = self.key(volume, password);
        Some(hex(&mac(&key, &salt)) == fp.value)
    }
}

/// Whether the current password of a container on `volume` differs from the
/// one the backup recorded: `Some(false)` when it matches one of the
/// fingerprints, `Some(true)` when it matches none, `None` when no
/// fingerprint can be checked (none, or only schemes this build does not
/// know). orca-restore and orca-list both decide with this.
pub fn differs(
    keys: &mut Keys,
    fingerprints: &[Fingerprint],
    volume: &str,
    password: &str,
) -> Option<bool> {
    let results: Vec<bool> = fingerprints
        .iter()
        .filter_map(|fp| keys.matches(fp, volume, password))
        .collect();
    if results.is_empty() {
        None
    } else {
        Some(!results.contains(&true))
    }
}

fn mac(key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(salt);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemes_cannot_tell() {
        let mut keys = Keys::default();
        let mut fp = keys
            .fingerprint("v", "c", "MSSQL_SA_PASSWORD", "pw")
            .unwrap();
        assert_eq!(
            differs(&mut keys, std::slice::from_ref(&fp), "v", "pw"),
            Some(false)
        );
        assert_eq!(
            differs(&mut keys, std::slice::from_ref(&fp), "v", "other"),
            Some(true)
        );
        fp.scheme = "from-the-future".into();
        assert_eq!(differs(&mut keys, &[fp], "v", "other"), None);
        assert_eq!(differs(&mut keys, &[], "v", "other"), None);
    }

    #[test]
    fn fingerprints_match_only_their_password_and_hide_it() {
        let mut keys = Keys::default();
        let a = keys
            .fingerprint("vol", "sql", "MSSQL_SA_PASSWORD", "Secret#1")
            .unwrap();
        let b = keys
            .fingerprint("vol", "sql", "MSSQL_SA_PASSWORD", "Secret#1")
            .unwrap();
        assert_ne!(a.value, b.value, "salted");
        assert!(!a.value.contains("Secret"));
        assert_eq!(keys.matches(&a, "vol", "Secret#1"), Some(true));
        assert_eq!(keys.matches(&a, "vol", "Other#2"), Some(false));
        assert_eq!(keys.matches(&a, "other-vol", "Secret#1"), Some(false));
        let mut old = a.clone();
        old.scheme = "future".into();
        assert_eq!(keys.matches(&old, "vol", "Secret#1"), None);
    }

    #[test]
    fn the_password_comes_from_the_right_variable() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            from_env(&env(&["SA_PASSWORD=old", "MSSQL_SA_PASSWORD=new"])),
            Some(("MSSQL_SA_PASSWORD".into(), "new".into()))
        );
        assert_eq!(
            from_env(&env(&["SA_PASSWORD=old"])),
            Some(("SA_PASSWORD".into(), "old".into()))
        );
        assert_eq!(from_env(&env(&["MSSQL_SA_PASSWORD=", "X=1"])), None);
    }
}
