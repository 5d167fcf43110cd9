//! The upload pipeline: entries -> hashing engine -> bounded channel -> uploader pool -> manifest.
//!
//! ```text
//!   Hasher (rayon pool) --Outcome--> bridge thread --bounded mpsc--> tokio loop
//!       --(at most twice the limit taken up)--> task per file: presign
//!       --Limiter (uploads in flight, fixed or adaptive)--> check stamp, send, record
//! ```
//!
//! Presign ahead: a file's URL is asked for before its upload slot is free, so an upload slot
//! is held for the send alone and never waits on the API's round trip. Through a presign API
//! 50 ms away that round trip was about half of every slot's time (a slot took 160-220 ms
//! there, 70-100 ms in direct mode), so the same limit moved about half the files and the
//! adaptive limit's windows were twice as long. A URL that waited for its slot
//! longer than a minute is asked for again (the API's URLs live 600 s).
//!
//! Backpressure: the loop takes up a file only while fewer than twice the limit are taken up,
//! so when every upload slot is busy and as many files wait presigned, the mpsc fills, the
//! bridge thread blocks, the engine's own bounded channels fill and hashing pauses.
//!
//! Stopping: a [`StopLevel::Drain`] (the first Ctrl-C) stops the loop taking files and lets the
//! uploads in flight finish, without retrying them (files presigned but still waiting for a
//! slot are left, counted as not started); [`StopLevel::Abort`] (the second) ends those
//! too, each with a `failed` record. Either way the manifest gets its summary, which counts the
//! files never taken up (`not_started`), so no file goes unaccounted for.
//!
//! Names were checked before anything is hashed ([`crate::naming::plan`]). Just before each send the file's stamp (size, mtime, ctime, inode)
//! is compared with the one it was hashed with; a changed file is hashed again and presigned
//! again, so an old checksum is never published with new bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hash::{
    FileEntry, FileError, FileErrorKind, FileStamp, HashOptions, HashedFile, Hasher, Outcome,
};
use crate::limit::{Concurrency, Limiter};
use crate::manifest::{Manifest, Record, Status, Summary};
use crate::multipart::{Multipart, MultipartError, Source};
use crate::presign::{PresignError, Presigner, Target};
use crate::progress::{Progress, Style, Tally};
use crate::request::{Class, Classify as _, Requests};
use crate::retry::Retrying;
use crate::skip::{AlreadyStored, Decision, Evidence};
pub use crate::stop::StopLevel;
use crate::stop::reached;
use crate::transfer::{MAX_OBJECT_SIZE, Storage, TransferError};

/// How often a file that keeps changing is hashed again before it is reported failed.
pub const MAX_REHASH: u32 = 3;

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Engine settings (also used to hash a changed file again).
    pub hash: HashOptions,
    /// Uploads in flight at once: fixed, or found while running ([`crate::limit`]).
    pub uploads: Concurrency,
    /// Retries and backoff, for the API and for storage; the destination's requests, which
    /// know whether it has answered yet.
    pub requests: Requests,
    /// How progress is shown on stderr.
    pub progress: Style,
    /// What is already stored: such files are recorded `skipped`, not sent.
    pub stored: Arc<AlreadyStored>,
    /// How long a drain ([`StopLevel::Drain`]) waits for the uploads in flight before it
    /// aborts them, as a second Ctrl-C would: a stop request ends the run in bounded time.
    pub drain_timeout: Duration,
    /// Direct S3 mode's multipart engine: files from its threshold up go in parts.
    pub multipart: Option<Arc<Multipart>>,
    /// Write the summary line to the manifest at the end of [`run`]; `false` leaves it to the
    /// caller ([`write_summary`]), which has work of its own to count in it first (`--delete`).
    pub journal_summary: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Counts and rates (also the manifest's last line).
    pub summary: Summary,
    /// The run was stopped by a [`StopLevel`] above `Run`.
    pub interrupted: bool,
}

/// `summary.stopped` of an interrupted run.
pub const INTERRUPTED: &str = "interrupted";

struct Shared {
    presigner: Arc<dyn Presigner>,
    storage: Storage,
    options: PipelineOptions,
    manifest: Arc<Manifest>,
    tally: Arc<Tally>,
    progress: Progress,
    stop: tokio::sync::watch::Receiver<StopLevel>,
    /// The stop level already announced on stderr.
    announced: Mutex<StopLevel>,
    /// Set by a failure that dooms every file (401): the message, once.
    fatal: Mutex<Option<String>>,
    /// The abort came from a drain that outlasted its timeout, not from a second request.
    drain_expired: AtomicBool,
    /// Uploads in flight; told when the API or storage pushes back.
    limiter: Arc<Limiter>,
}

