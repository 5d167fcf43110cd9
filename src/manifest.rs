//! The upload manifest, which doubles as the run's journal: JSON Lines, one [`Record`] per file
//! as it finishes, then one `{"summary": ...}` line ([`Summary`]).
//!
//! **Durability.** Each record is written and flushed to the kernel before [`Manifest::record`]
//! returns, so a killed process loses nothing that finished. Surviving a crash of the machine
//! takes an fsync; one per record would cost a disk flush per file, so a background thread calls
//! `sync_data` in batches instead: at most [`SYNC_INTERVAL`] after the oldest unsynced record was
//! written, and at once for the summary and when the manifest is dropped. After a power loss the
//! file therefore holds every record written up to about a second before, and possibly a torn
//! last line.
//!
//! **Multipart uploads** (direct S3 mode) add three line kinds, so that a run killed half way
//! through a big file can be resumed: `{"multipart": {...}}` ([`UploadStarted`]) when the upload
//! is created, `{"part": {...}}` ([`PartSent`]) as each part is stored, and
//! `{"multipart_end": {...}}` ([`UploadEnded`]) when it is completed or aborted. They are
//! written and flushed like records.
//!
//! **Mirror deletes** (`upload --delete`) add `{"deleted": {...}}` ([`Deleted`]): written and
//! flushed *before* the DELETE is sent, so the journal never vouches for an object that may be
//! gone (a run killed between the two leaves a line for an object still stored, which costs the
//! next run at most an upload). A DELETE that fails adds a second `deleted` line for the name
//! carrying its `error`. A name whose last line is a `deleted` one (after its last record) is
//! no longer stored as far as the journal knows: [`Journal::latest`] leaves it out, and a rerun
//! sends the file again if it comes back.
//!
//! **Names gone locally** add `{"gone": {...}}` and `{"back": {...}}` ([`LocalLine`]). A run
//! that sees the whole tree journals, before its pipeline starts, a `gone` line for each name
//! this manifest records as stored whose file lay under one of the run's PATHs and which no
//! file of the run maps to any more (once: not again while the name's last such line is a
//! `gone` one). A `back` line says a file maps to a gone name again; an unchanged file that
//! comes back is skipped as already stored and gets no record, so without it the name would
//! stay gone. A later record for the name supersedes a `gone` line too. A gone name is still
//! stored (nothing was deleted): [`Journal::latest`], and so what a rerun skips, ignores these
//! lines; [`Journal::gone`] gives the names gone now. Versions from before these lines skip
//! them as unknown kinds (but for the oldest ones, which refuse any unknown kind: see below).
//!
//! **Reading.** [`read`] returns a [`Journal`]: the records, the summary if the last run wrote
//! one, the multipart uploads still open, the `deleted`, `gone` and `back` lines, and the line
//! number of a torn (unparseable) last line, which is tolerated. An unparseable line anywhere
//! else is an error naming the file and line; a line that is one JSON object under a single key
//! of a kind this version does not know (`{"kind": {...}}`) is skipped, so later versions may
//! add kinds. (Versions from before the multipart lines did not skip unknown kinds: they refuse
//! such a manifest as unparseable.)
//! Several runs appended to one file ([`Manifest::append`]) read as one journal;
//! [`Journal::latest`] gives each name's last record. A run that resumes a journal reads it
//! into an [`index::Index`] instead: the same lines, through the same parser, folded into one
//! compact entry per name.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::multipart::PartsJournal;
pub use crate::multipart::{Ending, OpenUpload, PartSent, UploadStarted};

pub mod index;

/// The longest a written record waits for its fsync while the run goes on.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What became of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored, with its checksum.
    Uploaded,
    /// Not stored: see `error`.
    Failed,
    /// Not a regular file (or a link not followed): left alone, not a failure.
    Skipped,
}

impl Status {
    /// The word used in the manifest (`uploaded`, `failed`, `skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Uploaded => "uploaded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One file's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The object name.
    pub name: String,
    /// The local path (lossy UTF-8).
    #[serde(default)]
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Modification time, RFC 3339 UTC with nanoseconds, when known.
    pub mtime: Option<String>,
    /// SHA-256 (lowercase hex) of what was uploaded, when hashed.
    pub sha256: Option<String>,
    /// The outcome.
    pub status: Status,
    /// The last HTTP status seen (storage's on success, else the API's or storage's).
    pub http_status: Option<u16>,
    /// Presign-and-send attempts made (0 when none was).
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Time from taking the file up to its outcome.
    #[serde(default)]
    pub duration_ms: u64,
    /// The store's composite checksum of a multipart upload (`base64(SHA-256 of the parts'
    /// SHA-256s)-N`); absent for a single request, whose stored checksum is the file's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha256_composite: Option<String>,
    /// The ETag the store answered the upload with (quotes kept), where it gave one: what
    /// `upload --check-remote` compares a listing's ETag with, so that an object another
    /// client rewrote with bytes of the same size is caught.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// When the store acknowledged the upload, RFC 3339 UTC with nanoseconds: what
    /// `upload --check-remote` compares a listed last-modified time with, where a listing has
    /// nothing stronger (a PROMINENCE API listing names and sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
    /// Why a file the journal recorded as stored was sent again: `upload --check-remote`
    /// found its object missing or different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent: Option<String>,
}

