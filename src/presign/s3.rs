//! Direct S3 mode: upload targets signed here with the user's own AWS credentials, so no presign
//! round trip; the same pipeline sends them.
//!
//! Every file gets a presigned PUT URL ([`crate::sign::presign_url`], valid for
//! [`URL_LIFETIME`]) that also signs two headers the transfer sends with the body:
//!
//! - `x-amz-checksum-sha256` (base64 SHA-256): the store hashes the body and refuses a mismatch
//!   with `400 BadDigest`, so no object is ever stored whose bytes differ from the checksum;
//! - `x-amz-meta-prominence_sha256` (hex): the user metadata PROMINENCE reads.
//!
//! A header that is dropped or altered breaks the signature (`403 SignatureDoesNotMatch`).
//!
//! **PUT rather than a POST policy.** Both bind the two values equally well, but a PUT is one
//! plain request: no multipart framing, no policy to build per file, and on SeaweedFS a 1 GiB
//! presigned PUT took 12.0–13.8 s against 15.2–17.1 s for the same file as a POST (curl, in the
//! README's upload benchmark notes). S3's multipart upload parts are PUTs as well.
//!
//! **Multipart upload.** A big file goes in parts ([`crate::multipart`]); [`DirectS3`] signs
//! each of its requests as a presigned URL too: CreateMultipartUpload (signing the checksum
//! algorithm and `prominence_sha256`), UploadPart (signing the part's own
//! `x-amz-checksum-sha256`), CompleteMultipartUpload, AbortMultipartUpload and ListParts.
//!
//! **Addressing.** With a custom endpoint (`--endpoint`, `$AWS_ENDPOINT_URL_S3`,
//! `$AWS_ENDPOINT_URL`): path-style, `{endpoint}/{bucket}/{key}`, which every S3-compatible
//! service understands and which needs no DNS per bucket. On AWS itself
//! (`https://s3.{region}.amazonaws.com`): virtual-hosted style,
//! `https://{bucket}.s3.{region}.amazonaws.com/{key}`, which AWS asks for (path-style is
//! deprecated there), except for bucket names that are not valid DNS labels or contain a dot
//! (the wildcard TLS certificate would not match): those go path-style, as the AWS SDKs do.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::future::BoxFuture;

use super::{PresignError, Presigner, Target};
use crate::aws::{self, CredentialsError, LiveCredentials, S3Settings};
use crate::http::Refusal;
use crate::sign::{self, CHECKSUM_SHA256, META_SHA256, UrlRequest};

/// How long a signed URL stays valid: long enough for a slow start, short enough that a leaked
/// URL is soon useless. S3 checks it when the request arrives, so a long transfer that started in
/// time completes; a 403 after expiry signs afresh.
pub const URL_LIFETIME: Duration = Duration::from_secs(3600);

/// The region when neither `--region`, `$AWS_REGION`, `$AWS_DEFAULT_REGION` nor the profile
/// names one.
pub const DEFAULT_REGION: &str = aws::DEFAULT_REGION;

/// S3 error codes that doom every file of a run: the credentials, the bucket or this machine's
/// clock are wrong, and signing again will not change that.
pub const FATAL_CODES: [&str; 7] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "NoSuchBucket",
    "InvalidBucketName",
    "RequestTimeTooSkewed",
];

/// `s3://BUCKET[/PREFIX]`: where direct S3 mode puts objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket (it must exist).
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for none.
    pub prefix: String,
}

impl S3Location {
    /// The key of object `name`: `prefix/name`, or `name` without a prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl FromStr for S3Location {
    type Err = String;

