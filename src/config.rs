//! Plain configuration for each command, built once from the command line. The
//! core takes these and never sees clap.

use std::path::PathBuf;
use std::time::Duration;

use crate::hash::HashOptions;
use crate::select::SelectOptions;
use crate::walk::WalkOptions;

/// How `hashup hash` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// GNU `sha256sum` lines.
    #[default]
    Sums,
    /// One JSON object per file.
    Json,
}

/// `hashup hash PATH...`
#[derive(Debug, Clone, Default)]
pub struct HashConfig {
    /// Files and directories to hash; `-` is standard input.
    pub paths: Vec<PathBuf>,
    /// How to walk directories.
    pub walk: WalkOptions,
    /// Engine settings.
    pub hash: HashOptions,
    /// Output format.
    pub format: OutputFormat,
}

/// `hashup hash -c LIST...`
#[derive(Debug, Clone, Default)]
pub struct CheckConfig {
    /// Checksum lists to verify; `-` is standard input.
    pub lists: Vec<PathBuf>,
    /// Engine settings.
    pub hash: HashOptions,
    /// Don't print OK lines.
    pub quiet: bool,
    /// Print nothing; the exit code tells.
    pub status: bool,
    /// Exit non-zero on improperly formatted lines.
    pub strict: bool,
    /// Warn about each improperly formatted line.
    pub warn: bool,
    /// Don't fail or report on listed files that do not exist.
    pub ignore_missing: bool,
}

/// `hashup bench [FILE...]`
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Measure in-memory throughput for 1..=max_threads threads.
    pub max_threads: usize,
    /// How long each measurement runs.
    pub duration: Duration,
    /// Files to hash with each I/O mode.
    pub files: Vec<PathBuf>,
    /// Print JSON instead of a table.
    pub json: bool,
}

/// Where `hashup upload` gets its upload targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A PROMINENCE API: URL from the flag or `$PROMINENCE_URL`; token from the file,
    /// `$PROMINENCE_TOKEN` or `~/.prominence/token`.
    Prominence {
        /// The `PROMINENCE_URL` (ends in `/prominence/v1`).
        url: Option<String>,
        /// A file holding the token (JSON `access_token` or raw text).
        token_file: Option<PathBuf>,
    },
    /// `hashup serve`'s embedded store in this directory, run in-process on a loopback port.
    Embedded {
        /// The store directory.
        store: PathBuf,
    },
}

/// How object names are made from paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// Use the base name only.
    pub flatten: bool,
    /// Prepended with a `/`.
    pub prefix: Option<String>,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A plain line every few seconds (bars on a terminal are not built yet).
    #[default]
    Auto,
    /// A plain line every few seconds.
    Log,
    /// Nothing until the summary.
    None,
}

/// `hashup upload PATH...`
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Files and directories to upload.
    pub paths: Vec<PathBuf>,
    /// How to walk directories.
    pub walk: WalkOptions,
    /// Which files to take: filters, `--files-from`, `--shard`.
    pub select: SelectOptions,
    /// Engine settings.
    pub hash: HashOptions,
    /// Where targets come from.
    pub destination: Destination,
    /// Object naming.
    pub naming: Naming,
    /// Uploads in flight at once.
    pub uploads: usize,
    /// Retries per file after the first attempt.
    pub retries: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest time without a byte moving before a request fails.
    pub stall_timeout: Duration,
    /// The JSON Lines manifest to write.
    pub manifest: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: ProgressMode,
    /// Walk and hash, print what would be uploaded, touch no network.
    pub dry_run: bool,
}
