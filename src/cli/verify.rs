//! clap definitions for `hashup verify`.

use std::path::PathBuf;
use std::str::FromStr as _;

use clap::Args;
use hashup::config::VerifyConfig;
use hashup::limit::Concurrency;

use super::destination::{CacheArgs, DestinationArgs, NetworkArgs, SourceArgs};

/// Flags of `hashup verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Give the same PATHs, destination and naming flags as the upload: each file is \
named (and keyed) exactly as `hashup upload` names it.\n\
With --s3 each object gets a HEAD: its size, prominence_sha256 and the store's own SHA-256 \
checksum are compared (a multipart object's checksum is a composite of its parts', compared \
with the one --manifest recorded). Local files are hashed through the hash cache, so a verify \
after an upload reads no file. Through the PROMINENCE API (or --embedded) only names and sizes \
are listed, so only sizes are compared, and the output says so.\n\
Output: one `name: OK|MISSING|DIFFERS (...)|FAILED (...)` line per object, like sha256sum -c; \
a summary on stderr.\n\
Exit status: 0 every object is stored as expected, 1 some object is missing, differs or could \
not be checked (or a local file could not be read), 2 usage, configuration, credentials or a \
store that cannot be reached."
)]
pub struct VerifyArgs {
    /// Files and directories whose objects to check (optional with --manifest).
    #[arg(value_name = "PATH", required_unless_present_any = ["files_from", "manifest"])]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub destination: DestinationArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    /// An upload manifest. Without PATHs: check what it records as stored (names, sizes,
    /// SHA-256s), reading no local file. With PATHs: the composite checksums of multipart
    /// objects come from it.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Requests in flight at once: N, or `auto` to find the number while running (as
    /// upload's --uploads), `auto:MAX` to cap it.
    #[arg(long, value_name = "N|auto[:MAX]", default_value = "auto", value_parser = Concurrency::from_str)]
    pub requests: Concurrency,

    #[command(flatten)]
    pub network: NetworkArgs,

    /// Print only problems: no OK lines and no summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// One JSON object per line (name, key, path, status, sizes, SHA-256s, stored checksum,
    /// evidence, detail), then a {"summary": ...} line.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub cache: CacheArgs,
}

impl VerifyArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> VerifyConfig {
        VerifyConfig {
            source: self.source.source(self.paths),
            destination: self.destination.destination(),
            network: self.network.network(),
            cache: self.cache.cache(),
            manifest: self.manifest,
            requests: self.requests,
            quiet: self.quiet,
            json: self.json,
        }
    }
}
