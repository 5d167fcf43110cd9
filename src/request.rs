//! The one request layer: every request hashup sends with its own retries goes through
//! [`Requests::send`], which counts the attempts, classifies each failure ([`Class`]), backs off
//! ([`Retrying`], at least the server's `Retry-After`), tells the adaptive limit when the server
//! pushes back, stops retrying once the run is asked to stop, and says when a server was never
//! reached at all.
//!
//! What a request is (signing it, its deadline, the cap on its answer) stays with the remote that
//! sends it; what a failure means is said once per protocol, by its error type's
//! [`Classify`] implementation: [`crate::transfer::TransferError`] for S3 and storage,
//! [`crate::presign::PresignError`] for the PROMINENCE API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::limit::Limiter;
use crate::retry::{RetryPolicy, Retrying};
use crate::stop::StopLevel;

/// What one failed attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Every other request would fail the same way (credentials refused, no such bucket, a
    /// token the API refuses): the run stops.
    Fatal,
    /// This request (its object) fails; the others go on.
    Object,
    /// Worth another try after a backoff: a connection error, a timeout, 408, 500, 502.
    Transient,
    /// The server is full (429, 503 SlowDown, 504, or no answer in time): another try after a
    /// backoff, and the adaptive limit backs off.
    PushBack,
    /// Worth another try at once, signed afresh: a 403 taken for an expired signature.
    Resign,
}

/// A failure as the request layer sees it. Each protocol's error type says what it means once.
pub trait Classify {
    /// What the failure means.
    fn class(&self) -> Class;
    /// How long the server asked to be left alone (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// Whether the server answered at all (a status came back).
    fn answered(&self) -> bool;
}

/// Why [`Requests::send`] gave up.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// A failure that dooms every request of the run.
    Fatal(E),
    /// This request failed: refused, or out of retries (`unreachable`: no attempt of it got an
    /// answer, and no request of this [`Requests`] ever has, so the server cannot be reached).
    Failed {
        /// The last attempt's failure.
        error: E,
        /// Attempts made.
        attempts: u32,
        /// The server has never answered.
        unreachable: bool,
    },
    /// The run was asked to stop (Ctrl-C) before another try.
    Stopped(E),
}

impl<E> GaveUp<E> {
    /// The last attempt's failure.
    pub fn error(&self) -> &E {
        match self {
            GaveUp::Fatal(error) | GaveUp::Failed { error, .. } | GaveUp::Stopped(error) => error,
        }
    }

    /// The last attempt's failure, owned.
    pub fn into_error(self) -> E {
        match self {
            GaveUp::Fatal(error) | GaveUp::Failed { error, .. } | GaveUp::Stopped(error) => error,
        }
    }
}

/// Sends requests for one run: its retry policy, its stop level, the limit told of push-back,
/// and whether the server has answered yet. Cheap to clone; clones share that last fact.
#[derive(Clone)]
pub struct Requests {
    policy: RetryPolicy,
    stop: watch::Receiver<StopLevel>,
    limiter: Option<Arc<Limiter>>,
    answered: Arc<AtomicBool>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("policy", &self.policy)
            .field("stop", &*self.stop.borrow())
            .field("telling a limit", &self.limiter.is_some())
            .field("answered", &self.answered())
            .finish()
    }
}

impl Requests {
    /// Requests retried by `policy`, stopping when `stop` rises above [`StopLevel::Run`].
    pub fn new(policy: RetryPolicy, stop: watch::Receiver<StopLevel>) -> Requests {
        Requests {
            policy,
            stop,
            limiter: None,
            answered: Arc::default(),
        }
    }

    /// Requests that are never asked to stop (a command without signal handling).
    pub fn unstoppable(policy: RetryPolicy) -> Requests {
        Requests::new(policy, never_stops())
    }

    /// The same, telling `limiter` when the server pushes back.
    pub fn telling(self, limiter: Arc<Limiter>) -> Requests {
        Requests {
            limiter: Some(limiter),
            ..self
        }
    }

    /// The same, with another retry policy (the same server, the same stop level).
    pub fn with_policy(&self, policy: RetryPolicy) -> Requests {
        Requests {
            policy,
            ..self.clone()
        }
    }

