//! orca-notify and the notifications of orca-backup and orca-guard, against
//! real servers on 127.0.0.1: aiosmtpd (PyPI) with STARTTLS, implicit TLS
//! and AUTH; Python's http.server standing in for each HTTP service, whose
//! requests are checked against the service's documented API. Slack,
//! Discord, Teams and hc-ping.com have fixed HTTPS hosts: the tests point
//! them at the local server with the test-only ORCA_NOTIFY_TEST_BASE_URL.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::need_docker;

/// A failed record as a pipe's first failing step writes it.
const FAILED: &str = r#"{"success": false, "volume": "orca.apphost-0123456789-sql-data", "error": {"code": "volume_not_found", "exit_code": 4, "message": "volume 'x' not found: check the name with docker volume ls", "step": "orca-find-volume"}}"#;

/// A successful record, as orca-verify leaves it.
const DONE: &str = r#"{"success": true, "volume": "v1", "backup_name": "orca-db-2026-12-07-10-00.tar.gz", "backup_path": "/b/orca-db-2026-12-07-10-00.tar.gz", "size": "1.00 MB", "verified": true, "entries": 3}"#;

fn mail_of(m: &Value) -> String {
    m["data"].as_str().unwrap().replace("\r\n", "\n")
}

#[test]
fn a_failed_workflow_mails_every_recipient_over_starttls_and_implicit_tls() {
    need_docker!();
    let certs = Certs::new();
    let password = "Pa55 \"w0rd <x>";
    let starttls = Sink::smtp("starttls", certs.dir.path(), password);
    let implicit = Sink::smtp("implicit", certs.dir.path(), password);
    let env = Env::new();
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(' ', "%20")
            .replace('"', "%22")
            .replace('<', "%3C")
            .replace('>', "%3E")
    };
    let url = |port: u16, extra: &str| {
        format!(
            "smtp://alice:{}@127.0.0.1:{port}/?fromaddress=orca@test.example&toaddresses=ops@test.example,dba@test.example{extra}",
            enc(password)
        )
    };
    env.config(
        &serde_json::json!({
            "notify": {
                "urls": [url(starttls.port, ""), url(implicit.port, "&encryption=ImplicitTLS")],
                "ca_file": certs.path("ca.pem").display().to_string(),
            }
        })
        .to_string(),
    );
    // The volume does not exist: the workflow fails at its first step.
    let missing = unique("orca-test-no-such");
    let run = env.run("orca-backup", &["--volume", &missing]);
    let stderr = run.stderr.clone();
    let rec = run.fails_with(4);
    assert_eq!(rec["error"]["step"], "orca-find-volume");
    for sink in [&starttls, &implicit] {
        let mails = sink.got();
        assert_eq!(mails.len(), 1, "one mail per failed run: {mails:?}");
        let m = &mails[0];
        assert_eq!(m["user"], "alice");
        assert_eq!(m["tls"], true);
        assert_eq!(m["mail_from"], "orca@test.example");
        assert_eq!(
            m["rcpt_tos"],
            serde_json::json!(["ops@test.example", "dba@test.example"])
        );
        let text = mail_of(m);
        assert!(text.contains("Subject: "), "{text}");
        let subject = text.lines().find(|l| l.starts_with("Subject: ")).unwrap();
        assert!(subject.contains("FAILED"), "{subject}");
        assert!(subject.contains("orca-find-volume"), "{subject}");
        assert!(text.contains(&missing), "the body names the volume: {text}");
        assert!(text.contains("exit 4"), "{text}");
        assert!(!text.contains("Pa55"), "{text}");
    }
    let sent = rec["notifications"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|n| n["sent"] == true && n["event"] == "failure")
    );
    assert!(!rec.to_string().contains("Pa55") && !stderr.contains("Pa55"));

    // A wrong password: the mail server refuses, the outcome stays, the
    // password is never shown.
    let bad = url(starttls.port, "").replace("Pa55", "Wr0ng");
    let run = env.run_with(
        "orca-notify",
        &[
            "--to",
            &bad,
            "--config",
            env.base().join("config.json").to_str().unwrap(),
        ],
        FAILED,
    );
    assert!(
        run.stderr.contains("notification to smtp://127.0.0.1:"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Wr0ng") && !run.stdout.contains("Wr0ng"));
    let rec = run.fails_with(4);
    assert_eq!(rec["error"]["step"], "orca-find-volume");
    assert_eq!(rec["notifications"][0]["sent"], false);
    assert_eq!(starttls.got().len(), 1, "no second mail");
}

#[test]
fn every_service_gets_what_its_api_takes() {
    let sink = Sink::http(200, 0.0);
    let env = Env::new();
    let uuid = "5f1a8c3e-1111-4222-8333-944445555666";
    let p = sink.port;
    let urls = [
        format!(
            "generic+http://hookuser:hookpass@127.0.0.1:{p}/hooks/orca?@X-Api-Key=k3y-0f-the-hook&$source=ci&team=ops"
        ),
        format!(
            "ntfy://:tk_ntfytoken123@127.0.0.1:{p}/orca-alerts-x7?scheme=http&tags=floppy_disk"
        ),
        format!("gotify://127.0.0.1:{p}/AppT0ken123?disabletls=yes"),
        "slack://hook:T0001-B0002-S1ackSecret99@webhook".to_string(),
        "slack://xoxb:1234-5678-B0tSecret@c0123chan".to_string(),
        "discord://D1scordT0ken_x@987654321".to_string(),
        "teams://g-1@t-2/alt/owner/extra?host=org.webhook.office.com".to_string(),
        format!("hc://{uuid}"),
    ];
    let mut args = Vec::new();
    for u in &urls {
        args.push("--to");
        args.push(u.as_str());
    }
    let mut c = env.cmd("orca-notify", &args);
    c.env("ORCA_NOTIFY_TEST_BASE_URL", sink.base());
    let run = run_with_stdin(c, FAILED);
    let out = run.stdout.clone() + &run.stderr;
    let rec = run.fails_with(4);
    let sent = rec["notifications"].as_array().unwrap();
    assert_eq!(sent.len(), urls.len(), "{rec}");
    assert!(sent.iter().all(|n| n["sent"] == true), "{rec}");
    for secret in [
        "hookpass",
        "k3y-0f-the-hook",
        "tk_ntfytoken123",
        "orca-alerts-x7",
        "AppT0ken123",
        "S1ackSecret99",
        "B0tSecret",
        "D1scordT0ken_x",
        uuid,
    ] {
        assert!(!out.contains(secret), "{secret} shown: {out}");
    }
    let got = sink.got();
    let by_path = |p: &str| -> &Value {
        got.iter()
            .find(|r| r["path"] == p)
            .unwrap_or_else(|| panic!("no request to {p}: {got:?}"))
    };
    let json = |r: &Value| -> Value { serde_json::from_str(r["body"].as_str().unwrap()).unwrap() };

    // A generic webhook: POST, JSON {title, message, ...}, its headers,
    // basic auth, its own parameters passed on.
    let r = by_path("/hooks/orca");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["query"], "team=ops");
    assert_eq!(r["headers"]["content-type"], "application/json");
    assert_eq!(r["headers"]["x-api-key"], "k3y-0f-the-hook");
    assert_eq!(
        r["headers"]["authorization"],
        "Basic aG9va3VzZXI6aG9va3Bhc3M="
    );
    let b = json(r);
    assert!(b["title"].as_str().unwrap().contains("FAILED"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("not found"), "{b}");
    assert_eq!(b["source"], "ci");
    assert_eq!(b["success"], false);
    assert_eq!(b["record"]["error"]["exit_code"], 4);

    // ntfy: JSON publish to the root, the topic in the body, a token.
    let r = by_path("/");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["headers"]["authorization"], "Bearer tk_ntfytoken123");
    let b = json(r);
    assert_eq!(b["topic"], "orca-alerts-x7");
    assert_eq!(b["priority"], 4);
    assert_eq!(b["tags"], serde_json::json!(["floppy_disk"]));
    assert!(b["message"].as_str().unwrap().contains("orca-find-volume"));

    // gotify: POST /message with the application token in X-Gotify-Key.
    let r = by_path("/message");
    assert_eq!(r["headers"]["x-gotify-key"], "AppT0ken123");
    let b = json(r);
    assert_eq!(b["priority"], 8);
    assert!(b["title"].as_str().unwrap().contains("FAILED"));

    // Slack: an incoming webhook, and chat.postMessage with a bot token.
    let b = json(by_path("/services/T0001/B0002/S1ackSecret99"));
    assert!(b["text"].as_str().unwrap().starts_with("*❌"), "{b}");
    let r = by_path("/api/chat.postMessage");
    assert_eq!(
        r["headers"]["authorization"],
        "Bearer xoxb-1234-5678-B0tSecret"
    );
    assert_eq!(json(r)["channel"], "C0123CHAN");

    // Discord: the webhook's id and token in the path, content.
    let b = json(by_path("/api/webhooks/987654321/D1scordT0ken_x"));
    assert!(b["content"].as_str().unwrap().starts_with("**❌"), "{b}");

    // Teams: a MessageCard to the webhook's path.
    let b = json(by_path(
        "/webhookb2/g-1@t-2/IncomingWebhook/alt/owner/extra",
    ));
    assert_eq!(b["@type"], "MessageCard");
    assert!(b["title"].as_str().unwrap().contains("FAILED"));

    // healthchecks: the failure goes to /fail, the message in the body.
    let r = by_path(&format!("/{uuid}/fail"));
    assert!(r["body"].as_str().unwrap().contains("not found"));

    // The pipe's start ping: at the head of the pipe, with a run id that
    // the steps pass on and the end's ping carries too (no engine here:
    // orca-find-volume fails with exit 3, and that is told).
    let run = env.pipeline(&format!(
        "export ORCA_NOTIFY_TEST_BASE_URL={base} DOCKER_HOST=tcp://127.0.0.1:1; \
         orca-notify --start --to {hc} | orca-find-volume - --volume v | orca-notify --to {hc}",
        base = sink.base(),
        hc = urls[7]
    ));
    let rec = run.fails_with(3);
    let rid = rec["notify_run_id"].as_str().unwrap().to_string();
    let got = sink.got();
    let start = got
        .iter()
        .position(|r| r["path"] == format!("/{uuid}/start"))
        .expect("a start ping");
    let end = got
        .iter()
        .rposition(|r| r["path"] == format!("/{uuid}/fail"))
        .expect("a fail ping");
    assert!(start < end);
    assert_eq!(got[start]["query"], format!("rid={rid}"));
    assert_eq!(got[end]["query"], format!("rid={rid}"));
    // A success reaches the plain ping URL.
    let mut c = env.cmd("orca-notify", &["--to", &urls[7]]);
    c.env("ORCA_NOTIFY_TEST_BASE_URL", sink.base());
    let rec = run_with_stdin(c, DONE).ok();
    assert_eq!(rec["backup_name"], "orca-db-2026-12-07-10-00.tar.gz");
    assert!(sink.got().iter().any(|r| r["path"] == format!("/{uuid}")));

    // --test: every URL, whatever the level; healthchecks' /log.
    let mut c = env.cmd(
        "orca-notify",
        &["--test", "--to", &urls[2], "--to", &urls[7]],
    );
    c.env("ORCA_NOTIFY_TEST_BASE_URL", sink.base());
    let rec = run_with_stdin(c, FAILED).ok();
    assert!(
        rec.get("error").is_none(),
        "--test reports no record: {rec}"
    );
    assert!(
        sink.got()
            .iter()
            .any(|r| r["path"] == format!("/{uuid}/log"))
    );
    let run = env.run("orca-notify", &["--test", "--to", "smtp://nobody"]);
    run.fails_with(24);
}

