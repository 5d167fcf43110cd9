//! The upload pipeline: entries -> hashing engine -> bounded channel -> uploader pool -> manifest.
//!
//! ```text
//!   Hasher (rayon pool) --Outcome--> bridge thread --bounded mpsc--> tokio loop
//!       --Semaphore(uploads)--> task per file: check stamp, presign, send, record
//! ```
//!
//! Backpressure: the loop takes a permit before it takes the next file, so when every upload
//! slot is busy the mpsc fills, the bridge thread blocks, the engine's own bounded channels fill
//! and hashing pauses. Presign and upload of different files overlap freely.
//!
//! Names are checked before anything is hashed ([`plan`]), so a bad or duplicate name stops the
//! run before any byte leaves. Just before each send the file's stamp (size, mtime, ctime, inode)
//! is compared with the one it was hashed with; a changed file is hashed again and presigned
//! again, so an old checksum is never published with new bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Naming;
use crate::hash::{FileEntry, FileError, FileStamp, HashOptions, HashedFile, Hasher};
use crate::manifest::{Manifest, Record, Status, Summary};
use crate::presign::{PresignError, Presigner};
use crate::retry::RetryPolicy;
use crate::transfer::{MAX_OBJECT_SIZE, Storage, TransferError};

/// How often a file that keeps changing is hashed again before it is reported failed.
pub const MAX_REHASH: u32 = 3;

/// An object name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct NameProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with its name.
    pub problem: String,
}

/// The object name for a file found as `relative` below its root.
pub fn object_name(relative: &Path, naming: &Naming) -> Result<String, String> {
    // Only a listed path (`--files-from`) can be absolute; say so rather than "empty segment".
    if relative.has_root() && !naming.flatten {
        return Err(
            "an absolute path cannot be an object name (list relative paths, or use --flatten)"
                .into(),
        );
    }
    let relative = if naming.flatten {
        relative.file_name().map(Path::new).unwrap_or(relative)
    } else {
        relative
    };
    let name = relative
        .to_str()
        .ok_or_else(|| format!("name {:?} is not UTF-8", relative.as_os_str()))?;
    let name = match naming.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{name}"),
        _ => name.to_string(),
    };
    if name.is_empty() {
        return Err("empty object name".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("object name {name:?} contains control characters"));
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "object name {name:?} has an empty, `.` or `..` segment"
        ));
    }
    Ok(name)
}

/// Walks `walk`'s output and names every file; the entries carry their object name as `name`.
/// Any unusable or duplicate name is returned instead, all of them, before anything is hashed.
pub fn plan(
    walk: impl IntoIterator<Item = Result<FileEntry, FileError>>,
    naming: &Naming,
) -> Result<Vec<Result<FileEntry, FileError>>, Vec<NameProblem>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for item in walk {
        let mut entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                entries.push(Err(err));
                continue;
            }
        };
        if entry.path.as_os_str() == "-" {
            problems.push(NameProblem {
                path: entry.path.clone(),
                problem: "standard input cannot be uploaded".into(),
            });
            continue;
        }
        match object_name(&entry.name, naming) {
            Ok(name) => {
                if let Some(first) = seen.get(&name) {
                    problems.push(NameProblem {
                        path: entry.path.clone(),
                        problem: format!(
                            "object name {name:?} is also the name of {}",
                            first.display()
                        ),
                    });
                    continue;
                }
                seen.insert(name.clone(), entry.path.clone());
                entry.name = PathBuf::from(name);
                entries.push(Ok(entry));
            }
            Err(problem) => problems.push(NameProblem {
                path: entry.path.clone(),
                problem,
            }),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Engine settings (also used to hash a changed file again).
    pub hash: HashOptions,
    /// Uploads in flight at once.
    pub uploads: usize,
    /// Retries and backoff, for the API and for storage.
    pub retry: RetryPolicy,
    /// A progress line on stderr this often; `None` for none.
    pub progress_every: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Counts and rates (also the manifest's last line).
    pub summary: Summary,
}

/// Counters shared by the loop, the tasks and the progress line.
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    uploaded: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_hashed: AtomicU64,
    /// Time the hashing threads spent on those bytes, summed over files.
    hash_nanos: AtomicU64,
}

struct Shared {
    presigner: Arc<dyn Presigner>,
    storage: Storage,
    options: PipelineOptions,
    manifest: Arc<Manifest>,
    counters: Counters,
    /// Set by a failure that dooms every file (401): the message, once.
    fatal: Mutex<Option<String>>,
    /// Whether the API has answered any presign request: until it has, an API that cannot be
    /// reached after every retry dooms the run rather than one file.
    api_answered: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_fatal(&self, message: &str) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(message.to_string());
        }
    }

    fn finish(&self, record: Record) {
        let counter = match record.status {
            Status::Uploaded => &self.counters.uploaded,
            Status::Failed => &self.counters.failed,
            Status::Skipped => &self.counters.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.done.fetch_add(1, Ordering::Relaxed);
        if record.status == Status::Uploaded {
            self.counters
                .bytes_uploaded
                .fetch_add(record.size.unwrap_or(0), Ordering::Relaxed);
        }
        // After a fatal answer every later failure is its consequence: one message says it all.
        if let Some(error) = record.error.as_ref().filter(|_| self.fatal().is_none()) {
            eprintln!("hashup: {}: {error}", record.path);
        }
        if let Err(err) = self.manifest.record(&record) {
            eprintln!("hashup: cannot write the manifest: {err}");
        }
    }
}

