//! The credentials a signer uses right now, kept fresh: fixed keys never change; temporary
//! ones (STS, container, instance metadata) are fetched again before they expire.
//!
//! Signing is synchronous and happens per request ([`crate::presign::s3::DirectS3`]), so the
//! current keys sit behind a lock and [`LiveCredentials::get`] never waits in the common case:
//!
//! - more than [`REFRESH_AHEAD`] left: the keys as they are;
//! - less: the keys as they are, while a refresh runs in the background (a task on the
//!   caller's tokio runtime, else a thread), one at a time and at most one per
//!   [`RETRY_AFTER`] (a failed one is tried again then; a source that hands out keys with
//!   little time left is not asked on every signature);
//! - less than [`MUST_REFRESH`] left (nothing signed for a long while, or the background
//!   refreshes failed): the caller waits for a refresh, and if that fails too, gets an error
//!   rather than keys that S3 would refuse. On a multi-thread tokio runtime that wait (for
//!   the turn to ask, and for the answer) runs in `block_in_place`: the worker's other tasks
//!   move to another thread first, so the runtime keeps running while it lasts. One such
//!   refresh runs at a time, and at most one per [`RETRY_AFTER`]: until then the callers get
//!   its outcome (the keys it stored, still unexpired, or its error) without asking again.
//!   Keys that are already expired when fetched are an error, as botocore's "refreshed
//!   credentials are still expired", never used: a source that hands them out is not asked on
//!   every signature, and the run fails rather than sending what S3 must refuse.
//!
//! The lock on the keys themselves is only held to copy or replace them, never across a fetch.

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