#[test]
fn levels_and_templates() {
    let sink = Sink::http(200, 0.0);
    let env = Env::new();
    let hook = format!("generic+http://127.0.0.1:{}/hook", sink.port);
    // error (the default): a success is not told.
    let rec = env.run_with("orca-notify", &["--to", &hook], DONE).ok();
    assert!(rec.get("notifications").is_none(), "{rec}");
    assert!(sink.got().is_empty());
    // info: it is.
    env.config(
        &serde_json::json!({"notify": {
            "urls": [hook],
            "level": "info",
            "title": "{{ 'OK' if success else 'BAD' }}: {{ backup_name }}",
            "template": "{{ event }} of {{ volume }} on {{ host }}, {{ size }}{{ nothing.here }}",
        }})
        .to_string(),
    );
    let rec = env.run_with("orca-notify", &[], DONE).ok();
    assert_eq!(rec["notifications"][0]["sent"], true);
    let got = sink.got();
    assert_eq!(got.len(), 1);
    let b: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(b["title"], "OK: orca-db-2026-12-07-10-00.tar.gz");
    let msg = b["message"].as_str().unwrap();
    assert!(msg.starts_with("success of v1 on "), "{msg}");
    assert!(msg.ends_with(", 1.00 MB"), "{msg}");
    // --level error on the command line wins over the config.
    env.run_with("orca-notify", &["--level", "error"], DONE)
        .ok();
    assert_eq!(sink.got().len(), 1);
    // What is not a record (the step before crashed half-way) is a failure
    // to tell, and so is nothing at all from a pipe.
    let n = sink.got().len();
    let run = env.run_with("orca-notify", &[], "{\"volume\": ");
    run.fails_with(2);
    let run = env.run_with("orca-notify", &[], "");
    assert!(
        run.message()
            .contains("the step before ended without writing one")
    );
    run.fails_with(2);
    assert_eq!(sink.got().len(), n + 2);
    // A mistake in the notify settings: a warning, kept in the record; the
    // rest of the settings still work, and --test says so.
    env.config(&serde_json::json!({"notify": {"urls": [hook], "level": "loud"}}).to_string());
    let run = env.run_with("orca-notify", &[], FAILED);
    assert!(run.stderr.contains("key 'notify.level'"), "{}", run.stderr);
    let rec = run.fails_with(4);
    assert_eq!(rec["notifications"][0]["sent"], true);
    assert!(
        rec["warnings"].to_string().contains("key 'notify.level'"),
        "{rec}"
    );
    env.run("orca-notify", &["--test"]).fails_with(24);
    // A broken template: the default text goes, with a warning.
    env.config(
        &serde_json::json!({"notify": {"urls": [hook], "template": "{% if %}"}}).to_string(),
    );
    let run = env.run_with("orca-notify", &[], FAILED);
    assert!(run.stderr.contains("notify template"), "{}", run.stderr);
    run.fails_with(4);
    let got = sink.got();
    let b: Value = serde_json::from_str(got.last().unwrap()["body"].as_str().unwrap()).unwrap();
    assert!(
        b["message"].as_str().unwrap().contains("Backup failed"),
        "{b}"
    );
}

