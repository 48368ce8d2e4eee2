//! `config.json`: optional settings, every key optional, strict about types.
//!
//! The file is `--config PATH`, else `$ORCA_CONFIG`, else `<base>/config.json`.
//! A missing default file means defaults; a missing file that was named
//! explicitly is an error (a typo must not silently mean "defaults"). Malformed
//! JSON, a wrong type or a negative number is a usage error naming the file, the
//! key and the line; an unknown key is a warning on stderr.
//! Precedence everywhere: flag > stdin record > config > default.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::Compression;
use crate::paths;

/// Retention settings (`retention.*`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Retention {
    /// Keep the newest N timestamped backups (0 disables the rule).
    #[serde(deserialize_with = "non_negative")]
    pub max_count: u64,
    /// Keep timestamped backups younger than N days (0 disables the rule).
    #[serde(deserialize_with = "non_negative")]
    pub max_age_days: u64,
    /// Never prune named backups.
    pub keep_named: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 10,
            max_age_days: 30,
            keep_named: true,
        }
    }
}

/// Encryption settings (`encryption.*`): public recipients to encrypt to, and
/// where the identity to decrypt with lives. Never a secret itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Encryption {
    /// age recipients (`age1...`) or SSH public keys (`ssh-ed25519 ...`, `ssh-rsa ...`).
    pub recipients: Vec<String>,
    /// A file of recipients, one per line (`#` comments), as `age -R` reads.
    pub recipients_file: Option<String>,
    /// An age identity file or SSH private key to decrypt with.
    pub identity_file: Option<String>,
    /// Encrypt every export to the recipients without `--encrypt`.
    pub always: bool,
}

/// How to reach S3-compatible storage (`s3.*`); credentials come from the
/// standard AWS variables and files, never from here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct S3 {
    /// The endpoint URL (`https://s3.example.com`, `http://127.0.0.1:8333`);
    /// default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS itself.
    pub endpoint: Option<String>,
    /// The signing region; default: `AWS_REGION`, `AWS_DEFAULT_REGION`, else
    /// `us-east-1` for other endpoints and the bucket's own region on AWS.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: on for a
    /// configured endpoint, off (virtual-hosted) for AWS.
    pub path_style: Option<bool>,
    /// The AWS profile (shared config and credentials files); default `AWS_PROFILE`.
    pub profile: Option<String>,
}

/// When `orca-notify` (and the workflow, orca-backup, orca-guard) send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NotifyLevel {
    /// Failures only.
    #[default]
    Error,
    /// Every run, success or failure.
    Info,
}

impl NotifyLevel {
    /// As written in config and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyLevel::Error => "error",
            NotifyLevel::Info => "info",
        }
    }
}

/// Notifications (`notify.*`): where to send and what. The URLs may hold
/// credentials (shoutrrr's forms); they are never printed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Notify {
    /// shoutrrr-style URLs: smtp://, generic+https://, ntfy://, gotify://,
    /// slack://, discord://, teams://, hc:// or a healthchecks ping URL.
    pub urls: Vec<String>,
    /// `error` (failures only) or `info` (every run).
    pub level: NotifyLevel,
    /// The message's body: a template (MiniJinja) of the record's fields.
    pub template: Option<String>,
    /// The message's title: a template of the record's fields.
    pub title: Option<String>,
    /// How long one attempt to send may take.
    #[serde(deserialize_with = "non_negative")]
    pub timeout_seconds: u64,
    /// How many times a failed send is tried again.
    #[serde(deserialize_with = "non_negative")]
    pub retries: u64,
    /// More trusted certificates (PEM) for the servers notified (a mail
    /// server with a company CA).
    pub ca_file: Option<String>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            urls: Vec::new(),
            level: NotifyLevel::Error,
            template: None,
            title: None,
            timeout_seconds: 10,
            retries: 2,
            ca_file: None,
        }
    }
}

