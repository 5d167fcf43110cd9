//! `hashup upload --delete` (mirror deletes) on real stores: direct S3 mode on SeaweedFS, and
//! PROMINENCE mode through `hashup serve`. Objects no local file maps to go, and only those: not
//! objects outside the prefix, not names the selection would not take, not after a run in which
//! a file failed, not more than `--max-delete`; every deletion is journalled, and a deleted
//! object whose file comes back is sent again.
//!
//! The failed runs use real faults: a dangling symbolic link followed with `-L` (the walk
//! cannot read it, as it could not read an unreadable directory, which root can always read),
//! and a group the PROMINENCE user is not in (the API refuses the upload with 403). A DELETE
//! that fails on demand (the statuses queued for a name, then 204) is what no real server does
//! (`hashup serve` fails one only when its store does): a small in-test API ([`FaultyApi`])
//! does.

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use hashup::presign::s3::DirectS3;
use hashup::s3xml::ListBucketResult;
use serde_json::{Value, json};

use crate::serve::fixture::{
    Backend, Serve, WEED_KEY, WEED_SECRET, Weed, fields_of, http, post_form, sha256_hex, weed,
};
use crate::util::{self, Run, tree};

/// `hashup upload ARGS` on a blocking thread (the tests' runtime keeps serving), with `env`.
async fn hashup(args: Vec<OsString>, env: Vec<(&'static str, String)>, home: &Path) -> Run {
    let command = util::hashup(["upload"]).args(args).envs(env).home(home);
    tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap()
}

/// `hashup upload SRC --s3 LOCATION` on SeaweedFS with `manifest` and `extra` arguments.
async fn s3_upload(
    weed: &Weed,
    src: &Path,
    location: &str,
    manifest: &Path,
    extra: &[&str],
) -> Run {
    let mut args: Vec<OsString> = vec![
        src.into(),
        "--s3".into(),
        location.into(),
        "--endpoint".into(),
        weed.endpoint.clone().into(),
        "--manifest".into(),
        manifest.into(),
        "--progress".into(),
        "none".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let env = vec![
        ("AWS_ACCESS_KEY_ID", WEED_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", WEED_SECRET.to_string()),
    ];
    hashup(args, env, manifest.parent().unwrap()).await
}

/// Every key in `bucket`, sorted.
async fn keys(weed: &Weed, bucket: &str) -> Vec<String> {
    let url = weed.presign("GET", &format!("/{bucket}?list-type=2"));
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = ListBucketResult::parse(&r.text().await.unwrap()).unwrap();
    assert_eq!(page.next_page(), None, "one page is enough here");
    let mut keys: Vec<String> = page.contents.into_iter().map(|c| c.key).collect();
    keys.sort();
    keys
}

/// PUTs `key` into `bucket` directly (an object hashup did not write).
async fn put(weed: &Weed, bucket: &str, key: &str) {
    let url = weed.presign("PUT", &format!("/{bucket}/{key}"));
    let r = http().put(url).body("other").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// A multipart upload created in SeaweedFS and never completed.
struct Pending {
    s3: DirectS3,
    key: String,
    upload_id: String,
}

impl Pending {
    async fn create(weed: &Weed, bucket: &str, key: &str) -> Pending {
        let s3 = DirectS3::new(
            format!("s3://{bucket}").parse().unwrap(),
            Some(&weed.endpoint),
            "us-east-1",
            weed.credentials(),
        )
        .unwrap();
        let signed = s3
            .create_multipart(key, &sha256_hex(b"pending"), SystemTime::now())
            .unwrap();
        let mut request = http().post(&signed.url);
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let upload_id = text
            .split_once("<UploadId>")
            .and_then(|(_, rest)| rest.split_once("</UploadId>"))
            .unwrap()
            .0
            .to_string();
        Pending {
            s3,
            key: key.into(),
            upload_id,
        }
    }

    /// ListParts still knows the upload.
    async fn assert_open(&self) {
        let signed = self
            .s3
            .list_parts(&self.key, &self.upload_id, None, SystemTime::now())
            .unwrap();
        let r = http().get(&signed.url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

/// The manifest's `deleted` lines, by name (deletions run side by side).
fn deleted_lines(manifest: &Path) -> Vec<Value> {
    let mut lines: Vec<Value> = super::read_manifest_lines(manifest)
        .into_iter()
        .filter_map(|line| line.get("deleted").cloned())
        .collect();
    lines.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    lines
}

/// The last summary line's `delete` object, without its `elapsed_ms` (checked to be a number).
fn delete_summary(manifest: &Path) -> Value {
    let mut delete = super::read_manifest(manifest).1["delete"].clone();
    let elapsed = delete.as_object_mut().unwrap().remove("elapsed_ms");
    assert!(elapsed.is_some_and(|e| e.is_u64()), "{delete}");
    delete
}

/// The stderr lines that are not the closing summary.
fn said(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| !l.starts_with("hashup: 0 files") && !l.contains(" files, "))
        .collect()
}

#[tokio::test]
async fn s3_mirror_deletes_exactly_what_no_file_maps_to() {
    let weed = weed();
    let bucket = weed.fresh_bucket("mirror").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.sif", b"a"),
            ("b.sif", b"bb"),
            ("c.tar", b"ccc"),
            ("sub/d.sif", b"dddd"),
            ("sub/e.sif", b"eeeee"),
        ],
    );
    let manifest = dir.path().join("m.jsonl");
    let location = format!("s3://{bucket}/runs/1");
    let run = s3_upload(weed, &src, &location, &manifest, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Objects that are not this run's: a sibling prefix that starts alike, another prefix.
    put(weed, &bucket, "runs/10/x.sif").await;
    put(weed, &bucket, "other/y.sif").await;
    // A multipart upload in progress under the prefix is not an object: it is left alone.
    let pending = Pending::create(weed, &bucket, "runs/1/pending.sif").await;
    let all = [
        "other/y.sif",
        "runs/1/a.sif",
        "runs/1/b.sif",
        "runs/1/c.tar",
        "runs/1/sub/d.sif",
        "runs/1/sub/e.sif",
        "runs/10/x.sif",
    ];
    assert_eq!(keys(weed, &bucket).await, all);

    for gone in ["b.sif", "c.tar", "sub/e.sif"] {
        std::fs::remove_file(src.join(gone)).unwrap();
    }
    let sifs = ["--delete", "--include", "*.sif"];

    // A dry run lists what would go, and deletes nothing.
    let dry = [&sifs[..], &["--dry-run"]].concat();
    let run = s3_upload(weed, &src, &location, &manifest, &dry).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout_str(), "delete b.sif\ndelete sub/e.sif\n");
    assert_eq!(
        run.stderr,
        "hashup: 2 files left out: the manifests record them as uploaded\n"
    );
    assert_eq!(keys(weed, &bucket).await, all);

    // More than --max-delete: none go.
    let capped = [&sifs[..], &["--max-delete", "1"]].concat();
    let run = s3_upload(weed, &src, &location, &manifest, &capped).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        said(&run),
        ["hashup: --delete: 2 objects would be deleted, more than --max-delete 1; nothing deleted"]
    );
    assert_eq!(keys(weed, &bucket).await, all);
    assert_eq!(
        delete_summary(&manifest),
        json!({"found": 2, "deleted": 0, "failed": 0,
            "stopped": "2 objects would be deleted, more than --max-delete 1; nothing deleted"})
    );

    // The mirror: the two .sif objects go; c.tar stays (--include '*.sif' would not have taken
    // it), and so does everything outside runs/1/.
    let run = s3_upload(weed, &src, &location, &manifest, &sifs).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        said(&run),
        ["hashup: deleted b.sif", "hashup: deleted sub/e.sif"]
    );
    assert!(
        run.stderr.contains(" 2 skipped, 2 deleted in "),
        "the summary says it: {}",
        run.stderr
    );
    assert_eq!(
        keys(weed, &bucket).await,
        [
            "other/y.sif",
            "runs/1/a.sif",
            "runs/1/c.tar",
            "runs/1/sub/d.sif",
            "runs/10/x.sif"
        ]
    );
    pending.assert_open().await;
    let lines = deleted_lines(&manifest);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, (name, size)) in lines.iter().zip([("b.sif", 2), ("sub/e.sif", 5)]) {
        assert_eq!(line["name"], name);
        assert_eq!(line["key"], format!("runs/1/{name}"));
        assert_eq!(line["size"], size);
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert_eq!(line.get("error"), None);
    }
    assert_eq!(
        delete_summary(&manifest),
        json!({"found": 2, "deleted": 2, "failed": 0, "stopped": null})
    );

    // Without the filter, c.tar is this run's too.
    let run = s3_upload(weed, &src, &location, &manifest, &["--delete"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(said(&run), ["hashup: deleted c.tar"]);
    assert!(
        !keys(weed, &bucket)
            .await
            .contains(&"runs/1/c.tar".to_string())
    );

    // A deleted object whose file comes back is sent again: the journal no longer vouches for
    // it, though it once recorded it uploaded with this very SHA-256.
    tree(&src, &[("b.sif", b"bb")]);
    let run = s3_upload(weed, &src, &location, &manifest, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.starts_with("hashup: 3 files, 1 uploaded (2 B)"),
        "{run:?}"
    );
    assert!(
        keys(weed, &bucket)
            .await
            .contains(&"runs/1/b.sif".to_string())
    );

    // `hashup manifest summary` reads the deletions back and counts them: the last run sent
    // b.sif again; of the names, c.tar and sub/e.sif stay deleted.
    let run = util::hashup(["manifest", "summary"]).arg(&manifest).run();
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout_str().lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[0].contains(
            ": latest run: 3 files: 1 uploaded (2 B), 0 failed, 2 skipped (2 unchanged since \
             uploaded); finished in "
        ),
        "{run:?}"
    );
    assert!(
        lines[1].ends_with(": per name, over 5 runs: 3 stored (7 B), 0 failed, 2 deleted"),
        "{run:?}"
    );
}

#[tokio::test]
async fn s3_a_run_in_which_a_file_failed_deletes_nothing() {
    let weed = weed();
    let bucket = weed.fresh_bucket("mirror-failed").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"a"), ("b.sif", b"bb")]);
    let manifest = dir.path().join("m.jsonl");
    let location = format!("s3://{bucket}/p");
    let run = s3_upload(weed, &src, &location, &manifest, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");

    std::fs::remove_file(src.join("b.sif")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/hashup-test", src.join("dangling")).unwrap();
    let run = s3_upload(weed, &src, &location, &manifest, &["-L", "--delete"]).await;
    assert_eq!(run.code, 1, "the run's own code: {run:?}");
    assert_eq!(
        said(&run),
        [
            &format!(
                "hashup: {}: No such file or directory",
                src.join("dangling").display()
            )[..],
            "hashup: --delete: nothing deleted because 1 file failed",
        ]
    );
    assert_eq!(keys(weed, &bucket).await, ["p/a.sif", "p/b.sif"]);
    assert!(deleted_lines(&manifest).is_empty());
    assert_eq!(
        delete_summary(&manifest),
        json!({"found": 0, "deleted": 0, "failed": 0,
            "stopped": "nothing deleted because 1 file failed"})
    );

    // Once the walk reads everything, the same command deletes b.sif.
    std::fs::remove_file(src.join("dangling")).unwrap();
    let run = s3_upload(weed, &src, &location, &manifest, &["-L", "--delete"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(keys(weed, &bucket).await, ["p/a.sif"]);
}

#[tokio::test]
async fn partial_views_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"a")]);
    let refused = |extra: &[&str]| {
        let mut args: Vec<OsString> = vec![src.clone().into()];
        args.extend(["--embedded", "store", "--delete"].map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        let run = util::hashup(["upload"])
            .args(args)
            .current_dir(dir.path())
            .home(dir.path())
            .stdin("a.sif\n")
            .run();
        assert_eq!((run.code, run.stdout_str()), (2, ""), "{run:?}");
        run.stderr
    };
    let shard = refused(&["--shard", "0/2"]);
    assert!(
        shard.starts_with(
            "hashup: --delete cannot be used with --shard (of 2): a shard sees only its part of \
             the tree"
        ),
        "{shard}"
    );
    assert!(shard.contains("hashup manifest merge"), "{shard}");
    assert!(shard.contains("--previous"), "{shard}");
    assert!(
        refused(&["--files-from", "-"])
            .starts_with("hashup: --delete cannot be used with --files-from")
    );
    assert!(
        refused(&["--newer-than", "1d"])
            .starts_with("hashup: --delete cannot be used with --newer-than")
    );
    assert!(
        refused(&["--flatten", "--exclude", "tmp"]).starts_with("hashup: --delete with --flatten")
    );
    // Nothing was started or stored.
    assert!(!dir.path().join("store").exists());
    // --max-delete means nothing without --delete.
    let run = util::hashup(["upload", "--dry-run", "--max-delete", "5"])
        .arg(&src)
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--delete"), "{}", run.stderr);
}

