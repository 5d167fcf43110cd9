//! A file truncated and restored, over and over, while hashup hashes it through a
//! memory mapping: the process must never die of SIGBUS, and any checksum it prints
//! must be the checksum of content the file really had.
//!
//! The mutator truncates the file to a random page boundary `k`, then writes the
//! original tail back from `k`. The kernel extends a file page by page, so at every
//! moment the file holds a prefix of the original content whose length is `SIZE` or a
//! page multiple no smaller than the smallest `k` so far. A printed checksum must be
//! the SHA-256 of one of those prefixes; anything else is a hash of garbage (the zero
//! pages the SIGBUS guard maps in, or a mix of states).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::fixture::{Rng, Tree};
use crate::util::{self, wait_with_deadline};

/// Five of hashup's 16 MiB mapping windows, so faults land in any of them, while
/// the next window is being prefetched on the idle core.
const SIZE: usize = 80 << 20;
/// Runs of hashup; every `CONTROL`-th one is left alone and must succeed.
const RUNS: usize = 32;
const CONTROL: usize = 8;
/// Upper bound on truncate-and-restore cycles while one run is in flight.
const MAX_CYCLES: u64 = 3;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
}

/// Hex SHA-256 of every page-aligned prefix of `data` (and of all of it), with its length.
fn prefix_digests(data: &[u8], page: usize) -> HashMap<String, usize> {
    let mut digests = HashMap::new();
    let mut hasher = Sha256::new();
    digests.insert(hex::encode(hasher.clone().finalize()), 0);
    for (i, chunk) in data.chunks(page).enumerate() {
        hasher.update(chunk);
        digests.insert(
            hex::encode(hasher.clone().finalize()),
            i * page + chunk.len(),
        );
    }
    digests
}

#[derive(Debug, Default)]
struct Tally {
    full: usize,
    prefix: usize,
    changed: usize,
}

#[test]
fn truncating_a_mapped_file_never_kills_and_never_yields_a_wrong_checksum() {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    let page = page_size();
    let original = Rng::new(7).bytes(SIZE);
    let digests = prefix_digests(&original, page);

    let tree = Tree::new();
    tree.file("big", &original);
    let path = tree.path("big");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let shown = path.display().to_string();

    let mut mmap = Tally::default();
    let mut read = Tally::default();
    for run in 0..RUNS {
        let io = if run % 4 == 3 { "read" } else { "mmap" };
        let control = run % CONTROL == 0;
        let mut child = util::hashup(["hash", "--io", io])
            .arg(&path)
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

        // A few cycles at random moments: some land before hashup opens the file,
        // some while it reads, some (on odd runs) after it is done.
        let planned = if control {
            0
        } else {
            1 + rng.below(MAX_CYCLES)
        };
        let first_pause = if run % 2 == 0 { 2_000 } else { 150_000 };
        let mut shortest = SIZE;
        let mut cycles = 0;
        while cycles < planned && child.try_wait().unwrap().is_none() {
            let pause = if cycles == 0 { first_pause } else { 25_000 };
            std::thread::sleep(Duration::from_micros(rng.below(pause)));
            let k = rng.below((SIZE / page) as u64) as usize * page;
            file.set_len(k as u64).unwrap();
            shortest = shortest.min(k);
            std::thread::sleep(Duration::from_micros(rng.below(3_000)));
            file.write_all_at(&original[k..], k as u64).unwrap();
            cycles += 1;
        }

        let status = wait_with_deadline(&mut child, "hashup hash on a truncated file");
        // The outputs are one line at most, well within a pipe's buffer.
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let context = format!(
            "run {run} (--io {io}, {cycles} truncations, seed {seed}): \
             {status:?}, stdout {stdout:?}, stderr {stderr:?}"
        );
        assert_eq!(status.signal(), None, "killed by a signal: {context}");

        let tally = if io == "mmap" { &mut mmap } else { &mut read };
        match status.code() {
            Some(0) => {
                assert_eq!(stderr, "", "{context}");
                let (hex, name) = stdout
                    .strip_suffix('\n')
                    .and_then(|line| line.split_once("  "))
                    .unwrap_or_else(|| panic!("not one sha256sum line: {context}"));
                assert_eq!(name, shown, "{context}");
                let len = *digests
                    .get(hex)
                    .unwrap_or_else(|| panic!("checksum of content the file never had: {context}"));
                if len == SIZE {
                    tally.full += 1;
                } else {
                    assert!(
                        len >= shortest,
                        "checksum of a {len}-byte prefix, but the file was never cut below \
                         {shortest} bytes: {context}"
                    );
                    tally.prefix += 1;
                }
            }
            Some(1) => {
                assert_eq!(stdout, "", "{context}");
                assert_eq!(
                    stderr,
                    format!("hashup: {shown}: file changed while reading\n"),
                    "{context}"
                );
                assert!(!control, "nothing touched the file: {context}");
                tally.changed += 1;
            }
            _ => panic!("unexpected exit code: {context}"),
        }
        if control {
            assert_eq!(
                stdout,
                format!("{}  {shown}\n", hex::encode(Sha256::digest(&original)))
            );
        }
    }
    eprintln!("truncation loop: mmap {mmap:?}, read {read:?}");
    assert!(
        mmap.changed > 0,
        "no mapped run saw the file change; truncate harder ({mmap:?})"
    );
}
