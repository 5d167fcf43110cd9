//! clap definitions for `hashup manifest summary|merge|diff`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hashup::config::ManifestConfig;

/// Flags of `hashup manifest`.
#[derive(Debug, Args)]
#[command(
    after_help = "A manifest is what `hashup upload --manifest FILE` writes: one JSON line per file, \
then a summary line. A line over 1 MiB, or a sha256 that is not 64 hex digits, is an error naming \
the file and line (exit 2). Names and errors read from a manifest are printed with control \
characters escaped."
)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

/// The manifest subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Print each manifest's latest run apart from its names' state (stored, failed, gone
    /// locally), and its failures.
    Summary(SummaryArgs),
    /// Merge shard manifests into one; report names in several shards, and gaps against a list.
    Merge(MergeArgs),
    /// Compare two runs' manifests name by name.
    Diff(DiffArgs),
}

/// Flags of `hashup manifest summary`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every run finished with no failure (or had nothing to do), \
1 some file failed or a run stopped early or did not finish, 2 a manifest could not be read."
)]
pub struct SummaryArgs {
    /// Manifests written by `hashup upload --manifest`.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Print one JSON object per manifest instead of plain lines.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `hashup manifest merge`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each name's last record in a manifest counts; a name in two manifests is \
an overlap (the uploaded record, else the later manifest's, is kept). Records are written sorted \
by name, then one recomputed summary line.\n\
Exit status: 0 clean, 1 overlaps, gaps, checksum mismatches, failed records or an unfinished \
shard, 2 a manifest or the list could not be read or the output written."
)]
pub struct MergeArgs {
    /// Shard manifests.
    #[arg(value_name = "MANIFEST", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Write the merged manifest to OUT instead of standard output (replaced atomically).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// A sha256sum-style list of every object name (as `hashup upload --dry-run` prints):
    /// report names missing from the manifests (gaps), names not listed (extras) and checksum
    /// mismatches.
    #[arg(long, value_name = "LIST")]
    pub expect: Option<PathBuf>,
}

/// Flags of `hashup manifest diff`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints `+ name` (added), `- name` (removed), `~ name (sha a.. -> b.., \
failed -> uploaded)` (checksum or status changed), then the counts.\n\
Exit status: 0 no differences, 1 differences, 2 a manifest could not be read."
)]
pub struct DiffArgs {
    /// The earlier run's manifest.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,

    /// The later run's manifest.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
}

impl ManifestArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> ManifestConfig {
        match self.command {
            ManifestCommand::Summary(args) => ManifestConfig::Summary {
                files: args.files,
                json: args.json,
            },
            ManifestCommand::Merge(args) => ManifestConfig::Merge {
                inputs: args.inputs,
                output: args.output,
                expect: args.expect,
            },
            ManifestCommand::Diff(args) => ManifestConfig::Diff {
                old: args.old,
                new: args.new,
            },
        }
    }
}
