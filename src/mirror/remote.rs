//! The network side of `--delete`: what is stored under the destination, and deleting it.
//!
//! - **Direct S3 mode**: ListObjectsV2 pages of the keys under `PREFIX/` (and `--prefix`),
//!   followed by their continuation tokens, then one DeleteObject per object, every request
//!   signed by [`DirectS3`] afresh for each try. Multipart uploads in progress are not objects
//!   and are not listed. (DeleteObjects would take 1,000 keys a request, but wants a
//!   `Content-MD5` and answers per key in XML; `--max-delete` keeps the sets small, and
//!   [`DELETES_IN_FLIGHT`] requests at once clear a hundred in a few round trips.)
//! - **PROMINENCE** (an API, or the embedded store): `GET /data` (the user's own uploads, only
//!   when the run has no `--prefix`) and `GET /data/<group>` per group ([`super::listing_groups`]),
//!   then `DELETE /data/<name>` with the bearer token, which goes to the API host only.
//!
//! Both retry what is worth it as uploads do ([`RetryPolicy`]): connection errors, 408, 429 and
//! 5xx after a backoff; a 403 from S3 is signed again once per retry. Credentials refused, a
//! missing bucket or a 401 stop every request ([`RemoteError::Fatal`]). Every answer is read to
//! a cap, every request has a deadline ([`Timeouts::deadline`]), and no URL with a signature
//! reaches a message.
//!
//! [`execute`] journals each deletion (a `deleted` line, [`crate::manifest::Deleted`]) before
//! its request is sent.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::{KeyMap, Scope, StoredObject};
use crate::http::{ListBucketResult, Timeouts, Tls};
use crate::manifest::{Deleted, Manifest};
use crate::presign::prominence::{Listed, Prominence};
use crate::presign::s3::{DirectS3, Signed};
use crate::presign::{PresignError, Presigner as _};
use crate::retry::{RetryPolicy, Retrying};
use crate::stop::{StopLevel, reached};
use crate::transfer::TransferError;

/// Deletions in flight at once: enough that a hundred objects far away take a few round trips,
/// few enough not to look like a flood to an API.
pub const DELETES_IN_FLIGHT: usize = 16;

/// The most of one ListObjectsV2 page read: 1,000 keys of at most 1,024 bytes, with their XML,
/// stay under 2 MiB.
const PAGE_LIMIT: usize = 8 << 20;

/// The most of a DeleteObject answer read (it has no body).
const DELETE_ANSWER_LIMIT: usize = 64 << 10;

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
}

/// Where a run's objects are stored, and how to list and delete them.
pub enum Remote {
    /// Direct S3 mode.
    S3 {
        /// The signer (bucket, prefix, credentials).
        s3: std::sync::Arc<DirectS3>,
        /// A client for small requests (storage's TLS settings; no token ever).
        client: reqwest::Client,
        /// For each request's deadline.
        timeouts: Timeouts,
    },
    /// A PROMINENCE API (or the embedded store through its API).
    Api {
        /// The client, which holds the token.
        api: std::sync::Arc<Prominence>,
        /// The user the token stands for, when known (the embedded store's).
        user: Option<String>,
    },
}

impl Remote {
    /// Direct S3 mode's remote.
    pub fn s3(
        s3: std::sync::Arc<DirectS3>,
        timeouts: Timeouts,
        tls: &Tls,
    ) -> reqwest::Result<Remote> {
        Ok(Remote::S3 {
            client: crate::http::client(timeouts, tls)?,
            s3,
            timeouts,
        })
    }

    /// How this remote maps names to keys ([`super::Planned`]).
    pub fn key_map(&self) -> KeyMap {
        match self {
            Remote::S3 { .. } => KeyMap::Names,
            Remote::Api {
                user: Some(user), ..
            } => KeyMap::Prominence { user: user.clone() },
            Remote::Api { user: None, .. } => KeyMap::ProminenceUnknownUser,
        }
    }

