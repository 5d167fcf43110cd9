//! Direct S3 mode's [`Store`]: one presigned `HEAD` per key ([`DirectS3::head`], asking for the
//! stored checksum), nothing downloaded.
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
//! `Retry-After`), and 429, 503, 504 and timeouts tell the [`Limiter`] the store is full. When the
//! store has not answered once in the run and a key runs out of retries on connection errors,
//! the store is unreachable: fatal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use super::{Expected, Lookup, LookupError, Store, Stored};
use crate::http::{Refusal, Timeouts, Tls};
use crate::limit::Limiter;
use crate::message::server_text;
use crate::presign::Presigner as _;
use crate::presign::s3::{DirectS3, Signed};
use crate::retry::{RetryPolicy, Retrying};
use crate::sign::{CHECKSUM_SHA256, META_SHA256};
use crate::transfer::TransferError;

/// Looks objects up with `HEAD`.
pub struct Heads {
    s3: Arc<DirectS3>,
    client: reqwest::Client,
    timeouts: Timeouts,
    retry: RetryPolicy,
    limiter: Arc<Limiter>,
    /// Whether the bucket exists (`Err`: the fatal message), once a 404 made it a question.
    bucket: OnceLock<Result<(), String>>,
    /// Whether the store has answered any request (then a connection error is not "unreachable").
    answered: AtomicBool,
}

/// One attempt's outcome.
enum Attempt {
    /// Decided.
    Done(Result<Lookup, LookupError>),
    /// Worth another try after at least `retry_after`.
    Transient {
        retry_after: Option<Duration>,
        message: String,
        /// No HTTP answer at all (connection refused, reset, timed out).
        unanswered: bool,
        /// 429, 503, 504 or no answer in time: the store is full.
        push_back: bool,
    },
}

impl Heads {
    /// A client for `s3`'s keys, with these timeouts, TLS roots and retries; `limiter` hears about
    /// push-back.
    pub fn new(
        s3: Arc<DirectS3>,
        timeouts: Timeouts,
        tls: &Tls,
        retry: RetryPolicy,
        limiter: Arc<Limiter>,
    ) -> reqwest::Result<Heads> {
        Ok(Heads {
            s3,
            client: crate::http::client(timeouts, tls)?,
            timeouts,
            retry,
            limiter,
            bucket: OnceLock::new(),
            answered: AtomicBool::new(false),
        })
    }

    /// `HEAD key`, with its retries.
    pub async fn head(&self, key: &str) -> Result<Lookup, LookupError> {
        let mut retrying = Retrying::new(self.retry);
        loop {
            retrying.attempt();
            let (retry_after, message, unanswered) = match self.attempt(key).await {
                Attempt::Done(done) => return done,
                Attempt::Transient {
                    retry_after,
                    message,
                    unanswered,
                    push_back,
                } => {
                    if push_back {
                        self.limiter.pushed_back();
                    }
                    (retry_after, message, unanswered)
                }
            };
            match retrying.backoff(retry_after) {
                Some(delay) => tokio::time::sleep(delay).await,
                None if unanswered && !self.answered.load(Ordering::Relaxed) => {
                    return Err(LookupError::Fatal(format!(
                        "cannot reach S3 for {}: {message}",
                        self.s3.location()
                    )));
                }
                None => {
                    return Err(LookupError::Failed(format!(
                        "{message} (after {} attempts)",
                        retrying.attempts()
                    )));
                }
            }
        }
    }

    async fn attempt(&self, key: &str) -> Attempt {
        let signed = match self.s3.head(key, SystemTime::now()) {
            Ok(signed) => signed,
            Err(why) => {
                return Attempt::Done(Err(LookupError::Fatal(format!("cannot sign: {why}"))));
            }
        };
        let response = match self.send(&signed, None, 0).await {
            Ok(response) => response,
            Err(transient) => return transient,
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Attempt::Done(stored_of(response.headers()).map(Lookup::Found));
        }
        if crate::retry::retryable_status(status) {
            return Attempt::Transient {
                retry_after: crate::retry::retry_after_of(response.headers()),
                message: format!("HTTP {status}"),
                unanswered: false,
                push_back: crate::retry::pushes_back(Some(status)),
            };
        }
        drop(response);
        if status == 404 {
            return match self.bucket_exists(key).await {
                Ok(Ok(())) => Attempt::Done(Ok(Lookup::Missing)),
                Ok(Err(fatal)) => Attempt::Done(Err(LookupError::Fatal(fatal))),
                Err(transient) => transient,
            };
        }
        // Any other refusal: ask for its code.
        let refusal = match self.why(key).await {
            Ok(refusal) => refusal,
            Err(transient) => return transient,
        };
        Attempt::Done(Err(match refusal {
            Some(refusal) => match self.fatal(&refusal) {
                Some(fatal) => LookupError::Fatal(fatal),
                None if (300..400).contains(&status) => LookupError::Fatal(format!(
                    "S3 answered HTTP {status} for {} ({}): the bucket is elsewhere; check --endpoint and --region",
                    self.s3.location(),
                    refusal.message
                )),
                None => {
                    LookupError::Failed(format!("HTTP {}: {}", refusal.status, refusal.message))
                }
            },
            None => LookupError::Failed(format!(
                "HTTP {status} to HEAD, though a GET of the object is allowed"
            )),
        }))
    }

    /// Sends a signed request (`range`: a `Range` header to add) with a deadline for `bytes`.
    async fn send(
        &self,
        signed: &Signed,
        range: Option<&str>,
        bytes: u64,
    ) -> Result<reqwest::Response, Attempt> {
        let mut request =
            crate::transfer::signed_request(&self.client, self.timeouts, signed, bytes);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        match request.send().await {
            Ok(response) => {
                self.answered.store(true, Ordering::Relaxed);
                Ok(response)
            }
            Err(err) => {
                let TransferError::Transient { message, .. } = crate::transfer::not_sent(err)
                else {
                    unreachable!("a request not sent is transient")
                };
                Err(Attempt::Transient {
                    retry_after: None,
                    message,
                    unanswered: true,
                    push_back: true,
                })
            }
        }
    }

    /// Whether the bucket exists, asked once per run (with the key that got the first 404):
    /// `Ok(Err(message))` when it does not.
    async fn bucket_exists(&self, key: &str) -> Result<Result<(), String>, Attempt> {
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
    async fn why(&self, key: &str) -> Result<Option<Refusal>, Attempt> {
        let signed = self
            .s3
            .get(key, SystemTime::now())
            .map_err(|why| Attempt::Done(Err(LookupError::Fatal(format!("cannot sign: {why}")))))?;
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
            } => Err(Attempt::Transient {
                retry_after,
                message,
                unanswered: false,
                push_back: crate::retry::pushes_back(status),
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

impl Store for Heads {
    fn look<'a>(&'a self, expected: &'a Expected) -> BoxFuture<'a, Result<Lookup, LookupError>> {
        Box::pin(self.head(&expected.key))
    }
}

/// What a successful `HEAD` says: `Content-Length`, `prominence_sha256`, the stored checksum.
fn stored_of(headers: &reqwest::header::HeaderMap) -> Result<Stored, LookupError> {
    let size = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            LookupError::Failed("the HEAD answer has no usable Content-Length".into())
        })?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| server_text(&String::from_utf8_lossy(v.as_bytes())))
    };
    Ok(Stored {
        size,
        sha256: text(META_SHA256),
        checksum: text(CHECKSUM_SHA256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

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
            }
        );
        headers.remove("content-length");
        assert!(matches!(stored_of(&headers), Err(LookupError::Failed(_))));
    }
}