impl Shared {
    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records what dooms the run; `true` when it is the first such message.
    fn set_fatal(&self, message: &str) -> bool {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        let first = fatal.is_none();
        if first {
            *fatal = Some(message.to_string());
        }
        first
    }

    fn stopping(&self) -> StopLevel {
        *self.stop.borrow()
    }

    /// Prints what the current stop level does, once per level.
    fn announce_stop(&self) {
        let level = self.stopping();
        let mut said = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        while *said < level {
            *said = match *said {
                StopLevel::Run => {
                    self.progress.print(
                        "hashup: interrupted: taking no new files; waiting for the uploads in flight (Ctrl-C again to abort them)",
                    );
                    StopLevel::Drain
                }
                _ if self.drain_expired.load(Ordering::Relaxed) => {
                    self.progress.print(&format!(
                        "hashup: the uploads in flight did not finish within {} s: aborting them",
                        self.options.drain_timeout.as_secs()
                    ));
                    StopLevel::Abort
                }
                _ => {
                    self.progress
                        .print("hashup: interrupted again: aborting the uploads in flight");
                    StopLevel::Abort
                }
            };
        }
    }

    /// Counts a file the engine handed over: read and hashed, or answered by the cache.
    fn count_hashed(&self, file: &HashedFile) {
        let tally = &self.tally;
        if file.cached {
            tally.cached.fetch_add(1, Ordering::Relaxed);
        } else {
            tally
                .bytes_hashed
                .fetch_add(file.stamp.size, Ordering::Relaxed);
        }
        tally
            .hash_nanos
            .fetch_add(file.hash_time.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A file already stored: counted as skipped, never printed (an unchanged night must not
    /// fill the log), and recorded unless the journal this run appends to already says so.
    fn finish_stored(&self, file: &HashedFile, evidence: Evidence, checked: bool) {
        self.tally.already_stored.fetch_add(1, Ordering::Relaxed);
        if checked {
            self.tally.confirmed.fetch_add(1, Ordering::Relaxed);
        }
        self.count(Status::Skipped, file.stamp.size);
        if evidence != Evidence::Journal {
            self.write(&record(
                file,
                Status::Skipped,
                None,
                0,
                Some(evidence.reason().into()),
                Instant::now(),
            ));
        }
    }

    /// A file's outcome: counted, its error printed, recorded.
    fn finish(&self, record: Record) {
        self.count(record.status, record.size.unwrap_or(0));
        // After a fatal answer every later failure is its consequence: one message says it all.
        if let Some(error) = record.error.as_ref().filter(|_| self.fatal().is_none()) {
            self.progress.print(&format!(
                "hashup: {}: {error}",
                crate::message::shown(&record.path)
            ));
        }
        self.write(&record);
    }

    fn count(&self, status: Status, size: u64) {
        let tally = &self.tally;
        let counter = match status {
            Status::Uploaded => &tally.uploaded,
            Status::Failed => &tally.failed,
            Status::Skipped => &tally.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tally.done.fetch_add(1, Ordering::Relaxed);
        if status == Status::Uploaded {
            tally.bytes_uploaded.fetch_add(size, Ordering::Relaxed);
        }
    }

    /// Journals a record. The journal is what a rerun resumes from: a record that cannot be
    /// written stops the run (no new files are taken) and its exit status says so.
    fn write(&self, record: &Record) {
        if let Err(err) = self.manifest.record(record) {
            let message = journal_lost(&err);
            if self.set_fatal(&message) {
                self.progress.print(&format!("hashup: {message}"));
            }
        }
    }
}

/// Follows the caller's stop requests into the run's own stop level, and turns a drain that
/// outlasts `drain_timeout` into an abort (`expired` then says so).
async fn follow_stop(
    mut outside: tokio::sync::watch::Receiver<StopLevel>,
    inside: tokio::sync::watch::Sender<StopLevel>,
    drain_timeout: Duration,
    expired: Arc<Shared>,
) {
    let mut drain_deadline = None;
    // Whether more requests can come (the caller may drop its sender).
    let mut open = true;
    loop {
        let level = *outside.borrow_and_update();
        inside.send_if_modified(|now| {
            let higher = level > *now;
            if higher {
                *now = level;
            }
            higher
        });
        if level == StopLevel::Abort {
            return;
        }
        if level == StopLevel::Drain && drain_deadline.is_none() {
            drain_deadline = Some(tokio::time::Instant::now() + drain_timeout);
        }
        let timeout = async {
            match drain_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = outside.changed(), if open => open = changed.is_ok(),
            () = timeout => {
                expired.drain_expired.store(true, Ordering::Relaxed);
                let _ = inside.send(StopLevel::Abort);
                return;
            }
        }
    }
}

/// Hashes and uploads `entries` (from [`crate::naming::plan`]), writing one manifest record per file.
///
/// Returns once every file has an outcome, or early after a fatal answer or a stop request;
/// then [`Summary::stopped`] says why and [`Summary::not_started`] counts the files never taken
/// up (they have no record).
pub async fn run(
    entries: crate::naming::Plan,
    presigner: Arc<dyn Presigner>,
    storage: Storage,
    options: PipelineOptions,
    manifest: Arc<Manifest>,
    requests: tokio::sync::watch::Receiver<StopLevel>,
) -> anyhow::Result<Report> {
    // The run's own stop level: the caller's requests, and an abort when a drain runs too long.
    let (level, stop) = tokio::sync::watch::channel(*requests.borrow());
    let drain_timeout = options.drain_timeout;
    let started = Instant::now();
    let tally = Arc::new(Tally::default());
    tally.planned.store(entries.len() as u64, Ordering::Relaxed);
    let limiter = Limiter::new(options.uploads);
    let storage = storage
        .counting_sent(tally.bytes_sent.clone())
        .telling(limiter.clone());
    if let Some(cap) = storage.cap() {
        let _ = tally.cap.set(cap.clone());
    }
    let hasher = Hasher::spawn(entries, &options.hash)?;
    let progress = Progress::start(options.progress, tally.clone(), started);
    let shared = Arc::new(Shared {
        presigner,
        storage,
        options,
        manifest,
        tally,
        progress,
        stop: stop.clone(),
        announced: Mutex::new(StopLevel::Run),
        fatal: Mutex::new(None),
        drain_expired: AtomicBool::new(false),
        limiter: limiter.clone(),
    });
    let helpers = [
        tokio::spawn(follow_stop(requests, level, drain_timeout, shared.clone())),
        tokio::spawn(announce_stops(shared.clone())),
        tokio::spawn(limiter.clone().control(
            Some(shared.tally.bytes_sent.clone()),
            Some(shared.tally.uploads_limit.clone()),
        )),
    ];
    let (hashed, bridge) = bridge(hasher)?;

    let mut tasks = feed(&shared, hashed).await;
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    for helper in helpers {
        helper.abort();
    }
    shared.announce_stop(); // a stop that came as the last task ended is still said
    shared.progress.finish();
    // The engine finishes the files it is hashing before it stops (a big one takes a while):
    // an abort stops waiting for it.
    tokio::select! {
        _ = tokio::task::spawn_blocking(move || bridge.join()) => {}
        () = reached(stop.clone(), StopLevel::Abort) => {}
    }

    let interrupted = shared.stopping() > StopLevel::Run;
    let mut summary = summarize(&shared, started.elapsed(), interrupted);
    if shared.options.journal_summary {
        write_summary(&shared.manifest, &mut summary);
    }
    Ok(Report {
        summary,
        interrupted,
    })
}

/// Moves the engine's outcomes into the async world. The engine is a blocking iterator, so a
/// plain thread does it, in the batches the workers made (a hand-off per file cost a rerun of
/// 50,000 cached files about 10 % of its CPU in wake-ups). Backpressure stays per file: [`feed`]
/// takes an upload slot for each. Dropping the receiver stops the thread at its next send.
fn bridge(
    mut hasher: Hasher,
) -> std::io::Result<(
    tokio::sync::mpsc::Receiver<Vec<Outcome>>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Outcome>>(4);
    let thread = std::thread::Builder::new()
        .name("hashup-bridge".into())
        .spawn(move || {
            while let Some(batch) = hasher.next_batch() {
                if tx.blocking_send(batch).is_err() {
                    break; // the run stopped
                }
            }
        })?;
    Ok((rx, thread))
}

/// Says once what each stop request does, through the progress display.
async fn announce_stops(shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    while stop.changed().await.is_ok() {
        shared.announce_stop();
    }
}

/// Takes each hashed file: records a failure or a file already stored, or starts its upload
/// once a slot is free. Returns the uploads still running when the files ran out or the run
/// was asked to stop (drain) or doomed (fatal).
async fn feed(
    shared: &Arc<Shared>,
    mut hashed: tokio::sync::mpsc::Receiver<Vec<Outcome>>,
) -> tokio::task::JoinSet<()> {
    let stop = &shared.stop;
    let mut tasks = tokio::task::JoinSet::new();
    let mut batch = Vec::new().into_iter();
    'feed: loop {
        let Some(outcome) = batch.next() else {
            tokio::select! {
                biased;
                () = reached(stop.clone(), StopLevel::Drain) => break,
                next = hashed.recv() => match next {
                    Some(next) => batch = next.into_iter(),
                    None => break,
                },
            }
            continue;
        };
        if shared.stopping() > StopLevel::Run {
            break;
        }
        let file = match outcome.result {
            Err(err) => {
                shared.finish(error_record(&err));
                continue;
            }
            Ok(file) => file,
        };
        shared.count_hashed(&file);
        let resent = match shared.options.stored.decide(
            &file.name.to_string_lossy(),
            file.stamp.size,
            &file.hex(),
        ) {
            Decision::Stored { evidence, checked } => {
                shared.finish_stored(&file, evidence, checked);
                continue;
            }
            Decision::Send(resent) => resent,
        };
        if let Some(why) = &resent {
            shared.tally.resent.fetch_add(1, Ordering::Relaxed);
            shared.progress.print(&format!(
                "hashup: {}: sending again: {why}",
                crate::message::shown_path(&file.path)
            ));
        }
        // Files are taken up ahead of the upload slots, up to twice the limit, so that each
        // presign runs while other files upload and a slot never waits on the API's round trip.
        while tasks.try_join_next().is_some() {}
        while tasks.len() >= ahead_bound(shared) {
            tokio::select! {
                biased;
                () = reached(stop.clone(), StopLevel::Drain) => break 'feed,
                _ = tasks.join_next() => {}
            }
        }
        if shared.fatal().is_some() {
            break;
        }
        let shared = shared.clone();
        let drain = reached(stop.clone(), StopLevel::Drain);
        let abort = reached(stop.clone(), StopLevel::Abort);
        tasks.spawn(async move {
            // Until its slot, a file has not started: a stop leaves it to the summary's
            // `not_started`.
            let (ahead, slot) = tokio::select! {
                biased;
                () = drain => return,
                taken = async {
                    let ahead = presign_ahead(&shared, &file).await;
                    (ahead, shared.limiter.acquire().await)
                } => taken,
            };
            // The file's time is its presign's and its send's, not its wait for a slot.
            let took = ahead.as_ref().map_or(Duration::ZERO, |ahead| ahead.took);
            let started = Instant::now()
                .checked_sub(took)
                .unwrap_or_else(Instant::now);
            let fallback = file.clone();
            let mut record = tokio::select! {
                record = upload_one(&shared, file, ahead, started) => record,
                () = abort => record(
                    &fallback,
                    Status::Failed,
                    None,
                    0,
                    Some("interrupted while uploading: aborted".into()),
                    started,
                ),
            };
            record.resent = resent;
            shared.finish(record);
            drop(slot);
        });
    }
    tasks
}

/// How many files may be taken up at once: those uploading (up to the limit) and as many
/// again presigning or presigned, waiting for a slot.
fn ahead_bound(shared: &Shared) -> usize {
    shared.limiter.limit().saturating_mul(2).max(1)
}

/// How long a URL asked for ahead may wait for its slot: the API's URLs live 600 s, and a
/// file is to be sent soon after its URL is made. An older one is asked for again.
const AHEAD_FRESH: Duration = Duration::from_secs(60);

/// The API's answer for a file, asked for before the file's slot: a file that goes in parts,
/// one too large to send whole, and any file of a run already doomed get none.
type Ahead = Option<Presigned>;

struct Presigned {
    answer: Result<Target, PresignError>,
    /// When the answer came.
    at: Instant,
    /// How long it took: the file's time includes it (but not the wait for a slot).
    took: Duration,
}

impl Presigned {
    fn refused(&self) -> bool {
        matches!(self.answer, Err(PresignError::Fatal { .. }))
    }
}

/// The presign of a file's first attempt, made while it waits for its upload slot.
async fn presign_ahead(shared: &Shared, file: &HashedFile) -> Ahead {
    if in_parts(shared, file).is_some()
        || file.stamp.size > MAX_OBJECT_SIZE
        || shared.fatal().is_some()
    {
        return None;
    }
    let name = file.name.to_string_lossy();
    let asked = Instant::now();
    let answer = shared.presigner.presign(&name, &file.hex()).await;
    // A refused token dooms every file: no more are taken up from now on.
    if let Err(PresignError::Fatal { message, .. }) = &answer {
        shared.set_fatal(message);
    }
    Some(Presigned {
        answer,
        at: Instant::now(),
        took: asked.elapsed(),
    })
}

/// The run's counts and rates, for the manifest's last line and stderr's.
fn summarize(shared: &Shared, elapsed: Duration, interrupted: bool) -> Summary {
    let t = &shared.tally;
    let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let (uploaded, bytes, done) = (get(&t.uploaded), get(&t.bytes_uploaded), get(&t.done));
    let secs = elapsed.as_secs_f64().max(1e-9);
    Summary {
        files: done,
        uploaded,
        failed: get(&t.failed),
        skipped: get(&t.skipped),
        not_started: get(&t.planned).saturating_sub(done),
        bytes,
        bytes_hashed: get(&t.bytes_hashed),
        cached: get(&t.cached),
        already_stored: get(&t.already_stored),
        confirmed: get(&t.confirmed),
        resent: get(&t.resent),
        elapsed_ms: elapsed.as_millis() as u64,
        hash_gb_per_s: get(&t.bytes_hashed) as f64 / (get(&t.hash_nanos) as f64).max(1.0),
        upload_mb_per_s: bytes as f64 / secs / 1e6,
        objects_per_s: uploaded as f64 / secs,
        uploads_limit: shared.limiter.limit() as u64,
        uploads_limit_max: shared.limiter.highest() as u64,
        stopped: shared
            .fatal()
            .or_else(|| interrupted.then(|| INTERRUPTED.to_string())),
        delete: None,
    }
}

/// Writes the run's summary line; a manifest that cannot take it makes the run one that stopped
/// (every file has its outcome, but the journal does not say so: not a success).
pub fn write_summary(manifest: &Manifest, summary: &mut Summary) {
    if let Err(err) = manifest.summary(summary) {
        summary.stopped.get_or_insert_with(|| journal_lost(&err));
    }
}

/// Why a run stopped when its manifest could not be written.
fn journal_lost(err: &std::io::Error) -> String {
    format!(
        "cannot write the manifest: {}; files not journalled are sent again by the next run",
        crate::message::plain_io_message(err)
    )
}

/// The record of a file the engine could not hash (or skipped).
fn error_record(err: &FileError) -> Record {
    Record {
        name: err.name.to_string_lossy().into_owned(),
        path: err.path.to_string_lossy().into_owned(),
        size: None,
        mtime: None,
        sha256: None,
        status: if err.is_skip() {
            Status::Skipped
        } else {
            Status::Failed
        },
        http_status: None,
        attempts: 0,
        error: Some(err.kind.to_string()),
        duration_ms: 0,
        checksum_sha256_composite: None,
        etag: None,
        stored_at: None,
        resent: None,
    }
}

/// Why a file was not uploaded, kept typed until its record is written.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The API (or the local signer) gave no target.
    #[error(transparent)]
    Presign(PresignError),
    /// Storage did not take the bytes.
    #[error(transparent)]
    Transfer(TransferError),
    /// Storage did not take the parts.
    #[error(transparent)]
    Parts(MultipartError),
    /// The file could not be looked at again before or after sending.
    #[error("{}", crate::message::plain_io_message(.0))]
    Stat(std::io::Error),
    /// The file could not be hashed again after it changed.
    #[error("{0}")]
    Rehash(String),
    /// The file changed every time it was hashed again.
    #[error("file kept changing ({MAX_REHASH} times hashed again)")]
    KeptChanging,
    /// This file's failure doomed the run (a 401, refused credentials, an API never reached):
    /// the run's message.
    #[error("{0}")]
    Fatal(String),
    /// Another file's failure doomed the run: its message.
    #[error("not uploaded: the run stopped ({0})")]
    RunStopped(String),
    /// A stop request came between attempts; what the last attempt ran into.
    #[error("interrupted before a retry; last attempt: {0}")]
    Interrupted(String),
}

impl Failure {
    /// Whether the API said it is full: 429, 503, 504, or no answer in time (a timeout, a
    /// refused or dropped connection). Storage tells the limiter itself, of every request
    /// including a big file's parts ([`Storage::telling`]).
    fn is_push_back(&self) -> bool {
        matches!(self, Failure::Presign(err) if err.class() == Class::PushBack)
    }
}

/// What the store answered a file's upload with, for its record.
#[derive(Debug, Default)]
struct Receipt {
    /// A multipart upload's composite checksum.
    composite: Option<String>,
    /// The object's ETag.
    etag: Option<String>,
    /// The store's clock when it answered.
    date: Option<std::time::SystemTime>,
}

impl Receipt {
    fn of(sent: crate::transfer::Sent) -> Receipt {
        Receipt {
            composite: None,
            etag: sent.etag,
            date: sent.date,
        }
    }
}

/// What one attempt (presign, check, send) came to.
enum Attempt {
    /// Stored: what the store answered.
    Uploaded(Receipt),
    /// The file is not what was hashed (before or during the send): hash again.
    Changed(String),
    /// Worth another try: after a backoff of at least the server's `Retry-After`
    /// (`backoff: Some(retry_after)`), or at once (`None`, e.g. an expired URL to sign again).
    Retry {
        failure: Failure,
        backoff: Option<Option<Duration>>,
    },
    /// This file failed.
    Failed(Failure),
    /// Every file would fail: stop the run with this message.
    Fatal(String),
}

/// Presigns and sends one file, retrying as the policy allows; its record.
///
/// Steps of each attempt: presign, check the file is still what was hashed, send, check again.
/// A file that changed is hashed again (at most [`MAX_REHASH`] times); transient failures are
/// retried with backoff ([`Retrying`]); a fatal answer stops the run.
async fn upload_one(
    shared: &Shared,
    mut file: HashedFile,
    mut ahead: Ahead,
    started: Instant,
) -> Record {
    let mut retry = Retrying::new(shared.options.requests.policy());
    let mut rehashes = 0u32;
    let mut http_status = None;
    // Why the last attempt did not succeed, for the record if the run stops before a retry.
    let mut last_error = String::new();

    let failure = loop {
        // The file whose URL was refused is recorded with that refusal, not as stopped by it.
        let refused = ahead.as_ref().is_some_and(Presigned::refused);
        if let Err(failure) = may_start(shared, &file, &retry, &last_error, refused) {
            break failure;
        }
        retry.attempt();
        match attempt(shared, &file, &mut http_status, ahead.take()).await {
            Attempt::Uploaded(receipt) => {
                let mut record = record(
                    &file,
                    Status::Uploaded,
                    http_status,
                    retry.attempts(),
                    None,
                    started,
                );
                record.checksum_sha256_composite = receipt.composite;
                record.etag = receipt.etag;
                record.stored_at = receipt.date.map(crate::utc::rfc3339_nanos);
                return record;
            }
            Attempt::Changed(why) => {
                last_error = why;
                match hash_again(&file, &shared.options.hash, &mut rehashes).await {
                    Ok(again) => file = again,
                    Err(failure) => break failure,
                }
            }
            Attempt::Retry { failure, backoff } => {
                if failure.is_push_back() {
                    shared.limiter.pushed_back();
                }
                let delay = match backoff {
                    Some(retry_after) => retry.backoff(retry_after),
                    None => retry.again().then_some(Duration::ZERO),
                };
                match delay {
                    Some(delay) => {
                        last_error = failure.to_string();
                        pause(shared, delay).await;
                    }
                    None => break out_of_retries(shared, failure),
                }
            }
            Attempt::Failed(failure) => break failure,
            Attempt::Fatal(message) => {
                let _ = shared.set_fatal(&message);
                break Failure::Fatal(message);
            }
        }
    };
    record(
        &file,
        Status::Failed,
        http_status,
        retry.attempts(),
        Some(failure.to_string()),
        started,
    )
}

/// Whether another attempt may start: not for a file over the single-upload limit, not after
/// a fatal answer, and no retry once the run is asked to stop.
fn may_start(
    shared: &Shared,
    file: &HashedFile,
    retry: &Retrying,
    last_error: &str,
    refused: bool,
) -> Result<(), Failure> {
    if file.stamp.size > MAX_OBJECT_SIZE && in_parts(shared, file).is_none() {
        return Err(Failure::Transfer(TransferError::TooLarge {
            size: file.stamp.size,
        }));
    }
    if let Some(fatal) = shared.fatal()
        && !refused
    {
        return Err(Failure::RunStopped(fatal));
    }
    if retry.attempts() > 0 && shared.stopping() > StopLevel::Run {
        return Err(Failure::Interrupted(last_error.to_string()));
    }
    Ok(())
}

/// One attempt: presign, check the file is unchanged, send, check again. (A big file in direct
/// S3 mode goes in parts instead, which retry and check on their own.)
async fn attempt(
    shared: &Shared,
    file: &HashedFile,
    http_status: &mut Option<u16>,
    ahead: Ahead,
) -> Attempt {
    if let Some(parts) = in_parts(shared, file) {
        let sent = parts
            .upload(&shared.storage, &source(file), shared.stop.clone())
            .await;
        *http_status = sent
            .as_ref()
            .map_or_else(|e| e.status(), |done| Some(done.status));
        return sent.map_or_else(
            |err| parts_failed(shared, err),
            |done| {
                Attempt::Uploaded(Receipt {
                    composite: Some(done.composite),
                    etag: done.etag,
                    date: None,
                })
            },
        );
    }
    let name = file.name.to_string_lossy();
    let answer = match ahead {
        Some(ahead) if ahead.at.elapsed() < AHEAD_FRESH => ahead.answer,
        _ => shared.presigner.presign(&name, &file.hex()).await,
    };
    let target = match answer {
        Ok(target) => {
            shared.options.requests.mark_answered();
            target
        }
        Err(err) => {
            *http_status = err.status();
            return presign_failed(err);
        }
    };
    // Send only bytes that still are the bytes hashed, checked after the presign round trip
    // (right before the first byte goes), on the very file that is sent.
    let opened = match open_unchanged(file).await {
        Ok(opened) => opened,
        Err(attempt) => return attempt,
    };
    match shared
        .storage
        .send_file(&target, opened, &name, file.stamp.size)
        .await
    {
        // The store hashed what it received and took it only because it matched: it holds
        // exactly the bytes hashed, whatever became of the file since (deleted, rewritten
        // after the last byte went).
        Ok(sent) if target.store_verifies_checksum() => {
            *http_status = Some(sent.status);
            Attempt::Uploaded(Receipt::of(sent))
        }
        Ok(sent) => {
            *http_status = Some(sent.status);
            match FileStamp::current(&file.path).await {
                Ok(stamp) if stamp == file.stamp => Attempt::Uploaded(Receipt::of(sent)),
                // What arrived may not match the checksum sent with it.
                _ => Attempt::Changed("the file changed while it was sent".into()),
            }
        }
        Err(err) => {
            *http_status = err.status().or(*http_status);
            send_failed(shared, file, err).await
        }
    }
}

/// Opens `file` to send it, if it still has the stamp it was hashed with (stat'ed through the
/// open file, in one trip to a blocking thread: a stat on a slow or hung file system must not
/// hold up a runtime worker); else what the attempt came to.
async fn open_unchanged(file: &HashedFile) -> Result<tokio::fs::File, Attempt> {
    let path = file.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let opened = std::fs::File::open(&path).map_err(|e| (e, true))?;
        let meta = opened.metadata().map_err(|e| (e, false))?;
        Ok((opened, FileStamp::of(&meta)))
    })
    .await
    .unwrap_or_else(|join| Err((std::io::Error::other(join), false)));
    match opened {
        Ok((opened, stamp)) if stamp == file.stamp => Ok(tokio::fs::File::from_std(opened)),
        Ok(_) => Err(Attempt::Changed(
            "the file changed after it was hashed".into(),
        )),
        // Gone or unreadable since it was hashed: said as a stat would say it.
        Err((err, true)) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(Attempt::Failed(Failure::Stat(err)))
        }
        Err((err, true)) => Err(Attempt::Failed(Failure::Transfer(TransferError::Open(err)))),
        Err((err, false)) => Err(Attempt::Failed(Failure::Stat(err))),
    }
}

