//! `orca-notify`: tell someone how a backup went.
//!
//! A pipeline step that sends the record it reads to every notification URL
//! (`--to`, else `notify.urls`) when the outcome matches the level (`error`:
//! failures only; `info`: every run), and passes the record on with its exit
//! code: a notification never changes a backup's outcome. URL forms are
//! shoutrrr's (smtp, generic webhooks, ntfy, gotify, slack, discord, teams)
//! plus healthchecks-style pings (`/start`, success, `/fail`), which get
//! every run whatever the level. orca-backup and orca-guard call
//! [`Notifier`] directly.

pub mod message;
pub mod send;
pub mod target;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use orca_shared::app::CommonArgs;
use orca_shared::config::{Notify, NotifyLevel};
use orca_shared::exit;
use orca_shared::record::{Record, Source};
use serde_json::Value;

pub use message::Event;
pub use send::Delivery;
pub use target::Target;

/// Send the record to the notification URLs and pass it on unchanged.
///
/// Reads the JSON record on stdin (a failed one too: that is what the
/// default level reports), sends a message made from it (the report's text,
/// or notify.template) to every URL, adds "notifications" (and "warnings"
/// for those not sent) and writes the record on stdout with the exit code it
/// came with. Put it last in a pipe: ... | orca-verify | orca-notify.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Send to this URL (repeatable) [default: notify.urls in config]
    #[arg(long = "to", value_name = "URL")]
    pub to: Vec<String>,

    /// error: failures only; info: every run [default: notify.level in config, else error]
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Option<NotifyLevel>,

    /// Send the healthchecks URLs' start ping and pass the record on (put it first: orca-notify --start | orca-find-volume - | ...)
    #[arg(long, conflicts_with = "test")]
    pub start: bool,

    /// Send a test message to every URL now, whatever the level (healthchecks get /log); exit 24 when one cannot be sent
    #[arg(long)]
    pub test: bool,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

const TOOL: &str = "orca-notify";

/// The longest title sent, in characters.
const MAX_TITLE: usize = 250;
/// The longest message body sent (Slack takes 40 000, Teams about 28 KB,
/// ntfy turns more than 4 KB into an attachment).
const MAX_BODY: usize = 16_000;

/// The URLs to notify, understood, and how to send.
#[derive(Clone, Debug)]
pub struct Notifier {
    targets: Vec<Target>,
    /// URLs that could not be used: (position, why), never the URL.
    unusable: Vec<String>,
    level: NotifyLevel,
    template: Option<String>,
    title: Option<String>,
    settings: send::Settings,
    scrub: message::Scrubber,
    ca_warning: Option<String>,
    /// The config's warnings about `notify.*` (printed when it was loaded;
    /// kept in the record so a schedule's result shows them too).
    config_warnings: Vec<String>,
}

/// A random id (UUID v4 form) pairing a run's start ping and its end.
fn run_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).ok()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

impl Notifier {
    /// From the config's `notify` and the command line's URLs (which
    /// replace the config's) and level.
    pub fn new(config: &Notify, urls: &[String], level: Option<NotifyLevel>) -> Notifier {
        let raw: &[String] = if urls.is_empty() { &config.urls } else { urls };
        let mut targets = Vec::new();
        let mut unusable = Vec::new();
        let mut secrets = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            // Whatever the URL, its user information is a secret.
            if let Some(ui) = orca_shared::redact::userinfo(u) {
                secrets.push(ui.to_string());
            }
            match target::parse(u) {
                Ok(t) => {
                    secrets.extend(t.secrets.iter().cloned());
                    targets.push(t);
                }
                Err(why) => unusable.push(format!(
                    "notification URL #{} ({}) is not usable: {why}",
                    i + 1,
                    scheme_of(u)
                )),
            }
        }
        let (ca_pem, ca_warning) = match &config.ca_file {
            Some(path) if !path.trim().is_empty() => {
                match orca_shared::paths::resolve_user_path(path).and_then(|p| {
                    std::fs::read(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
                }) {
                    Ok(pem) => (Some(pem), None),
                    Err(e) => (
                        None,
                        Some(format!(
                            "notify.ca_file cannot be read ({e:#}); sending without it"
                        )),
                    ),
                }
            }
            _ => (None, None),
        };
        Notifier {
            targets,
            unusable,
            level: level.unwrap_or(config.level),
            template: config.template.clone(),
            title: config.title.clone(),
            settings: send::Settings {
                timeout: Duration::from_secs(config.timeout_seconds.max(1)),
                retries: config.retries.min(10) as u32,
                ca_pem,
                run_id: run_id(),
            },
            scrub: message::Scrubber::new(secrets),
            ca_warning,
            config_warnings: Vec::new(),
        }
    }

