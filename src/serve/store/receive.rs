//! A body on its way to disk: streamed into a temporary file under `DIR/.hashup/tmp` while
//! being hashed, so memory use does not depend on the object size. Dropping a [`Receiving`]
//! (a refused, truncated or abandoned upload) deletes its file.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{Store, StoreError};
use crate::serve::body::BodyError;

/// Write buffer per upload; the only per-upload memory that grows with throughput.
const WRITE_BUFFER: usize = 256 * 1024;

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
                BodyError::Idle | BodyError::TooSlow => StoreError::RequestTimeout,
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