    /// Parses `s3://BUCKET[/PREFIX]`; slashes around the prefix are dropped, so
    /// `s3://b/p/` is `s3://b/p`.
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or("expected s3://BUCKET[/PREFIX]")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("no bucket name after s3://".into());
        }
        if !bucket
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        {
            return Err(format!(
                "bucket name {bucket:?} may only have letters, digits, `.`, `-` and `_`"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.chars().any(char::is_control) {
            return Err(format!("prefix {prefix:?} contains control characters"));
        }
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(format!(
                "prefix {prefix:?} has an empty, `.` or `..` segment"
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// Why direct S3 mode cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// No usable credentials (or a broken profile, file or token): the error says which.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The endpoint is not an `http(s)://host[:port]` URL.
    #[error("the S3 endpoint {url:?} (from {from}) is not an http(s)://HOST[:PORT] URL")]
    BadEndpoint {
        /// The value.
        url: String,
        /// Where it came from: `--endpoint` or the variable's name.
        from: String,
    },
    /// The region cannot be part of a credential scope.
    #[error("the region {region:?} (from {from}) is not a region name like eu-west-1")]
    BadRegion {
        /// The value.
        region: String,
        /// Where it came from: `--region` or the variable's name.
        from: String,
    },
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The checksum given is not a hex SHA-256.
    #[error("checksum {0:?} is not a hex SHA-256")]
    Checksum(String),
    /// No current credentials: refreshing temporary ones failed.
    #[error("{0}")]
    Credentials(String),
    /// SigV4 refused the request's parts (an expiry out of range, a bad URL).
    #[error(transparent)]
    Sign(#[from] sign::SignError),
    /// An empty key, which names the bucket.
    #[error("an empty key names the bucket, not an object")]
    EmptyKey,
}

/// Signs upload targets for one bucket and prefix with one set of credentials; no network
/// (but for refreshing temporary credentials, see [`LiveCredentials`]).
/// (`Debug` shows no secret: [`sign::Credentials`] redacts it.)
#[derive(Debug)]
pub struct DirectS3 {
    location: S3Location,
    credentials: LiveCredentials,
    region: String,
    /// Everything before the encoded key: `{endpoint}/{bucket}/` or `https://{bucket}.s3.../`.
    base: String,
}

impl DirectS3 {
    /// A signer for `location`. `endpoint` is `http(s)://host[:port]` of an S3-compatible
    /// service (path-style), or `None` for AWS in `region`.
    /// `credentials` are fixed keys ([`sign::Credentials`]) or [`LiveCredentials`] that refresh.
    pub fn new(
        location: S3Location,
        endpoint: Option<&str>,
        region: &str,
        credentials: impl Into<LiveCredentials>,
    ) -> Result<Self, SetupError> {
        check_region(region, "--region")?;
        let base = match endpoint {
            Some(endpoint) => {
                let endpoint = check_endpoint(endpoint, "--endpoint")?;
                format!("{endpoint}/{}/", location.bucket)
            }
            None if virtual_hostable(&location.bucket) => {
                format!("https://{}.s3.{region}.amazonaws.com/", location.bucket)
            }
            None => format!("https://s3.{region}.amazonaws.com/{}/", location.bucket),
        };
        Ok(DirectS3 {
            location,
            credentials: credentials.into(),
            region: region.to_string(),
            base,
        })
    }

    /// The signer the command line asks for: `endpoint` and `region` from the flags when given,
    /// else as the AWS tools find them, and credentials from the AWS SDKs' chain (environment,
    /// profile, web identity, container, instance metadata): see [`crate::aws`]. `env` looks a
    /// variable up (`$HOME` included; empty counts as unset). Temporary credentials are fetched
    /// here (blocking) and refreshed before they expire.
    pub fn from_env(
        location: S3Location,
        endpoint: Option<&str>,
        region: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
        let settings = aws::s3_settings(aws::Flags { endpoint, region }, &env)?;
        DirectS3::with_settings(location, settings)
    }

    /// A signer for `location` with settings found by [`aws::s3_settings`].
    pub fn with_settings(location: S3Location, settings: S3Settings) -> Result<Self, SetupError> {
        let S3Settings {
            credentials,
            region,
            endpoint,
            ..
        } = settings;
        check_region(&region.value, &region.from)?;
        if let Some(endpoint) = &endpoint {
            check_endpoint(&endpoint.value, &endpoint.from)?;
        }
        DirectS3::new(
            location,
            endpoint.as_ref().map(|e| e.value.as_str()),
            &region.value,
            credentials,
        )
    }

    /// Where objects go.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The object URL of `name` (path percent-encoded, no query).
    pub fn object_url(&self, name: &str) -> String {
        format!(
            "{}{}",
            self.base,
            sign::uri_encode_path(&self.location.key(name))
        )
    }

    /// A PUT target for `name` whose content has SHA-256 `sha256` (lowercase hex), signed at
    /// `now`: the URL and the two headers it signs.
    pub fn target(
        &self,
        name: &str,
        sha256: &str,
        now: SystemTime,
    ) -> Result<Target, SigningError> {
        let digest: [u8; 32] = hex::decode(sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| SigningError::Checksum(sha256.to_string()))?;
        let checksum = BASE64.encode(digest);
        let credentials = self
            .credentials
            .get(now)
            .map_err(SigningError::Credentials)?;
        let url = sign::presign_url(
            &credentials,
            &UrlRequest {
                method: "PUT",
                url: &self.object_url(name),
                region: &self.region,
                service: "s3",
                now,
                expires_in: URL_LIFETIME,
                signed_headers: &[(CHECKSUM_SHA256, &checksum), (META_SHA256, sha256)],
            },
        )?;
        Ok(Target::Put {
            url,
            headers: vec![
                (CHECKSUM_SHA256.to_string(), checksum),
                (META_SHA256.to_string(), sha256.to_string()),
            ],
        })
    }
}

/// A signed S3 request of multipart upload: method, presigned URL and the headers it signs
/// (which must be sent with exactly these values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `POST`, `PUT`, `GET` or `DELETE`.
    pub method: &'static str,
    /// The presigned URL (its query holds the signature: never print it).
    pub url: String,
    /// Headers to send as signed.
    pub headers: Vec<(String, String)>,
}

/// The header that asks S3 to keep SHA-256 checksums of a multipart upload's parts.
pub const CHECKSUM_ALGORITHM: &str = "x-amz-checksum-algorithm";

/// Multipart upload (and, for `upload --delete`, listing and deleting), one presigned request
/// each. `key` is the object key
/// ([`S3Location::key`] of the name); `upload_id` is CreateMultipartUpload's answer. The URLs are
/// signed at `now` for [`URL_LIFETIME`]; sign again for every attempt.
impl DirectS3 {
    /// `POST /key?uploads` (CreateMultipartUpload), signing `x-amz-checksum-algorithm: SHA256`
    /// (every part must then carry its SHA-256, and the store keeps them) and the whole file's
    /// hex SHA-256 as `x-amz-meta-prominence_sha256`.
    pub fn create_multipart(
        &self,
        key: &str,
        sha256: &str,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        if sha256.len() != 64 || hex::decode(sha256).is_err() {
            return Err(SigningError::Checksum(sha256.to_string()));
        }
        self.sign(
            "POST",
            key,
            "uploads",
            &[(CHECKSUM_ALGORITHM, "SHA256"), (META_SHA256, sha256)],
            now,
        )
    }

    /// `PUT /key?partNumber=N&uploadId=ID` (UploadPart), signing the part's own
    /// `x-amz-checksum-sha256` (base64 of its SHA-256): the store refuses other bytes with
    /// `400 BadDigest`.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        checksum: &str,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let query = format!("partNumber={number}&uploadId={}", query_value(upload_id));
        self.sign("PUT", key, &query, &[(CHECKSUM_SHA256, checksum)], now)
    }

    /// `POST /key?uploadId=ID` (CompleteMultipartUpload); the body lists the parts.
    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let query = format!("uploadId={}", query_value(upload_id));
        self.sign("POST", key, &query, &[], now)
    }

    /// `DELETE /key?uploadId=ID` (AbortMultipartUpload): the store drops the parts.
    pub fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let query = format!("uploadId={}", query_value(upload_id));
        self.sign("DELETE", key, &query, &[], now)
    }

    /// `GET /key?uploadId=ID[&part-number-marker=M]` (ListParts): the parts stored so far,
    /// from after part `marker`.
    pub fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        marker: Option<u32>,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let mut query = format!("uploadId={}", query_value(upload_id));
        if let Some(marker) = marker {
            query.push_str(&format!("&part-number-marker={marker}"));
        }
        self.sign("GET", key, &query, &[], now)
    }
}

