//! Where a notification goes: shoutrrr's URL forms, parsed into what each
//! service's API takes. A URL's credentials and tokens are collected as its
//! secrets, which no message, error or record ever shows; [`Target::label`]
//! is what may be shown.

use std::collections::BTreeMap;

use url::Url;

/// One notification URL, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What it is, fit to show (no credential, token or topic).
    pub label: String,
    /// The service.
    pub service: Service,
    /// Strings that must never be shown: passwords, tokens, keys.
    pub secrets: Vec<String>,
}

/// What to send and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Mail through an SMTP server.
    Smtp(Smtp),
    /// A JSON (or text) HTTP request: generic webhooks, ntfy, gotify,
    /// Slack, Discord, Teams.
    Http(Http),
    /// A healthchecks-style ping URL: `/start`, the URL itself on success,
    /// `/fail` on failure.
    Ping {
        /// The ping URL (no trailing slash).
        url: String,
    },
}

/// How to reach the mail server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smtp {
    /// Host name.
    pub host: String,
    /// Port (default 25).
    pub port: u16,
    /// User name and password for AUTH.
    pub credentials: Option<(String, String)>,
    /// TLS.
    pub tls: SmtpTls,
    /// Sender address.
    pub from: Option<String>,
    /// Sender's display name.
    pub from_name: Option<String>,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// A fixed subject instead of the title.
    pub subject: Option<String>,
    /// The name to greet the server with (EHLO).
    pub client_host: Option<String>,
    /// AUTH mechanism asked for (`None`: what the server offers).
    pub auth: Option<AuthMechanism>,
}

/// SMTP AUTH mechanisms orca can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    /// AUTH PLAIN.
    Plain,
    /// AUTH LOGIN.
    Login,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS, required: a server that does not offer it is refused.
    StartTlsRequired,
    /// STARTTLS when the server offers it (only without credentials).
    StartTlsOpportunistic,
    /// No TLS at all (`encryption=none`).
    None,
}

/// An HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    /// Which API: decides the body.
    pub kind: HttpKind,
    /// The request URL.
    pub url: String,
    /// Method (POST unless a generic webhook says otherwise).
    pub method: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// HTTP basic credentials.
    pub basic: Option<(String, String)>,
    /// A bearer token.
    pub bearer: Option<String>,
}

impl Http {
    /// A POST of `kind`'s body to `url`, with no extra header or credential.
    fn post(kind: HttpKind, url: String) -> Self {
        Http {
            kind,
            url,
            method: "POST".into(),
            headers: Vec::new(),
            basic: None,
            bearer: None,
        }
    }
}

/// The body each API takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpKind {
    /// A generic webhook: JSON {title, message, ...} or plain text.
    Generic {
        /// JSON (default) or the message as text.
        json: bool,
        /// The content type.
        content_type: String,
        /// The keys for the title and the message.
        title_key: String,
        /// See `title_key`.
        message_key: String,
        /// Extra JSON fields (`$key=value`).
        extra: BTreeMap<String, String>,
    },
    /// ntfy's JSON publish.
    Ntfy {
        /// The topic.
        topic: String,
        /// A fixed priority (1-5).
        priority: Option<u8>,
        /// Tags (emoji short codes).
        tags: Vec<String>,
    },
    /// Gotify's message API.
    Gotify {
        /// A fixed priority.
        priority: Option<i64>,
    },
    /// A Slack incoming webhook or chat.postMessage.
    Slack {
        /// chat.postMessage's channel (the bot-token form).
        channel: Option<String>,
        /// The bot name shown.
        username: Option<String>,
    },
    /// A Discord webhook.
    Discord {
        /// The name shown.
        username: Option<String>,
    },
    /// A Teams incoming webhook (MessageCard).
    Teams,
}

/// The hosts of services whose host is fixed, or HTTPS-only, can be
/// replaced for tests by `ORCA_NOTIFY_TEST_BASE_URL` (`http://127.0.0.1:PORT`).
fn base(default: &str) -> String {
    match std::env::var("ORCA_NOTIFY_TEST_BASE_URL") {
        Ok(b) if !b.is_empty() => b.trim_end_matches('/').to_string(),
        _ => default.to_string(),
    }
}