/// Every setting, with its default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Passed to `docker volume ls --filter name=...`.
    pub volume_filter: String,
    /// Glob the volume name must match.
    pub volume_pattern: String,
    /// Where backups go (default `<base>/backups`).
    pub backups_dir: Option<String>,
    /// gzip, zstd or none.
    pub compression: Compression,
    /// Compression level (default: 6 for gzip, 3 for zstd).
    #[serde(deserialize_with = "non_negative_opt")]
    pub compression_level: Option<u64>,
    /// Warn when an archive is smaller than this many MiB.
    #[serde(deserialize_with = "non_negative")]
    pub min_size_warning_mb: u64,
    /// Prune after every backup made by the workflow script.
    pub auto_cleanup: bool,
    /// The retention policy.
    pub retention: Retention,
    /// How long `docker stop` may take before Docker kills the container.
    #[serde(deserialize_with = "non_negative")]
    pub stop_timeout_seconds: u64,
    /// A local image for helper containers (default: one orca creates, empty).
    pub helper_image: Option<String>,
    /// How long one Docker request may take (and the longest silence in a stream).
    #[serde(deserialize_with = "non_negative")]
    pub engine_timeout_seconds: u64,
    /// Encryption (age).
    pub encryption: Encryption,
    /// Where `orca-copy` copies backups when no `--to` is given.
    pub copy_to: Vec<String>,
    /// S3-compatible storage.
    pub s3: S3,
    /// How long one request to remote storage may take (and the longest
    /// silence in a transfer).
    #[serde(deserialize_with = "non_negative")]
    pub remote_timeout_seconds: u64,
    /// How consistent a copy orca-export makes: auto, hot, stop or live.
    pub consistency: crate::consistency::Wanted,
    /// The longest a hot copy may hold the database's writes (SQL Server's
    /// freeze) or its backup mode, before the guard in the container ends it.
    #[serde(deserialize_with = "non_negative")]
    pub max_freeze_seconds: u64,
    /// Notifications: read leniently by [`Config::parse`] (a mistake there
    /// is a warning, never a reason not to back up).
    #[serde(skip_deserializing)]
    pub notify: Notify,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            volume_filter: "orca.apphost".into(),
            volume_pattern: "*sql-data*".into(),
            backups_dir: None,
            compression: Compression::Gzip,
            compression_level: None,
            min_size_warning_mb: 10,
            auto_cleanup: false,
            retention: Retention::default(),
            stop_timeout_seconds: 30,
            helper_image: None,
            engine_timeout_seconds: 60,
            encryption: Encryption::default(),
            copy_to: Vec::new(),
            s3: S3::default(),
            remote_timeout_seconds: 60,
            consistency: crate::consistency::Wanted::Auto,
            max_freeze_seconds: 60,
            notify: Notify::default(),
        }
    }
}

/// Keys `config.json` understands, for the unknown-key warning.
const KNOWN_KEYS: &[&str] = &[
    "volume_filter",
    "volume_pattern",
    "backups_dir",
    "compression",
    "compression_level",
    "min_size_warning_mb",
    "auto_cleanup",
    "retention",
    "stop_timeout_seconds",
    "helper_image",
    "engine_timeout_seconds",
    "encryption",
    "copy_to",
    "s3",
    "remote_timeout_seconds",
    "consistency",
    "max_freeze_seconds",
    "notify",
];
const KNOWN_RETENTION_KEYS: &[&str] = &["max_count", "max_age_days", "keep_named"];
const KNOWN_ENCRYPTION_KEYS: &[&str] =
    &["recipients", "recipients_file", "identity_file", "always"];
const KNOWN_S3_KEYS: &[&str] = &["endpoint", "region", "path_style", "profile"];
const KNOWN_NOTIFY_KEYS: &[&str] = &[
    "urls",
    "level",
    "template",
    "title",
    "timeout_seconds",
    "retries",
    "ca_file",
];

/// The loaded configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    /// The file they were read from, if one existed.
    pub path: Option<PathBuf>,
    /// Warnings to show on stderr (unknown keys).
    pub warnings: Vec<String>,
}

