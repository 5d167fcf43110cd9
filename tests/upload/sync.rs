//! Nightly sync: a rerun over an unchanged tree reads no file and uploads nothing (hash cache +
//! manifest journal), a changed file is found and sent, a damaged cache is not trusted, and a
//! run killed with SIGKILL at any moment resumes without sending anything confirmed again.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::mock::Mock;
use super::read_manifest;
use crate::serve::fixture::sha256_hex;
use crate::util::{self, Run, pattern, settle, tree, tree_of};

fn embedded_run(dir: &Path, extra: &[&str]) -> Run {
    let src = dir.join("src");
    let store = dir.join("store");
    let manifest = dir.join("manifest.jsonl");
    let mut args = vec![
        src.to_str().unwrap(),
        "--embedded",
        store.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--progress",
        "none",
    ];
    args.extend(extra);
    util::hashup(["upload"]).args(&args).home(dir).run()
}

/// The summary of the last run in the journal.
fn last_summary(dir: &Path) -> serde_json::Value {
    read_manifest(&dir.join("manifest.jsonl")).1
}

#[test]
fn a_rerun_over_an_unchanged_tree_reads_nothing_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("d{}/f{i}.sif", i % 3), pattern(1000 + i * 37)))
        .collect();
    tree_of(&dir.path().join("src"), &files);
    settle(&dir.path().join("src"));

    let first = embedded_run(dir.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let summary = last_summary(dir.path());
    assert_eq!(summary["uploaded"], 20);
    assert_eq!(summary["cached"], 0);
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(summary["bytes_hashed"], total as u64);

    let second = embedded_run(dir.path(), &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let summary = last_summary(dir.path());
    assert_eq!(summary["uploaded"], 0, "{summary}");
    assert_eq!(summary["skipped"], 20);
    assert_eq!(summary["cached"], 20);
    assert_eq!(summary["bytes_hashed"], 0);
    // Two lines, whatever the tree's size: the summary and "nothing to do"; and the journal
    // only gains the run's summary line (it already holds every record).
    assert!(
        second
            .stderr
            .ends_with("; upload 0.0 MB/s, 0.0 objects/s\nhashup: nothing to do: all 20 files are unchanged since they were uploaded (the store was not asked: --check-remote asks it)\n"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stderr.lines().count(), 2, "{}", second.stderr);
    let journal = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 20 + 1 + 1);

    // A dry run with the same manifest lists nothing to send, and leaves the manifest alone.
    let journal_before = std::fs::read(dir.path().join("manifest.jsonl")).unwrap();
    let dry = embedded_run(dir.path(), &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.stdout_str(), "");
    assert_eq!(
        dry.stderr,
        "hashup: 20 files left out: the manifests record them as uploaded\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("manifest.jsonl")).unwrap(),
        journal_before
    );

    // One file changes (same size, new content): only it is read and sent.
    let changed = dir.path().join("src").join(&files[4].0);
    let mut data = files[4].1.clone();
    data[0] ^= 0xff;
    std::fs::write(&changed, &data).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // (--no-cache: a dry run would otherwise leave the new hash in the cache for the next run.)
    let dry = embedded_run(dir.path(), &["--dry-run", "--no-cache"]);
    assert_eq!(
        dry.stdout_str(),
        format!("{}  {}\n", sha256_hex(&data), files[4].0),
        "{}",
        dry.stderr
    );
    let third = embedded_run(dir.path(), &[]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let summary = last_summary(dir.path());
    assert_eq!(summary["uploaded"], 1, "{summary}");
    assert_eq!(summary["skipped"], 19);
    assert_eq!(summary["bytes_hashed"], data.len() as u64);
    let text = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    let last_record: serde_json::Value = text
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == files[4].0.as_str())
        .unwrap();
    assert_eq!(last_record["status"], "uploaded");
    assert_eq!(last_record["sha256"], sha256_hex(&data));
}

#[test]
fn a_damaged_hash_cache_is_not_trusted_and_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        &dir.path().join("src"),
        &[("a.sif", &pattern(5000)), ("b.sif", &pattern(7000))],
    );
    settle(&dir.path().join("src"));
    let state = dir.path().join("state");
    let state_args = ["--state", state.to_str().unwrap()];
    assert_eq!(embedded_run(dir.path(), &state_args).code, 0);

    // Flip one bit inside a cached SHA-256.
    let cache = state.join("hash-cache.bin");
    let mut bytes = std::fs::read(&cache).unwrap();
    assert_eq!(bytes.len(), 16 + 2 * 96);
    bytes[16 + 60] ^= 1;
    std::fs::write(&cache, &bytes).unwrap();

    let run = embedded_run(dir.path(), &[&state_args[..], &["--restart"]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "hashup: warning: hash cache {} is damaged (record 0 fails its check): \
             not trusting any of it; this run rebuilds it\n",
            cache.display()
        )),
        "{}",
        run.stderr
    );
    let summary = last_summary(dir.path());
    assert_eq!(summary["cached"], 0);
    assert_eq!(summary["bytes_hashed"], 12000);
    assert_eq!(summary["uploaded"], 2);

    let again = embedded_run(dir.path(), &[&state_args[..], &["--restart"]].concat());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert_eq!(last_summary(dir.path())["cached"], 2);
}

