//! The process's limit on open files, which both `serve` and `upload` raise.

/// Raises the soft open-files limit to the hard one (many systems start processes at 1,024),
/// so that the program's own caps, not the limit, bound its connections and open files:
/// `serve`'s connection cap, `upload`'s uploads in flight. Returns the soft limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a plain struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                } else if let Some(raised) = capped_by_the_kernel(limit) {
                    limit = raised;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// macOS reports an unlimited hard limit but refuses a soft limit above `kern.maxfilesperproc`
/// (which `OPEN_MAX`, 10,240, never exceeds): raise the soft limit that far instead of staying
/// at the default 256.
#[cfg(target_os = "macos")]
unsafe fn capped_by_the_kernel(limit: libc::rlimit) -> Option<libc::rlimit> {
    /// `OPEN_MAX` of `<sys/syslimits.h>` (the libc crate does not export it).
    const OPEN_MAX: libc::rlim_t = 10_240;
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max.min(OPEN_MAX),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit with a valid pointer to a plain struct.
    (raised.rlim_cur > limit.rlim_cur
        && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0)
        .then_some(raised)
}

/// Elsewhere the hard limit is the ceiling, and setting it failed for another reason.
#[cfg(all(unix, not(target_os = "macos")))]
unsafe fn capped_by_the_kernel(_: libc::rlimit) -> Option<libc::rlimit> {
    None
}
