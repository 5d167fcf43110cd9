//! Reading one file into SHA-256: plain reads below a size threshold, a memory
//! mapping above it, and a check that the file did not change meanwhile.
//!
//! Every file is opened with `O_NONBLOCK` (a FIFO swapped in after the walk cannot
//! block the open) and, unless links are followed, `O_NOFOLLOW`; `fstat` on the open
//! descriptor then decides: anything but a regular file is skipped unread.
//!
//! Mapping is an optimisation with a fallback: large files are mapped in windows of
//! [`MAP_WINDOW`] bytes (so resident memory stays flat whatever the file size), each
//! window read under the SIGBUS guard (see `guard.rs`); if the guard cannot be
//! installed or a mapping fails, the file is read instead. Where mapping pays and
//! where it does not is measured by `hashup bench --files` and
//! `scripts/bench-hash.sh`; the threshold below is the result.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::cache::HashCache;
use super::{FileEntry, FileError, FileErrorKind, FileStamp, HashOptions, HashResult, HashedFile};
use super::{IoMode, SizeLimit, SkipReason, guard};

/// Files at least this large are mapped in [`IoMode::Auto`].
///
/// Measured with `hashup bench --max-threads 1 FILE...` on page-cached random files
/// (2-core SHA-NI VM, GB/s read / mmap): 16 KiB 1.03 / 0.13, 64 KiB 1.35 / 0.64,
/// 256 KiB 1.41 / 1.10, 1 MiB 1.43 / 1.26, 4 MiB 1.36 / 1.35, 16 MiB 1.33 / 1.36,
/// 64 MiB 1.36 / 1.51; and a 1 GiB file took 1229 ms of CPU read, 805 ms mapped.
/// Mapping costs a fixed mmap/munmap (with a TLB flush) per file; reading costs a
/// copy per byte that hurts once the data no longer sits in the CPU caches. They
/// cross at about 4 MiB.
pub const DEFAULT_MMAP_THRESHOLD: u64 = 4 << 20;

/// Bytes mapped at a time; resident memory never holds more than this per thread.
/// 4, 16 and 64 MiB windows hashed a 1 GiB file with the same CPU time (within
/// noise), and `MAP_POPULATE` did not help either; 16 MiB keeps RSS small.
pub const MAP_WINDOW: usize = 16 << 20;

/// Size of the reused read buffer: large enough to make syscalls rare, small
/// enough to stay in L2.
pub const READ_BUFFER: usize = 256 << 10;

/// A per-thread file hasher with its reused buffer.
pub struct Reader {
    buffer: Vec<u8>,
    io: IoMode,
    mmap_threshold: u64,
    cache: Option<Arc<HashCache>>,
    max_size: Option<SizeLimit>,
}

impl Reader {
    /// A reader for the given options.
    pub fn new(options: &HashOptions) -> Self {
        let io = match options.io {
            IoMode::Read => IoMode::Read,
            mode if guard::install() => mode,
            _ => IoMode::Read,
        };
        Reader {
            buffer: vec![0; READ_BUFFER],
            io,
            mmap_threshold: options.mmap_threshold,
            cache: options.cache.clone(),
            max_size: options.max_size,
        }
    }

    /// Hashes one file; the entry moves into the result.
    pub fn hash(&mut self, entry: FileEntry) -> HashResult {
        if let Some(hit) = self.cached(&entry) {
            return Ok(hit);
        }
        let started = Instant::now();
        let read_started = SystemTime::now();
        match self.hash_inner(&entry) {
            Ok((stamp, sha256)) => {
                if let Some(cache) = &self.cache {
                    cache.put(stamp, sha256, read_started);
                }
                Ok(HashedFile {
                    path: entry.path,
                    name: entry.name,
                    stamp,
                    sha256,
                    hash_time: started.elapsed(),
                    cached: false,
                })
            }
            Err(kind) => Err(FileError {
                path: entry.path,
                name: entry.name,
                kind,
            }),
        }
    }

