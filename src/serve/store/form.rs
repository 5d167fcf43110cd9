//! The `multipart/form-data` reader of POST uploads, bounded at every step.
//!
//! A POST to the store is unauthenticated until its fields have been read, so nothing here may
//! cost more than a constant amount of memory, or more than linear CPU, whatever the body holds:
//! a preamble that never reaches the boundary, a part header that never ends, thousands of
//! fields, or a file part followed by endless parts. Each of those has a limit
//! ([`FormLimits`]) that is checked as bytes arrive, before they are kept; the buffer holds at
//! most the largest of those limits plus one chunk. (`multer` buffered a preamble or a header
//! whole and searched it again on every chunk: 1 GiB of memory and quadratic CPU.)
//!
//! [`FormParser`] is the state machine, fed bytes and asked for [`Event`]s, with no I/O, so that
//! property tests can drive it with arbitrary bytes and chunkings; [`FormReader`] runs it over
//! an async body.
//!
//! The form S3 expects: fields, then the part named `file` (its data is streamed, never
//! buffered), then optionally more parts, which S3 ignores (bounded here too), then the closing
//! delimiter. Reading stops at the closing delimiter; what follows (the epilogue) is not read.

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use memchr::memmem;

/// How much of a POST body may be spent on each thing other than the file's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormLimits {
    /// Bytes before the first boundary (clients send none).
    pub preamble: usize,
    /// Bytes of one part's header block, and of the padding after a boundary.
    pub part_header: usize,
    /// Parts before the file part.
    pub fields: usize,
    /// Bytes of the fields' names and values before the file part (S3 allows a 20 KB policy).
    pub field_section: usize,
    /// Bytes of the parts after the file part: their headers and data (S3 ignores them).
    pub suffix: usize,
}

impl Default for FormLimits {
    fn default() -> Self {
        FormLimits {
            preamble: 4 * 1024,
            part_header: 8 * 1024,
            fields: 64,
            field_section: 64 * 1024,
            suffix: 64 * 1024,
        }
    }
}

impl FormLimits {
    /// The most the parser ever keeps between two chunks (the largest bound, a delimiter and a
    /// little slack), not counting field values, which [`FormLimits::field_section`] bounds.
    pub fn max_buffered(&self, boundary_len: usize) -> usize {
        self.preamble.max(self.part_header) + boundary_len + 8
    }
}

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole field before the file part.
    Field {
        /// The part's `name`.
        name: String,
        /// Its value.
        value: String,
    },
    /// The file part starts; [`Event::Data`] follows.
    File,
    /// The next bytes of the file part.
    Data(Bytes),
    /// The closing delimiter, after the file part.
    End,
}

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Not `multipart/form-data`, or broken framing, or cut short.
    #[error("{0}")]
    Malformed(String),
    /// Too many fields, or too many bytes of them, before the file part.
    #[error("form fields before the file exceed the allowed size")]
    FieldsTooLarge,
    /// The form ended without a part named `file`.
    #[error("POST requires exactly one file upload per request")]
    NoFile,
    /// Too many bytes in the parts after the file part.
    #[error("too much data after the file")]
    SuffixTooLarge,
    /// The body stopped arriving.
    #[error("the body stopped arriving")]
    Timeout,
}

fn malformed(what: impl Into<String>) -> FormError {
    FormError::Malformed(what.into())
}

/// The boundary of a `multipart/form-data` content type.
pub fn parse_boundary(content_type: &str) -> Result<String, FormError> {
    let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(malformed("the Content-Type is not multipart/form-data"));
    }
    let boundary = header_params(params)
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or_else(|| malformed("the Content-Type has no boundary"))?;
    // RFC 2046 allows 70 characters; clients use fewer, and a long one only costs buffer.
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(malformed("the multipart boundary is empty or too long"));
    }
    Ok(boundary)
}

