//! The GNU `sha256sum` list format: writing lines `sha256sum -c` accepts, and
//! reading lists the way `sha256sum -c` does.
//!
//! GNU coreutils (9.x) escapes a name that holds a backslash, newline or carriage
//! return: the line starts with `\` and those bytes become `\\`, `\n`, `\r`. Names
//! are written as raw bytes, so non-UTF-8 names survive a round trip.

use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Writes `<hex>  <path>\n`, escaped like GNU `sha256sum`.
pub fn write_line(out: &mut impl Write, digest: &[u8; 32], path: &Path) -> io::Result<()> {
    let name = path.as_os_str().as_bytes();
    let escape = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest, &mut hex).expect("64 hex digits for 32 bytes");
    if escape {
        out.write_all(b"\\")?;
    }
    out.write_all(&hex)?;
    out.write_all(b"  ")?;
    write_name(out, name, escape)?;
    out.write_all(b"\n")
}

/// Writes the `<path>: ` prefix of a `-c` result line. As in GNU `sha256sum -c`,
/// only names with a newline are escaped (the line then starts with `\`).
pub fn write_check_prefix(out: &mut impl Write, path: &Path) -> io::Result<()> {
    let name = path.as_os_str().as_bytes();
    let escape = name.contains(&b'\n');
    if escape {
        out.write_all(b"\\")?;
    }
    write_name(out, name, escape)?;
    out.write_all(b": ")
}

fn write_name(out: &mut impl Write, name: &[u8], escape: bool) -> io::Result<()> {
    if !escape {
        return out.write_all(name);
    }
    let mut start = 0;
    for (i, &b) in name.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.write_all(&name[start..i])?;
        out.write_all(replacement)?;
        start = i + 1;
    }
    out.write_all(&name[start..])
}

/// One parsed line of a checksum list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// The expected SHA-256.
    pub digest: [u8; 32],
    /// The path, unescaped.
    pub path: PathBuf,
}

/// What a line of a checksum list is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A checksum and a path.
    File(ListedFile),
    /// A `#` comment or an empty line: ignored, like GNU does. Only a `#` in the
    /// first column starts a comment: an indented one, like a line of blanks, is
    /// malformed.
    Comment,
    /// Anything else: counted as improperly formatted.
    Malformed,
}

/// Parses one line (without its trailing newline): `<hex>  <path>`, `<hex> *<path>`
/// (binary mode marker), or the tagged form `SHA256 (<path>) = <hex>` (also
/// OpenSSL's `SHA256(<path>)= <hex>`), each optionally escaped with a leading
/// backslash. A carriage return before the newline (a CRLF list) is dropped, as GNU
/// does; a name that really ends in one is written escaped, as `\r`. The name may be
/// empty in the tagged form only (`SHA256 () = <hex>`, which GNU lists as a file it
/// cannot open).
pub fn parse_line(line: &[u8]) -> Line {
    // GNU looks for the `#` before anything else, in the first column only.
    if line.first() == Some(&b'#') {
        return Line::Comment;
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Line::Comment; // GNU skips empty lines, but not blank ones
    }
    let line = trim_start(line);
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let tagged = parse_tagged(line);
    let is_tagged = tagged.is_some();
    let Some((hex, name)) = tagged.or_else(|| parse_untagged(line)) else {
        return Line::Malformed;
    };
    let mut digest = [0u8; 32];
    if hex.len() != 64 || hex::decode_to_slice(hex, &mut digest).is_err() {
        return Line::Malformed;
    }
    let name = if escaped {
        match unescape(name) {
            Some(name) => name,
            None => return Line::Malformed,
        }
    } else {
        name.to_vec()
    };
    // GNU takes an empty name in the tagged form (and fails to open it), not in the other.
    if name.is_empty() && !is_tagged {
        return Line::Malformed;
    }
    Line::File(ListedFile {
        digest,
        path: PathBuf::from(std::ffi::OsString::from_vec(name)),
    })
}

fn trim_start(mut line: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = line {
        line = rest;
    }
    line
}

/// `SHA256 (name) = hex`, or OpenSSL's `SHA256(name)= hex`
fn parse_tagged(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = line.strip_prefix(b"SHA256")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let rest = rest.strip_prefix(b"(")?;
    let close = rest.iter().rposition(|&b| b == b')')?;
    let tail = &rest[close + 1..];
    let tail = tail.strip_prefix(b" ").unwrap_or(tail);
    let tail = tail.strip_prefix(b"=")?;
    let hex = tail.strip_prefix(b" ").unwrap_or(tail);
    Some((hex, &rest[..close]))
}