    /// The cache's answer for a regular file whose current stamp it knows: one `stat`, no
    /// open, no read. Anything else (a link not followed, a special file, a miss) is read.
    fn cached(&self, entry: &FileEntry) -> Option<HashedFile> {
        let cache = self.cache.as_ref()?;
        if entry.path.as_os_str() == "-" {
            return None;
        }
        let meta = if entry.follow {
            std::fs::metadata(&entry.path)
        } else {
            std::fs::symlink_metadata(&entry.path)
        }
        .ok()?;
        if !meta.is_file() {
            return None;
        }
        let stamp = FileStamp::of(&meta);
        if self.max_size.is_some_and(|limit| stamp.size > limit.bytes) {
            return None; // refused by the read path, with its reason
        }
        let sha256 = cache.get(&stamp)?;
        Some(HashedFile {
            path: entry.path.clone(),
            name: entry.name.clone(),
            stamp,
            sha256,
            hash_time: Duration::ZERO,
            cached: true,
        })
    }

    fn hash_inner(&mut self, entry: &FileEntry) -> Result<(FileStamp, [u8; 32]), FileErrorKind> {
        let _hashing = Hashing::start();
        if entry.path.as_os_str() == "-" {
            return self.hash_stdin();
        }
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !entry.follow {
            flags |= libc::O_NOFOLLOW;
        }
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(&entry.path)
        {
            Ok(file) => file,
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) && !entry.follow => {
                return Err(FileErrorKind::Skipped(SkipReason::Symlink));
            }
            Err(err) => return Err(FileErrorKind::Io(err)),
        };
        let meta = file.metadata().map_err(FileErrorKind::Io)?;
        if meta.is_dir() {
            // Only a listed path (`-c`) gets here: say it as `sha256sum` does.
            return Err(FileErrorKind::Io(std::io::Error::from_raw_os_error(
                libc::EISDIR,
            )));
        }
        if !meta.is_file() {
            return Err(FileErrorKind::Skipped(SkipReason::special(
                meta.file_type(),
            )));
        }
        let before = FileStamp::of(&meta);
        if let Some(limit) = self.max_size.filter(|limit| before.size > limit.bytes) {
            return Err(FileErrorKind::TooLarge {
                size: before.size,
                limit,
            });
        }
        let use_map = match self.io {
            IoMode::Read => false,
            IoMode::Mmap => before.size > 0,
            IoMode::Auto => before.size >= self.mmap_threshold.max(1),
        };
        let digest = if use_map {
            match hash_mapped(&file, before.size) {
                Ok(digest) => digest,
                Err(MapFailed) => self.hash_read(&file, before.size)?,
            }
        } else {
            self.hash_read(&file, before.size)?
        };
        let after = FileStamp::of(&file.metadata().map_err(FileErrorKind::Io)?);
        match digest {
            Some(digest) if after == before => Ok((before, digest)),
            _ => Err(FileErrorKind::ChangedWhileReading),
        }
    }

    /// Standard input, read to its end; its stamp is zero but for the size read.
    fn hash_stdin(&mut self) -> Result<(FileStamp, [u8; 32]), FileErrorKind> {
        let (size, digest) = self.hash_stream(std::io::stdin().lock(), None)?;
        let stamp = FileStamp {
            dev: 0,
            ino: 0,
            size,
            mtime: (0, 0),
            ctime: (0, 0),
        };
        Ok((stamp, digest))
    }

    /// Reads the whole file through the buffer. `None` if it held more or fewer
    /// bytes than its size said.
    fn hash_read(&mut self, file: &File, size: u64) -> Result<Option<[u8; 32]>, FileErrorKind> {
        let (total, digest) = self.hash_stream(file, Some(size))?;
        Ok((total == size).then_some(digest))
    }

    /// Hashes what `input` yields through the buffer; returns the bytes read and the
    /// digest. Given the `size` a regular file should have, it stops as soon as more
    /// arrived, and after a short read that ends exactly at that size: a short read
    /// of a regular file means end of file, so the extra read() that would return 0
    /// is skipped (growth after it shows in the caller's second fstat).
    fn hash_stream(
        &mut self,
        mut input: impl Read,
        size: Option<u64>,
    ) -> Result<(u64, [u8; 32]), FileErrorKind> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(FileErrorKind::Io(err)),
            };
            hasher.update(&self.buffer[..n]);
            total += n as u64;
            if let Some(size) = size
                && (total > size || (total == size && n < self.buffer.len()))
            {
                break;
            }
        }
        Ok((total, hasher.finalize().into()))
    }
}