/// `; key=value; key="quoted \" value"` pairs of a header value, keys as written.
fn header_params(params: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let mut rest = params;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([';', ' ', '\t']);
            if rest.is_empty() {
                return None;
            }
            let end = rest.find(['=', ';']).unwrap_or(rest.len());
            let key = rest[..end].trim().to_string();
            rest = &rest[end..];
            let Some(after_eq) = rest.strip_prefix('=') else {
                continue; // a bare token: no value
            };
            let after_eq = after_eq.trim_start();
            let value = if let Some(quoted) = after_eq.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                rest = &quoted[end.min(quoted.len())..];
                value
            } else {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                let value = after_eq[..end].trim().to_string();
                rest = &after_eq[end..];
                value
            };
            return Some((key, value));
        }
    })
}

#[derive(Debug)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just past a delimiter: `--` closes the form, else padding and CRLF start a part.
    AfterDelimiter,
    /// In a part's header block.
    Headers,
    /// In the value of a field before the file.
    Field { name: String, value: Vec<u8> },
    /// In the file part.
    File,
    /// In a part after the file, which is skipped.
    Skip,
    /// The closing delimiter was seen (or an error): nothing more is read.
    Done,
}

/// The `multipart/form-data` state machine: [`FormParser::feed`] bytes, then take
/// [`FormParser::next_event`] until it says it needs more.
#[derive(Debug)]
pub struct FormParser {
    limits: FormLimits,
    /// `\r\n--<boundary>`: every delimiter, including the first once the body is prefixed with
    /// a virtual CRLF.
    delimiter: Vec<u8>,
    buf: BytesMut,
    /// Where in `buf` a delimiter could still start: searches resume here, so that no byte is
    /// searched twice (a chunk at a time would otherwise be quadratic).
    scan: usize,
    state: State,
    fields: usize,
    field_bytes: usize,
    suffix_bytes: usize,
    file_seen: bool,
}

impl FormParser {
    /// A parser for a body with this boundary.
    pub fn new(boundary: &str, limits: FormLimits) -> FormParser {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        // The first delimiter may sit at the very start, without the CRLF the others have.
        buf.extend_from_slice(b"\r\n");
        FormParser {
            limits,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf,
            scan: 0,
            state: State::Preamble,
            fields: 0,
            field_bytes: 0,
            suffix_bytes: 0,
            file_seen: false,
        }
    }

    /// Bytes held in the parser: its buffer plus a field value being collected.
    pub fn buffered(&self) -> usize {
        self.buf.len()
            + match &self.state {
                State::Field { value, .. } => value.len(),
                _ => 0,
            }
    }

    /// The most [`FormParser::buffered`] can be whenever [`FormParser::next_event`] asks for
    /// more bytes, whatever was fed.
    pub fn bound(&self) -> usize {
        self.limits.max_buffered(self.delimiter.len()) + self.limits.field_section
    }

    /// Whether the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Adds the next bytes of the body. Once the form is done they are ignored.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.is_done() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed; `eof` says none will come.
    pub fn next_event(&mut self, eof: bool) -> Result<Option<Event>, FormError> {
        let result = self.step(eof);
        if result.is_err() {
            self.state = State::Done;
            self.buf = BytesMut::new();
        }
        result
    }