#[test]
fn a_server_down_slow_or_failing_changes_nothing_and_nothing_hangs() {
    need_docker!();
    let slow = Sink::http(200, 30.0);
    let failing = Sink::http(500, 0.0);
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    let env = Env::new();
    env.config(
        &serde_json::json!({
            "min_size_warning_mb": 0,
            "notify": {
                "urls": [
                    format!("generic+http://127.0.0.1:{}/slow", slow.port),
                    format!("generic+http://127.0.0.1:{}/failing", failing.port),
                    format!("generic+http://127.0.0.1:{down_port}/down"),
                    "carrier-pigeon://coop/1",
                ],
                "level": "info",
                "timeout_seconds": 1,
                "retries": 1,
            }
        })
        .to_string(),
    );
    let vol = TestVolume::named(&unique("orca-test-notify"));
    vol.sh("echo data > /v/f");
    let started = Instant::now();
    let run = env.run("orca-backup", &["--volume", &vol.name, "--name", "n1"]);
    let took = started.elapsed();
    assert!(run.stderr.contains("✅ Backup complete!"), "{}", run.stderr);
    let warned = run.stderr.clone();
    let rec = run.ok();
    assert!(env.backups().join("orca-db-n1.tar.gz").is_file());
    let sent = rec["notifications"].as_array().unwrap();
    assert_eq!(sent.len(), 3, "{rec}");
    assert!(sent.iter().all(|n| n["sent"] == false), "{rec}");
    // Two attempts each (one retry), and the server that answered 500 saw both.
    assert!(sent.iter().all(|n| n["attempts"] == 2), "{rec}");
    assert_eq!(failing.got().len(), 2);
    let warnings: Vec<&str> = rec["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.starts_with("notification"))
        .collect();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(warned.contains("answered HTTP 500"), "{warned}");
    assert!(
        warned.contains("'carrier-pigeon://' is not a service"),
        "{warned}"
    );
    // Bounded: two attempts of one second and a retry's pause, all URLs at
    // once; far from the 30 s the slow server would take.
    assert!(took < Duration::from_secs(25), "took {took:?}");
}

#[test]
fn no_secret_reaches_a_message() {
    need_docker!();
    let sink = Sink::http(200, 0.0);
    let env = Env::new();
    let passphrase = "correct horse battery staple 9431";
    let pass_file = env.base().join("passphrase.txt");
    std::fs::write(&pass_file, format!("{passphrase}\n")).unwrap();
    let uuid = "0a1b2c3d-1111-4222-8333-944445555666";
    env.config(
        &serde_json::json!({
            "min_size_warning_mb": 0,
            "remote_timeout_seconds": 2,
            "s3": {"endpoint": "http://AKIAORCATESTKEY:S3cretEndpointPw@127.0.0.1:1"},
            "notify": {
                "urls": [
                    format!("generic+http://hookuser:H00kPassw0rd@127.0.0.1:{}/hook", sink.port),
                    format!("hc://127.0.0.1:{}/ping/{uuid}?disabletls=yes", sink.port),
                ],
                "level": "info",
                "template": "{{ body }}\n{{ record | tojson }}",
            }
        })
        .to_string(),
    );
    let vol = TestVolume::named(&unique("orca-test-secret"));
    vol.sh("echo data > /v/f");
    let mut c = env.cmd(
        "orca-backup",
        &[
            "--volume",
            &vol.name,
            "--passphrase",
            "--copy-to",
            "s3://orca-bucket/nightly",
            "--schedule",
            "nightly",
        ],
    );
    c.env("ORCA_PASSPHRASE_FILE", &pass_file)
        .env("AWS_ACCESS_KEY_ID", "AKIAORCATESTKEY")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET",
        );
    let run = Run::from_output(c.output().unwrap());
    let outputs = format!("{}{}", run.stdout, run.stderr);
    let rec = run.fails_with(15);
    assert_eq!(rec["error"]["step"], "orca-copy");
    let got = sink.got();
    // The scheduled run's start ping, then the failure's.
    let paths: Vec<&str> = got.iter().map(|r| r["path"].as_str().unwrap()).collect();
    let start = paths
        .iter()
        .position(|p| *p == format!("/ping/{uuid}/start"))
        .expect("start ping");
    let fail = paths
        .iter()
        .position(|p| *p == format!("/ping/{uuid}/fail"))
        .expect("fail ping");
    assert!(start < fail, "{paths:?}");
    let hook = got.iter().find(|r| r["path"] == "/hook").expect("webhook");
    let body = hook["body"].as_str().unwrap();
    assert!(body.contains("orca-copy"), "{body}");
    let everything = format!(
        "{outputs}{}",
        got.iter()
            .map(|r| r["body"].as_str().unwrap().to_string() + r["query"].as_str().unwrap())
            .collect::<String>()
    );
    for secret in [
        passphrase,
        "S3cretEndpointPw",
        "AKIAORCATESTKEY:",
        "wJalrXUtnFEMI",
        "H00kPassw0rd",
    ] {
        assert!(!everything.contains(secret), "{secret} reached a message");
    }
}

