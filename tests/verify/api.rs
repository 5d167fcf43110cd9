//! `hashup verify` through the PROMINENCE API (`hashup serve` on its embedded store) and with
//! `--embedded`, whose listings give each object's SHA-256 (compared, the files hashed through
//! the hash cache); through `hashup serve` on SeaweedFS, whose listings have names and sizes
//! only, as PROMINENCE's do: sizes are compared and the output says so. A removed object is
//! `MISSING`, a group the user may not list fails its names only, and a token the API refuses
//! stops the run with one message.

use std::path::Path;

use crate::serve::fixture::{Backend, Serve};
use crate::util::{self, Run, settle, tree};

const SIZE_ONLY: &str =
    "hashup: note: 2 checked by size only: the destination lists names and sizes, no checksums\n";

fn verify(src: &Path, api: &str, token: &str, home: &Path) -> Run {
    util::hashup(["verify".as_ref(), src.as_os_str()])
        .args(["--url", api])
        .env("PROMINENCE_TOKEN", token)
        .home(home)
        .run()
}

#[test]
fn through_serve_sha256s_are_compared_and_a_removed_object_is_missing() {
    let serve = Serve::start(Backend::Store);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // A name of alice's own, and one in her group g1.
    tree(&src, &[("a.sif", b"aaaa"), ("g1/b.sif", b"bbbbbb")]);
    // Old enough for the hash cache to keep what the upload hashed.
    settle(&src);
    let up = util::hashup(["upload".as_ref(), src.as_os_str()])
        .args(["--url", &serve.api, "--progress", "none"])
        .env("PROMINENCE_TOKEN", &serve.alice)
        .home(dir.path())
        .run();
    assert_eq!(up.code, 0, "{}", up.stderr);

    let r = verify(&src, &serve.api, &serve.alice, dir.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "a.sif: OK\ng1/b.sif: OK\n");
    assert_eq!(
        r.stderr,
        "hashup: 2 OK\nhashup: hashed 0 B (0 files read, 2 from the hash cache)\n"
    );

    // The object gone from the store, and a local file that grew.
    std::fs::remove_file(serve.object("uploads/alice/a.sif")).unwrap();
    std::fs::remove_file(serve.sidecar("uploads/alice/a.sif")).unwrap();
    std::fs::write(src.join("g1/b.sif"), b"bbbbbbb").unwrap();
    let r = verify(&src, &serve.api, &serve.alice, dir.path());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.sif: MISSING\ng1/b.sif: DIFFERS (size 7 ≠ 6)\n"
    );
    assert_eq!(
        r.stderr,
        "hashup: 0 OK, 1 MISSING, 1 DIFFERS\n\
         hashup: hashed 7 B (1 file read, 1 from the hash cache)\n\
         hashup: the upload command with --check-remote added sends what is missing or differs \
         again\n"
    );

    // bob is in no group: g1's listing is refused, which fails its names only.
    let r = verify(&src, &serve.api, &serve.bob, dir.path());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.sif: MISSING\n\
         g1/b.sif: FAILED (cannot list group g1: HTTP 403: Not authorized to access this path)\n"
    );

    // A token the API does not know: one message, nothing checked.
    let r = verify(&src, &serve.api, "nobody-knows-this-token", dir.path());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("hashup: the PROMINENCE API refused the token (HTTP 401"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("nobody-knows-this-token"));
}

#[test]
fn embedded_store_sha256s_are_compared_and_a_removed_object_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n"), ("sub/b.txt", b"world!\n")]);
    settle(&src);
    let store = dir.path().join("store");
    let run = |command: &str| {
        util::hashup([command.as_ref(), src.as_os_str()])
            .args(["--embedded".as_ref(), store.as_os_str()])
            .home(dir.path())
    };
    let up = run("upload").args(["--progress", "none"]).run();
    assert_eq!(up.code, 0, "{}", up.stderr);

    let r = run("verify").run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout_str(), "a.txt: OK\nsub/b.txt: OK\n");

    // The nested name is a group path: uploads/sub/b.txt.
    std::fs::remove_file(store.join("hashup/uploads/sub/b.txt")).unwrap();
    let r = run("verify").arg("--json").run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let (lines, summary) = super::json_lines(r.stdout_str());
    let view: Vec<(&str, &str, &str, Option<&str>)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["key"].as_str().unwrap(),
                l["status"].as_str().unwrap(),
                l["evidence"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("a.txt", "uploads/hashup/a.txt", "ok", Some("checksum")),
            ("sub/b.txt", "uploads/sub/b.txt", "missing", None),
        ]
    );
    assert_eq!(summary["missing"], 1);
    assert_eq!(summary["files_read"], 0);
}

/// `hashup serve` on SeaweedFS lists names, sizes and times, as PROMINENCE does: sizes are all
/// verify can compare, it says so once, and reads no file; a size that changed still DIFFERS.
#[tokio::test]
async fn through_a_listing_of_sizes_only_sizes_are_compared_and_said_once() {
    let weed = crate::serve::fixture::weed();
    let bucket = weed.fresh_bucket("verify-sizes").await;
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"aaaa"), ("g1/b.sif", b"bbbbbb")]);
    let (api, alice, home) = (
        serve.api.clone(),
        serve.alice.clone(),
        dir.path().to_owned(),
    );
    let hashup = move |command: &'static str, src: std::path::PathBuf| {
        let (api, alice, home) = (api.clone(), alice.clone(), home.clone());
        tokio::task::spawn_blocking(move || {
            util::hashup([command.as_ref(), src.as_os_str()])
                .args(["--url", &api])
                .env("PROMINENCE_TOKEN", &alice)
                .home(&home)
                .run()
        })
    };
    let up = hashup("upload", src.clone()).await.unwrap();
    assert_eq!(up.code, 0, "{}", up.stderr);
    let r = hashup("verify", src.clone()).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.sif: OK (size only)\ng1/b.sif: OK (size only)\n"
    );
    assert_eq!(r.stderr, format!("hashup: 2 OK\n{SIZE_ONLY}"));
    std::fs::write(src.join("g1/b.sif"), b"bbbbbbb").unwrap();
    let r = hashup("verify", src.clone()).await.unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.sif: OK (size only)\ng1/b.sif: DIFFERS (size 7 ≠ 6)\n"
    );
}
