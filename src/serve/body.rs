//! Request bodies that must keep arriving: a client that stalls mid-body is cut off, so it
//! holds neither a connection nor (for uploads) a temporary file for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

/// Why a request body stopped before its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The connection failed or the body was cut short.
    Transport(String),
}

/// A request body that fails with [`BodyError::Idle`] when nothing arrives for `idle`, so that a
/// stalled client holds neither a temporary file nor its connection for ever.
pub(crate) struct Idle<S> {
    body: S,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    /// Watches `body`, starting now.
    pub(crate) fn new(body: S, idle: Duration) -> Self {
        Idle {
            body,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<S, E> Stream for Idle<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(BodyError::Transport(e.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