#[test]
fn a_failing_guarded_command_is_told_with_the_restore() {
    need_docker!();
    let sink = Sink::http(200, 0.0);
    let env = Env::new();
    env.config(r#"{"min_size_warning_mb": 0, "stop_timeout_seconds": 5}"#);
    let vol = TestVolume::named(&unique("orca-test-guard-notify"));
    vol.sh("echo before > /v/f");
    let hook = format!("generic+http://127.0.0.1:{}/hook", sink.port);
    let unreachable = env.cmd("orca-backup", &["--volume", &vol.name, "--notify", &hook]);
    // Docker not even reachable: told too.
    let mut c = unreachable;
    c.env("DOCKER_HOST", "tcp://127.0.0.1:1");
    let run = Run::from_output(c.output().unwrap());
    run.fails_with(3);
    let run = env.run(
        "orca-guard",
        &["--volume", &vol.name, "--notify", &hook, "--", "false"],
    );
    run.fails_with(21);
    // A config that cannot be read: the --notify URLs still hear of it.
    let broken = Env::new();
    broken.config("{\"notify\": ");
    broken
        .run("orca-guard", &["--notify", &hook, "--", "true"])
        .fails_with(2);
    let got = sink.got();
    assert_eq!(got.len(), 3, "{got:?}");
    let b: Value = serde_json::from_str(got[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(b["record"]["error"]["code"], "usage");
    let first: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(first["record"]["error"]["code"], "docker_unavailable");
    let b: Value = serde_json::from_str(got[1]["body"].as_str().unwrap()).unwrap();
    let title = b["title"].as_str().unwrap();
    assert!(title.contains("orca-guard"), "{title}");
    assert!(title.contains("put back"), "{title}");
    assert!(b["message"].as_str().unwrap().contains("Took: "), "{b}");
}
