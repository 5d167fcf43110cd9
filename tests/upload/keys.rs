//! Files are planned by storage key, not by name: two files that would land on one key are
//! refused before anything is sent, and `--skip-existing` skips only on an exact key match.

use super::read_manifest;
use crate::serve::fixture::{Backend, Serve, http, weed};
use crate::util::{hashup, tree};

/// `--embedded` stores `x` as `uploads/hashup/x` (the run's user) and `hashup/x` as
/// `uploads/hashup/x` (group `hashup`): one object for two files. Refused, nothing sent.
#[test]
fn two_files_on_one_key_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("coll");
    tree(&src, &[("x", b"top"), ("hashup/x", b"nested")]);
    let store = dir.path().join("store");
    let run = hashup(["upload", src.to_str().unwrap()])
        .args(["--embedded", store.to_str().unwrap(), "--no-cache"])
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "hashup: {}: object name \"x\" is stored as \"uploads/hashup/x\", as {} (named \"hashup/x\") is\n\
             hashup: 1 unusable object name(s); nothing was uploaded\n",
            src.join("x").display(),
            src.join("hashup/x").display()
        )
    );
    assert!(
        !store.join("hashup/uploads").exists(),
        "something was stored"
    );
}

/// The user's own listing names `uploads/alice/g1/a.sif` as `g1/a.sif`; a local file named
/// `g1/a.sif` goes to group g1's `uploads/g1/a.sif`, which does not exist: it must be sent,
/// not skipped as "already stored".
#[test]
fn skip_existing_matches_keys_not_names() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let weed = weed();
    let bucket = runtime.block_on(weed.fresh_bucket("keys"));
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    let own = format!("/{bucket}/uploads/alice/g1/a.sif");
    let put = runtime.block_on(async {
        http()
            .put(weed.presign("PUT", &own))
            .body(&b"aaaa"[..])
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(put.is_success(), "{put}");

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"aaaa")]);
    let manifest = dir.path().join("m.jsonl");
    let run = hashup(["upload", src.to_str().unwrap(), "--url", &serve.api])
        .args(["--prefix", "g1", "--skip-existing", "--no-cache"])
        .args(["--manifest", manifest.to_str().unwrap()])
        .env("PROMINENCE_TOKEN", &serve.alice)
        .home(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (records, summary) = read_manifest(&manifest);
    assert_eq!(records[0]["status"], "uploaded", "{records:?}");
    assert_eq!(summary["already_stored"], 0);
    let (status, _, body) = runtime.block_on(weed.get(&bucket, "uploads/g1/a.sif"));
    assert_eq!((status, body.as_slice()), (200, &b"aaaa"[..]));
}
