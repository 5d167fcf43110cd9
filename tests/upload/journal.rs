//! The journal is the resume contract: a run whose manifest cannot be written must stop taking
//! files and say so in its exit status, never exit 0 with records missing.

use std::os::unix::process::CommandExt as _;

use super::read_manifest_lines;
use crate::util::{hashup, tree_of};

/// A manifest that stops growing at `limit` bytes, as on a full disk: the run is given a file
/// size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes past it fail with EFBIG). Objects
/// and the embedded store's files stay far below it.
fn limit_file_size(cmd: &mut std::process::Command, limit: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn an_unwritable_manifest_stops_the_run_and_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("f{i:03}"), format!("file {i}\n").into_bytes()))
        .collect();
    tree_of(&src, &files);
    let store = dir.path().join("store");
    let manifest = dir.path().join("manifest.jsonl");
    let mut cmd = hashup(["upload".as_ref(), src.as_os_str()])
        .args(["--embedded".as_ref(), store.as_os_str()])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--no-cache", "--uploads", "2"])
        .home(dir.path())
        .command();
    // About ten records fit (each is ~300 bytes).
    limit_file_size(&mut cmd, 3000);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr
            .matches("hashup: cannot write the manifest: File too large")
            .count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains("hashup: stopped: cannot write the manifest: File too large"),
        "{stderr}"
    );
    // What the journal holds is whole lines, each true of the store; and the run stopped
    // taking files soon after the journal failed instead of sending all 200.
    let records = read_manifest_lines(&manifest);
    assert!(
        !records.is_empty() && records.len() < 20,
        "{}",
        records.len()
    );
    let objects = std::fs::read_dir(store.join("hashup/uploads/hashup"))
        .unwrap()
        .count();
    assert!(objects >= records.len(), "{objects} < {}", records.len());
    assert!(
        objects < 40,
        "kept uploading after the journal failed: {objects}"
    );
}
