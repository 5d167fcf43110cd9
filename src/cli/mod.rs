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

    /// The multipart defaults shown in `--help` are the library's.
    #[test]
    fn multipart_defaults_are_the_librarys() {
        let cli = Cli::try_parse_from(["hashup", "upload", "x", "--s3", "s3://b"]).unwrap();
        let Command::Upload(args) = cli.command else {
            panic!("not upload");
        };
        let config = args.into_config();
        assert_eq!(
            config.multipart_threshold,
            hashup::multipart::DEFAULT_THRESHOLD
        );
        assert_eq!(config.part_size, None);
        assert_eq!(config.parts_in_flight, hashup::multipart::PARTS_IN_FLIGHT);
        for bad in ["4MiB", "6GiB", "lots"] {
            let parsed = Cli::try_parse_from([
                "hashup",
                "upload",
                "x",
                "--s3",
                "s3://b",
                "--part-size",
                bad,
            ]);
            assert!(parsed.is_err(), "{bad}");
        }
        // Without --s3 there are no parts.
        assert!(Cli::try_parse_from(["hashup", "upload", "x", "--part-size", "8MiB"]).is_err());
    }

    /// --max-delete's default is the library's, and means nothing without --delete.
    #[test]
    fn delete_flags() {
        let config = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).map_err(|e| e.kind())?;
            let Command::Upload(args) = cli.command else {
                panic!("not upload");
            };
            Ok::<_, clap::error::ErrorKind>(args.into_config())
        };
        let plain = config(&["hashup", "upload", "x"]).unwrap();
        assert!(!plain.delete);
        let mirror = config(&["hashup", "upload", "x", "--delete"]).unwrap();
        assert!(mirror.delete);
        assert_eq!(mirror.max_delete, hashup::mirror::DEFAULT_MAX_DELETE);
        let capped = config(&["hashup", "upload", "x", "--delete", "--max-delete", "7"]);
        assert_eq!(capped.unwrap().max_delete, 7);
        assert_eq!(
            config(&["hashup", "upload", "x", "--max-delete", "7"]).unwrap_err(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }
}
