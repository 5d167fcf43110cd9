//! `hashup verify`: is every object really stored, with the size and SHA-256 it should have?
//! Answered from what the store says about each object, without downloading any.
//!
//! What is expected of an object ([`Expected`]) comes from a local file (hashed through the hash
//! cache, named as `hashup upload` names it) or from an upload manifest's record. What is stored
//! ([`Stored`]) comes from a [`Store`], the remote's lookups ([`crate::remote::Lookups`]): in
//! direct S3 mode a `HEAD` per object, through the PROMINENCE API its listings. [`compare`] turns the two into a [`Verdict`],
//! naming the [`Evidence`] an `OK` rests on:
//!
//! - [`Evidence::Checksum`]: the store's own digest of the bytes it holds is the file's
//!   SHA-256: S3's `x-amz-checksum-sha256` of a single upload, or the `sha256` that `hashup
//!   serve`'s store lists (and `prominence_sha256`, where present, is the same).
//! - [`Evidence::Composite`]: a multipart object keeps only a composite checksum
//!   (`base64(SHA-256 of the parts' SHA-256s)-N`); it equals the one the upload's manifest
//!   recorded for this file's SHA-256, or the one computed here from the file
//!   ([`composite`]).
//! - [`Evidence::Metadata`]: only `x-amz-meta-prominence_sha256` could be compared, which the
//!   uploader wrote (a multipart object cut in parts other than hashup's default ones, without
//!   a manifest to give its composite).
//! - [`Evidence::Size`]: only the size, where the destination can say nothing more: a
//!   PROMINENCE API lists names and sizes, no checksums.
//!
//! In direct S3 mode hashup always writes `prominence_sha256`, and workers that cache images
//! by SHA-256 read it: an object without it ([`Difference::NoSha256`]) was not written by
//! hashup and does not pass, even when its bytes match.
//!
//! [`run`] drives the lookups, many in flight under a [`Limiter`], and hands the results back in
//! input order.

pub mod composite;

pub use crate::remote::{Lookup, LookupError, Stored};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::future::BoxFuture;

use crate::limit::Limiter;
use crate::manifest::{Journal, Status};

/// What an object should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The object name (as `hashup upload` names it).
    pub name: String,
    /// Its storage key: `PREFIX/name` in direct S3 mode, `uploads/<user>/name` in the embedded
    /// store, the name through a PROMINENCE API (whose user is not known here).
    pub key: String,
    /// The local file, or the path a manifest recorded.
    pub path: Option<PathBuf>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content; `None` when not hashed (only sizes are compared then).
    pub sha256: Option<[u8; 32]>,
    /// The composite checksum a manifest recorded for a multipart upload of this content.
    pub composite: Option<String>,
}

/// What an `OK` rests on, strongest first (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Evidence {
    /// The store's own checksum of the bytes it holds.
    Checksum,
    /// A multipart object's composite checksum, as the upload's manifest recorded it.
    Composite,
    /// Only the `prominence_sha256` metadata.
    Metadata,
    /// Only the size.
    Size,
}

impl Evidence {
    /// The word `--json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Checksum => "checksum",
            Evidence::Composite => "composite",
            Evidence::Metadata => "prominence_sha256",
            Evidence::Size => "size",
        }
    }

    /// Every kind, strongest first.
    pub const ALL: [Evidence; 4] = [
        Evidence::Checksum,
        Evidence::Composite,
        Evidence::Metadata,
        Evidence::Size,
    ];
}

/// How a stored object differs from what was expected (expected first, stored second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Another size.
    Size {
        /// Expected.
        local: u64,
        /// Stored.
        stored: u64,
    },
    /// Another `prominence_sha256` (hex).
    Sha256 {
        /// Expected.
        local: String,
        /// Stored.
        stored: String,
    },
    /// The store's checksum of its bytes is not the expected SHA-256 (both base64).
    Checksum {
        /// Expected.
        local: String,
        /// Stored.
        stored: String,
    },
    /// A multipart object's composite checksum is not the one recorded or computed.
    Composite {
        /// Recorded or computed.
        local: String,
        /// Stored.
        stored: String,
    },
    /// The object carries no `prominence_sha256`: not written by hashup (direct S3 mode).
    NoSha256,
}