    fn step(&mut self, eof: bool) -> Result<Option<Event>, FormError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Preamble => match self.find_delimiter() {
                    Some(at) => {
                        self.buf.advance(at + self.delimiter.len());
                        self.enter(State::AfterDelimiter);
                    }
                    None => {
                        // The virtual CRLF does not count.
                        if self.buf.len().saturating_sub(2)
                            > self.limits.preamble + self.delimiter.len()
                        {
                            return Err(malformed(format!(
                                "no multipart boundary in the first {} bytes",
                                self.limits.preamble
                            )));
                        }
                        return self.need_more(eof, "the body has no multipart boundary");
                    }
                },
                State::AfterDelimiter => {
                    if self.buf.starts_with(b"--") {
                        if !self.file_seen {
                            return Err(FormError::NoFile);
                        }
                        self.enter(State::Done);
                        self.buf = BytesMut::new();
                        return Ok(Some(Event::End));
                    }
                    let padding = self
                        .buf
                        .iter()
                        .position(|&b| b != b' ' && b != b'\t')
                        .unwrap_or(self.buf.len());
                    if padding > self.limits.part_header {
                        return Err(malformed("too much padding after a boundary"));
                    }
                    let rest = &self.buf[padding..];
                    if rest.len() < 2 {
                        // `-` alone could still become `--`; anything else too short waits.
                        if rest.is_empty() || rest == b"-" || rest == b"\r" {
                            return self.need_more(eof, "the body ended after a boundary");
                        }
                        return Err(malformed("a boundary is not followed by CRLF"));
                    }
                    if !rest.starts_with(b"\r\n") {
                        return Err(malformed("a boundary is not followed by CRLF"));
                    }
                    self.count_after_file(padding + 2)?;
                    self.buf.advance(padding + 2);
                    self.enter(State::Headers);
                }
                State::Headers => {
                    if self.buf.starts_with(b"\r\n") {
                        return Err(malformed("a part without a name"));
                    }
                    let Some(end) = self.find(b"\r\n\r\n") else {
                        if self.buf.len() > self.limits.part_header {
                            return Err(malformed(format!(
                                "part headers longer than {} bytes",
                                self.limits.part_header
                            )));
                        }
                        return self.need_more(eof, "the body ended in part headers");
                    };
                    if end > self.limits.part_header {
                        return Err(malformed(format!(
                            "part headers longer than {} bytes",
                            self.limits.part_header
                        )));
                    }
                    let head = self.buf.split_to(end + 4);
                    self.count_after_file(head.len())?;
                    let name = part_name(&head[..end])?;
                    if self.file_seen {
                        self.enter(State::Skip);
                    } else if name.eq_ignore_ascii_case("file") {
                        self.file_seen = true;
                        self.enter(State::File);
                        return Ok(Some(Event::File));
                    } else {
                        self.fields += 1;
                        self.field_bytes += name.len();
                        if self.fields > self.limits.fields
                            || self.field_bytes > self.limits.field_section
                        {
                            return Err(FormError::FieldsTooLarge);
                        }
                        self.enter(State::Field {
                            name,
                            value: Vec::new(),
                        });
                    }
                }
                State::Field { .. } | State::File | State::Skip => {
                    let found = self.find_delimiter();
                    let take = match found {
                        Some(at) => at,
                        // Keep what could be the start of a delimiter.
                        None => self.buf.len().saturating_sub(self.delimiter.len() - 1),
                    };
                    let data = self.buf.split_to(take);
                    self.scan = self.scan.saturating_sub(take);
                    match &mut self.state {
                        State::Field { value, .. } => {
                            self.field_bytes += data.len();
                            if self.field_bytes > self.limits.field_section {
                                return Err(FormError::FieldsTooLarge);
                            }
                            value.extend_from_slice(&data);
                        }
                        State::Skip => self.count_after_file(data.len())?,
                        _ => {}
                    }
                    let file_data = matches!(self.state, State::File) && !data.is_empty();
                    if found.is_some() {
                        self.buf.advance(self.delimiter.len());
                        let part = std::mem::replace(&mut self.state, State::AfterDelimiter);
                        self.scan = 0;
                        if let State::Field { name, value } = part {
                            let value = String::from_utf8(value)
                                .map_err(|_| malformed(format!("field {name} is not UTF-8")))?;
                            return Ok(Some(Event::Field { name, value }));
                        }
                    }
                    if file_data {
                        return Ok(Some(Event::Data(data.freeze())));
                    }
                    if found.is_some() {
                        continue;
                    }
                    return self.need_more(eof, "the body ended before the closing boundary");
                }
            }
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.scan = 0;
    }

    fn need_more(&self, eof: bool, why: &str) -> Result<Option<Event>, FormError> {
        if eof { Err(malformed(why)) } else { Ok(None) }
    }

    /// Counts bytes of the parts after the file against their bound.
    fn count_after_file(&mut self, n: usize) -> Result<(), FormError> {
        if self.file_seen && !matches!(self.state, State::File) {
            self.suffix_bytes += n;
            if self.suffix_bytes > self.limits.suffix {
                return Err(FormError::SuffixTooLarge);
            }
        }
        Ok(())
    }

    fn find_delimiter(&mut self) -> Option<usize> {
        let delimiter = std::mem::take(&mut self.delimiter);
        let found = self.find(&delimiter);
        self.delimiter = delimiter;
        found
    }

    /// Finds `pattern` in the buffer from where the last search left off.
    fn find(&mut self, pattern: &[u8]) -> Option<usize> {
        let from = self.scan.min(self.buf.len());
        match memmem::find(&self.buf[from..], pattern) {
            Some(at) => Some(from + at),
            None => {
                self.scan = self.buf.len().saturating_sub(pattern.len() - 1);
                None
            }
        }
    }
}

