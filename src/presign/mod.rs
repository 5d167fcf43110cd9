//! Upload targets: an object name and its SHA-256 in, a presigned POST form or PUT URL out.
//!
//! [`Presigner`] is the seam between the pipeline and whoever hands out URLs: the PROMINENCE API
//! ([`prominence`]) or local signing with AWS credentials ([`s3`], direct S3 mode).
//! [`crate::transfer`] sends to a [`Target`] without knowing which presigner made it.

pub mod prominence;
pub mod s3;

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::http::Refusal;

/// Where and how to send one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A `multipart/form-data` POST: these fields in this order, then the `file` part.
    Post {
        /// The form's action URL.
        url: String,
        /// Form fields, opaque, in the order received.
        fields: Vec<(String, String)>,
    },
    /// A PUT of the file as the body.
    Put {
        /// The presigned URL.
        url: String,
        /// Extra headers the storage needs (e.g. Azure's `x-ms-blob-type`).
        headers: Vec<(String, String)>,
    },
}

impl Target {
    /// The storage URL.
    pub fn url(&self) -> &str {
        match self {
            Target::Post { url, .. } | Target::Put { url, .. } => url,
        }
    }

    /// Whether the store is asked to verify the body's SHA-256 (`x-amz-checksum-sha256` as a
    /// header of the PUT or a field of the POST policy): it then refuses (400 BadDigest)
    /// whatever does not match, so a success means it holds exactly the bytes hashed.
    pub fn store_verifies_checksum(&self) -> bool {
        let named =
            |(name, _): &(String, String)| name.eq_ignore_ascii_case(crate::sign::CHECKSUM_SHA256);
        match self {
            Target::Post { fields, .. } => fields.iter().any(named),
            Target::Put { headers, .. } => headers.iter().any(named),
        }
    }
}

/// Why no target came back.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    /// Dooms every file (bad or expired credentials): the run stops.
    #[error("{message}")]
    Fatal {
        /// The HTTP status, if an answer came.
        status: Option<u16>,
        /// What to tell the user, once.
        message: String,
    },
    /// The server refused this file (400, 403, 413, ...).
    #[error("presign refused: HTTP {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `error` message, or the start of its body.
        message: String,
    },
    /// A transient failure (connection, timeout, 408, 429, 5xx): worth trying again.
    #[error("presign failed: {message}")]
    Transient {
        /// The HTTP status, if an answer came.
        status: Option<u16>,
        /// What the server asked us to wait.
        retry_after: Option<Duration>,
        /// What happened.
        message: String,
    },
    /// A success status with an answer that makes no sense (not JSON, no `url`).
    #[error("presign answer unusable: {message}")]
    BadAnswer {
        /// The HTTP status.
        status: u16,
        /// What is wrong with it.
        message: String,
    },
}

impl PresignError {
    /// The HTTP status the API answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            PresignError::Fatal { status, .. } => *status,
            PresignError::Refused { status, .. } | PresignError::BadAnswer { status, .. } => {
                Some(*status)
            }
            PresignError::Transient { status, .. } => *status,
        }
    }
}

/// What an API failure means to the request layer: a refused token dooms the run; 429, 503,
/// 504 and no answer in time are push-back; other connection failures, 408 and 5xx are
/// transient; a refusal or an unusable answer fails the object.
impl crate::request::Classify for PresignError {
    fn class(&self) -> crate::request::Class {
        use crate::request::Class;
        match self {
            PresignError::Fatal { .. } => Class::Fatal,
            PresignError::Transient { status, .. } if crate::retry::pushes_back(*status) => {
                Class::PushBack
            }
            PresignError::Transient { .. } => Class::Transient,
            PresignError::Refused { .. } | PresignError::BadAnswer { .. } => Class::Object,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PresignError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn answered(&self) -> bool {
        self.status().is_some()
    }
}

/// Hands out upload targets.
pub trait Presigner: Send + Sync {
    /// A target for object `name` whose content has SHA-256 `sha256` (lowercase hex).
    fn presign<'a>(
        &'a self,
        name: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Target, PresignError>>;

    /// Whether storage's refusal of one of this presigner's targets dooms every file, and if so
    /// the message to stop the run with. By default none does: a 403 is taken for an expired
    /// URL and the file is presigned again.
    fn fatal_refusal(&self, refusal: &Refusal) -> Option<String> {
        let _ = refusal;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Class, Classify as _};

    /// What each API failure means to the request layer.
    #[test]
    fn api_failures_are_classified_once() {
        let transient = |status: Option<u16>| PresignError::Transient {
            status,
            retry_after: Some(Duration::from_secs(2)),
            message: "m".into(),
        };
        for (err, class, answered) in [
            (
                PresignError::Fatal {
                    status: Some(401),
                    message: "token refused".into(),
                },
                Class::Fatal,
                true,
            ),
            (
                PresignError::Refused {
                    status: 403,
                    message: "not a member".into(),
                },
                Class::Object,
                true,
            ),
            (
                PresignError::BadAnswer {
                    status: 200,
                    message: "not JSON".into(),
                },
                Class::Object,
                true,
            ),
            (transient(Some(429)), Class::PushBack, true),
            (transient(Some(504)), Class::PushBack, true),
            (transient(None), Class::PushBack, false),
            (transient(Some(502)), Class::Transient, true),
        ] {
            assert_eq!(err.class(), class, "{err}");
            assert_eq!(err.answered(), answered, "{err}");
        }
        assert_eq!(
            transient(Some(502)).retry_after(),
            Some(Duration::from_secs(2))
        );
    }
}
