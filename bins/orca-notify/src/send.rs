//! Delivery: every target at once, each attempt within its deadline, a few
//! retries for what may pass on a second try (a timeout, a refused
//! connection, HTTP 5xx or 429, an SMTP 4xx), none for what will not (HTTP
//! 4xx, SMTP 5xx). Ctrl-C ends the wait at once. Nothing here can fail the
//! caller: each target ends sent or not, with the reason.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::message::{Event, Message, Scrubber};
use crate::target::{AuthMechanism, Http, HttpKind, Service, Smtp, SmtpTls, Target};

/// How hard to try.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One attempt's deadline.
    pub timeout: Duration,
    /// Further attempts after a failure that may pass.
    pub retries: u32,
    /// More trusted roots (PEM), from `notify.ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// Pairs a run's `/start` and its end at a healthchecks service.
    pub run_id: Option<String>,
}

/// What became of one target.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// The target, as it may be shown.
    pub to: String,
    /// start, success or failure.
    pub event: &'static str,
    /// Whether the service took it.
    pub sent: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Why not (no secret in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One attempt's failure: the reason, and whether another may pass.
struct Failed {
    why: String,
    again: bool,
}

fn failed(why: impl Into<String>, again: bool) -> Failed {
    Failed {
        why: why.into(),
        again,
    }
}

/// When an interrupt came before sending began (the run being reported was
/// interrupted), the sending still happens, within this.
const AFTER_INTERRUPT: Duration = Duration::from_secs(5);

/// Send `msg` to every target; results in the targets' order.
/// `interrupted`: the run reported was interrupted, so the sending gets
/// at most 5 s (so does any run when an interrupt already arrived here).
pub fn deliver(
    targets: &[Target],
    msg: &Message,
    settings: &Settings,
    scrub: &Scrubber,
    interrupted: bool,
) -> Vec<Delivery> {
    let unsent = |why: &str| {
        targets
            .iter()
            .map(|t| Delivery {
                to: t.label.clone(),
                event: msg.event.as_str(),
                sent: false,
                attempts: 0,
                error: Some(why.to_string()),
            })
            .collect::<Vec<_>>()
    };
    if targets.is_empty() {
        return Vec::new();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return unsent(&format!("cannot start the I/O runtime: {e}")),
    };
    let client = match http_client(settings) {
        Ok(c) => c,
        Err(e) => return unsent(&e),
    };
    let results: Arc<Mutex<Vec<Option<Delivery>>>> =
        Arc::new(Mutex::new(vec![None; targets.len()]));
    let signals_at_start = orca_shared::interrupt::signals();
    // The run being reported was interrupted (orca-guard passes a Ctrl-C
    // to its command, where it is counted apart).
    let interrupted_before =
        interrupted || signals_at_start > 0 || orca_shared::interrupt::deferred() > 0;
    rt.block_on(async {
        let all = futures_util::future::join_all(targets.iter().enumerate().map(|(i, t)| {
            let results = results.clone();
            let client = client.clone();
            async move {
                let d = one(t, msg, settings, scrub, &client).await;
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(d);
                }
            }
        }));
        let interrupted = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if orca_shared::interrupt::signals() > signals_at_start {
                    return;
                }
            }
        };
        let cap = if interrupted_before {
            AFTER_INTERRUPT
        } else {
            Duration::MAX
        };
        tokio::select! {
            _ = all => {}
            _ = interrupted => {}
            _ = sleep_max(cap) => {}
        }
    });
    // Name lookups run on blocking threads a deadline cannot stop; dropping
    // the runtime would wait for them (a dead DNS server: half a minute).
    rt.shutdown_background();
    let got = results.lock().map(|r| r.clone()).unwrap_or_default();
    targets
        .iter()
        .zip(got)
        .map(|(t, d)| {
            d.unwrap_or_else(|| Delivery {
                to: t.label.clone(),
                event: msg.event.as_str(),
                sent: false,
                attempts: 1,
                error: Some("interrupted before the service answered".into()),
            })
        })
        .collect()
}

async fn sleep_max(d: Duration) {
    if d == Duration::MAX {
        std::future::pending::<()>().await
    } else {
        tokio::time::sleep(d).await
    }
}

fn http_client(settings: &Settings) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        // A redirect could carry a token header to another host: none is
        // followed (a 3xx is an error that says so).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("orca-notify/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &settings.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("notify.ca_file holds no usable certificate ({e})"))?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| format!("cannot set up HTTPS: {e}"))
}

