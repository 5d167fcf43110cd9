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
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}
