//! A body on its way to disk: streamed into a temporary file under `DIR/.hashup/tmp` while
//! being hashed, so memory use does not depend on the object size. Dropping a [`Receiving`]
//! (a refused, truncated or abandoned upload) deletes its file.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{Store, StoreError};

/// Write buffer per upload; the only per-upload memory that grows with throughput.
const WRITE_BUFFER: usize = 256 * 1024;

/// An upload that sends nothing for this long is dropped with its temporary file (S3 does the
/// same with `RequestTimeout`), so a stalled client cannot pin disk space forever.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Store {
    /// Starts receiving a body into a temporary file.
    pub(super) async fn receive(&self) -> Result<Receiving, StoreError> {
        let file = tempfile::NamedTempFile::new_in(self.root.join(".hashup/tmp"))
            .map_err(StoreError::io("creating temporary file"))?;
        let handle = file
            .reopen()
            .map_err(StoreError::io("opening temporary file"))?;
        Ok(Receiving {
            file,
            writer: tokio::io::BufWriter::with_capacity(
                WRITE_BUFFER,
                tokio::fs::File::from_std(handle),
            ),
            hasher: Sha256::new(),
            len: 0,
        })
    }
}

/// A body being written to a temporary file; dropping it (a refused or abandoned upload)
/// deletes the file.
pub(super) struct Receiving {
    file: tempfile::NamedTempFile,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    /// Bytes received so far.
    pub(super) len: u64,
}

/// A body fully on disk (and synced), with its digest.
pub(super) struct Received {
    /// The temporary file, renamed into place by [`Store::commit`].
    pub(super) file: tempfile::NamedTempFile,
    /// SHA-256 of the bytes received.
    pub(super) sha256: [u8; 32],
    /// How many bytes.
    pub(super) len: u64,
}

impl Receiving {
    /// Streams `body` in, refusing it as soon as it passes `max` bytes.
    pub(super) async fn take(
        &mut self,
        mut body: impl Stream<Item = Result<Bytes, BodyError>> + Unpin,
        max: u64,
    ) -> Result<(), StoreError> {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match e {
                BodyError::Idle => StoreError::RequestTimeout,
                BodyError::Transport(_) => StoreError::IncompleteBody,
            })?;
            self.write(&chunk, max).await?;
        }
        Ok(())
    }

    /// Writes the next bytes of the body, refusing it as soon as it passes `max` bytes.
    pub(super) async fn write(&mut self, chunk: &[u8], max: u64) -> Result<(), StoreError> {
        self.len += chunk.len() as u64;
        if self.len > max {
            return Err(StoreError::EntityTooLarge);
        }
        self.hasher.update(chunk);
        self.writer
            .write_all(chunk)
            .await
            .map_err(StoreError::io("writing temporary file"))
    }

    pub(super) async fn finish(mut self) -> Result<Received, StoreError> {
        self.writer
            .flush()
            .await
            .map_err(StoreError::io("writing temporary file"))?;
        let file = self.writer.into_inner();
        file.sync_data()
            .await
            .map_err(StoreError::io("syncing temporary file"))?;
        drop(file);
        Ok(Received {
            file: self.file,
            sha256: self.hasher.finalize().into(),
            len: self.len,
        })
    }
}

/// Why a request body stopped before its end.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The connection failed or the body was cut short.
    Transport(String),
}

/// A request body that fails with [`BodyError::Idle`] when nothing arrives for `idle`, so that a
/// stalled client holds neither a temporary file nor its connection for ever.
pub(super) struct Idle<S> {
    body: S,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    /// Watches `body`, starting now.
    pub(super) fn new(body: S, idle: Duration) -> Self {
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
