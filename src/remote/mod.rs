//! The remote: where a run's objects are stored, resolved once into one value that every
//! command asks, whichever kind of destination it is.
//!
//! ```text
//!   config::Destination --Reach::resolve (credentials, TLS; no network)--> Reach
//!       --Remote::connect (clients; the embedded store started)--> Remote
//!   Remote: presigner | multipart | list | lookups (verify) | delete | key rule | size limit
//! ```
//!
//! Three kinds of destination stand behind it: a PROMINENCE API ([`api`]), `hashup serve`'s
//! embedded store run in-process ([`embedded`], spoken to through its PROMINENCE API with a
//! one-run token), and direct S3 mode ([`s3`]: every request signed here). Only this module
//! and its files tell them apart; a fourth kind would be a file here and an arm in each match
//! of [`Remote`].
//!
//! Every request that carries no file goes through the run's [`Requests`]
//! ([`crate::request`]): one retry loop, one classification per protocol, one stop level.

pub mod api;
pub mod embedded;
pub mod listing;
pub mod resolve;
pub mod s3;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use listing::{Listing, Place, StoredObject};
pub use resolve::{Env, Reach};

use crate::http::{Timeouts, Tls};
use crate::manifest::{Manifest, OpenUpload};
use crate::multipart::{Multipart, MultipartOptions};
use crate::naming::Keys;
use crate::presign::Presigner;
use crate::request::Requests;
use crate::transfer::Storage;

/// What the store says it holds. Header values are server text, already made printable
/// ([`crate::message::server_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    /// Size in bytes.
    pub size: u64,
    /// `x-amz-meta-prominence_sha256`: the hex SHA-256 the uploader wrote.
    pub sha256: Option<String>,
    /// `x-amz-checksum-sha256`: base64 SHA-256 of a single upload's body, or a multipart
    /// upload's composite `base64-N`; through a listing, the SHA-256 the store lists.
    pub checksum: Option<String>,
    /// The answer carries the object's user metadata (a `HEAD` does, a listing does not): a
    /// missing `prominence_sha256` then means none was written.
    pub with_metadata: bool,
}

/// What a store answered about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It holds the object.
    Found(Stored),
    /// It does not.
    Missing,
}

/// Why a store gave no answer about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// Every other lookup would fail the same way (credentials refused, no such bucket, the
    /// store unreachable): the run stops with this message.
    Fatal(String),
    /// This object's lookup failed (after its retries); the others go on.
    Failed(String),
}

/// Why a listing or a deletion failed; the message names what, never a signed URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// Every other request would fail the same way: credentials refused, a missing bucket, a
    /// 401 from the API.
    #[error("{0}")]
    Fatal(String),
    /// This request failed (after its retries).
    #[error("{0}")]
    Failed(String),
    /// The run was asked to stop (Ctrl-C) before a retry; what the last attempt ran into.
    #[error("interrupted before a retry; last attempt: {0}")]
    Stopped(String),
}

/// How object names map to storage keys, for telling which stored objects a file maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMap {
    /// One key per name: direct S3 mode (`PREFIX/name`); names are compared.
    Names,
    /// PROMINENCE for a known user (the embedded store's): [`Keys::Prominence`].
    Prominence {
        /// The user.
        user: String,
    },
    /// A PROMINENCE API whose user name is not known here. An own upload `x` is
    /// `uploads/<user>/x`, a group upload `s/x` is `uploads/s/x`: the same key when group `s`
    /// is the user's own name. So each protects the other: a stored `x` is kept when a file is
    /// named `s/x` for any one-segment `s`, and a stored `s/x` when a file is named `x`.
    ProminenceUnknownUser,
}

/// A destination, connected: its clients, and the embedded store when that is the destination.
pub struct Remote {
    kind: Kind,
    /// The embedded store's server, stopped by [`Remote::close`].
    embedded: Option<embedded::Embedded>,
    timeouts: Timeouts,
    /// Storage's TLS settings (`--cacert`; never `PROMINENCE_SSL_VERIFY`).
    storage_tls: Tls,
    requests: Requests,
}

enum Kind {
    /// A PROMINENCE API, or the embedded store through its API.
    Api(api::Api),
    /// Direct S3 mode.
    S3(s3::S3),
}

