//! clap definitions for the file selection of `hashup upload` and `hashup verify` (see
//! `hashup::select`).

use std::path::PathBuf;

use clap::Args;
use hashup::select::{NewerThan, SelectOptions, Shard, parse_newer_than, parse_shard, parse_size};

/// Which files to take.
#[derive(Debug, Args)]
#[command(next_help_heading = "Selection")]
pub struct SelectArgs {
    /// Take only files matching GLOB (repeatable). Without `/` it matches the base name at
    /// any depth (`*.sif`); with `/`, the name below the argument (`lib/**/*.tar`).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Leave out files and directories matching GLOB (repeatable; same rules as --include;
    /// wins over it). An excluded directory is not read; GLOB/ matches directories only.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Leave out files and directories whose name starts with `.` (taken by default, as aws
    /// s3 sync and rclone do).
    #[arg(long)]
    pub exclude_hidden: bool,

    /// Only files of at least SIZE: bytes, or k/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti (powers
    /// of 1024), e.g. 10M, 1.5G, 4KiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,

    /// Only files of at most SIZE (units as --min-size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Only files modified after WHEN: an age before now (36h, 7d, 1d12h; units s m h d w), or
    /// an RFC 3339 time (2026-05-01T12:00:00Z, 2026-05-01T14:00:00+02:00, 2026-05-01 for
    /// midnight UTC).
    #[arg(long, value_name = "WHEN", value_parser = parse_newer_than)]
    pub newer_than: Option<NewerThan>,

    /// Also take the paths listed in FILE, one per line (`-`: standard input); each is named
    /// as listed (a leading ./ dropped), and a listed directory is walked like an argument.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,

    /// With --files-from: entries end with NUL, not newline (find -print0).
    #[arg(short = '0', long, requires = "files_from")]
    pub null: bool,

    /// Take only shard K (from 0) of N: files whose object name's SHA-256 (first 8 bytes,
    /// big-endian) mod N is K. auto/N reads K from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or
    /// HASHUP_SHARD_INDEX.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

impl SelectArgs {
    /// The core's plain selection options.
    pub fn options(self) -> SelectOptions {
        SelectOptions {
            include: self.include,
            exclude: self.exclude,
            exclude_hidden: self.exclude_hidden,
            min_size: self.min_size,
            max_size: self.max_size,
            newer_than: self.newer_than,
            files_from: self.files_from,
            null_separated: self.null,
            shard: self.shard,
        }
    }
}
