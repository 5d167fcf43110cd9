//! clap definitions for `hashup upload`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use hashup::config::{Destination, Naming, ProgressMode, UploadConfig};
use hashup::walk::WalkOptions;

use super::hash::EngineArgs;
use super::select::SelectArgs;

/// Progress on stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    /// A status line every few seconds (bars on a terminal come later).
    Auto,
    /// A status line every few seconds.
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
Exit status: 0 all files uploaded, 1 some failed, 2 usage, configuration or authentication error."
)]
pub struct UploadArgs {
    /// Files and directories to upload.
    #[arg(value_name = "PATH", required_unless_present = "files_from")]
    pub paths: Vec<PathBuf>,

    /// The PROMINENCE API URL, ending in /prominence/v1 [default: PROMINENCE_URL from the
    /// environment].
    // Not clap's `env`: a URL from the environment must not conflict with --embedded.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// File holding the access token (JSON with access_token, or the raw token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Upload to hashup serve's embedded store in DIR, run in-process on a loopback port.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "token_file"])]
    pub embedded: Option<PathBuf>,

    /// Prepend P/ to every object name.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,

    /// Name objects by their base name only.
    #[arg(long)]
    pub flatten: bool,

    /// Follow symbolic links inside directories (links named on the command line are always followed).
    #[arg(short = 'L', long)]
    pub follow: bool,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Uploads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub uploads: u32,

    /// Retries per file for connection errors, timeouts, 408, 429, 5xx and expired URLs.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Seconds to wait for a connection.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,

    /// Seconds without a byte moving before a request fails.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_timeout: u64,

    /// Write a JSON Lines record per file, then a summary, to FILE.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Progress on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,

    /// Walk and hash, print `<sha256>  <name>` for what would be uploaded; no network.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub select: SelectArgs,
}

impl UploadArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> UploadConfig {
        UploadConfig {
            paths: self.paths,
            walk: WalkOptions {
                follow_links: self.follow,
            },
            select: self.select.options(),
            hash: self.engine.options(),
            destination: match self.embedded {
                Some(store) => Destination::Embedded { store },
                None => Destination::Prominence {
                    url: self.url,
                    token_file: self.token_file,
                },
            },
            naming: Naming {
                flatten: self.flatten,
                prefix: self.prefix,
            },
            uploads: self.uploads as usize,
            retries: self.retries,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            stall_timeout: Duration::from_secs(self.stall_timeout),
            manifest: self.manifest,
            progress: match self.progress {
                ProgressArg::Auto => ProgressMode::Auto,
                ProgressArg::Log => ProgressMode::Log,
                ProgressArg::None => ProgressMode::None,
            },
            dry_run: self.dry_run,
        }
    }
}