impl fmt::Display for Difference {
    /// `size 10 ≠ 12`, `sha256 1a2b3c4d.. ≠ 5e6f7a8b..`, `checksum …`, `composite …`: expected,
    /// then stored; checksums shown as hex where they decode, so they compare with `sha256`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Size { local, stored } => write!(f, "size {local} ≠ {stored}"),
            Difference::Sha256 { local, stored } => {
                write!(f, "sha256 {} ≠ {}", short(local), short(stored))
            }
            Difference::Checksum { local, stored } => write!(
                f,
                "checksum {} ≠ {}",
                short(&as_hex(local)),
                short(&as_hex(stored))
            ),
            Difference::Composite { local, stored } => {
                write!(
                    f,
                    "composite {} ≠ {}",
                    short_composite(local),
                    short_composite(stored)
                )
            }
            Difference::NoSha256 => write!(f, "no prominence_sha256: not written by hashup"),
        }
    }
}

/// The first 8 characters and `..` (the whole of a shorter text).
fn short(text: &str) -> String {
    match text.char_indices().nth(8) {
        Some((at, _)) => format!("{}..", &text[..at]),
        None => text.to_string(),
    }
}

/// A composite's start and its `-N`.
fn short_composite(text: &str) -> String {
    match text.rsplit_once('-') {
        Some((digest, parts)) => format!("{}-{parts}", short(&as_hex(digest))),
        None => short(text),
    }
}

/// A base64 SHA-256 as hex; anything else as it is.
fn as_hex(base64: &str) -> String {
    match BASE64.decode(base64) {
        Ok(bytes) if bytes.len() == 32 => hex::encode(bytes),
        _ => base64.to_string(),
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored as expected, on this evidence.
    Ok(Evidence),
    /// No such object.
    Missing,
    /// Stored, but not as expected.
    Differs(Difference),
    /// The store could not say (a request failed after its retries, or was refused).
    Failed(String),
    /// The local file could not be read: there is nothing to compare.
    Unreadable(String),
}

impl Verdict {
    /// The word `--json` uses: `ok`, `missing`, `differs`, `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Ok(_) => "ok",
            Verdict::Missing => "missing",
            Verdict::Differs(_) => "differs",
            Verdict::Failed(_) | Verdict::Unreadable(_) => "failed",
        }
    }
}

/// Compares what is expected with what is stored; see the module docs for the evidence.
pub fn compare(expected: &Expected, stored: &Stored) -> Verdict {
    if expected.size != stored.size {
        return Verdict::Differs(Difference::Size {
            local: expected.size,
            stored: stored.size,
        });
    }
    let Some(sha256) = expected.sha256 else {
        return Verdict::Ok(Evidence::Size);
    };
    let hex = hex::encode(sha256);
    let mut evidence = Evidence::Size;
    if let Some(meta) = &stored.sha256 {
        if !meta.eq_ignore_ascii_case(&hex) {
            return Verdict::Differs(Difference::Sha256 {
                local: hex,
                stored: meta.clone(),
            });
        }
        evidence = Evidence::Metadata;
    }
    match (&stored.checksum, &expected.composite) {
        (None, _) => {}
        (Some(checksum), composite) if composite::parts_of(checksum).is_some() => {
            match composite {
                Some(local) if local == checksum => evidence = Evidence::Composite,
                Some(local) => {
                    return Verdict::Differs(Difference::Composite {
                        local: local.clone(),
                        stored: checksum.clone(),
                    });
                }
                // Nothing to compare it with: the metadata (or the size) has to do.
                None => {}
            }
        }
        (Some(checksum), _) => {
            let local = BASE64.encode(sha256);
            if *checksum != local {
                return Verdict::Differs(Difference::Checksum {
                    local,
                    stored: checksum.clone(),
                });
            }
            evidence = Evidence::Checksum;
        }
    }
    if stored.with_metadata && stored.sha256.is_none() {
        return Verdict::Differs(Difference::NoSha256);
    }
    Verdict::Ok(evidence)
}

