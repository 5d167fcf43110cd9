//! clap definitions for `hashup upload`.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use clap::{Args, ValueEnum};
use hashup::bandwidth::Schedule;
use hashup::config::{ProgressMode, UploadConfig};
use hashup::limit::Concurrency;

use super::destination::{CacheArgs, DestinationArgs, NetworkArgs, SourceArgs};

/// Progress on stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    /// Bars when stderr is a terminal, else a status line every --progress-every seconds.
    Auto,
    /// Bars (drawn only when stderr is a terminal).
    Bar,
    /// A status line every --progress-every seconds.
    Log,
    /// Only the final summary.
    None,
}

/// Flags of `hashup upload`.
#[derive(Debug, Args)]
#[command(
    after_help = "Object names are paths relative to the argument they were found under (or as \
listed, with --files-from), `/`-separated; PROMINENCE reads a name with `/` as a group path \
(`group/name`).\n\
The token comes from --token-file, else PROMINENCE_TOKEN, else ~/.prominence/token.\n\
With --s3 an object's key is PREFIX/<name>, and the store checks each body's SHA-256.\n\
PROMINENCE_SSL_VERIFY=False turns off certificate checks for the API (not for storage).\n\
Ctrl-C (or SIGTERM) stops taking new files and lets the uploads in flight finish (for at most \
--drain-timeout); a second Ctrl-C aborts them. The manifest gets its summary either way.\n\
--delete deletes nothing after a run in which a file failed or that was stopped; it refuses \
--shard K/N, --files-from and --newer-than, which see part of the tree.\n\
Exit status: 0 all files uploaded (or already stored), 1 some failed (or, with --delete, an \
object was not deleted or more than --max-delete would go), 2 usage, configuration or \
authentication error, 130 interrupted."
)]
pub struct UploadArgs {
    /// Files and directories to upload.
    #[arg(value_name = "PATH", required_unless_present = "files_from")]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub destination: DestinationArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Uploads in flight at once: N, or `auto` to find the number while running (it starts at
    /// 128 and doubles while throughput rises, backs off when the API or storage pushes back
    /// with 429, 503 or timeouts), `auto:MAX` to cap it.
    #[arg(long, value_name = "N|auto[:MAX]", default_value = "auto", value_parser = Concurrency::from_str)]
    pub uploads: Concurrency,

    /// Cap the bytes per second sent, shared by every file and part in flight: RATE in KiB/s or
    /// with a suffix B, K, M, G (10M is 10 MiB/s, 512k 512 KiB/s), or a timetable by local time
    /// such as "08:00,512k 19:00,off" (rclone's syntax; also Mon-08:00,2M).
    #[arg(long, value_name = "RATE", value_parser = Schedule::parse)]
    pub bwlimit: Option<Schedule>,

    /// With --s3: files of at least SIZE go as multipart uploads, parts sent in parallel and
    /// each checked by the store (units as --min-size; 5MiB to 5GiB).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = s3_size, requires = "s3")]
    pub multipart_threshold: u64,

    /// With --s3: bytes per part of a multipart upload (advanced; 5MiB to 5GiB, raised if a file
    /// would need over 10,000 parts) [default: 16MiB, more for files over 156 GiB].
    #[arg(long, value_name = "SIZE", value_parser = s3_size, requires = "s3")]
    pub part_size: Option<u64>,

    /// With --s3: parts of one file in flight at once (advanced).
    #[arg(long, value_name = "N", default_value_t = hashup::multipart::PARTS_IN_FLIGHT as u32,
        value_parser = clap::value_parser!(u32).range(1..=64), requires = "s3")]
    pub parts_in_flight: u32,

    #[command(flatten)]
    pub network: NetworkArgs,

    /// Seconds the first Ctrl-C (or SIGTERM) waits for the uploads in flight before aborting
    /// them as a second one would.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,

    /// Journal: append a JSON Lines record per file, then a summary, to FILE; files it already
    /// records as uploaded (same name and SHA-256) are not sent again.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Start the manifest afresh (truncate it) instead of resuming from it.
    #[arg(long, requires = "manifest")]
    pub restart: bool,

    /// Also trust FILE, an earlier run's manifest: what it records as uploaded is not sent again
    /// (repeatable).
    #[arg(long, value_name = "FILE")]
    pub previous: Vec<PathBuf>,

    /// Also skip files the destination already lists with the same name and size (uploaded by
    /// anyone).
    #[arg(long)]
    pub skip_existing: bool,

    /// Check the journal against the store: list the destination once and send again every
    /// file whose object is missing or differs (size; the SHA-256 hashup serve lists; the ETag
    /// S3 answered the upload with), whatever the manifests say.
    #[arg(long)]
    pub check_remote: bool,

    /// Progress on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,

    /// Seconds between status lines (with --progress log, or auto when not on a terminal).
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_every: u64,

    /// Print errors only: no progress and no summary.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Walk and hash, print `<sha256>  <name>` for what would be uploaded (files the manifests
    /// record as uploaded left out); no network (with --delete, only the listing of what is
    /// stored).
    #[arg(long)]
    pub dry_run: bool,

    /// Mirror: after a complete run (no file failed, nothing interrupted), delete the objects
    /// stored where this run's names go (--s3's PREFIX/ and --prefix; with PROMINENCE your own
    /// uploads and the tree's groups) that no local file maps to, among those the selection
    /// would take. Each is journalled in the manifest. With --dry-run, prints `delete NAME`
    /// lines instead (it lists what is stored).
    #[arg(long)]
    pub delete: bool,

    /// With --delete: if more than N objects would go, delete none and exit 1. A tree that went
    /// missing (an unmounted disk, a wrong path or --prefix) would take everything with it; a
    /// night retires a few. Check with --dry-run --delete, then raise it.
    #[arg(long, value_name = "N", default_value_t = hashup::mirror::DEFAULT_MAX_DELETE,
        requires = "delete")]
    pub max_delete: u64,
}

/// A size S3 allows for a part: 5 MiB to 5 GiB.
fn s3_size(s: &str) -> Result<u64, String> {
    let size = hashup::select::parse_size(s)?;
    let range = hashup::multipart::MIN_PART_SIZE..=hashup::multipart::MAX_PART_SIZE;
    if range.contains(&size) {
        Ok(size)
    } else {
        Err(format!("{s:?} is outside S3's part sizes, 5MiB to 5GiB"))
    }
}

impl UploadArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> UploadConfig {
        UploadConfig {
            source: self.source.source(self.paths),
            destination: self.destination.destination(),
            network: self.network.network(),
            cache: self.cache.cache(),
            uploads: self.uploads,
            bwlimit: self.bwlimit,
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            parts_in_flight: self.parts_in_flight as usize,
            manifest: self.manifest,
            restart: self.restart,
            previous: self.previous,
            skip_existing: self.skip_existing,
            check_remote: self.check_remote,
            progress: match self.progress {
                ProgressArg::Auto => ProgressMode::Auto,
                ProgressArg::Bar => ProgressMode::Bar,
                ProgressArg::Log => ProgressMode::Log,
                ProgressArg::None => ProgressMode::None,
            },
            progress_every: Duration::from_secs(self.progress_every),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            quiet: self.quiet,
            dry_run: self.dry_run,
            delete: self.delete,
            max_delete: self.max_delete,
        }
    }
}