impl Remote {
    /// Connects to `reach`'s destination: builds its clients and, for the embedded store,
    /// starts it with a one-run token whose groups cover `names`. Every request without a file
    /// goes through `requests`.
    pub async fn connect<'a>(
        reach: Reach,
        names: impl IntoIterator<Item = &'a str>,
        timeouts: Timeouts,
        requests: Requests,
    ) -> anyhow::Result<Remote> {
        let Reach {
            destination,
            storage_tls,
        } = reach;
        let mut embedded = None;
        let kind = match destination {
            resolve::Resolved::Api { url, token, tls } => {
                let client =
                    crate::presign::prominence::Prominence::with_tls(&url, &token, timeouts, &tls)?;
                Kind::Api(api::Api::new(client, None, requests.clone()))
            }
            resolve::Resolved::Embedded { store } => {
                let server = embedded::start(&store, names).await?;
                let client = crate::presign::prominence::Prominence::new(
                    &server.url,
                    &server.token,
                    timeouts,
                )?;
                embedded = Some(server);
                Kind::Api(api::Api::new(
                    client,
                    Some(embedded::EMBEDDED_USER.into()),
                    requests.clone(),
                ))
            }
            resolve::Resolved::Direct(signer) => Kind::S3(s3::S3::new(
                signer,
                timeouts,
                &storage_tls,
                requests.clone(),
            )?),
        };
        Ok(Remote {
            kind,
            embedded,
            timeouts,
            storage_tls,
            requests,
        })
    }

    /// Stops the embedded store, if this remote started one (its requests in flight finish).
    pub async fn close(self) -> anyhow::Result<()> {
        match self.embedded {
            Some(server) => server.stop().await,
            None => Ok(()),
        }
    }

    /// Who hands out upload targets: the API, or the local signer in direct S3 mode.
    pub fn presigner(&self) -> Arc<dyn Presigner> {
        match &self.kind {
            Kind::Api(api) => api.presigner(),
            Kind::S3(s3) => s3.presigner(),
        }
    }

    /// A storage client for the files' bodies (its own client: no token ever reaches it).
    pub fn storage(&self) -> reqwest::Result<Storage> {
        Storage::with_tls(self.timeouts, &self.storage_tls)
    }

    /// The multipart engine where the destination has one (direct S3 mode), journalling in
    /// `manifest`, resuming `open`.
    pub fn multipart(
        &self,
        options: MultipartOptions,
        manifest: Arc<Manifest>,
        open: Vec<OpenUpload>,
    ) -> reqwest::Result<Option<Multipart>> {
        match &self.kind {
            Kind::Api(_) => Ok(None),
            Kind::S3(s3) => Multipart::new(
                s3.signer(),
                self.timeouts,
                &self.storage_tls,
                options,
                self.requests.clone(),
                manifest,
                open,
            )
            .map(Some),
        }
    }

    /// How this remote maps names to keys ([`crate::mirror::Planned`]).
    pub fn key_map(&self) -> KeyMap {
        match &self.kind {
            Kind::Api(api) => api.key_map(),
            Kind::S3(_) => KeyMap::Names,
        }
    }

    /// How object names become storage keys here ([`KeyRule::key`]).
    pub fn key_rule(&self) -> KeyRule {
        match &self.kind {
            Kind::Api(api) => KeyRule(api.keys()),
            Kind::S3(s3) => KeyRule(Keys::Prefixed(s3.prefix().to_string())),
        }
    }

    /// Lists what is stored where `names` go (`prefix`: the run's `--prefix`): in direct S3
    /// mode the keys under `PREFIX/` (and `--prefix`); with PROMINENCE the user's own uploads
    /// (without `--prefix`) and the groups of the names. A place the API refuses to list (403)
    /// is left out with its reason in [`Listing::refused`]; anything else that fails fails the
    /// listing.
    pub async fn list<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        prefix: Option<&str>,
    ) -> Result<Listing, RemoteError> {
        match &self.kind {
            Kind::Api(api) => api.list(names, prefix).await,
            Kind::S3(s3) => s3.list(prefix).await,
        }
    }

    /// Deletes one stored object, with retries (gone already counts as deleted).
    pub async fn delete(&self, object: &StoredObject) -> Result<(), RemoteError> {
        match &self.kind {
            Kind::Api(api) => api.delete(object).await,
            Kind::S3(s3) => s3.delete(object).await,
        }
    }

    /// Where `hashup verify` looks objects up: a `HEAD` per key in direct S3 mode; through the
    /// API, its listings of the places `names` go, fetched once here. `Err` is fatal.
    pub async fn lookups<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Lookups, String> {
        match &self.kind {
            // Anything short of a listing is fatal here: no name could be checked (a refused
            // group fails only its own names).
            Kind::Api(api) => match api.list(names, None).await {
                Ok(listing) => Ok(Lookups::Listing(listing)),
                Err(err) => Err(err.to_string()),
            },
            Kind::S3(s3) => Ok(Lookups::Heads(s3.heads())),
        }
    }
}

/// How a remote's object names become storage keys (cheap to clone, to take along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRule(Keys);

impl KeyRule {
    /// The storage key of object `name`: `PREFIX/name` in direct S3 mode, `uploads/<user>/name`
    /// in the embedded store, the name itself through a PROMINENCE API (whose user is not
    /// known here).
    pub fn key(&self, name: &str) -> String {
        self.0.key(name).into_owned()
    }
}

/// Where stored objects are looked up, one at a time.
pub enum Lookups {
    /// A `HEAD` per key.
    Heads(s3::Heads),
    /// A listing fetched once.
    Listing(Listing),
}

impl Lookups {
    /// Whether lookups can tell a SHA-256 to compare local files with: a `HEAD`'s metadata and
    /// checksum, or a listing that gives the store's SHA-256 (`hashup serve`'s store). A
    /// listing of names and sizes cannot, and local files need not be hashed for it.
    pub fn tell_sha256(&self) -> bool {
        match self {
            Lookups::Heads(_) => true,
            Lookups::Listing(listing) => listing.objects.iter().any(|o| o.sha256.is_some()),
        }
    }

    /// What is stored as object `name` under storage key `key`.
    pub fn look<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Lookup, LookupError>> {
        match self {
            Lookups::Heads(heads) => Box::pin(heads.head(key)),
            Lookups::Listing(listing) => Box::pin(std::future::ready(listing.lookup(name))),
        }
    }
}

/// The key rule a destination's names are planned with before anything is connected (two
/// files whose names share a key are refused): see [`Keys`].
pub fn planning_keys(destination: &crate::config::Destination) -> Keys {
    resolve::planning_keys(destination)
}