/// What a presign failure means for the file and the run.
fn presign_failed(err: PresignError) -> Attempt {
    match err.class() {
        Class::Fatal => Attempt::Fatal(err.to_string()),
        Class::Transient | Class::PushBack => Attempt::Retry {
            backoff: Some(err.retry_after()),
            failure: Failure::Presign(err),
        },
        Class::Resign => Attempt::Retry {
            backoff: None,
            failure: Failure::Presign(err),
        },
        Class::Object => Attempt::Failed(Failure::Presign(err)),
    }
}

/// The multipart engine, if `file` goes in parts.
fn in_parts<'a>(shared: &'a Shared, file: &HashedFile) -> Option<&'a Multipart> {
    let parts = shared.options.multipart.as_deref()?;
    parts.applies(file.stamp.size).then_some(parts)
}

/// What the multipart engine is told of `file`.
fn source(file: &HashedFile) -> Source {
    Source {
        path: file.path.clone(),
        name: file.name.to_string_lossy().into_owned(),
        stamp: file.stamp,
        sha256: file.sha256,
    }
}

/// What a multipart failure means for the file and the run (the engine retried already).
fn parts_failed(shared: &Shared, err: MultipartError) -> Attempt {
    if let Some(message) = err
        .refusal()
        .and_then(|refusal| shared.presigner.fatal_refusal(refusal))
    {
        return Attempt::Fatal(message);
    }
    match err {
        MultipartError::Changed(why) => Attempt::Changed(why),
        err => Attempt::Failed(Failure::Parts(err)),
    }
}

