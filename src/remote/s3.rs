//! Direct S3 mode as a remote: targets signed here ([`DirectS3`], which signs every S3 request),
//! ListObjectsV2 pages for listings, DeleteObject, and for `hashup verify` one presigned `HEAD`
//! per key ([`DirectS3::head`], asking for the stored checksum), nothing downloaded. Every
//! request is signed afresh for each try and sent through the run's [`Requests`]; every answer
//! is read to a cap, every request has a deadline, and no URL with a signature reaches a
//! message.
//!
//! A `HEAD` answer has no body, so no S3 error code: a 404 may be `NoSuchKey` or `NoSuchBucket`,
//! a 403 `AccessDenied` or `SignatureDoesNotMatch`. Where that matters, a `GET` of the same key
//! with `Range: bytes=0-0` asks again (at most one byte of an object, had it appeared in
//! between), and its error document tells:
//!
//! - the first 404 of a run checks the bucket this way, once: `NoSuchBucket` is fatal, anything
//!   else means the bucket is there, and every 404 is `MISSING`;
//! - every other refusal (403, 400, ...) is asked about: `SignatureDoesNotMatch`,
//!   `InvalidAccessKeyId`, `InvalidToken`, `ExpiredToken` and `NoSuchBucket` are fatal (every
//!   other key would get the same), the rest fail this key only; a redirect (the bucket is in
//!   another region) is fatal too.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried with backoff (at least
//! `Retry-After`), and 429, 503, 504 and timeouts tell the adaptive limit the store is full. When the
//! store has not answered once in the run and a key runs out of retries on connection errors,
//! the store is unreachable: fatal.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::listing::{Listing, Place, StoredObject};
use super::{Lookup, LookupError, RemoteError, Stored};
use crate::http::{Refusal, Timeouts, Tls};
use crate::message::server_text;
use crate::presign::Presigner;
use crate::presign::s3::{DirectS3, Signed, SigningError};
use crate::request::{Class, Classify, GaveUp, Requests};
use crate::s3xml::{ListBucketResult, ListedObject};
use crate::sign::{CHECKSUM_SHA256, META_SHA256};
use crate::transfer::TransferError;

/// The most of one ListObjectsV2 page read: 1,000 keys of at most 1,024 bytes, with their XML,
/// stay under 2 MiB.
const PAGE_LIMIT: usize = 8 << 20;

/// A listing range's share of the run's own keys: one page's worth.
const RANGE_NAMES: usize = 1000;

/// Listing ranges asked at once.
const RANGES_IN_FLIGHT: usize = 16;

/// The boundaries that cut `keys` (sorted here) into ranges of [`RANGE_NAMES`] keys, each
/// range ending with its boundary: every [`RANGE_NAMES`]th key but the last key. Any order the
/// store lists in works: a range ends only at a boundary's key it actually meets, so one that
/// ends early hands over to the range starting there, and one that meets none runs to the end
/// (a missing or out-of-order boundary costs pages, never keys).
fn ranges(mut keys: Vec<String>) -> Vec<String> {
    keys.sort_unstable();
    keys.dedup();
    let last = keys.len().saturating_sub(1);
    keys.into_iter()
        .enumerate()
        .filter(|(at, _)| at % RANGE_NAMES == RANGE_NAMES - 1 && *at < last)
        .map(|(_, key)| key)
        .collect()
}

/// The most of a DeleteObject answer read (it has no body).
const DELETE_ANSWER_LIMIT: usize = 64 << 10;

/// Direct S3 mode's remote: the signer (bucket, prefix, credentials) and a client for the
/// requests that carry no file (storage's TLS settings; no token ever).
pub struct S3 {
    signer: Arc<DirectS3>,
    client: reqwest::Client,
    timeouts: Timeouts,
    requests: Requests,
}

impl S3 {
    /// The remote of `signer`.
    pub fn new(
        signer: Arc<DirectS3>,
        timeouts: Timeouts,
        tls: &Tls,
        requests: Requests,
    ) -> reqwest::Result<S3> {
        Ok(S3 {
            signer,
            client: crate::http::client(timeouts, tls)?,
            timeouts,
            requests,
        })
    }