    /// The same, stopping on `stop` instead (a stage's own stop level, e.g. the pipeline's,
    /// which also rises when a drain outlasts its timeout).
    pub fn with_stop(&self, stop: watch::Receiver<StopLevel>) -> Requests {
        Requests {
            stop,
            ..self.clone()
        }
    }

    /// The same, never asked to stop: for clean-up that must still run after a stop request
    /// (aborting a multipart upload that would otherwise be left behind).
    pub fn unstopped(&self) -> Requests {
        self.with_stop(never_stops())
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The run's stop level.
    pub fn stop(&self) -> &watch::Receiver<StopLevel> {
        &self.stop
    }

    /// Whether the run was asked to stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow() > StopLevel::Run
    }

    /// Whether any request has had an answer.
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// Tells the layer a request had an answer (one sent outside [`Requests::send`]).
    pub fn mark_answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Whether a request that ran out of retries on `error` says the server cannot be reached:
    /// it got no answer, and no request of the run ever has. Such a failure dooms the run
    /// rather than one object.
    pub fn unreachable(&self, error: &impl Classify) -> bool {
        !error.answered() && !self.answered()
    }

    /// Runs `attempt` until it succeeds, a failure is not worth another try, the retries run
    /// out, or the run is asked to stop (a backoff in progress is cut short). `attempt` builds
    /// its request afresh each time (a new signature, a new deadline).
    pub async fn send<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, GaveUp<E>>
    where
        E: Classify,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retrying = Retrying::new(self.policy);
        loop {
            retrying.attempt();
            let error = match attempt().await {
                Ok(value) => {
                    self.mark_answered();
                    return Ok(value);
                }
                Err(error) => error,
            };
            if error.answered() {
                self.mark_answered();
            }
            let class = error.class();
            if class == Class::PushBack
                && let Some(limiter) = &self.limiter
            {
                limiter.pushed_back();
            }
            let delay = match class {
                Class::Fatal => return Err(GaveUp::Fatal(error)),
                Class::Object => None,
                Class::Resign => retrying.again().then_some(Duration::ZERO),
                Class::Transient | Class::PushBack => retrying.backoff(error.retry_after()),
            };
            let Some(delay) = delay else {
                let unreachable = class != Class::Object && self.unreachable(&error);
                return Err(GaveUp::Failed {
                    error,
                    attempts: retrying.attempts(),
                    unreachable,
                });
            };
            if self.stopping() {
                return Err(GaveUp::Stopped(error));
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                Ok(_) = stop.wait_for(|level| *level > StopLevel::Run) => {
                    return Err(GaveUp::Stopped(error));
                }
            }
        }
    }
}

