//! clap definitions for `hashup serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hashup::serve::{
    BackendConfig, Limits, S3Config, ServeConfig, StoreConfig, credentials_from_env,
};
use hashup::sign::Credentials;

/// What `serve --help` says about the limits that are not flags.
const LIMITS_HELP: &str = "\
Limits: at most --max-connections connections are served at once, and at most \
--max-per-address of them from one address (an IPv6 /64 counts as one); more from that address \
are closed at once, more from others wait in the listen backlog (the cap is lowered to fit the \
open-files limit, whose soft value is raised to the hard one at start). A request's line and \
headers must arrive within --header-timeout of the connection opening or of the previous \
response, which also ends idle keep-alive connections, and fit in 64 KiB (else 431). A request \
body may send nothing, and a response go unread, for at most --idle-timeout, and must average \
64 KiB/s after its first 60 s (n bytes may take 60 s + n / 64 KiB/s). A POST to the store must \
deliver its fields before the file within --header-timeout, and may spend at most 4 KiB before \
the first boundary, 8 KiB on one part's headers, 64 fields and 64 KiB on the fields before the \
file, and 64 KiB after it.";

/// Flags of `hashup serve`.
///
/// The backend is the embedded store in `--store DIR` unless `--s3-endpoint` is given.
#[derive(Debug, Args)]
#[command(after_help = LIMITS_HELP)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the bound URL is printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// JSON file of bearer tokens: {"<token>": {"user": "alice", "groups": ["g1"]}}.
    #[arg(long, value_name = "FILE")]
    pub tokens: PathBuf,

    /// Embedded store directory (the default backend).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "hashup-store",
        conflicts_with = "s3_endpoint"
    )]
    pub store: PathBuf,

    /// S3-compatible endpoint, e.g. http://127.0.0.1:8333; credentials come from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "URL", requires = "bucket")]
    pub s3_endpoint: Option<String>,

    /// Bucket for uploads (must exist on S3; default "hashup" for the embedded store).
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,

    /// Region of the signing scope.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub region: String,

    /// Base URL clients reach this server at, used in the embedded store's presigned URLs
    /// [default: http://<bound address>].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Access key id of the embedded store [default: generated, kept in DIR/.hashup/credentials.json].
    #[arg(
        long,
        value_name = "ID",
        env = "HASHUP_STORE_ACCESS_KEY_ID",
        requires = "store_secret_access_key"
    )]
    pub store_access_key_id: Option<String>,

    /// Secret access key of the embedded store.
    #[arg(
        long,
        value_name = "SECRET",
        env = "HASHUP_STORE_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "store_access_key_id"
    )]
    pub store_secret_access_key: Option<String>,

    /// Connections served at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections served at once from one address (behind a reverse proxy all come from its
    /// address: raise it to --max-connections).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_per_address as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_address: u32,

    /// Seconds a client has to send a request's headers, or a POST form its fields.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().header_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Seconds a request body may send nothing, or a response go unread.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

impl ServeArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        let backend = match self.s3_endpoint {
            Some(endpoint) => BackendConfig::S3(S3Config {
                endpoint,
                bucket: self.bucket.context("--s3-endpoint needs --bucket")?,
                region: self.region,
                credentials: credentials_from_env().context(
                    "--s3-endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                )?,
            }),
            None => BackendConfig::Store(StoreConfig {
                dir: self.store,
                bucket: self.bucket.unwrap_or_else(|| "hashup".to_string()),
                region: self.region,
                credentials: match (self.store_access_key_id, self.store_secret_access_key) {
                    (Some(id), Some(secret)) => Some(Credentials::new(id, secret)),
                    _ => None,
                },
            }),
        };
        Ok(ServeConfig {
            listen: self.listen,
            tokens: self.tokens,
            public_url: self.public_url,
            backend,
            limits: Limits {
                max_connections: self.max_connections as usize,
                max_per_address: self.max_per_address as usize,
                header_timeout: Duration::from_secs(self.header_timeout),
                idle_timeout: Duration::from_secs(self.idle_timeout),
                ..Limits::default()
            },
        })
    }
}
