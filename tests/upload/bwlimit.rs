//! `--bwlimit`: one cap shared by every file and part in flight, held through the WAN proxy
//! (20 ms away) to SeaweedFS. 64 MB at 8 MiB/s (8M, as rclone reads it) is 7.63 s, and the
//! whole run must take that ± 10 %, its own start, hashing and requests included. Without the
//! cap the same files take 1-3 s here, so the lower bound fails for a cap that is not applied;
//! the upper one fails for a cap applied per file or per part (several times slower) or for
//! waits the adaptive limit mistook for push-back.

use std::path::Path;
use std::time::{Duration, Instant};

use hashup::wan::{Config, Proxy};

use super::read_manifest;
use crate::serve::fixture::{WEED_KEY, WEED_SECRET, Weed, weed};
use crate::util::{self, pattern};

/// 64 MB at 8 MiB/s.
const EXPECTED: f64 = 64e6 / (8 << 20) as f64;

/// Writes `count` files of `size` bytes into a new `src` under `dir`; its path.
fn tree(dir: &Path, count: usize, size: usize) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = pattern(size);
    for i in 0..count {
        std::fs::write(src.join(format!("f{i:03}")), &data).unwrap();
    }
    src
}

/// Runs `hashup upload SRC --s3 s3://TO --endpoint ENDPOINT` with `extra`; the run and its wall
/// time, once it has exited 0 with no file failed, and its manifest's summary.
async fn timed_run(
    endpoint: &str,
    src: &Path,
    to: &str,
    extra: &[&str],
) -> (util::Run, Duration, serde_json::Value) {
    let manifest = src.parent().unwrap().join("m.jsonl");
    let command = util::hashup(["upload".as_ref(), src.as_os_str()])
        .args(["--s3", &format!("s3://{to}"), "--endpoint", endpoint])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--no-cache", "--progress", "log", "--progress-every", "1"])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", WEED_KEY)
        .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET)
        .home(src.parent().unwrap());
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, summary) = read_manifest(&manifest);
    assert_eq!(summary["failed"], 0, "{summary}");
    (run, took, summary)
}

/// Sends `src` through a proxy 20 ms from SeaweedFS to `BUCKET` with `--bwlimit 8M` and
/// `extra`; the run, after asserting that it took 7.63 s ± 10 %.
async fn capped(weed: &Weed, src: &Path, bucket: &str, extra: &[&str]) -> util::Run {
    let mut config = Config::new(weed.endpoint.trim_start_matches("http://"));
    config.rtt = Duration::from_millis(20);
    let proxy = Proxy::start(config).await.unwrap();
    let extra = [extra, &["--bwlimit", "8M"]].concat();
    let endpoint = format!("http://{}", proxy.local_addr());
    let (run, took, summary) = timed_run(&endpoint, src, bucket, &extra).await;
    assert_eq!(summary["bytes"], 64_000_000u64, "{summary}");
    let took = took.as_secs_f64();
    eprintln!("64 MB in {took:.2} s under --bwlimit 8M (expected {EXPECTED:.2} s)");
    assert!(
        (EXPECTED * 0.9..=EXPECTED * 1.1).contains(&took),
        "64 MB took {took:.2} s under --bwlimit 8M, not {EXPECTED:.2} s ± 10 %"
    );
    run
}

#[tokio::test]
async fn many_small_files_share_one_cap_and_the_limit_does_not_collapse() {
    let weed = weed();
    let bucket = weed.fresh_bucket("bwsmall").await;
    let dir = tempfile::tempdir().unwrap();
    // 250 files of 256,000 bytes: more than auto's starting limit of 128, so it probes.
    let src = tree(dir.path(), 250, 256_000);
    let run = capped(weed, &src, &bucket, &["--uploads", "auto"]).await;
    assert_eq!(weed.objects(&bucket).await.len(), 250);
    // Every progress line shows the cap, and the limit never fell below where auto starts.
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" files ("))
        .collect();
    assert!(lines.len() >= 5, "{}", run.stderr);
    for line in &lines {
        assert!(
            line.contains(", capped at 8.4 MB/s (--bwlimit 8M)"),
            "{line}"
        );
        let limit: usize = line
            .split(", up to ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no limit in {line:?}"));
        assert!(limit >= hashup::limit::AUTO_START, "{line}");
    }
}

#[tokio::test]
async fn one_big_file_in_parts_shares_one_cap() {
    let weed = weed();
    let bucket = weed.fresh_bucket("bwbig").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = pattern(64_000_000);
    std::fs::write(src.join("image.sif"), &data).unwrap();
    let extra = ["--multipart-threshold", "16MiB", "--part-size", "8MiB"];
    capped(weed, &src, &bucket, &extra).await;
    let (status, _, body) = weed.get(&bucket, "image.sif").await;
    assert_eq!(status, 200);
    assert!(body == data, "the stored bytes differ");
}

/// A request's deadline is its connect and stall timeouts plus its bytes at 64 KiB/s: here
/// 1 + 2 + 1 = 4 s for each 64 KiB file. 96 of them at 1 MiB/s take 6 s, and the last ones
/// wait for the cap longer than their deadline; the wait is the run's own, so none may time
/// out, nor be tried again.
#[tokio::test]
async fn waiting_for_the_cap_is_not_held_against_a_requests_deadline() {
    let weed = weed();
    let bucket = weed.fresh_bucket("bwdeadline").await;
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path(), 96, 64 << 10);
    let extra = ["--bwlimit", "1M", "--uploads", "96", "--retries", "0"];
    let timeouts = ["--connect-timeout", "1", "--stall-timeout", "2"];
    let (_, took, summary) = timed_run(
        &weed.endpoint,
        &src,
        &bucket,
        &[&extra[..], &timeouts].concat(),
    )
    .await;
    assert!(took >= Duration::from_secs(5), "not capped: {took:?}");
    assert_eq!(summary["uploaded"], 96, "{summary}");
    let (records, _) = read_manifest(&dir.path().join("m.jsonl"));
    assert!(records.iter().all(|r| r["status"] == "uploaded"));
    assert_eq!(weed.objects(&bucket).await.len(), 96);
}