/// The header that asks S3 to return an object's stored checksum with HEAD (SeaweedFS wants it
/// signed).
pub const CHECKSUM_MODE: &str = "x-amz-checksum-mode";

/// Reading what is stored, for `hashup verify`: no body is ever downloaded.
impl DirectS3 {
    /// `HEAD /key` (HeadObject), signing `x-amz-checksum-mode: ENABLED`: the answer carries the
    /// size, the user metadata (`x-amz-meta-prominence_sha256`) and the stored
    /// `x-amz-checksum-sha256`, if the object has one.
    pub fn head(&self, key: &str, now: SystemTime) -> Result<Signed, SigningError> {
        self.sign("HEAD", key, "", &[(CHECKSUM_MODE, "ENABLED")], now)
    }

    /// `GET /key` (GetObject). A HEAD answer has no body, so no S3 error code: a GET of the
    /// same key (sent with `Range: bytes=0-0`, which needs no signing) says whether a 403 is
    /// `SignatureDoesNotMatch` or `AccessDenied`, a 404 `NoSuchKey` or `NoSuchBucket`.
    pub fn get(&self, key: &str, now: SystemTime) -> Result<Signed, SigningError> {
        self.sign("GET", key, "", &[], now)
    }
}

impl DirectS3 {
    /// `GET /?list-type=2&prefix=P[&continuation-token=T][&start-after=K]` (ListObjectsV2): a
    /// page (up to 1,000) of the keys starting with `prefix`, from where `continuation` left
    /// off, or after key `start_after`.
    pub fn list_objects(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let mut query = format!("list-type=2&prefix={}", query_value(prefix));
        if let Some(token) = continuation {
            query.push_str(&format!("&continuation-token={}", query_value(token)));
        }
        if let Some(key) = start_after {
            query.push_str(&format!("&start-after={}", query_value(key)));
        }
        self.sign("GET", "", &query, &[], now)
    }

