//! Plain configuration for each command, built once from the command line. The
//! core takes these and never sees clap.

use std::path::PathBuf;
use std::time::Duration;

use crate::hash::HashOptions;
use crate::http::Timeouts;
use crate::retry::RetryPolicy;
use crate::select::SelectOptions;
use crate::walk::WalkOptions;

/// How long to wait for a connection, unless `--connect-timeout` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long nothing may move before a request fails, unless `--stall-timeout` says otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a command talks to its destination: retries, timeouts, extra trusted roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Retries per request (an upload's: per file) after the first attempt.
    pub retries: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest time without a byte moving before a request fails.
    pub stall_timeout: Duration,
    /// A PEM bundle of extra CA certificates to trust, for the API and storage.
    pub cacert: Option<PathBuf>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            retries: crate::retry::DEFAULT_RETRIES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            cacert: None,
        }
    }
}

impl Network {
    /// Every client's timeouts.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            stall: self.stall_timeout,
        }
    }

    /// The retry policy: `retries`, with the default backoff.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            ..RetryPolicy::default()
        }
    }
}

/// The hash cache: where it lives, and whether it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Where the hash cache lives; `None`: the user's cache directory.
    pub state_dir: Option<PathBuf>,
    /// Use the hash cache (read and update it).
    pub enabled: bool,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            state_dir: None,
            enabled: true,
        }
    }
}

impl Cache {
    /// The cache's directory ([`crate::hash::cache::dir`]); `env` looks a variable up.
    pub fn dir(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        crate::hash::cache::dir(self.enabled, self.state_dir.as_deref(), env)
    }
}

/// The local files a command reads, and how they are named as objects.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Files and directories.
    pub paths: Vec<PathBuf>,
    /// How to walk directories.
    pub walk: WalkOptions,
    /// Which files to take: filters, `--files-from`, `--shard`.
    pub select: SelectOptions,
    /// Engine settings for hashing them.
    pub hash: HashOptions,
    /// Object naming.
    pub naming: Naming,
}

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
    /// Direct S3 mode: targets signed locally with AWS credentials from the environment.
    S3 {
        /// Bucket and key prefix.
        location: crate::presign::s3::S3Location,
        /// `--endpoint`; else `$AWS_ENDPOINT_URL_S3`, `$AWS_ENDPOINT_URL`, else AWS.
        endpoint: Option<String>,
        /// `--region`; else `$AWS_REGION`, `$AWS_DEFAULT_REGION`, else `us-east-1`.
        region: Option<String>,
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
    /// Bars when stderr is a terminal, else a plain line every few seconds.
    #[default]
    Auto,
    /// Bars (drawn only when stderr is a terminal).
    Bar,
    /// A plain line every few seconds.
    Log,
    /// Nothing until the summary.
    None,
}

/// `hashup upload PATH...`
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// The files to upload and their names.
    pub source: Source,
    /// Where targets come from.
    pub destination: Destination,
    /// Retries, timeouts, trusted roots.
    pub network: Network,
    /// The hash cache.
    pub cache: Cache,
    /// Uploads in flight at once: `N`, or `auto[:MAX]` to find the number while running.
    pub uploads: crate::limit::Concurrency,
    /// `--bwlimit`: the bytes per second every body shares, by time of day; `None` is no cap.
    pub bwlimit: Option<crate::bandwidth::Schedule>,
    /// Direct S3 mode: files of at least this size go as multipart uploads.
    pub multipart_threshold: u64,
    /// Direct S3 mode: bytes per part; `None` picks one by file size.
    pub part_size: Option<u64>,
    /// Direct S3 mode: parts of one file in flight at once.
    pub parts_in_flight: usize,
    /// The JSON Lines manifest: a journal appended to; files it records as stored are not
    /// sent again.
    pub manifest: Option<PathBuf>,
    /// Truncate the manifest instead of resuming from it.
    pub restart: bool,
    /// Earlier manifests whose stored files are not sent again.
    pub previous: Vec<PathBuf>,
    /// Also skip files the destination lists with the same name and size.
    pub skip_existing: bool,
    /// List the destination and send again what the manifests say is stored but is missing
    /// or differs there.
    pub check_remote: bool,
    /// Progress on stderr.
    pub progress: ProgressMode,
    /// The period of progress lines in [`ProgressMode::Log`].
    pub progress_every: Duration,
    /// How long the first Ctrl-C (or SIGTERM) waits for the uploads in flight before it
    /// aborts them.
    pub drain_timeout: Duration,
    /// Print only errors: no progress, no summary.
    pub quiet: bool,
    /// Walk and hash, print what would be uploaded, touch no network (but, with `delete`, the
    /// listing of what is stored).
    pub dry_run: bool,
    /// `--delete`: after a complete run, delete the stored objects under the destination that no
    /// local file maps to ([`crate::mirror`]).
    pub delete: bool,
    /// `--max-delete`: with more objects than this to delete, delete none.
    pub max_delete: u64,
}

/// `hashup verify PATH...`: is every file stored, with its size and SHA-256?
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The files whose objects to check (no paths: what `manifest` records), named as the
    /// upload named them.
    pub source: Source,
    /// Where the objects are.
    pub destination: Destination,
    /// Retries, timeouts, trusted roots.
    pub network: Network,
    /// The hash cache.
    pub cache: Cache,
    /// An upload manifest: without paths, what it records as stored is checked (no local file
    /// is read); with paths, it gives multipart objects' composite checksums.
    pub manifest: Option<PathBuf>,
    /// Requests in flight at once: `N`, or `auto[:MAX]`.
    pub requests: crate::limit::Concurrency,
    /// Print only problems: no OK lines, no summary.
    pub quiet: bool,
    /// One JSON object per line instead of `name: STATUS` lines.
    pub json: bool,
}

/// `hashup manifest summary|merge|diff`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestConfig {
    /// `summary FILE...`: totals and failures of each manifest.
    Summary {
        /// The manifests.
        files: Vec<PathBuf>,
        /// One JSON object per manifest instead of plain lines.
        json: bool,
    },
    /// `merge A B...`: the union of shard manifests.
    Merge {
        /// The shard manifests.
        inputs: Vec<PathBuf>,
        /// Where the merged manifest goes; standard output when `None`.
        output: Option<PathBuf>,
        /// A `sha256sum`-style list of the names (and checksums) the shards should cover.
        expect: Option<PathBuf>,
    },
    /// `diff OLD NEW`: what changed between two runs.
    Diff {
        /// The earlier manifest.
        old: PathBuf,
        /// The later manifest.
        new: PathBuf,
    },
}
