//! The record says what the store holds: a file deleted after its bytes went to a store that
//! verified them against their checksum is uploaded, not failed.

use std::time::{Duration, Instant};

use super::read_manifest;
use crate::serve::fixture::sha256_hex;
use crate::util::{self, pattern};

#[test]
fn a_file_deleted_while_it_is_sent_to_a_verifying_store_is_recorded_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = pattern(256 << 20);
    let file = src.join("image.sif");
    std::fs::write(&file, &data).unwrap();
    let store = dir.path().join("store");
    let manifest = dir.path().join("m.jsonl");
    let mut child = util::hashup(["upload"])
        .args([src.as_os_str(), "--embedded".as_ref(), store.as_os_str()])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--no-cache", "--progress", "none"])
        .home(dir.path())
        .command()
        .spawn()
        .unwrap();
    // Unlink the file once the store is receiving it: the open descriptor still reads the same
    // bytes, and the store checks them against the checksum.
    let tmp = store.join(".hashup/tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it was seen"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_file(&file).unwrap();
    let status = util::wait_with_deadline(&mut child, "hashup upload");
    assert_eq!(status.code(), Some(0));
    let (records, summary) = read_manifest(&manifest);
    assert_eq!(records[0]["status"], "uploaded", "{:?}", records[0]);
    assert_eq!(records[0]["sha256"], sha256_hex(&data));
    assert_eq!(summary["uploaded"], 1);
    let stored = std::fs::read(store.join("hashup/uploads/hashup/image.sif")).unwrap();
    assert!(stored == data, "the stored bytes differ");
}