/// The least time between two background refreshes.
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
    /// Fetches credentials once, retrying transient failures through the one request layer
    /// (`attempts` in all, a few hundred milliseconds apart).
    pub async fn fetch(&self, attempts: u32) -> Result<Expiring, super::FetchError> {
        let policy = crate::retry::RetryPolicy {
            retries: attempts.saturating_sub(1),
            base: Duration::from_millis(300),
            cap: Duration::from_secs(2),
        };
        crate::request::Requests::unstoppable(policy)
            .send(|| async {
                match self {
                    Source::WebIdentity(w) => w.fetch().await,
                    Source::Container(c) => c.fetch().await,
                    Source::Imds(i) => i.fetch().await,
                }
            })
            .await
            .map_err(crate::request::GaveUp::into_error)
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
    /// When the last background refresh started.
    last_refresh: Mutex<Option<Instant>>,
    /// Held by whoever waits for a refresh, so only one asks at a time; holds when the last
    /// such refresh asked, and its error if it failed.
    waiting: Mutex<Option<(Instant, Option<String>)>>,
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
            last_refresh: Mutex::new(None),
            waiting: Mutex::new(None),
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
        outside_the_runtime(|| self.wait_for_refresh(source, now))
    }

    /// Blocks until keys good at `now` are stored: one caller asks the source, the others
    /// wait for their turn and find its result. Within [`RETRY_AFTER`] of the last ask, the
    /// source is not asked again: the keys it gave, while not expired, or its error.
    fn wait_for_refresh(&self, source: &Source, now: SystemTime) -> Result<Credentials, String> {
        let mut last = self.0.waiting.lock().expect("not poisoned");
        let current = self.peek();
        let left = |keys: &Expiring| {
            keys.expires
                .map_or(Duration::MAX, |e| e.duration_since(now).unwrap_or_default())
        };
        if left(&current) > MUST_REFRESH {
            return Ok(current.credentials);
        }
        if let Some((asked, failed)) = &*last
            && asked.elapsed() < RETRY_AFTER
        {
            return match failed {
                Some(why) => Err(why.clone()),
                None if left(&current) > Duration::ZERO => Ok(current.credentials),
                None => Err(still_expired(source)),
            };
        }
        let inner = self.0.clone();
        let fetched =
            block_on(async move { inner.source.as_ref().expect("a source").fetch(2).await });
        let outcome = match fetched {
            Ok(Ok(fresh)) if left(&fresh) == Duration::ZERO => Err(still_expired(source)),
            Ok(Ok(fresh)) => {
                self.store(fresh.clone());
                Ok(fresh.credentials)
            }
            Ok(Err(e)) => Err(format!(
                "the credentials from {} expire soon and cannot be refreshed: {e}",
                source.describe()
            )),
            Err(e) => Err(e),
        };
        *last = Some((Instant::now(), outcome.as_ref().err().cloned()));
        outcome
    }

    fn store(&self, fresh: Expiring) {
        *self.0.current.write().expect("not poisoned") = fresh;
    }

    /// Starts a refresh unless one runs or the last one started less than [`RETRY_AFTER`] ago.
    fn refresh_in_background(&self) {
        {
            let mut last = self.0.last_refresh.lock().expect("not poisoned");
            if last.is_some_and(|when| when.elapsed() < RETRY_AFTER)
                || self.0.refreshing.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(Instant::now());
        }
        let this = self.clone();
        let task = async move {
            let source = this.0.source.as_ref().expect("a source");
            // A failure leaves the keys as they are; the next signature after RETRY_AFTER
            // tries again, and under MUST_REFRESH signing waits for a refresh or fails.
            if let Ok(fresh) = source.fetch(3).await
                && !expired(&fresh, SystemTime::now())
            {
                this.store(fresh);
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

/// Why keys fresh from `source` cannot be used.
fn still_expired(source: &Source) -> String {
    format!(
        "the credentials from {} were refreshed, but the refreshed credentials are still expired",
        source.describe()
    )
}

/// Whether keys fetched at `now` are already expired.
pub(crate) fn expired(keys: &Expiring, now: SystemTime) -> bool {
    keys.expires.is_some_and(|e| e <= now)
}

/// Runs `blocking`, which may wait on a lock and the network, without holding up a tokio
/// runtime's other tasks: on a multi-thread runtime through [`tokio::task::block_in_place`],
/// which hands this worker's tasks to another thread first. Elsewhere it simply runs: plain
/// threads (and the runtime's blocking threads) may block, and a current-thread runtime has
/// no other thread to hand its tasks to. (hashup's runtimes are multi-thread; it uses no
/// `LocalSet`, in which `block_in_place` would panic.)
fn outside_the_runtime<R>(blocking: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(blocking),
        _ => blocking(),
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

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A container credentials agent on a thread: answers every request with `status` and
    /// `body`, counting requests.
    fn agent(status: u16, body: String) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/creds", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url, count)
    }

    fn keys(id: &str, lifetime: Duration) -> Expiring {
        Expiring {
            credentials: Credentials::new(id, "secret"),
            expires: Some(SystemTime::now() + lifetime),
        }
    }

    fn container(url: &str) -> Source {
        Source::Container(ecs::Container {
            url: url.to_string(),
            authorization: None,
        })
    }

    fn fresh_answer() -> String {
        let expiration = crate::utc::rfc3339_nanos(SystemTime::now() + Duration::from_secs(3600));
        format!(
            r#"{{"AccessKeyId":"NEW","SecretAccessKey":"s","Token":"t","Expiration":"{expiration}"}}"#
        )
    }

    #[test]
    fn fixed_keys_never_expire() {
        let live = LiveCredentials::fixed(Credentials::new("A", "S"));
        let far = SystemTime::now() + Duration::from_secs(10 * 365 * 86400);
        assert_eq!(live.get(far).unwrap().access_key_id, "A");
        assert!(live.source().is_none());
    }

    #[test]
    fn keys_are_refreshed_ahead_of_expiry_in_the_background() {
        let (url, count) = agent(200, fresh_answer());
        let live =
            LiveCredentials::refreshing(container(&url), keys("OLD", Duration::from_secs(600)));
        let now = SystemTime::now();
        assert_eq!(live.get(now).unwrap().access_key_id, "OLD");
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "ten minutes left: no refresh"
        );
        // Four minutes left: the old keys at once, the new ones soon after.
        let later = now + Duration::from_secs(360);
        assert_eq!(live.get(later).unwrap().access_key_id, "OLD");
        let deadline = Instant::now() + Duration::from_secs(10);
        while live.peek().credentials.access_key_id != "NEW" {
            assert!(Instant::now() < deadline, "no refresh");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(live.get(later).unwrap().session_token.as_deref(), Some("t"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn keys_about_to_expire_are_waited_for() {
        let (url, count) = agent(200, fresh_answer());
        let live =
            LiveCredentials::refreshing(container(&url), keys("OLD", Duration::from_secs(30)));
        assert_eq!(live.get(SystemTime::now()).unwrap().access_key_id, "NEW");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // From inside a runtime too.
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = runtime.block_on(async { live.get(SystemTime::now()) });
        assert_eq!(got.unwrap().access_key_id, "NEW");
    }

    #[test]
    fn waiting_for_a_refresh_holds_up_no_other_task() {
        // An agent that says when the request is in, and answers only when told to.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/creds", listener.local_addr().unwrap());
        let (arrived, request_in) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            arrived.send(()).unwrap();
            let _ = released.recv();
            let body = fresh_answer();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        });
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        // One worker: were it blocked by the wait, no other task could run until it ends.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let waiting = runtime.spawn(async move { live.get(SystemTime::now()) });
        request_in
            .recv_timeout(Duration::from_secs(10))
            .expect("the refresh asks the agent");
        let (ran, other_ran) = std::sync::mpsc::channel();
        runtime.spawn(async move { ran.send(()).ok() });
        let other = other_ran.recv_timeout(Duration::from_secs(5));
        release.send(()).unwrap();
        assert!(
            other.is_ok(),
            "another task waited for the refresh to finish"
        );
        let got = runtime.block_on(waiting).unwrap();
        assert_eq!(got.unwrap().access_key_id, "NEW");
    }

    fn answer_expiring(expiration: &str) -> String {
        format!(
            r#"{{"AccessKeyId":"NEW","SecretAccessKey":"s","Token":"t","Expiration":"{expiration}"}}"#
        )
    }

    #[test]
    fn refreshed_keys_that_are_still_expired_are_refused_and_not_asked_for_again() {
        let (url, count) = agent(200, answer_expiring("2000-01-01T00:00:00Z"));
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        let want = format!(
            "the credentials from container credentials at {url} were refreshed, but the \
             refreshed credentials are still expired"
        );
        for _ in 0..100 {
            assert_eq!(live.get(SystemTime::now()), Err(want.clone()));
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "asked once for 100 signatures"
        );
        assert_eq!(live.peek().credentials.access_key_id, "OLD");
        // Nor are they taken at the start.
        let err = super::super::fetch_first(container(&url)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "container credentials at {url}: it handed out credentials that are already \
                 expired"
            )
        );
    }

    #[test]
    fn keys_about_to_expire_are_asked_for_at_most_once_per_retry_interval() {
        // The agent hands out keys with 30 s left: good now, but within MUST_REFRESH.
        let soon = crate::utc::rfc3339_nanos(SystemTime::now() + Duration::from_secs(30));
        let (url, count) = agent(200, answer_expiring(&soon));
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        for _ in 0..100 {
            assert_eq!(live.get(SystemTime::now()).unwrap().access_key_id, "NEW");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_error_answer_holding_keys_is_not_quoted() {
        let body = r#"{"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"wJalrXUtnFEMI","Token":"t"}"#;
        let (url, _) = agent(500, body.into());
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        let err = live.get(SystemTime::now()).unwrap_err();
        assert_eq!(
            err,
            format!(
                "the credentials from container credentials at {url} expire soon and cannot be \
                 refreshed: HTTP 500: (the answer holds credentials: not shown)"
            )
        );
        let (url, _) = agent(500, "SecretAccessKey=wJalrXUtnFEMI".into());
        let live = LiveCredentials::refreshing(container(&url), keys("OLD", Duration::ZERO));
        let err = live.get(SystemTime::now()).unwrap_err();
        assert!(!err.contains("wJalrXUtnFEMI"), "{err}");
    }

    #[test]
    fn keys_that_cannot_be_refreshed_in_time_are_an_error() {
        let (url, count) = agent(500, r#"{"code":"Oops","message":"agent down"}"#.into());
        let live =
            LiveCredentials::refreshing(container(&url), keys("OLD", Duration::from_secs(30)));
        let err = live.get(SystemTime::now()).unwrap_err();
        assert_eq!(
            err,
            format!(
                "the credentials from container credentials at {url} expire soon and cannot be \
                 refreshed: HTTP 500: agent down"
            )
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "a server error is asked again once"
        );
        // Within RETRY_AFTER, the same error without asking.
        assert_eq!(live.get(SystemTime::now()).unwrap_err(), err);
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