/// The final line's content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Files seen (uploaded + failed + skipped).
    pub files: u64,
    /// Files uploaded.
    pub uploaded: u64,
    /// Files failed.
    pub failed: u64,
    /// Files skipped.
    pub skipped: u64,
    /// Files planned but never taken up, because the run stopped early (fatal error or
    /// interrupt); they have no record.
    #[serde(default)]
    pub not_started: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes read and hashed (files answered by the hash cache are not read).
    #[serde(default)]
    pub bytes_hashed: u64,
    /// Files skipped because they are already stored (a subset of `skipped`).
    #[serde(default)]
    pub already_stored: u64,
    /// Of those, files a listing of the destination agreed with (`--check-remote`,
    /// `--skip-existing`); the others rest on the manifests alone: unchanged since they were
    /// uploaded, the store not asked.
    #[serde(default)]
    pub confirmed: u64,
    /// Files the manifests said were stored, sent again because `--check-remote` found their
    /// object missing or different (a subset of the files taken up).
    #[serde(default)]
    pub resent: u64,
    /// Files whose SHA-256 came from the hash cache.
    #[serde(default)]
    pub cached: u64,
    /// Wall time of the whole run.
    pub elapsed_ms: u64,
    /// Hashing speed per thread while hashing, in GB/s (10^9): bytes hashed over
    /// the time hashing threads spent on them. Unlike a rate over the run's wall
    /// time, it does not fall when uploads are the bottleneck.
    #[serde(default)]
    pub hash_gb_per_s: f64,
    /// Bytes uploaded per second of the run, in MB/s (10^6).
    #[serde(default)]
    pub upload_mb_per_s: f64,
    /// Objects uploaded per second of the run.
    #[serde(default)]
    pub objects_per_s: f64,
    /// Uploads allowed in flight at the end of the run: what `--uploads auto` settled on (or
    /// the fixed `--uploads N`); 0 where unknown (older manifests, merges).
    #[serde(default)]
    pub uploads_limit: u64,
    /// The highest limit the run reached.
    #[serde(default)]
    pub uploads_limit_max: u64,
    /// Why the run stopped early, if it did.
    #[serde(default)]
    pub stopped: Option<String>,
    /// What `--delete` did; absent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteSummary>,
}

/// The summary's `delete` object: what a `--delete` run deleted, or why it deleted nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteSummary {
    /// Objects found to delete: stored under the destination, selected, and no local file maps
    /// to them (0 when the listing was not asked, because the run was incomplete).
    pub found: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Deletions that failed.
    pub failed: u64,
    /// Wall time of listing and deleting, after the uploads (the summary's own `elapsed_ms`,
    /// and its rates, are the uploads').
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Why nothing (or not everything found) was deleted: the run was incomplete, more than
    /// `--max-delete` would have gone, the listing failed, or the run was interrupted.
    #[serde(default)]
    pub stopped: Option<String>,
}

/// A stored object deleted by `--delete`, journalled as `{"deleted": {...}}` before its DELETE
/// is sent; a failed DELETE adds a second line for the name with `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The object name (as file records name objects).
    pub name: String,
    /// The storage key, where known: direct S3 mode's `PREFIX/name`, PROMINENCE's
    /// `uploads/<group path>/...` or, for one's own uploads when the user is known (the embedded
    /// store), `uploads/<user>/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its size as listed.
    pub size: u64,
    /// When the DELETE was sent (or failed), RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// Why the DELETE failed; absent when it was sent (and, on the line written before it,
    /// not yet answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The line of a [`Deleted`]: `{"deleted": {...}}`.
#[derive(Serialize, Deserialize)]
struct DeletedLine<D> {
    deleted: D,
}

/// What a run saw of a name the journal records as stored: its file gone from the local tree,
/// or back in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The object name (as file records name objects).
    pub name: String,
    /// When the run saw it (before its pipeline started), RFC 3339 UTC with nanoseconds.
    pub time: String,
}

/// A journal line about a stored name's local file: `{"gone": {...}}` or `{"back": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalLine {
    /// No file of a run that saw the whole tree maps to the name any more; its object is
    /// still stored.
    Gone(Presence),
    /// A file maps to a gone name again.
    Back(Presence),
}

impl LocalLine {
    /// The name and time the line carries.
    pub fn presence(&self) -> &Presence {
        match self {
            LocalLine::Gone(p) | LocalLine::Back(p) => p,
        }
    }
}

/// The summary as its line holds it: `{"summary": {...}}`.
#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: &'a Summary,
}

/// The end of a multipart upload, journalled as `{"multipart_end": {...}}`: no later run
/// looks at it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEnded {
    /// The upload.
    pub upload_id: String,
    /// How it ended.
    pub outcome: Ending,
}

/// One journal line about a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadLine {
    /// Created.
    Multipart(UploadStarted),
    /// A part stored.
    Part(PartSent),
    /// Completed or aborted.
    MultipartEnd(UploadEnded),
}