    /// Every object stored where the run's names go: in direct S3 mode the keys under `PREFIX/`
    /// and `--prefix`; with PROMINENCE the user's own uploads (without `--prefix`; names with
    /// `/` there are left out, as `DELETE /data/<name>` would address a group's object) and
    /// those of `groups`. Not yet filtered by the scope's selection.
    pub async fn list(
        &self,
        scope: &Scope,
        groups: &[String],
        retry: RetryPolicy,
    ) -> Result<Vec<StoredObject>, RemoteError> {
        match self {
            Remote::S3 {
                s3,
                client,
                timeouts,
            } => {
                let location = s3.location();
                let base = match location.prefix.as_str() {
                    "" => String::new(),
                    prefix => format!("{prefix}/"),
                };
                let prefix = match scope.prefix() {
                    Some(p) => format!("{base}{p}/"),
                    None => base.clone(),
                };
                let place = format!("s3://{}/{prefix}", location.bucket);
                let mut objects = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let text = s3_call(
                        s3,
                        client,
                        *timeouts,
                        |now| s3.list_objects(&prefix, token.as_deref(), now),
                        PAGE_LIMIT,
                        retry,
                    )
                    .await
                    .map_err(|e| in_listing(e, &place))?;
                    let page = ListBucketResult::parse(&text).map_err(|e| {
                        RemoteError::Failed(format!("cannot list {place}: not a listing: {e}"))
                    })?;
                    objects.extend(page.contents.iter().filter_map(|c| {
                        Some(StoredObject {
                            name: c.key.strip_prefix(&base)?.to_string(),
                            key: Some(c.key.clone()),
                            size: c.size,
                        })
                    }));
                    match page.next_page() {
                        None => return Ok(objects),
                        Some(next) if token.as_deref() == Some(next) => {
                            return Err(RemoteError::Failed(format!(
                                "cannot list {place}: the store gave the same continuation token twice"
                            )));
                        }
                        Some(next) => token = Some(next.to_string()),
                    }
                }
            }
            Remote::Api { api, user } => {
                let mut objects = Vec::new();
                if scope.prefix().is_none() {
                    for listed in api_list(api, None, retry).await? {
                        if !listed.name.contains('/') {
                            objects.push(StoredObject {
                                key: user
                                    .as_ref()
                                    .map(|u| format!("uploads/{u}/{}", listed.name)),
                                name: listed.name,
                                size: listed.size,
                            });
                        }
                    }
                }
                for group in groups {
                    for listed in api_list(api, Some(group), retry).await? {
                        let below = listed
                            .name
                            .strip_prefix(group.as_str())
                            .is_some_and(|rest| rest.starts_with('/'));
                        if below {
                            objects.push(StoredObject {
                                key: Some(format!("uploads/{}", listed.name)),
                                name: listed.name,
                                size: listed.size,
                            });
                        }
                    }
                }
                Ok(objects)
            }
        }
    }

    /// Deletes one object, with retries.
    pub async fn delete(
        &self,
        object: &StoredObject,
        retry: RetryPolicy,
    ) -> Result<(), RemoteError> {
        match self {
            Remote::S3 {
                s3,
                client,
                timeouts,
            } => {
                let key = object
                    .key
                    .clone()
                    .unwrap_or_else(|| s3.location().key(&object.name));
                s3_call(
                    s3,
                    client,
                    *timeouts,
                    |now| s3.delete_object(&key, now),
                    DELETE_ANSWER_LIMIT,
                    retry,
                )
                .await
                .map(drop)
            }
            Remote::Api { api, .. } => {
                let mut retrying = Retrying::new(retry);
                loop {
                    retrying.attempt();
                    match api.delete(&object.name).await {
                        Ok(()) => return Ok(()),
                        Err(PresignError::Transient {
                            retry_after,
                            message,
                            ..
                        }) => match retrying.backoff(retry_after) {
                            Some(delay) => tokio::time::sleep(delay).await,
                            None => return Err(RemoteError::Failed(message)),
                        },
                        Err(err) => return Err(api_error(err)),
                    }
                }
            }
        }
    }
}

/// A listing's error, saying where.
fn in_listing(err: RemoteError, place: &str) -> RemoteError {
    match err {
        RemoteError::Fatal(m) => RemoteError::Fatal(m),
        RemoteError::Failed(m) => RemoteError::Failed(format!("cannot list {place}: {m}")),
    }
}

/// What an API error means for a listing or a deletion.
fn api_error(err: PresignError) -> RemoteError {
    match err {
        PresignError::Fatal { message, .. } => RemoteError::Fatal(message),
        PresignError::Refused { status, message } => {
            RemoteError::Failed(format!("HTTP {status}: {message}"))
        }
        PresignError::Transient { message, .. } => RemoteError::Failed(message),
        PresignError::BadAnswer { status, message } => {
            RemoteError::Failed(format!("HTTP {status}: unusable answer: {message}"))
        }
    }
}

/// `GET /data` or `GET /data/<group>`, with retries.
async fn api_list(
    api: &Prominence,
    group: Option<&str>,
    retry: RetryPolicy,
) -> Result<Vec<Listed>, RemoteError> {
    let place = match group {
        None => "your uploads (GET /data)".to_string(),
        Some(g) => format!("group {g} (GET /data/{g})"),
    };
    api.list_retrying(group, retry)
        .await
        .map_err(|(err, _)| in_listing(api_error(err), &place))
}

/// Sends a request signed by `sign` (afresh for each try) until it succeeds or its retries run
/// out; the body of the success answer.
async fn s3_call(
    s3: &DirectS3,
    client: &reqwest::Client,
    timeouts: Timeouts,
    sign: impl Fn(SystemTime) -> Result<Signed, String>,
    limit: usize,
    retry: RetryPolicy,
) -> Result<String, RemoteError> {
    let mut retrying = Retrying::new(retry);
    loop {
        retrying.attempt();
        let signed = sign(SystemTime::now())
            .map_err(|e| RemoteError::Fatal(format!("cannot sign the request: {e}")))?;
        let request = crate::transfer::signed_request(client, timeouts, &signed, limit as u64);
        let err = match crate::transfer::small_answer(request, limit).await {
            Ok(text) => return Ok(text),
            Err(err) => err,
        };
        let delay = match &err {
            // Gone already, which is what a deletion is for (S3 answers 204 either way; a
            // store may say so), and never the answer of a listing.
            TransferError::Refused(refusal) if refusal.code.as_deref() == Some("NoSuchKey") => {
                return Ok(String::new());
            }
            TransferError::Forbidden(refusal) | TransferError::Refused(refusal)
                if s3.fatal_refusal(refusal).is_some() =>
            {
                return Err(RemoteError::Fatal(format!(
                    "S3 refused the request (HTTP {}: {})",
                    refusal.status, refusal.message
                )));
            }
            TransferError::Forbidden(_) => retrying.again().then_some(Duration::ZERO),
            TransferError::Transient { retry_after, .. } => retrying.backoff(*retry_after),
            _ => None,
        };
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return Err(RemoteError::Failed(describe(&err))),
        }
    }
}

