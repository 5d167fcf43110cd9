//! What can go wrong with a multipart upload, and at which request.

use crate::presign::s3::SigningError;
use std::fmt;
use std::time::Duration;

use crate::http::Refusal;
use crate::request::{Class, Classify};
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
    Sign(#[source] SigningError),
    /// A part's task ended without an outcome (it panicked or was cancelled).
    #[error("a part's task failed: {0}")]
    Task(String),
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

/// What a failed request means, as the storage error inside says ([`TransferError`]'s
/// [`Classify`]); anything else (a signature that cannot be made, an answer that makes no sense)
/// fails the upload at once.
impl Classify for MultipartError {
    fn class(&self) -> Class {
        match self {
            MultipartError::Request { error, .. } => error.class(),
            _ => Class::Object,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            MultipartError::Request { error, .. } => error.retry_after(),
            _ => None,
        }
    }

    fn answered(&self) -> bool {
        match self {
            MultipartError::Request { error, .. } => error.answered(),
            MultipartError::BadAnswer { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_classified_by_the_storage_error_inside() {
        let request = |error| MultipartError::Request {
            step: Step::Part(1),
            error,
        };
        let forbidden = |code: &str| {
            let body = format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
            TransferError::Forbidden(Refusal::of(403, &body))
        };
        assert_eq!(request(forbidden("AccessDenied")).class(), Class::Resign);
        assert_eq!(
            request(forbidden("InvalidAccessKeyId")).class(),
            Class::Fatal
        );
        let slow = request(TransferError::Transient {
            status: Some(500),
            retry_after: Some(Duration::from_secs(3)),
            message: "m".into(),
        });
        assert_eq!(
            (slow.class(), slow.retry_after(), slow.answered()),
            (Class::Transient, Some(Duration::from_secs(3)), true)
        );
        let unsigned = MultipartError::Sign(SigningError::Credentials("no credentials".into()));
        assert_eq!(
            (unsigned.class(), unsigned.answered()),
            (Class::Object, false)
        );
    }
}