/// Kills a run with SIGKILL at a few moments, reruns the same command each time, and checks
/// the journal's promise: whatever a run had recorded as uploaded is never sent again, and the
/// final run leaves every file recorded uploaded with its right checksum.
#[test]
fn sigkill_at_any_moment_then_the_same_command_resumes_without_resending() {
    let mock = Mock::start();
    // Slow storage (160 files/s) keeps a run going for about 4 s with uploads in flight: five
    // kills at most 600 ms in cannot use up the tree.
    mock.storage_delay(Duration::from_millis(25));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("f{i:04}"),
                format!("content of file {i}\n").into_bytes(),
            )
        })
        .collect();
    tree_of(&src, &files);
    let manifest = dir.path().join("manifest.jsonl");
    let command = || {
        let mut command = util::hashup(["upload"])
            .arg(&src)
            .args(["--url", &mock.api, "--uploads", "4", "--progress", "none"])
            .arg("--manifest")
            .arg(&manifest)
            .env("PROMINENCE_TOKEN", "mock-token")
            .home(dir.path())
            .command();
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    let confirmed = |manifest: &Path| -> HashMap<String, String> {
        let Ok(text) = std::fs::read_to_string(manifest) else {
            return HashMap::new();
        };
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["status"] == "uploaded" || v["status"] == "skipped")
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let mut kills = 0;
    // Random moments (printed on failure): early ones catch the walk and the first uploads,
    // later ones a run in full flow.
    let delays: Vec<u64> = (0..5).map(|_| rand::random_range(30..600)).collect();
    for &delay_ms in &delays {
        let before = confirmed(&manifest);
        let seen_before = mock.storage_seen().len();
        let mut child = command().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        for seen in &mock.storage_seen()[seen_before..] {
            assert!(
                !before.contains_key(&seen.name),
                "{} was recorded as uploaded, then sent again (kills after {delays:?} ms)",
                seen.name
            );
        }
    }
    assert!(
        kills >= 3,
        "the runs ended before they could be killed ({delays:?} ms)"
    );

    let before = confirmed(&manifest);
    let seen_before = mock.storage_seen().len();
    let status = command().status().unwrap();
    assert_eq!(status.code(), Some(0));
    for seen in &mock.storage_seen()[seen_before..] {
        assert!(!before.contains_key(&seen.name), "{} sent again", seen.name);
    }
    let done = confirmed(&manifest);
    for (name, data) in &files {
        assert_eq!(
            done.get(name),
            Some(&sha256_hex(data)),
            "{name} not recorded as stored"
        );
        assert!(
            mock.storage_seen().iter().any(|s| &s.name == name),
            "{name} never reached storage"
        );
    }
    // Each file went to storage once, plus at most the uploads in flight at each kill.
    let sent = mock.storage_seen().len();
    assert!(
        sent <= files.len() + 4 * kills,
        "{sent} storage requests for {} files and {kills} kills",
        files.len()
    );
}

/// `--skip-existing` asks `hashup serve`'s listings (`GET /data` and `GET /data/<group>`, as
/// PROMINENCE answers them, with the store's SHA-256 of each object): files stored with the
/// same name and SHA-256 are skipped even with no manifest to say so; a new file, one whose
/// size changed and one changed with the same size are sent.
#[test]
fn skip_existing_trusts_the_api_listing_for_name_and_sha256() {
    use crate::serve::fixture::{Backend, Serve};
    let serve = Serve::start(Backend::Store);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[("a.sif", b"aaaa"), ("b.sif", b"bbbb"), ("c.sif", b"cccc")],
    );
    let solo = dir.path().join("solo.sif");
    std::fs::write(&solo, b"solo").unwrap();
    let token = [("PROMINENCE_TOKEN", serve.alice.as_str())];
    let run = |paths: &[&Path], manifest: &str, extra: &[&str]| {
        let manifest = dir.path().join(manifest);
        let mut args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        args.extend([
            "--url",
            serve.api.as_str(),
            "--progress",
            "none",
            "--manifest",
            manifest.to_str().unwrap(),
        ]);
        args.extend(extra);
        let run = util::hashup(["upload"])
            .args(&args)
            .envs(token)
            .home(dir.path())
            .run();
        (run, read_manifest(&manifest))
    };

    let (first, _) = run(&[&src], "first.jsonl", &["--prefix", "g1"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let (solo_first, _) = run(&[&solo], "solo-first.jsonl", &[]);
    assert_eq!(solo_first.code, 0, "{}", solo_first.stderr);

    // Another machine (no manifest of the first runs): b.sif grew, c.sif changed with the
    // same size, d.sif is new.
    std::fs::write(src.join("b.sif"), b"bbbbb").unwrap();
    std::fs::write(src.join("c.sif"), b"CCCC").unwrap();
    std::fs::write(src.join("d.sif"), b"dddd").unwrap();
    let (second, (records, summary)) = run(
        &[&src],
        "second.jsonl",
        &["--prefix", "g1", "--skip-existing"],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let outcome: Vec<(&str, &str, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["error"].as_str(),
            )
        })
        .collect();
    const LISTED: &str = "already stored with this SHA-256 (listed by the destination)";
    let listed = Some(LISTED);
    assert_eq!(
        outcome,
        vec![
            ("g1/a.sif", "skipped", listed),
            ("g1/b.sif", "uploaded", None),
            ("g1/c.sif", "uploaded", None),
            ("g1/d.sif", "uploaded", None),
        ]
    );
    assert_eq!(summary["already_stored"], 1);
    assert_eq!(summary["uploaded"], 3);

    // A name without a group is checked against the user's own listing.
    let (solo_again, (records, _)) = run(&[&solo], "solo-again.jsonl", &["--skip-existing"]);
    assert_eq!(solo_again.code, 0, "{}", solo_again.stderr);
    assert_eq!(records[0]["status"], "skipped");
    assert_eq!(records[0]["error"], LISTED);
    assert!(
        solo_again.stderr.ends_with(
            "hashup: nothing to do: all 1 files are stored (the destination's listing agrees)\n"
        ),
        "{}",
        solo_again.stderr
    );
}