/// A storage failure in words that fit a listing or a deletion (not "upload failed").
fn describe(err: &TransferError) -> String {
    match err {
        TransferError::Transient { message, .. } => message.clone(),
        TransferError::Forbidden(r) | TransferError::Refused(r) => {
            format!("HTTP {}: {}", r.status, r.message)
        }
        other => other.to_string(),
    }
}

/// Why deleting stopped before every object was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// Ctrl-C or SIGTERM: no new deletion was started (a second one cancelled those in flight).
    Interrupted,
    /// A failure that dooms every deletion ([`RemoteError::Fatal`]).
    Fatal(String),
    /// A `deleted` line could not be written: nothing more is deleted unjournalled.
    JournalLost(String),
}

/// What [`execute`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    /// Objects deleted.
    pub deleted: u64,
    /// Deletions that failed.
    pub failed: u64,
    /// Why it stopped early, if it did.
    pub halt: Option<Halt>,
}

/// What [`execute`] tells as it goes: each object deleted, each failure.
pub enum Event<'a> {
    /// Deleted.
    Deleted(&'a StoredObject),
    /// Not deleted, and why.
    Failed(&'a StoredObject, &'a str),
}

/// Deletes `objects`, [`DELETES_IN_FLIGHT`] at once, telling each outcome in the objects'
/// order. Each one is journalled first: a `deleted`
/// line is written and flushed before its request goes out (a journal that cannot take it
/// stops the deleting), and a failure adds a second line with its `error`. A stop request
/// starts no new deletion; an abort cancels those in flight (they count as failed).
pub async fn execute(
    remote: &Remote,
    objects: &[StoredObject],
    manifest: &Manifest,
    retry: RetryPolicy,
    stop: watch::Receiver<StopLevel>,
    tell: &(dyn Fn(Event<'_>) + Sync),
) -> Executed {
    let halt: Mutex<Option<Halt>> = Mutex::new(None);
    let halted = || halt.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    let set_halt = |why: Halt| {
        halt.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    };
    // In flight together, told in order (a log reads the same from one run to the next). Each
    // object's outcome: `None` when it was not tried.
    let mut outcomes = futures_util::stream::iter(objects)
        .map(|object| {
            let stop = stop.clone();
            async move {
                let outcome: Option<Result<(), String>> = async {
                    if *stop.borrow() > StopLevel::Run {
                        set_halt(Halt::Interrupted);
                        return None;
                    }
                    if halted() {
                        return None;
                    }
                    let mut line = Deleted {
                        name: object.name.clone(),
                        key: object.key.clone(),
                        size: object.size,
                        time: crate::utc::rfc3339_nanos(SystemTime::now()),
                        error: None,
                    };
                    if let Err(err) = manifest.deleted(&line) {
                        set_halt(Halt::JournalLost(crate::message::plain_io_message(&err)));
                        return None;
                    }
                    let result = tokio::select! {
                        result = remote.delete(object, retry) => result,
                        () = reached(stop.clone(), StopLevel::Abort) => {
                            set_halt(Halt::Interrupted);
                            Err(RemoteError::Failed("interrupted while deleting: aborted".into()))
                        }
                    };
                    let error = match result {
                        Ok(()) => return Some(Ok(())),
                        Err(RemoteError::Fatal(message)) => {
                            set_halt(Halt::Fatal(message.clone()));
                            message
                        }
                        Err(RemoteError::Failed(message)) => message,
                    };
                    line.time = crate::utc::rfc3339_nanos(SystemTime::now());
                    line.error = Some(error.clone());
                    if let Err(err) = manifest.deleted(&line) {
                        set_halt(Halt::JournalLost(crate::message::plain_io_message(&err)));
                    }
                    Some(Err(error))
                }
                .await;
                (object, outcome)
            }
        })
        .buffered(DELETES_IN_FLIGHT);
    let (mut deleted, mut failed) = (0, 0);
    while let Some((object, outcome)) = outcomes.next().await {
        match outcome {
            None => {}
            Some(Ok(())) => {
                deleted += 1;
                tell(Event::Deleted(object));
            }
            Some(Err(error)) => {
                failed += 1;
                tell(Event::Failed(object, &error));
            }
        }
    }
    drop(outcomes);
    Executed {
        deleted,
        failed,
        halt: halt.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}