    /// `DELETE /key` (DeleteObject): S3 answers 204 whether or not the key existed.
    pub fn delete_object(&self, key: &str, now: SystemTime) -> Result<Signed, SigningError> {
        if key.is_empty() {
            return Err(SigningError::EmptyKey);
        }
        self.sign("DELETE", key, "", &[], now)
    }

    fn sign(
        &self,
        method: &'static str,
        key: &str,
        query: &str,
        headers: &[(&str, &str)],
        now: SystemTime,
    ) -> Result<Signed, SigningError> {
        let mut url = format!("{}{}", self.base, sign::uri_encode_path(key));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let credentials = self
            .credentials
            .get(now)
            .map_err(SigningError::Credentials)?;
        let url = sign::presign_url(
            &credentials,
            &UrlRequest {
                method,
                url: &url,
                region: &self.region,
                service: "s3",
                now,
                expires_in: URL_LIFETIME,
                signed_headers: headers,
            },
        )?;
        Ok(Signed {
            method,
            url,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
    }
}

/// A query value percent-encoded as SigV4 canonicalises it (an upload ID is opaque: AWS's hold
/// `.`, `_` and `-`, and nothing stops a store from using `/` or `+`).
fn query_value(value: &str) -> String {
    sign::uri_encode_path(value).replace('/', "%2F")
}

impl Presigner for DirectS3 {
    fn presign<'a>(
        &'a self,
        name: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Target, PresignError>> {
        let target = self
            .target(name, sha256, SystemTime::now())
            .map_err(|message| PresignError::Fatal {
                status: None,
                message: format!("cannot sign for {}: {message}", self.location),
            });
        Box::pin(std::future::ready(target))
    }

    /// Wrong credentials, a wrong session token, a missing or invalid bucket, or a clock S3
    /// will not accept: every other file would be refused the same way.
    fn fatal_refusal(&self, refusal: &Refusal) -> Option<String> {
        let code = refusal.code.as_deref()?;
        if !FATAL_CODES.contains(&code) {
            return None;
        }
        let Refusal {
            status, message, ..
        } = refusal;
        Some(if matches!(code, "NoSuchBucket" | "InvalidBucketName") {
            format!(
                "S3 refused the upload to {} (HTTP {status}: {message})",
                self.location
            )
        } else if code == "RequestTimeTooSkewed" {
            format!(
                "S3 says this machine's clock is off; every signature would be refused (HTTP \
                 {status}: {message})"
            )
        } else {
            format!("S3 refused the credentials (HTTP {status}: {message})")
        })
    }
}

/// `endpoint` without a trailing `/`, if it is `http(s)://host[:port]` (a path is allowed, a
/// query, fragment or user info is not).
fn check_endpoint(endpoint: &str, from: &str) -> Result<String, SetupError> {
    let bad = || SetupError::BadEndpoint {
        url: endpoint.to_string(),
        from: from.to_string(),
    };
    let url = reqwest::Url::parse(endpoint).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

fn check_region(region: &str, from: &str) -> Result<(), SetupError> {
    let ok = !region.is_empty()
        && region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(SetupError::BadRegion {
            region: region.to_string(),
            from: from.to_string(),
        })
    }
}

/// Whether AWS can address `bucket` as a host name under a wildcard certificate: a DNS label of
/// 3–63 lowercase letters, digits and `-`, starting and ending with a letter or digit.
fn virtual_hostable(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::sign::{Credentials, verify_presigned_url};

    /// A signer for `s3://b/pre` on a local endpoint, its credentials, and a fixed time.
    fn local_signer() -> (DirectS3, Credentials, SystemTime) {
        let creds = Credentials::new("AKID", "SECRET");
        let s3 = DirectS3::new(
            loc("s3://b/pre").unwrap(),
            Some("http://127.0.0.1:8333"),
            "us-east-1",
            creds.clone(),
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (s3, creds, now)
    }

    fn loc(s: &str) -> Result<S3Location, String> {
        s.parse()
    }

    #[test]
    fn parses_locations() {
        let l = loc("s3://bucket").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bucket", ""));
        assert_eq!(l.key("a/b.sif"), "a/b.sif");
        let l = loc("s3://bucket/").unwrap();
        assert_eq!(l.prefix, "");
        let l = loc("s3://my.bucket/runs/2026/").unwrap();
        assert_eq!(l.prefix, "runs/2026");
        assert_eq!(l.key("a/b.sif"), "runs/2026/a/b.sif");
        assert_eq!(l.to_string(), "s3://my.bucket/runs/2026");
        assert_eq!(loc("s3://b//p").unwrap().prefix, "p");

        assert_eq!(
            loc("bucket/p").unwrap_err(),
            "expected s3://BUCKET[/PREFIX]"
        );
        assert_eq!(loc("s3://").unwrap_err(), "no bucket name after s3://");
        assert_eq!(loc("s3:///p").unwrap_err(), "no bucket name after s3://");
        assert!(loc("s3://bu cket").is_err());
        assert!(loc("s3://b?x=1").is_err());
        assert!(loc("s3://b/a//c").is_err());
        assert!(loc("s3://b/a/../c").is_err());
        assert!(loc("s3://b/a\nc").is_err());
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    const CREDS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
    ];

    #[test]
    fn settings_come_from_flags_then_the_environment() {
        let l = loc("s3://bucket/p").unwrap();
        let s3 = DirectS3::from_env(l.clone(), None, None, env(&CREDS)).unwrap();
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(
            s3.object_url("a b/c"),
            "https://bucket.s3.us-east-1.amazonaws.com/p/a%20b/c"
        );
        assert_eq!(s3.credentials.peek().credentials.session_token, None);

        let all = [
            CREDS[0],
            CREDS[1],
            ("AWS_SESSION_TOKEN", "TOKEN"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL_S3", "http://s3.local:9000/"),
            ("AWS_ENDPOINT_URL", "http://other:1"),
        ];
        let s3 = DirectS3::from_env(l.clone(), None, None, env(&all)).unwrap();
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.object_url("x"), "http://s3.local:9000/bucket/p/x");
        assert_eq!(
            s3.credentials.peek().credentials.session_token.as_deref(),
            Some("TOKEN")
        );

        let s3 = DirectS3::from_env(
            l.clone(),
            Some("https://minio.example"),
            Some("local-1"),
            env(&all),
        )
        .unwrap();
        assert_eq!(s3.region, "local-1");
        assert_eq!(s3.object_url("x"), "https://minio.example/bucket/p/x");

        // The next variable in line when the first is empty.
        let s3 = DirectS3::from_env(
            l.clone(),
            None,
            None,
            env(&[
                CREDS[0],
                CREDS[1],
                ("AWS_REGION", ""),
                ("AWS_DEFAULT_REGION", "ap-south-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:8333"),
            ]),
        )
        .unwrap();
        assert_eq!(s3.region, "ap-south-1");
        assert_eq!(s3.object_url("x"), "http://127.0.0.1:8333/bucket/p/x");

        // AWS with a bucket that cannot be a host name: path-style.
        let s3 =
            DirectS3::from_env(loc("s3://my.bucket").unwrap(), None, None, env(&CREDS)).unwrap();
        assert_eq!(
            s3.object_url("x"),
            "https://s3.us-east-1.amazonaws.com/my.bucket/x"
        );
    }

    #[test]
    fn setup_errors() {
        let l = loc("s3://bucket").unwrap();
        let no_imds = ("AWS_EC2_METADATA_DISABLED", "true");
        let half = "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not";
        for (vars, message) in [
            (&[no_imds][..], "no AWS credentials found; tried: "),
            (&[CREDS[0], no_imds][..], half),
            (
                &CREDS[1..],
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
            ),
            (&[CREDS[0], ("AWS_SECRET_ACCESS_KEY", "")], half),
        ] {
            let err = DirectS3::from_env(l.clone(), None, None, env(vars)).unwrap_err();
            assert!(matches!(err, SetupError::Credentials(_)), "{err:?}");
            assert!(err.to_string().starts_with(message), "{err}");
        }
        let err =
            DirectS3::from_env(l.clone(), Some("s3.local:9000"), None, env(&CREDS)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the S3 endpoint \"s3.local:9000\" (from --endpoint) is not an http(s)://HOST[:PORT] URL"
        );
        let err = DirectS3::from_env(
            l.clone(),
            None,
            None,
            env(&[CREDS[0], CREDS[1], ("AWS_ENDPOINT_URL", "http://h/?x=1")]),
        )
        .unwrap_err();
        assert!(matches!(err, SetupError::BadEndpoint { from, .. } if from == "AWS_ENDPOINT_URL"));
        let err = DirectS3::from_env(l, None, Some("eu west"), env(&CREDS)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the region \"eu west\" (from --region) is not a region name like eu-west-1"
        );
    }

    #[test]
    fn targets_sign_both_checksum_headers() {
        let sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut creds = Credentials::new("AKID", "SECRET");
        creds.session_token = Some("TOKEN".into());
        let s3 = DirectS3::new(
            loc("s3://b/pre").unwrap(),
            Some("http://127.0.0.1:8333"),
            "us-east-1",
            creds.clone(),
        )
        .unwrap();
        // A whole second: X-Amz-Date has no fraction.
        let now = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        let Target::Put { url, headers } = s3.target("dir/e mpty", sum, now).unwrap() else {
            panic!("not a PUT");
        };
        let checksum = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(
            headers,
            [
                (CHECKSUM_SHA256.to_string(), checksum.to_string()),
                (META_SHA256.to_string(), sum.to_string()),
            ]
        );
        let (path_and_host, query) = url.split_once('?').unwrap();
        assert_eq!(path_and_host, "http://127.0.0.1:8333/b/pre/dir/e%20mpty");
        assert!(!url.contains("SECRET"));

        let lookup = |id: &str| (id == "AKID").then(|| creds.clone());
        let mut sent: Vec<(String, String)> = headers.clone();
        sent.push(("host".into(), "127.0.0.1:8333".into()));
        let ok =
            verify_presigned_url(lookup, "PUT", "/b/pre/dir/e%20mpty", query, &sent, now).unwrap();
        assert_eq!(
            ok.signed_headers,
            [
                "host",
                "x-amz-checksum-sha256",
                "x-amz-meta-prominence_sha256"
            ]
        );
        assert_eq!(
            ok.checksum_sha256,
            Some(hex::decode(sum).unwrap().try_into().unwrap())
        );
        assert_eq!(
            ok.expires_at.duration_since(now).unwrap().as_secs(),
            URL_LIFETIME.as_secs()
        );
        // Another metadata value than the one signed is refused.
        sent[1].1 = "0".repeat(64);
        assert!(
            verify_presigned_url(lookup, "PUT", "/b/pre/dir/e%20mpty", query, &sent, now).is_err()
        );

        assert!(s3.target("x", "not hex", now).is_err());
    }

    /// Every multipart request verifies as S3 would check it: `uploads` with an empty value,
    /// `partNumber` and `uploadId` in the canonical query, the signed headers required.
    #[test]
    fn multipart_requests_verify() {
        let (s3, creds, now) = local_signer();
        let lookup = |id: &str| (id == "AKID").then(|| creds.clone());
        let sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let part = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        // An upload ID with characters that need encoding.
        let id = "2~a.b_c-d/e+f=";
        let key = "dir/big file.sif";
        let path = "/b/dir/big%20file.sif";
        let requests = [
            (s3.create_multipart(key, sum, now).unwrap(), "uploads="),
            (
                s3.upload_part(key, id, 7, part, now).unwrap(),
                "partNumber=7&uploadId=2~a.b_c-d%2Fe%2Bf%3D",
            ),
            (
                s3.complete_multipart(key, id, now).unwrap(),
                "uploadId=2~a.b_c-d%2Fe%2Bf%3D",
            ),
            (
                s3.abort_multipart(key, id, now).unwrap(),
                "uploadId=2~a.b_c-d%2Fe%2Bf%3D",
            ),
            (
                s3.list_parts(key, id, Some(1000), now).unwrap(),
                "part-number-marker=1000&uploadId=2~a.b_c-d%2Fe%2Bf%3D",
            ),
        ];
        let methods: Vec<&str> = requests.iter().map(|(r, _)| r.method).collect();
        assert_eq!(methods, ["POST", "PUT", "POST", "DELETE", "GET"]);
        for (signed, expected) in &requests {
            let (path_and_host, query) = signed.url.split_once('?').unwrap();
            assert_eq!(path_and_host, format!("http://127.0.0.1:8333{path}"));
            // The operation's own parameters, in canonical order among the X-Amz-* ones.
            let own: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("X-Amz-"))
                .collect();
            assert_eq!(own.join("&"), *expected);
            let mut sent = signed.headers.clone();
            sent.push(("host".into(), "127.0.0.1:8333".into()));
            let ok = verify_presigned_url(lookup, signed.method, path, query, &sent, now)
                .unwrap_or_else(|e| panic!("{} {expected}: {e}", signed.method));
            assert_eq!(ok.signed_headers.len(), 1 + signed.headers.len());
            // The same URL for another method, or without a signed header, is refused.
            assert!(verify_presigned_url(lookup, "HEAD", path, query, &sent, now).is_err());
            if !signed.headers.is_empty() {
                assert!(
                    verify_presigned_url(lookup, signed.method, path, query, &sent[1..], now)
                        .is_err()
                );
            }
        }
        let create = &requests[0].0;
        assert_eq!(
            create.headers,
            [
                (CHECKSUM_ALGORITHM.to_string(), "SHA256".to_string()),
                (META_SHA256.to_string(), sum.to_string()),
            ]
        );
        assert_eq!(
            requests[1].0.headers,
            [(CHECKSUM_SHA256.to_string(), part.to_string())]
        );
        // The part number is part of the signature: another one is refused.
        let (_, query) = requests[1].0.url.split_once('?').unwrap();
        let other = query.replace("partNumber=7", "partNumber=8");
        let mut sent = requests[1].0.headers.clone();
        sent.push(("host".into(), "127.0.0.1:8333".into()));
        assert!(verify_presigned_url(lookup, "PUT", path, &other, &sent, now).is_err());
        assert!(s3.create_multipart(key, "not hex", now).is_err());
    }

    /// HEAD signs the checksum mode (SeaweedFS returns no checksum otherwise); the GET that
    /// asks for an error code signs nothing but the host. Neither has a query of its own.
    #[test]
    fn head_and_get_verify() {
        let (s3, creds, now) = local_signer();
        let lookup = |id: &str| (id == "AKID").then(|| creds.clone());
        let path = "/b/pre/dir/a%20b.sif";
        let head = s3.head("pre/dir/a b.sif", now).unwrap();
        let get = s3.get("pre/dir/a b.sif", now).unwrap();
        assert_eq!((head.method, get.method), ("HEAD", "GET"));
        assert_eq!(
            head.headers,
            [(CHECKSUM_MODE.to_string(), "ENABLED".to_string())]
        );
        assert!(get.headers.is_empty());
        for signed in [&head, &get] {
            let (path_and_host, query) = signed.url.split_once('?').unwrap();
            assert_eq!(path_and_host, format!("http://127.0.0.1:8333{path}"));
            assert!(query.split('&').all(|p| p.starts_with("X-Amz-")), "{query}");
            let mut sent = signed.headers.clone();
            sent.push(("host".into(), "127.0.0.1:8333".into()));
            verify_presigned_url(lookup, signed.method, path, query, &sent, now).unwrap();
            // Signed for one method only.
            let other = if signed.method == "HEAD" {
                "GET"
            } else {
                "HEAD"
            };
            assert!(verify_presigned_url(lookup, other, path, query, &sent, now).is_err());
        }
        // Without the checksum mode header the HEAD is refused.
        let (_, query) = head.url.split_once('?').unwrap();
        let host = [("host".to_string(), "127.0.0.1:8333".to_string())];
        assert!(verify_presigned_url(lookup, "HEAD", path, query, &host, now).is_err());
    }

    /// ListObjectsV2 signs the bucket's path with its query (prefix and token encoded, `/`
    /// too); DeleteObject signs the object's path with no query of its own.
    #[test]
    fn listing_and_delete_requests_verify() {
        let (s3, creds, now) = local_signer();
        let lookup = |id: &str| (id == "AKID").then(|| creds.clone());
        let host = || vec![("host".to_string(), "127.0.0.1:8333".to_string())];
        let list = s3
            .list_objects("pre/a b/", Some("tok/+="), Some("pre/a b/x"), now)
            .unwrap();
        assert_eq!(list.method, "GET");
        let (base, query) = list.url.split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:8333/b/");
        let own: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-"))
            .collect();
        assert_eq!(
            own,
            [
                "continuation-token=tok%2F%2B%3D",
                "list-type=2",
                "prefix=pre%2Fa%20b%2F",
                "start-after=pre%2Fa%20b%2Fx"
            ]
        );
        verify_presigned_url(lookup, "GET", "/b/", query, &host(), now).unwrap();
        let first = s3.list_objects("", None, None, now).unwrap();
        let (_, query) = first.url.split_once('?').unwrap();
        let own: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-"))
            .collect();
        assert_eq!(own, ["list-type=2", "prefix="]);
        verify_presigned_url(lookup, "GET", "/b/", query, &host(), now).unwrap();

        let delete = s3.delete_object("pre/dir/x y.sif", now).unwrap();
        assert_eq!(delete.method, "DELETE");
        let (base, query) = delete.url.split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:8333/b/pre/dir/x%20y.sif");
        assert!(query.starts_with("X-Amz-Algorithm="), "{query}");
        let path = "/b/pre/dir/x%20y.sif";
        verify_presigned_url(lookup, "DELETE", path, query, &host(), now).unwrap();
        assert!(verify_presigned_url(lookup, "GET", path, query, &host(), now).is_err());
        assert!(s3.delete_object("", now).is_err());
    }

    #[test]
    fn only_credential_and_bucket_refusals_are_fatal() {
        let s3 = DirectS3::new(
            loc("s3://b").unwrap(),
            Some("http://h"),
            "us-east-1",
            Credentials::new("A", "S"),
        )
        .unwrap();
        let forbidden = |code: &str| Refusal {
            status: 403,
            code: Some(code.into()),
            message: format!("{code}: x"),
        };
        assert_eq!(
            s3.fatal_refusal(&forbidden("SignatureDoesNotMatch"))
                .unwrap(),
            "S3 refused the credentials (HTTP 403: SignatureDoesNotMatch: x)"
        );
        let no_bucket = Refusal {
            status: 404,
            code: Some("NoSuchBucket".into()),
            message: "NoSuchBucket: The specified bucket does not exist".into(),
        };
        assert_eq!(
            s3.fatal_refusal(&no_bucket).unwrap(),
            "S3 refused the upload to s3://b (HTTP 404: NoSuchBucket: The specified bucket does not exist)"
        );
        assert!(s3.fatal_refusal(&forbidden("InvalidAccessKeyId")).is_some());
        // An expired URL is signed again.
        assert!(s3.fatal_refusal(&forbidden("AccessDenied")).is_none());
        let refused = |code: &str| Refusal {
            status: 400,
            code: Some(code.into()),
            message: format!("{code}: x"),
        };
        assert!(s3.fatal_refusal(&refused("BadDigest")).is_none());
        assert!(s3.fatal_refusal(&refused("InvalidToken")).is_some());
    }
}
