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
//! **Sizes** (S3's rules: parts of 5 MiB to 5 GiB, the last one smaller; at most 10,000
//! parts; objects up to 5 TiB). The defaults were measured with a release build against
//! SeaweedFS 4.48 on 2 shared cores, through `hashup-wan-proxy` (4 MiB window; 3 runs each,
//! `hashup upload F --s3 ... --multipart-threshold 5MiB --part-size P --parts-in-flight N`
//! against `--multipart-threshold 5GiB`, 2026-11-27):
//!
//! - 512 MiB at 50 ms RTT: one PUT 7.1 s (75 MB/s, window/RTT); parts of 8, 16, 32 MiB with 4
//!   in flight 3.7–4.0 s (the store's CPU is then the limit: ~140 MB/s, as on loopback), 64 MiB
//!   parts 5.9–6.4 s (8 parts: too few to keep 4 streams busy to the end). 16 MiB: half the
//!   requests and journal lines of 8 MiB, for the same speed ([`DEFAULT_PART_SIZE`]).
//! - Parts in flight, 512 MiB, 16 MiB parts: at 100 ms, one PUT 13.7 s, 4 in flight 5.6–7.0 s,
//!   8 in flight 4.0–4.8 s; at 50 ms 2 in flight 5.8–6.0 s, 4 and 8 alike (3.7–6.1 s, the
//!   store's CPU). Eight streams reach twice what four do on a long link
//!   ([`PARTS_IN_FLIGHT`]).
//! - By file size at 50 ms (one PUT / 4 parts in flight): 64 MiB 1.04 / 0.77–1.07 s, 128 MiB
//!   1.94 / 1.42–1.60 s, 256 MiB 3.8 / 2.6–3.2 s; at 100 ms 64 MiB 1.9 / 1.1 s (8 in flight),
//!   128 MiB 3.6 / 1.7 s. On loopback (no RTT) a 1 GiB file took 6.8–10 s either way.
//!   Parts pay from about 128 MiB, but a file sent in one PUT keeps its own SHA-256 as the
//!   object's stored checksum (a multipart object only gets the composite), which direct
//!   mode's tests hold files up to 128 MiB to; and a file of a few seconds gains little from
//!   a resume. So [`DEFAULT_THRESHOLD`] is 256 MiB: a quarter slower (under a second at
//!   50 ms) for files of 128–256 MiB, and `--multipart-threshold` lowers it for long links.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::hash::{FileStamp, HashedFile};
use crate::http::{Refusal, Timeouts, Tls, root_element};
use crate::manifest::{
    Ending, Manifest, OpenUpload, PartSent, UploadEnded, UploadLine, UploadStarted,
};
use crate::presign::Presigner as _;
use crate::presign::s3::{DirectS3, Signed};
use crate::retry::{RetryPolicy, Retrying};
use crate::stop::StopLevel;
use crate::transfer::{Storage, TransferError};

/// Files from this size up go in parts (direct S3 mode); see the module docs for why.
pub const DEFAULT_THRESHOLD: u64 = 256 << 20;

/// The part size when none is asked for, unless the file needs larger parts to fit in
/// [`MAX_PARTS`].
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// Parts of one file in flight at once.
pub const PARTS_IN_FLIGHT: usize = 8;

/// Parts in flight across all files, as a multiple of [`PARTS_IN_FLIGHT`]: a library of big
/// images is many multipart files at once, and 128 of them (the adaptive limit's start) at 8
/// parts each would be 1,024 streams. 16 × 260 MiB to SeaweedFS on loopback, page cache warm:
/// 8 parts for each of 16 files (128 streams) took 21.8–23.9 s with a peak RSS of 143–145 MiB;
/// 2 files at a time (16 streams) 20.4 s and 93 MiB; 2 parts each (32 streams) 19.9 s and 82
/// MiB. With this budget: 20.9–24.1 s and 94–95 MiB (one 1 GiB file alone: 57 MiB).
/// Twice one file's parts still fills a 100 ms path (window / RTT per stream).
pub const ALL_PARTS_FACTOR: usize = 2;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// A journalled upload older than this is aborted rather than resumed: a week is long enough
/// for a retry of last night's run, and parts kept longer only cost storage.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long the aborts of uploads dropped mid-way may take once the run is over.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes read at once when hashing a part.
const HASH_BUFFER: usize = 1 << 20;

/// Settings of the multipart path.
#[derive(Debug, Clone, Copy)]
pub struct MultipartOptions {
    /// Files of at least this size go in parts.
    pub threshold: u64,
    /// Bytes per part; `None`: [`DEFAULT_PART_SIZE`] (raised for files over 10,000 parts).
    pub part_size: Option<u64>,
    /// Parts of one file in flight at once.
    pub parts_in_flight: usize,
    /// Retries of each request (each part on its own).
    pub retry: RetryPolicy,
}

impl Default for MultipartOptions {
    fn default() -> Self {
        MultipartOptions {
            threshold: DEFAULT_THRESHOLD,
            part_size: None,
            parts_in_flight: PARTS_IN_FLIGHT,
            retry: RetryPolicy::default(),
        }
    }
}