/// Writes `records`, then `deleted` lines, then `summary` as manifest lines (no fsync): for
/// merged manifests.
pub fn write_all<'a>(
    out: &mut (impl Write + ?Sized),
    records: impl IntoIterator<Item = &'a Record>,
    deleted: impl IntoIterator<Item = &'a Deleted>,
    summary: &Summary,
) -> io::Result<()> {
    for record in records {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    for deleted in deleted {
        serde_json::to_writer(&mut *out, &DeletedLine { deleted })?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *out, &SummaryLine { summary })?;
    out.write_all(b"\n")
}

/// The manifest file, or nothing (records are then dropped).
pub struct Manifest {
    writer: Option<Writer>,
}

struct Writer {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

struct Shared {
    out: Mutex<BufWriter<File>>,
    /// A second handle on the same open file: the syncer calls `sync_data` on it without
    /// holding `out`, so writers never wait for the disk.
    file: File,
    state: Mutex<SyncState>,
    wake: Condvar,
    interval: Duration,
}

#[derive(Default)]
struct SyncState {
    /// When the oldest record not yet synced was flushed; `None` when all are synced.
    dirty_since: Option<Instant>,
    /// The manifest is being dropped: sync what is left and end.
    closing: bool,
    /// `sync_data` calls made (for the tests).
    syncs: u64,
    /// A failed background sync, handed to the next caller of `record` or `summary`.
    error: Option<io::Error>,
}

impl Manifest {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Manifest> {
        Manifest::with_interval(File::create(path)?, SYNC_INTERVAL)
    }

    /// Opens `path` to append another run's records (creating it if need be). A torn last line
    /// left by a killed run is cut off first, and a last line missing only its newline gets
    /// one, so the file stays readable by [`read`].
    pub fn append(path: &Path) -> io::Result<Manifest> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        repair_tail(&mut file)?;
        Manifest::with_interval(file, SYNC_INTERVAL)
    }

    /// A manifest that writes nothing.
    pub fn none() -> Manifest {
        Manifest { writer: None }
    }

    fn with_interval(file: File, interval: Duration) -> io::Result<Manifest> {
        let shared = Arc::new(Shared {
            file: file.try_clone()?,
            out: Mutex::new(BufWriter::new(file)),
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
            interval,
        });
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hashup-manifest-sync".into())
                .spawn(move || shared.sync_loop())?
        };
        Ok(Manifest {
            writer: Some(Writer {
                shared,
                syncer: Some(syncer),
            }),
        })
    }

    /// Appends one file's record and flushes it; it is fsynced within [`SYNC_INTERVAL`].
    pub fn record(&self, record: &Record) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        writer.shared.write_line(record)
    }

    /// Appends a multipart upload's line and flushes it, like [`Manifest::record`].
    pub fn upload_line(&self, line: &UploadLine) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        writer.shared.write_line(line)
    }

    /// Appends a `deleted` line and flushes it, like [`Manifest::record`].
    pub fn deleted(&self, deleted: &Deleted) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        writer.shared.write_line(&DeletedLine { deleted })
    }

    /// Appends a `gone` or `back` line and flushes it, like [`Manifest::record`].
    pub fn local(&self, line: &LocalLine) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        writer.shared.write_line(line)
    }

    /// Whether lines go to a file: a multipart upload can only be resumed from a journal.
    pub fn is_journal(&self) -> bool {
        self.writer.is_some()
    }

    /// Appends the summary record, flushes it and fsyncs the file before returning.
    pub fn summary(&self, summary: &Summary) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        writer.shared.write_line(&SummaryLine { summary })?;
        writer.shared.sync_now()
    }

    /// Fsyncs everything written so far, now.
    pub fn sync(&self) -> io::Result<()> {
        match &self.writer {
            Some(writer) => writer.shared.sync_now(),
            None => Ok(()),
        }
    }
}

