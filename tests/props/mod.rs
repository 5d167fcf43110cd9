//! Property tests (`proptest`) of the parsers that take outside input on the client side, through
//! the crate's public API only: the `sha256sum` list reader ([`hashup::sumfile`], and `hashup hash
//! -c` reading a list), the manifest reader ([`hashup::manifest`]), the AWS profile reader
//! ([`hashup::aws::profile`]) and object-name validation ([`hashup::naming`]).
//!
//! Inputs are biased towards what the parsers look at (hex runs, escapes, separators, control
//! characters, torn lines, `.`/`..` segments) rather than uniform bytes, which would almost never
//! reach past the first check. Case counts are kept modest so the module runs in seconds; the
//! properties that run programs (`hashup`, and GNU `sha256sum` to compare with) or write files
//! use fewer.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use hashup::config::Naming;
use hashup::hash::{FileEntry, FileError, FileErrorKind};
use hashup::manifest::{self, DeleteSummary, Journal, Manifest, Record, Status, Summary};
use hashup::naming::{self, Keys};
use hashup::sumfile::{self, Line, ListedFile};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::util::{self, TestCommand};

const CASES: u32 = 256;
/// For properties that spawn processes or fsync files.
const FEW_CASES: u32 = 32;

// ---------------------------------------------------------------------------------------------
// The sum-file reader
// ---------------------------------------------------------------------------------------------

/// A digest field: 64 hex digits mostly, sometimes upper case, one short or one long, or junk.
fn digest_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => any::<[u8; 32]>().prop_map(|d| hex::encode(d).into_bytes()),
        2 => any::<[u8; 32]>().prop_map(|d| hex::encode_upper(d).into_bytes()),
        1 => any::<[u8; 32]>().prop_map(|d| hex::encode(d).as_bytes()[1..].to_vec()),
        1 => any::<[u8; 33]>().prop_map(|d| hex::encode(d).as_bytes()[..65].to_vec()),
        1 => vec(any::<u8>(), 0..4),
    ]
}

/// A name as it appears in a line: raw bytes, or escape sequences (good and bad) and the
/// characters the forms use, or nothing.
fn name_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => listed_name(),
        2 => vec(
            select(vec![
                &b"a"[..], b"\\\\", b"\\n", b"\\r", b"\\x", b"\\", b" ", b"(", b")", b") = ",
                b"*", b"#", b"-",
            ]),
            1..6,
        )
        .prop_map(|parts| parts.concat()),
        1 => Just(Vec::new()),
    ]
}

/// Bytes of a checksum list line: one of the forms `parse_line` knows (`<hex>  <name>`, `<hex>
/// *<name>`, `SHA256 (<name>) = <hex>` and OpenSSL's variant) with each part varied (digest,
/// separator, blanks and `\` or `#` in front, a CR at the end), or pieces of those forms glued
/// in any order with arbitrary bytes between them.
fn sum_line() -> impl Strategy<Value = Vec<u8>> {
    fn part(choices: &[&'static str]) -> impl Strategy<Value = Vec<u8>> + use<> {
        select(choices.to_vec()).prop_map(|s| s.as_bytes().to_vec())
    }
    let lead = || part(&["", "", "", "", " ", "\t", "\\", " \\", "#"]);
    let end = || part(&["", "", "", "\r", " "]);
    let untagged = (
        lead(),
        digest_field(),
        part(&["  ", "  ", "  ", " *", " ", "\t", "*", ""]),
        name_field(),
        end(),
    )
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e].concat());
    let tagged = (
        lead(),
        part(&[
            "SHA256 (",
            "SHA256 (",
            "SHA256(",
            "SHA256  (",
            "SHA2 (",
            "sha256 (",
        ]),
        name_field(),
        part(&[") = ", ") = ", ")= ", ") =", ")=", ") ", ")"]),
        digest_field(),
        end(),
    )
        .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f].concat());
    let piece = prop_oneof![
        3 => digest_field(),
        4 => part(&[
            "  ", " *", " ", "\\", "\\n", "\\r", "\\\\", "\\x", "SHA256 (", "SHA256(", "SHA256",
            ") = ", ")= ", ")", "=", "#", "\r", "\t", "a", "-",
        ]),
        2 => vec(any::<u8>(), 0..8),
    ];
    let soup = vec(piece, 0..8).prop_map(|pieces| pieces.concat());
    prop_oneof![3 => untagged, 2 => tagged, 2 => soup]
}

/// A non-empty file name as bytes, often with what GNU escapes (backslash, newline, carriage
/// return) and what the line format uses (spaces, `*`, `#`, parentheses), often not UTF-8.
fn listed_name() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => select(b"\\\n\r *#()= ".to_vec()),
    ];
    vec(byte, 1..24)
}