/// The part size for a file of `size` bytes: `asked` (else [`DEFAULT_PART_SIZE`]), raised to
/// the smallest whole MiB that fits the file in [`MAX_PARTS`]; `None` over [`MAX_OBJECT_SIZE`].
pub fn part_size(size: u64, asked: Option<u64>) -> Option<u64> {
    if size > MAX_OBJECT_SIZE {
        return None;
    }
    let fits = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    Some(
        asked
            .unwrap_or(DEFAULT_PART_SIZE)
            .max(fits)
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE),
    )
}

/// How a file of `size` bytes is cut into parts of `part_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The file's size.
    pub size: u64,
    /// Every part's size but the last's.
    pub part_size: u64,
}

impl Plan {
    /// The number of parts (at least one, for an empty file).
    pub fn parts(&self) -> u32 {
        self.size.div_ceil(self.part_size).max(1) as u32
    }

    /// Offset and length of part `number` (from 1).
    pub fn range(&self, number: u32) -> (u64, u64) {
        let offset = u64::from(number - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }

    /// Whether S3 would take this plan: parts within its sizes and count.
    fn valid(&self) -> bool {
        (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size)
            && self.size.div_ceil(self.part_size) <= MAX_PARTS
    }
}

/// Which request of a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// CreateMultipartUpload.
    Create,
    /// UploadPart of this part.
    Part(u32),
    /// ListParts.
    ListParts,
    /// CompleteMultipartUpload.
    Complete,
    /// AbortMultipartUpload.
    Abort,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create => write!(f, "creating the multipart upload"),
            Step::Part(n) => write!(f, "part {n}"),
            Step::ListParts => write!(f, "listing the parts"),
            Step::Complete => write!(f, "completing the multipart upload"),
            Step::Abort => write!(f, "aborting the multipart upload"),
        }
    }
}

/// Why a file did not arrive in parts.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// Over S3's 5 TiB object limit: refused before anything is sent.
    #[error("{size} bytes is over S3's 5 TiB object limit")]
    TooLarge {
        /// The file's size.
        size: u64,
    },
    /// The file is not what was hashed: the upload was aborted; hash it again.
    #[error("{0}")]
    Changed(String),
    /// A request failed after its retries, or was refused.
    #[error("{step}: {error}")]
    Request {
        /// Which request.
        step: Step,
        /// What storage said, or that it could not be reached.
        error: TransferError,
    },
    /// A success status with an answer that makes no sense.
    #[error("{step}: unusable answer: {message}")]
    BadAnswer {
        /// Which request.
        step: Step,
        /// What is wrong with it.
        message: String,
    },
    /// The file could not be read for a part's checksum.
    #[error("cannot read: {}", crate::message::plain_io_message(.0))]
    Read(#[source] std::io::Error),
    /// A request could not be signed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A stop request (Ctrl-C) came before every part was stored.
    #[error(
        "interrupted: {stored} of {parts} parts stored; {}",
        if *.resumable { "a rerun with the same manifest resumes the upload" } else { "upload aborted" }
    )]
    Interrupted {
        /// Parts stored.
        stored: usize,
        /// Parts in all.
        parts: u32,
        /// Left for a rerun (journalled) rather than aborted.
        resumable: bool,
    },
}

impl MultipartError {
    /// What storage said when it refused a request, if it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            MultipartError::Request { error, .. } => error.refusal(),
            _ => None,
        }
    }

    /// The HTTP status of the last answer, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            MultipartError::Request { error, .. } => error.status(),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed (a connection, 408, 429, 5xx), or a
    /// stop request cut it short: with a journal, such an upload is left to resume rather than
    /// aborted.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MultipartError::Request {
                error: TransferError::Transient { .. },
                ..
            } | MultipartError::Interrupted { .. }
        )
    }
}

/// A completed multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// CompleteMultipartUpload's status.
    pub status: u16,
    /// The composite checksum, `base64(SHA-256 of the parts' SHA-256s)-N`.
    pub composite: String,
}

