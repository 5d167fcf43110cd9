//! AWS Signature Version 4 for S3: presigned POST policies and presigned URLs, and the server-side
//! checks that accept them.
//!
//! Two producers and two verifiers share one core (`canonical.rs`: key derivation, S3 URI encoding,
//! canonical request, string to sign), so what we sign and what we accept cannot drift apart:
//!
//! - [`presign_post`] / [`verify_post`]: browser-based upload with a POST policy (the shape of
//!   boto3's `generate_presigned_post` with `s3v4`).
//! - [`presign_url`] / [`verify_presigned_url`]: query-string authentication with
//!   `UNSIGNED-PAYLOAD`, optionally signing extra headers such as `x-amz-checksum-sha256`.
//!
//! Why by hand rather than `aws-sigv4`: no crate writes or checks POST policies, and the embedded
//! store must *verify* presigned URLs, which needs the canonicalisation itself, not only a signer.
//! The canonical request is a few dozen lines; sharing them between signing and verifying is
//! smaller and easier to trust than one crate for signing plus a second copy for checking. The
//! unit tests pin the core to AWS's published examples, not to itself.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hashup::sign::{Credentials, PostRequest, presign_post, verify_post};
//!
//! let creds = Credentials::new("AKIDEXAMPLE", "secret");
//! let now = SystemTime::now();
//! let post = presign_post(&creds, &PostRequest {
//!     url: "http://127.0.0.1:9000/bucket",
//!     bucket: "bucket",
//!     key: "uploads/alice/a.sif",
//!     region: "us-east-1",
//!     now,
//!     expires_in: Duration::from_secs(600),
//!     meta_sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
//!     checksum_sha256: None,
//!     content_length_range: None,
//! });
//! let ok = verify_post(|id| (id == "AKIDEXAMPLE").then(|| creds.clone()), "bucket", &post.fields, now)
//!     .unwrap();
//! assert_eq!(ok.key, "uploads/alice/a.sif");
//! ```

mod canonical;
mod post;
#[cfg(test)]
mod proptests;
mod url;

use std::fmt;

pub use canonical::{signing_key, uri_encode_path};
pub use post::{
    CHECKSUM_SHA256, META_SHA256, PostRequest, PresignedPost, VerifiedPost, presign_post,
    verify_post,
};
pub use url::{UrlRequest, VerifiedUrl, presign_url, verify_presigned_url};

/// The only algorithm we sign with or accept.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The longest validity S3 allows for a presigned URL (`X-Amz-Expires`), 7 days.
pub const MAX_URL_EXPIRES_SECS: u64 = 604_800;

/// An access key pair, with the session token of temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public half, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key_id: String,
    /// The secret half; never printed by `Debug`.
    pub secret_access_key: String,
    /// `x-amz-security-token` of temporary credentials.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Long-term credentials (no session token).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a request could not be signed or was refused.
///
/// [`SignError::s3_code`] and [`SignError::http_status`] give what S3 answers in the same case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Missing or unparsable authentication fields, policy or URL.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// An algorithm other than `AWS4-HMAC-SHA256`.
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The credential names an access key the lookup does not know.
    #[error("the access key {0:?} does not exist")]
    UnknownAccessKey(String),
    /// The signature is not the one the secret key gives.
    #[error("the request signature does not match the one calculated")]
    SignatureMismatch,
    /// A header listed in `X-Amz-SignedHeaders` is not in the request.
    #[error("signed header {0:?} is missing from the request")]
    MissingSignedHeader(String),
    /// The session token is missing or is not the one issued with the access key.
    #[error("the security token is missing or invalid")]
    InvalidToken,
    /// Past `X-Amz-Date + X-Amz-Expires`, or past the policy's `expiration`.
    #[error("request has expired")]
    Expired,
    /// `X-Amz-Date` lies more than 15 minutes in the future.
    #[error("request is not valid yet")]
    NotYetValid,
    /// A POST policy condition does not hold for the form.
    #[error("Invalid according to Policy: Policy Condition failed: {condition}")]
    ConditionFailed {
        /// The form field the condition is about (lowercase, without `$`).
        field: String,
        /// The condition as it appears in the policy (JSON).
        condition: String,
    },
    /// A form field that no policy condition covers (S3 refuses those).
    #[error("Invalid according to Policy: Extra input fields: {0}")]
    ExtraField(String),
}

impl SignError {
    /// The S3 error code for this failure, for an S3-style XML error body.
    pub fn s3_code(&self) -> &'static str {
        match self {
            SignError::Malformed(_) | SignError::UnsupportedAlgorithm(_) => "InvalidArgument",
            SignError::UnknownAccessKey(_) => "InvalidAccessKeyId",
            SignError::SignatureMismatch | SignError::MissingSignedHeader(_) => {
                "SignatureDoesNotMatch"
            }
            SignError::InvalidToken => "InvalidToken",
            SignError::Expired
            | SignError::NotYetValid
            | SignError::ConditionFailed { .. }
            | SignError::ExtraField(_) => "AccessDenied",
        }
    }

    /// The HTTP status S3 answers with for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            SignError::Malformed(_)
            | SignError::UnsupportedAlgorithm(_)
            | SignError::InvalidToken => 400,
            _ => 403,
        }
    }
}

/// Shorthand for the many "this field is broken" cases.
fn malformed(what: impl Into<String>) -> SignError {
    SignError::Malformed(what.into())
}
