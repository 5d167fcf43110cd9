//! How errors and outside text become one line for people: shared by every stage, so walking
//! never reaches into hashing for an I/O message and sending never into the API client for an
//! error chain.

/// An I/O error as people read it: `No such file or directory`, without Rust's
/// ` (os error 2)` suffix.
pub fn plain_io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// An error and its causes on one line, `outer: cause: root` (reqwest's and hyper's own
/// messages hide the cause).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

/// A name (an object name, a path, a name read from a manifest) as printed: itself, or, if it
/// holds control characters (an escape sequence that moves the cursor or clears the screen, a
/// newline that starts a forged line of hashup's own), escaped as `str::escape_debug` does:
/// `a\u{1b}[2Jb`, `a\nb`. The rule `hashup verify` and `hash -c` apply to object names.
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string().into()
    } else {
        name.into()
    }
}

/// A path as printed: lossy UTF-8, then [`shown`].
pub fn shown_path(path: &std::path::Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

/// How many characters of a server's text reach a message: enough for any real S3 or API
/// error, too few to flood a terminal or a manifest.
pub const SERVER_TEXT_CHARS: usize = 300;

/// Query parameters whose values are secrets: a presigned URL's signature and credentials
/// (SigV4 and SigV2), a session token.
const SECRET_PARAMETERS: [&str; 4] = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "Signature",
];

/// Text a server sent, made safe to print and record: secrets in any URL it quotes redacted
/// ([`redact`]), control characters (escape sequences, newlines that could forge a line of
/// our own) turned into spaces, runs of white space folded, and at most [`SERVER_TEXT_CHARS`]
/// characters kept (then `…`).
pub fn server_text(text: &str) -> String {
    let redacted = redact(text);
    let mut out = String::new();
    let mut chars = 0;
    let mut space = false;
    for c in redacted.chars() {
        if c.is_control() || c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if chars == SERVER_TEXT_CHARS {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// `text` with the value of every secret query parameter (`X-Amz-Signature=…`,
/// `X-Amz-Credential=…`, `X-Amz-Security-Token=…`, `Signature=…`) replaced by `REDACTED`,
/// wherever it stands (a URL, an error message quoting one, an XML body).
pub fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let found = SECRET_PARAMETERS
            .iter()
            .filter_map(|name| {
                let needle = format!("{}=", name.to_ascii_lowercase());
                lower[at..].find(&needle).map(|i| (at + i, needle.len()))
            })
            // `X-Amz-Signature=` also contains `Signature=`: take the earliest, longest match.
            .min_by_key(|&(start, len)| (start, std::cmp::Reverse(len)));
        let Some((start, len)) = found else {
            out.push_str(&text[at..]);
            break;
        };
        let value_start = start + len;
        let value_end = text[value_start..]
            .find(|c: char| matches!(c, '&' | '"' | '\'' | '<' | '>') || c.is_whitespace())
            .map_or(text.len(), |i| value_start + i);
        out.push_str(&text[at..value_start]);
        out.push_str("REDACTED");
        at = value_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_lose_the_os_error_suffix() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(plain_io_message(&err), "No such file or directory");
        let custom = std::io::Error::other("disk on fire");
        assert_eq!(plain_io_message(&custom), "disk on fire");
    }

    #[test]
    fn server_text_is_one_short_clean_line() {
        assert_eq!(
            server_text("\x1b[2J\x1b[Hcleared\nhashup: 1 files, 1 uploaded"),
            "[2J [Hcleared hashup: 1 files, 1 uploaded"
        );
        let long = "x".repeat(10_000);
        let cut = server_text(&long);
        assert_eq!(cut.chars().count(), SERVER_TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(server_text("  a \t\r\n b  "), "a b");
    }

    #[test]
    fn names_with_control_characters_are_escaped() {
        assert_eq!(shown("plain/name é.sif"), "plain/name é.sif");
        assert_eq!(
            shown("a\x1b[2J\nhashup: 7 files"),
            "a\\u{1b}[2J\\nhashup: 7 files"
        );
        assert_eq!(
            shown_path(std::path::Path::new("dir/\x07bell")),
            "dir/\\u{7}bell"
        );
    }

    #[test]
    fn secrets_in_urls_are_redacted() {
        let url = "http://s3/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261127%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261127T000000Z&X-Amz-Signature=deadbeef&x-amz-security-token=TOKEN";
        assert_eq!(
            redact(url),
            "http://s3/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Date=20261127T000000Z&X-Amz-Signature=REDACTED&x-amz-security-token=REDACTED"
        );
        assert_eq!(
            redact("<Message>bad: /k?AWSAccessKeyId=A&Signature=c2ln&Expires=1</Message>"),
            "<Message>bad: /k?AWSAccessKeyId=A&Signature=REDACTED&Expires=1</Message>"
        );
        assert_eq!(redact("no secrets here"), "no secrets here");
        assert_eq!(redact("Signature="), "Signature=REDACTED");
    }

    #[test]
    fn chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("root"));
        assert_eq!(error_chain(&err), "outer: root");
    }
}
