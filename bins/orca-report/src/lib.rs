//! `orca-report`: the last step of the backup workflow.
//!
//! It turns the record into the report people read, on stderr:
//!
//! ```text
//! ✅ Backup complete!
//!   Path: /home/me/.claude-orca/backups/orca-db-2025-10-31-14-30.tar.gz
//!   Size: 145.23 MB
//! ```
//!
//! or `❌ Backup failed: <message>`, and writes the record on stdout (adding
//! `"message": "Backup created successfully"` on success; a failed record
//! passes unchanged) and exits with the record's exit code, i.e. the code of
//! the step that failed first.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use orca_shared::app::CommonArgs;
use orca_shared::exit::{self, ErrorKind};
use orca_shared::record::Record;

/// End a backup pipeline: print the report on stderr, the final record on stdout.
///
/// On success adds "message" to the record and prints "✅ Backup complete!"
/// with the path and size; on a failed record prints "❌ Backup failed:
/// <message>" and exits with the failed step's code.
#[derive(Parser, Debug)]
#[command(version, about, long_about, after_help = exit::EXIT_STATUS_HELP)]
pub struct Cli {
    /// The message recorded on success
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "Backup created successfully"
    )]
    pub message: String,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

const TOOL: &str = "orca-report";

/// Run the tool.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            let _ = e.print();
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                return ExitCode::SUCCESS;
            }
            let mut r = Record::new();
            r.set_failure(
                ErrorKind::Usage,
                "invalid arguments (see orca-report --help)",
                TOOL,
            );
            let _ = r.write_stdout();
            return ExitCode::from(ErrorKind::Usage.exit_code());
        }
    };
    if let Some(shell) = cli.common.completions {
        let mut cmd = Cli::command();
        clap_complete_generate(shell, &mut cmd);
        return ExitCode::SUCCESS;
    }
    let record = match Record::from_stdin(false) {
        Ok((r, _)) => r,
        Err(e) => return orca_shared::app::fail(TOOL, Record::new(), &e),
    };
    finish(record, &cli.message)
}

/// What the report says of a record: its first line and the lines under it.
/// orca-notify sends the same text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The run succeeded.
    pub ok: bool,
    /// `✅ Backup complete!` or `❌ Backup failed: <message>`.
    pub headline: String,
    /// The details, one per line, indented by two spaces.
    pub lines: Vec<String>,
}

impl Summary {
    /// The headline and the lines, one per line.
    pub fn text(&self) -> String {
        let mut t = self.headline.clone();
        for l in &self.lines {
            t.push('\n');
            t.push_str(l);
        }
        t
    }
}