    /// The signer, which also signs every multipart request.
    pub fn signer(&self) -> Arc<DirectS3> {
        self.signer.clone()
    }

    /// Targets are signed here: no presign round trip.
    pub fn presigner(&self) -> Arc<dyn Presigner> {
        self.signer.clone()
    }

    /// The `--s3` key prefix (empty for none).
    pub fn prefix(&self) -> &str {
        &self.signer.location().prefix
    }

    /// ListObjectsV2 pages of the keys under `PREFIX/` (and `prefix`, the run's `--prefix`).
    /// Multipart uploads in progress are not objects and are not listed.
    ///
    /// Pages follow each other by continuation token, one round trip each; so the key space is
    /// cut into ranges at every 1,000th of the run's own keys (`names`), and up to 16 ranges
    /// are listed at once, each from `start-after` its boundary until it meets a later
    /// boundary's key or the end (which keeps any store order whole: see `ranges`).
    pub async fn list<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        prefix: Option<&str>,
    ) -> Result<Listing, RemoteError> {
        let location = self.signer.location();
        let base = match location.prefix.as_str() {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        let under = match prefix {
            Some(p) => format!("{base}{p}/"),
            None => base.clone(),
        };
        let place = Place::Prefix(format!("s3://{}/{under}", location.bucket));
        let keys: Vec<String> = names
            .into_iter()
            .map(|name| format!("{base}{name}"))
            .filter(|key| key.starts_with(&under))
            .collect();
        let bounds = ranges(keys);
        // Range i starts after bounds[i - 1] (the first at the start) and stops at the key of
        // any later boundary.
        let later: HashMap<&str, usize> = bounds
            .iter()
            .enumerate()
            .map(|(at, key)| (key.as_str(), at + 1))
            .collect();
        let listed: Vec<Result<Vec<ListedObject>, RemoteError>> =
            futures_util::stream::iter(0..=bounds.len())
                .map(|range| {
                    let after = range.checked_sub(1).map(|at| bounds[at].as_str());
                    let later = &later;
                    let stops = move |key: &str| later.get(key).is_some_and(|&next| next > range);
                    self.list_range(&under, after, stops)
                })
                .buffered(RANGES_IN_FLIGHT)
                .collect()
                .await;
        let mut seen = HashSet::new();
        let mut objects = Vec::new();
        for range in listed {
            let range = range.map_err(|e| match e {
                RemoteError::Failed(m) => RemoteError::Failed(format!("cannot list {place}: {m}")),
                RemoteError::Stopped(m) => {
                    RemoteError::Stopped(format!("cannot list {place}: {m}"))
                }
                fatal => fatal,
            })?;
            // Ranges overlap only where the store's order is not the one the boundaries were
            // sorted in (SeaweedFS walks directories): the same key once.
            for c in range.into_iter().filter(|c| seen.insert(c.key.clone())) {
                let Some(name) = c.key.strip_prefix(&base) else {
                    continue;
                };
                objects.push(StoredObject {
                    name: name.to_string(),
                    sha256: None,
                    etag: c.etag.as_deref().map(crate::message::server_text),
                    modified: crate::utc::parse_iso8601(&c.last_modified),
                    size: c.size,
                    key: Some(c.key),
                });
            }
        }
        let mut listing = Listing::default();
        listing.add(place, objects);
        Ok(listing)
    }

    /// The pages of one range: from the start of `under` (or after key `after`) until a key
    /// for which `stops` holds (kept) or the end.
    async fn list_range(
        &self,
        under: &str,
        after: Option<&str>,
        stops: impl Fn(&str) -> bool,
    ) -> Result<Vec<ListedObject>, RemoteError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let text = self
                .call(
                    |now| {
                        let after = after.filter(|_| token.is_none());
                        self.signer
                            .list_objects(under, token.as_deref(), after, now)
                    },
                    PAGE_LIMIT,
                )
                .await?;
            let page = ListBucketResult::parse(&text)
                .map_err(|e| RemoteError::Failed(format!("not a listing: {e}")))?;
            let next = page.next_page().map(str::to_string);
            for object in page.contents {
                let last = stops(&object.key);
                objects.push(object);
                if last {
                    return Ok(objects);
                }
            }
            match next {
                None => return Ok(objects),
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(RemoteError::Failed(
                        "the store gave the same continuation token twice".into(),
                    ));
                }
                Some(next) => token = Some(next),
            }
        }
    }

    /// DeleteObject, with retries; a key already gone counts as deleted.
    pub async fn delete(&self, object: &StoredObject) -> Result<(), RemoteError> {
        let key = object
            .key
            .clone()
            .unwrap_or_else(|| self.signer.location().key(&object.name));
        self.call(
            |now| self.signer.delete_object(&key, now),
            DELETE_ANSWER_LIMIT,
        )
        .await
        .map(drop)
    }

    /// Sends a request signed by `sign` (afresh for each try) through the run's requests; the
    /// body of the success answer.
    async fn call(
        &self,
        sign: impl Fn(SystemTime) -> Result<Signed, SigningError>,
        limit: usize,
    ) -> Result<String, RemoteError> {
        let sent = self
            .requests
            .send(|| async {
                let signed = sign(SystemTime::now()).map_err(Call::Sign)?;
                let request = crate::transfer::signed_request(
                    &self.client,
                    self.timeouts,
                    &signed,
                    limit as u64,
                );
                match crate::transfer::small_answer(request, limit).await {
                    Ok(text) => Ok(text),
                    // Gone already, which is what a deletion is for (S3 answers 204 either
                    // way; a store may say so), and never the answer of a listing.
                    Err(TransferError::Refused(refusal))
                        if refusal.code.as_deref() == Some("NoSuchKey") =>
                    {
                        Ok(String::new())
                    }
                    Err(err) => Err(Call::Sent(err)),
                }
            })
            .await;
        sent.map_err(|gave_up| match gave_up {
            GaveUp::Fatal(Call::Sign(why)) => {
                RemoteError::Fatal(format!("cannot sign the request: {why}"))
            }
            GaveUp::Fatal(Call::Sent(err)) => {
                let refusal = err.refusal().expect("only a refusal is fatal");
                RemoteError::Fatal(format!(
                    "S3 refused the request (HTTP {}: {})",
                    refusal.status, refusal.message
                ))
            }
            GaveUp::Failed { error, .. } => RemoteError::Failed(error.to_string()),
            GaveUp::Stopped(error) => RemoteError::Stopped(error.to_string()),
        })
    }

    /// `HEAD` lookups of keys, for `hashup verify`.
    pub fn heads(&self) -> Heads {
        Heads {
            s3: self.signer.clone(),
            client: self.client.clone(),
            timeouts: self.timeouts,
            requests: self.requests.clone(),
            bucket: OnceLock::new(),
        }
    }
}