/// What a send failure means for the file and the run.
async fn send_failed(shared: &Shared, file: &HashedFile, err: TransferError) -> Attempt {
    if let Some(message) = err
        .refusal()
        .and_then(|refusal| shared.presigner.fatal_refusal(refusal))
    {
        return Attempt::Fatal(message);
    }
    // Changed while it was sent: storage may have refused exactly that (a verifying store
    // answers 400 BadDigest). Hash again and send again.
    if FileStamp::current(&file.path)
        .await
        .is_ok_and(|stamp| stamp != file.stamp)
    {
        return Attempt::Changed(format!("the file changed while it was sent ({err})"));
    }
    match err {
        // Most likely the URL expired (or the clock is off): presign again at once.
        err @ TransferError::Forbidden(_) => Attempt::Retry {
            failure: Failure::Transfer(err),
            backoff: None,
        },
        TransferError::Transient { retry_after, .. } => Attempt::Retry {
            failure: Failure::Transfer(err),
            backoff: Some(retry_after),
        },
        err => Attempt::Failed(Failure::Transfer(err)),
    }
}

/// A transient failure with no retry left. Until the API has answered once, an API that
/// cannot be reached dooms the run rather than one file.
fn out_of_retries(shared: &Shared, failure: Failure) -> Failure {
    match failure {
        Failure::Presign(err @ PresignError::Transient { .. })
            if shared.options.requests.unreachable(&err) =>
        {
            let PresignError::Transient { message, .. } = err else {
                unreachable!("matched above")
            };
            let message = format!("cannot reach the PROMINENCE API: {message}");
            let _ = shared.set_fatal(&message);
            Failure::Fatal(message)
        }
        failure => failure,
    }
}