/// The report of `record`.
pub fn summary(record: &Record) -> Summary {
    let mut lines = Vec::new();
    if record.failure_exit_code().is_some() {
        let message = record
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("unknown error")
            .to_string();
        // A later step (drill, copy, prune) failed: the backup itself is there.
        if record.bool("verified").ok().flatten() == Some(true)
            && let Some(path) = record.str("backup_path").ok().flatten()
        {
            let step = record
                .get("error")
                .and_then(|e| e.get("step"))
                .and_then(|s| s.as_str())
                .unwrap_or("a later step");
            lines.push(format!(
                "  The backup itself was written and verified: {path} ({step} failed after it)"
            ));
        }
        return Summary {
            ok: false,
            headline: format!("❌ Backup failed: {message}"),
            lines,
        };
    }
    let path = record
        .str("backup_path")
        .ok()
        .flatten()
        .unwrap_or("unknown");
    let size = record.str("size").ok().flatten().unwrap_or("unknown");
    lines.push(format!("  Path: {path}"));
    lines.push(format!("  Size: {size}"));
    if let Some(line) = consistency_line(record) {
        lines.push(format!("  Copy: {line}"));
    }
    let content_checked = record
        .get("checks")
        .and_then(|c| c.as_array())
        .and_then(|c| c.iter().find(|c| c["name"] == "integrity"))
        .is_none_or(|c| c["status"] != "skipped");
    if record.bool("verified").ok().flatten() == Some(true) {
        let entries = record.u64("entries").ok().flatten().unwrap_or(0);
        if content_checked {
            lines.push(format!(
                "  Verified: yes ({entries} entries, checksum and structure checked)"
            ));
        } else {
            lines.push(
                "  Verified: checksum only (encrypted; give the verify step --identity to check the content)"
                    .into(),
            );
        }
    }
    if record.bool("encrypted").ok().flatten() == Some(true) {
        let to = record
            .get("recipients")
            .and_then(|r| r.as_array())
            .map_or(0, Vec::len);
        if to == 0 {
            lines.push("  Encrypted: yes (age, passphrase)".into());
        } else {
            lines.push(format!("  Encrypted: yes (age, {to} recipient(s))"));
        }
    }
    if let Some(d) = record.get("drill") {
        let engine = d
            .get("engine")
            .and_then(|e| e.as_str())
            .unwrap_or("the database");
        let secs = d.get("started_in_ms").and_then(|v| v.as_u64()).unwrap_or(0) as f64 / 1000.0;
        let checks = d
            .get("checks")
            .and_then(|c| c.as_array())
            .map_or(0, Vec::len);
        lines.push(format!(
            "  Drill: passed ({engine} started on a scratch copy in {secs:.1} s, {checks} checks passed)"
        ));
    }
    if let Some(copies) = record.get("copies").and_then(|c| c.as_array()) {
        for c in copies {
            if let Some(url) = c.get("url").and_then(|u| u.as_str()) {
                let checked = if c.get("verified").and_then(|v| v.as_bool()) == Some(true) {
                    "read back, SHA-256 matches"
                } else {
                    "not checked"
                };
                lines.push(format!("  Copied to: {url} ({checked})"));
            }
        }
    }
    match record.str("consistency").ok().flatten() {
        Some("killed") => lines.push(
            "  Note: NOT consistent: the database did not stop within stop_timeout_seconds and was killed; raise stop_timeout_seconds and back up again"
                .into(),
        ),
        Some("live") => lines.push(
            "  Note: live copy taken while the database was running; it may not restore (use --stop, or a hot copy)"
                .into(),
        ),
        Some(_) => {}
        None if record.bool("consistent").ok().flatten() == Some(false) => lines.push(
            "  Note: live copy taken while SQL Server was running; use --stop for a consistent one"
                .into(),
        ),
        None => {}
    }
    if let Some(pruned) = record.get("pruned").and_then(|p| p.as_array()) {
        let freed = record.u64("freed_bytes").ok().flatten().unwrap_or(0);
        lines.push(format!(
            "  Pruned: {} old backup(s), {} freed",
            pruned.len(),
            orca_shared::progress::seed_size(freed)
        ));
    }
    Summary {
        ok: true,
        headline: "✅ Backup complete!".into(),
        lines,
    }
}

/// Print the report of `record` on stderr and the record on stdout (with
/// `message` on success); the exit code is the failed step's, or 0.
pub fn finish(mut record: Record, message: &str) -> ExitCode {
    if let Some(code) = record.failure_exit_code() {
        eprintln!("{}", summary(&record).text());
        let _ = record.write_stdout();
        return ExitCode::from(code);
    }
    if record.str("backup_path").ok().flatten().is_none() {
        let e = orca_shared::err!(
            Usage,
            "the record has no backup_path: pipe the output of the backup steps into orca-report"
        );
        eprintln!("❌ Backup failed: {e}");
        return orca_shared::app::fail(TOOL, record, &e);
    }
    eprintln!("{}", summary(&record).text());
    record.set("message", message);
    record.set_success();
    match record.write_stdout() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// How the files were copied, for the summary: `hot (SQL Server's snapshot
/// freeze, writes held 0.2 s)`, `stopped`...
fn consistency_line(record: &orca_shared::record::Record) -> Option<String> {
    let c = record.str("consistency").ok().flatten()?;
    let Some(hot) = record.get("hot").filter(|_| c == "hot") else {
        return Some(c.to_string());
    };
    let engine = hot.get("engine").and_then(|e| e.as_str()).unwrap_or("");
    let frozen = hot.get("frozen_ms").and_then(|v| v.as_u64()).unwrap_or(0) as f64 / 1000.0;
    Some(match engine {
        "sqlserver" => format!("hot (SQL Server's snapshot freeze, writes held {frozen:.1} s)"),
        "postgres" => "hot (PostgreSQL's backup mode, writes never held)".to_string(),
        other => format!("hot ({other})"),
    })
}

fn clap_complete_generate(shell: clap_complete::Shell, cmd: &mut clap::Command) {
    clap_complete::generate(shell, cmd, TOOL, &mut std::io::stdout());
}
