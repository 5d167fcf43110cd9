//! clap definitions shared by `hashup upload` and `hashup verify`: where the objects are (the
//! PROMINENCE API, the embedded store, S3), how files are named, how requests are sent and
//! where the hash cache lives, so that both commands read the same flags the same way and
//! always agree on an object's key.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use clap::Args;
use hashup::config::{self, Cache, Destination, Naming, Network, Source};
use hashup::presign::s3::S3Location;
use hashup::walk::WalkOptions;

use super::hash::EngineArgs;
use super::select::SelectArgs;

/// Where the objects are: a PROMINENCE API (the default), the embedded store, or S3.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// The PROMINENCE API URL, ending in /prominence/v1 [default: PROMINENCE_URL from the
    /// environment].
    // Not clap's `env`: a URL from the environment must not conflict with --embedded.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// File holding the access token (JSON with access_token, or the raw token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Use hashup serve's embedded store in DIR, run in-process on a loopback port.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "token_file"])]
    pub embedded: Option<PathBuf>,

    /// Go straight to S3 (no PROMINENCE API), signing each request here. Credentials as the
    /// AWS CLI finds them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), else
    /// the profile AWS_PROFILE (default) in ~/.aws/credentials and ~/.aws/config, else web
    /// identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN), else container credentials, else
    /// the EC2 instance metadata service.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]", value_parser = S3Location::from_str,
        conflicts_with_all = ["url", "token_file", "embedded"])]
    pub s3: Option<S3Location>,

    /// S3 endpoint for --s3, addressed path-style [default: AWS_ENDPOINT_URL_S3, else
    /// AWS_ENDPOINT_URL, else the profile's endpoint_url, else AWS in the region].
    #[arg(long, value_name = "URL", requires = "s3")]
    pub endpoint: Option<String>,

    /// Region for --s3's signatures [default: AWS_REGION, else AWS_DEFAULT_REGION, else the
    /// profile's region, else us-east-1].
    #[arg(long, value_name = "REGION", requires = "s3")]
    pub region: Option<String>,
}

impl DestinationArgs {
    /// The core's destination.
    pub fn destination(self) -> Destination {
        match (self.s3, self.embedded) {
            (Some(location), _) => Destination::S3 {
                location,
                endpoint: self.endpoint,
                region: self.region,
            },
            (None, Some(store)) => Destination::Embedded { store },
            (None, None) => Destination::Prominence {
                url: self.url,
                token_file: self.token_file,
            },
        }
    }
}

/// How files are found below the arguments and named.
#[derive(Debug, Args)]
pub struct NamingArgs {
    /// Prepend P/ to every object name.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,

    /// Name objects by their base name only.
    #[arg(long)]
    pub flatten: bool,

    /// Follow symbolic links inside directories (links named on the command line are always followed).
    #[arg(short = 'L', long)]
    pub follow: bool,
}

impl NamingArgs {
    /// The core's naming rules.
    pub fn naming(&self) -> Naming {
        Naming {
            flatten: self.flatten,
            prefix: self.prefix.clone(),
        }
    }
}

/// How a command's local files are named, read and selected.
#[derive(Debug, Args)]
pub struct SourceArgs {
    #[command(flatten)]
    pub naming: NamingArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub select: SelectArgs,
}

impl SourceArgs {
    /// The core's source: `paths`, walked, selected and named by these flags.
    pub fn source(self, paths: Vec<PathBuf>) -> Source {
        Source {
            paths,
            walk: WalkOptions {
                follow_links: self.naming.follow,
            },
            select: self.select.options(),
            hash: self.engine.options(),
            naming: self.naming.naming(),
        }
    }
}

/// How requests are sent.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Retries per request (an upload's: per file) for connection errors, timeouts, 408, 429,
    /// 5xx and expired URLs.
    #[arg(long, value_name = "N", default_value_t = hashup::retry::DEFAULT_RETRIES)]
    pub retries: u32,

    /// Seconds to wait for a connection.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_CONNECT_TIMEOUT.as_secs())]
    pub connect_timeout: u64,

    /// Seconds without a byte moving before a request fails. Every request also has a deadline
    /// for the whole of it: connect and stall timeouts plus its bytes at 64 KiB/s, so a server
    /// trickling a byte at a time cannot hold it forever.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_STALL_TIMEOUT.as_secs())]
    pub stall_timeout: u64,

    /// Trust the CA certificates in this PEM file too (for the API and storage).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

impl NetworkArgs {
    /// The core's network settings.
    pub fn network(self) -> Network {
        Network {
            retries: self.retries,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            stall_timeout: Duration::from_secs(self.stall_timeout),
            cacert: self.cacert,
        }
    }
}

/// Where the hash cache lives.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Keep the hash cache in DIR [default: $XDG_CACHE_HOME/hashup, else ~/.cache/hashup].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// Read every file, and neither use nor update the hash cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The core's cache settings.
    pub fn cache(self) -> Cache {
        Cache {
            state_dir: self.state,
            enabled: !self.no_cache,
        }
    }
}
