//! The credentials a signer uses right now, kept fresh: fixed keys never change; temporary
//! ones (STS, container, instance metadata) are fetched again before they expire.
//!
//! Signing is synchronous and happens per request ([`crate::presign::s3::DirectS3`]), so the
//! current keys sit behind a lock and [`LiveCredentials::get`] never waits in the common case:
//!
//! - more than [`REFRESH_AHEAD`] left: the keys as they are;
//! - less: the keys as they are, while a refresh runs in the background (a task on the
//!   caller's tokio runtime, else a thread), one at a time, a failed one retried after
//!   [`RETRY_AFTER`];
//! - less than [`MUST_REFRESH`] left (nothing signed for a long while, or the background
//!   refreshes failed): the caller waits for a refresh, and if that fails too, gets an error
//!   rather than keys that S3 would refuse.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::{ecs, imds, sts};
use crate::sign::Credentials;

/// Refresh temporary credentials once they have less than this left (what the AWS SDKs do).
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// With less than this left, signing waits for fresh credentials: a URL signed now must still
/// be good when its request reaches the store.
pub const MUST_REFRESH: Duration = Duration::from_secs(60);

/// After a failed background refresh, wait this long before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(15);

/// Keys and, for temporary ones, when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// The keys (their `Debug` shows no secret).
    pub credentials: Credentials,
    /// `None` for keys that do not expire.
    pub expires: Option<SystemTime>,
}

/// Where temporary credentials come from: each can be asked again.
#[derive(Debug, Clone)]
pub enum Source {
    /// STS `AssumeRoleWithWebIdentity` with a token file (Kubernetes service accounts).
    WebIdentity(sts::WebIdentity),
    /// The ECS/EKS container credentials endpoint.
    Container(ecs::Container),
    /// The EC2 instance metadata service (IMDSv2).
    Imds(imds::Imds),
}

impl Source {
    /// Fetches credentials once, retrying transient failures (`attempts` in all).
    pub async fn fetch(&self, attempts: u32) -> Result<Expiring, super::FetchError> {
        let mut attempt = 1;
        loop {
            let result = match self {
                Source::WebIdentity(w) => w.fetch().await,
                Source::Container(c) => c.fetch().await,
                Source::Imds(i) => i.fetch().await,
            };
            match result {
                Err(e) if !e.fatal && attempt < attempts => {
                    tokio::time::sleep(Duration::from_millis(300) * attempt).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// What the source is, for messages: `web identity (role R, token FILE)`, ...
    pub fn describe(&self) -> String {
        match self {
            Source::WebIdentity(w) => w.describe(),
            Source::Container(c) => c.describe(),
            Source::Imds(i) => i.describe(),
        }
    }
}

/// The credentials of a run, shared by every signer of it (cloning shares them).
#[derive(Debug, Clone)]
pub struct LiveCredentials(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// `None`: fixed keys.
    source: Option<Source>,
    current: RwLock<Expiring>,
    /// A background refresh is under way.
    refreshing: AtomicBool,
    /// When the last refresh failed, and why.
    failed: Mutex<Option<(Instant, String)>>,
    /// Held by whoever waits for a refresh, so only one asks at a time.
    waiting: Mutex<()>,
}

impl From<Credentials> for LiveCredentials {
    fn from(credentials: Credentials) -> Self {
        LiveCredentials::fixed(credentials)
    }
}

impl LiveCredentials {
    /// Keys that never change.
    pub fn fixed(credentials: Credentials) -> Self {
        LiveCredentials::new(
            None,
            Expiring {
                credentials,
                expires: None,
            },
        )
    }

    /// Temporary keys `first`, fetched from `source`, which is asked again before they expire.
    pub fn refreshing(source: Source, first: Expiring) -> Self {
        LiveCredentials::new(Some(source), first)
    }

    fn new(source: Option<Source>, first: Expiring) -> Self {
        LiveCredentials(Arc::new(Inner {
            source,
            current: RwLock::new(first),
            refreshing: AtomicBool::new(false),
            failed: Mutex::new(None),
            waiting: Mutex::new(()),
        }))
    }

    /// The keys and expiry as they are now, without refreshing.
    pub fn peek(&self) -> Expiring {
        self.0.current.read().expect("not poisoned").clone()
    }

    /// The source of temporary keys; `None` for fixed ones.
    pub fn source(&self) -> Option<&Source> {
        self.0.source.as_ref()
    }

    /// Keys good for signing at `now` (see the module docs); an error when they are about to
    /// expire and cannot be refreshed.
    pub fn get(&self, now: SystemTime) -> Result<Credentials, String> {
        let current = self.peek();
        let (Some(source), Some(expires)) = (&self.0.source, current.expires) else {
            return Ok(current.credentials);
        };
        let left = expires.duration_since(now).unwrap_or_default();
        if left > REFRESH_AHEAD {
            return Ok(current.credentials);
        }
        if left > MUST_REFRESH {
            self.refresh_in_background();
            return Ok(current.credentials);
        }
        // Wait for a refresh: one caller asks, the others find its result.
        let _turn = self.0.waiting.lock().expect("not poisoned");
        let current = self.peek();
        if current
            .expires
            .is_some_and(|e| e.duration_since(now).unwrap_or_default() > MUST_REFRESH)
        {
            return Ok(current.credentials);
        }
        let inner = self.0.clone();
        let fetched =
            block_on(async move { inner.source.as_ref().expect("a source").fetch(2).await });
        match fetched {
            Ok(Ok(fresh)) => {
                self.store(fresh.clone());
                Ok(fresh.credentials)
            }
            Ok(Err(e)) => Err(format!(
                "the credentials from {} expire soon and cannot be refreshed: {e}",
                source.describe()
            )),
            Err(e) => Err(e),
        }
    }

    fn store(&self, fresh: Expiring) {
        *self.0.current.write().expect("not poisoned") = fresh;
        *self.0.failed.lock().expect("not poisoned") = None;
    }

    /// Starts a refresh unless one runs or the last one failed less than [`RETRY_AFTER`] ago.
    fn refresh_in_background(&self) {
        let recently_failed = self
            .0
            .failed
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|(when, _)| when.elapsed() < RETRY_AFTER);
        if recently_failed || self.0.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let task = async move {
            let source = this.0.source.as_ref().expect("a source");
            match source.fetch(3).await {
                Ok(fresh) => this.store(fresh),
                Err(e) => {
                    *this.0.failed.lock().expect("not poisoned") =
                        Some((Instant::now(), e.to_string()));
                }
            }
            this.0.refreshing.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(task);
            }
            Err(_) => {
                std::thread::spawn(move || block_on(task));
            }
        }
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so it works
/// from plain code and from inside another runtime alike (where `block_on` would panic).
/// `Err` when no runtime can be started.
pub fn block_on<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime to fetch credentials: {e}"))?;
                Ok(runtime.block_on(future))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