/// Waits out a backoff, cut short when the run is asked to stop.
async fn pause(shared: &Shared, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = reached(shared.stop.clone(), StopLevel::Drain) => {}
    }
}

fn record(
    file: &HashedFile,
    status: Status,
    http_status: Option<u16>,
    attempts: u32,
    error: Option<String>,
    started: Instant,
) -> Record {
    Record {
        name: file.name.to_string_lossy().into_owned(),
        path: file.path.to_string_lossy().into_owned(),
        size: Some(file.stamp.size),
        mtime: Some(crate::utc::rfc3339_nanos(file.stamp.modified())),
        sha256: Some(file.hex()),
        status,
        http_status,
        attempts,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        checksum_sha256_composite: None,
        etag: None,
        stored_at: None,
        resent: None,
    }
}

/// Hashes a file again (on a blocking thread) after it changed. A file that changes while it
/// is hashed again costs another of the [`MAX_REHASH`] tries (`rehashes` counts them), as any
/// other change does.
async fn hash_again(
    file: &HashedFile,
    options: &HashOptions,
    rehashes: &mut u32,
) -> Result<HashedFile, Failure> {
    loop {
        if *rehashes == MAX_REHASH {
            return Err(Failure::KeptChanging);
        }
        *rehashes += 1;
        let entry = FileEntry {
            path: file.path.clone(),
            name: file.name.clone(),
            follow: true,
        };
        let options = options.clone();
        let hashed =
            tokio::task::spawn_blocking(move || crate::hash::io::Reader::new(&options).hash(entry))
                .await
                .map_err(|e| Failure::Rehash(e.to_string()))?;
        match hashed {
            Ok(again) => return Ok(again),
            Err(err) if matches!(err.kind, FileErrorKind::ChangedWhileReading) => continue,
            Err(err) => return Err(Failure::Rehash(err.kind.to_string())),
        }
    }
}