/// Fills in `expected`'s composite checksum where the store keeps one that no manifest
/// recorded: computed from the SHA-256 for one part, from the file for more ([`composite`]).
pub async fn complete_composite(expected: &mut Expected, lookup: &Result<Lookup, LookupError>) {
    let (Ok(Lookup::Found(stored)), None, Some(sha256)) =
        (lookup, &expected.composite, expected.sha256)
    else {
        return;
    };
    let Some(parts) = stored.checksum.as_deref().and_then(composite::parts_of) else {
        return;
    };
    if stored.size != expected.size {
        return;
    }
    expected.composite = match (parts, &expected.path) {
        (1, _) => Some(composite::one_part(&sha256)),
        (_, Some(path)) => {
            let (path, size) = (path.clone(), expected.size);
            tokio::task::spawn_blocking(move || composite::of_file(&path, size, &sha256, parts))
                .await
                .ok()
                .flatten()
        }
        (_, None) => None,
    };
}

/// One object's result, with what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The object name.
    pub name: String,
    /// Its storage key, when it has one.
    pub key: Option<String>,
    /// The local file, or the path a manifest recorded.
    pub path: Option<PathBuf>,
    /// The expected size, when known.
    pub size: Option<u64>,
    /// The expected SHA-256, when known.
    pub sha256: Option<[u8; 32]>,
    /// What the store said, when it had the object.
    pub stored: Option<Stored>,
    /// The outcome.
    pub verdict: Verdict,
}

impl Checked {
    /// The result of looking `expected` up.
    pub fn of(expected: Expected, lookup: Result<Lookup, String>) -> Checked {
        let (stored, verdict) = match lookup {
            Ok(Lookup::Found(stored)) => {
                let verdict = compare(&expected, &stored);
                (Some(stored), verdict)
            }
            Ok(Lookup::Missing) => (None, Verdict::Missing),
            Err(why) => (None, Verdict::Failed(why)),
        };
        Checked {
            name: expected.name,
            key: Some(expected.key),
            path: expected.path,
            size: Some(expected.size),
            sha256: expected.sha256,
            stored,
            verdict,
        }
    }

    /// An object that could not be looked up or compared at all.
    pub fn failed(name: String, path: Option<PathBuf>, verdict: Verdict) -> Checked {
        Checked {
            name,
            key: None,
            path,
            size: None,
            sha256: None,
            stored: None,
            verdict,
        }
    }
}

/// Where stored objects are looked up.
pub trait Store: Send + Sync {
    /// What is stored under `expected`'s key (or name).
    fn look<'a>(&'a self, expected: &'a Expected) -> BoxFuture<'a, Result<Lookup, LookupError>>;
}

impl Store for crate::remote::Lookups {
    fn look<'a>(&'a self, expected: &'a Expected) -> BoxFuture<'a, Result<Lookup, LookupError>> {
        crate::remote::Lookups::look(self, &expected.name, &expected.key)
    }
}

/// What [`run`] is fed, in the order results are wanted.
#[derive(Debug)]
pub enum Item {
    /// Look this object up and compare.
    Check(Expected),
    /// Decided already (a local file that could not be read, a name that cannot be used).
    Ready(Report),
}

/// What [`run`] hands back, in input order.
#[derive(Debug)]
pub enum Report {
    /// An object's result.
    Checked(Box<Checked>),
    /// A local entry left alone (a link not followed, a special file): a notice, not a result.
    Skipped(String),
}

