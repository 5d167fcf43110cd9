//! Surviving SIGBUS while hashing a mapped file.
//!
//! A file truncated while it is mapped makes every access past its new end raise
//! SIGBUS, which by default kills the process. Before touching a mapping, a worker
//! registers its address range in a thread-local; the handler checks the faulting
//! address against the *current thread's* range and, when it falls inside, maps
//! anonymous zero pages over the rest of the range (`MAP_FIXED`, one call) and sets
//! a thread-local flag. The faulting instruction then re-runs on a zero page, the
//! hash finishes on garbage, and the caller discards it as "changed while reading".
//! A fault anywhere else restores the previous action and returns, so the fault
//! repeats and is handled as it would have been without us.
//!
//! Only async-signal-safe things happen in the handler: reads of const-initialised
//! thread-locals (no lazy init, no destructor), `mmap` and `sigaction`.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{Ordering, compiler_fence};

thread_local! {
    /// Start and length of the mapping this thread is reading, or (0, 0).
    static REGION: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when it patched this thread's region.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

/// The action that was installed before ours, restored for foreign faults.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 { size as usize } else { 4096 }
    })
}

/// Installs the handler once per process. Returns false if that failed, in which
/// case callers must not map files.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        page_size();
        // SAFETY: a zeroed sigaction is a valid "no handler" value; we fill in the
        // handler, flags and an empty mask before installing it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
                return false;
            }
            let _ = PREVIOUS.set(previous);
        }
        true
    })
}

/// Runs `f` over `region` (a live file mapping) with the guard armed; returns its
/// result and whether a fault was patched, in which case the result is garbage.
pub fn guarded<R>(region: &[u8], f: impl FnOnce(&[u8]) -> R) -> (R, bool) {
    let page = page_size();
    let start = region.as_ptr() as usize;
    debug_assert_eq!(start % page, 0, "mappings start on a page boundary");
    let len = region.len().div_ceil(page) * page;
    FAULTED.with(|f| f.set(false));
    REGION.with(|r| r.set((start, len)));
    compiler_fence(Ordering::SeqCst);
    let result = f(region);
    compiler_fence(Ordering::SeqCst);
    REGION.with(|r| r.set((0, 0)));
    (result, FAULTED.with(Cell::get))
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (start, len) = REGION.with(Cell::get);
    if len != 0 && addr >= start && addr < start + len {
        let from = addr & !(page_size() - 1);
        let rest = start + len - from;
        // SAFETY: [from, start + len) lies inside this thread's registered mapping,
        // which nothing else uses; replacing it with zero pages keeps it readable
        // until the owner unmaps the whole range.
        let mapped = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                rest,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            FAULTED.with(|f| f.set(true));
            return;
        }
    }
    // Not ours (or we could not patch it): put the old action back; returning
    // re-runs the access, which then faults into it.
    // SAFETY: restoring a previously valid action, or the default one.
    unsafe {
        match PREVIOUS.get() {
            Some(previous) => libc::sigaction(signal, previous, std::ptr::null_mut()),
            None => {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn truncated_mapping_is_patched_and_flagged_not_fatal() {
        assert!(install());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 1 << 20]).unwrap();
        // SAFETY: the test owns the file; the truncation below is the point.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        file.set_len(4096).unwrap();
        let (sum, faulted) = guarded(&map, |bytes| {
            bytes.iter().map(|&b| u64::from(b)).sum::<u64>()
        });
        assert!(faulted, "reading past the new end must be caught");
        // The first page still holds the file's bytes; the rest reads as zeros.
        assert_eq!(sum, 7 * 4096);
    }

    #[test]
    fn untouched_mapping_is_not_flagged() {
        assert!(install());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1u8; 10_000]).unwrap();
        // SAFETY: the test owns the file and does not change it.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        let (len, faulted) = guarded(&map, <[u8]>::len);
        assert_eq!((len, faulted), (10_000, false));
    }
}
