//! What a notification says: a title and a short body from the record, the
//! same text orca-report prints, or the user's templates of the record's
//! fields. Everything sent goes through [`Scrubber`] first.

use orca_shared::record::Record;
use serde_json::Value;

/// What happened: a run started, or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A run starts (healthchecks' `/start`).
    Start,
    /// A run ended well.
    Success,
    /// A run failed.
    Failure,
    /// `orca-notify --test`: a message to check the URLs (healthchecks' `/log`,
    /// which changes no check's state).
    Test,
}

impl Event {
    /// As written in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Failure => "failure",
            Event::Test => "test",
        }
    }
}

/// The message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// One line.
    pub title: String,
    /// A few lines.
    pub body: String,
    /// The event.
    pub event: Event,
    /// The record, scrubbed, for webhooks.
    pub record: Value,
}

/// This machine's name, for "on HOST".
pub fn host_name() -> String {
    sysinfo::System::host_name()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

fn str_at<'a>(record: &'a Record, path: &[&str]) -> Option<&'a str> {
    let mut v = record.get(path[0])?;
    for p in &path[1..] {
        v = v.get(p)?;
    }
    v.as_str()
}

/// The default title and body of `record`.
pub fn default_text(
    record: &Record,
    event: Event,
    host: &str,
    took: Option<std::time::Duration>,
) -> (String, String) {
    let summary = orca_report::summary(record);
    let step = str_at(record, &["error", "step"]).unwrap_or("orca");
    let code = record.failure_exit_code().unwrap_or(0);
    let guard = record.get("guard").is_some();
    let name = str_at(record, &["backup_name"])
        .or_else(|| {
            str_at(record, &["backup_path"]).map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p))
        })
        .unwrap_or("");
    if event == Event::Test {
        return (
            format!("Test notification from orca-backup on {host}"),
            format!(
                "If you read this, orca's notifications reach you.\n  Host: {host}\n  Sent by: orca-notify --test"
            ),
        );
    }
    let title = match (event, guard) {
        (Event::Start | Event::Test, _) => format!("Orca backup started on {host}"),
        (Event::Success, false) => format!("✅ Orca backup complete on {host}: {name}"),
        (Event::Failure, false) => {
            format!("❌ Orca backup FAILED on {host} ({step}, exit {code})")
        }
        (Event::Success, true) => {
            let cmd = str_at(record, &["guard", "command"]).unwrap_or("the command");
            format!("✅ orca-guard on {host}: {cmd} passed")
        }
        (Event::Failure, true)
            if record
                .get("guard")
                .and_then(|g| g.get("ran"))
                .and_then(|r| r.as_bool())
                == Some(false) =>
        {
            let cmd = str_at(record, &["guard", "command"]).unwrap_or("the command");
            format!("❌ orca-guard on {host}: {cmd} was not run ({step}, exit {code})")
        }
        (Event::Failure, true) => {
            let cmd = str_at(record, &["guard", "command"]).unwrap_or("the command");
            let what = match code {
                21 => "failed; the database was put back".to_string(),
                22 => "failed; the database was left as it was".to_string(),
                _ => format!("failed ({step}, exit {code})"),
            };
            format!("❌ orca-guard on {host}: {cmd} {what}")
        }
    };
    let mut body = if matches!(event, Event::Start | Event::Test) {
        format!("A backup run started on {host}.")
    } else if guard && event == Event::Failure {
        let message = str_at(record, &["error", "message"]).unwrap_or("unknown error");
        format!("❌ {message}")
    } else {
        summary.text()
    };
    if event != Event::Start {
        if let Some(v) = str_at(record, &["volume"]) {
            body.push_str(&format!("\n  Volume: {v}"));
        }
        if let Some(t) = took {
            body.push_str(&format!("\n  Took: {:.1} s", t.as_secs_f64()));
        }
        body.push_str(&format!("\n  Host: {host}"));
        if event == Event::Failure {
            let code_name = str_at(record, &["error", "code"]).unwrap_or("failure");
            body.push_str(&format!(
                "\n  Failed step: {step} (exit {code}, {code_name})"
            ));
        }
    }
    (title, body)
}