/// A lookup whose failure dooms every other (credentials refused, no such bucket, the store
/// unreachable): what the store said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailed(pub String);

/// Drives the lookups: takes items in order, looks up to the limiter's limit of them up at once,
/// and calls `emit` with each result in input order until it returns `false` (its output went
/// away). `ceiling` is the most lookups that can ever be in flight; results wait for an earlier
/// one at most a few times that many. `Err` is a fatal lookup: the run stops at once.
pub async fn run(
    mut items: tokio::sync::mpsc::Receiver<Item>,
    store: Arc<dyn Store>,
    limiter: Arc<Limiter>,
    ceiling: usize,
    mut emit: impl FnMut(Report) -> bool,
) -> Result<(), StoreFailed> {
    let window = (4 * ceiling).max(4096) as u64;
    // The adaptive limit learns from files per second; HEADs move no file bytes.
    let controller = tokio::spawn(limiter.clone().control(None, None));
    let result = async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut waiting: BTreeMap<u64, Report> = BTreeMap::new();
        let (mut taken, mut given) = (0u64, 0u64);
        let mut open = true;
        let mut slot = None;
        loop {
            while let Some(report) = waiting.remove(&given) {
                given += 1;
                if !emit(report) {
                    return Ok(());
                }
            }
            let room = open && taken - given < window;
            tokio::select! {
                joined = tasks.join_next(), if !tasks.is_empty() => {
                    let Some(joined) = joined else { continue };
                    let (seq, expected, lookup): (u64, Expected, Result<Lookup, LookupError>) =
                        joined.expect("a lookup task does not panic");
                    let lookup = match lookup {
                        Err(LookupError::Fatal(why)) => return Err(StoreFailed(why)),
                        Err(LookupError::Failed(why)) => Err(why),
                        Ok(found) => Ok(found),
                    };
                    waiting.insert(seq, Report::Checked(Box::new(Checked::of(expected, lookup))));
                }
                taken_slot = limiter.acquire(), if room && slot.is_none() => slot = Some(taken_slot),
                item = items.recv(), if room && slot.is_some() => {
                    let Some(item) = item else {
                        open = false;
                        continue;
                    };
                    let seq = taken;
                    taken += 1;
                    match item {
                        Item::Ready(report) => {
                            waiting.insert(seq, report);
                        }
                        Item::Check(expected) => {
                            let slot = slot.take();
                            let store = store.clone();
                            tasks.spawn(async move {
                                let mut expected = expected;
                                let lookup = store.look(&expected).await;
                                drop(slot);
                                complete_composite(&mut expected, &lookup).await;
                                (seq, expected, lookup)
                            });
                        }
                    }
                }
                else => return Ok(()),
            }
        }
    }
    .await;
    controller.abort();
    result
}

/// An object a manifest records as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The object name.
    pub name: String,
    /// The local path it was uploaded from.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex, as recorded).
    pub sha256: String,
    /// A multipart upload's composite checksum, if one was recorded for this content.
    pub composite: Option<String>,
}

/// What a manifest says is stored: each name's latest record, where it is `uploaded` (or
/// `skipped` as already stored with a SHA-256), sorted by name; and how many names it leaves out
/// because their latest record says `failed` (or has no size or SHA-256).
pub fn recorded(journal: &Journal) -> (Vec<Recorded>, usize) {
    let composites = composites(journal);
    let mut stored = Vec::new();
    let mut left_out = 0;
    for record in journal.latest().into_values() {
        let (Status::Uploaded | Status::Skipped, Some(size), Some(sha256)) =
            (record.status, record.size, &record.sha256)
        else {
            // A skip without a checksum is a link or a special file: nothing to check.
            if record.status != Status::Skipped || record.sha256.is_some() {
                left_out += 1;
            }
            continue;
        };
        stored.push(Recorded {
            name: record.name.clone(),
            path: record.path.clone(),
            size,
            sha256: sha256.clone(),
            composite: composites
                .get(&(record.name.clone(), sha256.clone()))
                .cloned(),
        });
    }
    (stored, left_out)
}