/// Whether `line` holds the digest as a run of exactly 64 hex digits (either case), not as part
/// of a longer one.
fn holds_hex_run(line: &[u8], digest: &[u8; 32]) -> bool {
    let want = hex::encode(digest);
    let lower = line.to_ascii_lowercase();
    lower.windows(64).enumerate().any(|(at, window)| {
        window == want.as_bytes()
            && (at == 0 || !lower[at - 1].is_ascii_hexdigit())
            && lower.get(at + 64).is_none_or(|b| !b.is_ascii_hexdigit())
    })
}

fn written_line(digest: &[u8; 32], path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    sumfile::write_line(&mut out, digest, path).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// `parse_line` takes any bytes; what it accepts as a checksum line has a real 64-digit
    /// digest in it, and writing that back and parsing it again gives the same file (so `hash
    /// -c` reports the file it read, whatever the line looked like). Only the tagged form can
    /// have an empty name.
    #[test]
    fn any_line_parses_without_panicking(
        line in prop_oneof![sum_line(), vec(any::<u8>(), 0..96)],
    ) {
        if let Line::File(listed) = sumfile::parse_line(&line) {
            prop_assert!(
                holds_hex_run(&line, &listed.digest),
                "{:?} parsed with digest {}, which it does not hold as 64 hex digits",
                String::from_utf8_lossy(&line),
                hex::encode(listed.digest)
            );
            if listed.path.as_os_str().is_empty() {
                // Only `SHA256 () = <hex>` has no name, and `write_line` cannot write that.
                prop_assert!(line.windows(7).any(|w| w == b"SHA256(" || w == b"SHA256 "));
            } else {
                let again = written_line(&listed.digest, &listed.path);
                prop_assert_eq!(
                    sumfile::parse_line(&again[..again.len() - 1]),
                    Line::File(listed)
                );
            }
        }
    }

    /// `write_line` writes one line (no newline but the last byte, whatever the name holds), and
    /// `parse_line` reads back the same digest and the same name, byte for byte.
    #[test]
    fn written_lines_round_trip(digest in any::<[u8; 32]>(), name in listed_name()) {
        let path = PathBuf::from(OsString::from_vec(name));
        let line = written_line(&digest, &path);
        let (last, body) = line.split_last().unwrap();
        prop_assert_eq!(*last, b'\n');
        prop_assert!(!body.contains(&b'\n'), "{:?}", String::from_utf8_lossy(body));
        prop_assert_eq!(sumfile::parse_line(body), Line::File(ListedFile { digest, path }));
    }

    /// `write_check_prefix` (the `NAME: ` of a `-c` result) never breaks the line either.
    #[test]
    fn check_prefixes_are_one_line(name in listed_name()) {
        let mut out = Vec::new();
        sumfile::write_check_prefix(&mut out, Path::new(OsStr::from_bytes(&name))).unwrap();
        prop_assert!(!out.contains(&b'\n'));
        prop_assert!(out.ends_with(b": "));
    }
}

/// A directory name for files: no `/`, no NUL, not `.`, `..` or `-` (standard input in a list).
fn file_name() -> impl Strategy<Value = Vec<u8>> {
    listed_name()
        .prop_map(|name| {
            name.into_iter()
                .filter(|&b| b != b'/' && b != 0)
                .collect::<Vec<_>>()
        })
        .prop_filter("a usable file name", |name| {
            !matches!(&name[..], b"" | b"." | b".." | b"-")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FEW_CASES))]

    /// A list `write_line` wrote, read by `hashup hash -c` (on standard input): every file is
    /// found under its exact name and checked against its digest, in list order, with the output
    /// and exit code GNU `sha256sum -c` gives for the same list.
    #[test]
    fn hash_check_reads_written_lists(
        files in btree_map(file_name(), (vec(any::<u8>(), 0..64), any::<bool>()), 1..5),
        wrong in any::<[u8; 32]>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut list = Vec::new();
        let mut expected = Vec::new();
        let mut all_ok = true;
        for (name, (content, intact)) in &files {
            let path = Path::new(OsStr::from_bytes(name));
            std::fs::write(dir.path().join(path), content).unwrap();
            let actual = sha256(content);
            let digest = if *intact { actual } else { wrong };
            all_ok &= digest == actual;
            sumfile::write_line(&mut list, &digest, path).unwrap();
            sumfile::write_check_prefix(&mut expected, path).unwrap();
            expected.extend_from_slice(if digest == actual { b"OK\n" } else { b"FAILED\n" });
        }
        let ours = util::hashup(["hash", "-c", "-"])
            .current_dir(dir.path())
            .stdin(list.clone())
            .run();
        prop_assert_eq!(&ours.stdout, &expected, "{:?}", ours);
        prop_assert_eq!(ours.code, if all_ok { 0 } else { 1 }, "{:?}", ours);
        let gnu = TestCommand::new("sha256sum", ["-c", "-"])
            .current_dir(dir.path())
            .stdin(list)
            .run();
        prop_assert_eq!((gnu.code, &gnu.stdout), (ours.code, &ours.stdout), "GNU: {:?}", gnu);
    }

    /// `hashup hash -c -w` on any list (`sum_line`s joined by newlines, a final one or not;
    /// files `a` and `-` are there to be found): no panic, no internal error, and the same exit
    /// code, standard output and warnings as GNU `sha256sum -c -w`. Standard error is compared
    /// only in its warnings, as GNU quotes file names there and hashup does not. Left out, as
    /// known differences: NUL bytes (GNU cuts the name there) and GNU's reversed BSD form.
    #[test]
    fn hash_check_reads_any_list_like_gnu(
        lines in vec(sum_line(), 0..6),
        final_newline in any::<bool>(),
    ) {
        // Each line in GNU's reversed BSD form is dropped, not the whole case.
        let joined: Vec<u8> = lines.join(&b'\n').into_iter().filter(|&b| b != 0).collect();
        let kept: Vec<&[u8]> = joined
            .split(|&b| b == b'\n')
            .filter(|l| !gnu_reversed_form(l))
            .collect();
        let mut list = kept.join(&b'\n');
        if final_newline {
            list.push(b'\n');
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("-"), b"").unwrap();
        let ours = util::hashup(["hash", "-c", "-w", "-"])
            .current_dir(dir.path())
            .stdin(list.clone())
            .run();
        prop_assert!(matches!(ours.code, 0 | 1), "{:?}", ours);
        prop_assert!(!ours.stderr.contains("panicked"), "{:?}", ours);
        let gnu = TestCommand::new("sha256sum", ["-c", "-w", "-"])
            .current_dir(dir.path())
            .stdin(list.clone())
            .run();
        let warnings = |stderr: &str, program: &str| -> Vec<String> {
            stderr
                .lines()
                .filter_map(|l| l.strip_prefix(program))
                .filter(|l| l.contains("formatted") || l.starts_with("WARNING"))
                .map(str::to_string)
                .collect()
        };
        prop_assert_eq!(
            (ours.code, &ours.stdout, warnings(&ours.stderr, "hashup: ")),
            (gnu.code, &gnu.stdout, warnings(&gnu.stderr, "sha256sum: ")),
            "list {:?}\nGNU: {:?}\nhashup: {:?}",
            String::from_utf8_lossy(&list),
            gnu,
            ours
        );
    }
}

