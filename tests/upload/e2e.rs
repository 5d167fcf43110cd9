//! End to end on real servers: `hashup serve` on its embedded store and on SeaweedFS, and
//! `--embedded`. Every object must arrive with its bytes and its `prominence_sha256`, and the
//! manifest must say exactly what happened.

use std::path::Path;

use serde_json::Value;

use super::{expected_uploaded, read_manifest};
use crate::serve::fixture::{Backend, Serve, sha256_hex, weed};
use crate::util::{self, pattern, tree};

/// A flat tree (alice may only upload nested names into her groups): a small file, one large
/// enough to be hashed through a mapping and sent in many chunks, and an empty one.
fn flat_tree(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("a.txt", b"hello\n".to_vec()),
        ("big.bin", pattern((5 << 20) + 7)),
        ("empty", Vec::new()),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    tree(root, &refs);
    files
}

/// An object in the embedded store holds `data`, and its sidecar records the SHA-256
/// both as verified by the store and as `prominence_sha256` metadata.
fn assert_stored(object: &Path, sidecar: &Path, data: &[u8]) {
    assert_eq!(std::fs::read(object).unwrap(), data, "{}", object.display());
    let sidecar: Value = serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(sidecar["sha256"], sha256_hex(data));
    assert!(
        sidecar["metadata"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["prominence_sha256", sha256_hex(data)])),
        "{sidecar}"
    );
}

fn check_manifest(manifest: &Path, src: &Path, files: &[(&str, Vec<u8>)], http: u16) {
    let (records, summary) = read_manifest(manifest);
    assert_eq!(records.len(), files.len());
    let mut names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    names.sort();
    for (record, name) in records.iter().zip(names) {
        let expected = expected_uploaded(&src.join(name), &format!("g1/{name}"), http, 1, record);
        assert_eq!(record, &expected);
    }
    let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(summary["files"], files.len());
    assert_eq!(summary["uploaded"], files.len());
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["skipped"], 0);
    assert_eq!(summary["bytes"], bytes);
    assert_eq!(summary["stopped"], Value::Null);
}

#[test]
fn through_serve_on_the_embedded_store() {
    let serve = Serve::start(Backend::Store);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = flat_tree(&src);
    let manifest = dir.path().join("manifest.jsonl");

    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--url".as_ref(),
            serve.api.as_ref(),
            "--prefix".as_ref(),
            "g1".as_ref(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ])
        .env("PROMINENCE_TOKEN", &serve.alice)
        .home(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout_str(), "");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "only the summary: {}",
        run.stderr
    );

    for (name, data) in &files {
        let key = format!("uploads/g1/{name}");
        assert_stored(&serve.object(&key), &serve.sidecar(&key), data);
    }
    check_manifest(&manifest, &src, &files, 204);
}

#[tokio::test]
async fn through_serve_on_seaweedfs() {
    let weed = weed();
    let bucket = weed.fresh_bucket("upload").await;
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = flat_tree(&src);
    let manifest = dir.path().join("manifest.jsonl");
    // The token from a file, PROMINENCE-CLI style JSON; the URL from the environment.
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        serde_json::json!({"access_token": serve.alice}).to_string(),
    )
    .unwrap();

    let (src2, manifest2, token_file2, home, api) = (
        src.clone(),
        manifest.clone(),
        token_file.clone(),
        dir.path().to_path_buf(),
        serve.api.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        util::hashup(["upload"])
            .args([
                src2.as_os_str(),
                "--token-file".as_ref(),
                token_file2.as_os_str(),
                "--prefix".as_ref(),
                "g1".as_ref(),
                "--manifest".as_ref(),
                manifest2.as_os_str(),
                "--progress".as_ref(),
                "none".as_ref(),
            ])
            .env("PROMINENCE_URL", &api)
            .home(&home)
            .run()
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);

    for (name, data) in &files {
        let (status, meta, body) = weed.get(&bucket, &format!("uploads/g1/{name}")).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(meta.as_deref(), Some(sha256_hex(data).as_str()), "{name}");
        assert_eq!(&body, data, "{name}");
    }
    check_manifest(&manifest, &src, &files, 204);
}

#[test]
fn embedded_needs_nothing_but_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let big = pattern(300_000);
    tree(&src, &[("a.txt", b"hello\n"), ("sub/deeper/b.bin", &big)]);
    let store = dir.path().join("store");

    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--embedded".as_ref(),
            store.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ])
        .home(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout_str(), "");
    // PROMINENCE's key layout: a plain name is the user's, a nested one a group path.
    for (key, data) in [
        ("uploads/hashup/a.txt", &b"hello\n"[..]),
        ("uploads/sub/deeper/b.bin", &big[..]),
    ] {
        assert_stored(
            &store.join("hashup").join(key),
            &store.join(".hashup/meta/hashup").join(key),
            data,
        );
    }
}

#[test]
fn dry_run_prints_names_and_touches_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n"), ("sub/b.txt", b"world\n")]);
    // No URL and no token: a dry run needs neither.
    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "--dry-run".as_ref(),
            "--prefix".as_ref(),
            "p".as_ref(),
        ])
        .home(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout_str(),
        format!(
            "{}  p/a.txt\n{}  p/sub/b.txt\n",
            sha256_hex(b"hello\n"),
            sha256_hex(b"world\n")
        )
    );
    assert_eq!(run.stderr, "");
}
