//! The hashing engine: file entries in, `Ok(HashedFile)` / `Err(FileError)` out.
//!
//! ```text
//!   source (walk or list) --bounded--> rayon pool (N hashers) --bounded--> consumer
//! ```
//!
//! A feeder thread drains the source (a [`crate::walk::Walk`] or any iterator of
//! entries) into a bounded channel and numbers every item; `threads` workers on a
//! rayon pool take entries, hash them (see [`io`]) and send one [`Outcome`] each
//! down a second bounded channel. That output channel is the seam the next stage
//! attaches to: `hashup hash` prints from it (in walk order, via
//! [`Hasher::in_order`]); an uploader consumes it in arrival order. Dropping the
//! [`Hasher`] closes the channel, every send then fails, and the stages stop.
//!
//! ```no_run
//! use hashup::hash::{HashOptions, Hasher};
//! use hashup::walk::{Walk, WalkOptions};
//!
//! let walk = Walk::new(vec!["images".into()], WalkOptions::default());
//! for result in Hasher::spawn(walk, &HashOptions::default()).unwrap().in_order() {
//!     match result {
//!         Ok(file) => println!("{}  {}", file.hex(), file.path.display()),
//!         Err(err) => eprintln!("hashup: {err}"),
//!     }
//! }
//! ```

pub mod cache;
mod guard;
pub mod io;

pub use crate::stamp::FileStamp;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

/// One file to hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The path to open.
    pub path: PathBuf,
    /// The name relative to the root it was found under (an upload's object name).
    pub name: PathBuf,
    /// Open through a symbolic link (roots, or `--follow`); otherwise a file that
    /// became a link since the walk is skipped.
    pub follow: bool,
}

impl FileEntry {
    /// An entry for a path named directly (followed through links), named by itself.
    pub fn named(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileEntry {
            name: path.clone(),
            path,
            follow: true,
        }
    }
}

/// A file hashed successfully, with the stamp it had while it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedFile {
    /// The path it was opened by.
    pub path: PathBuf,
    /// The name relative to its root.
    pub name: PathBuf,
    /// Size, times and identity, identical before and after the read.
    pub stamp: FileStamp,
    /// The SHA-256 digest of the content.
    pub sha256: [u8; 32],
    /// Time one thread spent opening, reading and hashing it.
    pub hash_time: Duration,
    /// The digest came from the hash cache: the file was not read.
    pub cached: bool,
}

impl HashedFile {
    /// The digest as lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Why a file has no checksum.
#[derive(Debug, thiserror::Error)]
pub enum FileErrorKind {
    /// Opening, reading or walking failed.
    #[error("{}", crate::message::plain_io_message(.0))]
    Io(#[source] std::io::Error),
    /// The file changed (size, times, identity, or truncated under a mapping)
    /// while it was read: the bytes hashed may not be the bytes it holds.
    #[error("file changed while reading")]
    ChangedWhileReading,
    /// Not a regular file: never opened for reading.
    #[error("skipped: {0}")]
    Skipped(SkipReason),
    /// Larger than [`HashOptions::max_size`]: refused without reading a byte.
    #[error("{size} bytes: {}", .limit.why)]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit it is over.
        limit: SizeLimit,
    },
}

/// A size above which files are refused unread, and why (a file that could never be sent
/// should not cost a full read first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// The largest size taken.
    pub bytes: u64,
    /// What a larger file is told, e.g. "over the 5 GiB single-upload limit".
    pub why: &'static str,
}

/// Why an entry was left alone. Skips are notices, not failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link, not followed.
    Symlink,
    /// A symbolic link loop, when following links.
    Loop(PathBuf),
    /// A FIFO (opening it could block forever).
    Fifo,
    /// A socket.
    Socket,
    /// A block or character device.
    Device,
    /// Some other kind of file.
    Other,
}

