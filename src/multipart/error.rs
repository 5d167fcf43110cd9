//! What can go wrong with a multipart upload, and at which request.

use std::fmt;

use crate::http::Refusal;
use crate::transfer::TransferError;

/// Which request of a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// CreateMultipartUpload.
    Create,
    /// UploadPart of this part.
    Part(u32),
    /// ListParts.
    ListParts,
    /// CompleteMultipartUpload.
    Complete,
    /// AbortMultipartUpload.
    Abort,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create => write!(f, "creating the multipart upload"),
            Step::Part(n) => write!(f, "part {n}"),
            Step::ListParts => write!(f, "listing the parts"),
            Step::Complete => write!(f, "completing the multipart upload"),
            Step::Abort => write!(f, "aborting the multipart upload"),
        }
    }
}

/// Why a file did not arrive in parts.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// Over S3's 5 TiB object limit: refused before anything is sent.
    #[error("{size} bytes is over S3's 5 TiB object limit")]
    TooLarge {
        /// The file's size.
        size: u64,
    },
    /// The file is not what was hashed: the upload was aborted; hash it again.
    #[error("{0}")]
    Changed(String),
    /// A request failed after its retries, or was refused.
    #[error("{step}: {error}")]
    Request {
        /// Which request.
        step: Step,
        /// What storage said, or that it could not be reached.
        error: TransferError,
    },
    /// A success status with an answer that makes no sense.
    #[error("{step}: unusable answer: {message}")]
    BadAnswer {
        /// Which request.
        step: Step,
        /// What is wrong with it.
        message: String,
    },
    /// The file could not be read for a part's checksum.
    #[error("cannot read: {}", crate::message::plain_io_message(.0))]
    Read(#[source] std::io::Error),
    /// A request could not be signed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A stop request (Ctrl-C) came before every part was stored.
    #[error(
        "interrupted: {stored} of {parts} parts stored; {}",
        if *.resumable { "a rerun with the same manifest resumes the upload" } else { "upload aborted" }
    )]
    Interrupted {
        /// Parts stored.
        stored: usize,
        /// Parts in all.
        parts: u32,
        /// Left for a rerun (journalled) rather than aborted.
        resumable: bool,
    },
}

impl MultipartError {
    /// What storage said when it refused a request, if it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            MultipartError::Request { error, .. } => error.refusal(),
            _ => None,
        }
    }

    /// The HTTP status of the last answer, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            MultipartError::Request { error, .. } => error.status(),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed (a connection, 408, 429, 5xx), or a
    /// stop request cut it short: with a journal, such an upload is left to resume rather than
    /// aborted.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MultipartError::Request {
                error: TransferError::Transient { .. },
                ..
            } | MultipartError::Interrupted { .. }
        )
    }
}