async fn one(
    t: &Target,
    msg: &Message,
    settings: &Settings,
    scrub: &Scrubber,
    client: &reqwest::Client,
) -> Delivery {
    let mut attempts = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        attempts += 1;
        let started = Instant::now();
        let attempt = async {
            match &t.service {
                Service::Http(h) => http(h, msg, client).await,
                Service::Ping { url } => ping(url, msg, settings, client).await,
                Service::Smtp(s) => smtp(s, msg, settings).await,
            }
        };
        // reqwest and lettre hold their own deadlines; this one bounds
        // everything else (DNS, TLS, a server that trickles).
        let outcome =
            match tokio::time::timeout(settings.timeout + Duration::from_secs(1), attempt).await {
                Ok(r) => r,
                Err(_) => Err(failed(
                    format!(
                        "no answer within {} s (notify.timeout_seconds)",
                        settings.timeout.as_secs()
                    ),
                    true,
                )),
            };
        match outcome {
            Ok(()) => {
                return Delivery {
                    to: t.label.clone(),
                    event: msg.event.as_str(),
                    sent: true,
                    attempts,
                    error: None,
                };
            }
            Err(f) if f.again && attempts <= settings.retries => {
                let _ = started;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(f) => {
                let tries = if attempts > 1 {
                    format!(" ({attempts} attempts)")
                } else {
                    String::new()
                };
                return Delivery {
                    to: t.label.clone(),
                    event: msg.event.as_str(),
                    sent: false,
                    attempts,
                    error: Some(scrub.text(&format!("{}{tries}", f.why))),
                };
            }
        }
    }
}

/// The message as chat services show it: the title in bold, then the body.
fn chat_text(msg: &Message, bold: &str) -> String {
    format!("{bold}{}{bold}\n{}", msg.title, msg.body)
}

/// The JSON (or text) body each API takes.
pub fn body(kind: &HttpKind, msg: &Message) -> (String, Vec<u8>) {
    let failure = msg.event == Event::Failure;
    let json_body = |v: Value| ("application/json".to_string(), v.to_string().into_bytes());
    match kind {
        HttpKind::Generic {
            json,
            content_type,
            title_key,
            message_key,
            extra,
        } => {
            if !*json {
                return (
                    content_type.clone(),
                    format!("{}\n\n{}", msg.title, msg.body).into_bytes(),
                );
            }
            let mut m = serde_json::Map::new();
            for (k, v) in extra {
                m.insert(k.clone(), Value::from(v.clone()));
            }
            m.insert(title_key.clone(), Value::from(msg.title.clone()));
            m.insert(message_key.clone(), Value::from(msg.body.clone()));
            m.insert("event".into(), Value::from(msg.event.as_str()));
            m.insert("success".into(), Value::from(!failure));
            m.insert("record".into(), msg.record.clone());
            (
                content_type.clone(),
                Value::Object(m).to_string().into_bytes(),
            )
        }
        HttpKind::Ntfy {
            topic,
            priority,
            tags,
        } => {
            let priority = priority.unwrap_or(match msg.event {
                Event::Failure => 4,
                Event::Success | Event::Test => 3,
                Event::Start => 2,
            });
            let tags: Vec<String> = if tags.is_empty() {
                vec![
                    match msg.event {
                        Event::Failure => "rotating_light",
                        Event::Success => "white_check_mark",
                        Event::Start => "hourglass_flowing_sand",
                        Event::Test => "bell",
                    }
                    .to_string(),
                ]
            } else {
                tags.clone()
            };
            json_body(json!({
                "topic": topic,
                "title": msg.title,
                "message": msg.body,
                "priority": priority,
                "tags": tags,
            }))
        }
        HttpKind::Gotify { priority } => json_body(json!({
            "title": msg.title,
            "message": msg.body,
            "priority": priority.unwrap_or(if failure { 8 } else { 4 }),
        })),
        HttpKind::Slack { channel, username } => {
            let mut v = json!({ "text": chat_text(msg, "*") });
            if let Some(c) = channel {
                v["channel"] = Value::from(c.clone());
            }
            if let Some(u) = username {
                v["username"] = Value::from(u.clone());
            }
            json_body(v)
        }
        HttpKind::Discord { username } => {
            // Discord refuses content over 2000 characters.
            let mut v = json!({ "content": crate::message::truncate(&chat_text(msg, "**"), 2000) });
            if let Some(u) = username {
                v["username"] = Value::from(u.clone());
            }
            json_body(v)
        }
        HttpKind::Teams => json_body(json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": msg.title,
            "themeColor": if failure { "D13438" } else { "2EB886" },
            "title": msg.title,
            // A single line break does not show in a card; a blank line does.
            "text": msg.body.replace('\n', "\n\n"),
        })),
    }
}

fn status_failure(status: reqwest::StatusCode, text: &str, scrub_hint: &str) -> Failed {
    let snippet: String = text.trim().chars().take(200).collect();
    let snippet = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {}", snippet.replace(['\n', '\r'], " "))
    };
    let again = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    failed(
        format!("{scrub_hint} answered HTTP {status}{snippet}"),
        again,
    )
}

fn redirected(status: reqwest::StatusCode) -> Failed {
    failed(
        format!(
            "the service answered HTTP {status}, a redirect, which orca does not follow (it could carry a token to another host): give the URL it redirects to"
        ),
        false,
    )
}

fn request_failure(e: &reqwest::Error) -> Failed {
    // reqwest's Display names the URL (it may hold a token); the kind and
    // the causes are what help.
    let mut why = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_redirect() {
        "too many redirects".to_string()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        why.push_str(&format!(": {s}"));
        src = s.source();
    }
    let again = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
    failed(format!("cannot send ({why})"), again)
}

