//! `hashup upload`, run as a binary: end to end through `hashup serve` (embedded store and
//! SeaweedFS) and `--embedded`, direct S3 mode on SeaweedFS, faults from a small in-test server,
//! what is refused before any upload, and which files are selected.

mod bwlimit;
mod direct;
mod e2e;
mod faults;
mod heal;
mod hostile;
mod journal;
mod keys;
mod mirror;
mod mock;
mod multipart;
mod profiles;
mod record;
mod refusals;
mod select;
mod shards;
mod slow;
mod stop;
mod sync;
mod tls;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use serde_json::{Value, json};

/// The manifest's file records, sorted by name, and its summary (which must be the last line).
/// Lines of other kinds (a multipart upload's journal) are left out.
pub fn read_manifest(path: &Path) -> (Vec<Value>, Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    assert!(summary.is_object(), "last line is not a summary: {text}");
    lines.retain(|line| line.get("name").is_some());
    lines.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    (lines, summary)
}

/// The whole lines of a manifest that may lack its summary (a torn last line is left out, as
/// the journal reader does), parsed.
pub fn read_manifest_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let whole = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The record hashup must write for an uploaded `path` named `name`; `duration_ms` is taken
/// from `actual` after checking it is a number.
pub fn expected_uploaded(
    path: &Path,
    name: &str,
    http: u16,
    attempts: u32,
    actual: &Value,
) -> Value {
    let meta = std::fs::metadata(path).unwrap();
    let data = std::fs::read(path).unwrap();
    assert!(actual["duration_ms"].is_u64(), "{actual}");
    let mut expected = json!({
        "name": name,
        "path": path.to_str().unwrap(),
        "size": meta.len(),
        "mtime": rfc3339(meta.mtime(), meta.mtime_nsec()),
        "sha256": crate::serve::fixture::sha256_hex(&data),
        "status": "uploaded",
        "http_status": http,
        "attempts": attempts,
        "error": null,
        "duration_ms": actual["duration_ms"],
    });
    // What the store answered, where it did: an ETag (quoted, as servers send it) and its
    // clock (the answer's Date: this second, give or take the run).
    if let Some(etag) = actual.get("etag") {
        let etag = etag.as_str().unwrap();
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{actual}"
        );
        expected["etag"] = etag.into();
    }
    if let Some(at) = actual.get("stored_at") {
        let at = at.as_str().unwrap();
        let then = hashup::utc::parse_iso8601(at).unwrap_or_else(|| panic!("{actual}"));
        let now = std::time::SystemTime::now();
        let off = now.duration_since(then).unwrap_or_else(|e| e.duration());
        assert!(off < std::time::Duration::from_secs(600), "{actual}");
        expected["stored_at"] = at.into();
    }
    expected
}

/// `date -u -d @SECS +%Y-%m-%dT%H:%M:%S`, computed independently of hashup (days since the epoch
/// to a civil date by counting years and months), then `.NANOSZ`.
fn rfc3339(secs: i64, nanos: i64) -> String {
    let mut days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let months = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        month + 1,
        days + 1,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