impl Drop for Manifest {
    /// Syncs what is not synced yet and ends the background thread.
    fn drop(&mut self) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        writer.shared.lock_state().closing = true;
        writer.shared.wake.notify_all();
        if let Some(syncer) = writer.syncer.take() {
            let _ = syncer.join();
        }
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_line(&self, value: &impl Serialize) -> io::Result<()> {
        {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_writer(&mut *out, value)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        // Marked dirty only after the flush: a sync that clears the mark covers this line.
        let mut state = self.lock_state();
        if state.dirty_since.is_none() {
            state.dirty_since = Some(Instant::now());
            self.wake.notify_all();
        }
        match state.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn sync_now(&self) -> io::Result<()> {
        self.lock_state().dirty_since = None;
        let result = self.file.sync_data();
        let mut state = self.lock_state();
        state.syncs += 1;
        result?;
        match state.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The background thread: sleeps until a record is written, waits out the interval from
    /// that first unsynced record (or until closing), then syncs every line written so far.
    fn sync_loop(&self) {
        let mut state = self.lock_state();
        loop {
            let Some(since) = state.dirty_since else {
                if state.closing {
                    return;
                }
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let due = since + self.interval;
            let now = Instant::now();
            if now < due && !state.closing {
                state = self
                    .wake
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            state.dirty_since = None;
            drop(state);
            let result = self.file.sync_data();
            state = self.lock_state();
            state.syncs += 1;
            if let Err(err) = result {
                state.error.get_or_insert(err);
            }
        }
    }
}

/// Cuts a torn last line off `file` (or ends a whole one with its missing newline).
fn repair_tail(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    let mut last = [0u8];
    if len == 0 || {
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        last == *b"\n"
    } {
        return Ok(());
    }
    // Scan back from the end for the newline before the last line, a block at a time.
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let line_start = loop {
        let block = pos.min(64 * 1024);
        pos -= block;
        let mut buf = vec![0; block as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            tail.splice(0..0, buf[i + 1..].iter().copied());
            break pos + i as u64 + 1;
        }
        tail.splice(0..0, buf);
        if pos == 0 {
            break 0;
        }
    };
    if parse_line(&tail).is_ok() || tail.iter().all(u8::is_ascii_whitespace) {
        file.write_all(b"\n")
    } else {
        file.set_len(line_start)
    }
}

/// The manifest is the multipart engine's journal: its lines are what a later run resumes from.
impl PartsJournal for Manifest {
    fn resumable(&self) -> bool {
        self.is_journal()
    }

    fn started(&self, upload: &UploadStarted) -> io::Result<()> {
        self.upload_line(&UploadLine::Multipart(upload.clone()))
    }

    fn part_sent(&self, part: &PartSent) -> io::Result<()> {
        self.upload_line(&UploadLine::Part(part.clone()))
    }

    fn ended(&self, upload_id: &str, outcome: Ending) -> io::Result<()> {
        self.upload_line(&UploadLine::MultipartEnd(UploadEnded {
            upload_id: upload_id.to_string(),
            outcome,
        }))
    }
}

/// A manifest as read back: what a run (or several, appended) recorded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Journal {
    /// Every file record, in file order (a name retried by a later run appears again).
    pub records: Vec<Record>,
    /// The summary that ends the file: `None` when the last run wrote none (it was killed,
    /// or is still running).
    pub summary: Option<Summary>,
    /// The line number (from 1) of a torn last line, which was ignored.
    pub torn: Option<usize>,
    /// Runs in the file: one per summary line, plus one if records (or a torn line) follow
    /// the last summary.
    pub runs: usize,
    /// Multipart uploads created and not ended, in the order created.
    pub open_uploads: Vec<OpenUpload>,
    /// `deleted` lines in file order, each with the number of records read before it (which
    /// tells whether a name's record came before or after it).
    pub deleted: Vec<(usize, Deleted)>,
    /// `gone` and `back` lines in file order, each with the number of records read before it.
    pub local: Vec<(usize, LocalLine)>,
}

impl Journal {
    /// Each name's last record, by name; a name deleted after its last record (by `--delete`) is
    /// left out: the journal no longer says it is stored.
    pub fn latest(&self) -> BTreeMap<&str, &Record> {
        let mut latest: BTreeMap<&str, (usize, &Record)> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), (i, r)))
            .collect();
        for (after, deleted) in &self.deleted {
            if latest
                .get(deleted.name.as_str())
                .is_some_and(|(i, _)| i < after)
            {
                latest.remove(deleted.name.as_str());
            }
        }
        latest.into_iter().map(|(name, (_, r))| (name, r)).collect()
    }

    /// The names stored as far as the journal knows, by name: those whose [latest
    /// record](Journal::latest) is `uploaded`, or `skipped` with a SHA-256 (a skip because the
    /// file is already stored). Names gone locally ([`Journal::gone`]) among them.
    pub fn stored(&self) -> BTreeMap<&str, &Record> {
        let mut latest = self.latest();
        latest.retain(|_, r| match r.status {
            Status::Uploaded => true,
            Status::Skipped => r.sha256.is_some(),
            Status::Failed => false,
        });
        latest
    }

    /// Each name's last `deleted` line, by name, for names with no record after it: what
    /// `--delete` deleted (no `error`) or failed to delete.
    pub fn deletions(&self) -> BTreeMap<&str, &Deleted> {
        let last_record: std::collections::HashMap<&str, usize> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        self.deleted
            .iter()
            .filter(|(after, d)| last_record.get(d.name.as_str()).is_none_or(|i| i < after))
            .map(|(_, d)| (d.name.as_str(), d))
            .collect()
    }

    /// The names gone locally, by name, with the `gone` line that says so: names whose last
    /// `gone` or `back` line is a `gone` one, with no record after it. (Whether such a name is
    /// still stored is [`Journal::latest`]'s to say: a `--delete` run deletes it.)
    pub fn gone(&self) -> BTreeMap<&str, &Presence> {
        let last_record: std::collections::HashMap<&str, usize> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let mut last: BTreeMap<&str, (usize, &LocalLine)> = BTreeMap::new();
        for (after, line) in &self.local {
            last.insert(line.presence().name.as_str(), (*after, line));
        }
        last.into_iter()
            .filter_map(|(name, (after, line))| match line {
                LocalLine::Gone(gone) if last_record.get(name).is_none_or(|i| *i < after) => {
                    Some((name, gone))
                }
                _ => None,
            })
            .collect()
    }

    /// Applies a multipart upload's line: a part or an end for an upload not opened here (its
    /// `multipart` line torn, or in another file) is dropped.
    fn apply(&mut self, line: UploadLine) {
        let find = |uploads: &mut Vec<OpenUpload>, id: &str| {
            uploads.iter().position(|u| u.started.upload_id == id)
        };
        match line {
            UploadLine::Multipart(started) => {
                if find(&mut self.open_uploads, &started.upload_id).is_none() {
                    self.open_uploads.push(OpenUpload {
                        started,
                        parts: BTreeMap::new(),
                    });
                }
            }
            UploadLine::Part(part) => {
                if let Some(i) = find(&mut self.open_uploads, &part.upload_id) {
                    self.open_uploads[i].parts.insert(part.number, part);
                }
            }
            UploadLine::MultipartEnd(end) => {
                if let Some(i) = find(&mut self.open_uploads, &end.upload_id) {
                    self.open_uploads.remove(i);
                }
            }
        }
    }
}

/// One parsed line.
enum Line {
    Record(Record),
    Summary(Summary),
    Upload(UploadLine),
    Deleted(Deleted),
    Local(LocalLine),
    /// `{"kind": {...}}` of a kind this version does not know: skipped.
    Other,
}

fn parse_line(line: &[u8]) -> Result<Line, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SummaryLine {
        summary: Summary,
    }
    // Almost every line is a record: straight into the struct (a detour through
    // `serde_json::Value` cost a rerun over 50,000 records 7.5 % of its CPU).
    if line.starts_with(b"{\"summary\"") {
        return serde_json::from_slice::<SummaryLine>(line).map(|l| Line::Summary(l.summary));
    }
    if line.starts_with(b"{\"multipart\"")
        || line.starts_with(b"{\"part\"")
        || line.starts_with(b"{\"multipart_end\"")
    {
        return serde_json::from_slice(line).map(Line::Upload);
    }
    if line.starts_with(b"{\"deleted\"") {
        return serde_json::from_slice::<DeletedLine<Deleted>>(line)
            .map(|l| Line::Deleted(l.deleted));
    }
    if line.starts_with(b"{\"gone\"") || line.starts_with(b"{\"back\"") {
        return serde_json::from_slice(line).map(Line::Local);
    }
    serde_json::from_slice(line)
        .map(Line::Record)
        .or_else(|err| {
            // A summary written by other hands (`{ "summary": ...}`), another line kind, else
            // the record's error.
            serde_json::from_slice::<SummaryLine>(line)
                .map(|l| Line::Summary(l.summary))
                .or_else(|_| serde_json::from_slice(line).map(Line::Upload))
                .or_else(|_| {
                    serde_json::from_slice::<DeletedLine<Deleted>>(line)
                        .map(|l| Line::Deleted(l.deleted))
                })
                .or_else(|_| serde_json::from_slice(line).map(Line::Local))
                .or_else(|_| other_kind(line).ok_or(()))
                .map_err(|_| err)
        })
}

/// `{"kind": {...}}`: one key, not a record's, holding an object; a kind of line a later
/// version may write.
fn other_kind(line: &[u8]) -> Option<Line> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    let mut entries = map.iter();
    match (entries.next(), entries.next()) {
        (Some((_, value)), None) if value.is_object() => Some(Line::Other),
        _ => None,
    }
}

/// Reads a manifest. A torn last line is tolerated and reported in [`Journal::torn`]; any other
/// unparseable line is an `InvalidData` error naming `path` and the line. Empty lines are
/// skipped.
pub fn read(path: &Path) -> io::Result<Journal> {
    with_file(path, read_from)
}

