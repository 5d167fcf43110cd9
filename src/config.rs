//! Plain configuration for each command, built once from the command line. The
//! core takes these and never sees clap.

use std::path::PathBuf;
use std::time::Duration;

use crate::hash::HashOptions;
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
