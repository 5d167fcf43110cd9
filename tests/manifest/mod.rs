//! `hashup manifest summary|merge|diff`, run as a binary on manifests from real `--embedded`
//! uploads and on hand-written ones (failures, killed runs, torn lines), with exact output and
//! exit codes.

use std::path::Path;

use serde_json::{Value, json};

use crate::serve::fixture::sha256_hex;
use crate::upload::{read_manifest, read_manifest_lines};
use crate::util::{self, Run, pattern, tree};

/// Runs `hashup ARGS` in `dir` (so names in the output are the relative ones given).
fn hashup(dir: &Path, args: &[&str]) -> Run {
    util::hashup(args).current_dir(dir).home(dir).run()
}

/// `hashup upload ARGS --embedded STORE --manifest MANIFEST` in `dir`, which must succeed.
fn upload(dir: &Path, args: &[&str], store: &str, manifest: &str) {
    let mut all = vec!["upload"];
    all.extend_from_slice(args);
    all.extend([
        "--embedded",
        store,
        "--manifest",
        manifest,
        "--progress",
        "none",
    ]);
    let run = hashup(dir, &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A hand-written record line.
fn rec(name: &str, status: &str, sha256: Option<&str>, error: Option<&str>) -> String {
    let record = json!({
        "name": name, "path": format!("src/{name}"), "size": 6,
        "mtime": "2026-11-26T00:00:00.000000000Z", "sha256": sha256, "status": status,
        "http_status": if status == "uploaded" { Some(204) } else { None },
        "attempts": 1, "error": error, "duration_ms": 5,
    });
    format!("{record}\n")
}

/// A hand-written summary line.
fn summary(counts: [u64; 4], bytes: u64, elapsed_ms: u64, stopped: Option<&str>) -> String {
    let [files, uploaded, failed, skipped] = counts;
    let line = json!({"summary": {
        "files": files, "uploaded": uploaded, "failed": failed, "skipped": skipped,
        "bytes": bytes, "elapsed_ms": elapsed_ms, "hash_gb_per_s": 1.5,
        "upload_mb_per_s": 0.0, "objects_per_s": 0.0, "stopped": stopped,
    }});
    format!("{line}\n")
}

fn write(dir: &Path, name: &str, lines: &[String]) {
    std::fs::write(dir.join(name), lines.concat()).unwrap();
}

/// The file's records without the fields that differ between runs: `duration_ms`, and
/// `stored_at` (the store's clock when it answered).
fn comparable(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("duration_ms");
            r.as_object_mut().unwrap().remove("stored_at");
            r
        })
        .collect()
}