    /// Keep the config's warnings about `notify.*` (from
    /// `Loaded::warnings`) for the record.
    pub fn with_config_warnings(mut self, warnings: &[String]) -> Self {
        self.config_warnings = warnings
            .iter()
            .filter(|w| w.contains("key 'notify"))
            .cloned()
            .collect();
        self
    }

    /// Whether there is anything to notify.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.unusable.is_empty()
    }

    /// Use this run id (from the record of `orca-notify --start`).
    pub fn with_run_id(mut self, id: Option<String>) -> Self {
        if let Some(id) =
            id.filter(|i| i.len() <= 64 && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            self.settings.run_id = Some(id);
        }
        self
    }

    /// The run id the pings carry.
    pub fn run_id(&self) -> Option<&str> {
        self.settings.run_id.as_deref()
    }

    /// A run starts: the start ping of every healthchecks URL (the others
    /// hear only of the end). Adds what was sent to `record`'s
    /// "notifications"; a failure is a warning.
    pub fn start(&self, record: &mut Record, tool: &str) {
        let pings: Vec<Target> = self
            .targets
            .iter()
            .filter(|t| matches!(t.service, target::Service::Ping { .. }))
            .cloned()
            .collect();
        if pings.is_empty() {
            return;
        }
        let msg = self.message(record, Event::Start, None, &mut Vec::new());
        let sent = send::deliver(&pings, &msg, &self.settings, &self.scrub, false);
        self.keep(record, tool, sent, Vec::new());
    }

    /// A run ended as `record` says: send to the targets its outcome and the
    /// level call for. Adds "notifications" (and "warnings") to the record,
    /// never changes its outcome.
    pub fn finish(&self, record: &mut Record, took: Option<Duration>, tool: &str) {
        if self.is_empty() {
            return;
        }
        let event = if record.failure_exit_code().is_some() {
            Event::Failure
        } else {
            Event::Success
        };
        let chosen: Vec<Target> = self
            .targets
            .iter()
            .filter(|t| {
                matches!(t.service, target::Service::Ping { .. })
                    || event == Event::Failure
                    || self.level == NotifyLevel::Info
            })
            .cloned()
            .collect();
        let mut warnings = self.unusable.clone();
        warnings.extend(self.ca_warning.clone());
        let sent = if chosen.is_empty() {
            Vec::new()
        } else {
            let msg = self.message(record, event, took, &mut warnings);
            send::deliver(
                &chosen,
                &msg,
                &self.settings,
                &self.scrub,
                was_interrupted(record),
            )
        };
        self.keep(record, tool, sent, warnings);
    }

    /// `--test`: a test message to every target; the deliveries.
    pub fn test(&self, record: &mut Record, tool: &str) -> Vec<Delivery> {
        let msg = self.message(record, Event::Test, None, &mut Vec::new());
        let sent = send::deliver(&self.targets, &msg, &self.settings, &self.scrub, false);
        let mut warnings = self.unusable.clone();
        warnings.extend(self.ca_warning.clone());
        self.keep(record, tool, sent.clone(), warnings);
        sent
    }

    /// The message for `record`: the defaults, or the templates.
    pub fn message(
        &self,
        record: &Record,
        event: Event,
        took: Option<Duration>,
        warnings: &mut Vec<String>,
    ) -> Message {
        let host = message::host_name();
        let (title, body) = message::default_text(record, event, &host, took);
        // Scrubbed before a template sees them: a filter (upper, a slice)
        // would hide a secret from the scrubbing of the result.
        let (mut title, mut body) = (self.scrub.text(&title), self.scrub.text(&body));
        let scrubbed = self.scrub.value(&record_value(record));
        if !matches!(event, Event::Start | Event::Test) {
            let extra = [
                ("title", Value::from(title.clone())),
                ("body", Value::from(body.clone())),
                ("event", Value::from(event.as_str())),
                ("success", Value::from(event == Event::Success)),
                ("host", Value::from(host.clone())),
            ];
            if let Some(t) = &self.title {
                match message::render(t, &scrubbed, &extra) {
                    Ok(t) => title = t.trim().replace(['\n', '\r'], " "),
                    Err(e) => warnings.push(format!("{e}; the default title was sent")),
                }
            }
            if let Some(t) = &self.template {
                match message::render(t, &scrubbed, &extra) {
                    Ok(b) => body = b,
                    Err(e) => warnings.push(format!("{e}; the default message was sent")),
                }
            }
        }
        Message {
            // A title is one line; no service wants a body of megabytes.
            title: message::truncate(&self.scrub.text(&title), MAX_TITLE),
            body: message::truncate(&self.scrub.text(&body), MAX_BODY),
            event,
            record: scrubbed,
        }
    }

    fn keep(
        &self,
        record: &mut Record,
        tool: &str,
        sent: Vec<Delivery>,
        mut warnings: Vec<String>,
    ) {
        for d in &sent {
            if let (false, Some(why)) = (d.sent, &d.error) {
                warnings.push(format!("notification to {} not sent: {why}", d.to));
            }
        }
        for w in &warnings {
            eprintln!("{tool}: warning: {w}");
        }
        let mut list = match record.get("notifications") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        list.extend(
            sent.iter()
                .map(|d| serde_json::to_value(d).expect("a delivery serializes")),
        );
        if !list.is_empty() {
            record.set("notifications", list);
        }
        if !warnings.is_empty() || !self.config_warnings.is_empty() {
            let mut all = match record.get("warnings") {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            for w in self.config_warnings.iter().chain(&warnings) {
                if !all.iter().any(|x| x.as_str() == Some(w)) {
                    all.push(Value::from(w.clone()));
                }
            }
            record.set("warnings", all);
        }
    }
}