/// The `name` of a part, from its `Content-Disposition: form-data; name="..."` header.
fn part_name(head: &[u8]) -> Result<String, FormError> {
    let head = std::str::from_utf8(head).map_err(|_| malformed("part headers are not UTF-8"))?;
    for line in head.split("\r\n") {
        let Some((header, value)) = line.split_once(':') else {
            return Err(malformed("a part header without a colon"));
        };
        if !header.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let (kind, params) = value.split_once(';').unwrap_or((value, ""));
        if !kind.trim().eq_ignore_ascii_case("form-data") {
            return Err(malformed("a part that is not form-data"));
        }
        if let Some((_, name)) = header_params(params).find(|(k, _)| k.eq_ignore_ascii_case("name"))
        {
            return Ok(name);
        }
    }
    Err(malformed("a part without a name"))
}

/// Runs a [`FormParser`] over a body stream.
pub struct FormReader<S> {
    body: S,
    parser: FormParser,
    eof: bool,
}

impl<S, E> FormReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    /// Reads `body`, a form with this boundary.
    pub fn new(body: S, boundary: &str, limits: FormLimits) -> Self {
        FormReader {
            body,
            parser: FormParser::new(boundary, limits),
            eof: false,
        }
    }

    /// The next event; a body error is handed to `on_error`.
    pub async fn next(&mut self, on_error: impl Fn(E) -> FormError) -> Result<Event, FormError> {
        loop {
            if let Some(event) = self.parser.next_event(self.eof)? {
                return Ok(event);
            }
            debug_assert!(self.parser.buffered() <= self.parser.bound());
            match self.body.next().await {
                Some(Ok(chunk)) => self.parser.feed(&chunk),
                Some(Err(e)) => return Err(on_error(e)),
                None => self.eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDARY: &str = "XyZ-boundary";

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in parts {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a \\\"b\\\".sif\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// Feeds `body` in chunks of `chunk` bytes; the events, with file data joined, or the error.
    fn parse(body: &[u8], chunk: usize, limits: FormLimits) -> Result<Vec<Event>, FormError> {
        let mut parser = FormParser::new(BOUNDARY, limits);
        let mut events: Vec<Event> = Vec::new();
        let mut chunks = body.chunks(chunk.max(1));
        loop {
            match parser.next_event(false)? {
                Some(Event::Data(d)) => match events.last_mut() {
                    Some(Event::Data(prev)) => *prev = [prev.as_ref(), d.as_ref()].concat().into(),
                    _ => events.push(Event::Data(d)),
                },
                Some(Event::End) => {
                    events.push(Event::End);
                    return Ok(events);
                }
                Some(e) => events.push(e),
                None => match chunks.next() {
                    Some(c) => parser.feed(c),
                    None => {
                        parser.next_event(true)?;
                        unreachable!("eof without an end is an error");
                    }
                },
            }
        }
    }

    #[test]
    fn fields_then_file_in_any_chunking() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut tricky = data.clone();
        tricky.extend_from_slice(format!("\r\n--{}", &BOUNDARY[..5]).as_bytes());
        for file in [data.as_slice(), b"", tricky.as_slice()] {
            let body = form(&[
                ("key", b"uploads/a"),
                ("policy", b"p=="),
                ("file", file),
                ("after", b"x"),
            ]);
            for chunk in [1, 2, 3, 7, 64, 1000, body.len()] {
                let events = parse(&body, chunk, FormLimits::default()).unwrap();
                let mut expected = vec![
                    Event::Field {
                        name: "key".into(),
                        value: "uploads/a".into(),
                    },
                    Event::Field {
                        name: "policy".into(),
                        value: "p==".into(),
                    },
                    Event::File,
                ];
                if !file.is_empty() {
                    expected.push(Event::Data(Bytes::copy_from_slice(file)));
                }
                expected.push(Event::End);
                assert_eq!(events, expected, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn limits_are_refused_early() {
        let limits = FormLimits::default();
        // A preamble that never reaches the boundary.
        let mut parser = FormParser::new(BOUNDARY, limits);
        parser.feed(&[b'a'; 4096]);
        assert_eq!(parser.next_event(false), Ok(None));
        parser.feed(&[b'a'; 4096]);
        assert!(matches!(
            parser.next_event(false),
            Err(FormError::Malformed(_))
        ));
        // A part header that never ends.
        let mut parser = FormParser::new(BOUNDARY, limits);
        parser.feed(format!("--{BOUNDARY}\r\nX-Pad: ").as_bytes());
        let mut refused = false;
        for _ in 0..64 {
            parser.feed(&[b'a'; 16 * 1024]);
            if parser.next_event(false).is_err() {
                refused = true;
                break;
            }
            assert!(parser.buffered() <= limits.max_buffered(BOUNDARY.len()) + 16 * 1024);
        }
        assert!(refused);
        // Too many fields, too large a field, too much after the file.
        let many: Vec<(String, &[u8])> =
            (0..65).map(|i| (format!("f{i}"), b"v" as &[u8])).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(
            parse(&form(&many), 100, limits),
            Err(FormError::FieldsTooLarge)
        );
        let big = vec![b'v'; 64 * 1024];
        assert_eq!(
            parse(&form(&[("policy", &big)]), 100, limits),
            Err(FormError::FieldsTooLarge)
        );
        assert_eq!(
            parse(&form(&[("file", b"x"), ("after", &big)]), 100, limits),
            Err(FormError::SuffixTooLarge)
        );
        // No file, a truncated body, a part without a name.
        assert_eq!(
            parse(&form(&[("key", b"k")]), 10, limits),
            Err(FormError::NoFile)
        );
        let body = form(&[("file", b"data")]);
        assert!(matches!(
            parse(&body[..body.len() - 5], 10, limits),
            Err(FormError::Malformed(_))
        ));
        let body = format!("--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--");
        assert!(matches!(
            parse(body.as_bytes(), 10, limits),
            Err(FormError::Malformed(_))
        ));
    }

    #[test]
    fn boundaries_and_params() {
        assert_eq!(
            parse_boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            parse_boundary("Multipart/Form-Data;boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert!(parse_boundary("text/plain; boundary=abc").is_err());
        assert!(parse_boundary("multipart/form-data").is_err());
        let params: Vec<(String, String)> =
            header_params(r#" name="file"; filename="a \"b\"; c.sif"; x=y"#).collect();
        assert_eq!(
            params,
            [
                ("name".to_string(), "file".to_string()),
                ("filename".into(), "a \"b\"; c.sif".into()),
                ("x".into(), "y".into())
            ]
        );
    }

    const PROP_BOUNDARY: &str = "hashup-prop-8c1f0b";

    /// Starts that reach each state of the parser, to put arbitrary bytes after.
    fn starts() -> impl Strategy<Value = Vec<u8>> {
        let b = PROP_BOUNDARY;
        prop::sample::select(vec![
            String::new(),
            format!("--{b}"),
            format!("--{b}\r\n"),
            format!("--{b}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n"),
            format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"),
            format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--{b}\r\n"),
        ])
        .prop_map(String::into_bytes)
    }

    fn limits() -> impl Strategy<Value = FormLimits> {
        prop_oneof![
            Just(FormLimits::default()),
            (
                1usize..200,
                1usize..200,
                0usize..4,
                0usize..300,
                0usize..300
            )
                .prop_map(|(preamble, part_header, fields, field_section, suffix)| {
                    FormLimits {
                        preamble,
                        part_header,
                        fields,
                        field_section,
                        suffix,
                    }
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bodies_never_panic_nor_overfill(
            start in starts(),
            // Bytes rich in the ones framing is made of.
            noise in prop::collection::vec(any::<u8>(), 0..8_000).prop_map(|v| {
                v.into_iter()
                    .map(|b| match b % 16 {
                        0 => b'\r',
                        1 => b'\n',
                        2 => b'-',
                        _ => b,
                    })
                    .collect::<Vec<u8>>()
            }),
            chunks in prop::collection::vec(1usize..2048, 1..20),
            limits in limits(),
        ) {
            let body = [start, noise].concat();
            let mut parser = FormParser::new(PROP_BOUNDARY, limits);
            let mut rest = body.as_slice();
            let mut sizes = chunks.iter().cycle();
            'feed: loop {
                loop {
                    match parser.next_event(rest.is_empty()) {
                        Ok(Some(Event::End)) | Err(_) => break 'feed,
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                    }
                }
                prop_assert!(
                    parser.buffered() <= parser.bound(),
                    "{} bytes held, bound {}", parser.buffered(), parser.bound()
                );
                if rest.is_empty() {
                    break;
                }
                let n = (*sizes.next().unwrap()).min(rest.len());
                parser.feed(&rest[..n]);
                rest = &rest[n..];
            }
        }

        #[test]
        fn well_formed_forms_read_back_in_any_chunking(
            fields in prop::collection::vec(("[a-z]{1,8}", "\\PC{0,100}"), 0..6),
            file in prop::collection::vec(any::<u8>(), 0..10_000),
            chunk in 1usize..3000,
        ) {
            let fields: Vec<(String, String)> =
                fields.into_iter().filter(|(n, _)| n != "file").collect();
            let mut body = Vec::new();
            for (name, value) in &fields {
                body.extend_from_slice(format!(
                    "--{PROP_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                ).as_bytes());
            }
            body.extend_from_slice(format!(
                "--{PROP_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
            ).as_bytes());
            body.extend_from_slice(&file);
            body.extend_from_slice(format!("\r\n--{PROP_BOUNDARY}--\r\n").as_bytes());

            let mut parser = FormParser::new(PROP_BOUNDARY, FormLimits::default());
            let (mut got_fields, mut got_file, mut ended) = (Vec::new(), Vec::new(), false);
            for piece in body.chunks(chunk) {
                parser.feed(piece);
                while let Some(event) = parser.next_event(false).unwrap() {
                    match event {
                        Event::Field { name, value } => got_fields.push((name, value)),
                        Event::File => prop_assert_eq!(&got_fields, &fields),
                        Event::Data(d) => got_file.extend_from_slice(&d),
                        Event::End => ended = true,
                    }
                }
            }
            prop_assert!(ended);
            prop_assert_eq!(got_fields, fields);
            prop_assert_eq!(got_file, file);
        }
    }
}