/// Render a user's template (MiniJinja) with the record's fields, plus
/// `title`, `body` (the defaults), `event`, `success`, `host`.
pub fn render(template: &str, record: &Value, extra: &[(&str, Value)]) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(100_000));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    let mut ctx = match record {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in extra {
        ctx.insert((*k).to_string(), v.clone());
    }
    env.render_str(template, minijinja::value::Serde(Value::Object(ctx)))
        .map_err(|e| format!("notify template: {e}"))
}

/// Takes every secret out of text: the credentials and tokens of the
/// notification URLs, the secrets in orca's environment, and the user
/// information of any URL.
#[derive(Clone, Debug, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

/// Environment variables whose values are secrets wherever they show up.
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ORCA_PASSPHRASE",
    "MSSQL_SA_PASSWORD",
    "SA_PASSWORD",
    "POSTGRES_PASSWORD",
    "PGPASSWORD",
    "SQLCMDPASSWORD",
    "ORCA_IDENTITY",
];

impl Scrubber {
    /// From the targets' secrets and the environment (the passphrase file's
    /// content too).
    pub fn new(target_secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = target_secrets.into_iter().collect();
        for var in SECRET_VARS {
            if let Ok(v) = std::env::var(var) {
                secrets.push(v);
            }
        }
        if let Some(path) = std::env::var_os("ORCA_PASSPHRASE_FILE")
            && let Ok(text) = std::fs::read_to_string(path)
        {
            let first = text.lines().next().unwrap_or("").to_string();
            secrets.push(first);
            secrets.push(text.trim_end_matches(['\r', '\n']).to_string());
        }
        // Short strings would eat ordinary words; no real secret is that short.
        secrets.retain(|s| s.trim().chars().count() >= 4);
        // Longest first, so a secret holding another goes whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// `text` without any secret.
    pub fn text(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in &self.secrets {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), "***");
            }
        }
        orca_shared::redact::urls(&age_keys(&t))
    }

    /// Every string in `v` scrubbed.
    pub fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.value(x))).collect())
            }
            other => other.clone(),
        }
    }
}

/// `text` with every age secret key (`AGE-SECRET-KEY-1...`) replaced.
fn age_keys(text: &str) -> String {
    const KEY: &str = "AGE-SECRET-KEY-1";
    if !text.contains(KEY) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i]);
        out.push_str("***");
        let tail = &rest[i + KEY.len()..];
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `text` cut to `max` characters, with `…` when it was longer.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_wherever_they_are() {
        let s = Scrubber::new(vec!["hunter22".to_string(), "ab".to_string()]);
        assert_eq!(
            s.text("pw hunter22 at http://k:v@h/x ab"),
            "pw *** at http://***@h/x ab"
        );
        let v = serde_json::json!({"a": ["x hunter22"], "b": {"c": "hunter22"}, "n": 1});
        assert_eq!(
            s.value(&v),
            serde_json::json!({"a": ["x ***"], "b": {"c": "***"}, "n": 1})
        );
        assert_eq!(
            s.text("key AGE-SECRET-KEY-1QQPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L, then"),
            "key ***, then"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn templates_see_the_records_fields() {
        let rec =
            serde_json::json!({"backup_name": "orca-db-x.tar.gz", "error": {"message": "boom"}});
        let out = render(
            "{{ event }}: {{ backup_name }} {{ error.message }}{{ missing.deeper }}",
            &rec,
            &[("event", Value::from("failure"))],
        )
        .unwrap();
        assert_eq!(out, "failure: orca-db-x.tar.gz boom");
        assert!(render("{{ unclosed", &rec, &[]).is_err());
        assert!(
            render(
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                &rec,
                &[]
            )
            .is_err()
        );
    }
}