/// Mapping was refused; read the whole file instead (mapping never moves the
/// descriptor's offset, so the read starts from the beginning).
struct MapFailed;

/// Hashes `size` bytes through windowed mappings. `Ok(None)` if the file shrank
/// under a mapping (a patched SIGBUS).
///
/// Mapping page-cache pages costs the kernel about an eighth of what hashing them
/// does (16k faults per GiB; `MAP_POPULATE` and `MADV_HUGEPAGE` measured no better).
/// When a core is idle — one large file left while the other workers wait — a
/// short-lived thread populates the next window's page tables
/// (`MADV_POPULATE_READ`) while this one hashes the current window, taking that
/// cost off the critical path, and unmaps the window hashed before. With every
/// core busy it would only move work around, so it is skipped.
fn hash_mapped(file: &File, size: u64) -> Result<Option<[u8; 32]>, MapFailed> {
    let mut hasher = Sha256::new();
    let mut current = map_window(file, 0, size)?;
    let mut done: Option<Window> = None;
    while let Some(map) = current {
        let end = map.offset + map.map.len() as u64;
        let next = map_window(file, end, size)?;
        let faulted = std::thread::scope(|scope| {
            if idle_core() {
                // Best effort: if no thread can be had, pages fault in as usual and
                // the finished window is unmapped when `done` is next replaced.
                let (next, finished) = (next.as_ref(), done.take());
                let _ = std::thread::Builder::new()
                    .name("hashup-prefetch".into())
                    .spawn_scoped(scope, move || {
                        if let Some(next) = next {
                            populate(&next.map);
                        }
                        drop(finished); // munmap off the critical path too
                    });
            }
            guard::guarded(&map.map, |bytes| hasher.update(bytes)).1
        });
        if faulted {
            return Ok(None);
        }
        done = Some(map);
        current = next;
    }
    Ok(Some(hasher.finalize().into()))
}

/// One mapped window of a file.
struct Window {
    map: memmap2::Mmap,
    offset: u64,
}

/// Maps the window of the file starting at `offset`, or `None` past its end.
fn map_window(file: &File, offset: u64, size: u64) -> Result<Option<Window>, MapFailed> {
    if offset >= size {
        return Ok(None);
    }
    let len = (size - offset).min(MAP_WINDOW as u64) as usize;
    // SAFETY: the mapping is read-only and private to this call. Another process
    // may change or truncate the file underneath: changed bytes are caught by the
    // caller's before/after stamps, truncation raises SIGBUS, which the guard
    // turns into zero pages plus a flag, and the result is then discarded.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .no_probe_handle()
            .map(file)
    };
    let map = map.map_err(|_| MapFailed)?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Some(Window { map, offset }))
}

/// Fills in the page tables of a mapping without touching its bytes. Never raises
/// SIGBUS: past a truncated end the kernel returns an error instead, ignored here
/// (the hashing thread's own access then trips the guard). Linux 5.14 and later; elsewhere
/// (macOS) the kernel is only asked to read the pages ahead, which cannot fault either.
fn populate(map: &memmap2::Mmap) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const ADVICE: libc::c_int = libc::MADV_POPULATE_READ;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const ADVICE: libc::c_int = libc::MADV_WILLNEED;
    // SAFETY: the range is a live mapping owned by the caller, which outlives this
    // call (scoped thread); madvise only reads its pages in.
    unsafe {
        libc::madvise(map.as_ptr() as *mut libc::c_void, map.len(), ADVICE);
    }
}

/// Files being hashed right now, across all workers.
static HASHING: AtomicUsize = AtomicUsize::new(0);

/// Counts a file as being hashed for as long as it lives.
struct Hashing;

impl Hashing {
    fn start() -> Self {
        HASHING.fetch_add(1, Ordering::Relaxed);
        Hashing
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        HASHING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True when fewer files are being hashed than there are cores.
fn idle_core() -> bool {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    HASHING.load(Ordering::Relaxed) < cores
}