/// The multipart engine of one run: signs with the run's [`DirectS3`], journals in its
/// manifest, knows the uploads that manifest left open.
pub struct Multipart {
    s3: Arc<DirectS3>,
    /// For the small requests (create, list, complete, abort); parts go through the run's
    /// [`Storage`], which counts the bytes sent.
    control: Control,
    options: MultipartOptions,
    manifest: Arc<Manifest>,
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
    /// An engine for `s3`, journalling in `manifest`; `open` are the uploads the journal left
    /// open (see [`Multipart::sweep`]).
    pub fn new(
        s3: Arc<DirectS3>,
        timeouts: Timeouts,
        tls: &Tls,
        options: MultipartOptions,
        manifest: Arc<Manifest>,
        open: Vec<OpenUpload>,
    ) -> reqwest::Result<Multipart> {
        let resumable = open
            .into_iter()
            .map(|u| (u.started.name.clone(), u))
            .collect();
        let parts_in_flight = options.parts_in_flight.max(1);
        Ok(Multipart {
            s3,
            control: Control {
                client: crate::http::client(timeouts, tls)?,
                timeouts,
            },
            options: MultipartOptions {
                parts_in_flight,
                ..options
            },
            manifest,
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

    /// Aborts the journal's open uploads that will not be resumed: all of them with
    /// `restart`, else those older than [`STALE_AFTER`] and those whose file changed or is gone.
    /// Uploads to another bucket are left alone (this run cannot sign for it). An abort that
    /// fails leaves the upload in the journal, for the next run to try again. Returns how many
    /// were aborted.
    pub async fn sweep(&self, restart: bool, now: SystemTime) -> usize {
        let stale: Vec<OpenUpload> = {
            let mut resumable = self.lock_resumable();
            let names: Vec<String> = resumable
                .iter()
                .filter(|(_, u)| u.started.bucket == self.s3.location().bucket)
                .filter(|(_, u)| restart || stale(&u.started, now))
                .map(|(name, _)| name.clone())
                .collect();
            names
                .iter()
                .filter_map(|name| resumable.remove(name))
                .collect()
        };
        let mut aborted = 0;
        for upload in stale {
            if self
                .abort(&upload.started.key, &upload.started.upload_id)
                .await
            {
                aborted += 1;
            }
        }
        aborted
    }

    /// Waits (a bounded time) for the aborts of uploads dropped mid-way.
    pub async fn settle(&self) {
        let handles = std::mem::take(&mut *self.cleanup.lock().unwrap_or_else(|e| e.into_inner()));
        let all = futures_util::future::join_all(handles);
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, all).await;
    }

    /// Uploads `file` in parts through `storage`, resuming the journal's upload of it if there
    /// is one. `stop` is the run's: after a Drain no request is retried, and with a journal no
    /// new part starts (the upload is left to resume).
    pub async fn upload(
        &self,
        storage: &Storage,
        file: &HashedFile,
        stop: watch::Receiver<StopLevel>,
    ) -> Result<Completed, MultipartError> {
        let size = file.stamp.size;
        if part_size(size, self.options.part_size).is_none() {
            return Err(MultipartError::TooLarge { size });
        }
        // Only bytes that still are the bytes hashed: checked right before anything is sent.
        match current_stamp(&file.path) {
            Ok(stamp) if stamp == file.stamp => {}
            Ok(_) => return Err(changed("the file changed after it was hashed")),
            Err(err) => return Err(MultipartError::Read(err)),
        }
        let name = file.name.to_string_lossy();
        let key = self.s3.location().key(&name);
        let (upload, stored) = match self.resume(&name, &key, file, &stop).await? {
            Some(resumed) => resumed,
            None => (
                self.create(&name, &key, file, &stop).await?,
                BTreeMap::new(),
            ),
        };
        let mut open = Open {
            engine: self,
            key: &key,
            id: &upload.id,
            settled: false,
        };
        let result = self
            .send_parts(storage, file, &key, &upload, stored, &stop)
            .await;
        let result = match result {
            Ok(parts) => self.complete(&key, &upload, file, parts, &stop).await,
            Err(err) => Err(err),
        };
        match &result {
            Ok(_) => self.journal(&UploadLine::MultipartEnd(UploadEnded {
                upload_id: upload.id.clone(),
                outcome: Ending::Completed,
            })),
            // Resumable: a stop request or a network that stayed down, with a journal. (A
            // refusal of the credentials may be fixed by the next run too.)
            Err(err)
                if self.manifest.is_journal()
                    && (err.is_transient()
                        || err
                            .refusal()
                            .is_some_and(|r| self.s3.fatal_refusal(r).is_some())) => {}
            Err(_) => {
                self.abort(&key, &upload.id).await;
            }
        }
        open.settled = true;
        result
    }

    /// The journal's open upload of `name`, if it can be resumed: same bucket, key, stamp and
    /// SHA-256, and the store still has it; with the parts stored that the journal and ListParts
    /// agree on. Any other open upload of `name` is aborted.
    async fn resume(
        &self,
        name: &str,
        key: &str,
        file: &HashedFile,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Option<(Upload, BTreeMap<u32, PartSent>)>, MultipartError> {
        let Some(open) = self.lock_resumable().remove(name) else {
            return Ok(None);
        };
        let started = &open.started;
        if started.bucket != self.s3.location().bucket {
            return Ok(None); // not this run's to abort
        }
        let plan = Plan {
            size: started.size,
            part_size: started.part_size,
        };
        let same = started.key == key
            && started.stamp == file.stamp
            && started.size == file.stamp.size
            && started.sha256 == file.hex()
            && plan.valid();
        if !same {
            self.abort(&started.key, &started.upload_id).await;
            return Ok(None);
        }
        let listed = match self.list_parts(key, &started.upload_id, stop).await {
            Ok(listed) => listed,
            Err(err) if err.refusal().is_some_and(|r| r.status == 404) => {
                // Completed or aborted by someone else, or expired: start afresh.
                self.journal(&UploadLine::MultipartEnd(UploadEnded {
                    upload_id: started.upload_id.clone(),
                    outcome: Ending::Aborted,
                }));
                return Ok(None);
            }
            Err(err) => {
                // Try again next time: back in the map for a retry of this file.
                self.lock_resumable().insert(name.to_string(), open);
                return Err(err);
            }
        };
        let stored = open
            .parts
            .into_iter()
            .filter(|(number, part)| {
                listed.get(number).is_some_and(|(size, etag)| {
                    *size == part.size && unquoted(etag) == unquoted(&part.etag)
                })
            })
            .collect();
        Ok(Some((
            Upload {
                id: started.upload_id.clone(),
                plan,
            },
            stored,
        )))
    }

    /// CreateMultipartUpload, journalled.
    async fn create(
        &self,
        name: &str,
        key: &str,
        file: &HashedFile,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Upload, MultipartError> {
        let sha256 = file.hex();
        let plan = Plan {
            size: file.stamp.size,
            part_size: part_size(file.stamp.size, self.options.part_size).ok_or(
                MultipartError::TooLarge {
                    size: file.stamp.size,
                },
            )?,
        };
        let text = with_retries(self.options.retry, &self.s3, stop, || {
            let signed = self
                .s3
                .create_multipart(key, &sha256, SystemTime::now())
                .map_err(MultipartError::Sign);
            async move { self.call(&signed?, None, Step::Create).await }
        })
        .await?;
        #[derive(Deserialize)]
        struct Initiated {
            #[serde(rename = "UploadId")]
            upload_id: String,
        }
        let id = parse::<Initiated>(&text, "InitiateMultipartUploadResult")
            .map(|i| i.upload_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| MultipartError::BadAnswer {
                step: Step::Create,
                message: format!("no UploadId in {:?}", start_of(&text)),
            })?;
        self.journal(&UploadLine::Multipart(UploadStarted {
            name: name.to_string(),
            // Absolute: the next run, which checks the file is unchanged, may start elsewhere.
            path: std::path::absolute(&file.path)
                .unwrap_or_else(|_| file.path.clone())
                .to_string_lossy()
                .into_owned(),
            bucket: self.s3.location().bucket.clone(),
            key: key.to_string(),
            upload_id: id.clone(),
            sha256,
            size: file.stamp.size,
            part_size: plan.part_size,
            stamp: file.stamp,
            created: crate::utc::rfc3339_nanos(SystemTime::now()),
        }));
        Ok(Upload { id, plan })
    }

    /// Hashes every part in order and sends those not `stored` yet, `parts_in_flight` at once;
    /// every part in order once all are stored and the file still hashes to what was hashed.
    async fn send_parts(
        &self,
        storage: &Storage,
        file: &HashedFile,
        key: &str,
        upload: &Upload,
        mut stored: BTreeMap<u32, PartSent>,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Vec<PartSent>, MultipartError> {
        let plan = upload.plan;
        let reader = Arc::new(File::open(&file.path).map_err(MultipartError::Read)?);
        // The whole file's SHA-256, fed part by part (taken while a part is hashed).
        let mut whole = Some(Sha256::new());
        let mut done: Vec<PartSent> = Vec::new();
        let mut in_flight = JoinSet::new();
        let mut failure: Option<MultipartError> = None;
        let journalled = self.manifest.is_journal();
        let collect = |joined: Result<Result<PartSent, MultipartError>, tokio::task::JoinError>,
                       done: &mut Vec<PartSent>,
                       failure: &mut Option<MultipartError>| {
            match joined {
                Ok(Ok(part)) => {
                    self.journal(&UploadLine::Part(part.clone()));
                    done.push(part);
                }
                Ok(Err(err)) => {
                    failure.get_or_insert(err);
                }
                Err(err) => {
                    failure.get_or_insert(MultipartError::Sign(format!("part task: {err}")));
                }
            }
        };
        for number in 1..=plan.parts() {
            let (offset, len) = plan.range(number);
            let hashed = {
                let (reader, so_far) = (reader.clone(), whole.take().unwrap_or_default());
                tokio::task::spawn_blocking(move || hash_next(&reader, len, so_far))
                    .await
                    .map_err(|e| MultipartError::Read(std::io::Error::other(e.to_string())))?
            };
            let (digest, rest) = match hashed {
                Ok(hashed) => hashed,
                Err(err) => {
                    failure.get_or_insert(MultipartError::Read(err));
                    break;
                }
            };
            whole = Some(rest);
            let checksum = BASE64.encode(digest);
            if let Some(part) = stored.remove(&number)
                && part.size == len
                && part.checksum_sha256 == checksum
            {
                done.push(part);
                continue;
            }
            while in_flight.len() >= self.options.parts_in_flight {
                let joined = in_flight.join_next().await.expect("a part in flight");
                collect(joined, &mut done, &mut failure);
            }
            if failure.is_some() {
                break;
            }
            if journalled && *stop.borrow() > StopLevel::Run {
                break;
            }
            // A share of the parts in flight across all files, held until this part is done;
            // parts of this file finish meanwhile.
            let share = loop {
                tokio::select! {
                    share = self.all_parts.clone().acquire_owned() => {
                        break share.expect("the semaphore is never closed");
                    }
                    Some(joined) = in_flight.join_next() => {
                        collect(joined, &mut done, &mut failure);
                    }
                }
            };
            if failure.is_some() {
                break;
            }
            let job = PartJob {
                s3: self.s3.clone(),
                storage: storage.clone(),
                path: file.path.clone(),
                key: key.to_string(),
                upload_id: upload.id.clone(),
                number,
                offset,
                len,
                checksum,
                retry: self.options.retry,
                stop: stop.clone(),
            };
            in_flight.spawn(async move {
                let sent = send_part(job).await;
                drop(share);
                sent
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            collect(joined, &mut done, &mut failure);
            // A refused part dooms the upload: the others need not finish.
            if failure.as_ref().is_some_and(|f| !f.is_transient()) {
                in_flight.abort_all();
            }
        }
        if let Some(failure) = failure {
            // A part refused (BadDigest) or unreadable because the file changed under it: hash
            // it again.
            if current_stamp(&file.path).ok() != Some(file.stamp) {
                return Err(changed(&format!(
                    "the file changed while it was sent ({failure})"
                )));
            }
            return Err(failure);
        }
        if done.len() < plan.parts() as usize {
            return Err(MultipartError::Interrupted {
                stored: done.len(),
                parts: plan.parts(),
                resumable: journalled,
            });
        }
        let whole = whole.unwrap_or_default().finalize();
        if <[u8; 32]>::from(whole) != file.sha256 {
            return Err(changed(
                "the file changed after it was hashed (its parts hash to another SHA-256)",
            ));
        }
        done.sort_by_key(|p| p.number);
        Ok(done)
    }

    /// CompleteMultipartUpload, after checking the file is unchanged; the composite checksum.
    async fn complete(
        &self,
        key: &str,
        upload: &Upload,
        file: &HashedFile,
        parts: Vec<PartSent>,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Completed, MultipartError> {
        match current_stamp(&file.path) {
            Ok(stamp) if stamp == file.stamp => {}
            _ => return Err(changed("the file changed while it was sent")),
        }
        let ours = composite(&parts);
        let body = complete_body(&parts);
        let (status, text) = with_retries(self.options.retry, &self.s3, stop, || {
            let signed = self
                .s3
                .complete_multipart(key, &upload.id, SystemTime::now())
                .map_err(MultipartError::Sign);
            let body = body.clone();
            async move {
                let text = self.call(&signed?, Some(body), Step::Complete).await?;
                // S3 may answer 200 and still fail: the error is in the body.
                match error_in(&text) {
                    Some(error) => Err(MultipartError::Request {
                        step: Step::Complete,
                        error,
                    }),
                    None => Ok((200, text)),
                }
            }
        })
        .await?;
        #[derive(Deserialize)]
        struct Result {
            #[serde(rename = "ChecksumSHA256", default)]
            checksum_sha256: Option<String>,
        }
        let answered =
            parse::<Result>(&text, "CompleteMultipartUploadResult").ok_or_else(|| {
                MultipartError::BadAnswer {
                    step: Step::Complete,
                    message: format!("not a CompleteMultipartUploadResult: {:?}", start_of(&text)),
                }
            })?;
        if let Some(theirs) = answered.checksum_sha256.filter(|c| !c.is_empty())
            && theirs != ours
        {
            return Err(MultipartError::BadAnswer {
                step: Step::Complete,
                message: format!("composite checksum {theirs}, expected {ours}"),
            });
        }
        Ok(Completed {
            status,
            composite: ours,
        })
    }

    /// ListParts, every page: part number -> (size, ETag).
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<BTreeMap<u32, (u64, String)>, MultipartError> {
        #[derive(Deserialize)]
        struct Listed {
            #[serde(rename = "Part", default)]
            parts: Vec<ListedPart>,
            #[serde(rename = "IsTruncated", default)]
            truncated: bool,
            #[serde(rename = "NextPartNumberMarker", default)]
            next: Option<u32>,
        }
        #[derive(Deserialize)]
        struct ListedPart {
            #[serde(rename = "PartNumber")]
            number: u32,
            #[serde(rename = "Size")]
            size: u64,
            #[serde(rename = "ETag")]
            etag: String,
        }
        let mut parts = BTreeMap::new();
        let mut marker = None;
        loop {
            let text = with_retries(self.options.retry, &self.s3, stop, || {
                let signed = self
                    .s3
                    .list_parts(key, upload_id, marker, SystemTime::now())
                    .map_err(MultipartError::Sign);
                async move { self.call(&signed?, None, Step::ListParts).await }
            })
            .await?;
            let page = parse::<Listed>(&text, "ListPartsResult").ok_or_else(|| {
                MultipartError::BadAnswer {
                    step: Step::ListParts,
                    message: format!("not a ListPartsResult: {:?}", start_of(&text)),
                }
            })?;
            let last = page.parts.last().map(|p| p.number);
            parts.extend(page.parts.into_iter().map(|p| (p.number, (p.size, p.etag))));
            match page.next.or(last) {
                Some(next) if page.truncated && Some(next) != marker => marker = Some(next),
                _ => return Ok(parts),
            }
        }
    }

    /// AbortMultipartUpload (a few quick tries), journalled; whether the store no longer has
    /// the upload.
    async fn abort(&self, key: &str, upload_id: &str) -> bool {
        let gone = abort_request(&self.control, &self.s3, key, upload_id, self.options.retry).await;
        if gone {
            self.journal(&UploadLine::MultipartEnd(UploadEnded {
                upload_id: upload_id.to_string(),
                outcome: Ending::Aborted,
            }));
        }
        gone
    }

    /// Sends a small signed request; the answer's body.
    async fn call(
        &self,
        signed: &Signed,
        body: Option<String>,
        step: Step,
    ) -> Result<String, MultipartError> {
        send_signed(&self.control, signed, body)
            .await
            .map_err(|error| MultipartError::Request { step, error })
    }

    /// Writes a journal line; a journal that cannot be written costs only the resume (the
    /// file records report a manifest that fails).
    fn journal(&self, line: &UploadLine) {
        let _ = self.manifest.upload_line(line);
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

/// An upload not yet completed or dealt with: dropped like this (a second Ctrl-C drops the
/// whole file's future), it is left to resume when journalled, else aborted in the background
/// before the command exits ([`Multipart::settle`]).
struct Open<'a> {
    engine: &'a Multipart,
    key: &'a str,
    id: &'a str,
    settled: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.settled || self.engine.manifest.is_journal() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (control, s3, retry) = (
            self.engine.control.clone(),
            self.engine.s3.clone(),
            self.engine.options.retry,
        );
        let (key, id) = (self.key.to_string(), self.id.to_string());
        let handle = runtime.spawn(async move {
            abort_request(&control, &s3, &key, &id, retry).await;
        });
        self.engine
            .cleanup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }
}

/// One part to send, owned (it runs as a task of its own).
struct PartJob {
    s3: Arc<DirectS3>,
    storage: Storage,
    path: PathBuf,
    key: String,
    upload_id: String,
    number: u32,
    offset: u64,
    len: u64,
    /// Base64 SHA-256 of the part's bytes.
    checksum: String,
    retry: RetryPolicy,
    stop: watch::Receiver<StopLevel>,
}

/// UploadPart, signed afresh for every try; what the journal keeps of it.
async fn send_part(job: PartJob) -> Result<PartSent, MultipartError> {
    let step = Step::Part(job.number);
    let job = &job;
    let headers = with_retries(job.retry, &job.s3, &job.stop, || {
        let signed = job
            .s3
            .upload_part(
                &job.key,
                &job.upload_id,
                job.number,
                &job.checksum,
                SystemTime::now(),
            )
            .map_err(MultipartError::Sign);
        async move {
            let signed = signed?;
            job.storage
                .put_range(&signed.url, &signed.headers, &job.path, job.offset, job.len)
                .await
                .map_err(|error| MultipartError::Request { step, error })
        }
    })
    .await?;
    let etag = headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MultipartError::BadAnswer {
            step,
            message: "no ETag".into(),
        })?;
    Ok(PartSent {
        upload_id: job.upload_id.clone(),
        number: job.number,
        size: job.len,
        checksum_sha256: job.checksum.clone(),
        etag: etag.to_string(),
    })
}

/// Runs `send` until it succeeds, retrying what is worth it: a transient failure after a
/// backoff (at least the server's `Retry-After`), a 403 that is not a refusal of the
/// credentials at once (`send` signs afresh). Nothing is retried once the run is asked to stop.
async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    s3: &DirectS3,
    stop: &watch::Receiver<StopLevel>,
    mut send: F,
) -> Result<T, MultipartError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MultipartError>>,
{
    let mut retry = Retrying::new(policy);
    loop {
        retry.attempt();
        let err = match send().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if *stop.borrow() > StopLevel::Run {
            return Err(err);
        }
        let delay = match &err {
            MultipartError::Request {
                error: TransferError::Forbidden(refusal),
                ..
            } if s3.fatal_refusal(refusal).is_none() => retry.again().then_some(Duration::ZERO),
            MultipartError::Request {
                error: TransferError::Transient { retry_after, .. },
                ..
            } => retry.backoff(*retry_after),
            _ => None,
        };
        let Some(delay) = delay else {
            return Err(err);
        };
        let mut stop = stop.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|level| *level > StopLevel::Run) => return Err(err),
        }
    }
}

/// AbortMultipartUpload with up to three quick tries; whether the store no longer has the
/// upload (aborted now, or already gone: 404 NoSuchUpload).
async fn abort_request(
    control: &Control,
    s3: &DirectS3,
    key: &str,
    upload_id: &str,
    policy: RetryPolicy,
) -> bool {
    let mut retry = Retrying::new(RetryPolicy {
        retries: policy.retries.min(2),
        ..policy
    });
    loop {
        retry.attempt();
        let Ok(signed) = s3.abort_multipart(key, upload_id, SystemTime::now()) else {
            return false;
        };
        let delay = match send_signed(control, &signed, None).await {
            Ok(_) => return true,
            Err(err) if err.status() == Some(404) => return true,
            Err(TransferError::Transient { retry_after, .. }) => retry.backoff(retry_after),
            Err(TransferError::Forbidden(_)) => retry.again().then_some(Duration::ZERO),
            Err(_) => None,
        };
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return false,
        }
    }
}

/// The client of the small requests, with the run's timeouts.
#[derive(Clone)]
struct Control {
    client: reqwest::Client,
    timeouts: Timeouts,
}

/// The most of a success answer that is read: ListParts of 1,000 parts is about 250 KB; a
/// server sending more is not answering these requests.
const ANSWER_LIMIT: usize = 4 << 20;

/// Sends a signed request with an optional body; the body of a success answer.
async fn send_signed(
    control: &Control,
    signed: &Signed,
    body: Option<String>,
) -> Result<String, TransferError> {
    let bytes = body.as_ref().map_or(0, |b| b.len()) + ANSWER_LIMIT;
    let mut request =
        crate::transfer::signed_request(&control.client, control.timeouts, signed, bytes as u64);
    if let Some(body) = body {
        request = request.body(body);
    }
    crate::transfer::small_answer(request, ANSWER_LIMIT).await
}

/// An error document in a success answer (CompleteMultipartUpload may fail after its 200 has
/// gone out): transient when S3 says to try again, else a refusal.
fn error_in(text: &str) -> Option<TransferError> {
    if root_element(text).as_deref() != Some("Error") {
        return None;
    }
    let refusal = Refusal::of(200, text);
    let transient = matches!(
        refusal.code.as_deref(),
        Some("InternalError" | "SlowDown" | "ServiceUnavailable")
    );
    Some(if transient {
        TransferError::Transient {
            status: Some(200),
            retry_after: None,
            message: format!("HTTP 200 with an error: {}", refusal.message),
        }
    } else {
        TransferError::Refused(refusal)
    })
}

/// Parses an S3 XML answer whose root element must be `root`.
fn parse<T: serde::de::DeserializeOwned>(text: &str, root: &str) -> Option<T> {
    if root_element(text).as_deref() != Some(root) {
        return None;
    }
    quick_xml::de::from_str(text).ok()
}

/// The CompleteMultipartUpload body: each part's number, ETag and SHA-256, in order.
fn complete_body(parts: &[PartSent]) -> String {
    let mut xml = String::from(
        r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for part in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>",
            part.number,
            quick_xml::escape::partial_escape(&part.etag),
            quick_xml::escape::partial_escape(&part.checksum_sha256),
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// S3's composite checksum of `parts` (in order): the base64 SHA-256 of their SHA-256s, then
/// `-N`.
pub fn composite(parts: &[PartSent]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(BASE64.decode(&part.checksum_sha256).unwrap_or_default());
    }
    format!("{}-{}", BASE64.encode(hasher.finalize()), parts.len())
}

/// Reads the next `len` bytes of `file`: their SHA-256, and `whole` fed with them. Parts are
/// hashed strictly in order, so one descriptor read front to back does (its position shows
/// how far hashing has got, as for any sequential reader).
fn hash_next(file: &File, len: u64, mut whole: Sha256) -> std::io::Result<([u8; 32], Sha256)> {
    let mut buf = vec![0u8; HASH_BUFFER.min(len.max(1) as usize)];
    let mut part = Sha256::new();
    let mut left = len;
    let mut reader = file;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while uploading",
            ));
        }
        part.update(&buf[..n]);
        whole.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((part.finalize().into(), whole))
}

/// Whether a journalled upload is too old to resume (or its time unreadable), or its file
/// changed or is gone.
fn stale(started: &UploadStarted, now: SystemTime) -> bool {
    let old = crate::utc::parse_iso8601(&started.created)
        .is_none_or(|created| now.duration_since(created).unwrap_or_default() > STALE_AFTER);
    old || current_stamp(Path::new(&started.path)).ok() != Some(started.stamp)
}

fn current_stamp(path: &Path) -> std::io::Result<FileStamp> {
    std::fs::metadata(path).map(|meta| FileStamp::of(&meta))
}

fn changed(why: &str) -> MultipartError {
    MultipartError::Changed(why.to_string())
}

fn unquoted(etag: &str) -> &str {
    etag.trim_matches('"')
}

fn start_of(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn part_sizes_follow_s3s_rules() {
        assert_eq!(part_size(100 * MIB, None), Some(DEFAULT_PART_SIZE));
        assert_eq!(part_size(100 * MIB, Some(5 * MIB)), Some(5 * MIB));
        // Too small a part is raised to S3's minimum.
        assert_eq!(part_size(100 * MIB, Some(MIB)), Some(5 * MIB));
        // 10,000 parts at most: 1 TiB needs 105 MiB parts (104.9 rounded up to the MiB).
        assert_eq!(part_size(1 << 40, None), Some(105 * MIB));
        assert_eq!(part_size(1 << 40, Some(5 * MIB)), Some(105 * MIB));
        assert_eq!(part_size(MAX_OBJECT_SIZE, None), Some(525 * MIB));
        assert_eq!(part_size(MAX_OBJECT_SIZE + 1, None), None);
        let plan = Plan {
            size: MAX_OBJECT_SIZE,
            part_size: 525 * MIB,
        };
        assert!(plan.valid() && plan.parts() as u64 <= MAX_PARTS);
    }

    #[test]
    fn a_plan_cuts_the_file_into_ranges() {
        let plan = Plan {
            size: 12 * MIB + 3,
            part_size: 5 * MIB,
        };
        assert_eq!(plan.parts(), 3);
        assert_eq!(plan.range(1), (0, 5 * MIB));
        assert_eq!(plan.range(3), (10 * MIB, 2 * MIB + 3));
        let exact = Plan {
            size: 10 * MIB,
            part_size: 5 * MIB,
        };
        assert_eq!((exact.parts(), exact.range(2)), (2, (5 * MIB, 5 * MIB)));
        assert!(
            !Plan {
                size: 10 * MIB,
                part_size: MIB
            }
            .valid()
        );
    }

    fn part(number: u32, checksum: &str) -> PartSent {
        PartSent {
            upload_id: "u".into(),
            number,
            size: 5,
            checksum_sha256: checksum.into(),
            etag: format!("\"etag{number}\""),
        }
    }

    #[test]
    fn the_composite_checksum_is_s3s() {
        // Two parts "hello" and "world": SHA-256 of their two digests, then -2.
        let h = |s: &str| BASE64.encode(Sha256::digest(s));
        let parts = [part(1, &h("hello")), part(2, &h("world"))];
        let mut both = Sha256::digest("hello").to_vec();
        both.extend_from_slice(&Sha256::digest("world"));
        assert_eq!(
            composite(&parts),
            format!("{}-2", BASE64.encode(Sha256::digest(&both)))
        );
        assert_eq!(
            complete_body(&parts[..1]),
            format!(
                "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Part><PartNumber>1</PartNumber><ETag>\"etag1\"</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>\
                 </CompleteMultipartUpload>",
                h("hello")
            )
        );
    }

    #[test]
    fn answers_are_told_apart_by_their_root() {
        let ok = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://h/b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>"x-3"</ETag><ChecksumSHA256>abc=-3</ChecksumSHA256></CompleteMultipartUploadResult>"#;
        assert!(error_in(ok).is_none());
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "ChecksumSHA256")]
            c: Option<String>,
        }
        let r: R = parse(ok, "CompleteMultipartUploadResult").unwrap();
        assert_eq!(r.c.as_deref(), Some("abc=-3"));
        assert!(parse::<R>(ok, "ListPartsResult").is_none());

        let slow = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>try again</Message></Error>";
        let err = error_in(slow).unwrap();
        assert!(matches!(err, TransferError::Transient { .. }), "{err}");
        let bad = "<Error><Code>InvalidPart</Code><Message>no such part</Message></Error>";
        let err = error_in(bad).unwrap();
        assert_eq!(err.s3_code(), Some("InvalidPart"));
        assert!(matches!(err, TransferError::Refused(_)), "{err}");
        assert!(parse::<R>(bad, "CompleteMultipartUploadResult").is_none());
        assert!(root_element("not xml at all").is_none());
    }

    #[test]
    fn stale_uploads_are_old_or_of_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"data").unwrap();
        let now = SystemTime::now();
        let started = |created: SystemTime, stamp: FileStamp| UploadStarted {
            name: "f".into(),
            path: path.to_string_lossy().into_owned(),
            bucket: "b".into(),
            key: "f".into(),
            upload_id: "u".into(),
            sha256: "00".repeat(32),
            size: 4,
            part_size: MIN_PART_SIZE,
            stamp,
            created: crate::utc::rfc3339_nanos(created),
        };
        let stamp = current_stamp(&path).unwrap();
        let day = Duration::from_secs(24 * 3600);
        assert!(!stale(&started(now - day, stamp), now));
        assert!(
            stale(&started(now - 8 * day, stamp), now),
            "older than 7 days"
        );
        let other = FileStamp { size: 5, ..stamp };
        assert!(stale(&started(now - day, other), now), "the file changed");
        let mut unreadable = started(now, stamp);
        unreadable.created = "yesterday".into();
        assert!(stale(&unreadable, now));
        std::fs::remove_file(&path).unwrap();
        assert!(stale(&started(now, stamp), now), "the file is gone");
    }

    #[test]
    fn a_part_hashes_its_range_and_feeds_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let (a, whole) = hash_next(&file, 2_000_000, Sha256::new()).unwrap();
        let (b, whole) = hash_next(&file, 1_000_000, whole).unwrap();
        assert_eq!(a, <[u8; 32]>::from(Sha256::digest(&data[..2_000_000])));
        assert_eq!(b, <[u8; 32]>::from(Sha256::digest(&data[2_000_000..])));
        assert_eq!(
            <[u8; 32]>::from(whole.finalize()),
            <[u8; 32]>::from(Sha256::digest(&data))
        );
        let err = hash_next(&file, 1, Sha256::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
