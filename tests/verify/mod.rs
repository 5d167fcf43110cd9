//! `hashup verify`, run as a binary after `hashup upload`: in direct S3 mode on a real SeaweedFS
//! (HEAD per object: size, `prominence_sha256`, the stored checksum, composites of multipart
//! objects), and through the PROMINENCE API of `hashup serve` and `--embedded` (sizes only).

mod api;
mod heal;
mod s3;

use serde_json::Value;

/// `--json` output: the object lines, and the summary (which must be the last line).
pub fn json_lines(stdout: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    assert!(summary.is_object(), "last line is not a summary: {stdout}");
    (lines, summary)
}

/// Usage and configuration problems stop the run before any request (exit 2).
#[test]
fn bad_usage_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let verify = |args: &[&str]| {
        crate::util::hashup(["verify"])
            .args(args)
            // Nothing listens on port 9: a request would fail differently.
            .args(["--endpoint", "http://127.0.0.1:9"])
            .env("AWS_ACCESS_KEY_ID", "AKID")
            .env("AWS_SECRET_ACCESS_KEY", "SECRET")
            .home(dir.path())
            .run()
    };
    let missing = dir.path().join("none.jsonl");
    let r = verify(&["--s3", "s3://b/p", "--manifest", missing.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "hashup: --manifest: {}: No such file or directory\n",
            missing.display()
        )
    );
    let r = verify(&["--s3", "s3://b/p", "--manifest", "m", "--include", "*.sif"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "hashup: selection and naming flags choose and name local files: give PATHs with them \
         (without PATHs, what --manifest records is checked as recorded)\n"
    );
    let r = verify(&["--s3", "s3://b/p"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("error: the following required arguments"),
        "{}",
        r.stderr
    );
}