pub use message::Message;

/// Whether the run `record` reports was interrupted (Ctrl-C, SIGTERM; in
/// orca-guard, maybe only its command was): then it is told within 5 s.
fn was_interrupted(record: &Record) -> bool {
    let code = record
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str());
    let command = record
        .get("guard")
        .and_then(|g| g.get("command_result"))
        .and_then(|c| c.get("outcome"))
        .and_then(|o| o.as_str());
    code == Some("interrupted") || command == Some("interrupted")
}

/// A URL's scheme, fit to show.
fn scheme_of(url: &str) -> String {
    match url.split_once("://") {
        Some((s, _))
            if !s.is_empty()
                && s.len() <= 20
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{s}://...")
        }
        _ => "not a URL".into(),
    }
}

fn record_value(record: &Record) -> Value {
    Value::Object(record.fields().clone())
}

/// Run the tool.
pub fn main() -> ExitCode {
    orca_shared::interrupt::install();
    let command = Cli::command()
        .after_help(exit::EXIT_STATUS_HELP)
        .name(TOOL)
        .bin_name(TOOL);
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => return orca_shared::app::clap_failure(TOOL, e),
    };
    if let Some(shell) = cli.common.completions {
        let mut cmd = Cli::command().name(TOOL).bin_name(TOOL);
        clap_complete::generate(shell, &mut cmd, TOOL, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // The record to report: piped in. --test reads none (it reports
    // nothing); --start may have none (the head of a pipe). A pipe that
    // brings nothing, or no record, is itself a failure someone must hear
    // of: the step before died without writing one.
    let mut broken_input = None;
    let mut record = if cli.test {
        Record::new()
    } else {
        match Record::from_stdin(false) {
            Ok((r, Source::Stdin)) => r,
            Ok((r, Source::Fresh)) if cli.start => r,
            Ok((_, Source::Fresh)) if std::io::stdin().is_terminal() => {
                let e = orca_shared::err!(
                    Usage,
                    "no record to report: pipe the backup's record in (... | orca-verify | orca-notify), or give --start or --test"
                );
                return orca_shared::app::fail(TOOL, Record::new(), &e);
            }
            Ok((_, Source::Fresh)) => {
                broken_input = Some(orca_shared::err!(
                    Usage,
                    "no record came in: the step before ended without writing one (it crashed or was killed); run the pipe again and read its errors"
                ));
                Record::new()
            }
            Err(e) if cli.start => return orca_shared::app::fail(TOOL, Record::new(), &e),
            Err(e) => {
                broken_input = Some(e);
                Record::new()
            }
        }
    };
    if let Some(e) = &broken_input {
        let kind = exit::kind_of(e);
        let message = exit::message_of(e, kind);
        eprintln!("{TOOL}: {message}");
        record.set_failure(kind, &message, TOOL);
    }
    let passed_code = record.failure_exit_code();
    // A config that cannot be read must not change the outcome either:
    // the --to URLs still hear of it.
    let mut config_warnings = Vec::new();
    let config = match orca_shared::config::Config::load(cli.common.config.as_deref()) {
        Ok(l) => {
            l.print_warnings(TOOL);
            config_warnings = l.warnings.clone();
            l.config.notify
        }
        Err(e) if passed_code.is_some() || !cli.test => {
            let kind = exit::kind_of(&e);
            eprintln!(
                "{TOOL}: warning: {}; notifying only the --to URLs",
                exit::message_of(&e, kind)
            );
            Notify::default()
        }
        Err(e) => return orca_shared::app::fail(TOOL, record, &e),
    };
    let notifier = Notifier::new(&config, &cli.to, cli.level)
        .with_config_warnings(&config_warnings)
        .with_run_id(record.str("notify_run_id").ok().flatten().map(String::from));
    if cli.test {
        if notifier.is_empty() {
            let e = orca_shared::err!(
                Usage,
                "no notification URL: give --to URL or set notify.urls in the config"
            );
            return orca_shared::app::fail(TOOL, record, &e);
        }
        let sent = notifier.test(&mut record, TOOL);
        let bad = sent.iter().filter(|d| !d.sent).count() + notifier.unusable.len();
        if bad > 0 {
            let e = orca_shared::err!(
                NotifyFailed,
                "{bad} of {} notification URL(s) could not be used or sent to (see the warnings above)",
                sent.len() + notifier.unusable.len()
            );
            return orca_shared::app::fail(TOOL, record, &e);
        }
        if !notifier.config_warnings.is_empty() {
            let e = orca_shared::err!(
                NotifyFailed,
                "the notify settings have mistakes (see the warnings above): fix them in the config"
            );
            return orca_shared::app::fail(TOOL, record, &e);
        }
        for d in &sent {
            eprintln!("{TOOL}: sent a test message to {}", d.to);
        }
        record.set_success();
        let _ = record.write_stdout();
        return ExitCode::SUCCESS;
    }
    if cli.start {
        if let Some(id) = notifier.run_id() {
            record.set("notify_run_id", id);
        }
        notifier.start(&mut record, TOOL);
    } else {
        notifier.finish(&mut record, None, TOOL);
    }
    if passed_code.is_none() {
        record.set_success();
    }
    let _ = record.write_stdout();
    match passed_code {
        Some(code) => ExitCode::from(code),
        None => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_cannot_unscrub_a_secret() {
        let config = Notify {
            template: Some("{{ body | upper }} {{ body[:70] }} {{ error.message | upper }}".into()),
            title: Some("{{ title | lower }}".into()),
            ..Notify::default()
        };
        let n = Notifier::new(
            &config,
            &["gotify://g.example/S3cretT0ken12345".to_string()],
            None,
        );
        let mut r = Record::new();
        r.set_failure(
            orca_shared::ErrorKind::Failure,
            "it said S3cretT0ken12345 and http://u:pw9@h/x",
            "orca-copy",
        );
        let m = n.message(&r, Event::Failure, None, &mut Vec::new());
        let all = format!("{} {} {}", m.title, m.body, m.record);
        for leak in [
            "S3cretT0ken12345",
            "S3CRETT0KEN12345",
            "s3crett0ken12345",
            "pw9",
            "PW9",
        ] {
            assert!(!all.contains(leak), "{leak} in {all}");
        }
        assert!(m.body.contains("***"), "{}", m.body);
    }

    #[test]
    fn long_messages_are_cut() {
        let config = Notify {
            template: Some("{{ 'x' * 100000 }}".into()),
            ..Notify::default()
        };
        let n = Notifier::new(&config, &["hc://h/p/q".to_string()], None);
        let mut r = Record::new();
        r.set_failure(orca_shared::ErrorKind::Failure, "boom", "orca-export");
        let m = n.message(&r, Event::Failure, None, &mut Vec::new());
        assert_eq!(m.body.chars().count(), MAX_BODY);
    }
}
