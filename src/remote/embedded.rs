//! `--embedded DIR`: `hashup serve`'s verifying store, run in-process on a loopback port for
//! one run, with a one-run token.

use std::collections::{BTreeSet, HashMap};

use crate::serve::auth::{Identity, Tokens};
use crate::serve::{BackendConfig, Limits, ServeConfig, Server, StoreConfig};

/// The user the embedded store's one-run token stands for.
pub const EMBEDDED_USER: &str = "hashup";

/// A running embedded store: its API URL, the run's token, and how to stop it.
pub struct Embedded {
    /// The `PROMINENCE_URL` to send presign requests to.
    pub url: String,
    /// The one-run token.
    pub token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Embedded {
    /// Stops the server once its requests in flight are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await?
    }
}

/// Starts `serve`'s embedded store on a loopback port with a one-run token whose groups cover
/// every directory in `names` (PROMINENCE reads `a/b` as group `a`'s object `b`).
pub async fn start<'a>(
    store: &std::path::Path,
    names: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Embedded> {
    let groups: BTreeSet<String> = names
        .into_iter()
        .filter_map(|name| name.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .collect();
    let token = hex::encode(rand::random::<[u8; 24]>());
    let identity = Identity {
        user: EMBEDDED_USER.into(),
        groups: groups.into_iter().collect(),
    };
    let tokens = Tokens::from_map(HashMap::from([(token.clone(), identity)]))
        .map_err(|e| anyhow::anyhow!("cannot set up the embedded store's token: {e}"))?;
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        tokens: Default::default(),
        public_url: None,
        backend: BackendConfig::Store(StoreConfig {
            dir: store.to_path_buf(),
            bucket: "hashup".into(),
            region: "us-east-1".into(),
            credentials: None,
        }),
        // Every connection comes from this run, on loopback: no per-address cap.
        limits: Limits {
            max_per_address: usize::MAX,
            ..Limits::default()
        },
    };
    let server = Server::bind_with_tokens(config, tokens).await?;
    let url = server.api_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Ok(Embedded {
        url,
        token,
        stop,
        server: handle,
    })
}
