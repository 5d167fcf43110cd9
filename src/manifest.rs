//! The upload manifest: JSON Lines, one record per file as it finishes, flushed per record so a
//! crash or kill loses nothing that finished, then one `{"summary": ...}` record.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// What became of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored, with its checksum.
    Uploaded,
    /// Not stored: see `error`.
    Failed,
    /// Not a regular file (or a link not followed): left alone, not a failure.
    Skipped,
}

/// One file's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The object name.
    pub name: String,
    /// The local path (lossy UTF-8).
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
    pub attempts: u32,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Time from taking the file up to its outcome.
    pub duration_ms: u64,
}

/// The final line's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub not_started: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes read and hashed (files answered by the hash cache are not read).
    pub bytes_hashed: u64,
    /// Files whose SHA-256 came from the hash cache.
    pub cached: u64,
    /// Wall time of the whole run.
    pub elapsed_ms: u64,
    /// Hashing speed per thread while hashing, in GB/s (10^9): bytes hashed over
    /// the time hashing threads spent on them. Unlike a rate over the run's wall
    /// time, it does not fall when uploads are the bottleneck.
    pub hash_gb_per_s: f64,
    /// Bytes uploaded per second of the run, in MB/s (10^6).
    pub upload_mb_per_s: f64,
    /// Objects uploaded per second of the run.
    pub objects_per_s: f64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
}

/// The manifest file, or nothing (records are then dropped).
pub struct Manifest {
    out: Mutex<Option<BufWriter<File>>>,
}

impl Manifest {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Manifest> {
        Ok(Manifest {
            out: Mutex::new(Some(BufWriter::new(File::create(path)?))),
        })
    }

    /// A manifest that writes nothing.
    pub fn none() -> Manifest {
        Manifest {
            out: Mutex::new(None),
        }
    }

    /// Appends one file's record and flushes it.
    pub fn record(&self, record: &Record) -> std::io::Result<()> {
        self.write_line(record)
    }

    /// Appends the summary record and flushes it.
    pub fn summary(&self, summary: &Summary) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            summary: &'a Summary,
        }
        self.write_line(&Line { summary })
    }

    fn write_line(&self, value: &impl Serialize) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Some(out) = out.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(&mut *out, value)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}
