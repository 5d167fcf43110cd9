//! clap definitions only: the core never sees these types.

pub mod bench;
pub mod hash;
pub mod manifest;
pub mod select;
pub mod serve;
pub mod upload;

use clap::{Parser, Subcommand};

/// Parallel SHA-256 hashing and bulk upload to object storage through presigned URLs.
#[derive(Debug, Parser)]
#[command(name = "hashup", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hash files and directories in parallel; output compatible with sha256sum (and -c to check).
    Hash(hash::HashArgs),
    /// Measure SHA-256 throughput on this machine: in memory per thread count, and on files.
    Bench(bench::BenchArgs),
    /// Run a PROMINENCE-compatible presign endpoint (S3 backend or embedded store).
    Serve(serve::ServeArgs),
    /// Hash files and upload them, many at once, through a PROMINENCE presign API or straight to S3.
    Upload(Box<upload::UploadArgs>),
    /// Read upload manifests back: summary, merge shards, diff two runs.
    Manifest(manifest::ManifestArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
