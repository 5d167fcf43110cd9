//! Request bodies that must keep arriving: a client that stalls, or trickles, mid-body is cut
//! off, so it holds neither a connection nor (for uploads) a temporary file for long.
//!
//! Two clocks run on every body ([`Timed`]):
//!
//! - **idle**: nothing may arrive for at most [`Limits::idle_timeout`];
//! - **pace**: by any moment, the body must have come at [`Limits::min_body_rate`] on average
//!   after a grace of [`Limits::body_floor`]: `received >= (elapsed - floor) * rate`. So a
//!   request of `n` bytes lives at most `floor + n / rate` (for a 5 GiB upload at the default
//!   64 KiB/s, under a day; for a stalled form, the floor), and one byte every minute does not
//!   keep a temporary file alive.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use super::connections::Limits;

/// Why a request body stopped before its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The body came slower than the minimum rate allows.
    TooSlow,
    /// The connection failed or the body was cut short.
    Transport(String),
}

/// A request body with an idle and a pace clock (see the module docs).
pub(crate) struct Timed<S> {
    body: S,
    idle: Duration,
    started: Instant,
    floor: Duration,
    rate: u64,
    received: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Timed<S> {
    /// Watches `body`, starting now.
    pub(crate) fn new(body: S, limits: &Limits) -> Self {
        let started = Instant::now();
        let mut timed = Timed {
            body,
            idle: limits.idle_timeout,
            started,
            floor: limits.body_floor,
            rate: limits.min_body_rate.max(1),
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(started)),
        };
        let next = timed.next_deadline(started);
        timed.sleep.as_mut().reset(next);
        timed
    }

    /// The latest the body may go on as it stands: the received bytes have bought
    /// `floor + received / rate` from the start.
    fn pace_deadline(&self) -> Instant {
        let bought = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        self.started + self.floor + bought
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        (now + self.idle).min(self.pace_deadline())
    }
}

impl<S, E> Stream for Timed<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                let next = this.next_deadline(Instant::now());
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(BodyError::Transport(e.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let slow = Instant::now() >= this.pace_deadline();
                    Poll::Ready(Some(Err(if slow {
                        BodyError::TooSlow
                    } else {
                        BodyError::Idle
                    })))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn limits(idle_ms: u64, floor_ms: u64, rate: u64) -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(idle_ms),
            body_floor: Duration::from_millis(floor_ms),
            min_body_rate: rate,
            ..Limits::default()
        }
    }

    /// A body sending `chunk` bytes every `every`, for ever.
    fn trickle(chunk: usize, every: Duration) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        Box::pin(futures_util::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from(vec![0u8; chunk])), ()))
        }))
    }

    #[tokio::test]
    async fn a_silent_body_times_out() {
        let mut body = Timed::new(
            futures_util::stream::pending::<Result<Bytes, String>>(),
            &limits(100, 10_000, 1),
        );
        assert!(matches!(body.next().await, Some(Err(BodyError::Idle))));
    }

    #[tokio::test]
    async fn a_trickle_is_cut_off_at_its_pace() {
        // 10 bytes every 50 ms is 200 B/s, under the 1,000 B/s asked after a 1 s grace.
        let started = Instant::now();
        let mut body = Timed::new(
            trickle(10, Duration::from_millis(50)),
            &limits(100, 1000, 1000),
        );
        let mut received = 0;
        let err = loop {
            match body.next().await {
                Some(Ok(b)) => received += b.len(),
                Some(Err(e)) => break e,
                None => unreachable!(),
            }
        };
        assert!(matches!(err, BodyError::TooSlow), "{err:?}");
        let lived = started.elapsed();
        assert!(
            lived < Duration::from_millis(1300),
            "{lived:?} for {received} bytes"
        );
        // A body at the pace goes on.
        let mut body = Timed::new(
            trickle(100, Duration::from_millis(50)),
            &limits(100, 1000, 1000),
        );
        for _ in 0..40 {
            assert!(matches!(body.next().await, Some(Ok(_))));
        }
    }
}