/// A small S3 request's failure: it could not be signed, or what the store said.
#[derive(Debug)]
enum Call {
    Sign(SigningError),
    Sent(TransferError),
}

impl Classify for Call {
    fn class(&self) -> Class {
        match self {
            Call::Sign(_) => Class::Fatal,
            Call::Sent(err) => err.class(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Call::Sign(_) => None,
            Call::Sent(err) => err.retry_after(),
        }
    }

    fn answered(&self) -> bool {
        matches!(self, Call::Sent(err) if err.answered())
    }
}

impl std::fmt::Display for Call {
    /// A storage failure in words that fit a listing or a deletion (not "upload failed").
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Sign(why) => write!(f, "cannot sign the request: {why}"),
            Call::Sent(TransferError::Transient { message, .. }) => write!(f, "{message}"),
            Call::Sent(TransferError::Forbidden(r) | TransferError::Refused(r)) => {
                write!(f, "HTTP {}: {}", r.status, r.message)
            }
            Call::Sent(other) => write!(f, "{other}"),
        }
    }
}

/// Looks objects up with `HEAD`.
pub struct Heads {
    s3: Arc<DirectS3>,
    client: reqwest::Client,
    timeouts: Timeouts,
    requests: Requests,
    /// Whether the bucket exists (`Err`: the fatal message), once a 404 made it a question.
    bucket: OnceLock<Result<(), String>>,
}