/// Whether GNU would read `line` in the "reversed" BSD form, `<hex> <name>` with one blank (or a
/// tab), which it accepts unless an ordinary line came first and hashup refuses: after the hex
/// digits a tab, or one space not followed by a space or `*`, or a space and then at most one
/// byte.
fn gnu_reversed_form(line: &[u8]) -> bool {
    let mut line = line.strip_suffix(b"\r").unwrap_or(line);
    while let [b' ' | b'\t', rest @ ..] = line {
        line = rest;
    }
    let line = line.strip_prefix(b"\\").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    digits > 0
        && match &line[digits..] {
            [b'\t', ..] | [b' '] | [b' ', _] => true,
            [b' ', b' ' | b'*', ..] => false,
            [b' ', ..] => true,
            _ => false,
        }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut digest = [0; 32];
    digest.copy_from_slice(&sha2::Sha256::digest(bytes));
    digest
}

// ---------------------------------------------------------------------------------------------
// The manifest reader
// ---------------------------------------------------------------------------------------------

/// Text with control characters, quotes, backslashes, JSON-significant and non-ASCII characters.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => (0u8..0x20).prop_map(char::from),
        2 => select(vec![
            '"', '\\', '/', '{', '}', '\u{7f}', '\u{85}', '\u{2028}', '\u{2029}', '\u{feff}',
            '\u{fffd}', 'é', '😀',
        ]),
        2 => any::<u8>().prop_map(|b| char::from(b & 0x7f)),
    ];
    vec(ch, 0..24).prop_map(String::from_iter)
}

fn status() -> impl Strategy<Value = Status> {
    select(vec![Status::Uploaded, Status::Failed, Status::Skipped])
}

/// A SHA-256 as a manifest holds it: 64 hex digits (lower case as written; upper case read too).
fn sha256_hex() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9a-f]{64}",
        1 => "[0-9a-fA-F]{64}",
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        (text(), text(), any::<Option<u64>>(), option::of(text())),
        (
            option::of(sha256_hex()),
            status(),
            any::<Option<u16>>(),
            any::<u32>(),
        ),
        (option::of(text()), any::<u64>(), option::of(text())),
        (option::of(text()), option::of(text()), option::of(text())),
    )
        .prop_map(
            |(
                (name, path, size, mtime),
                (sha256, status, http_status, attempts),
                (error, duration_ms, checksum_sha256_composite),
                (etag, stored_at, resent),
            )| Record {
                name,
                path,
                size,
                mtime,
                sha256,
                status,
                http_status,
                attempts,
                error,
                duration_ms,
                checksum_sha256_composite,
                etag,
                stored_at,
                resent,
            },
        )
}

/// A finite, non-negative rate, as a run computes them.
fn rate() -> impl Strategy<Value = f64> {
    prop::num::f64::POSITIVE
        | prop::num::f64::ZERO
        | prop::num::f64::NORMAL
        | prop::num::f64::SUBNORMAL
}