impl SkipReason {
    /// The reason for a file type that is neither a regular file, a directory nor a link.
    pub fn special(file_type: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            SkipReason::Fifo
        } else if file_type.is_socket() {
            SkipReason::Socket
        } else if file_type.is_block_device() || file_type.is_char_device() {
            SkipReason::Device
        } else if file_type.is_symlink() {
            SkipReason::Symlink
        } else {
            SkipReason::Other
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Symlink => f.write_str("symbolic link (use --follow to follow links)"),
            SkipReason::Loop(to) => write!(f, "symbolic link loop back to {}", to.display()),
            SkipReason::Fifo => f.write_str("is a FIFO"),
            SkipReason::Socket => f.write_str("is a socket"),
            SkipReason::Device => f.write_str("is a device"),
            SkipReason::Other => f.write_str("not a regular file"),
        }
    }
}

/// A file that has no checksum, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", crate::message::shown_path(path))]
pub struct FileError {
    /// The path as walked or listed.
    pub path: PathBuf,
    /// The name relative to its root.
    pub name: PathBuf,
    /// What went wrong.
    pub kind: FileErrorKind,
}

impl FileError {
    /// True for a notice (special file, link) rather than a failure.
    pub fn is_skip(&self) -> bool {
        matches!(self.kind, FileErrorKind::Skipped(_))
    }
}

/// What the engine says about one entry.
pub type HashResult = Result<HashedFile, FileError>;

/// One result, numbered in the order its entry left the source.
#[derive(Debug)]
pub struct Outcome {
    /// Position of the entry in the source, from 0.
    pub seq: u64,
    /// The result.
    pub result: HashResult,
}

/// How files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// Map files at or above [`HashOptions::mmap_threshold`], read smaller ones.
    #[default]
    Auto,
    /// Map every non-empty file.
    Mmap,
    /// Read every file into a reused buffer.
    Read,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// Hashing threads; 0 lets rayon decide (`RAYON_NUM_THREADS`, else one per core).
    pub threads: usize,
    /// How files are read.
    pub io: IoMode,
    /// Size from which [`IoMode::Auto`] maps a file.
    pub mmap_threshold: u64,
    /// Known hashes by stamp: a file whose stamp is in it is not read (and new hashes go
    /// into it). `None` reads every file.
    pub cache: Option<std::sync::Arc<cache::HashCache>>,
    /// Regular files larger than this are refused unread; `None` takes any size.
    pub max_size: Option<SizeLimit>,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            threads: 0,
            io: IoMode::Auto,
            mmap_threshold: io::DEFAULT_MMAP_THRESHOLD,
            cache: None,
            max_size: None,
        }
    }
}

/// A running engine: its output channel and the threads behind it.
///
/// Iterating yields results in completion order; [`Hasher::in_order`] restores
/// the source order. Dropping it stops the engine.
///
/// Entries and results cross threads in batches: handing over one small file at a
/// time costs more in wake-ups than hashing it. Batches only grow while the next
/// stage is busy (the feeder sends whatever it holds as soon as the queue has
/// room), so a few large files still spread over every thread, and a worker
/// passes its results on at least every [`FLUSH_EVERY`], so a consumer such as an
/// uploader never waits long for a file that is done.
pub struct Hasher {
    results: Receiver<Vec<Outcome>>,
    pending: std::vec::IntoIter<Outcome>,
    threads: usize,
}

/// Most entries handed to a worker at once.
const MAX_BATCH: usize = 256;

/// Longest a worker holds finished results before passing them on.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