fn yes(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Query parameters, keys lower-cased (shoutrrr's are case-insensitive),
/// except `@Header` and `$field` which keep their case.
fn query(u: &Url) -> Vec<(String, String)> {
    u.query_pairs()
        .map(|(k, v)| {
            let k = if k.starts_with('@') || k.starts_with('$') {
                k.into_owned()
            } else {
                k.to_ascii_lowercase()
            };
            (k, v.into_owned())
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn host_port(u: &Url) -> Result<String, String> {
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("it names no host")?;
    Ok(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

fn segments(u: &Url) -> Vec<String> {
    u.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect()
}

/// A string that looks like a token (worth scrubbing wherever it appears):
/// long enough that it cannot be an ordinary word.
fn tokenish(s: &str) -> bool {
    s.len() >= 16 || (s.len() >= 8 && s.chars().any(|c| c.is_ascii_digit()))
}

fn userinfo_secrets(u: &Url, secrets: &mut Vec<String>) {
    if let Some(p) = u.password() {
        secrets.push(p.to_string());
        secrets.push(decode(p));
    }
    if !u.username().is_empty() && u.password().is_some() {
        secrets.push(format!("{}:{}", u.username(), u.password().unwrap_or("")));
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Parse one notification URL. The error never holds the URL itself (it
/// may carry a password): `why` names what is wrong.
pub fn parse(raw: &str) -> Result<Target, String> {
    let raw = raw.trim();
    let scheme = raw
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or("it is not a URL (scheme://...)")?;
    if password_breaks_the_url(raw, scheme.starts_with("generic")) {
        return Err(
            "its password (or token) holds '/', '?' or '#', which end the host part of a URL: percent-encode them (%2F, %3F, %23)"
                .into(),
        );
    }
    let u = Url::parse(raw).map_err(|e| format!("it is not a valid URL ({e})"))?;
    let q = query(&u);
    let mut secrets = Vec::new();
    userinfo_secrets(&u, &mut secrets);
    let (label, service) = match scheme.as_str() {
        "smtp" | "smtps" => smtp(&u, &q, scheme == "smtps")?,
        "generic" | "generic+http" | "generic+https" => generic(&u, &q, &scheme, &mut secrets)?,
        "ntfy" => ntfy(&u, &q, &mut secrets)?,
        "gotify" => gotify(&u, &q, &mut secrets)?,
        "slack" => slack(&u, &q, &mut secrets)?,
        "discord" => discord(&u, &q, &mut secrets)?,
        "teams" => teams(&u, &q, &mut secrets)?,
        "hc" | "healthchecks" => hc(&u, &q, &mut secrets)?,
        "http" | "https" if is_ping_url(&u) => {
            let url = raw.split(['?', '#']).next().unwrap_or(raw);
            for s in segments(&u) {
                if tokenish(&s) {
                    secrets.push(s);
                }
            }
            (
                format!("healthchecks on {}", host_port(&u)?),
                Service::Ping {
                    url: url.trim_end_matches('/').to_string(),
                },
            )
        }
        "http" | "https" => {
            return Err(
                "a plain http(s) URL is not a notification service: write generic+https://... for a JSON webhook, or give a healthchecks ping URL (.../ping/UUID)"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "'{other}://' is not a service orca can notify: use smtp, generic, generic+https, ntfy, gotify, slack, discord, teams or hc"
            ));
        }
    };
    secrets.retain(|s| !s.is_empty());
    secrets.sort();
    secrets.dedup();
    Ok(Target {
        label,
        service,
        secrets,
    })
}

/// A user information with a raw `/`, `?` or `#` makes the URL parse with
/// part of the password as the host (and the rest as a path): an `@` after
/// the host part, in the first query parameter's name (not a generic
/// webhook's `@Header` parameter) or, but for generic webhooks, whose paths
/// may hold one, in the path.
fn password_breaks_the_url(raw: &str, generic: bool) -> bool {
    let Some((_, after)) = raw.split_once("://") else {
        return false;
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    if after[..end].contains('@') {
        return false;
    }
    let rest = &after[end..];
    let (path, query) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let first_key = query.split(['&', '=']).next().unwrap_or("");
    (!generic && path.contains('@')) || (!first_key.starts_with('@') && first_key.contains('@'))
}

/// `https://hc-ping.com/...` or any `https://host/ping/...`.
fn is_ping_url(u: &Url) -> bool {
    u.host_str() == Some("hc-ping.com") || u.path().starts_with("/ping/")
}

fn smtp(u: &Url, q: &[(String, String)], smtps: bool) -> Result<(String, Service), String> {
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("it names no mail server")?
        .to_string();
    let port = u.port().unwrap_or(if smtps { 465 } else { 25 });
    let credentials = match (u.username(), u.password()) {
        ("", None) => None,
        (user, pass) => Some((decode(user), pass.map(decode).unwrap_or_default())),
    };
    let to: Vec<String> = param(q, &["toaddresses", "to"])
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if to.is_empty() {
        return Err("it names no recipient: add ?to=you@example.com (several: a,b)".into());
    }
    let encryption = param(q, &["encryption"]).map(|e| e.to_ascii_lowercase());
    let starttls = param(q, &["usestarttls"]).is_none_or(yes);
    let tls = match encryption.as_deref() {
        _ if smtps => SmtpTls::Implicit,
        Some("implicittls" | "implicit" | "tls" | "ssl") => SmtpTls::Implicit,
        Some("explicittls" | "explicit" | "starttls") => SmtpTls::StartTlsRequired,
        Some("none") => SmtpTls::None,
        None | Some("auto") => {
            if port == 465 {
                SmtpTls::Implicit
            } else if !starttls {
                SmtpTls::None
            } else if credentials.is_some() {
                SmtpTls::StartTlsRequired
            } else {
                SmtpTls::StartTlsOpportunistic
            }
        }
        Some(other) => {
            return Err(format!(
                "encryption={other} is not one of auto, none, explicittls, implicittls"
            ));
        }
    };
    let auth = match param(q, &["auth"])
        .map(|a| a.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("unknown" | "none") => None,
        Some("plain") => Some(AuthMechanism::Plain),
        Some("login") => Some(AuthMechanism::Login),
        Some(other) => {
            return Err(format!(
                "auth={other} is not supported: use plain or login (or leave it out)"
            ));
        }
    };
    let n = to.len();
    Ok((
        format!("smtp://{host}:{port} (to {n} recipient(s))"),
        Service::Smtp(Smtp {
            host,
            port,
            credentials: if matches!(param(q, &["auth"]), Some(a) if a.eq_ignore_ascii_case("none"))
            {
                None
            } else {
                credentials
            },
            tls,
            from: param(q, &["fromaddress", "from"]).map(String::from),
            from_name: param(q, &["fromname"]).map(String::from),
            to,
            subject: param(q, &["subject"]).map(String::from),
            client_host: param(q, &["clienthost"]).map(String::from),
            auth,
        }),
    ))
}

/// Parameters of shoutrrr's generic service, the rest go to the target.
const GENERIC_PARAMS: &[&str] = &[
    "template",
    "contenttype",
    "disabletls",
    "method",
    "titlekey",
    "messagekey",
];

fn generic(
    u: &Url,
    q: &[(String, String)],
    scheme: &str,
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let hp = host_port(u)?;
    // `user:1234/rest@host/...` (a password with a raw '/') parses as host
    // `user`, port 1234; a path with an '@' is legal, so it is sent, but
    // the port, which may be part of a password, is not shown.
    let shown = if u.path().contains('@') && u.username().is_empty() {
        u.host_str().unwrap_or("").to_string()
    } else {
        hp.clone()
    };
    let http_scheme = match scheme {
        "generic+http" => "http",
        "generic+https" => "https",
        _ if param(q, &["disabletls"]).is_some_and(yes) => "http",
        _ => "https",
    };
    let mut forwarded = Vec::new();
    let mut headers = Vec::new();
    let mut extra = BTreeMap::new();
    for (k, v) in q {
        if let Some(h) = k.strip_prefix('@') {
            headers.push((h.to_string(), v.clone()));
            secrets.push(v.clone());
        } else if let Some(f) = k.strip_prefix('$') {
            extra.insert(f.to_string(), v.clone());
        } else if !GENERIC_PARAMS.contains(&k.as_str()) {
            // `__name` stands for a target parameter that clashes with ours.
            let k = k.strip_prefix("__").unwrap_or(k);
            forwarded.push((k.to_string(), v.clone()));
            if tokenish(v) {
                secrets.push(v.clone());
            }
        }
    }
    for s in segments(u) {
        if tokenish(&s) {
            secrets.push(s);
        }
    }
    let mut target = format!("{http_scheme}://{hp}{}", u.path());
    if !forwarded.is_empty() {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &forwarded {
            ser.append_pair(k, v);
        }
        target.push('?');
        target.push_str(&ser.finish());
    }
    let template = param(q, &["template"]).map(|t| t.to_ascii_lowercase());
    let json = !matches!(template.as_deref(), Some("text" | "plain"));
    let basic = match (u.username(), u.password()) {
        ("", None) => None,
        (user, pass) => Some((decode(user), pass.map(decode).unwrap_or_default())),
    };
    Ok((
        format!("webhook {http_scheme}://{shown}"),
        Service::Http(Http {
            kind: HttpKind::Generic {
                json,
                content_type: param(q, &["contenttype"])
                    .unwrap_or(if json {
                        "application/json"
                    } else {
                        "text/plain; charset=utf-8"
                    })
                    .to_string(),
                title_key: param(q, &["titlekey"]).unwrap_or("title").to_string(),
                message_key: param(q, &["messagekey"]).unwrap_or("message").to_string(),
                extra,
            },
            url: target,
            method: param(q, &["method"]).unwrap_or("POST").to_ascii_uppercase(),
            headers,
            basic,
            bearer: None,
        }),
    ))
}

fn ntfy(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let hp = host_port(u).unwrap_or_else(|_| "ntfy.sh".into());
    let segs = segments(u);
    let topic = segs
        .last()
        .cloned()
        .ok_or("it names no topic: ntfy://host/TOPIC")?;
    if topic.len() >= 12 || tokenish(&topic) {
        secrets.push(topic.clone());
    }
    let prefix = segs[..segs.len() - 1].join("/");
    let scheme = match param(q, &["scheme"]) {
        Some("http") => "http",
        Some("https") | None => "https",
        Some(other) => return Err(format!("scheme={other} is not http or https")),
    };
    let priority = match param(q, &["priority"]) {
        None => None,
        Some(p) => Some(ntfy_priority(p).ok_or_else(|| {
            format!("priority={p} is not 1-5 or min, low, default, high, max (urgent)")
        })?),
    };
    let tags = param(q, &["tags"])
        .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let (basic, bearer) = match (u.username(), u.password()) {
        ("", None) => (None, None),
        ("", Some(token)) => (None, Some(decode(token))),
        (user, pass) => (
            Some((decode(user), pass.map(decode).unwrap_or_default())),
            None,
        ),
    };
    let path = if prefix.is_empty() {
        "/".to_string()
    } else {
        format!("/{prefix}/")
    };
    Ok((
        format!("ntfy on {hp}"),
        Service::Http(Http {
            basic,
            bearer,
            ..Http::post(
                HttpKind::Ntfy {
                    topic,
                    priority,
                    tags,
                },
                format!("{scheme}://{hp}{path}"),
            )
        }),
    ))
}

fn ntfy_priority(p: &str) -> Option<u8> {
    match p.to_ascii_lowercase().as_str() {
        "1" | "min" => Some(1),
        "2" | "low" => Some(2),
        "3" | "default" => Some(3),
        "4" | "high" => Some(4),
        "5" | "max" | "urgent" => Some(5),
        _ => None,
    }
}

fn gotify(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let hp = host_port(u)?;
    let segs = segments(u);
    let token = segs
        .last()
        .cloned()
        .ok_or("it names no application token: gotify://host/TOKEN")?;
    secrets.push(token.clone());
    let prefix = segs[..segs.len() - 1].join("/");
    let scheme = if param(q, &["disabletls"]).is_some_and(yes) {
        "http"
    } else {
        "https"
    };
    let priority = match param(q, &["priority"]) {
        None => None,
        Some(p) => Some(
            p.parse::<i64>()
                .map_err(|_| format!("priority={p} is not a number"))?,
        ),
    };
    let path = if prefix.is_empty() {
        "/message".to_string()
    } else {
        format!("/{prefix}/message")
    };
    Ok((
        format!("gotify on {hp}"),
        Service::Http(Http {
            headers: vec![("X-Gotify-Key".into(), token)],
            ..Http::post(
                HttpKind::Gotify { priority },
                format!("{scheme}://{hp}{path}"),
            )
        }),
    ))
}

fn slack(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let user = decode(u.username());
    let pass = u.password().map(decode);
    let host = u.host_str().unwrap_or("").to_string();
    let channel = param(q, &["channel"]).map(String::from);
    let username = param(q, &["botname", "username"]).map(String::from);
    match (user.as_str(), pass) {
        // slack://hook:T000-B000-XXXX@webhook
        ("hook", Some(token)) => {
            let parts: Vec<&str> = token.splitn(3, ['-', '/']).collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(
                    "its webhook token is not T...-B...-X... (slack://hook:TOKEN@webhook)".into(),
                );
            }
            secrets.push(parts[2].to_string());
            secrets.push(token.clone());
            Ok((
                "slack (webhook)".into(),
                Service::Http(Http::post(
                    HttpKind::Slack { channel, username },
                    format!(
                        "{}/services/{}/{}/{}",
                        base("https://hooks.slack.com"),
                        parts[0],
                        parts[1],
                        parts[2]
                    ),
                )),
            ))
        }
        // slack://xoxb:1234-5678-abcd@C0123CHANNEL
        (kind @ ("xoxb" | "xoxp"), Some(token)) => {
            let token = format!("{kind}-{token}");
            secrets.push(token.clone());
            if host.is_empty() {
                return Err("it names no channel: slack://xoxb:TOKEN@CHANNEL".into());
            }
            Ok((
                format!("slack (channel {host})"),
                Service::Http(Http {
                    bearer: Some(token),
                    ..Http::post(
                        HttpKind::Slack {
                            channel: Some(host.to_uppercase()),
                            username,
                        },
                        format!("{}/api/chat.postMessage", base("https://slack.com")),
                    )
                }),
            ))
        }
        // The legacy form: slack://[botname@]T000/B000/XXXX
        _ => {
            let mut parts = vec![host.clone()];
            parts.extend(segments(u));
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(
                    "it is not a Slack URL shoutrrr knows: slack://hook:T...-B...-X...@webhook or slack://xoxb:TOKEN@CHANNEL"
                        .into(),
                );
            }
            secrets.push(parts[2].clone());
            Ok((
                "slack (webhook)".into(),
                Service::Http(Http::post(
                    HttpKind::Slack {
                        channel,
                        username: username.or(Some(user).filter(|u| !u.is_empty())),
                    },
                    // Slack's tokens are upper case; the URL's host is not.
                    format!(
                        "{}/services/{}/{}/{}",
                        base("https://hooks.slack.com"),
                        parts[0].to_uppercase(),
                        parts[1],
                        parts[2]
                    ),
                )),
            ))
        }
    }
}

fn discord(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let token = decode(u.username());
    let id = u.host_str().unwrap_or("").to_string();
    if token.is_empty() || id.is_empty() {
        return Err("it is not discord://TOKEN@WEBHOOK_ID".into());
    }
    secrets.push(token.clone());
    Ok((
        "discord (webhook)".into(),
        Service::Http(Http::post(
            HttpKind::Discord {
                username: param(q, &["username"]).map(String::from),
            },
            format!("{}/api/webhooks/{id}/{token}", base("https://discord.com")),
        )),
    ))
}

fn teams(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let group = decode(u.username());
    let tenant = u.host_str().unwrap_or("").to_string();
    let segs = segments(u);
    for s in segs.iter().chain([&group, &tenant]) {
        if tokenish(s) {
            secrets.push(s.clone());
        }
    }
    let (host, path) = if !group.is_empty() {
        // teams://group@tenant/altId/groupOwner[/extraId]?host=org.webhook.office.com
        if !(2..=3).contains(&segs.len()) {
            return Err(
                "it is not teams://GROUP@TENANT/ALT_ID/GROUP_OWNER[/EXTRA_ID]?host=ORG.webhook.office.com"
                    .into(),
            );
        }
        let host = param(q, &["host"])
            .ok_or("it names no host: add ?host=ORG.webhook.office.com (from the webhook's URL)")?;
        (
            host.to_string(),
            format!(
                "/webhookb2/{group}@{tenant}/IncomingWebhook/{}",
                segs.join("/")
            ),
        )
    } else {
        // The legacy form: teams://A/B/C (outlook.office.com).
        if segs.len() != 2 || tenant.is_empty() {
            return Err("it is not teams://GROUP@TENANT/ALT_ID/GROUP_OWNER?host=...".into());
        }
        (
            "outlook.office.com".to_string(),
            format!("/webhook/{tenant}/IncomingWebhook/{}", segs.join("/")),
        )
    };
    let url = match std::env::var("ORCA_NOTIFY_TEST_BASE_URL") {
        Ok(b) if !b.is_empty() => format!("{}{path}", b.trim_end_matches('/')),
        _ => format!("https://{host}{path}"),
    };
    Ok((
        format!("teams on {host}"),
        Service::Http(Http::post(HttpKind::Teams, url)),
    ))
}

fn hc(
    u: &Url,
    q: &[(String, String)],
    secrets: &mut Vec<String>,
) -> Result<(String, Service), String> {
    let host = u.host_str().unwrap_or("").to_string();
    let segs = segments(u);
    for s in &segs {
        if tokenish(s) {
            secrets.push(s.clone());
        }
    }
    let scheme = if param(q, &["disabletls"]).is_some_and(yes) {
        "http"
    } else {
        "https"
    };
    let (label_host, url) = if segs.is_empty() && uuid_like(&host) {
        // hc://UUID: hc-ping.com's check.
        secrets.push(host.clone());
        (
            "hc-ping.com".to_string(),
            format!("{}/{host}", base("https://hc-ping.com")),
        )
    } else {
        let hp = host_port(u)?;
        if segs.is_empty() {
            return Err("it names no check: hc://UUID or hc://host/ping/UUID".into());
        }
        let path = segs.join("/");
        let url = match std::env::var("ORCA_NOTIFY_TEST_BASE_URL") {
            Ok(b) if !b.is_empty() => format!("{}/{path}", b.trim_end_matches('/')),
            _ => format!("{scheme}://{hp}/{path}"),
        };
        (hp, url)
    };
    Ok((
        format!("healthchecks on {label_host}"),
        Service::Ping { url },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(raw: &str) -> (Target, Http) {
        let t = parse(raw).unwrap();
        match t.service.clone() {
            Service::Http(h) => (t, h),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn smtp_urls_as_shoutrrr_writes_them() {
        let t = parse("smtp://me%40x.org:p%40ss@mail.x.org:587/?fromaddress=orca@x.org&toaddresses=a@x.org,b@x.org&subject=Hi").unwrap();
        let Service::Smtp(s) = &t.service else {
            panic!()
        };
        assert_eq!(s.host, "mail.x.org");
        assert_eq!(s.port, 587);
        assert_eq!(
            s.credentials,
            Some(("me@x.org".to_string(), "p@ss".to_string()))
        );
        assert_eq!(s.tls, SmtpTls::StartTlsRequired);
        assert_eq!(s.to, vec!["a@x.org", "b@x.org"]);
        assert_eq!(s.from.as_deref(), Some("orca@x.org"));
        assert_eq!(s.subject.as_deref(), Some("Hi"));
        assert!(t.secrets.contains(&"p@ss".to_string()));
        assert!(!t.label.contains("p%40ss") && !t.label.contains("me%40"));
        let t = parse("smtp://u:p@h:465/?to=a@b").unwrap();
        assert!(matches!(
            t.service,
            Service::Smtp(Smtp {
                tls: SmtpTls::Implicit,
                ..
            })
        ));
        let t = parse("smtp://h/?to=a@b").unwrap();
        assert!(matches!(
            t.service,
            Service::Smtp(Smtp {
                tls: SmtpTls::StartTlsOpportunistic,
                port: 25,
                ..
            })
        ));
        let t = parse("smtp://h:2525/?to=a@b&encryption=ImplicitTLS").unwrap();
        assert!(matches!(
            t.service,
            Service::Smtp(Smtp {
                tls: SmtpTls::Implicit,
                ..
            })
        ));
        assert!(
            parse("smtp://h/?from=a@b")
                .unwrap_err()
                .contains("recipient")
        );
        assert!(parse("smtp://h/?to=a@b&encryption=rot13").is_err());
    }

    #[test]
    fn webhooks_and_their_parameters() {
        let (t, h) = http(
            "generic+https://u:pw@hooks.example.com:8443/in/abc?template=json&@X-Key=s3cretvalue&$source=orca&channel=ops",
        );
        assert_eq!(h.url, "https://hooks.example.com:8443/in/abc?channel=ops");
        assert_eq!(
            h.headers,
            vec![("X-Key".to_string(), "s3cretvalue".to_string())]
        );
        assert_eq!(h.basic, Some(("u".into(), "pw".into())));
        assert!(t.secrets.contains(&"s3cretvalue".to_string()));
        assert_eq!(t.label, "webhook https://hooks.example.com:8443");
        let HttpKind::Generic { json, extra, .. } = &h.kind else {
            panic!()
        };
        assert!(*json);
        assert_eq!(extra.get("source").map(String::as_str), Some("orca"));
        let (_, h) = http("generic://h/p?disabletls=yes&template=text&method=put");
        assert_eq!(h.url, "http://h/p");
        assert_eq!(h.method, "PUT");
        assert!(matches!(h.kind, HttpKind::Generic { json: false, .. }));
    }

    #[test]
    fn services_with_tokens_keep_them_secret() {
        let (t, h) =
            http("ntfy://:tk_abc123def456@ntfy.example.com/orca-alerts?priority=high&scheme=http");
        assert_eq!(h.url, "http://ntfy.example.com/");
        assert_eq!(h.bearer.as_deref(), Some("tk_abc123def456"));
        assert!(
            matches!(&h.kind, HttpKind::Ntfy { topic, priority: Some(4), .. } if topic == "orca-alerts")
        );
        // A topic is shown nowhere; scrubbed from texts only when it
        // cannot be an ordinary word.
        assert!(!t.label.contains("orca-alerts"));
        let (t, _) = http("ntfy://ntfy.sh/orca");
        assert!(!t.secrets.contains(&"orca".to_string()));
        let (t, h) = http("gotify://g.example.com:8080/sub/AbCdEf123456?disabletls=yes&priority=9");
        assert_eq!(h.url, "http://g.example.com:8080/sub/message");
        assert_eq!(
            h.headers,
            vec![("X-Gotify-Key".to_string(), "AbCdEf123456".to_string())]
        );
        assert!(t.secrets.contains(&"AbCdEf123456".to_string()));
        let (_, h) = http("slack://hook:T0001-B0002-XXXXsecretXXXX@webhook");
        assert_eq!(
            h.url,
            "https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX"
        );
        let (t, h) = http("slack://xoxb:1234-5678-abcd@c0123chan");
        assert_eq!(h.url, "https://slack.com/api/chat.postMessage");
        assert_eq!(h.bearer.as_deref(), Some("xoxb-1234-5678-abcd"));
        assert!(t.secrets.contains(&"xoxb-1234-5678-abcd".to_string()));
        let (_, h) = http("slack://bot@t0001/B0002/XXXXsecretXXXX");
        assert_eq!(
            h.url,
            "https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX"
        );
        let (t, h) = http("discord://Tok_en-123@987654321");
        assert_eq!(
            h.url,
            "https://discord.com/api/webhooks/987654321/Tok_en-123"
        );
        assert!(t.secrets.contains(&"Tok_en-123".to_string()));
        let (_, h) = http("teams://g-1@t-2/alt/owner/extra?host=org.webhook.office.com");
        assert_eq!(
            h.url,
            "https://org.webhook.office.com/webhookb2/g-1@t-2/IncomingWebhook/alt/owner/extra"
        );
        assert!(parse("teams://g@t/a/b").unwrap_err().contains("host"));
    }

    #[test]
    fn healthchecks_pings() {
        let uuid = "5f1a8c3e-1111-4222-8333-944445555666";
        let t = parse(&format!("hc://{uuid}")).unwrap();
        assert_eq!(
            t.service,
            Service::Ping {
                url: format!("https://hc-ping.com/{uuid}")
            }
        );
        assert!(t.secrets.contains(&uuid.to_string()));
        let t = parse(&format!("https://hc.example.com/ping/{uuid}/")).unwrap();
        assert_eq!(
            t.service,
            Service::Ping {
                url: format!("https://hc.example.com/ping/{uuid}")
            }
        );
        assert_eq!(t.label, "healthchecks on hc.example.com");
        let t = parse(&format!(
            "hc://hc.example.com:8000/ping/{uuid}?disabletls=yes"
        ))
        .unwrap();
        assert_eq!(
            t.service,
            Service::Ping {
                url: format!("http://hc.example.com:8000/ping/{uuid}")
            }
        );
        assert!(parse("https://example.com/hook").is_err());
    }

    #[test]
    fn a_password_that_breaks_the_url_is_refused() {
        for raw in [
            "gotify://user:123/abc@127.0.0.1:8/TOKEN",
            "generic+http://user:12?x@127.0.0.1:8/hook",
            "smtp://me:12#x@mail.example.com/?to=a@b",
        ] {
            let e = parse(raw).unwrap_err();
            assert!(e.contains("percent-encode"), "{raw}: {e}");
            assert!(!e.contains("123") && !e.contains("12?x"), "{e}");
        }
        // An '@' where it belongs.
        assert!(parse("smtp://h/?to=a@b.example").is_ok());
        assert!(parse("generic+http://127.0.0.1:8/hook?@X-Api-Key=k3y").is_ok());
        let t = parse("generic+http://h:99/users/ops@example.com/hook").unwrap();
        assert_eq!(t.label, "webhook http://h");
        // A generic webhook's path may hold an '@': sent, but a port that
        // may be part of a password is not shown.
        let t = parse("generic+http://user:123/abc@127.0.0.1:8/hook").unwrap();
        assert_eq!(t.label, "webhook http://user");
        assert!(parse("ntfy://h/a@b").is_err());
        assert!(parse("teams://g@t/a/b?host=h.example").is_ok());
        assert!(parse("generic+http://u:p%2Fq@h/x").is_ok());
    }

    #[test]
    fn errors_never_hold_the_url() {
        for raw in [
            "smtpx://user:hunter2@h/",
            "smtp://user:hunter2@h/",
            "discord://hunter2@",
            "not a url hunter2",
        ] {
            let e = parse(raw).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