fn summary() -> impl Strategy<Value = Summary> {
    (
        any::<[u64; 15]>(),
        (rate(), rate(), rate()),
        option::of(text()),
        option::of((any::<[u64; 4]>(), option::of(text()))),
    )
        .prop_map(|(n, (hash, upload, objects), stopped, delete)| Summary {
            files: n[0],
            uploaded: n[1],
            failed: n[2],
            skipped: n[3],
            not_started: n[4],
            bytes: n[5],
            bytes_hashed: n[6],
            already_stored: n[7],
            confirmed: n[13],
            resent: n[14],
            cached: n[8],
            elapsed_ms: n[9],
            hash_gb_per_s: hash,
            upload_mb_per_s: upload,
            objects_per_s: objects,
            uploads_limit: n[11],
            uploads_limit_max: n[12],
            stopped: stopped.map(|s| format!("{s}{}", n[10])),
            delete: delete.map(|(d, stopped)| DeleteSummary {
                found: d[0],
                deleted: d[1],
                failed: d[2],
                elapsed_ms: d[3],
                stopped,
            }),
        })
}

/// What `write_all` writes.
fn written(records: &[Record], summary: &Summary) -> Vec<u8> {
    let mut out = Vec::new();
    manifest::write_all(&mut out, records, [], summary).unwrap();
    out
}

