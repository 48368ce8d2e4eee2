//! What must never be printed: the credentials a URL may carry
//! (`scheme://user:password@host`). Every endpoint, host or error text that
//! can hold a URL goes through [`urls`] before it reaches a message, a
//! record or a log.

/// `text` with the user information of every URL in it replaced by `***`:
/// `http://user:secret@host/x` becomes `http://***@host/x`.
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, query or fragment, or where the
        // URL ends in prose (white space, quotes, brackets).
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | ')' | ']' | '>' | '<' | '`'
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
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
        assert_eq!(urls("tcp://10.0.0.1:2375"), "tcp://10.0.0.1:2375");
        assert_eq!(urls("no url here"), "no url here");
        assert_eq!(urls("a://"), "a://");
        // A password with '@' in it: everything up to the last '@' goes.
        assert_eq!(urls("s3://u:p@ss@host/k"), "s3://***@host/k");
        // Non-ASCII around a URL does not split characters.
        assert_eq!(urls("é http://ü:ö@h/é"), "é http://***@h/é");
    }
}
