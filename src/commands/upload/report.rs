//! What `hashup upload` tells people on stderr besides per-file lines: the closing summary,
//! and a warning when a token will expire before the hashing is done.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::progress::human_bytes;

/// Hashing speed per thread assumed when judging whether a token outlives the hashing
/// (SHA-NI speed measured on the project's 2-core machines, page-cached; disks are slower).
const HASH_BYTES_PER_SEC_PER_THREAD: f64 = 1.5e9;

/// Only tokens expiring within this are checked against the hashing time (it costs a stat per
/// file).
const EXPIRY_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// The run's last lines on stderr: the summary, and "nothing to do" when nothing was sent (nor
/// found to delete).
pub fn print_summary(s: &crate::manifest::Summary) {
    let not_started = match s.not_started {
        0 => String::new(),
        n => format!(", {n} not started"),
    };
    let rate = match s.bytes_hashed {
        0 => String::new(),
        _ => format!(" at {:.2} GB/s per thread", s.hash_gb_per_s),
    };
    let cached = match s.cached {
        0 => String::new(),
        n => format!(", {n} from the hash cache"),
    };
    // What the run settled on, where it sent anything.
    let in_flight = match (s.uploaded, s.uploads_limit) {
        (0, _) | (_, 0) => String::new(),
        (_, n) => format!(", up to {n} in flight"),
    };
    // What --delete did, where it did anything (why it did nothing was said when it happened).
    let deleted = match &s.delete {
        Some(d) if d.failed > 0 => format!(", {} deleted, {} not deleted", d.deleted, d.failed),
        Some(d) if d.deleted > 0 => format!(", {} deleted", d.deleted),
        _ => String::new(),
    };
    // Files the manifests said were stored but the store had lost or changed.
    let resent = match s.resent {
        0 => String::new(),
        n => format!(", {n} sent again"),
    };
    eprintln!(
        "hashup: {} files, {} uploaded ({}{resent}), {} failed, {} skipped{not_started}{deleted} in {:.2} s; \
         hashed {}{cached}{rate}; upload {:.1} MB/s, {:.1} objects/s{in_flight}",
        s.files,
        s.uploaded,
        human_bytes(s.bytes),
        s.failed,
        s.skipped,
        s.elapsed_ms as f64 / 1000.0,
        human_bytes(s.bytes_hashed),
        s.upload_mb_per_s,
        s.objects_per_s
    );
    let nothing_to_delete = s.delete.as_ref().is_none_or(|d| d.found == 0);
    if s.uploaded == 0 && s.failed == 0 && s.stopped.is_none() && nothing_to_delete {
        eprintln!("hashup: nothing to do: {}", nothing_to_do(s));
    }
}

/// Why a run sent nothing, saying only what was checked: a file the manifests record as
/// uploaded, unchanged since, is not known to be stored unless a listing of the destination
/// agreed.
fn nothing_to_do(s: &crate::manifest::Summary) -> String {
    if s.files == 0 {
        return "no files".into();
    }
    let other = s.skipped.saturating_sub(s.already_stored);
    let unchecked = s.already_stored.saturating_sub(s.confirmed);
    let all = other == 0;
    let mut parts = Vec::new();
    match (s.confirmed, unchecked) {
        (0, 0) => {}
        (n, 0) if all => parts.push(format!(
            "all {n} files are stored (the destination's listing agrees)"
        )),
        (0, n) if all => parts.push(format!(
            "all {n} files are unchanged since they were uploaded (the store was not asked: \
             --check-remote asks it)"
        )),
        (confirmed, unchecked) => {
            if confirmed > 0 {
                parts.push(format!(
                    "{confirmed} stored (the destination's listing agrees)"
                ));
            }
            if unchecked > 0 {
                parts.push(format!("{unchecked} unchanged since they were uploaded"));
            }
        }
    }
    if other > 0 {
        parts.push(format!("{other} skipped (not regular files)"));
    }
    parts.join(", ")
}

/// Warns when a JWT expires before the files can even be hashed at full speed: presign
/// requests after that get 401 and the run stops. (Other tokens carry no expiry to judge.)
pub fn warn_if_token_outlived(
    token: &str,
    entries: &crate::naming::Plan,
    hash: &crate::hash::HashOptions,
) {
    let Some(exp) = crate::jwt::exp(token) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let left = exp - now;
    if left > EXPIRY_HORIZON.as_secs_f64() {
        return;
    }
    let sizes: Vec<u64> = entries
        .iter()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.len())
        .collect();
    let bytes: u64 = sizes.iter().sum();
    let threads = match hash.threads {
        0 => rayon::current_num_threads(),
        n => n,
    };
    // Threads share the bytes, but one file is hashed by one thread.
    let critical = (bytes / threads as u64).max(sizes.iter().copied().max().unwrap_or(0));
    let needed = critical as f64 / HASH_BYTES_PER_SEC_PER_THREAD;
    if needed > left {
        eprintln!(
            "hashup: warning: the token expires in {}, but hashing {} takes at least {} on {threads} thread(s); \
             files presigned after that will not be uploaded: get a fresh token first",
            human_duration(left),
            human_bytes(bytes),
            human_duration(needed),
        );
    }
}

/// `2 h 5 min`, `3 min 20 s`, `12 s`.
fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}