/// The lines (each with its newline) of what `write_all` writes: the records', then the
/// summary's.
fn written_lines(records: &[Record], summary: &Summary) -> Vec<Vec<u8>> {
    written(records, summary)
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn read_bytes(bytes: &[u8]) -> io::Result<Journal> {
    manifest::read_from(bytes, "m.jsonl")
}

/// A run as appended to a manifest: its records, and its summary unless it was killed.
fn run() -> impl Strategy<Value = (Vec<Record>, Option<Summary>)> {
    (vec(record(), 0..4), option::of(summary()))
}

/// Runs written one after another, as `--manifest-append` leaves them; a killed run's summary
/// line is left out.
fn written_runs(runs: &[(Vec<Record>, Option<Summary>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (records, summary) in runs {
        let lines = written_lines(records, summary.as_ref().unwrap_or(&Summary::default()));
        let keep = if summary.is_some() {
            lines.len()
        } else {
            lines.len() - 1
        };
        out.extend(lines[..keep].concat());
    }
    out
}

/// The journal the documentation of `Journal` promises for these runs.
fn journal_of(runs: &[(Vec<Record>, Option<Summary>)]) -> Journal {
    let records: Vec<Record> = runs.iter().flat_map(|(r, _)| r.clone()).collect();
    // The last line is the summary of the last run that wrote anything, if it wrote one.
    let last = runs
        .iter()
        .rev()
        .find(|(r, s)| !r.is_empty() || s.is_some());
    let summary = last.and_then(|(_, s)| s.clone());
    let summaries = runs.iter().filter(|(_, s)| s.is_some()).count();
    let open = last.is_some_and(|(_, s)| s.is_none());
    Journal {
        records,
        summary,
        torn: None,
        runs: summaries + usize::from(open),
        open_uploads: vec![],
        deleted: vec![],
        local: vec![],
    }
}

/// A line that is neither a record nor a summary, nor empty: torn JSON, JSON that is no
/// manifest line, or text.
fn garbage(record: Record) -> impl Strategy<Value = Vec<u8>> {
    let line = written_lines(std::slice::from_ref(&record), &Summary::default()).remove(0);
    let torn_len = line.len() - 2; // less its `}` and newline
    prop_oneof![
        (1..=torn_len).prop_map(move |cut| line[..cut].to_vec()),
        (any::<u64>(), text()).prop_map(|(n, s)| {
            serde_json::json!({ "size": n, "nom": s })
                .to_string()
                .into_bytes()
        }),
        (
            select(vec!['x', '0', '"', '}', ']', 'n', '\u{b}', 'é']),
            text()
        )
            .prop_map(|(first, rest)| format!("{first}{rest}").replace('\n', "").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// `read_from` takes any bytes, and any mix of manifest lines, torn lines and junk, without
    /// panicking; a torn line it reports is one of the lines there are.
    #[test]
    fn any_input_reads_without_panicking(
        input in prop_oneof![
            vec(any::<u8>(), 0..256),
            vec(prop_oneof![
                record().prop_map(|r| written_lines(&[r], &Summary::default()).remove(0)),
                summary().prop_map(|s| written_lines(&[], &s).remove(0)),
                vec(any::<u8>(), 0..16),
                select(vec![&b"\n"[..], b"{", b"}", b"{\"summary\"", b"\r\n", b" ", b"\""])
                    .prop_map(<[u8]>::to_vec),
            ], 0..8).prop_map(|pieces| pieces.concat()),
        ],
    ) {
        if let Ok(journal) = read_bytes(&input) {
            let lines = input.split(|&b| b == b'\n').count();
            prop_assert!(journal.torn.is_none_or(|n| (1..=lines).contains(&n)), "{:?}", journal);
            for record in &journal.records {
                prop_assert!(record.sha256.as_deref().is_none_or(is_sha256_hex), "{:?}", record);
            }
        }
    }

    /// A record whose sha256 is anything but 64 hex digits is refused, naming its line, wherever
    /// it stands (last too: it is whole, not torn), rather than kept for `merge` to call stored
    /// and `diff` to slice.
    #[test]
    fn a_sha256_that_is_not_hex_is_refused_with_its_line(
        before in vec(record(), 0..4),
        bad in record(),
        sha256 in prop_oneof![
            text(),
            "[0-9a-f]{63}",
            "[0-9a-f]{65}",
            "[0-9a-f]{7}[é😀\u{1b}\n][0-9a-f]{55,56}",
            "[0-9a-fg-z ]{64}",
        ].prop_filter("not a SHA-256", |s| !is_sha256_hex(s)),
        after in vec(record(), 0..3),
    ) {
        let bad = Record { sha256: Some(sha256), ..bad };
        let mut input = Vec::new();
        for record in &before {
            input.extend(written_lines(std::slice::from_ref(record), &Summary::default()).remove(0));
        }
        input.extend(written_lines(std::slice::from_ref(&bad), &Summary::default()).remove(0));
        for record in &after {
            input.extend(written_lines(std::slice::from_ref(record), &Summary::default()).remove(0));
        }
        let err = read_bytes(&input).unwrap_err();
        prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let want = format!("m.jsonl:{}: sha256 is not 64 hex digits: ", before.len() + 1);
        prop_assert!(err.to_string().starts_with(&want), "{}", err);
        // The message is one line of plain text, whatever the field held.
        prop_assert!(!err.to_string().contains(|c: char| c.is_control()), "{:?}", err.to_string());
    }

    /// Runs written by `write_all`, one after another (killed ones without their summary), read
    /// back as the journal `Journal` documents: every record equal, field for field, in order;
    /// the last run's summary if it wrote one; one run per summary, plus one left open.
    #[test]
    fn written_runs_read_back_equal(runs in vec(run(), 1..4)) {
        let journal = read_bytes(&written_runs(&runs)).unwrap();
        prop_assert_eq!(journal, journal_of(&runs));
    }

    /// A file cut anywhere (a machine that lost power mid-line) reads as exactly the lines that
    /// are whole before the cut; a partial last line is reported as torn, with its number.
    #[test]
    fn a_torn_last_line_leaves_the_whole_lines_before_it(
        records in vec(record(), 0..5),
        summary in summary(),
        cut in any::<Index>(),
    ) {
        let lines = written_lines(&records, &summary);
        let full = lines.concat();
        let cut = cut.index(full.len() + 1);
        let journal = read_bytes(&full[..cut]).unwrap();
        // Line i spans [start, start + len); it is whole once all but its newline is there.
        let (mut start, mut whole, mut torn) = (0, 0, None);
        for (i, line) in lines.iter().enumerate() {
            if cut >= start + line.len() - 1 {
                whole += 1;
            } else if cut > start {
                torn = Some(i + 1);
            }
            start += line.len();
        }
        let expected = Journal {
            records: records[..whole.min(records.len())].to_vec(),
            summary: (whole == lines.len()).then(|| summary.clone()),
            torn,
            runs: usize::from(cut > 0),
            open_uploads: vec![],
            deleted: vec![],
            local: vec![],
        };
        prop_assert_eq!(journal, expected);
    }

    /// Empty lines anywhere are skipped (and counted in line numbers); an unparseable line is an
    /// `InvalidData` error naming the origin and its line number, unless nothing but empty lines
    /// follows it: then it is the torn last line, and the journal is what came before it.
    #[test]
    fn empty_and_unparseable_lines_are_handled_as_documented(
        before in vec(prop_oneof![record().prop_map(Some), Just(None)], 0..5),
        bad in record().prop_flat_map(garbage),
        after in vec(prop_oneof![record().prop_map(Some), Just(None)], 0..3),
        summary in option::of(summary()),
    ) {
        let line = |r: &Option<Record>| match r {
            Some(r) => written_lines(std::slice::from_ref(r), &Summary::default()).remove(0),
            None => b"\n".to_vec(),
        };
        let mut input: Vec<u8> = before.iter().flat_map(line).collect();
        let bad_number = before.len() + 1;
        let records_before: Vec<Record> = before.iter().flatten().cloned().collect();

        // Without the bad line: the empty lines change nothing.
        let mut clean = input.clone();
        clean.extend(after.iter().flat_map(line));
        let records: Vec<Record> =
            records_before.iter().chain(after.iter().flatten()).cloned().collect();
        if let Some(summary) = &summary {
            clean.extend(written_lines(&[], summary).concat());
        }
        let journal = read_bytes(&clean).unwrap();
        let open = !records.is_empty() && summary.is_none();
        let runs = usize::from(summary.is_some()) + usize::from(open);
        let summary_read = summary.clone();
        prop_assert_eq!(journal, Journal { records, summary: summary_read, torn: None, runs, open_uploads: vec![], deleted: vec![], local: vec![] });

        // With it.
        input.extend(&bad);
        input.push(b'\n');
        input.extend(after.iter().flat_map(line));
        if let Some(summary) = &summary {
            input.extend(written_lines(&[], summary).concat());
        }
        let last = after.iter().all(Option::is_none) && summary.is_none();
        match read_bytes(&input) {
            Ok(journal) => {
                let shown = String::from_utf8_lossy(&bad);
                prop_assert!(last, "line {} {:?} was taken: {:?}", bad_number, shown, journal);
                prop_assert_eq!(journal, Journal {
                    records: records_before,
                    summary: None,
                    torn: Some(bad_number),
                    runs: 1,
                    open_uploads: vec![],
                    deleted: vec![],
                    local: vec![],
                });
            }
            Err(err) => {
                prop_assert!(!last, "a torn last line was refused: {}", err);
                prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                let prefix = format!("m.jsonl:{bad_number}: not a manifest line: ");
                prop_assert!(err.to_string().starts_with(&prefix), "{}", err);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FEW_CASES))]

    /// What `Manifest` writes to a file (`create`, then `append` for a second run, either run
    /// with or without its summary) `read` gives back: the same records and summary, runs
    /// counted as documented.
    #[test]
    fn manifest_files_read_back_equal(runs in vec(run(), 1..3)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        for (i, (records, summary)) in runs.iter().enumerate() {
            let opened = if i == 0 { Manifest::create(&path) } else { Manifest::append(&path) };
            let manifest = opened.unwrap();
            for record in records {
                manifest.record(record).unwrap();
            }
            if let Some(summary) = summary {
                manifest.summary(summary).unwrap();
            }
        }
        prop_assert_eq!(manifest::read(&path).unwrap(), journal_of(&runs));
    }

    /// `Manifest::append` on a file cut anywhere drops the partial last line (keeping a whole
    /// one that lost only its newline), so the next run's records follow the whole ones.
    #[test]
    fn append_after_a_cut_keeps_the_whole_lines(
        records in vec(record(), 0..4),
        summary in summary(),
        next in record(),
        cut in any::<Index>(),
    ) {
        let full = written(&records, &summary);
        let cut = cut.index(full.len() + 1);
        let before = read_bytes(&full[..cut]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, &full[..cut]).unwrap();
        {
            let manifest = Manifest::append(&path).unwrap();
            manifest.record(&next).unwrap();
            manifest.summary(&Summary::default()).unwrap();
        }
        let mut records = before.records;
        records.push(next);
        let expected = Journal {
            records,
            summary: Some(Summary::default()),
            torn: None,
            runs: 1 + usize::from(before.summary.is_some()),
            open_uploads: vec![],
            deleted: vec![],
            local: vec![],
        };
        prop_assert_eq!(manifest::read(&path).unwrap(), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Object names
// ---------------------------------------------------------------------------------------------

/// One path segment, as bytes: mostly usable, often empty, a dot one, with a control
/// character, or not UTF-8.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => select(vec![
            "a", "b", "u", "x y", "é", "...", ".a", "a.", "-", "~", "\\", "\u{2028}", "%2F",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        3 => select(vec!["", ".", "..", "\u{7}", "\u{85}", "\u{7f}", "a\tb", "\n"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(b"\xff".to_vec()),
        1 => vec(any::<u8>().prop_filter("not a separator", |&b| b != b'/'), 1..4),
    ]
}

/// A path: segments, sometimes a root, doubled or trailing slashes, or nothing at all.
fn rel_path() -> impl Strategy<Value = PathBuf> {
    let slashes = prop_oneof![8 => Just(1), 1 => Just(2)];
    let built = (
        prop::bool::weighted(0.15),
        vec((segment(), slashes), 1..4),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(root, segments, trailing)| {
            let mut bytes = if root { b"/".to_vec() } else { Vec::new() };
            for (i, (segment, slashes)) in segments.iter().enumerate() {
                if i > 0 {
                    bytes.extend(std::iter::repeat_n(b'/', *slashes));
                }
                bytes.extend(segment);
            }
            if trailing {
                bytes.push(b'/');
            }
            PathBuf::from(OsString::from_vec(bytes))
        });
    prop_oneof![12 => built, 1 => Just(PathBuf::new())]
}

/// A name for `plan`: mostly from a few segments, so that names and keys collide (`a`, `u/a`
/// and, with `--flatten`, `b/a` too), sometimes any path.
fn plan_name() -> impl Strategy<Value = PathBuf> {
    prop_oneof![
        6 => vec(select(vec!["a", "b", "u"]), 1..3).prop_map(|s| PathBuf::from(s.join("/"))),
        1 => rel_path(),
    ]
}

/// A `--prefix`: text, or segments with slashes around and between them.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        rel_path().prop_map(|p| p.to_string_lossy().into_owned()),
        (0..3usize, rel_path(), 0..3usize).prop_map(|(lead, p, trail)| {
            format!(
                "{}{}{}",
                "/".repeat(lead),
                p.to_string_lossy(),
                "/".repeat(trail)
            )
        }),
    ]
}

fn naming_options() -> impl Strategy<Value = Naming> {
    (any::<bool>(), option::of(prefix())).prop_map(|(flatten, prefix)| Naming { flatten, prefix })
}

/// Everything an accepted object name must be.
fn assert_usable(name: &str) -> Result<(), TestCaseError> {
    prop_assert!(!name.is_empty());
    prop_assert!(std::str::from_utf8(name.as_bytes()).is_ok());
    prop_assert!(
        !name.chars().any(char::is_control),
        "control character in {:?}",
        name
    );
    for segment in name.split('/') {
        prop_assert!(
            !matches!(segment, "" | "." | ".."),
            "{:?} has an empty, `.` or `..` segment",
            name
        );
    }
    Ok(())
}

fn keys() -> impl Strategy<Value = Keys> {
    prop_oneof![
        Just(Keys::Names),
        select(vec!["u", "a", "x y"]).prop_map(|user| Keys::Prominence { user: user.into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// `object_name` takes any path and options; every name it accepts is usable, whatever the
    /// prefix and `--flatten`; the name is the path's (or with `--flatten` its last
    /// component's) own text, behind the trimmed prefix and a `/`.
    #[test]
    fn accepted_object_names_are_usable(relative in rel_path(), naming in naming_options()) {
        let result = naming::object_name(&relative, &naming);
        if let Ok(name) = &result {
            assert_usable(name)?;
        }
        let unprefixed = Naming { flatten: naming.flatten, prefix: None };
        let bare = naming::object_name(&relative, &unprefixed);
        if let Ok(name) = &bare {
            let named = if naming.flatten {
                relative.file_name().map(Path::new).unwrap_or(relative.as_path())
            } else {
                &relative
            };
            prop_assert_eq!(Some(name.as_str()), named.to_str());
            if naming.flatten {
                prop_assert!(!name.contains('/'), "flattened to {:?}", name);
            }
        }
        match naming.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            // No prefix, or only slashes: as if none was given.
            None => prop_assert_eq!(&result, &bare),
            Some(prefix) => {
                if let Ok(name) = &result {
                    let rest = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'));
                    prop_assert_eq!(rest.map(str::to_string), bare.clone().ok(), "{:?}", name);
                }
                // A usable name behind a prefix usable as a name is accepted.
                let usable_prefix = naming::object_name(Path::new(prefix), &Naming::default());
                if bare.is_ok() && usable_prefix.is_ok() {
                    prop_assert!(result.is_ok(), "{:?}", result);
                }
            }
        }
    }

    /// `plan` never gives two files one storage key, nor an unusable name: it refuses exactly
    /// the files whose name is unusable, that are standard input, or whose key an earlier
    /// accepted file has, and otherwise passes every entry (walk errors too) through in order.
    #[test]
    fn plans_never_share_a_key(
        walk in vec((plan_name(), 0..12u8), 0..8),
        naming in naming_options(),
        keys in keys(),
    ) {
        let walk: Vec<_> = walk
            .into_iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let path = match kind {
                    0 => PathBuf::from("-"),
                    _ => PathBuf::from(format!("root/{i}")),
                };
                match kind {
                    1 => Err(FileError {
                        path,
                        name,
                        kind: FileErrorKind::Io(io::Error::other("gone")),
                    }),
                    _ => Ok(FileEntry { path, name, follow: false }),
                }
            })
            .collect();
        // What the documentation says, from `object_name` and `Keys::key`.
        let mut taken = HashSet::new();
        let mut passed = Vec::new();
        let mut refused = Vec::new();
        for item in &walk {
            match item {
                Err(err) => passed.push((err.path.clone(), None)),
                Ok(entry) if entry.path == Path::new("-") => refused.push(entry.path.clone()),
                Ok(entry) => match naming::object_name(&entry.name, &naming) {
                    Ok(name) if taken.insert(keys.key(&name).into_owned()) => {
                        passed.push((entry.path.clone(), Some(PathBuf::from(name))));
                    }
                    _ => refused.push(entry.path.clone()),
                },
            }
        }
        match naming::plan(walk, &naming, &keys) {
            Ok(entries) => {
                prop_assert_eq!(refused, Vec::<PathBuf>::new());
                let mut keys_seen = HashSet::new();
                for entry in entries.iter().flatten() {
                    let name = entry.name.to_str().expect("a UTF-8 name");
                    assert_usable(name)?;
                    let key = keys.key(name).into_owned();
                    prop_assert!(keys_seen.insert(key.clone()), "two files on {:?}", key);
                }
                let got: Vec<_> = entries
                    .iter()
                    .map(|e| match e {
                        Ok(e) => (e.path(), Some(e.name.to_path_buf())),
                        Err(e) => (e.path.clone(), None),
                    })
                    .collect();
                prop_assert_eq!(got, passed);
            }
            Err(problems) => {
                let got: Vec<_> = problems.into_iter().map(|p| p.path).collect();
                prop_assert_eq!(got, refused);
            }
        }
    }
}

/// Whether `s` is 64 hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A line is read up to [`manifest::MAX_LINE`] bytes, newline included, and no further: a
    /// valid record padded to just under the cap reads, one just over it is refused with its
    /// line number (so `/dev/zero` costs a mebibyte, not all memory).
    #[test]
    fn a_line_is_read_up_to_the_cap_and_no_further(
        before in vec(record(), 0..3),
        record in record(),
        over in -40i64..40,
        newline in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for r in &before {
            input.extend(written_lines(std::slice::from_ref(r), &Summary::default()).remove(0));
        }
        let mut line = written_lines(std::slice::from_ref(&record), &Summary::default()).remove(0);
        line.pop(); // the newline
        line.pop(); // the closing brace
        let len = (manifest::MAX_LINE as i64 + over) as usize;
        let pad = len - line.len() - 1 - usize::from(newline);
        line.extend(std::iter::repeat_n(b' ', pad));
        line.push(b'}');
        if newline {
            line.push(b'\n');
        }
        assert_eq!(line.len(), len);
        input.extend(&line);
        match read_bytes(&input) {
            Ok(journal) => {
                prop_assert!(len <= manifest::MAX_LINE, "a {}-byte line was read", len);
                prop_assert_eq!(journal.records.last(), Some(&record));
            }
            Err(err) => {
                prop_assert!(len > manifest::MAX_LINE, "{}-byte line: {}", len, err);
                let want = format!(
                    "m.jsonl:{}: a line longer than {} bytes",
                    before.len() + 1,
                    manifest::MAX_LINE
                );
                prop_assert_eq!(err.to_string(), want);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The AWS profile reader
// ---------------------------------------------------------------------------------------------

/// Text of profile-file lines: headers, properties, continuations, comments, blank lines and
/// junk, in any order, with the characters the reader looks at over-represented.
fn profile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        text(),
        select(vec![
            "[",
            "]",
            "=",
            "#",
            ";",
            " ",
            "\t",
            "\r",
            "\n",
            "\r\n",
            "[default]",
            "[profile x]",
            "[ profile  y ]",
            "[]",
            "key = value",
            "a=b#c",
            "a = b #c",
            "  s3 =",
            "    x = y",
            "  cont",
            "[services s]",
            "aws_access_key_id = AK",
            "\u{feff}",
            "é",
        ])
        .prop_map(str::to_string),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A section name, a property name, a value: what the writer below can put in a file so that
/// the reader must give it back.
fn profile_word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any text parses or is refused with the number of one of its lines, without panicking.
    #[test]
    fn any_profile_text_parses_or_names_a_line(text in profile_text()) {
        match hashup::aws::profile::parse(&text) {
            Ok(sections) => {
                for (header, properties) in &sections {
                    prop_assert!(!header.is_empty() && !header.contains("  "), "{:?}", header);
                    for name in properties.keys() {
                        prop_assert!(!name.is_empty(), "{:?}", sections);
                    }
                }
            }
            Err((line, message)) => {
                let lines = text.lines().count();
                prop_assert!((1..=lines).contains(&line), "line {} of {}: {}", line, lines, message);
                prop_assert!(!message.is_empty());
            }
        }
    }

    /// Sections of `name = value` written with any spacing, comments, blank lines and line
    /// endings read back as written (names lower-cased, as the AWS CLI does).
    #[test]
    fn written_profiles_read_back(
        sections in btree_map(
            profile_word(),
            btree_map("[a-z_][a-z0-9_]{0,11}", prop_oneof![Just(String::new()).boxed(), profile_word().boxed()], 0..5),
            0..4,
        ),
        spacing in vec((select(vec!["", " ", "  ", "\t"]), select(vec!["", " ", "\t "])), 64),
        comments in vec(select(vec!["", "# a comment\n", "; another\n", "\n", "   \n"]), 64),
        crlf in any::<bool>(),
    ) {
        let mut text = String::new();
        let mut at = 0;
        let mut next = || { at += 1; at - 1 };
        for (section, properties) in &sections {
            let (pad, _) = spacing[next() % 64];
            text.push_str(&format!("[{pad}{section}{pad}]\n"));
            text.push_str(comments[next() % 64]);
            for (name, value) in properties {
                let (before, after) = spacing[next() % 64];
                text.push_str(&format!("{name}{before}={after}{value}\n"));
                text.push_str(comments[next() % 64]);
            }
        }
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let parsed = hashup::aws::profile::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.len(), sections.len());
        for (section, properties) in &sections {
            let got = &parsed[section];
            prop_assert_eq!(got.len(), properties.len(), "{:?}", text);
            for (name, value) in properties {
                prop_assert_eq!(got.get(&name.to_ascii_lowercase()), Some(value), "{:?}", text);
            }
        }
    }
}
