//! Scale-out on a real SeaweedFS: four `--shard K/4` processes run side by side over one tree
//! (direct S3 mode), `hashup manifest merge` joins their manifests, and the result equals a
//! single run's manifest, with every object stored exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::serve::fixture::{WEED_KEY, WEED_SECRET, http, weed};
use crate::util::{self, pattern, tree_of};

/// Each record by name, without what differs between runs of the same files by nature
/// (`duration_ms`).
fn records_by_name(manifest: &Path) -> (BTreeMap<String, Value>, Value) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut records = BTreeMap::new();
    let mut summary = Value::Null;
    for line in text.lines() {
        let mut value: Value = serde_json::from_str(line).unwrap();
        if let Some(s) = value.get("summary") {
            summary = s.clone();
            continue;
        }
        // When: the run's timing, and the store's clock at its answer.
        value.as_object_mut().unwrap().remove("duration_ms");
        value.as_object_mut().unwrap().remove("stored_at");
        records.insert(value["name"].as_str().unwrap().to_string(), value);
    }
    (records, summary)
}

#[tokio::test]
async fn four_shards_merged_equal_one_run() {
    let weed = weed();
    let bucket = weed.fresh_bucket("shards").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: Vec<(String, Vec<u8>)> = (0..48)
        .map(|i| {
            (
                format!("set{}/img-{i:02}.sif", i % 5),
                pattern(300 + i * 101),
            )
        })
        .collect();
    tree_of(&src, &files);
    let env = [
        ("AWS_ACCESS_KEY_ID", WEED_KEY),
        ("AWS_SECRET_ACCESS_KEY", WEED_SECRET),
        ("AWS_ENDPOINT_URL", weed.endpoint.as_str()),
    ];
    let command = |prefix: &str, manifest: &Path, extra: &[&str]| {
        let s3 = format!("s3://{bucket}/{prefix}");
        let mut args = vec![
            src.to_str().unwrap(),
            "--s3",
            &s3,
            "--manifest",
            manifest.to_str().unwrap(),
            "--progress",
            "none",
        ];
        args.extend(extra);
        let mut command = util::hashup(["upload"])
            .args(&args)
            .envs(env)
            .home(dir.path())
            .command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };

    // One run over everything.
    let single = dir.path().join("single.jsonl");
    let out = command("single", &single, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Four shards at once, as four machines would run them (two read K from the environment).
    let shard_manifests: Vec<_> = (0..4)
        .map(|k| dir.path().join(format!("shard-{k}.jsonl")))
        .collect();
    let children: Vec<_> = (0..4)
        .map(|k| {
            let spec = format!("{k}/4");
            let mut command = if k % 2 == 0 {
                command("sharded", &shard_manifests[k], &["--shard", &spec])
            } else {
                let mut c = command("sharded", &shard_manifests[k], &["--shard", "auto/4"]);
                c.env("HASHUP_SHARD_INDEX", k.to_string());
                c
            };
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let per_shard: Vec<usize> = shard_manifests
        .iter()
        .map(|m| records_by_name(m).0.len())
        .collect();
    assert_eq!(
        per_shard.iter().sum::<usize>(),
        files.len(),
        "{per_shard:?}"
    );
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");

    // The list every name should be in: what a dry run would upload.
    let list = dir.path().join("all.sha256");
    let dry = util::hashup(["upload", src.to_str().unwrap(), "--dry-run"])
        .home(dir.path())
        .run();
    assert_eq!(dry.code, 0);
    std::fs::write(&list, &dry.stdout).unwrap();

    let merged = dir.path().join("merged.jsonl");
    let run = util::hashup(["manifest", "merge"])
        .args(&shard_manifests)
        .arg("--expect")
        .arg(&list)
        .arg("-o")
        .arg(&merged)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);

    let (single_records, single_summary) = records_by_name(&single);
    let (merged_records, merged_summary) = records_by_name(&merged);
    assert_eq!(merged_records, single_records);
    for field in ["files", "uploaded", "failed", "skipped", "bytes"] {
        assert_eq!(merged_summary[field], single_summary[field], "{field}");
    }
    assert_eq!(merged_summary["uploaded"], files.len());

    // The shards' prefix holds exactly the files, each with its bytes and checksum.
    let url = weed.presign("GET", &format!("/{bucket}?list-type=2&prefix=sharded%2F"));
    let listing = http().get(url).send().await.unwrap().text().await.unwrap();
    assert_eq!(listing.matches("<Key>").count(), files.len(), "{listing}");
    for (name, data) in &files {
        let (status, meta, body) = weed.get(&bucket, &format!("sharded/{name}")).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(&body, data, "{name}");
        assert_eq!(
            meta.as_deref(),
            single_records[name]["sha256"].as_str(),
            "{name}"
        );
    }
}