/// Hashes and uploads `entries` (from [`plan`]), writing one manifest record per file.
///
/// Returns once every file has an outcome, or early after a fatal answer (then
/// [`Summary::stopped`] says why, and files not yet taken up have no record).
pub async fn run(
    entries: Vec<Result<FileEntry, FileError>>,
    presigner: Arc<dyn Presigner>,
    storage: Storage,
    options: PipelineOptions,
    manifest: Arc<Manifest>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let total = entries.iter().filter(|e| e.is_ok()).count() as u64;
    let uploads = options.uploads.max(1);
    let hasher = Hasher::spawn(entries, &options.hash)?;
    let shared = Arc::new(Shared {
        presigner,
        storage,
        options,
        manifest,
        counters: Counters::default(),
        fatal: Mutex::new(None),
        api_answered: std::sync::atomic::AtomicBool::new(false),
    });

    // The engine is a blocking iterator: a plain thread moves its outcomes into the async world.
    let (tx, mut rx) = tokio::sync::mpsc::channel(uploads.min(256));
    let bridge = {
        std::thread::Builder::new()
            .name("hashup-bridge".into())
            .spawn(move || {
                for outcome in hasher {
                    if tx.blocking_send(outcome).is_err() {
                        break; // the run stopped
                    }
                }
            })?
    };

    let progress = shared.options.progress_every.map(|every| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let c = &shared.counters;
                eprintln!(
                    "hashup: {}/{total} files, {} uploaded ({}), {} failed, {:.0} s",
                    c.done.load(Ordering::Relaxed),
                    c.uploaded.load(Ordering::Relaxed),
                    human_bytes(c.bytes_uploaded.load(Ordering::Relaxed)),
                    c.failed.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    });

    let slots = Arc::new(tokio::sync::Semaphore::new(uploads));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(outcome) = rx.recv().await {
        match outcome.result {
            Err(err) => shared.finish(error_record(&err)),
            Ok(file) => {
                shared
                    .counters
                    .bytes_hashed
                    .fetch_add(file.stamp.size, Ordering::Relaxed);
                shared
                    .counters
                    .hash_nanos
                    .fetch_add(file.hash_time.as_nanos() as u64, Ordering::Relaxed);
                let permit = slots.clone().acquire_owned().await?;
                if shared.fatal().is_some() {
                    break;
                }
                let shared = shared.clone();
                tasks.spawn(async move {
                    let record = upload_one(&shared, file).await;
                    shared.finish(record);
                    drop(permit);
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(rx); // a fatal stop: the bridge's next send fails and the engine winds down
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let _ = tokio::task::spawn_blocking(move || bridge.join()).await;

    let elapsed = started.elapsed();
    let c = &shared.counters;
    let uploaded = c.uploaded.load(Ordering::Relaxed);
    let bytes = c.bytes_uploaded.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let summary = Summary {
        files: c.done.load(Ordering::Relaxed),
        uploaded,
        failed: c.failed.load(Ordering::Relaxed),
        skipped: c.skipped.load(Ordering::Relaxed),
        bytes,
        elapsed_ms: elapsed.as_millis() as u64,
        hash_gb_per_s: c.bytes_hashed.load(Ordering::Relaxed) as f64
            / (c.hash_nanos.load(Ordering::Relaxed) as f64).max(1.0),
        upload_mb_per_s: bytes as f64 / secs / 1e6,
        objects_per_s: uploaded as f64 / secs,
        stopped: shared.fatal(),
    };
    if let Err(err) = shared.manifest.summary(&summary) {
        eprintln!("hashup: cannot write the manifest: {err}");
    }
    Ok(Report { summary })
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
    }
}

/// Presigns and sends one file, retrying as the policy allows; its record.
async fn upload_one(shared: &Shared, mut file: HashedFile) -> Record {
    let started = Instant::now();
    let name = file.name.to_string_lossy().into_owned();
    let mut attempts = 0u32;
    let mut retries = 0u32;
    let mut rehashes = 0u32;
    let mut http_status = None;
    let policy = shared.options.retry;

    let error = loop {
        if file.stamp.size > MAX_OBJECT_SIZE {
            break TransferError::TooLarge {
                size: file.stamp.size,
            }
            .to_string();
        }
        if let Some(fatal) = shared.fatal() {
            break format!("not uploaded: the run stopped ({fatal})");
        }
        attempts += 1;
        let hex = file.hex();
        let target = match shared.presigner.presign(&name, &hex).await {
            Ok(target) => {
                shared.api_answered.store(true, Ordering::Relaxed);
                target
            }
            Err(err) => {
                http_status = err.status();
                match err {
                    PresignError::Fatal { message, .. } => {
                        shared.set_fatal(&message);
                        break message;
                    }
                    PresignError::Transient { retry_after, .. } if retries < policy.retries => {
                        tokio::time::sleep(policy.delay(retries, retry_after)).await;
                        retries += 1;
                        continue;
                    }
                    PresignError::Transient {
                        status: None,
                        message,
                        ..
                    } if !shared.api_answered.load(Ordering::Relaxed) => {
                        let message = format!("cannot reach the PROMINENCE API: {message}");
                        shared.set_fatal(&message);
                        break message;
                    }
                    err => break err.to_string(),
                }
            }
        };
        // Send only bytes that still are the bytes hashed, checked after the presign round trip
        // (right before the first byte goes); a changed file is hashed and presigned again.
        match current_stamp(&file.path) {
            Ok(stamp) if stamp == file.stamp => {}
            Ok(_) => {
                if rehashes == MAX_REHASH {
                    break format!("file kept changing ({MAX_REHASH} times hashed again)");
                }
                rehashes += 1;
                match rehash(&file, &shared.options.hash).await {
                    Ok(again) => file = again,
                    Err(err) => break err,
                }
                continue;
            }
            Err(err) => break crate::hash::plain_io_message(&err),
        }

        match shared
            .storage
            .send(&target, &file.path, &name, file.stamp.size)
            .await
        {
            Ok(status) => {
                http_status = Some(status);
                // Changed while it was sent: what arrived may not match the checksum sent with
                // it. Hash again and send again (the store, if it verifies, refused it anyway).
                match current_stamp(&file.path) {
                    Ok(stamp) if stamp == file.stamp => {
                        return record(
                            &file,
                            Status::Uploaded,
                            http_status,
                            attempts,
                            None,
                            started,
                        );
                    }
                    _ => continue,
                }
            }
            Err(err) => {
                http_status = err.status().or(http_status);
                match err {
                    // Most likely the URL expired (or the clock is off): presign again at once.
                    TransferError::Forbidden { .. } if retries < policy.retries => {
                        retries += 1;
                        continue;
                    }
                    TransferError::Transient { retry_after, .. } if retries < policy.retries => {
                        tokio::time::sleep(policy.delay(retries, retry_after)).await;
                        retries += 1;
                        continue;
                    }
                    err => break err.to_string(),
                }
            }
        }
    };
    record(
        &file,
        Status::Failed,
        http_status,
        attempts,
        Some(error),
        started,
    )
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
        mtime: Some(crate::sign::rfc3339_nanos(file.stamp.modified())),
        sha256: Some(file.hex()),
        status,
        http_status,
        attempts,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

fn current_stamp(path: &Path) -> std::io::Result<FileStamp> {
    std::fs::metadata(path).map(|meta| FileStamp::of(&meta))
}

/// Hashes a file again (on a blocking thread) after it changed.
async fn rehash(file: &HashedFile, options: &HashOptions) -> Result<HashedFile, String> {
    let entry = FileEntry {
        path: file.path.clone(),
        name: file.name.clone(),
        follow: true,
    };
    let options = options.clone();
    tokio::task::spawn_blocking(move || crate::hash::io::Reader::new(&options).hash(entry))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.kind.to_string())
}

/// `1.2 MB` (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let plain = Naming::default();
        assert_eq!(
            object_name(Path::new("a/b.sif"), &plain).unwrap(),
            "a/b.sif"
        );
        let flat = Naming {
            flatten: true,
            prefix: Some("/g1/".into()),
        };
        assert_eq!(
            object_name(Path::new("a/b.sif"), &flat).unwrap(),
            "g1/b.sif"
        );
        for bad in ["", "a/../b", "./a", "a\u{7}b"] {
            assert!(object_name(Path::new(bad), &plain).is_err(), "{bad:?}");
        }
        use std::os::unix::ffi::OsStrExt as _;
        let non_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"a\xffb"));
        assert!(object_name(non_utf8, &plain).is_err());
    }

    #[test]
    fn duplicates_are_all_reported() {
        let entry = |path: &str, name: &str| {
            Ok(FileEntry {
                path: path.into(),
                name: name.into(),
                follow: false,
            })
        };
        let flat = Naming {
            flatten: true,
            prefix: None,
        };
        let problems = plan(
            vec![entry("x/a", "a"), entry("y/a", "a"), entry("z/b/a", "b/a")],
            &flat,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].problem.contains("also the name of x/a"));
    }
}