impl Config {
    /// Load from `explicit` (a `--config` flag), `$ORCA_CONFIG` or the default path.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Loaded> {
        let env = std::env::var_os("ORCA_CONFIG").filter(|v| !v.is_empty());
        let (path, named) = match (explicit, env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => (paths::default_config_path()?, false),
        };
        paths::utf8(&path)?;
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !named => {
                return Ok(Loaded {
                    config: Config::default(),
                    path: None,
                    warnings: vec![],
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => crate::fail!(
                Usage,
                "config file {} does not exist (check --config / ORCA_CONFIG)",
                path.display()
            ),
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("cannot read config file {}", path.display())));
            }
        };
        let text = String::from_utf8(text)
            .map_err(|_| crate::err!(Usage, "config file {} is not UTF-8 text", path.display()))?;
        let (config, warnings) = Config::parse(&text, &path)?;
        Ok(Loaded {
            config,
            path: Some(path),
            warnings,
        })
    }

    /// Parse config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<(Config, Vec<String>)> {
        let file = path.display();
        if text.trim().is_empty() {
            return Ok((Config::default(), vec![]));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            crate::err!(
                Usage,
                "invalid config {file}: line {}: {} (fix the JSON syntax)",
                e.line(),
                strip_position(&crate::record::json_error(text, &e))
            )
        })?;
        let Value::Object(map) = &value else {
            crate::fail!(
                Usage,
                "invalid config {file}: line 1: the file must hold one JSON object"
            );
        };
        let mut warnings = Vec::new();
        for key in map.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "config {file}: line {}: unknown key '{key}' ignored",
                    line_of(text, &[key])
                ));
            }
        }
        for (section, known) in [
            ("retention", KNOWN_RETENTION_KEYS),
            ("encryption", KNOWN_ENCRYPTION_KEYS),
            ("s3", KNOWN_S3_KEYS),
            ("notify", KNOWN_NOTIFY_KEYS),
        ] {
            if let Some(Value::Object(inner)) = map.get(section) {
                for key in inner.keys() {
                    if !known.contains(&key.as_str()) {
                        warnings.push(format!(
                            "config {file}: line {}: unknown key '{section}.{key}' ignored",
                            line_of(text, &[section, key])
                        ));
                    }
                }
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.inner();
            // serde reports where parsing stopped (after the value); the key's
            // own line is what a person looks for.
            let segments: Vec<&str> = key.split('.').collect();
            let line = match line_of(text, &segments) {
                1 => inner.line(),
                l => l,
            };
            crate::err!(
                Usage,
                "invalid config {file}: line {line}: key '{key}': {}",
                strip_position(&inner.to_string())
            )
        })?;
        if let Some(level) = config.compression_level
            && let Err(why) = config.compression.check_level(level)
        {
            crate::fail!(
                Usage,
                "invalid config {file}: line {}: key 'compression_level': {why}",
                line_of(text, &["compression_level"])
            );
        }
        for (key, value) in [
            ("volume_filter", &config.volume_filter),
            ("volume_pattern", &config.volume_pattern),
        ] {
            if value.trim().is_empty() {
                crate::fail!(
                    Usage,
                    "invalid config {file}: line {}: key '{key}' must not be empty",
                    line_of(text, &[key])
                );
            }
        }
        use crate::limits;
        for (key, value, min, max) in [
            (
                "stop_timeout_seconds",
                config.stop_timeout_seconds,
                0,
                limits::MAX_STOP_SECONDS,
            ),
            (
                "engine_timeout_seconds",
                config.engine_timeout_seconds,
                limits::ENGINE_TIMEOUT.0,
                limits::ENGINE_TIMEOUT.1,
            ),
            (
                "remote_timeout_seconds",
                config.remote_timeout_seconds,
                limits::ENGINE_TIMEOUT.0,
                limits::ENGINE_TIMEOUT.1,
            ),
            (
                "max_freeze_seconds",
                config.max_freeze_seconds,
                limits::FREEZE_SECONDS.0,
                limits::FREEZE_SECONDS.1,
            ),
            (
                "min_size_warning_mb",
                config.min_size_warning_mb,
                0,
                limits::MAX_MIN_SIZE_MB,
            ),
            (
                "retention.max_count",
                config.retention.max_count,
                0,
                limits::MAX_COUNT,
            ),
            (
                "retention.max_age_days",
                config.retention.max_age_days,
                0,
                limits::MAX_AGE_DAYS,
            ),
        ] {
            if let Err(why) = limits::check("value", value, min, max) {
                let path: Vec<&str> = key.split('.').collect();
                crate::fail!(
                    Usage,
                    "invalid config {file}: line {}: key '{key}': {why}",
                    line_of(text, &path)
                );
            }
        }
        config.notify = lenient_notify(map.get("notify"), &file.to_string(), text, &mut warnings);
        if let Err(e) = glob::Pattern::new(&config.volume_pattern) {
            crate::fail!(
                Usage,
                "invalid config {file}: line {}: key 'volume_pattern': not a valid glob ({e})",
                line_of(text, &["volume_pattern"])
            );
        }
        Ok((config, warnings))
    }

    /// The compression level to use for `compression` when no flag gives one.
    pub fn level_for(&self, compression: Compression) -> u64 {
        match self.compression_level {
            Some(level) if compression == self.compression => level,
            _ => compression.default_level(),
        }
    }

    /// The deadlines of engine requests.
    pub fn timeouts(&self) -> crate::engine::Timeouts {
        crate::engine::Timeouts {
            request: std::time::Duration::from_secs(self.engine_timeout_seconds),
            stop_grace: std::time::Duration::from_secs(self.stop_timeout_seconds),
        }
    }

    /// The backups directory (not created).
    pub fn backups_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.backups_dir {
            Some(raw) if !raw.trim().is_empty() => paths::resolve_user_path(raw),
            _ => paths::default_backups_dir(),
        }
    }
}