#[tokio::test]
async fn prominence_mirror_deletes_through_the_api_and_not_after_a_refusal() {
    let serve = Serve::start(Backend::Store);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.sif", b"a"),
            ("b.sif", b"bb"),
            ("g1/x.sif", b"x"),
            ("g1/y.sif", b"yy"),
        ],
    );
    let manifest = dir.path().join("m.jsonl");
    let upload = |extra: &[&str]| {
        let mut args: Vec<OsString> = vec![
            src.clone().into(),
            "--url".into(),
            serve.api.clone().into(),
            "--manifest".into(),
            manifest.clone().into(),
            "--progress".into(),
            "none".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        hashup(
            args,
            vec![("PROMINENCE_TOKEN", serve.alice.clone())],
            dir.path(),
        )
    };
    let names = |listing: Vec<Value>| -> Vec<String> {
        listing
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    let run = upload(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Another user's object of the same name is not alice's to delete.
    let (status, answer) = serve
        .presign(&serve.bob, "b.sif", Some(&sha256_hex(b"bob")))
        .await;
    assert_eq!(status, 201);
    let url = answer["url"].as_str().unwrap();
    let (status, _) = post_form(url, &fields_of(&answer), b"bob").await;
    assert_eq!(status, 204);

    std::fs::remove_file(src.join("b.sif")).unwrap();
    std::fs::remove_file(src.join("g1/y.sif")).unwrap();
    let run = upload(&["--delete"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        said(&run),
        ["hashup: deleted b.sif", "hashup: deleted g1/y.sif"]
    );
    assert_eq!(names(serve.list("").await), ["a.sif"]);
    assert_eq!(names(serve.list("/g1").await), ["g1/x.sif"]);
    assert_eq!(
        std::fs::read(serve.object("uploads/bob/b.sif")).unwrap(),
        b"bob"
    );
    let lines = deleted_lines(&manifest);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["name"], "b.sif");
    assert_eq!(
        lines[0].get("key"),
        None,
        "alice's own key depends on her user name"
    );
    assert_eq!(lines[1]["key"], "uploads/g1/y.sif");

    // A file the API refuses (g2 is not alice's group): the run failed, nothing is deleted.
    std::fs::remove_file(src.join("a.sif")).unwrap();
    tree(&src, &[("g2/z.sif", b"z")]);
    let run = upload(&["--delete"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let said = said(&run);
    assert_eq!(said.len(), 2, "{run:?}");
    assert!(
        said[0].contains("g2/z.sif") && said[0].contains("HTTP 403"),
        "{run:?}"
    );
    assert_eq!(
        said[1],
        "hashup: --delete: nothing deleted because 1 file failed"
    );
    assert_eq!(names(serve.list("").await), ["a.sif"]);
}

/// The documented way to mirror a sharded upload: shards upload without `--delete`, their
/// manifests are merged, and one run over the whole tree trusting the merge sends nothing and
/// deletes what no file maps to.
#[tokio::test]
async fn s3_after_sharded_uploads_one_run_with_the_merged_manifest_mirrors() {
    let weed = weed();
    let bucket = weed.fresh_bucket("mirror-shards").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("f{i}.sif"), vec![b'0' + i as u8; i + 1]))
        .collect();
    crate::util::tree_of(&src, &files);
    let location = format!("s3://{bucket}/lib");
    for k in 0..2 {
        let manifest = dir.path().join(format!("shard-{k}.jsonl"));
        let shard = format!("{k}/2");
        let run = s3_upload(weed, &src, &location, &manifest, &["--shard", &shard]).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    let run = util::hashup(["manifest", "merge", "shard-0.jsonl", "shard-1.jsonl", "-o"])
        .arg("all.jsonl")
        .current_dir(dir.path())
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(keys(weed, &bucket).await.len(), 8);

    std::fs::remove_file(src.join("f2.sif")).unwrap();
    std::fs::remove_file(src.join("f5.sif")).unwrap();
    let manifest = dir.path().join("mirror.jsonl");
    let all = dir.path().join("all.jsonl");
    let extra = ["--previous", all.to_str().unwrap(), "--delete"];
    let run = s3_upload(weed, &src, &location, &manifest, &extra).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("6 files, 0 uploaded (0 B), 0 failed, 6 skipped, 2 deleted in "),
        "{run:?}"
    );
    let expected: Vec<String> = [0, 1, 3, 4, 6, 7]
        .iter()
        .map(|i| format!("lib/f{i}.sif"))
        .collect();
    assert_eq!(keys(weed, &bucket).await, expected);
}

/// A small in-test PROMINENCE API for what `hashup serve` cannot be made to do: fail a DELETE.
/// It lists `listing` as the user's own uploads and answers each `DELETE /data/<name>` with the
/// statuses queued for the name (then 204), recording the name and `Authorization` of each.
struct FaultyApi {
    listing: Value,
    answers: std::sync::Mutex<std::collections::HashMap<String, Vec<u16>>>,
    seen: std::sync::Mutex<Vec<(String, String)>>,
}

async fn faulty_api(api: std::sync::Arc<FaultyApi>) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new()
        .route(
            "/prominence/v1/data",
            axum::routing::get(|State(api): State<std::sync::Arc<FaultyApi>>| async move {
                axum::Json(api.listing.clone())
            }),
        )
        .route(
            "/prominence/v1/data/{*name}",
            axum::routing::delete(
                |State(api): State<std::sync::Arc<FaultyApi>>,
                 UrlPath(name): UrlPath<String>,
                 headers: HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    api.seen.lock().unwrap().push((name.clone(), auth));
                    let mut answers = api.answers.lock().unwrap();
                    let queued = answers.get_mut(&name).filter(|q| !q.is_empty());
                    let status = queued.map_or(204, |q| q.remove(0));
                    let body = json!({"error": format!("boom {status}")}).to_string();
                    (StatusCode::from_u16(status).unwrap(), body).into_response()
                },
            ),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/prominence/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_failed_deletion_is_retried_reported_journalled_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.sif", b"a")]);
    // a.sif is stored already, as an earlier manifest says: the run sends nothing.
    let previous = dir.path().join("previous.jsonl");
    let record = json!({
        "name": "a.sif", "path": "src/a.sif", "size": 1, "mtime": null,
        "sha256": sha256_hex(b"a"), "status": "uploaded", "http_status": 204, "attempts": 1,
        "error": null, "duration_ms": 1,
    });
    std::fs::write(&previous, format!("{record}\n")).unwrap();
    let api = std::sync::Arc::new(FaultyApi {
        listing: json!([
            {"name": "a.sif", "size": 1, "lastModified": "Tue, 25 Nov 2025 22:05:32 GMT"},
            {"name": "b.sif", "size": 2, "lastModified": "Tue, 25 Nov 2025 22:05:32 GMT"},
            {"name": "c.sif", "size": 3, "lastModified": "Tue, 25 Nov 2025 22:05:32 GMT"},
        ]),
        // b.sif: a 503 first, retried; c.sif: a 500 every time.
        answers: std::sync::Mutex::new(
            [("b.sif", vec![503]), ("c.sif", vec![500, 500])]
                .map(|(n, s)| (n.to_string(), s))
                .into(),
        ),
        seen: Default::default(),
    });
    let url = faulty_api(api.clone()).await;
    let manifest = dir.path().join("m.jsonl");
    let args: Vec<OsString> = [
        src.as_os_str(),
        "--url".as_ref(),
        url.as_ref(),
        "--previous".as_ref(),
        previous.as_os_str(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
        "--retries".as_ref(),
        "1".as_ref(),
        "--progress".as_ref(),
        "none".as_ref(),
        "--delete".as_ref(),
    ]
    .map(OsString::from)
    .to_vec();
    let run = hashup(args, vec![("PROMINENCE_TOKEN", "tok".into())], dir.path()).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        said(&run),
        [
            "hashup: deleted b.sif",
            "hashup: c.sif: not deleted: HTTP 500: boom 500",
        ]
    );
    assert!(
        run.stderr
            .contains(" 1 skipped, 1 deleted, 1 not deleted in "),
        "{run:?}"
    );
    let mut seen = api.seen.lock().unwrap().clone();
    seen.sort();
    let bearer = "Bearer tok".to_string();
    assert_eq!(
        seen,
        [
            ("b.sif".to_string(), bearer.clone()),
            ("b.sif".to_string(), bearer.clone()),
            ("c.sif".to_string(), bearer.clone()),
            ("c.sif".to_string(), bearer),
        ]
    );
    let lines = deleted_lines(&manifest);
    let errors: Vec<(&str, Option<&str>)> = lines
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["error"].as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            ("b.sif", None),
            ("c.sif", None),
            ("c.sif", Some("HTTP 500: boom 500"))
        ]
    );
    assert_eq!(
        delete_summary(&manifest),
        json!({"found": 2, "deleted": 1, "failed": 1, "stopped": null})
    );
}