/// The composite checksums a manifest recorded, by name and SHA-256 (hex): a later run that
/// skipped the file as already stored records none, so every uploaded record counts.
pub fn composites(journal: &Journal) -> HashMap<(String, String), String> {
    journal
        .records
        .iter()
        .filter(|r| r.status == Status::Uploaded)
        .filter_map(|r| {
            let composite = r.checksum_sha256_composite.clone()?;
            Some(((r.name.clone(), r.sha256.clone()?), composite))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Record;

    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn digest(hex: &str) -> [u8; 32] {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    fn expected(size: u64, sha256: Option<&str>, composite: Option<&str>) -> Expected {
        Expected {
            name: "a".into(),
            key: "p/a".into(),
            path: None,
            size,
            sha256: sha256.map(digest),
            composite: composite.map(str::to_string),
        }
    }

    /// What a `HEAD` answers (user metadata included).
    fn stored(size: u64, sha256: Option<&str>, checksum: Option<&str>) -> Stored {
        Stored {
            size,
            sha256: sha256.map(str::to_string),
            checksum: checksum.map(str::to_string),
            with_metadata: true,
        }
    }

    /// What a listing gives: a size, and the store's SHA-256 where it lists one.
    fn listed(size: u64, checksum: Option<&str>) -> Stored {
        Stored {
            size,
            checksum: checksum.map(str::to_string),
            ..Stored::default()
        }
    }

    #[test]
    fn the_strongest_evidence_is_named() {
        let b64 = BASE64.encode(digest(HELLO));
        let want = expected(6, Some(HELLO), None);
        assert_eq!(
            compare(&want, &stored(6, Some(HELLO), Some(&b64))),
            Verdict::Ok(Evidence::Checksum)
        );
        // A listing's SHA-256 is the store's own.
        assert_eq!(
            compare(&want, &listed(6, Some(&b64))),
            Verdict::Ok(Evidence::Checksum)
        );
        // Metadata in capitals is the same hex.
        assert_eq!(
            compare(&want, &stored(6, Some(&HELLO.to_uppercase()), None)),
            Verdict::Ok(Evidence::Metadata)
        );
        // A listing of names and sizes: the size is all there is.
        assert_eq!(
            compare(&want, &listed(6, None)),
            Verdict::Ok(Evidence::Size)
        );
        // A composite without a recorded one to compare: the metadata decides.
        assert_eq!(
            compare(&want, &stored(6, Some(HELLO), Some("Zm9v-3"))),
            Verdict::Ok(Evidence::Metadata)
        );
        let recorded = expected(6, Some(HELLO), Some("Zm9v-3"));
        assert_eq!(
            compare(&recorded, &stored(6, Some(HELLO), Some("Zm9v-3"))),
            Verdict::Ok(Evidence::Composite)
        );
        // Not hashed (the API's listing): the size alone.
        assert_eq!(
            compare(&expected(6, None, None), &stored(6, None, None)),
            Verdict::Ok(Evidence::Size)
        );
    }

    #[test]
    fn every_difference_is_caught_and_said() {
        let other = "0".repeat(64);
        let want = expected(6, Some(HELLO), None);
        let says = |v: Verdict| match v {
            Verdict::Differs(d) => d.to_string(),
            v => panic!("{v:?}"),
        };
        assert_eq!(
            says(compare(&want, &stored(7, Some(HELLO), None))),
            "size 6 ≠ 7"
        );
        assert_eq!(
            says(compare(&want, &stored(6, Some(&other), None))),
            "sha256 5891b5b5.. ≠ 00000000.."
        );
        // The metadata matches, the bytes do not.
        let zeros = BASE64.encode([0u8; 32]);
        assert_eq!(
            says(compare(&want, &stored(6, Some(HELLO), Some(&zeros)))),
            "checksum 5891b5b5.. ≠ 00000000.."
        );
        assert_eq!(
            says(compare(&want, &listed(6, Some("not base64")))),
            "checksum 5891b5b5.. ≠ not base.."
        );
        let recorded = expected(6, Some(HELLO), Some(&format!("{zeros}-3")));
        let b64 = BASE64.encode(digest(HELLO));
        assert_eq!(
            says(compare(
                &recorded,
                &stored(6, Some(HELLO), Some(&format!("{b64}-3")))
            )),
            "composite 00000000..-3 ≠ 5891b5b5..-3"
        );
        // An object without prominence_sha256 was not written by hashup, matching bytes or
        // not (another client's PUT with a CRC32, a checksum-less one).
        assert_eq!(
            compare(&want, &stored(6, None, Some(&b64))),
            Verdict::Differs(Difference::NoSha256)
        );
        assert_eq!(
            says(compare(&want, &stored(6, None, None))),
            "no prominence_sha256: not written by hashup"
        );
        // Other bytes are said first.
        assert_eq!(
            says(compare(&want, &stored(6, None, Some(&zeros)))),
            "checksum 5891b5b5.. ≠ 00000000.."
        );
        // Sizes only: the size still counts.
        assert_eq!(
            says(compare(&expected(6, None, None), &stored(5, None, None))),
            "size 6 ≠ 5"
        );
    }

    #[tokio::test]
    async fn a_one_part_composite_is_computed_without_a_manifest() {
        let sha = digest(HELLO);
        let mut want = expected(6, Some(HELLO), None);
        let good = composite::one_part(&sha);
        let found = Ok(Lookup::Found(stored(6, Some(HELLO), Some(&good))));
        complete_composite(&mut want, &found).await;
        assert_eq!(want.composite.as_deref(), Some(good.as_str()));
        let Ok(Lookup::Found(held)) = &found else {
            unreachable!()
        };
        assert_eq!(compare(&want, held), Verdict::Ok(Evidence::Composite));
        // Another client's one-part upload of other bytes, prominence_sha256 copied over.
        let mut want = expected(6, Some(HELLO), None);
        let other = composite::one_part(&[7; 32]);
        let replaced = stored(6, Some(HELLO), Some(&other));
        complete_composite(&mut want, &Ok(Lookup::Found(replaced.clone()))).await;
        assert!(matches!(
            compare(&want, &replaced),
            Verdict::Differs(Difference::Composite { .. })
        ));
        // Many parts and no file to read: the metadata has to do.
        let mut want = expected(6, Some(HELLO), None);
        let many = stored(6, Some(HELLO), Some("Zm9v-3"));
        complete_composite(&mut want, &Ok(Lookup::Found(many.clone()))).await;
        assert_eq!(want.composite, None);
        assert_eq!(compare(&want, &many), Verdict::Ok(Evidence::Metadata));
    }

    fn record(name: &str, status: Status, sha: &str, composite: Option<&str>) -> Record {
        Record {
            name: name.into(),
            path: format!("/src/{name}"),
            size: Some(3),
            mtime: None,
            sha256: (!sha.is_empty()).then(|| sha.to_string()),
            status,
            http_status: None,
            attempts: 1,
            error: None,
            duration_ms: 0,
            checksum_sha256_composite: composite.map(str::to_string),
            etag: None,
            stored_at: None,
            resent: None,
        }
    }

    #[test]
    fn a_manifest_says_what_is_stored() {
        let journal = Journal {
            records: vec![
                record("big", Status::Uploaded, "bb", Some("c0mp-2")),
                record("gone", Status::Uploaded, "gg", None),
                record("gone", Status::Failed, "g2", None),
                record("link", Status::Skipped, "", None),
                // A later night skipped it as stored: the composite still applies.
                record("big", Status::Skipped, "bb", None),
                record("small", Status::Uploaded, "ss", None),
                // Changed content: the old composite does not.
                record("multi", Status::Uploaded, "m1", Some("old-2")),
                record("multi", Status::Uploaded, "m2", None),
            ],
            summary: None,
            torn: None,
            runs: 1,
            open_uploads: vec![],
            deleted: vec![],
            local: vec![],
        };
        let (stored, left_out) = recorded(&journal);
        let view: Vec<(&str, &str, Option<&str>)> = stored
            .iter()
            .map(|r| (r.name.as_str(), r.sha256.as_str(), r.composite.as_deref()))
            .collect();
        assert_eq!(
            view,
            [
                ("big", "bb", Some("c0mp-2")),
                ("multi", "m2", None),
                ("small", "ss", None)
            ]
        );
        assert_eq!(left_out, 1, "gone: its latest record failed");
    }

    #[test]
    fn composites_are_told_from_single_checksums() {
        assert_eq!(composite::parts_of("q83vEjRWeJA=-12"), Some(12));
        assert_eq!(composite::parts_of("q83vEjRWeJA="), None);
        assert_eq!(composite::parts_of("a-b"), None);
        assert_eq!(composite::parts_of("abc-"), None);
    }

    /// A store answering from a map after a delay that shrinks with the key, so results come
    /// back out of order.
    struct Slow(HashMap<String, Stored>);

    impl Store for Slow {
        fn look<'a>(
            &'a self,
            expected: &'a Expected,
        ) -> BoxFuture<'a, Result<Lookup, LookupError>> {
            Box::pin(async move {
                let n: u64 = expected.key.parse().unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(50 - n)).await;
                if n == 13 {
                    return Err(LookupError::Failed("HTTP 500".into()));
                }
                Ok(match self.0.get(&expected.key) {
                    Some(s) => Lookup::Found(s.clone()),
                    None => Lookup::Missing,
                })
            })
        }
    }

    #[tokio::test]
    async fn results_come_back_in_input_order() {
        let store: HashMap<String, Stored> = (0..40)
            .filter(|n| n % 3 != 0)
            .map(|n| (n.to_string(), stored(n, None, None)))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for n in 0..40u64 {
                let item = if n == 20 {
                    Item::Ready(Report::Skipped("a link".into()))
                } else {
                    Item::Check(Expected {
                        name: format!("f{n}"),
                        key: n.to_string(),
                        path: None,
                        size: n,
                        sha256: None,
                        composite: None,
                    })
                };
                tx.send(item).await.unwrap();
            }
        });
        let limiter = Limiter::new(crate::limit::Concurrency::Fixed(8));
        let mut seen = Vec::new();
        run(rx, Arc::new(Slow(store)), limiter, 8, |report| {
            seen.push(match report {
                Report::Checked(c) => format!("{}: {}", c.name, c.verdict.status()),
                Report::Skipped(why) => why,
            });
            true
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 40);
        for (n, line) in seen.iter().enumerate() {
            let want = match n {
                20 => "a link".to_string(),
                13 => "f13: failed".to_string(),
                n if n % 3 == 0 => format!("f{n}: missing"),
                n => format!("f{n}: ok"),
            };
            assert_eq!(*line, want);
        }
    }

    struct Doomed;

    impl Store for Doomed {
        fn look<'a>(&'a self, _: &'a Expected) -> BoxFuture<'a, Result<Lookup, LookupError>> {
            Box::pin(async { Err(LookupError::Fatal("credentials refused".into())) })
        }
    }

    #[tokio::test]
    async fn a_fatal_lookup_stops_the_run() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for n in 0..1000u64 {
                let item = Item::Check(expected(n, None, None));
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        let limiter = Limiter::new(crate::limit::Concurrency::Fixed(4));
        let mut emitted = 0;
        let result = run(rx, Arc::new(Doomed), limiter, 4, |_| {
            emitted += 1;
            true
        })
        .await;
        assert_eq!(result, Err(StoreFailed("credentials refused".into())));
        assert_eq!(emitted, 0);
    }
}
