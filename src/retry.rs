//! When and how long to wait before trying a request again: exponential backoff with full
//! jitter, at least what the server's `Retry-After` asks for.

use std::time::{Duration, SystemTime};

/// Retries per request after the first attempt, unless `--retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 5;

/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How many times to retry, and the backoff between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff ceiling; it doubles with every retry.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry): uniformly random in
    /// `[0, min(cap, base * 2^retry)]` ("full jitter", so many clients retrying together spread
    /// out), but never shorter than the server's `Retry-After` (capped at [`MAX_RETRY_AFTER`]).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.base.saturating_mul(1 << retry.min(20)).min(self.cap);
        let jitter = Duration::from_nanos(rand::random_range(0..=ceiling.as_nanos() as u64));
        match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER).max(jitter),
            None => jitter,
        }
    }
}

/// One request's (or one file's) way through its retries: how many attempts were made, how
/// many retries are left, and how long to wait before the next. Every retry loop in hashup keeps
/// its count here, so "how often, how long" is decided in one place (and the adaptive
/// concurrency limiter can watch the same signals).
#[derive(Debug, Clone)]
pub struct Retrying {
    policy: RetryPolicy,
    attempts: u32,
    retries: u32,
}

impl Retrying {
    /// Nothing tried yet.
    pub fn new(policy: RetryPolicy) -> Retrying {
        Retrying {
            policy,
            attempts: 0,
            retries: 0,
        }
    }

    /// Counts the start of an attempt.
    pub fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether every retry the policy allows is used up.
    pub fn exhausted(&self) -> bool {
        self.retries >= self.policy.retries
    }

    /// Takes one retry after a transient failure: the wait before it (at least what the
    /// server's `Retry-After` asks), or `None` when none is left.
    pub fn backoff(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.exhausted() {
            return None;
        }
        let delay = self.policy.delay(self.retries, retry_after);
        self.retries += 1;
        Some(delay)
    }

    /// Takes one retry to be made at once (e.g. an expired URL, signed again); `false` when
    /// none is left.
    pub fn again(&mut self) -> bool {
        if self.exhausted() {
            return false;
        }
        self.retries += 1;
        true
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and every 5xx.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Whether an answer's status (`None`: no answer in time, the connection dropped or refused)
/// says the server is full, which the adaptive limit backs off on: 429, 503 (S3's SlowDown),
/// 504, or no answer.
pub fn pushes_back(status: Option<u16>) -> bool {
    matches!(status, None | Some(429 | 503 | 504))
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, if it has a usable one.
pub fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let policy = RetryPolicy {
            retries: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for retry in 0..10 {
            let ceiling = Duration::from_millis(100 << retry.min(4)).min(policy.cap);
            for _ in 0..50 {
                assert!(policy.delay(retry, None) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let policy = RetryPolicy::default();
        let d = policy.delay(0, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(3));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(10_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retrying_counts_attempts_and_spends_the_policys_retries() {
        let policy = RetryPolicy {
            retries: 2,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut r = Retrying::new(policy);
        r.attempt();
        assert!(!r.exhausted());
        assert!(r.backoff(None).unwrap() <= Duration::from_millis(100));
        r.attempt();
        assert_eq!(
            r.backoff(Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        r.attempt();
        assert!(r.exhausted());
        assert_eq!(r.backoff(None), None);
        assert!(!r.again());
        assert_eq!(r.attempts(), 3);
        let mut r = Retrying::new(policy);
        assert!(r.again() && r.again() && !r.again());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn push_backs_are_full_servers_and_no_answer() {
        for s in [None, Some(429), Some(503), Some(504)] {
            assert!(pushes_back(s), "{s:?}");
        }
        for s in [Some(200), Some(408), Some(500), Some(502), Some(403)] {
            assert!(!pushes_back(s), "{s:?}");
        }
    }
}