/// The longest manifest line read, newline included (a record of a 1,024-byte name, all
/// escaped, and a long error is well under 64 KiB); a longer one is an `InvalidData` error, so a
/// manifest that is not one (`/dev/zero`) costs no more memory than this.
pub const MAX_LINE: usize = 1 << 20;

/// Whether `sha256` is 64 hex digits.
fn is_sha256_hex(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())
}

/// [`read`] from any reader; `origin` names it in errors.
pub fn read_from(input: impl BufRead, origin: &str) -> io::Result<Journal> {
    let mut journal = Journal::default();
    // Records after the last summary: a run in progress or killed.
    let mut open_run = false;
    let torn = scan(input, origin, |line| match line {
        Line::Record(record) => {
            journal.records.push(record);
            journal.summary = None;
            open_run = true;
        }
        Line::Summary(summary) => {
            journal.summary = Some(summary);
            journal.runs += 1;
            open_run = false;
        }
        Line::Upload(line) => {
            journal.apply(line);
            journal.summary = None;
            open_run = true;
        }
        Line::Deleted(deleted) => {
            journal.deleted.push((journal.records.len(), deleted));
            journal.summary = None;
            open_run = true;
        }
        Line::Local(line) => {
            journal.local.push((journal.records.len(), line));
            journal.summary = None;
            open_run = true;
        }
        Line::Other => {}
    })?;
    if let Some(line) = torn {
        journal.torn = Some(line);
        journal.summary = None;
        open_run = true;
    }
    if open_run {
        journal.runs += 1;
    }
    Ok(journal)
}

/// Hands each line of a manifest to `visit`, parsed, in file order, and returns the line
/// number of a torn (unparseable) last line, which is tolerated; any other unparseable line is
/// an `InvalidData` error naming `origin` and the line. Empty lines are skipped. What [`read`]
/// and [`index`] share: one line parser, whichever form the journal is kept in.
fn scan(
    mut input: impl BufRead,
    origin: &str,
    mut visit: impl FnMut(Line),
) -> io::Result<Option<usize>> {
    // An unparseable line: an error unless it turns out to be the last one.
    let mut bad: Option<(usize, serde_json::Error)> = None;
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        if (&mut input)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)?
            == 0
        {
            break;
        }
        number += 1;
        if buf.len() == MAX_LINE && buf.last() != Some(&b'\n') && !input.fill_buf()?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{origin}:{number}: a line longer than {MAX_LINE} bytes"),
            ));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some((line, err)) = bad.take() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{origin}:{line}: not a manifest line: {err}"),
            ));
        }
        let parsed = parse_line(&buf);
        let sha256 = match &parsed {
            Ok(Line::Record(record)) => record.sha256.as_deref(),
            Ok(Line::Upload(UploadLine::Multipart(started))) => Some(started.sha256.as_str()),
            _ => None,
        };
        if let Some(sha256) = sha256.filter(|s| !is_sha256_hex(s)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{origin}:{number}: sha256 is not 64 hex digits: {}",
                    crate::message::server_text(sha256)
                ),
            ));
        }
        match parsed {
            Ok(line) => visit(line),
            Err(err) => bad = Some((number, err)),
        }
    }
    Ok(bad.map(|(line, _)| line))
}

