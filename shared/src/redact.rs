//! What must never be printed: the credentials a URL may carry
//! (`scheme://user:password@host`). Every endpoint, host or error text that
//! can hold a URL goes through [`urls`] before it reaches a message, a
//! record or a log.

/// `text` with the user information of every URL in it replaced by `***`:
/// `http://user:secret@host/x` becomes `http://***@host/x`.
///
/// A password may hold almost anything (`)`, `'`, `/`, `#`...), so a URL is
/// taken to run to the next white space or quote, and everything up to its
/// last `@` goes: a path with an `@` in it loses a little more than needed,
/// a password never shows.
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        let span = &tail[..end];
        match span.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&span[at..]);
            }
            None => out.push_str(span),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The user information of a URL: everything between `scheme://` (or the
/// start, for a URL written without its scheme) and the last `@`.
pub fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let at = rest.rfind('@')?;
    Some(&rest[..at]).filter(|u| !u.is_empty())
}

/// An endpoint fit to show: its user information replaced by `***`.
pub fn endpoint(url: &str) -> String {
    match userinfo(url) {
        Some(u) => url.replacen(u, "***", 1),
        None => urls(url),
    }
}

/// `text` with `secret` (a URL's user information, see [`userinfo`]) and
/// the user information of every URL in it replaced by `***`: a password
/// holding characters that end a URL in prose (`"`, `<`, a space) is still
/// found.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => urls(&text.replace(s, "***")),
        _ => urls(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_goes_and_the_rest_stays() {
        assert_eq!(
            urls("http://user:s3cr%40t@127.0.0.1:9000/bucket"),
            "http://***@127.0.0.1:9000/bucket"
        );
        assert_eq!(
            urls("cannot reach https://k:p@h (x) or smtp://a@b:25?to=c"),
            "cannot reach https://***@h (x) or smtp://***@b:25?to=c"
        );
        assert_eq!(urls("'https://k:p@h'"), "'https://***@h'");
        assert_eq!(urls("tcp://10.0.0.1:2375"), "tcp://10.0.0.1:2375");
        assert_eq!(urls("no url here"), "no url here");
        assert_eq!(urls("a://"), "a://");
        // A password with '@' in it: everything up to the last '@' goes.
        assert_eq!(urls("s3://u:p@ss@host/k"), "s3://***@host/k");
        // Non-ASCII around a URL does not split characters.
        assert_eq!(urls("é http://ü:ö@h/é"), "é http://***@h/é");
        // Characters a password may hold, legal or not.
        for pw in ["Pa)ss", "Pa'ss", "Pa/ss", "Pa#ss", "Pa?ss", "Pa(ss)"] {
            let shown = urls(&format!("at http://alice:{pw}5ecret@127.0.0.1:1/b (x)"));
            assert!(
                !shown.contains("5ecret") && !shown.contains("alice"),
                "{shown}"
            );
            assert!(shown.contains("@127.0.0.1:1/b (x)"), "{shown}");
        }
        // What ends a URL in prose, in a password: scrubbed by its value.
        let url = "http://alice:Zq9\" <pw@127.0.0.1:1";
        let secret = userinfo(url);
        assert_eq!(secret, Some("alice:Zq9\" <pw"));
        let shown = scrub(&format!("cannot reach {url}/b: refused"), secret);
        assert!(!shown.contains("Zq9") && !shown.contains("<pw"), "{shown}");
        assert_eq!(endpoint(url), "http://***@127.0.0.1:1");
        assert_eq!(endpoint("alice:pw@127.0.0.1:1"), "***@127.0.0.1:1");
        assert_eq!(endpoint("https://h:9000"), "https://h:9000");
        // In debug output, up to the next white space.
        assert_eq!(
            urls("uri: http://k:s@h/bucket/key, method: PUT"),
            "uri: http://***@h/bucket/key, method: PUT"
        );
    }
}
