//! Multipart upload in direct S3 mode: one big file sent as parts in parallel, each part's
//! SHA-256 checked by the store, completed into one object; resumed from the journal after a
//! crash.
//!
//! ```text
//!   resume?  journal's open upload, same stamp and SHA-256 -> ListParts -> parts to skip
//!   create   POST ?uploads   x-amz-checksum-algorithm: SHA256, x-amz-meta-prominence_sha256: hex
//!   parts    in order: hash the part (pread, blocking thread; also feeds a whole-file SHA-256)
//!            -> PUT ?partNumber=N&uploadId=ID with x-amz-checksum-sha256 (at most
//!            `parts_in_flight` at once, each retried on its own) -> journal {"part": ...}
//!   check    whole-file SHA-256 == the hash pass's, stamp unchanged; else abort, hash again
//!   complete POST ?uploadId=ID, the parts' ETags and checksums -> composite checksum "...-N"
//! ```
//!
//! **Why SHA-256 twice.** S3 keeps SHA-256 for a multipart object only as a composite (the
//! SHA-256 of the parts' SHA-256s), so the whole file's goes in its metadata at create time,
//! from the hash pass; each part carries its own, which the store verifies (400 BadDigest on a
//! mismatch). The parts are hashed again right before they go (one sequential read, which also
//! recomputes the whole-file SHA-256): an object is only completed when the bytes its parts
//! carried hash to the SHA-256 in its metadata, even if the file changed without its stamp
//! showing it. Memory stays bounded: one 1 MiB read buffer for hashing, and each part streams
//! from the file in the transfer's 256 KiB chunks.
//!
//! **What is left behind.** Parts cost storage until completed or aborted. A file that changed,
//! a part the store refused, or an upload with no journal to resume from (no `--manifest`) is
//! aborted (AbortMultipartUpload), also when a second Ctrl-C drops it mid-way (the abort then
//! runs before the command exits: [`Multipart::settle`]). With a journal, an upload stopped by
//! Ctrl-C, a crash or a network that stays down is left for the next run to resume; that run
//! aborts the journal's uploads that are stale (file changed, older than [`STALE_AFTER`], or
//! `--restart`) before it starts ([`Multipart::sweep`]).
//!
//! **Sizes.** S3 takes parts of 5 MiB to 5 GiB (the last one smaller), at most 10,000 of them,
//! objects up to 5 TiB ([`Plan`], [`part_size`]). The defaults ([`DEFAULT_THRESHOLD`],
//! [`DEFAULT_PART_SIZE`], [`PARTS_IN_FLIGHT`], [`ALL_PARTS_FACTOR`]) were measured: see
//! `docs/design.md`, "Multipart".
//!
//! **Phases**, one file each: `resume` (the journal's open uploads: swept or resumed), `create`,
//! `parts` (hash and send), `finish` (complete or abort); `plan` (part sizes), `journal` (what is
//! recorded, through [`PartsJournal`]), `source` (the file, and whether it changed), `control`
//! (the small requests' client), `error`.

mod control;
mod create;
mod error;
mod finish;
mod journal;
mod parts;
mod plan;
mod resume;
mod source;

pub use error::{MultipartError, Step};
pub use finish::composite;
pub use journal::{Ending, OpenUpload, PartSent, PartsJournal, UploadStarted};
pub use plan::{
    DEFAULT_PART_SIZE, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, Plan, part_size,
};
pub use resume::STALE_AFTER;
pub use source::Source;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use self::control::Control;
use crate::http::{Timeouts, Tls};
use crate::presign::s3::DirectS3;
use crate::request::Requests;
use crate::retry::RetryPolicy;
use crate::stop::StopLevel;
use crate::transfer::Storage;

/// Files from this size up go in parts (direct S3 mode); why: `docs/design.md`, "Multipart".
pub const DEFAULT_THRESHOLD: u64 = 256 << 20;

/// Parts of one file in flight at once (measured: `docs/design.md`, "Multipart").
pub const PARTS_IN_FLIGHT: usize = 8;

/// Parts in flight across all files, as a multiple of [`PARTS_IN_FLIGHT`]: many big files at
/// once must not mean 8 streams each (memory, the store's CPU); twice one file's parts still
/// fills a 100 ms path. Measured: `docs/design.md`, "Multipart".
pub const ALL_PARTS_FACTOR: usize = 2;

/// How long the aborts of uploads dropped mid-way may take once the run is over.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of the multipart path.
#[derive(Debug, Clone, Copy)]
pub struct MultipartOptions {
    /// Files of at least this size go in parts.
    pub threshold: u64,
    /// Bytes per part; `None`: [`DEFAULT_PART_SIZE`] (raised for files over 10,000 parts).
    pub part_size: Option<u64>,
    /// Parts of one file in flight at once.
    pub parts_in_flight: usize,
}

impl Default for MultipartOptions {
    fn default() -> Self {
        MultipartOptions {
            threshold: DEFAULT_THRESHOLD,
            part_size: None,
            parts_in_flight: PARTS_IN_FLIGHT,
        }
    }
}