/// A stop level that stays at [`StopLevel::Run`]: its sender is dropped, so it keeps its value
/// and never changes.
fn never_stops() -> watch::Receiver<StopLevel> {
    let (tx, stop) = watch::channel(StopLevel::Run);
    drop(tx);
    stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    /// A scripted failure.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Scripted {
        class: Class,
        answered: bool,
        retry_after: Option<Duration>,
    }

    impl Classify for Scripted {
        fn class(&self) -> Class {
            self.class
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
        fn answered(&self) -> bool {
            self.answered
        }
    }

    fn fail(class: Class) -> Scripted {
        Scripted {
            class,
            answered: true,
            retry_after: None,
        }
    }

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }
    }

    /// Sends with `requests`, answering attempt N with `script[N]` (then the last one again);
    /// the result and the attempts made.
    async fn run(
        requests: &Requests,
        script: Vec<Result<u32, Scripted>>,
    ) -> (Result<u32, GaveUp<Scripted>>, usize) {
        let calls = Mutex::new(0usize);
        let result = requests
            .send(|| {
                let mut n = calls.lock().unwrap();
                let answer = script[(*n).min(script.len() - 1)].clone();
                *n += 1;
                async move { answer }
            })
            .await;
        let n = *calls.lock().unwrap();
        (result, n)
    }

    #[tokio::test]
    async fn a_fatal_failure_is_not_tried_again() {
        let requests = Requests::unstoppable(quick(5));
        let (result, calls) = run(&requests, vec![Err(fail(Class::Fatal)), Ok(1)]).await;
        assert!(matches!(result, Err(GaveUp::Fatal(e)) if e.class == Class::Fatal));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn an_objects_failure_is_not_tried_again_and_is_not_unreachable() {
        let requests = Requests::unstoppable(quick(5));
        let (result, calls) = run(&requests, vec![Err(fail(Class::Object)), Ok(1)]).await;
        assert!(matches!(
            result,
            Err(GaveUp::Failed {
                attempts: 1,
                unreachable: false,
                ..
            })
        ));
        assert_eq!(calls, 1);
        assert!(requests.answered());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_they_pass_or_run_out() {
        let requests = Requests::unstoppable(quick(2));
        let flaky = vec![Err(fail(Class::Transient)), Err(fail(Class::Resign)), Ok(7)];
        let (result, calls) = run(&requests, flaky).await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, 3);

        let (result, calls) = run(&requests, vec![Err(fail(Class::Transient))]).await;
        assert!(matches!(
            result,
            Err(GaveUp::Failed {
                attempts: 3,
                unreachable: false,
                ..
            })
        ));
        assert_eq!(calls, 3, "the first attempt and two retries");
    }

    #[tokio::test]
    async fn push_back_is_retried_and_told_to_the_limit() {
        let limiter = Limiter::new(crate::limit::Concurrency::Fixed(4));
        let requests = Requests::unstoppable(quick(3)).telling(limiter.clone());
        let (result, calls) = run(
            &requests,
            vec![
                Err(fail(Class::PushBack)),
                Err(fail(Class::PushBack)),
                Ok(1),
            ],
        )
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(calls, 3);
        assert_eq!(limiter.pushbacks(), 2);
        // A transient failure that is not push-back says nothing to the limit.
        let _ = run(&requests, vec![Err(fail(Class::Transient)), Ok(1)]).await;
        assert_eq!(limiter.pushbacks(), 2);
    }

    #[tokio::test]
    async fn a_server_never_reached_is_unreachable_until_it_answers_once() {
        let requests = Requests::unstoppable(quick(1));
        let silent = Scripted {
            class: Class::PushBack,
            answered: false,
            retry_after: None,
        };
        let (result, _) = run(&requests, vec![Err(silent.clone())]).await;
        assert!(matches!(
            result,
            Err(GaveUp::Failed {
                unreachable: true,
                ..
            })
        ));
        // Once it has answered anything, a request that runs out of retries is its own failure.
        let _ = run(&requests, vec![Ok(1)]).await;
        let (result, _) = run(&requests, vec![Err(silent)]).await;
        assert!(matches!(
            result,
            Err(GaveUp::Failed {
                unreachable: false,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_stop_request_ends_a_backoff_and_no_retry_follows() {
        let (tx, stop) = watch::channel(StopLevel::Run);
        let requests = Requests::new(RetryPolicy::default(), stop);
        let busy = Scripted {
            class: Class::PushBack,
            answered: true,
            // The server asks for a minute: only the stop request ends the wait.
            retry_after: Some(Duration::from_secs(60)),
        };
        let started = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(StopLevel::Drain).unwrap();
            tx
        });
        let (result, calls) = run(&requests, vec![Err(busy.clone()), Ok(1)]).await;
        assert!(matches!(result, Err(GaveUp::Stopped(_))), "{result:?}");
        assert_eq!(calls, 1);
        assert!(started.elapsed() < Duration::from_secs(10));
        // Once stopping, a failure is not tried again at all.
        let _tx = stopper.await.unwrap();
        let (result, calls) = run(&requests, vec![Err(busy), Ok(1)]).await;
        assert!(matches!(result, Err(GaveUp::Stopped(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn unstopped_requests_are_retried_after_a_stop_request() {
        let (tx, stop) = watch::channel(StopLevel::Abort);
        let requests = Requests::new(quick(2), stop);
        let flaky = vec![Err(fail(Class::Transient)), Ok(1)];
        let (result, calls) = run(&requests.unstopped(), flaky.clone()).await;
        assert_eq!((result.unwrap(), calls), (1, 2));
        assert!(requests.stopping(), "the original still stops");
        let (result, calls) = run(&requests, flaky).await;
        assert!(matches!(result, Err(GaveUp::Stopped(_))));
        assert_eq!(calls, 1);
        drop(tx);
    }
}
