//! clap definitions only: the core never sees these types.

pub mod serve;

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
    /// Run a PROMINENCE-compatible presign endpoint (S3 backend or embedded store).
    Serve(serve::ServeArgs),
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