async fn http(h: &Http, msg: &Message, client: &reqwest::Client) -> Result<(), Failed> {
    let (content_type, bytes) = body(&h.kind, msg);
    let method = reqwest::Method::from_bytes(h.method.as_bytes())
        .map_err(|_| failed(format!("method {} is not an HTTP method", h.method), false))?;
    let mut req = client
        .request(method, &h.url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(bytes);
    for (k, v) in &h.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some((u, p)) = &h.basic {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(t) = &h.bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| request_failure(&e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_redirection() {
        return Err(redirected(status));
    }
    if !status.is_success() {
        return Err(status_failure(status, &text, "the service"));
    }
    // chat.postMessage answers 200 with {"ok": false, "error": ...}.
    if let HttpKind::Slack {
        channel: Some(_), ..
    } = &h.kind
        && h.bearer.is_some()
        && let Ok(v) = serde_json::from_str::<Value>(&text)
        && v.get("ok") == Some(&Value::Bool(false))
    {
        let error = v.get("error").and_then(|e| e.as_str()).unwrap_or("unknown");
        return Err(failed(
            format!("Slack refused the message ({error})"),
            false,
        ));
    }
    Ok(())
}

async fn ping(
    url: &str,
    msg: &Message,
    settings: &Settings,
    client: &reqwest::Client,
) -> Result<(), Failed> {
    let mut target = match msg.event {
        Event::Start => format!("{url}/start"),
        Event::Success => url.to_string(),
        Event::Failure => format!("{url}/fail"),
        Event::Test => format!("{url}/log"),
    };
    if let Some(rid) = &settings.run_id {
        target.push_str(&format!("?rid={rid}"));
    }
    let text = match msg.event {
        Event::Start => String::new(),
        _ => format!("{}\n\n{}", msg.title, msg.body),
    };
    let resp = client
        .post(&target)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(text)
        .send()
        .await
        .map_err(|e| request_failure(&e))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(redirected(status));
    }
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(status_failure(status, &text, "the ping URL"));
    }
    Ok(())
}

/// The sender when the URL names none.
fn default_from() -> String {
    let host: String = crate::message::host_name()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let host = if host.is_empty() || host.starts_with(['-', '.']) {
        "localhost".to_string()
    } else {
        host
    };
    format!("orca-backup@{host}")
}

async fn smtp(s: &Smtp, msg: &Message, settings: &Settings) -> Result<(), Failed> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let _ = rustls::crypto::ring::default_provider().install_default();
    // Mail servers commonly want the sender to be the account that logs in.
    let from_addr = s
        .from
        .clone()
        .or_else(|| {
            s.credentials
                .as_ref()
                .map(|(u, _)| u.clone())
                .filter(|u| u.contains('@'))
        })
        .unwrap_or_else(default_from);
    let from: Mailbox = match &s.from_name {
        Some(n) => format!("{n} <{from_addr}>").parse(),
        None => from_addr.parse(),
    }
    .map_err(|e| {
        failed(
            format!("the sender {from_addr} is not an address ({e})"),
            false,
        )
    })?;
    let subject = s.subject.clone().unwrap_or_else(|| msg.title.clone());
    let mut builder = lettre::Message::builder()
        .message_id(None)
        .from(from)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &s.to {
        let mb: Mailbox = to
            .parse()
            .map_err(|e| failed(format!("the recipient {to} is not an address ({e})"), false))?;
        builder = builder.to(mb);
    }
    let mail = builder
        .body(msg.body.clone())
        .map_err(|e| failed(format!("cannot write the mail ({e})"), false))?;

    let tls = if s.tls == SmtpTls::None {
        Tls::None
    } else {
        let mut p = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &settings.ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| {
                failed(
                    format!("notify.ca_file holds no usable certificate ({e})"),
                    false,
                )
            })?;
            p = p.add_root_certificate(cert);
        }
        let params = p
            .build_rustls()
            .map_err(|e| failed(format!("cannot set up TLS ({e})"), false))?;
        match s.tls {
            SmtpTls::Implicit => Tls::Wrapper(params),
            SmtpTls::StartTlsRequired => Tls::Required(params),
            _ => Tls::Opportunistic(params),
        }
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(settings.timeout));
    if let Some((u, p)) = &s.credentials {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    if let Some(m) = s.auth {
        b = b.authentication(vec![match m {
            AuthMechanism::Plain => Mechanism::Plain,
            AuthMechanism::Login => Mechanism::Login,
        }]);
    }
    if let Some(h) = &s.client_host {
        b = b.hello_name(ClientId::Domain(h.clone()));
    }
    let transport = b.build();
    match transport.send(mail).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                why.push_str(&format!(": {c}"));
                src = c.source();
            }
            let certificate = why.contains("certificate") || why.contains("UnknownIssuer");
            let what = if e.is_tls() || certificate {
                format!(
                    "TLS with the mail server failed ({why}); a company CA goes in notify.ca_file"
                )
            } else if e.is_permanent() {
                format!("the mail server refused the mail ({why})")
            } else {
                format!("cannot send the mail ({why})")
            };
            Err(failed(
                what,
                !e.is_permanent() && !e.is_tls() && !certificate,
            ))
        }
    }
}
