//! A slow path (SeaweedFS behind `hashup::wan`'s proxy, capped at 4 MiB/s): an upload whose body
//! takes longer than `--stall-timeout` but never stops moving must arrive. reqwest's read
//! timeout, which hashup used as the stall timeout, fired on every such body (nothing is read
//! while a body goes up): a 5 GiB image at 80 MB/s could never be sent.

use std::time::{Duration, Instant};

use hashup::wan::{Config, Proxy};

use super::read_manifest;
use crate::serve::fixture::{WEED_KEY, WEED_SECRET, weed};
use crate::util::{self, pattern};

#[tokio::test]
async fn a_body_slower_than_the_stall_timeout_but_moving_arrives() {
    let weed = weed();
    let bucket = weed.fresh_bucket("slow").await;
    let to = weed.endpoint.trim_start_matches("http://").to_string();
    let mut config = Config::new(to);
    config.rate = Some(4 << 20);
    let proxy = Proxy::start(config).await.unwrap();
    let endpoint = format!("http://{}", proxy.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(proxy.run_until(async {
        let _ = stopped.await;
    }));

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 5 s at the cap; the last 4 MiB or so sit in the kernel's send buffer (tcp_wmem) once
    // the body is handed over, and drain in about 1 s, well within the stall timeout.
    let data = pattern(20 << 20);
    std::fs::write(src.join("image.sif"), &data).unwrap();
    let manifest = dir.path().join("m.jsonl");
    let command = util::hashup(["upload".as_ref(), src.as_os_str()])
        .args(["--s3", &format!("s3://{bucket}"), "--endpoint", &endpoint])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--stall-timeout", "2", "--retries", "0", "--no-cache"])
        .env("AWS_ACCESS_KEY_ID", WEED_KEY)
        .env("AWS_SECRET_ACCESS_KEY", WEED_SECRET)
        .home(dir.path());
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap();
    let took = started.elapsed();
    let _ = stop.send(());
    let _ = served.await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        took >= Duration::from_secs(4),
        "not through the 4 MiB/s cap: {took:?}"
    );
    let (records, _) = read_manifest(&manifest);
    assert_eq!(records[0]["status"], "uploaded");
    let (status, _, body) = weed.get(&bucket, "image.sif").await;
    assert_eq!(status, 200);
    assert!(body == data, "the stored bytes differ");
}
