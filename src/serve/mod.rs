//! `hashup serve`: a PROMINENCE-compatible presign endpoint.
//!
//! The API ([`api`], contract in `docs/prominence-api.md`) hands out presigned upload targets for
//! one of two backends:
//!
//! - **S3** ([`s3`]): any S3-compatible service (tested on SeaweedFS). With a checksum the answer
//!   is a SigV4 POST policy that also binds `x-amz-checksum-sha256`, so the store itself refuses a
//!   body whose SHA-256 differs (PROMINENCE only records the checksum as metadata); without one it
//!   is a presigned PUT.
//! - **Embedded store** ([`store`]): the server presigns URLs pointing at itself, under `/store/`,
//!   and verifies signature, expiry, policy and the body's SHA-256 while streaming it to disk.
//!
//! ```no_run
//! use hashup::serve::{BackendConfig, ServeConfig, StoreConfig};
//!
//! let config = ServeConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     tokens: "tokens.json".into(),
//!     public_url: None,
//!     backend: BackendConfig::Store(StoreConfig {
//!         dir: "store".into(),
//!         bucket: "hashup".into(),
//!         region: "us-east-1".into(),
//!         credentials: None,
//!     }),
//!     limits: Default::default(),
//! };
//! hashup::serve::run(config).unwrap();
//! ```

pub mod api;
pub mod auth;
mod backend;
mod body;
pub mod connections;
pub mod s3;
mod storage;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

pub use connections::Limits;
pub use s3::S3Config;
pub use storage::{ObjectInfo, Presigned};
pub use store::StoreConfig;

use crate::sign::Credentials;

/// How long every presigned URL or POST policy the API hands out stays valid (PROMINENCE's 600 s).
pub const URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

/// Everything `serve` needs, built once from the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The tokens file (see [`auth`]).
    pub tokens: PathBuf,
    /// Base URL clients reach this server at, for the embedded store's presigned URLs; default
    /// `http://<bound address>`.
    pub public_url: Option<String>,
    /// Where objects go.
    pub backend: BackendConfig,
    /// Bounds on connections, timeouts and bodies ([`Limits::default`] unless testing).
    pub limits: Limits,
}

/// Which storage the presigned URLs point to.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// The embedded verifying store.
    Store(StoreConfig),
    /// An S3-compatible service.
    S3(S3Config),
}

/// The S3 credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`), if both are set and not empty.
pub fn credentials_from_env() -> Option<Credentials> {
    let get = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let mut creds = Credentials::new(get("AWS_ACCESS_KEY_ID")?, get("AWS_SECRET_ACCESS_KEY")?);
    creds.session_token = get("AWS_SESSION_TOKEN");
    Some(creds)
}

/// Logs a failure the client only sees as a generic error, with its whole cause chain.
fn log_error(context: &str, err: &dyn std::error::Error) {
    eprintln!(
        "hashup serve: {context}: {}",
        crate::message::error_chain(err)
    );
}

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    limits: Limits,
}

impl Server {
    /// Loads the tokens, opens the backend and binds the listener.
    pub async fn bind(config: ServeConfig) -> anyhow::Result<Server> {
        let tokens = auth::Tokens::load(&config.tokens)?;
        Server::bind_with_tokens(config, tokens).await
    }

    /// Like [`Server::bind`], with the token table given in memory: `config.tokens` is not read.
    /// This is how `hashup upload --embedded` runs the store in-process with a one-run token.
    pub async fn bind_with_tokens(
        config: ServeConfig,
        tokens: auth::Tokens,
    ) -> anyhow::Result<Server> {
        let listener = connections::listen(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let public_url = public_url.trim_end_matches('/').to_string();

        let mut limits = config.limits;
        let cap = connections::connection_cap(limits.max_connections);
        if cap < limits.max_connections {
            eprintln!(
                "hashup serve: serving at most {cap} connections at once (not {}): the open-files limit allows no more",
                limits.max_connections
            );
            limits.max_connections = cap;
        }

        let mut router = axum::Router::new();
        let backend = match config.backend {
            BackendConfig::S3(s3) => backend::Backend::S3(s3::S3Backend::new(s3)?),
            BackendConfig::Store(cfg) => {
                let store = Arc::new(store::Store::open(cfg, &public_url)?);
                router = router.merge(store::router(store.clone(), limits));
                backend::Backend::Store(store)
            }
        };
        let api = api::router(Arc::new(api::ApiState {
            tokens,
            backend,
            limits,
        }));
        Ok(Server {
            listener,
            router: router.merge(api),
            addr,
            limits,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `PROMINENCE_URL` of this server.
    pub fn api_url(&self) -> String {
        format!("http://{}{}", self.addr, api::API_PREFIX)
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        connections::serve(self.listener, self.router, self.limits, shutdown).await;
        Ok(())
    }
}

/// Runs the server until Ctrl-C or SIGTERM, printing the API URL on stdout once listening.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Let the connection cap, not the soft open-files limit, bound connections.
    crate::rlimit::raise_open_files_limit();
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        println!("hashup serve: listening on {}", server.api_url());
        server.run_until(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
