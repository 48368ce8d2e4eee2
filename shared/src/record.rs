//! The JSON record that flows from step to step on stdin and stdout.
//!
//! Every tool reads at most one JSON object on stdin, keeps every field it does
//! not own (in order, untouched), adds its own and writes exactly one object on
//! stdout. `success` and `error` say how the step went; a failed record passes
//! through later steps unchanged. Field names are an API: only ever added.

use std::io::{self, IsTerminal, Read, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::exit::ErrorKind;

/// One JSON object, in field order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    fields: Map<String, Value>,
}

/// Whether the record came from stdin or was started fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// stdin was a terminal, or empty: a fresh record.
    Fresh,
    /// A record was read from stdin.
    Stdin,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Record::default()
    }

    /// Read the record from stdin unless stdin is a terminal (`force`: even
    /// then); empty input is a fresh record.
    pub fn from_stdin(force: bool) -> anyhow::Result<(Record, Source)> {
        let stdin = io::stdin();
        if stdin.is_terminal() && !force {
            return Ok((Record::new(), Source::Fresh));
        }
        let mut bytes = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| crate::err!(Usage, "cannot read the record on stdin: {e}"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((Record::new(), Source::Fresh));
        }
        Ok((Record::parse(&bytes)?, Source::Stdin))
    }

    /// Parse one JSON object; anything else is a usage error naming what was wrong.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Record> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            crate::err!(
                Usage,
                "the record on stdin is not UTF-8 text; pipe the JSON output of an orca tool"
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            crate::err!(
                Usage,
                "the record on stdin is not valid JSON ({}); pipe the output of an orca tool or nothing",
                json_error(text, &e)
            )
        })?;
        match value {
            Value::Object(fields) => Ok(Record { fields }),
            other => crate::fail!(
                Usage,
                "the record on stdin must be one JSON object, got {}; pipe the output of an orca tool",
                json_type(&other)
            ),
        }
    }

    /// The record's fields.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// A field's raw value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// A string field; present with another type is a usage error.
    pub fn str(&self, key: &str) -> anyhow::Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => crate::fail!(
                Usage,
                "field '{key}' of the stdin record must be a string, got {}",
                json_type(other)
            ),
        }
    }

    /// A boolean field; present with another type is a usage error.
    pub fn bool(&self, key: &str) -> anyhow::Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => crate::fail!(
                Usage,
                "field '{key}' of the stdin record must be true or false, got {}",
                json_type(other)
            ),
        }
    }

    /// A non-negative integer field; present with another type is a usage error.
    pub fn u64(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => crate::fail!(
                Usage,
                "field '{key}' of the stdin record must be a non-negative integer, got {}",
                json_type(other)
            ),
        }
    }

    /// Set (or replace, keeping its position) a field.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).expect("record values serialize");
        self.fields.insert(key.to_string(), value);
    }

    /// Remove a field.
    pub fn remove(&mut self, key: &str) {
        self.fields.shift_remove(key);
    }

    /// For a record that reports a failure (`"success": false`), the exit code to
    /// end with: `error.exit_code` when it is a valid non-zero code, else 1.
    pub fn failure_exit_code(&self) -> Option<u8> {
        if self.fields.get("success") != Some(&Value::Bool(false)) {
            return None;
        }
        let code = self
            .fields
            .get("error")
            .and_then(|e| e.get("exit_code"))
            .and_then(Value::as_u64)
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| *c != 0);
        Some(code.unwrap_or(1))
    }

    /// Mark the record successful (drops a stale `error`).
    pub fn set_success(&mut self) {
        self.set("success", true);
        self.remove("error");
    }

    /// Mark the record failed with `kind`, a one-line `message` and the failing `step`.
    pub fn set_failure(&mut self, kind: ErrorKind, message: &str, step: &str) {
        self.set("success", false);
        self.set(
            "error",
            serde_json::json!({
                "code": kind.code(),
                "message": message,
                "exit_code": kind.exit_code(),
                "step": step,
            }),
        );
    }

    /// Write the record as one JSON object on stdout: indented for a terminal,
    /// one line otherwise. A closed pipe is not an error.
    pub fn write_stdout(&self) -> io::Result<()> {
        let stdout = io::stdout();
        let text = if stdout.is_terminal() {
            serde_json::to_string_pretty(&self.fields)
        } else {
            serde_json::to_string(&self.fields)
        }
        .expect("a JSON map serializes");
        let mut out = stdout.lock();
        let result = writeln!(out, "{text}").and_then(|_| out.flush());
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// serde_json's error, with the number it refused when it is out of range
/// (`1e400`): its own message says only where.
pub fn json_error(text: &str, e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if !msg.starts_with("number out of range") {
        return msg;
    }
    match number_at(text, e.line(), e.column()) {
        Some(n) => format!(
            "the number {n} is out of range (it does not fit a 64-bit number) at line {} column {}",
            e.line(),
            e.column()
        ),
        None => msg,
    }
}

/// The JSON number literal around line `line`, column `column` (1-based).
fn number_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let l = text.split('\n').nth(line.checked_sub(1)?)?;
    let is_num = |c: u8| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E');
    let b = l.as_bytes();
    // The column is at the number or just after it.
    let mut end = column.min(b.len());
    while end > 0 && !is_num(b[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_num(b[start - 1]) {
        start -= 1;
    }
    while end < b.len() && is_num(b[end]) {
        end += 1;
    }
    l.get(start..end).filter(|n| !n.is_empty())
}

/// "a string", "an array"... for messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_out_of_range_are_named() {
        let e = Record::parse(br#"{"size_bytes": 1e400}"#).unwrap_err();
        assert!(format!("{e:#}").contains("1e400"), "{e:#}");
        let e =
            Record::parse(b"{\"a\": 1,\n \"b\": -123456789012345678901234567890e999}").unwrap_err();
        assert!(
            format!("{e:#}").contains("-123456789012345678901234567890e999"),
            "{e:#}"
        );
    }
    use crate::exit::kind_of;

    #[test]
    fn keeps_unknown_fields_in_order() {
        let mut r = Record::parse(br#"{"z":1,"volume":"v","extra":{"a":[1]}}"#).unwrap();
        r.set("volume", "w");
        r.set("new", 2);
        let keys: Vec<_> = r.fields().keys().cloned().collect();
        assert_eq!(keys, ["z", "volume", "extra", "new"]);
        assert_eq!(r.fields()["extra"], serde_json::json!({"a":[1]}));
    }

    #[test]
    fn rejects_arrays_and_bad_json_as_usage_errors() {
        for (input, needle) in [
            (&b"[1,2]"[..], "an array"),
            (b"{\"a\":", "not valid JSON"),
            (b"{} {}", "not valid JSON"),
            (b"\xff\xfe", "not UTF-8"),
            (b"42", "a number"),
        ] {
            let e = Record::parse(input).unwrap_err();
            assert_eq!(kind_of(&e), ErrorKind::Usage);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn typed_getters_name_the_field() {
        let r = Record::parse(br#"{"volume":3,"overwrite":"yes","n":-1}"#).unwrap();
        let e = r.str("volume").unwrap_err();
        assert!(e.to_string().contains("'volume'") && e.to_string().contains("a number"));
        assert!(r.bool("overwrite").is_err());
        assert!(r.u64("n").is_err());
        assert_eq!(r.str("missing").unwrap(), None);
    }

    #[test]
    fn failure_exit_codes() {
        let ok = Record::parse(br#"{"success":true}"#).unwrap();
        assert_eq!(ok.failure_exit_code(), None);
        let f = Record::parse(br#"{"success":false,"error":{"exit_code":4}}"#).unwrap();
        assert_eq!(f.failure_exit_code(), Some(4));
        let bad = Record::parse(br#"{"success":false,"error":{"exit_code":0}}"#).unwrap();
        assert_eq!(bad.failure_exit_code(), Some(1));
        let none = Record::parse(br#"{"success":false}"#).unwrap();
        assert_eq!(none.failure_exit_code(), Some(1));
    }

    #[test]
    fn failure_record_shape() {
        let mut r = Record::new();
        r.set_failure(ErrorKind::VolumeNotFound, "gone", "orca-export");
        assert_eq!(
            r.fields()["error"],
            serde_json::json!({"code":"volume_not_found","message":"gone","exit_code":4,"step":"orca-export"})
        );
        r.set_success();
        assert!(r.get("error").is_none());
    }
}