/// `hex  name` or `hex *name`
fn parse_untagged(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let (hex, rest) = line.split_at(space);
    match rest {
        [b' ', b' ' | b'*', name @ ..] => Some((hex, name)),
        _ => None,
    }
}

fn unescape(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: [u8; 32] = [0xab; 32];
    const HEX: &str = "abababababababababababababababababababababababababababababababab";

    fn line(name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(name));
        write_line(&mut out, &D, &path).unwrap();
        out
    }

    #[test]
    fn plain_names_are_written_verbatim() {
        assert_eq!(
            line(b"a b/c.sif"),
            format!("{HEX}  a b/c.sif\n").into_bytes()
        );
        assert_eq!(
            line(b"caf\xe9"),
            [format!("{HEX}  caf").as_bytes(), b"\xe9\n"].concat()
        );
    }

    #[test]
    fn backslash_newline_and_cr_are_escaped_like_gnu() {
        assert_eq!(line(b"x\\y"), format!("\\{HEX}  x\\\\y\n").into_bytes());
        assert_eq!(line(b"n\nl"), format!("\\{HEX}  n\\nl\n").into_bytes());
        assert_eq!(line(b"c\rr"), format!("\\{HEX}  c\\rr\n").into_bytes());
    }

    #[test]
    fn written_lines_parse_back() {
        for name in [
            &b"plain"[..],
            b"x\\y",
            b"n\nl",
            b"c\rr",
            b" lead",
            b"\xff\xfe",
        ] {
            let written = line(name);
            let parsed = parse_line(&written[..written.len() - 1]);
            let expected = PathBuf::from(std::ffi::OsStr::from_bytes(name));
            assert_eq!(
                parsed,
                Line::File(ListedFile {
                    digest: D,
                    path: expected
                })
            );
        }
    }

    #[test]
    fn accepts_binary_marker_tagged_form_and_uppercase() {
        let want = |p: &str| {
            Line::File(ListedFile {
                digest: D,
                path: p.into(),
            })
        };
        assert_eq!(parse_line(format!("{HEX} *bin").as_bytes()), want("bin"));
        assert_eq!(
            parse_line(format!("SHA256 (a) b) = {HEX}").as_bytes()),
            want("a) b")
        );
        let upper = HEX.to_uppercase();
        assert_eq!(parse_line(format!("{upper}  up").as_bytes()), want("up"));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "bad".to_string(),
            "  ".into(),
            format!("{HEX} one-space"),
            format!("{}  short", &HEX[1..]),
            format!("{HEX}  "),
            format!("\\{HEX}  bad\\escape"),
            format!("{}g  nothex", &HEX[1..]),
        ] {
            assert_eq!(parse_line(bad.as_bytes()), Line::Malformed, "{bad:?}");
        }
        assert_eq!(parse_line(b"# comment"), Line::Comment);
        assert_eq!(parse_line(b""), Line::Comment);
    }

    #[test]
    fn only_a_hash_in_the_first_column_starts_a_comment() {
        // `sha256sum -c --strict` fails on these (GNU 9.1); they were taken as comments.
        for indented in [&b" # x"[..], b"\t#", b"  #\r"] {
            assert_eq!(parse_line(indented), Line::Malformed, "{indented:?}");
        }
        assert_eq!(parse_line(b"#\r"), Line::Comment);
    }

    #[test]
    fn an_empty_name_is_a_file_only_in_the_tagged_form() {
        // GNU 9.1 lists `SHA256 () = <hex>` as a file it cannot read (exit 1); it was taken
        // as malformed, which without --strict let the check pass.
        let empty = Line::File(ListedFile {
            digest: D,
            path: PathBuf::new(),
        });
        assert_eq!(parse_line(format!("SHA256 () = {HEX}").as_bytes()), empty);
        assert_eq!(parse_line(format!("\\SHA256() = {HEX}").as_bytes()), empty);
        assert_eq!(parse_line(format!("{HEX}  ").as_bytes()), Line::Malformed);
    }

    #[test]
    fn check_prefix_escapes_only_newlines() {
        let mut out = Vec::new();
        write_check_prefix(&mut out, Path::new("x\\y")).unwrap();
        write_check_prefix(&mut out, Path::new("n\nl")).unwrap();
        assert_eq!(out, b"x\\y: \\n\\nl: ");
    }
}