/// A completed multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// CompleteMultipartUpload's status.
    pub status: u16,
    /// The composite checksum, `base64(SHA-256 of the parts' SHA-256s)-N`.
    pub composite: String,
    /// The object's ETag, where the store gave one.
    pub etag: Option<String>,
}

/// The multipart engine of one run: signs with the run's [`DirectS3`], records its uploads in a
/// [`PartsJournal`], knows the uploads that journal left open.
pub struct Multipart {
    s3: Arc<DirectS3>,
    /// For the small requests (create, list, complete, abort); parts go through the run's
    /// [`Storage`], which counts the bytes sent.
    control: Control,
    /// Every request's retries (each part on its own); per upload, stopped with the run.
    requests: Requests,
    /// An abort's: a few quick tries, also after a stop request.
    aborts: Requests,
    options: MultipartOptions,
    journal: Arc<dyn PartsJournal>,
    /// Open uploads from the journal that may be resumed, by object name.
    resumable: Mutex<BTreeMap<String, OpenUpload>>,
    /// Aborts of uploads dropped mid-way (a second Ctrl-C), awaited by [`Multipart::settle`].
    cleanup: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Parts in flight across all files ([`ALL_PARTS_FACTOR`] × parts in flight per file).
    all_parts: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for Multipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multipart")
            .field("location", self.s3.location())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Multipart {
    /// An engine for `s3`, sending with `requests` (which must not tell the run's limit of
    /// push-back: the parts' [`Storage`] does), recording in `journal`; `open` are the uploads
    /// the journal left open (see [`Multipart::sweep`]).
    pub fn new(
        s3: Arc<DirectS3>,
        timeouts: Timeouts,
        tls: &Tls,
        options: MultipartOptions,
        requests: Requests,
        journal: Arc<dyn PartsJournal>,
        open: Vec<OpenUpload>,
    ) -> reqwest::Result<Multipart> {
        let resumable = open
            .into_iter()
            .map(|u| (u.started.name.clone(), u))
            .collect();
        let parts_in_flight = options.parts_in_flight.max(1);
        let policy = requests.policy();
        Ok(Multipart {
            s3,
            control: Control {
                client: crate::http::client(timeouts, tls)?,
                timeouts,
            },
            aborts: requests
                .with_policy(RetryPolicy {
                    retries: policy.retries.min(2),
                    ..policy
                })
                .unstopped(),
            requests,
            options: MultipartOptions {
                parts_in_flight,
                ..options
            },
            journal,
            resumable: Mutex::new(resumable),
            cleanup: Mutex::default(),
            all_parts: Arc::new(tokio::sync::Semaphore::new(
                parts_in_flight * ALL_PARTS_FACTOR,
            )),
        })
    }

    /// Whether a file of `size` bytes goes in parts.
    pub fn applies(&self, size: u64) -> bool {
        size >= self.options.threshold
    }

    /// Uploads `file` in parts through `storage`, resuming the journal's upload of it if there
    /// is one. `stop` is the run's: after a Drain no request is retried, and with a journal no
    /// new part starts (the upload is left to resume).
    pub async fn upload(
        &self,
        storage: &Storage,
        file: &Source,
        stop: watch::Receiver<StopLevel>,
    ) -> Result<Completed, MultipartError> {
        self.check(file).await?;
        let requests = self.requests.with_stop(stop);
        let key = self.s3.location().key(&file.name);
        let (upload, stored) = match self.resume(&key, file, &requests).await? {
            Some(resumed) => resumed,
            None => (self.create(&key, file, &requests).await?, BTreeMap::new()),
        };
        let mut open = finish::Open::new(self, &key, &upload.id);
        let result = match self
            .send_parts(storage, file, &key, &upload, stored, &requests)
            .await
        {
            Ok(parts) => self.complete(&key, &upload, file, parts, &requests).await,
            Err(err) => Err(err),
        };
        self.end(&key, &upload.id, &result).await;
        open.settled();
        result
    }

    /// Waits (a bounded time) for the aborts of uploads dropped mid-way.
    pub async fn settle(&self) {
        let handles = std::mem::take(&mut *self.cleanup.lock().unwrap_or_else(|e| e.into_inner()));
        let all = futures_util::future::join_all(handles);
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, all).await;
    }

    /// Whether `file` may go: within S3's limits, and still the bytes hashed (checked right
    /// before anything is sent).
    async fn check(&self, file: &Source) -> Result<(), MultipartError> {
        let size = file.size();
        if part_size(size, self.options.part_size).is_none() {
            return Err(MultipartError::TooLarge { size });
        }
        match file.unchanged().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(changed("the file changed after it was hashed")),
            Err(err) => Err(MultipartError::Read(err)),
        }
    }

    /// Records in the journal; a journal that cannot be written costs only the resume (the
    /// file records report a manifest that fails).
    fn journal(&self, record: impl FnOnce(&dyn PartsJournal) -> std::io::Result<()>) {
        let _ = record(&*self.journal);
    }

    fn lock_resumable(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OpenUpload>> {
        self.resumable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An upload being sent.
struct Upload {
    id: String,
    plan: Plan,
}

fn changed(why: &str) -> MultipartError {
    MultipartError::Changed(why.to_string())
}