impl Loaded {
    /// Print the warnings on stderr, prefixed with the tool's name.
    pub fn print_warnings(&self, tool: &str) {
        for w in &self.warnings {
            eprintln!("{tool}: warning: {w}");
        }
    }
}

/// `notify.*`, key by key: a key that is wrong is a warning and its default
/// (a typo in the notification settings must not stop a backup, least of
/// all a scheduled one, which then could not even be told).
fn lenient_notify(
    value: Option<&Value>,
    file: &str,
    text: &str,
    warnings: &mut Vec<String>,
) -> Notify {
    let mut n = Notify::default();
    let Some(value) = value else {
        return n;
    };
    let Value::Object(m) = value else {
        warnings.push(format!(
            "config {file}: line {}: key 'notify' must be an object: notifications are off",
            line_of(text, &["notify"])
        ));
        return n;
    };
    let mut warn = |key: &str, why: &str| {
        warnings.push(format!(
            "config {file}: line {}: key 'notify.{key}' {why}",
            line_of(text, &["notify", key])
        ));
    };
    if let Some(v) = m.get("urls") {
        match v {
            Value::String(u) => n.urls = vec![u.clone()],
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(u) => n.urls.push(u.to_string()),
                        None => warn(
                            "urls",
                            &format!("item {} is not a string (a URL): it is ignored", i + 1),
                        ),
                    }
                }
            }
            Value::Null => {}
            _ => warn("urls", "must be a list of URLs: no URL is used"),
        }
    }
    if let Some(v) = m.get("level") {
        match v.as_str() {
            Some("error") => n.level = NotifyLevel::Error,
            Some("info") => n.level = NotifyLevel::Info,
            _ => warn("level", "must be \"error\" or \"info\": error is used"),
        }
    }
    for (key, slot) in [
        ("template", &mut n.template),
        ("title", &mut n.title),
        ("ca_file", &mut n.ca_file),
    ] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => *slot = Some(t.clone()),
            Some(_) => warn(key, "must be a string: it is ignored"),
        }
    }
    for (key, slot, min, max, default) in [
        ("timeout_seconds", &mut n.timeout_seconds, 1, 600, 10),
        ("retries", &mut n.retries, 0, 10, 2),
    ] {
        match m.get(key) {
            None => {}
            Some(v) => match v.as_u64().filter(|x| (min..=max).contains(x)) {
                Some(x) => *slot = x,
                None => warn(
                    key,
                    &format!("must be a whole number from {min} to {max}: {default} is used"),
                ),
            },
        }
    }
    n
}

/// serde_json appends " at line L column C"; we print the line ourselves.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The 1-based line where the quoted keys appear in order (nested lookups), or 1.
fn line_of(text: &str, keys: &[&str]) -> usize {
    let mut from = 0;
    for key in keys {
        let needle = format!("\"{key}\"");
        match text[from..].find(&needle) {
            Some(i) => from += i,
            None => return 1,
        }
    }
    text[..from].matches('\n').count() + 1
}

struct NonNegative;

impl fmt::Display for NonNegative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative whole number")
    }
}

fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| de::Error::custom(format!("must be {NonNegative}, got {n}"))),
        other => Err(de::Error::custom(format!(
            "must be {NonNegative}, got {}",
            crate::record::json_type(&other)
        ))),
    }
}

