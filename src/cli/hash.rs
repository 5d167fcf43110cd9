//! clap definitions for `hashup hash`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hashup::config::{CheckConfig, HashConfig, OutputFormat};
use hashup::hash::{HashOptions, IoMode};
use hashup::walk::WalkOptions;

/// How files are read (see `hashup bench` for what each costs here).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IoArg {
    /// Map large files, read small ones.
    Auto,
    /// Map every non-empty file.
    Mmap,
    /// Read every file through a buffer.
    Read,
}

/// Engine flags shared by hashing and checking.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Hashing threads [default: one per core, or RAYON_NUM_THREADS].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// How to read files.
    #[arg(long, value_enum, default_value = "auto")]
    pub io: IoArg,

    /// With --io auto, map files of at least this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = hashup::hash::io::DEFAULT_MMAP_THRESHOLD)]
    pub mmap_threshold: u64,
}

impl EngineArgs {
    pub(crate) fn options(&self) -> HashOptions {
        HashOptions {
            threads: self.jobs.unwrap_or(0),
            io: match self.io {
                IoArg::Auto => IoMode::Auto,
                IoArg::Mmap => IoMode::Mmap,
                IoArg::Read => IoMode::Read,
            },
            mmap_threshold: self.mmap_threshold,
            cache: None,
            max_size: None,
        }
    }
}

/// Flags of `hashup hash`.
#[derive(Debug, Args)]
#[command(
    after_help = "Output is byte-compatible with GNU sha256sum, so `sha256sum -c` \
accepts it.\nExit status: 0 all files hashed (or checked OK), 1 some failed, 2 usage or fatal error."
)]
pub struct HashArgs {
    /// Files and directories to hash (`-` is standard input); with --check, lists to verify
    /// (standard input when none is given).
    #[arg(value_name = "PATH", required_unless_present = "check")]
    pub paths: Vec<PathBuf>,

    /// Read SHA-256 sums from the files and check them, like `sha256sum -c`.
    #[arg(short, long)]
    pub check: bool,

    /// Print one JSON object per file instead of sha256sum lines.
    #[arg(long, conflicts_with = "check")]
    pub json: bool,

    /// Follow symbolic links inside directories (links named on the command line are always followed).
    #[arg(short = 'L', long, conflicts_with = "check")]
    pub follow: bool,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// With --check: don't print OK for each verified file.
    #[arg(long, requires = "check", overrides_with_all = ["status", "warn"])]
    pub quiet: bool,

    /// With --check: print nothing; the exit status shows success.
    #[arg(long, requires = "check", overrides_with_all = ["quiet", "warn"])]
    pub status: bool,

    /// With --check: exit non-zero for improperly formatted lines.
    #[arg(long, requires = "check")]
    pub strict: bool,

    /// With --check: warn about improperly formatted lines.
    #[arg(short, long, requires = "check", overrides_with_all = ["quiet", "status"])]
    pub warn: bool,

    /// With --check: don't fail or report status for missing files.
    #[arg(long, requires = "check")]
    pub ignore_missing: bool,
}

/// What `hashup hash` was asked to do.
pub enum HashJob {
    /// Hash and print.
    Hash(HashConfig),
    /// Verify lists.
    Check(CheckConfig),
}

impl HashArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_job(self) -> HashJob {
        let hash = self.engine.options();
        if self.check {
            let lists = if self.paths.is_empty() {
                vec!["-".into()]
            } else {
                self.paths
            };
            return HashJob::Check(CheckConfig {
                lists,
                hash,
                quiet: self.quiet,
                status: self.status,
                strict: self.strict,
                warn: self.warn,
                ignore_missing: self.ignore_missing,
            });
        }
        HashJob::Hash(HashConfig {
            paths: self.paths,
            walk: WalkOptions {
                follow_links: self.follow,
            },
            hash,
            format: if self.json {
                OutputFormat::Json
            } else {
                OutputFormat::Sums
            },
        })
    }
}
