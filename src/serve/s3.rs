//! The S3 backend: presigned POST policies and PUT URLs for clients, and ListObjectsV2 /
//! DeleteObject for the API's listing and delete, all signed by [`crate::sign`].
//!
//! Path-style addressing (`{endpoint}/{bucket}/{key}`), which every S3-compatible service
//! understands and which needs no DNS for the bucket.

use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::URL_LIFETIME;
use super::storage::{ObjectInfo, Presigned};
use crate::s3xml::ListBucketResult;
use crate::sign::{self, Credentials, PostRequest, UrlRequest};

/// Where the S3 backend stores objects.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host[:port]` of the service, e.g. `http://127.0.0.1:8333`.
    pub endpoint: String,
    /// The bucket objects go to (it must exist).
    pub bucket: String,
    /// Region of the credential scope.
    pub region: String,
    /// Access key pair the server signs with.
    pub credentials: Credentials,
}

/// A failed S3 call.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The request could not be signed (bad endpoint URL and the like).
    #[error("cannot sign the request: {0}")]
    Sign(#[from] sign::SignError),
    /// The service could not be reached.
    #[error("request to {url} failed")]
    Http {
        /// The URL without its query (no signature in logs).
        url: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL without its query.
        url: String,
        /// The status.
        status: u16,
        /// The start of the error body.
        body: String,
    },
    /// The listing was not the XML we expect.
    #[error("{url}: unexpected ListObjectsV2 answer: {detail}")]
    BadListing {
        /// The URL without its query.
        url: String,
        /// What did not parse.
        detail: String,
    },
    /// A checksum that is not 64 hex digits (the API checks first; this is a guard).
    #[error("checksum {0:?} is not a hex SHA-256")]
    BadChecksum(String),
}

/// Characters a query component keeps as is (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The S3 backend.
pub struct S3Backend {
    config: S3Config,
    http: reqwest::Client,
}

impl S3Backend {
    /// Prepares the backend (no request is made).
    pub fn new(mut config: S3Config) -> anyhow::Result<Self> {
        config.endpoint = config.endpoint.trim_end_matches('/').to_string();
        if !(config.endpoint.starts_with("http://") || config.endpoint.starts_with("https://")) {
            anyhow::bail!("S3 endpoint {:?} is not an http(s) URL", config.endpoint);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(S3Backend { config, http })
    }

    fn bucket_url(&self) -> String {
        format!("{}/{}", self.config.endpoint, self.config.bucket)
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{}", self.bucket_url(), sign::uri_encode_path(key))
    }

    fn presign(&self, method: &str, url: &str, now: SystemTime) -> Result<String, S3Error> {
        Ok(sign::presign_url(
            &self.config.credentials,
            &UrlRequest {
                method,
                url,
                region: &self.config.region,
                service: "s3",
                now,
                expires_in: URL_LIFETIME,
                signed_headers: &[],
            },
        )?)
    }

    /// A POST policy binding the checksum (as `x-amz-meta-prominence_sha256` and as
    /// `x-amz-checksum-sha256`), or a PUT URL when there is none.
    pub fn presign_upload(
        &self,
        key: &str,
        checksum: Option<&str>,
        now: SystemTime,
    ) -> Result<Presigned, S3Error> {
        let Some(checksum) = checksum else {
            return Ok(Presigned::Put {
                url: self.presign("PUT", &self.object_url(key), now)?,
            });
        };
        let digest: [u8; 32] = hex::decode(checksum)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| S3Error::BadChecksum(checksum.to_string()))?;
        let post = sign::presign_post(
            &self.config.credentials,
            &PostRequest {
                url: &self.bucket_url(),
                bucket: &self.config.bucket,
                key,
                region: &self.config.region,
                now,
                expires_in: URL_LIFETIME,
                meta_sha256: Some(checksum),
                checksum_sha256: Some(digest),
                content_length_range: None,
            },
        );
        Ok(Presigned::Post {
            url: post.url,
            fields: post.fields,
        })
    }

    /// Every object under `prefix`, following ListObjectsV2 continuation tokens.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?list-type=2&prefix={}",
                self.bucket_url(),
                utf8_percent_encode(prefix, QUERY)
            );
            if let Some(t) = &token {
                url.push_str(&format!(
                    "&continuation-token={}",
                    utf8_percent_encode(t, QUERY)
                ));
            }
            let body = self
                .send(reqwest::Method::GET, &url)
                .await?
                .text()
                .await
                .map_err(|source| self.http_error(source))?;
            let page = ListBucketResult::parse(&body).map_err(|detail| S3Error::BadListing {
                url: self.bucket_url(),
                detail,
            })?;
            for c in &page.contents {
                let last_modified =
                    crate::utc::parse_iso8601(&c.last_modified).ok_or_else(|| {
                        S3Error::BadListing {
                            url: self.bucket_url(),
                            detail: format!("LastModified {:?}", c.last_modified),
                        }
                    })?;
                objects.push(ObjectInfo {
                    key: c.key.clone(),
                    size: c.size,
                    last_modified,
                    // Only a HEAD per object would tell: listings stay one request a page.
                    sha256: None,
                });
            }
            match page.next_page() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        Ok(objects)
    }

    /// DeleteObject; a missing key is not an error (S3 answers 204 either way).
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.send(reqwest::Method::DELETE, &self.object_url(key))
            .await
            .map(drop)
    }

    fn http_error(&self, source: reqwest::Error) -> S3Error {
        S3Error::Http {
            url: self.bucket_url(),
            source,
        }
    }

    async fn send(&self, method: reqwest::Method, url: &str) -> Result<reqwest::Response, S3Error> {
        let signed = self.presign(method.as_str(), url, SystemTime::now())?;
        let response = self
            .http
            .request(method, &signed)
            .send()
            .await
            .map_err(|source| self.http_error(source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(S3Error::Status {
            url: url.split('?').next().unwrap_or(url).to_string(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_s3_timestamps() {
        let t = |s| {
            crate::utc::parse_iso8601(s)
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        };
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2013-05-24T00:00:00.000Z"), Some(1_369_353_600));
        assert_eq!(t("2000-02-29T12:34:56.789Z"), Some(951_827_696));
        assert_eq!(t("2013-05-24 00:00:00Z"), None);
        assert_eq!(t("2013-13-24T00:00:00Z"), None);
    }
}