/// Opens `path` for `read` (buffered), naming the path in any error but a line's (which names
/// it already).
fn with_file<T>(
    path: &Path,
    read: impl FnOnce(BufReader<File>, &str) -> io::Result<T>,
) -> io::Result<T> {
    let named = |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
    let file = File::open(path).map_err(named)?;
    read(BufReader::new(file), &path.display().to_string()).map_err(|err| {
        if err.kind() == io::ErrorKind::InvalidData {
            err // already names the file and line
        } else {
            named(err)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::FileStamp;

    fn record(name: &str, status: Status) -> Record {
        Record {
            name: name.into(),
            path: format!("src/{name}"),
            size: Some(6),
            mtime: Some("2026-11-26T00:00:00.000000000Z".into()),
            sha256: Some("ab".repeat(32)),
            status,
            http_status: Some(204),
            attempts: 1,
            error: None,
            duration_ms: 3,
            checksum_sha256_composite: None,
            etag: None,
            stored_at: None,
            resent: None,
        }
    }

    fn summary(files: u64) -> Summary {
        Summary {
            files,
            uploaded: files,
            ..Summary::default()
        }
    }

    fn line(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap() + "\n"
    }

    fn summary_line(s: &Summary) -> String {
        line(&SummaryLine { summary: s })
    }

    fn read_str(text: &str) -> io::Result<Journal> {
        read_from(text.as_bytes(), "m.jsonl")
    }

    fn syncs(manifest: &Manifest) -> u64 {
        manifest.writer.as_ref().unwrap().shared.lock_state().syncs
    }

    #[test]
    fn a_summary_line_with_other_spacing_is_still_a_summary() {
        let compact = serde_json::to_string(&SummaryLine {
            summary: &Summary::default(),
        })
        .unwrap();
        let spaced = compact.replacen("{\"summary\":", "{ \"summary\" : ", 1);
        for line in [compact, spaced] {
            assert!(matches!(
                parse_line(line.as_bytes()),
                Ok(Line::Summary(s)) if s == Summary::default()
            ));
        }
        let err = match parse_line(br#"{"nome": "x"}"#) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("not a record"),
        };
        assert!(err.contains("missing field `name`"), "{err}");
    }

    #[test]
    fn reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let (a, b) = (record("a", Status::Uploaded), record("b", Status::Failed));
        {
            let manifest = Manifest::create(&path).unwrap();
            manifest.record(&a).unwrap();
            manifest.record(&b).unwrap();
            manifest.summary(&summary(2)).unwrap();
        }
        let journal = read(&path).unwrap();
        assert_eq!(
            journal,
            Journal {
                records: vec![a, b],
                summary: Some(summary(2)),
                torn: None,
                runs: 1,
                open_uploads: vec![],
                deleted: vec![],
                local: vec![],
            }
        );
    }

    #[test]
    fn a_summary_reads_back_to_the_same_rates() {
        // Without serde_json's `float_roundtrip`, each of these read back one bit off (the first
        // as 1.754621790330663): about one rate in eleven did.
        let rates = Summary {
            hash_gb_per_s: 1.7546217903306627,
            upload_mb_per_s: 21.291890726713458,
            objects_per_s: 479.60756426982596,
            ..summary(1)
        };
        let journal = read_str(&summary_line(&rates)).unwrap();
        assert_eq!(journal.summary, Some(rates));
    }

    #[test]
    fn a_torn_last_line_is_tolerated_and_reported() {
        let a = record("a", Status::Uploaded);
        let text = line(&a) + &line(&record("b", Status::Uploaded))[..40];
        let journal = read_str(&text).unwrap();
        assert_eq!(journal.records, vec![a.clone()]);
        assert_eq!(journal.torn, Some(2));
        assert_eq!(journal.summary, None);
        assert_eq!(journal.runs, 1);
        // Torn while the summary was written: the run has none.
        let text = line(&a) + &summary_line(&summary(1))[..20];
        let journal = read_str(&text).unwrap();
        assert_eq!((journal.torn, journal.summary), (Some(2), None));
        // Trailing empty lines do not hide a torn line, nor count as one.
        let journal = read_str(&(line(&a) + "{\"na\n\n")).unwrap();
        assert_eq!(journal.torn, Some(2));
        let journal = read_str(&(line(&a) + "\n\n")).unwrap();
        assert_eq!(journal.torn, None);
    }

    fn started(id: &str) -> UploadStarted {
        UploadStarted {
            name: "big".into(),
            path: "/src/big".into(),
            bucket: "b".into(),
            key: "p/big".into(),
            upload_id: id.into(),
            sha256: "ab".repeat(32),
            size: 20 << 20,
            part_size: 8 << 20,
            stamp: FileStamp {
                dev: 1,
                ino: 2,
                size: 20 << 20,
                mtime: (1_800_000_000, 5),
                ctime: (1_800_000_000, 6),
            },
            created: "2027-01-15T08:00:00.000000000Z".into(),
        }
    }

    fn part(id: &str, number: u32, etag: &str) -> PartSent {
        PartSent {
            upload_id: id.into(),
            number,
            size: 8 << 20,
            checksum_sha256: "c2hh".into(),
            etag: etag.into(),
        }
    }

    #[test]
    fn multipart_lines_read_back_as_open_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let a = record("a", Status::Uploaded);
        {
            let manifest = Manifest::create(&path).unwrap();
            assert!(manifest.is_journal());
            manifest.record(&a).unwrap();
            for line in [
                UploadLine::Multipart(started("u1")),
                UploadLine::Multipart(started("u2")),
                UploadLine::Part(part("u1", 1, "\"e1\"")),
                UploadLine::Part(part("u2", 1, "\"f1\"")),
                UploadLine::Part(part("u1", 2, "\"e2\"")),
                // Part 1 sent again: the later line wins.
                UploadLine::Part(part("u1", 1, "\"e1b\"")),
                // A part of an upload this file never opened is dropped.
                UploadLine::Part(part("elsewhere", 1, "\"x\"")),
                UploadLine::MultipartEnd(UploadEnded {
                    upload_id: "u2".into(),
                    outcome: Ending::Aborted,
                }),
            ] {
                manifest.upload_line(&line).unwrap();
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with(r#"{"multipart":{"name":"big","path":"/src/big","bucket":"b","key":"p/big","upload_id":"u1","#), "{}", lines[1]);
        assert!(lines[1].contains(r#""stamp":{"dev":1,"ino":2,"size":20971520,"mtime":[1800000000,5],"ctime":[1800000000,6]}"#), "{}", lines[1]);
        assert_eq!(
            lines[3],
            r#"{"part":{"upload_id":"u1","number":1,"size":8388608,"checksum_sha256":"c2hh","etag":"\"e1\""}}"#
        );
        assert_eq!(
            lines[8],
            r#"{"multipart_end":{"upload_id":"u2","outcome":"aborted"}}"#
        );
        // The record has no composite field unless it has a composite checksum.
        assert!(!lines[0].contains("composite"));

        let journal = read(&path).unwrap();
        assert_eq!(journal.records, vec![a]);
        assert_eq!((journal.runs, journal.summary.as_ref()), (1, None));
        assert_eq!(journal.open_uploads.len(), 1);
        let open = &journal.open_uploads[0];
        assert_eq!(open.started, started("u1"));
        let etags: Vec<(u32, &str)> = open
            .parts
            .values()
            .map(|p| (p.number, p.etag.as_str()))
            .collect();
        assert_eq!(etags, [(1, "\"e1b\""), (2, "\"e2\"")]);

        // Completed: no longer open. A whole multipart line missing its newline is kept by
        // append, a torn one cut.
        let end = line(&UploadLine::MultipartEnd(UploadEnded {
            upload_id: "u1".into(),
            outcome: Ending::Completed,
        }));
        std::fs::write(&path, text.clone() + end.trim_end()).unwrap();
        drop(Manifest::append(&path).unwrap());
        assert!(read(&path).unwrap().open_uploads.is_empty());
        std::fs::write(&path, text.clone() + &end[..20]).unwrap();
        drop(Manifest::append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn records_with_a_composite_checksum_and_unknown_kinds_read() {
        let mut a = record("a", Status::Uploaded);
        a.checksum_sha256_composite = Some("q83vEjRWeJA=-3".into());
        let text =
            line(&a) + "{\"retention\": {\"days\": 3}}\n" + &line(&record("b", Status::Uploaded));
        let journal = read_str(&text).unwrap();
        assert_eq!(journal.records.len(), 2);
        assert_eq!(journal.records[0], a);
        // Not a kind of line: a key without an object, an array, two keys.
        for bad in [r#"{"kind": 3}"#, "[1]", r#"{"a": {}, "b": {}}"#] {
            let err = read_str(&format!("{bad}\n{}", line(&a))).unwrap_err();
            assert!(err.to_string().starts_with("m.jsonl:1: "), "{bad}: {err}");
        }
    }

    fn deleted(name: &str, error: Option<&str>) -> Deleted {
        Deleted {
            name: name.into(),
            key: Some(format!("p/{name}")),
            size: 6,
            time: "2027-01-15T08:00:00.000000000Z".into(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn deleted_lines_read_back_and_end_a_names_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let (a, b, c) = (
            record("a", Status::Uploaded),
            record("b", Status::Uploaded),
            record("c", Status::Uploaded),
        );
        {
            // Run 1 uploads a, b, c; run 2 deletes b and c (c's DELETE fails) and d (known to
            // another manifest only).
            let manifest = Manifest::create(&path).unwrap();
            for r in [&a, &b, &c] {
                manifest.record(r).unwrap();
            }
            manifest.summary(&summary(3)).unwrap();
            for d in [
                deleted("b", None),
                deleted("c", None),
                deleted("c", Some("HTTP 500: boom")),
                deleted("d", None),
            ] {
                manifest.deleted(&d).unwrap();
            }
            let run2 = Summary {
                delete: Some(DeleteSummary {
                    found: 3,
                    deleted: 2,
                    failed: 1,
                    elapsed_ms: 12,
                    stopped: None,
                }),
                ..Summary::default()
            };
            manifest.summary(&run2).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[4],
            r#"{"deleted":{"name":"b","key":"p/b","size":6,"time":"2027-01-15T08:00:00.000000000Z"}}"#
        );
        assert!(
            lines[6].ends_with(r#""error":"HTTP 500: boom"}}"#),
            "{}",
            lines[6]
        );
        assert!(
            lines[8].ends_with(
                r#""delete":{"found":3,"deleted":2,"failed":1,"elapsed_ms":12,"stopped":null}}}"#
            ),
            "{}",
            lines[8]
        );
        // A summary without --delete has no `delete`.
        assert!(!lines[3].contains("delete"), "{}", lines[3]);
        let journal = read(&path).unwrap();
        assert_eq!(journal.runs, 2);
        let delete = journal.summary.as_ref().unwrap().delete.as_ref().unwrap();
        assert_eq!(delete.failed, 1);
        assert_eq!(journal.latest().keys().copied().collect::<Vec<_>>(), ["a"]);
        let deletions = journal.deletions();
        assert_eq!(
            deletions.keys().copied().collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
        assert_eq!(deletions["c"].error.as_deref(), Some("HTTP 500: boom"));

        // A later record brings the name back.
        drop(Manifest::append(&path).unwrap().record(&c));
        let journal = read(&path).unwrap();
        assert_eq!(
            journal.latest().keys().copied().collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            journal.deletions().keys().copied().collect::<Vec<_>>(),
            ["b", "d"]
        );
        // A torn deleted line at the end is tolerated like any other.
        let torn = text.clone()
            + &line(&DeletedLine {
                deleted: deleted("e", None),
            })[..20];
        let journal = read_str(&torn).unwrap();
        assert_eq!(journal.torn, Some(10));
    }

    #[test]
    fn stored_names_are_uploaded_or_skipped_with_a_checksum() {
        let mut link = record("link", Status::Skipped);
        link.sha256 = None;
        let text = [
            record("a", Status::Uploaded),
            record("b", Status::Skipped),
            record("c", Status::Uploaded),
            record("c", Status::Failed),
            link,
            record("d", Status::Uploaded),
        ]
        .iter()
        .map(line)
        .collect::<String>()
            + &line(&DeletedLine {
                deleted: deleted("d", None),
            });
        let journal = read_str(&text).unwrap();
        assert_eq!(
            journal.stored().keys().copied().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    fn local(gone: bool, name: &str) -> LocalLine {
        let presence = Presence {
            name: name.into(),
            time: "2027-01-16T02:00:00.000000000Z".into(),
        };
        match gone {
            true => LocalLine::Gone(presence),
            false => LocalLine::Back(presence),
        }
    }

    #[test]
    fn gone_lines_mark_a_name_until_a_back_line_or_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let (a, b, c) = (
            record("a", Status::Uploaded),
            record("b", Status::Uploaded),
            record("c", Status::Uploaded),
        );
        {
            // Run 1 uploads a, b, c; run 2 finds b and c gone; run 3 finds c back.
            let manifest = Manifest::create(&path).unwrap();
            for r in [&a, &b, &c] {
                manifest.record(r).unwrap();
            }
            manifest.summary(&summary(3)).unwrap();
            manifest.local(&local(true, "b")).unwrap();
            manifest.local(&local(true, "c")).unwrap();
            manifest.summary(&summary(0)).unwrap();
            manifest.local(&local(false, "c")).unwrap();
            manifest.summary(&summary(0)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[4],
            r#"{"gone":{"name":"b","time":"2027-01-16T02:00:00.000000000Z"}}"#
        );
        assert_eq!(
            lines[7],
            r#"{"back":{"name":"c","time":"2027-01-16T02:00:00.000000000Z"}}"#
        );
        // A version that does not know these lines skips them as another kind.
        assert!(other_kind(lines[4].as_bytes()).is_some());
        assert!(other_kind(lines[7].as_bytes()).is_some());
        let journal = read(&path).unwrap();
        assert_eq!(journal.runs, 3);
        assert_eq!(journal.local.len(), 3);
        assert_eq!(journal.local[0], (3, local(true, "b")));
        // Gone names are still stored.
        assert_eq!(
            journal.latest().keys().copied().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(journal.gone().keys().copied().collect::<Vec<_>>(), ["b"]);
        assert_eq!(journal.gone()["b"], local(true, "b").presence());

        // A later record supersedes a gone line (the file came back changed).
        drop(Manifest::append(&path).unwrap().record(&b));
        assert!(read(&path).unwrap().gone().is_empty());
        // And a gone line after that record counts again.
        drop(Manifest::append(&path).unwrap().local(&local(true, "b")));
        let journal = read(&path).unwrap();
        assert_eq!(journal.gone().keys().copied().collect::<Vec<_>>(), ["b"]);
        // The gone lines ended with no summary: that run did not finish.
        assert_eq!((journal.runs, journal.summary), (4, None));
        // A torn gone line at the end is tolerated like any other.
        let torn = text.clone() + &line(&local(true, "a"))[..20];
        let journal = read_str(&torn).unwrap();
        assert_eq!(journal.torn, Some(10));
        assert_eq!(journal.gone().keys().copied().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn an_unparseable_middle_line_names_file_and_line() {
        let a = line(&record("a", Status::Uploaded));
        let text = format!("{a}{{\"name\": \"b\"\n{a}");
        let err = read_str(&text).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string()
                .starts_with("m.jsonl:2: not a manifest line: "),
            "{err}"
        );
        // Parseable JSON that is not a record counts as unparseable too.
        let err = read_str(&format!("{a}{{\"size\": 3}}\n{a}")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.jsonl:2: not a manifest line: missing field `name`"),
            "{err}"
        );
        // Through `read`, the error names the path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, &text).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: ", path.display())),
            "{err}"
        );
        let err = read(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing: "), "{err}");
    }

    #[test]
    fn appended_runs_and_killed_runs_read_fine() {
        let a1 = record("a", Status::Failed);
        let a2 = record("a", Status::Uploaded);
        let b = record("b", Status::Uploaded);
        // Run 1 killed (no summary), run 2 finished.
        let text = line(&a1) + &line(&b) + &line(&a2) + &summary_line(&summary(1));
        let journal = read_str(&text).unwrap();
        assert_eq!(journal.records.len(), 3);
        assert_eq!(journal.summary, Some(summary(1)));
        assert_eq!(
            journal.runs, 1,
            "a killed run before a finished one is not told apart"
        );
        let latest = journal.latest();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest["a"], &a2);
        // Run 1 finished, run 2 killed: the file ends with no summary.
        let text = line(&a1) + &summary_line(&summary(1)) + &line(&a2);
        let journal = read_str(&text).unwrap();
        assert_eq!((journal.summary, journal.runs), (None, 2));
        // Two finished runs.
        let text = line(&a1) + &summary_line(&summary(1)) + &line(&a2) + &summary_line(&summary(2));
        let journal = read_str(&text).unwrap();
        assert_eq!((journal.summary, journal.runs), (Some(summary(2)), 2));
        // An empty file: no run at all.
        assert_eq!(read_str("").unwrap(), Journal::default());
    }

    #[test]
    fn append_cuts_a_torn_tail_and_keeps_a_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let a = record("a", Status::Uploaded);
        let b = record("b", Status::Uploaded);
        // Killed mid-line: the torn part goes.
        std::fs::write(&path, line(&a) + &line(&b)[..30]).unwrap();
        drop(Manifest::append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(&a));
        // Killed between a line and its newline: the line stays.
        let whole = line(&a) + line(&b).trim_end();
        std::fs::write(&path, &whole).unwrap();
        {
            let manifest = Manifest::append(&path).unwrap();
            manifest.record(&a).unwrap();
            manifest.summary(&summary(3)).unwrap();
        }
        let journal = read(&path).unwrap();
        assert_eq!(journal.records, vec![a.clone(), b, a.clone()]);
        assert_eq!((journal.torn, journal.runs), (None, 1));
        // A torn first line, and a long line spanning the scan's blocks.
        let mut long = record("long", Status::Failed);
        long.error = Some("x".repeat(200_000));
        std::fs::write(&path, &line(&long)[..150_000]).unwrap();
        drop(Manifest::append(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        std::fs::write(&path, line(&a) + &line(&long)[..150_000]).unwrap();
        drop(Manifest::append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(&a));
    }

    #[test]
    fn a_record_is_readable_by_another_open_once_record_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let manifest = Manifest::create(&path).unwrap();
        for i in 0..3 {
            manifest
                .record(&record(&format!("f{i}"), Status::Uploaded))
                .unwrap();
            // Flushed to the kernel: a separate open sees it, while the run goes on.
            let journal = read(&path).unwrap();
            assert_eq!(journal.records.len(), i + 1);
            assert_eq!(journal.summary, None);
        }
    }

    // Whether a synced record survives a power loss cannot be tested here; these tests check
    // when `sync_data` is called.

    #[test]
    fn records_are_synced_in_batches_not_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("m.jsonl")).unwrap();
        let manifest = Manifest::with_interval(file, Duration::from_secs(3600)).unwrap();
        for i in 0..100 {
            manifest
                .record(&record(&format!("f{i}"), Status::Uploaded))
                .unwrap();
        }
        assert_eq!(syncs(&manifest), 0, "no fsync per record");
        manifest.summary(&summary(100)).unwrap();
        assert_eq!(
            syncs(&manifest),
            1,
            "the summary is synced before it returns"
        );
    }

    #[test]
    fn a_record_is_synced_within_the_interval_without_more_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("m.jsonl")).unwrap();
        let manifest = Manifest::with_interval(file, Duration::from_millis(20)).unwrap();
        assert_eq!(syncs(&manifest), 0);
        manifest.record(&record("a", Status::Uploaded)).unwrap();
        // The background thread syncs it; no other write is needed to trigger that.
        let deadline = Instant::now() + Duration::from_secs(30);
        while syncs(&manifest) == 0 {
            assert!(Instant::now() < deadline, "never synced");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Idle: nothing left to sync, so no more syncs.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(syncs(&manifest), 1);
    }

    #[test]
    fn drop_syncs_what_is_left_and_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("m.jsonl")).unwrap();
        let manifest = Manifest::with_interval(file, Duration::from_secs(3600)).unwrap();
        manifest.record(&record("a", Status::Uploaded)).unwrap();
        let shared = manifest.writer.as_ref().unwrap().shared.clone();
        drop(manifest); // joins the syncer, which syncs before it ends
        assert_eq!(shared.lock_state().syncs, 1);
        assert_eq!(shared.lock_state().dirty_since, None);
    }

    #[test]
    fn no_manifest_writes_nothing() {
        let manifest = Manifest::none();
        manifest.record(&record("a", Status::Uploaded)).unwrap();
        manifest.summary(&summary(1)).unwrap();
        manifest.sync().unwrap();
    }
}
