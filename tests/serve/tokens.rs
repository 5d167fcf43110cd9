//! The tokens file: identities whose private and group trees would overlap are refused at start.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hashup serve` on `tokens` and returns its stderr, failing if it does not exit (with an
/// error) within a few seconds.
fn serve_refuses(tokens: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, tokens.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashup"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&path)
        .arg("--store")
        .arg(dir.path().join("store"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hashup serve started with overlapping namespaces: {tokens}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_user_named_like_a_group_is_refused() {
    // User g1 would list, overwrite and delete group g1's uploads (both live in uploads/g1/).
    let stderr = serve_refuses(serde_json::json!({
        "t-alice": {"user": "alice", "groups": ["g1"]},
        "t-g1": {"user": "g1"},
    }));
    assert!(
        stderr.contains("\"g1\"") && stderr.contains("alice"),
        "{stderr}"
    );

    // User lab would list group lab/sub's uploads (uploads/lab/sub/ is inside uploads/lab/).
    let stderr = serve_refuses(serde_json::json!({
        "t-alice": {"user": "alice", "groups": ["lab/sub"]},
        "t-lab": {"user": "lab"},
    }));
    assert!(
        stderr.contains("\"lab\"") && stderr.contains("\"lab/sub\""),
        "{stderr}"
    );
}
