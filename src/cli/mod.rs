//! clap definitions only: the core never sees these types.

pub mod bench;
pub mod completions;
pub mod destination;
pub mod hash;
pub mod man;
pub mod manifest;
pub mod select;
pub mod serve;
pub mod upload;
pub mod verify;

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
    /// Check that every file is stored with its size and SHA-256, without downloading anything.
    Verify(Box<verify::VerifyArgs>),
    /// Read upload manifests back: summary, merge shards, diff two runs.
    Manifest(manifest::ManifestArgs),
    /// Print the shell completion script for bash, zsh, fish, powershell or elvish.
    Completions(completions::CompletionsArgs),
    /// Manual pages in roff: print hashup's or a subcommand's, or write them all into a directory.
    Man(man::ManArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Upload and verify read the network and cache flags alike, with the library's defaults.
    #[test]
    fn network_and_cache_defaults_are_the_librarys() {
        let upload = |args: &[&str]| {
            let cli = Cli::try_parse_from(["hashup", "upload", "x"].iter().chain(args)).unwrap();
            let Command::Upload(args) = cli.command else {
                panic!("not upload");
            };
            let config = args.into_config();
            (config.network, config.cache)
        };
        let verify = |args: &[&str]| {
            let cli = Cli::try_parse_from(["hashup", "verify", "x"].iter().chain(args)).unwrap();
            let Command::Verify(args) = cli.command else {
                panic!("not verify");
            };
            let config = args.into_config();
            (config.network, config.cache)
        };
        let defaults = (
            hashup::config::Network::default(),
            hashup::config::Cache::default(),
        );
        assert_eq!(upload(&[]), defaults);
        assert_eq!(verify(&[]), defaults);
        let set = [
            "--retries",
            "2",
            "--connect-timeout",
            "3",
            "--stall-timeout",
            "4",
            "--cacert",
            "ca.pem",
            "--state",
            "st",
            "--no-cache",
        ];
        let expected = (
            hashup::config::Network {
                retries: 2,
                connect_timeout: std::time::Duration::from_secs(3),
                stall_timeout: std::time::Duration::from_secs(4),
                cacert: Some("ca.pem".into()),
            },
            hashup::config::Cache {
                state_dir: Some("st".into()),
                enabled: false,
            },
        );
        assert_eq!(upload(&set), expected);
        assert_eq!(verify(&set), expected);
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

    /// verify takes upload's destination and naming flags; PATHs may be left out only for a
    /// manifest (or a --files-from list).
    #[test]
    fn verify_shares_uploads_flags() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["hashup", "verify"].iter().chain(args)).map(|cli| {
                let Command::Verify(args) = cli.command else {
                    panic!("not verify");
                };
                args.into_config()
            })
        };
        let config = parse(&["x", "--s3", "s3://b/p", "--prefix", "lab", "-L"]).unwrap();
        assert_eq!(
            config.destination,
            hashup::config::Destination::S3 {
                location: "s3://b/p".parse().unwrap(),
                endpoint: None,
                region: None,
            }
        );
        assert_eq!(config.source.naming.prefix.as_deref(), Some("lab"));
        assert!(config.source.walk.follow_links && config.cache.enabled && !config.json);
        assert!(parse(&["--s3", "s3://b", "--manifest", "m.jsonl"]).is_ok());
        assert!(parse(&["--files-from", "list"]).is_ok());
        assert!(
            parse(&["--s3", "s3://b"]).is_err(),
            "no PATH and no manifest"
        );
        assert!(parse(&["x", "--s3", "s3://b", "--url", "http://h"]).is_err());
        assert!(
            parse(&["x", "--endpoint", "http://h"]).is_err(),
            "--endpoint needs --s3"
        );
        assert!(parse(&["x", "--requests", "0"]).is_err());
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