impl Hasher {
    /// Starts hashing the entries `source` yields. Errors from the source are passed
    /// through in place, so the output accounts for every item.
    pub fn spawn<I>(source: I, options: &HashOptions) -> std::io::Result<Hasher>
    where
        I: IntoIterator<Item = Result<FileEntry, FileError>>,
        I::IntoIter: Send + 'static,
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("hashup-hash-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let threads = pool.current_num_threads();
        let (entry_tx, entry_rx) = bounded::<Vec<(u64, FileEntry)>>(2 * threads);
        let (out_tx, out_rx) = bounded::<Vec<Outcome>>(4 * threads);

        let source = source.into_iter();
        let feeder_out = out_tx.clone();
        std::thread::Builder::new()
            .name("hashup-walk".into())
            .spawn(move || {
                let mut batch = Vec::new();
                for (seq, item) in (0u64..).zip(source) {
                    let sent = match item {
                        Ok(entry) => {
                            batch.push((seq, entry));
                            if batch.len() < MAX_BATCH && entry_tx.is_full() {
                                continue; // the workers are busy: keep filling
                            }
                            entry_tx.send(std::mem::take(&mut batch)).is_ok()
                        }
                        Err(err) => {
                            let outcome = Outcome {
                                seq,
                                result: Err(err),
                            };
                            feeder_out.send(vec![outcome]).is_ok()
                        }
                    };
                    if !sent {
                        return; // the consumer went away: stop walking
                    }
                }
                if !batch.is_empty() {
                    let _ = entry_tx.send(batch);
                }
            })?;

        for _ in 0..threads {
            let entries = entry_rx.clone();
            let out = out_tx.clone();
            let options = options.clone();
            pool.spawn(move || {
                let mut reader = io::Reader::new(&options);
                for batch in entries {
                    let mut done = Vec::with_capacity(batch.len());
                    let mut since = Instant::now();
                    for (seq, entry) in batch {
                        let result = reader.hash(entry);
                        done.push(Outcome { seq, result });
                        if since.elapsed() >= FLUSH_EVERY {
                            if out.send(std::mem::take(&mut done)).is_err() {
                                return;
                            }
                            since = Instant::now();
                        }
                    }
                    if !done.is_empty() && out.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        // The pool's threads exit once their loops end; the channel closes when the
        // feeder and every worker have dropped their senders.
        Ok(Hasher {
            results: out_rx,
            pending: Vec::new().into_iter(),
            threads,
        })
    }

    /// Hashing threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Results in the order the source yielded the entries.
    pub fn in_order(self) -> InOrder {
        InOrder {
            hasher: self,
            next: 0,
            waiting: std::collections::BTreeMap::new(),
        }
    }
}

impl Hasher {
    /// The outcomes ready now, as the workers handed them over (at least one; `None` when all
    /// are out): one hand-off per batch instead of one per file.
    pub fn next_batch(&mut self) -> Option<Vec<Outcome>> {
        let pending: Vec<Outcome> = self.pending.by_ref().collect();
        if !pending.is_empty() {
            return Some(pending);
        }
        self.results.recv().ok()
    }
}

impl Iterator for Hasher {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        loop {
            if let Some(outcome) = self.pending.next() {
                return Some(outcome);
            }
            self.pending = self.results.recv().ok()?.into_iter();
        }
    }
}

/// Results in source order; see [`Hasher::in_order`].
///
/// Holds back results that finish before an earlier one: as many as the other
/// workers finish while the slowest file in flight is read.
pub struct InOrder {
    hasher: Hasher,
    next: u64,
    waiting: std::collections::BTreeMap<u64, HashResult>,
}

impl Iterator for InOrder {
    type Item = HashResult;

    fn next(&mut self) -> Option<HashResult> {
        loop {
            if let Some(result) = self.waiting.remove(&self.next) {
                self.next += 1;
                return Some(result);
            }
            match self.hasher.next() {
                Some(outcome) if outcome.seq == self.next => {
                    self.next += 1;
                    return Some(outcome.result);
                }
                Some(outcome) => {
                    self.waiting.insert(outcome.seq, outcome.result);
                }
                None => {
                    // Closed: whatever is left is in order already.
                    let (&seq, _) = self.waiting.iter().next()?;
                    self.next = seq;
                }
            }
        }
    }
}
