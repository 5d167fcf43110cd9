//! `hashup upload --check-remote` through a PROMINENCE API whose listing has names, sizes and
//! last-modified times only, as the real API's does. The in-test server stands in for it to
//! count exactly which requests a heal costs and to list what another client left behind
//! (runs against real stores are in `tests/verify/`).

use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use super::faults::run_against;
use super::mock::{Answer, Mock};
use super::read_manifest_lines;
use crate::util::{settle, tree};

/// `GET /data`'s answer: name, size and last-modified time (an HTTP date, as Flask writes it).
fn listing(objects: &[(&str, usize, std::time::SystemTime)]) -> Answer {
    let objects: Vec<Value> = objects
        .iter()
        .map(|(name, size, modified)| {
            json!({"name": name, "size": size, "lastModified": httpdate::fmt_http_date(*modified)})
        })
        .collect();
    Answer::new(200, &Value::from(objects).to_string()).header("content-type", "application/json")
}

/// The manifest's lines for `name` that are file records.
fn records<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["name"] == name).collect()
}

/// When the store said it took the upload, from the record.
fn stored_at(record: &Value) -> std::time::SystemTime {
    let at = record["stored_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{record}"));
    hashup::utc::parse_iso8601(at).unwrap()
}

fn presigned(mock: &Mock) -> Vec<String> {
    let mut names: Vec<String> = mock.api_seen().into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

#[test]
fn a_listing_of_sizes_heals_a_deleted_a_rewritten_and_a_truncated_object_one_presign_each() {
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.sif", b"alpha\n"),
            ("b.sif", b"bravo\n"),
            ("c.sif", b"charl\n"),
            ("d.sif", b"delta!\n"),
        ],
    );
    settle(&src);
    let manifest = dir.path().join("manifest.jsonl");
    let first = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(presigned(&mock), ["a.sif", "b.sif", "c.sif", "d.sif"]);
    let lines = read_manifest_lines(&manifest);
    let at = |name: &str| stored_at(records(&lines, name)[0]);

    // Another client deleted b, rewrote c (same size) a minute after hashup's upload, and
    // truncated d; a is as hashup left it.
    mock.answer_listings(listing(&[
        ("a.sif", 6, at("a.sif")),
        ("c.sif", 6, at("c.sif") + Duration::from_secs(60)),
        ("d.sif", 3, at("d.sif")),
    ]));
    // A dry run lists the destination and says what a run would send again, and why.
    let mock_before = mock.requests().len();
    let dry = run_against(&mock, dir.path(), &src, &["--check-remote", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let sums: Vec<String> = ["b.sif", "c.sif", "d.sif"]
        .iter()
        .map(|name| {
            let data = std::fs::read(src.join(name)).unwrap();
            format!("{}  {name}\n", crate::serve::fixture::sha256_hex(&data))
        })
        .collect();
    assert_eq!(dry.stdout_str(), sums.concat());
    let shown = |name: &str, verb: &str, why: &str| {
        format!(
            "hashup: {}: {verb}: {why}\n",
            Path::new(&src).join(name).display()
        )
    };
    assert!(
        dry.stderr.starts_with(&shown(
            "b.sif",
            "would send again",
            "missing from the destination"
        )),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.ends_with(
            "hashup: 1 files left out: the manifests record them as uploaded and the \
             destination's listing agrees\n"
        ),
        "{}",
        dry.stderr
    );
    let asked: Vec<String> = mock.requests()[mock_before..]
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert_eq!(
        asked,
        ["GET /prominence/v1/data"],
        "a dry run sends nothing"
    );

    let mock_before = mock.requests().len();
    let second = run_against(&mock, dir.path(), &src, &["--check-remote"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let new: Vec<String> = mock.requests()[mock_before..]
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let mut sorted = new.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "GET /prominence/v1/data",
            "POST /prominence/v1/data/upload",
            "POST /prominence/v1/data/upload",
            "POST /prominence/v1/data/upload",
            "POST /storage/b.sif",
            "POST /storage/c.sif",
            "POST /storage/d.sif",
        ],
        "one listing, then one presign and one upload per object to heal: {new:?}"
    );
    assert_eq!(new[0], "GET /prominence/v1/data", "the listing comes first");

    let lines = read_manifest_lines(&manifest);
    let resent = |name: &str| {
        let r = records(&lines, name);
        assert_eq!(r.len(), 2, "{name}: {r:?}");
        assert_eq!(r[1]["status"], "uploaded", "{}", r[1]);
        r[1]["resent"].as_str().unwrap().to_string()
    };
    assert_eq!(resent("b.sif"), "missing from the destination");
    assert_eq!(
        resent("c.sif"),
        format!(
            "rewritten since it was uploaded (last modified {})",
            httpdate::fmt_http_date(at("c.sif") + Duration::from_secs(60))
        )
    );
    assert_eq!(resent("d.sif"), "the destination holds 3 bytes, not 7");
    assert_eq!(
        records(&lines, "a.sif").len(),
        1,
        "a: confirmed, not re-recorded"
    );
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        (
            &summary["uploaded"],
            &summary["resent"],
            &summary["already_stored"],
            &summary["confirmed"]
        ),
        (&json!(3), &json!(3), &json!(1), &json!(1)),
        "{summary}"
    );
    assert!(
        second.stderr.contains(&shown(
            "b.sif",
            "sending again",
            "missing from the destination"
        )),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(" 3 uploaded (19 B, 3 sent again), "),
        "{}",
        second.stderr
    );

    // The next night without the flag asks nothing of the store, and says only that.
    let presigns = mock.count(Method::POST, "/prominence/v1/data/upload");
    let third = run_against(&mock, dir.path(), &src, &[]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(
        mock.count(Method::POST, "/prominence/v1/data/upload"),
        presigns
    );
    assert!(
        third.stderr.ends_with(
            "hashup: nothing to do: all 4 files are unchanged since they were uploaded (the \
             store was not asked: --check-remote asks it)\n"
        ),
        "{}",
        third.stderr
    );

    // With the flag and a listing that agrees: nothing sent, and the line says the store
    // agreed.
    let lines = read_manifest_lines(&manifest);
    let latest = |name: &str| stored_at(records(&lines, name).last().unwrap());
    mock.answer_listings(listing(&[
        ("a.sif", 6, latest("a.sif")),
        ("b.sif", 6, latest("b.sif")),
        ("c.sif", 6, latest("c.sif")),
        ("d.sif", 7, latest("d.sif")),
    ]));
    let fourth = run_against(&mock, dir.path(), &src, &["--check-remote"]);
    assert_eq!(fourth.code, 0, "{}", fourth.stderr);
    assert_eq!(
        mock.count(Method::POST, "/prominence/v1/data/upload"),
        presigns
    );
    assert!(
        fourth.stderr.ends_with(
            "hashup: nothing to do: all 4 files are stored (the destination's listing agrees)\n"
        ),
        "{}",
        fourth.stderr
    );
}