fn non_negative_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    non_negative(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ErrorKind, kind_of};

    fn parse(text: &str) -> anyhow::Result<(Config, Vec<String>)> {
        Config::parse(text, Path::new("/h/config.json"))
    }

    #[test]
    fn numbers_out_of_range_are_named() {
        let e = parse("{\n \"stop_timeout_seconds\": 1e400\n}").unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("line 2") && m.contains("1e400"), "{m}");
    }

    #[test]
    fn mistakes_in_notify_are_warnings_and_keep_the_rest() {
        let (c, w) = parse(
            "{\n \"notify\": {\n  \"urls\": [\"hc://x\", 3],\n  \"level\": \"warn\",\n  \"timeout_seconds\": 0,\n  \"retries\": 4,\n  \"title\": 7\n }\n}",
        )
        .unwrap();
        assert_eq!(c.notify.urls, vec!["hc://x"]);
        assert_eq!(c.notify.level, NotifyLevel::Error);
        assert_eq!(c.notify.timeout_seconds, 10);
        assert_eq!(c.notify.retries, 4);
        assert_eq!(c.notify.title, None);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].contains("line 3: key 'notify.urls' item 2"), "{w:?}");
        assert!(
            w.iter().any(|x| x.contains("line 4: key 'notify.level'")),
            "{w:?}"
        );
        let (c, w) = parse(r#"{"notify": {"urls": "ntfy://h/t", "level": "info"}}"#).unwrap();
        assert_eq!(c.notify.urls, vec!["ntfy://h/t"]);
        assert_eq!(c.notify.level, NotifyLevel::Info);
        assert!(w.is_empty());
        let (c, w) = parse(r#"{"notify": "hc://x"}"#).unwrap();
        assert!(c.notify.urls.is_empty());
        assert!(w[0].contains("must be an object"));
    }

    #[test]
    fn empty_object_means_defaults() {
        let (c, w) = parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(w.is_empty());
        assert_eq!(c.retention.max_count, 10);
        assert_eq!(c.retention.max_age_days, 30);
        assert!(c.retention.keep_named);
        assert_eq!(c.stop_timeout_seconds, 30);
        assert_eq!(c.level_for(Compression::Gzip), 6);
        assert_eq!(c.level_for(Compression::Zstd), 3);
    }

    #[test]
    fn reads_every_key() {
        let (c, w) = parse(
            r#"{"volume_filter":"x","volume_pattern":"*db*","backups_dir":"/b","compression":"zstd",
               "compression_level":9,"min_size_warning_mb":0,"auto_cleanup":true,
               "retention":{"max_count":3,"max_age_days":0,"keep_named":false},
               "stop_timeout_seconds":60,"helper_image":"img:1"}"#,
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.level_for(Compression::Zstd), 9);
        assert_eq!(c.level_for(Compression::Gzip), 6);
        assert_eq!(
            c.retention,
            Retention {
                max_count: 3,
                max_age_days: 0,
                keep_named: false
            }
        );
        assert_eq!(c.helper_image.as_deref(), Some("img:1"));
        assert!(c.auto_cleanup);
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let cases = [
            (
                "{\n  \"retention\": {\n    \"max_count\": -1\n  }\n}",
                "line 3",
                "retention.max_count",
            ),
            ("{\n\"auto_cleanup\": \"yes\"\n}", "line 2", "auto_cleanup"),
            ("{\n\"compression\": \"xz\"\n}", "line 2", "compression"),
            (
                "{\n\"min_size_warning_mb\": 1.5}",
                "line 2",
                "min_size_warning_mb",
            ),
            (
                "{\n\"compression_level\": 12\n}",
                "line 2",
                "compression_level",
            ),
            (
                "{\n\"volume_pattern\": \"[\"\n}",
                "line 2",
                "volume_pattern",
            ),
            ("{\n\"a\": 1,\n}", "line 3", "JSON syntax"),
            (
                "{\n\"engine_timeout_seconds\": 0\n}",
                "line 2",
                "engine_timeout_seconds",
            ),
            (
                "{\n\"stop_timeout_seconds\": 99999999\n}",
                "line 2",
                "stop_timeout_seconds",
            ),
            (
                "{\n\"retention\": {\n\"max_age_days\": 200000000000}\n}",
                "line 3",
                "200000000000",
            ),
            (
                "{\n\"min_size_warning_mb\": 18446744073709551615\n}",
                "line 2",
                "min_size_warning_mb",
            ),
            ("[1]", "line 1", "one JSON object"),
        ];
        for (text, line, key) in cases {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert_eq!(kind_of(&e), ErrorKind::Usage, "{msg}");
            assert!(msg.contains("/h/config.json"), "{msg}");
            assert!(msg.contains(line), "{text:?}: {msg}");
            assert!(msg.contains(key), "{text:?}: {msg}");
        }
    }

    #[test]
    fn unknown_keys_warn_with_line() {
        let (_, w) = parse("{\n\"colour\": 1,\n\"retention\": {\"forever\": true}\n}").unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("line 2") && w[0].contains("'colour'"),
            "{w:?}"
        );
        assert!(
            w[1].contains("line 3") && w[1].contains("'retention.forever'"),
            "{w:?}"
        );
    }
}