/// One `HEAD` attempt's failure.
#[derive(Debug)]
enum HeadError {
    /// Decided: dooms the run.
    Fatal(String),
    /// Decided: this key fails.
    Failed(String),
    /// Worth another try after at least `retry_after`.
    Transient {
        retry_after: Option<Duration>,
        message: String,
        /// The status of the answer; `None`: no answer at all (refused, reset, timed out).
        status: Option<u16>,
    },
}

impl Classify for HeadError {
    fn class(&self) -> Class {
        match self {
            HeadError::Fatal(_) => Class::Fatal,
            HeadError::Failed(_) => Class::Object,
            HeadError::Transient { status, .. } if crate::retry::pushes_back(*status) => {
                Class::PushBack
            }
            HeadError::Transient { .. } => Class::Transient,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            HeadError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn answered(&self) -> bool {
        !matches!(self, HeadError::Transient { status: None, .. })
    }
}

impl Heads {
    /// `HEAD key`, with its retries.
    pub async fn head(&self, key: &str) -> Result<Lookup, LookupError> {
        match self.requests.send(|| self.attempt(key)).await {
            Ok(lookup) => Ok(lookup),
            Err(GaveUp::Fatal(HeadError::Fatal(message))) => Err(LookupError::Fatal(message)),
            Err(GaveUp::Failed {
                error: HeadError::Transient { message, .. },
                unreachable: true,
                ..
            }) => Err(LookupError::Fatal(format!(
                "cannot reach S3 for {}: {message}",
                self.s3.location()
            ))),
            Err(GaveUp::Failed {
                error: HeadError::Transient { message, .. },
                attempts,
                ..
            }) => Err(LookupError::Failed(format!(
                "{message} (after {attempts} attempts)"
            ))),
            Err(gave_up) => Err(LookupError::Failed(match gave_up.into_error() {
                HeadError::Fatal(m) | HeadError::Failed(m) => m,
                HeadError::Transient { message, .. } => message,
            })),
        }
    }

    async fn attempt(&self, key: &str) -> Result<Lookup, HeadError> {
        let signed = self
            .s3
            .head(key, SystemTime::now())
            .map_err(|why| HeadError::Fatal(format!("cannot sign: {why}")))?;
        let response = self.send(&signed, None, 0).await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return stored_of(response.headers()).map(Lookup::Found);
        }
        if crate::retry::retryable_status(status) {
            return Err(HeadError::Transient {
                retry_after: crate::retry::retry_after_of(response.headers()),
                message: format!("HTTP {status}"),
                status: Some(status),
            });
        }
        drop(response);
        if status == 404 {
            return match self.bucket_exists(key).await? {
                Ok(()) => Ok(Lookup::Missing),
                Err(fatal) => Err(HeadError::Fatal(fatal)),
            };
        }
        // Any other refusal: ask for its code.
        Err(match self.why(key).await? {
            Some(refusal) => match self.fatal(&refusal) {
                Some(fatal) => HeadError::Fatal(fatal),
                None if (300..400).contains(&status) => HeadError::Fatal(format!(
                    "S3 answered HTTP {status} for {} ({}): the bucket is elsewhere; check --endpoint and --region",
                    self.s3.location(),
                    refusal.message
                )),
                None => HeadError::Failed(format!("HTTP {}: {}", refusal.status, refusal.message)),
            },
            None => HeadError::Failed(format!(
                "HTTP {status} to HEAD, though a GET of the object is allowed"
            )),
        })
    }

    /// Sends a signed request (`range`: a `Range` header to add) with a deadline for `bytes`.
    async fn send(
        &self,
        signed: &Signed,
        range: Option<&str>,
        bytes: u64,
    ) -> Result<reqwest::Response, HeadError> {
        let mut request =
            crate::transfer::signed_request(&self.client, self.timeouts, signed, bytes);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        match request.send().await {
            Ok(response) => {
                self.requests.mark_answered();
                Ok(response)
            }
            Err(err) => {
                let TransferError::Transient { message, .. } = crate::transfer::not_sent(err)
                else {
                    unreachable!("a request not sent is transient")
                };
                Err(HeadError::Transient {
                    retry_after: None,
                    message,
                    status: None,
                })
            }
        }
    }

    /// Whether the bucket exists, asked once per run (with the key that got the first 404):
    /// `Ok(Err(message))` when it does not.
    async fn bucket_exists(&self, key: &str) -> Result<Result<(), String>, HeadError> {
        if let Some(known) = self.bucket.get() {
            return Ok(known.clone());
        }
        let exists = match self.why(key).await? {
            Some(refusal) if refusal.code.as_deref() == Some("NoSuchBucket") => {
                Err(self.fatal(&refusal).expect("NoSuchBucket is fatal"))
            }
            _ => Ok(()),
        };
        Ok(self.bucket.get_or_init(|| exists).clone())
    }

    /// What a `GET` of `key` (one byte at most) is refused with; `None` when it is not.
    async fn why(&self, key: &str) -> Result<Option<Refusal>, HeadError> {
        let signed = self
            .s3
            .get(key, SystemTime::now())
            .map_err(|why| HeadError::Fatal(format!("cannot sign: {why}")))?;
        let response = self
            .send(
                &signed,
                Some("bytes=0-0"),
                crate::http::ERROR_BODY_LIMIT as u64,
            )
            .await?;
        if response.status().is_success() {
            return Ok(None);
        }
        match crate::transfer::refused(response).await {
            TransferError::Forbidden(refusal) | TransferError::Refused(refusal) => {
                Ok(Some(refusal))
            }
            TransferError::Transient {
                status,
                retry_after,
                message,
            } => Err(HeadError::Transient {
                retry_after,
                message,
                status,
            }),
            other => unreachable!("an answer is a refusal or transient: {other}"),
        }
    }

    /// The message that stops the run, when `refusal` dooms every key.
    fn fatal(&self, refusal: &Refusal) -> Option<String> {
        if refusal.code.as_deref() == Some("NoSuchBucket") {
            return Some(format!(
                "S3 has no bucket {} (HTTP {}: {})",
                self.s3.location().bucket,
                refusal.status,
                refusal.message
            ));
        }
        self.s3.fatal_refusal(refusal)
    }
}

/// What a successful `HEAD` says: `Content-Length`, `prominence_sha256`, the stored checksum.
fn stored_of(headers: &reqwest::header::HeaderMap) -> Result<Stored, HeadError> {
    let size = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| HeadError::Failed("the HEAD answer has no usable Content-Length".into()))?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| server_text(&String::from_utf8_lossy(v.as_bytes())))
    };
    Ok(Stored {
        size,
        sha256: text(META_SHA256),
        checksum: text(CHECKSUM_SHA256),
        with_metadata: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn ranges_hold_a_page_of_the_runs_keys_each() {
        let keys = |n: usize| (0..n).map(|i| format!("p/{i:05}")).collect::<Vec<_>>();
        assert!(ranges(keys(1000)).is_empty(), "one page: one range");
        assert_eq!(ranges(keys(1001)), ["p/00999"]);
        assert_eq!(ranges(keys(2000)), ["p/00999"]);
        assert_eq!(ranges(keys(2500)), ["p/00999", "p/01999"]);
        // Sorted and deduplicated first.
        let mut shuffled = keys(2001);
        shuffled.reverse();
        shuffled.push("p/00000".into());
        assert_eq!(ranges(shuffled), ["p/00999", "p/01999"]);
    }

    #[test]
    fn a_head_answer_gives_size_metadata_and_checksum() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("12"));
        headers.insert(META_SHA256, HeaderValue::from_static("ab12"));
        // Server text: made printable.
        headers.insert(
            CHECKSUM_SHA256,
            HeaderValue::from_bytes(b"q83v\t\xff-2").unwrap(),
        );
        assert_eq!(
            stored_of(&headers).unwrap(),
            Stored {
                size: 12,
                sha256: Some("ab12".into()),
                checksum: Some("q83v \u{fffd}-2".into()),
                with_metadata: true,
            }
        );
        headers.remove("content-length");
        assert!(matches!(stored_of(&headers), Err(HeadError::Failed(_))));
    }
}