fn elapsed(manifest: &Path) -> String {
    let (_, summary) = read_manifest(manifest);
    format!(
        "{:.2} s",
        summary["elapsed_ms"].as_u64().unwrap() as f64 / 1000.0
    )
}

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn summary_of_a_real_run_and_of_one_with_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let big = pattern(300_000);
    tree(
        &dir.path().join("src"),
        &[("a.txt", b"hello\n"), ("sub/b.bin", &big)],
    );
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    upload(dir.path(), &["src"], "store", "m.jsonl");
    upload(dir.path(), &["empty"], "store", "e.jsonl");

    let run = hashup(dir.path(), &["manifest", "summary", "m.jsonl", "e.jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout_str(),
        format!(
            "m.jsonl: latest run: 2 files: 2 uploaded (300.0 kB), 0 failed, 0 skipped; \
             finished in {}\n\
             m.jsonl: per name, over 1 run: 2 stored (300.0 kB), 0 failed\n\
             e.jsonl: latest run: nothing to do: no files; finished in {}\n\
             e.jsonl: per name, over 1 run: 0 stored (0 B), 0 failed\n",
            elapsed(&dir.path().join("m.jsonl")),
            elapsed(&dir.path().join("e.jsonl")),
        )
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn summary_lists_failures_and_tells_how_the_run_ended() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let failed = rec("b.sif", "failed", Some(B), Some("storage answered 500"));
    write(
        d,
        "failed.jsonl",
        &[
            rec("a.sif", "uploaded", Some(A), None),
            failed.clone(),
            rec("fifo", "skipped", None, Some("not a regular file")),
            summary([3, 1, 1, 1], 6, 1234, None),
        ],
    );
    let run = hashup(d, &["manifest", "summary", "failed.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "failed.jsonl: latest run: 3 files: 1 uploaded (6 B), 1 failed, 1 skipped; finished in \
         1.23 s\n\
         failed.jsonl: per name, over 1 run: 1 stored (6 B), 1 failed, 1 skipped (not regular \
         files)\n\
         failed.jsonl: failed: b.sif: storage answered 500\n"
    );

    // Killed mid-line: no summary, a torn last line; still readable, but not a success.
    let torn = rec("c.sif", "uploaded", Some(A), None)[..30].to_string();
    write(
        d,
        "killed.jsonl",
        &[rec("a.sif", "uploaded", Some(A), None), torn],
    );
    let run = hashup(d, &["manifest", "summary", "killed.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "killed.jsonl: latest run: no summary line: the run did not finish (killed, or still \
         running)\n\
         killed.jsonl: per name, over 1 run: 1 stored (6 B), 0 failed\n\
         killed.jsonl:2: torn last line ignored (cut off while it was written)\n"
    );
    assert_eq!(run.stderr, "");

    // Stopped by a fatal answer; and no files at all but stopped is not "nothing to do".
    write(
        d,
        "stopped.jsonl",
        &[summary(
            [0, 0, 0, 0],
            0,
            20,
            Some("authentication failed (401)"),
        )],
    );
    let run = hashup(d, &["manifest", "summary", "stopped.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "stopped.jsonl: latest run: 0 files: 0 uploaded (0 B), 0 failed, 0 skipped; stopped \
         early after 0.02 s: authentication failed (401)\n\
         stopped.jsonl: per name, over 1 run: 0 stored (0 B), 0 failed\n"
    );

    // Two runs appended: the second uploaded what the first could not; the latest run's counts
    // are its own, the names' state is over both.
    write(
        d,
        "two.jsonl",
        &[
            rec("a.sif", "uploaded", Some(A), None),
            failed,
            summary([2, 1, 1, 0], 6, 1000, None),
            rec("b.sif", "uploaded", Some(B), None),
            summary([1, 1, 0, 0], 6, 500, None),
        ],
    );
    let run = hashup(d, &["manifest", "summary", "two.jsonl"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout_str(),
        "two.jsonl: latest run: 1 file: 1 uploaded (6 B), 0 failed, 0 skipped; finished in \
         0.50 s\n\
         two.jsonl: per name, over 2 runs: 2 stored (12 B), 0 failed\n"
    );
}

#[test]
fn the_latest_run_says_what_was_checked_sent_again_and_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let line = json!({"summary": {
        "files": 5, "uploaded": 2, "failed": 0, "skipped": 3, "not_started": 1, "bytes": 12,
        "already_stored": 3, "confirmed": 2, "resent": 1, "elapsed_ms": 2500,
        "stopped": "interrupted (Ctrl-C)",
    }});
    write(
        dir.path(),
        "s.jsonl",
        &[
            rec("a", "uploaded", Some(A), None),
            rec("b", "uploaded", Some(B), None),
            format!("{line}\n"),
        ],
    );
    let run = hashup(dir.path(), &["manifest", "summary", "s.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "s.jsonl: latest run: 5 files: 2 uploaded (12 B, 1 sent again), 0 failed, 3 skipped \
         (2 confirmed by the destination's listing, 1 unchanged since uploaded), 1 not started; \
         stopped early after 2.50 s: interrupted (Ctrl-C)\n\
         s.jsonl: per name, over 1 run: 2 stored (12 B), 0 failed\n"
    );
}

#[test]
fn summary_json_is_one_object_per_manifest() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.jsonl",
        &[
            rec("a.sif", "uploaded", Some(A), None),
            rec("b.sif", "failed", None, Some("file changed while reading")),
            summary([2, 1, 1, 0], 6, 40, None),
        ],
    );
    let run = hashup(dir.path(), &["manifest", "summary", "--json", "m.jsonl"]);
    assert_eq!(run.code, 1);
    let mut value: Value = serde_json::from_str(run.stdout_str()).unwrap();
    // The latest run: its summary line as hashup reads it (fields it lacks at their defaults).
    let read = hashup::manifest::read(&dir.path().join("m.jsonl")).unwrap();
    let latest_run = value.as_object_mut().unwrap().remove("latest_run").unwrap();
    assert_eq!(
        latest_run,
        serde_json::to_value(read.summary.unwrap()).unwrap()
    );
    assert_eq!(
        (
            &latest_run["files"],
            &latest_run["uploaded"],
            &latest_run["failed"]
        ),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(
        value,
        json!({
            "manifest": "m.jsonl", "files": 2, "uploaded": 1, "failed": 1, "skipped": 0,
            "bytes": 6, "elapsed_ms": 40, "finished": true, "stopped": null, "runs": 1,
            "torn_line": null,
            "failures": [{"name": "b.sif", "error": "file changed while reading"}],
            "deleted": 0, "delete_failures": [], "delete_stopped": null,
            "names": {"stored": 1, "stored_bytes": 6, "failed": 1, "skipped": 0, "gone": 0},
            "gone": [],
        })
    );
    assert_eq!(run.stdout_str().lines().count(), 1);
}

#[test]
fn a_torn_middle_line_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = rec("a.sif", "uploaded", Some(A), None);
    write(
        d,
        "bad.jsonl",
        &[good.clone(), "{\"name\": \"b.s\n".into(), good.clone()],
    );
    write(d, "good.jsonl", &[good, summary([1, 1, 0, 0], 6, 10, None)]);
    // The other manifest is still summarized; the exit code says one could not be read.
    let run = hashup(d, &["manifest", "summary", "bad.jsonl", "good.jsonl"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("hashup: bad.jsonl:2: not a manifest line: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
    assert_eq!(
        run.stdout_str(),
        "good.jsonl: latest run: 1 file: 1 uploaded (6 B), 0 failed, 0 skipped; finished in \
         0.01 s\n\
         good.jsonl: per name, over 1 run: 1 stored (6 B), 0 failed\n"
    );
    for args in [
        &["manifest", "merge", "good.jsonl", "bad.jsonl"][..],
        &["manifest", "diff", "good.jsonl", "bad.jsonl"],
    ] {
        let run = hashup(d, args);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(
            run.stderr
                .starts_with("hashup: bad.jsonl:2: not a manifest line: "),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout_str(), "", "{args:?}");
    }
    let run = hashup(d, &["manifest", "summary", "missing.jsonl"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "hashup: missing.jsonl: No such file or directory (os error 2)\n"
    );
}

/// A tree of four files: `a.txt` and `c.txt` at the top, two below `sub/`.
fn four_files(dir: &Path) {
    tree(
        &dir.join("src"),
        &[
            ("a.txt", b"hello\n"),
            ("c.txt", b"see\n"),
            ("sub/b.txt", b"world\n"),
            ("sub/d.bin", &pattern(70_000)),
        ],
    );
}

#[test]
fn merging_two_shards_gives_the_single_run_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    four_files(d);
    upload(d, &["src"], "store-all", "all.jsonl");
    // Two shards covering the tree, each run on its own (store).
    upload(d, &["src/a.txt", "src/c.txt"], "store-1", "s1.jsonl");
    upload(d, &["src/sub", "--prefix", "sub"], "store-2", "s2.jsonl");
    let list = hashup(d, &["upload", "src", "--dry-run"]);
    assert_eq!(list.code, 0);
    std::fs::write(d.join("list.sha256"), &list.stdout).unwrap();

    let run = hashup(
        d,
        &[
            "manifest",
            "merge",
            "s1.jsonl",
            "s2.jsonl",
            "--expect",
            "list.sha256",
            "-o",
            "merged.jsonl",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout_str(), "");
    assert_eq!(
        run.stderr,
        "hashup: merged 2 manifests: 4 files: 4 uploaded (70.0 kB), 0 failed, 0 skipped; \
         0 overlaps, 0 gaps, 0 extras, 0 mismatches\n"
    );

    let (single, single_summary) = read_manifest(&d.join("all.jsonl"));
    let (merged, merged_summary) = read_manifest(&d.join("merged.jsonl"));
    assert_eq!(comparable(&merged), comparable(&single));
    for field in ["files", "uploaded", "failed", "skipped", "bytes", "stopped"] {
        assert_eq!(merged_summary[field], single_summary[field], "{field}");
    }
    // Written sorted by name, the summary last.
    let text = std::fs::read_to_string(d.join("merged.jsonl")).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split('"').nth(3).filter(|_| l.starts_with("{\"name\"")))
        .collect();
    assert_eq!(names, ["a.txt", "c.txt", "sub/b.txt", "sub/d.bin"]);
    // Without -o the same lines go to standard output.
    let run = hashup(d, &["manifest", "merge", "s1.jsonl", "s2.jsonl"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout_str(), text);
    // The merged manifest reads like any other.
    let run = hashup(d, &["manifest", "summary", "merged.jsonl"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout_str().starts_with(
            "merged.jsonl: latest run: 4 files: 4 uploaded (70.0 kB), 0 failed, 0 skipped; \
             finished in "
        ),
        "{}",
        run.stdout_str()
    );
}

#[test]
fn merge_reports_overlapping_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    four_files(d);
    // Both shards upload a.txt: the same bytes, so harmless, but the sharding is wrong.
    upload(d, &["src/a.txt", "src/c.txt"], "store-1", "s1.jsonl");
    upload(d, &["src/a.txt"], "store-2", "s2.jsonl");
    let run = hashup(
        d,
        &["manifest", "merge", "s1.jsonl", "s2.jsonl", "-o", "m.jsonl"],
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "hashup: overlap: a.txt: in s1.jsonl and s2.jsonl, both uploaded with the same sha256\n\
         hashup: merged 2 manifests: 2 files: 2 uploaded (10 B), 0 failed, 0 skipped; 1 overlap\n"
    );

    // Different outcomes: the uploaded record is kept, whichever shard it came from.
    write(
        d,
        "x.jsonl",
        &[
            rec("x", "uploaded", Some(A), None),
            summary([1, 1, 0, 0], 6, 9, None),
        ],
    );
    write(
        d,
        "y.jsonl",
        &[
            rec("x", "failed", Some(B), Some("storage answered 503")),
            summary([1, 0, 1, 0], 0, 9, None),
        ],
    );
    let run = hashup(d, &["manifest", "merge", "x.jsonl", "y.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "hashup: overlap: x: in x.jsonl (uploaded aaaaaaaa..) and y.jsonl (failed bbbbbbbb..)\n\
         hashup: merged 2 manifests: 1 file: 1 uploaded (6 B), 0 failed, 0 skipped; 1 overlap\n"
    );
    let lines: Vec<Value> = run
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kept: Value = serde_json::from_str(&rec("x", "uploaded", Some(A), None)).unwrap();
    assert_eq!(lines[0], kept);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["summary"]["files"], 1);
    assert_eq!(lines[1]["summary"]["uploaded"], 1);
}

#[test]
fn merge_finds_gaps_extras_and_mismatches_against_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    four_files(d);
    upload(d, &["src/a.txt", "src/c.txt"], "store-1", "s1.jsonl");
    let list = hashup(d, &["upload", "src", "--dry-run"]);
    // The list wants a different c.txt, and does not know e.txt.
    let list = list
        .stdout_str()
        .replace(&sha256_hex(b"see\n"), &sha256_hex(b"sea\n"));
    std::fs::write(d.join("list.sha256"), list).unwrap();
    write(
        d,
        "s2.jsonl",
        &[
            rec("e.txt", "uploaded", Some(A), None),
            summary([1, 1, 0, 0], 6, 9, None),
        ],
    );

    let run = hashup(
        d,
        &[
            "manifest",
            "merge",
            "s1.jsonl",
            "s2.jsonl",
            "--expect",
            "list.sha256",
            "-o",
            "m.jsonl",
        ],
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "hashup: gap: sub/b.txt: listed in list.sha256, in no manifest\n\
             hashup: gap: sub/d.bin: listed in list.sha256, in no manifest\n\
             hashup: mismatch: c.txt: sha256 {}.. in s1.jsonl, {}.. in list.sha256\n\
             hashup: extra: e.txt: in s2.jsonl, not listed in list.sha256\n\
             hashup: merged 2 manifests: 3 files: 3 uploaded (16 B), 0 failed, 0 skipped; \
             0 overlaps, 2 gaps, 1 extra, 1 mismatch\n",
            &sha256_hex(b"see\n")[..8],
            &sha256_hex(b"sea\n")[..8],
        )
    );

    // Extras alone are reported but are not a failure.
    let run = hashup(d, &["hash", "src/a.txt"]);
    std::fs::write(
        d.join("a.sha256"),
        run.stdout_str().replace("src/a.txt", "a.txt"),
    )
    .unwrap();
    let run = hashup(
        d,
        &[
            "manifest", "merge", "s1.jsonl", "--expect", "a.sha256", "-o", "m.jsonl",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "hashup: extra: c.txt: in s1.jsonl, not listed in a.sha256\n\
         hashup: merged 1 manifest: 2 files: 2 uploaded (10 B), 0 failed, 0 skipped; \
         0 overlaps, 0 gaps, 1 extra, 0 mismatches\n"
    );

    // A list that is not a checksum list stops the merge.
    std::fs::write(d.join("bad.sha256"), "# names\nnot a checksum line\n").unwrap();
    let run = hashup(
        d,
        &["manifest", "merge", "s1.jsonl", "--expect", "bad.sha256"],
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "hashup: bad.sha256:2: improperly formatted SHA256 checksum line\n"
    );
    assert_eq!(run.stdout_str(), "");
}

#[test]
fn merge_flags_failed_records_and_unfinished_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "s1.jsonl",
        &[
            rec("a", "uploaded", Some(A), None),
            rec(
                "b",
                "failed",
                None,
                Some("cannot read: Permission denied (os error 13)"),
            ),
            summary([2, 1, 1, 0], 6, 800, None),
        ],
    );
    // Killed: no summary, and a torn line.
    write(
        d,
        "s2.jsonl",
        &[rec("c", "uploaded", Some(B), None), "{\"name\":\"d".into()],
    );
    let run = hashup(d, &["manifest", "merge", "s1.jsonl", "s2.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "hashup: s2.jsonl:2: torn last line ignored\n\
         hashup: s2.jsonl: no summary line: that run did not finish\n\
         hashup: failed: b: cannot read: Permission denied (os error 13) (in s1.jsonl)\n\
         hashup: merged 2 manifests: 3 files: 2 uploaded (12 B), 1 failed, 0 skipped; 0 overlaps\n"
    );
    // The merged summary is recomputed and says why the merged run is incomplete.
    let summary: Value = serde_json::from_str(run.stdout_str().lines().last().unwrap()).unwrap();
    let summary = &summary["summary"];
    assert_eq!(
        (
            &summary["files"],
            &summary["uploaded"],
            &summary["failed"],
            &summary["bytes"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(12))
    );
    assert_eq!(summary["elapsed_ms"], 800);
    assert_eq!(
        summary["stopped"],
        "s2.jsonl: no summary line: that run did not finish"
    );
}

#[test]
fn diff_of_two_real_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tree(
        &d.join("src"),
        &[
            ("a.txt", b"same\n"),
            ("b.txt", b"old\n"),
            ("c.txt", b"gone\n"),
        ],
    );
    upload(d, &["src"], "store", "old.jsonl");
    std::fs::write(d.join("src/b.txt"), b"new\n").unwrap();
    std::fs::remove_file(d.join("src/c.txt")).unwrap();
    std::fs::write(d.join("src/d.txt"), b"added\n").unwrap();
    upload(d, &["src"], "store", "new.jsonl");

    let run = hashup(d, &["manifest", "diff", "old.jsonl", "new.jsonl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout_str(),
        format!(
            "~ b.txt (sha {}.. -> {}..)\n- c.txt\n+ d.txt\n\
             1 added, 1 removed, 1 changed, 1 unchanged\n",
            &sha256_hex(b"old\n")[..8],
            &sha256_hex(b"new\n")[..8],
        )
    );
    assert_eq!(run.stderr, "");

    let run = hashup(d, &["manifest", "diff", "new.jsonl", "new.jsonl"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout_str(),
        "0 added, 0 removed, 0 changed, 3 unchanged\n"
    );
}

#[test]
fn diff_shows_status_changes_and_fails_on_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "old.jsonl",
        &[
            rec("a", "failed", None, Some("storage answered 500")),
            rec("b", "failed", Some(A), Some("file changed while reading")),
            rec("c", "uploaded", Some(A), None),
        ],
    );
    write(
        d,
        "new.jsonl",
        &[
            rec("a", "uploaded", Some(A), None),
            rec("b", "uploaded", Some(B), None),
            rec("c", "uploaded", Some(A), None),
            summary([3, 3, 0, 0], 18, 5, None),
        ],
    );
    let run = hashup(d, &["manifest", "diff", "old.jsonl", "new.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "~ a (failed -> uploaded)\n\
         ~ b (sha aaaaaaaa.. -> bbbbbbbb.., failed -> uploaded)\n\
         0 added, 0 removed, 2 changed, 1 unchanged\n"
    );

    let run = hashup(d, &["manifest", "diff", "old.jsonl", "nope.jsonl"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "hashup: nope.jsonl: No such file or directory (os error 2)\n"
    );
    assert_eq!(run.stdout_str(), "");
}

/// A hand-written `deleted` line (`upload --delete`).
fn del(name: &str, error: Option<&str>) -> String {
    let mut deleted = json!({
        "name": name, "key": format!("p/{name}"), "size": 6,
        "time": "2026-11-27T00:00:00.000000000Z",
    });
    if let Some(error) = error {
        deleted["error"] = json!(error);
    }
    format!("{}\n", json!({ "deleted": deleted }))
}

/// A `--delete` run's summary line.
fn delete_summary(found: u64, deleted: u64, failed: u64) -> String {
    let line = json!({"summary": {
        "files": 1, "uploaded": 0, "failed": 0, "skipped": 1, "bytes": 0, "elapsed_ms": 40,
        "stopped": null,
        "delete": {"found": found, "deleted": deleted, "failed": failed, "elapsed_ms": 7,
            "stopped": null},
    }});
    format!("{line}\n")
}

#[test]
fn deletions_are_read_and_counted_by_summary_merge_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run1 = [
        rec("a", "uploaded", Some(A), None),
        rec("b", "uploaded", Some(B), None),
        rec("c", "uploaded", Some(A), None),
        summary([3, 3, 0, 0], 18, 5, None),
    ];
    write(d, "old.jsonl", &run1);
    // Run 2 deletes b, and c, whose DELETE fails (its second line says so).
    let mut both = run1.to_vec();
    both.extend([
        del("b", None),
        del("c", None),
        del("c", Some("HTTP 500: boom")),
        delete_summary(2, 1, 1),
    ]);
    write(d, "new.jsonl", &both);

    let run = hashup(d, &["manifest", "summary", "new.jsonl"]);
    assert_eq!(run.code, 1, "a deletion failed: {run:?}");
    assert_eq!(
        run.stdout_str(),
        "new.jsonl: latest run: 1 file: 0 uploaded (0 B), 0 failed, 1 skipped, 1 deleted, \
         1 not deleted; finished in 0.04 s\n\
         new.jsonl: per name, over 2 runs: 1 stored (6 B), 0 failed, 1 deleted, 1 not deleted\n\
         new.jsonl: not deleted: c: HTTP 500: boom\n"
    );
    let run = hashup(d, &["manifest", "summary", "--json", "new.jsonl"]);
    let value: Value = serde_json::from_str(run.stdout_str()).unwrap();
    assert_eq!(value["deleted"], 1);
    assert_eq!(
        value["delete_failures"],
        json!([{"name": "c", "error": "HTTP 500: boom"}])
    );

    let run = hashup(d, &["manifest", "diff", "old.jsonl", "new.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "- b (deleted)\n- c (deleted)\n0 added, 2 removed, 0 changed, 1 unchanged\n"
    );

    // Merged with another manifest: the deleted lines come along, and are counted.
    write(
        d,
        "other.jsonl",
        &[
            rec("d", "uploaded", Some(B), None),
            summary([1, 1, 0, 0], 6, 5, None),
        ],
    );
    let run = hashup(
        d,
        &[
            "manifest",
            "merge",
            "new.jsonl",
            "other.jsonl",
            "-o",
            "m.jsonl",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "hashup: not deleted: c: HTTP 500: boom (in new.jsonl)\n\
         hashup: merged 2 manifests: 2 files: 2 uploaded (12 B), 0 failed, 0 skipped, \
         1 deleted, 1 not deleted; 0 overlaps\n"
    );
    let merged = std::fs::read_to_string(d.join("m.jsonl")).unwrap();
    let lines: Vec<Value> = merged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{merged}");
    assert_eq!(lines[2]["deleted"]["name"], "b");
    assert_eq!(lines[3]["deleted"]["error"], "HTTP 500: boom");
    assert_eq!(
        lines[4]["summary"]["delete"],
        json!({"found": 2, "deleted": 1, "failed": 1, "elapsed_ms": 7, "stopped": null})
    );
    let run = hashup(d, &["manifest", "summary", "m.jsonl"]);
    assert_eq!(
        run.stdout_str(),
        "m.jsonl: latest run: 2 files: 2 uploaded (12 B), 0 failed, 0 skipped, 1 deleted, \
         1 not deleted; finished in 0.04 s\n\
         m.jsonl: per name, over 1 run: 2 stored (12 B), 0 failed, 1 deleted, 1 not deleted\n\
         m.jsonl: not deleted: c: HTTP 500: boom\n"
    );
}

/// The manifest's `gone` and `back` lines, as `gone NAME` and `back NAME`.
fn local_lines(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|line| {
            let (kind, presence) = line.as_object()?.iter().next()?;
            let name = presence["name"].as_str()?;
            (kind == "gone" || kind == "back").then(|| format!("{kind} {name}"))
        })
        .collect()
}

#[test]
fn a_name_gone_locally_is_journalled_once_and_a_file_back_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("m.jsonl");
    tree(
        d,
        &[
            ("src/a.txt", b"a\n"),
            ("src/b.txt", b"b\n"),
            ("src/c.txt", b"c\n"),
            ("other/x.txt", b"x\n"),
        ],
    );
    upload(d, &["src", "other"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), [""; 0]);

    // Night 2 over src alone: b changed, c deleted. x.txt lay under the other PATH: not gone.
    std::fs::write(d.join("src/b.txt"), b"b2\n").unwrap();
    std::fs::remove_file(d.join("src/c.txt")).unwrap();
    upload(d, &["src"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), ["gone c.txt"]);
    let gone: Value = serde_json::from_str(
        std::fs::read_to_string(&m)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("{\"gone\""))
            .unwrap(),
    )
    .unwrap();
    let time = gone["gone"]["time"].as_str().unwrap();
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    // Two more nights: written once.
    upload(d, &["src"], "store", "m.jsonl");
    upload(d, &["src"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), ["gone c.txt"]);

    // a.txt deleted: a run that does not see the whole tree does not call it gone, neither
    // where a filter leaves it out nor under an option --delete refuses.
    std::fs::remove_file(d.join("src/a.txt")).unwrap();
    upload(d, &["src", "--include", "b*"], "store", "m.jsonl");
    upload(d, &["src", "--newer-than", "1d"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), ["gone c.txt"]);
    // A filter that takes it does.
    upload(d, &["src", "--include", "*.txt"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), ["gone c.txt", "gone a.txt"]);

    // c.txt comes back unchanged: skipped as already stored, with no record, but a back line.
    std::fs::write(d.join("src/c.txt"), b"c\n").unwrap();
    let before = read_manifest_lines(&m).len();
    upload(d, &["src"], "store", "m.jsonl");
    assert_eq!(local_lines(&m), ["gone c.txt", "gone a.txt", "back c.txt"]);
    let night = read_manifest_lines(&m).split_off(before);
    assert_eq!(night.len(), 2, "{night:?}");
    assert_eq!(
        (
            &night[1]["summary"]["files"],
            &night[1]["summary"]["already_stored"]
        ),
        (&json!(2), &json!(2)),
        "b.txt and c.txt"
    );
    upload(d, &["src"], "store", "m.jsonl");
    assert_eq!(local_lines(&m).len(), 3);
}

#[test]
fn summary_tells_the_latest_run_from_the_names_and_names_those_gone_locally() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("m.jsonl");
    tree(
        &d.join("src"),
        &[("a.txt", b"a\n"), ("b.txt", b"b\n"), ("c.txt", b"c\n")],
    );
    upload(d, &["src"], "store", "m.jsonl");
    // Night 2: b.txt changed, c.txt deleted locally.
    std::fs::write(d.join("src/b.txt"), b"bb\n").unwrap();
    std::fs::remove_file(d.join("src/c.txt")).unwrap();
    upload(d, &["src"], "store", "m.jsonl");

    let run = hashup(d, &["manifest", "summary", "m.jsonl"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(
        run.stdout_str(),
        format!(
            "m.jsonl: latest run: 2 files: 1 uploaded (3 B), 0 failed, 1 skipped (1 unchanged \
             since uploaded); finished in {}\n\
             m.jsonl: per name, over 2 runs: 3 stored (7 B), 0 failed; 1 gone locally but still \
             stored (hashup upload --delete removes it from the store)\n\
             m.jsonl: gone locally: c.txt\n",
            elapsed(&m)
        )
    );

    // --json: the same split; the keys from before keep counting each name's latest record.
    let run = hashup(d, &["manifest", "summary", "--json", "m.jsonl"]);
    assert_eq!(run.code, 0);
    let value: Value = serde_json::from_str(run.stdout_str()).unwrap();
    let (_, summary) = read_manifest(&m);
    assert_eq!(value["latest_run"], summary);
    assert_eq!(
        (
            &summary["files"],
            &summary["uploaded"],
            &summary["already_stored"]
        ),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(
        value["names"],
        json!({"stored": 3, "stored_bytes": 7, "failed": 0, "skipped": 0, "gone": 1})
    );
    let gone_line = read_manifest_lines(&m)
        .into_iter()
        .find_map(|line| line.get("gone").cloned())
        .unwrap();
    assert_eq!(value["gone"], json!([gone_line]));
    assert_eq!(value["gone"][0]["name"], "c.txt");
    assert_eq!(
        (&value["files"], &value["uploaded"], &value["bytes"]),
        (&json!(3), &json!(3), &json!(7))
    );

    // c.txt comes back unchanged: nothing is sent, and nothing is gone any more.
    std::fs::write(d.join("src/c.txt"), b"c\n").unwrap();
    upload(d, &["src"], "store", "m.jsonl");
    let run = hashup(d, &["manifest", "summary", "m.jsonl"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout_str(),
        format!(
            "m.jsonl: latest run: 3 files: 0 uploaded (0 B), 0 failed, 3 skipped (3 unchanged \
             since uploaded); finished in {}\n\
             m.jsonl: per name, over 3 runs: 3 stored (7 B), 0 failed\n",
            elapsed(&m)
        )
    );
}

/// A hand-written `gone` or `back` line.
fn local(kind: &str, name: &str) -> String {
    let line = json!({ kind: {"name": name, "time": "2026-11-28T02:00:00.000000000Z"} });
    format!("{line}\n")
}

#[test]
fn summary_names_at_most_ten_gone_and_counts_only_those_still_stored() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..14).map(|i| format!("n{i:02}")).collect();
    let mut lines: Vec<String> = names
        .iter()
        .map(|n| rec(n, "uploaded", Some(A), None))
        .collect();
    lines.push(summary([14, 14, 0, 0], 84, 5, None));
    // Run 2 finds every name gone, and x, which it never stored; n13 is back unchanged, n12
    // back changed (sent again), n11 deleted from the store by --delete.
    lines.extend(names.iter().map(|n| local("gone", n)));
    lines.extend([
        local("gone", "x"),
        local("back", "n13"),
        rec("n12", "uploaded", Some(B), None),
        del("n11", None),
        summary([1, 1, 0, 0], 6, 10, None),
    ]);
    write(dir.path(), "g.jsonl", &lines);

    let run = hashup(dir.path(), &["manifest", "summary", "g.jsonl"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    let listed: String = (0..10)
        .map(|i| format!("g.jsonl: gone locally: n{i:02}\n"))
        .collect();
    assert_eq!(
        run.stdout_str(),
        format!(
            "g.jsonl: latest run: 1 file: 1 uploaded (6 B), 0 failed, 0 skipped; finished in \
             0.01 s\n\
             g.jsonl: per name, over 2 runs: 13 stored (78 B), 0 failed, 1 deleted; 11 gone \
             locally but still stored (hashup upload --delete removes them from the store)\n\
             {listed}\
             g.jsonl: ... and 1 more gone locally (--json lists them all)\n"
        )
    );
    let run = hashup(dir.path(), &["manifest", "summary", "--json", "g.jsonl"]);
    let value: Value = serde_json::from_str(run.stdout_str()).unwrap();
    let gone: Vec<&str> = value["gone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(gone, names[..11]);
    assert_eq!(value["names"]["gone"], 11);
}

/// The process's umask (the commands run here inherit it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// A sha256 that is not 64 hex digits (here with a two-byte character across byte 8, which
/// made `diff` and `merge` panic slicing it) is refused at read, naming file and line, by every
/// command; `merge -o` leaves OUT as it was, and writes a new OUT with the mode any new file
/// gets, not 0600.
#[test]
fn a_sha256_that_is_not_hex_is_refused_and_merge_replaces_out_only_on_success() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let odd = format!("0123456é{}", &A[..55]);
    write(
        d,
        "odd.jsonl",
        &[
            rec("a", "uploaded", Some(A), None),
            rec("b", "uploaded", Some(&odd), None),
            summary([2, 2, 0, 0], 12, 10, None),
        ],
    );
    write(
        d,
        "good.jsonl",
        &[
            rec("b", "uploaded", Some(B), None),
            summary([1, 1, 0, 0], 6, 10, None),
        ],
    );
    std::fs::write(d.join("out.jsonl"), "what was there\n").unwrap();
    let refused = format!("hashup: odd.jsonl:2: sha256 is not 64 hex digits: {odd}\n");
    for args in [
        &["manifest", "summary", "odd.jsonl"][..],
        &["manifest", "diff", "good.jsonl", "odd.jsonl"],
        &["manifest", "diff", "odd.jsonl", "good.jsonl"],
        &["manifest", "merge", "good.jsonl", "odd.jsonl"],
        &[
            "manifest",
            "merge",
            "odd.jsonl",
            "good.jsonl",
            "-o",
            "out.jsonl",
        ],
    ] {
        let run = hashup(d, args);
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (2, refused.as_str()),
            "{args:?}"
        );
        assert_eq!(run.stdout_str(), "", "{args:?}");
    }
    assert_eq!(
        std::fs::read_to_string(d.join("out.jsonl")).unwrap(),
        "what was there\n"
    );

    let run = hashup(d, &["manifest", "merge", "good.jsonl", "-o", "new.jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mode = std::fs::metadata(d.join("new.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666 & !umask());
}

/// A manifest line is read up to 1 MiB: a file that is all one line (`/dev/zero`, or a
/// 2 MiB record) is refused, naming file and line, without reading it whole.
#[test]
fn a_manifest_line_over_a_mebibyte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut long = rec("a", "uploaded", Some(A), None);
    long.insert_str(1, &" ".repeat(2 << 20));
    write(
        d,
        "long.jsonl",
        &[rec("b", "uploaded", Some(B), None), long],
    );
    let run = hashup(d, &["manifest", "summary", "long.jsonl"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "hashup: long.jsonl:2: a line longer than 1048576 bytes\n"
    );
    let run = hashup(d, &["manifest", "summary", "/dev/zero"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "hashup: /dev/zero:1: a line longer than 1048576 bytes\n"
    );
}

/// Names and error texts read from a manifest reach the terminal as object names and server
/// text do elsewhere: control characters escaped in names, errors one plain line. Each field
/// here would otherwise clear the screen and forge a line of hashup's own.
#[test]
fn names_and_errors_from_a_manifest_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let forged = "x\u{1b}[2J\nhashup: 7 files, 7 uploaded";
    let error = "boom\u{1b}[31m\nhashup: 7 files, 7 uploaded";
    write(
        d,
        "m.jsonl",
        &[
            rec(forged, "failed", None, Some(error)),
            rec("ok", "uploaded", Some(A), None),
            del(&format!("d{forged}"), Some(error)),
            summary([2, 1, 1, 0], 6, 10, Some(error)),
        ],
    );
    write(d, "other.jsonl", &[rec("ok", "uploaded", Some(B), None)]);
    let name = "x\\u{1b}[2J\\nhashup: 7 files, 7 uploaded";
    let said = "boom [31m hashup: 7 files, 7 uploaded";

    let run = hashup(d, &["manifest", "summary", "m.jsonl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout_str(),
        format!(
            "m.jsonl: latest run: 2 files: 1 uploaded (6 B), 1 failed, 0 skipped; stopped early \
             after 0.01 s: {said}\n\
             m.jsonl: per name, over 1 run: 1 stored (6 B), 1 failed, 0 deleted, 1 not deleted\n\
             m.jsonl: failed: {name}: {said}\n\
             m.jsonl: not deleted: d{name}: {said}\n"
        )
    );

    let run = hashup(d, &["manifest", "diff", "other.jsonl", "m.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        format!(
            "~ ok (sha bbbbbbbb.. -> aaaaaaaa..)\n\
             + {name}\n\
             1 added, 0 removed, 1 changed, 0 unchanged\n"
        )
    );

    let run = hashup(d, &["manifest", "merge", "m.jsonl", "-o", "merged.jsonl"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "hashup: m.jsonl: stopped early: {said}\n\
             hashup: failed: {name}: {said} (in m.jsonl)\n\
             hashup: not deleted: d{name}: {said} (in m.jsonl)\n\
             hashup: merged 1 manifest: 2 files: 1 uploaded (6 B), 1 failed, 0 skipped, 0 \
             deleted, 1 not deleted; 0 overlaps\n"
        )
    );
}
