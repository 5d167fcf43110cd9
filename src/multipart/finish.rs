//! The end of an upload: CompleteMultipartUpload (S3's composite checksum, and the error an
//! answer of 200 may carry), or AbortMultipartUpload.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use super::control::{Control, parse, send_signed, start_of, with_retries};
use super::{Completed, Multipart, MultipartError, Step, Upload, changed, current_stamp};
use crate::hash::HashedFile;
use crate::http::{Refusal, root_element};
use crate::manifest::{Ending, PartSent, UploadEnded, UploadLine};
use crate::presign::s3::DirectS3;
use crate::retry::{RetryPolicy, Retrying};
use crate::stop::StopLevel;
use crate::transfer::TransferError;

impl Multipart {
    /// CompleteMultipartUpload, after checking the file is unchanged; the composite checksum.
    pub(super) async fn complete(
        &self,
        key: &str,
        upload: &Upload,
        file: &HashedFile,
        parts: Vec<PartSent>,
        stop: &watch::Receiver<StopLevel>,
    ) -> Result<Completed, MultipartError> {
        match current_stamp(&file.path) {
            Ok(stamp) if stamp == file.stamp => {}
            _ => return Err(changed("the file changed while it was sent")),
        }
        let ours = composite(&parts);
        let body = complete_body(&parts);
        let (status, text) = with_retries(self.options.retry, &self.s3, stop, || {
            let signed = self
                .s3
                .complete_multipart(key, &upload.id, SystemTime::now())
                .map_err(MultipartError::Sign);
            let body = body.clone();
            async move {
                let text = self.call(&signed?, Some(body), Step::Complete).await?;
                // S3 may answer 200 and still fail: the error is in the body.
                match error_in(&text) {
                    Some(error) => Err(MultipartError::Request {
                        step: Step::Complete,
                        error,
                    }),
                    None => Ok((200, text)),
                }
            }
        })
        .await?;
        #[derive(Deserialize)]
        struct Result {
            #[serde(rename = "ChecksumSHA256", default)]
            checksum_sha256: Option<String>,
        }
        let answered =
            parse::<Result>(&text, "CompleteMultipartUploadResult").ok_or_else(|| {
                MultipartError::BadAnswer {
                    step: Step::Complete,
                    message: format!("not a CompleteMultipartUploadResult: {:?}", start_of(&text)),
                }
            })?;
        if let Some(theirs) = answered.checksum_sha256.filter(|c| !c.is_empty())
            && theirs != ours
        {
            return Err(MultipartError::BadAnswer {
                step: Step::Complete,
                message: format!("composite checksum {theirs}, expected {ours}"),
            });
        }
        Ok(Completed {
            status,
            composite: ours,
        })
    }
    /// AbortMultipartUpload (a few quick tries), journalled; whether the store no longer has
    /// the upload.
    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> bool {
        let gone = abort_request(&self.control, &self.s3, key, upload_id, self.options.retry).await;
        if gone {
            self.journal(&UploadLine::MultipartEnd(UploadEnded {
                upload_id: upload_id.to_string(),
                outcome: Ending::Aborted,
            }));
        }
        gone
    }
}

/// AbortMultipartUpload with up to three quick tries; whether the store no longer has the
/// upload (aborted now, or already gone: 404 NoSuchUpload).
pub(super) async fn abort_request(
    control: &Control,
    s3: &DirectS3,
    key: &str,
    upload_id: &str,
    policy: RetryPolicy,
) -> bool {
    let mut retry = Retrying::new(RetryPolicy {
        retries: policy.retries.min(2),
        ..policy
    });
    loop {
        retry.attempt();
        let Ok(signed) = s3.abort_multipart(key, upload_id, SystemTime::now()) else {
            return false;
        };
        let delay = match send_signed(control, &signed, None).await {
            Ok(_) => return true,
            Err(err) if err.status() == Some(404) => return true,
            Err(TransferError::Transient { retry_after, .. }) => retry.backoff(retry_after),
            Err(TransferError::Forbidden(_)) => retry.again().then_some(Duration::ZERO),
            Err(_) => None,
        };
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return false,
        }
    }
}

/// An error document in a success answer (CompleteMultipartUpload may fail after its 200 has
/// gone out): transient when S3 says to try again, else a refusal.
fn error_in(text: &str) -> Option<TransferError> {
    if root_element(text).as_deref() != Some("Error") {
        return None;
    }
    let refusal = Refusal::of(200, text);
    let transient = matches!(
        refusal.code.as_deref(),
        Some("InternalError" | "SlowDown" | "ServiceUnavailable")
    );
    Some(if transient {
        TransferError::Transient {
            status: Some(200),
            retry_after: None,
            message: format!("HTTP 200 with an error: {}", refusal.message),
        }
    } else {
        TransferError::Refused(refusal)
    })
}

/// The CompleteMultipartUpload body: each part's number, ETag and SHA-256, in order.
fn complete_body(parts: &[PartSent]) -> String {
    let mut xml = String::from(
        r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for part in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>",
            part.number,
            quick_xml::escape::partial_escape(&part.etag),
            quick_xml::escape::partial_escape(&part.checksum_sha256),
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// S3's composite checksum of `parts` (in order): the base64 SHA-256 of their SHA-256s, then
/// `-N`.
pub fn composite(parts: &[PartSent]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(BASE64.decode(&part.checksum_sha256).unwrap_or_default());
    }
    format!("{}-{}", BASE64.encode(hasher.finalize()), parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, checksum: &str) -> PartSent {
        PartSent {
            upload_id: "u".into(),
            number,
            size: 5,
            checksum_sha256: checksum.into(),
            etag: format!("\"etag{number}\""),
        }
    }

    #[test]
    fn the_composite_checksum_is_s3s() {
        // Two parts "hello" and "world": SHA-256 of their two digests, then -2.
        let h = |s: &str| BASE64.encode(Sha256::digest(s));
        let parts = [part(1, &h("hello")), part(2, &h("world"))];
        let mut both = Sha256::digest("hello").to_vec();
        both.extend_from_slice(&Sha256::digest("world"));
        assert_eq!(
            composite(&parts),
            format!("{}-2", BASE64.encode(Sha256::digest(&both)))
        );
        assert_eq!(
            complete_body(&parts[..1]),
            format!(
                "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Part><PartNumber>1</PartNumber><ETag>\"etag1\"</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>\
                 </CompleteMultipartUpload>",
                h("hello")
            )
        );
    }

    #[test]
    fn answers_are_told_apart_by_their_root() {
        let ok = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://h/b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>"x-3"</ETag><ChecksumSHA256>abc=-3</ChecksumSHA256></CompleteMultipartUploadResult>"#;
        assert!(error_in(ok).is_none());
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "ChecksumSHA256")]
            c: Option<String>,
        }
        let r: R = parse(ok, "CompleteMultipartUploadResult").unwrap();
        assert_eq!(r.c.as_deref(), Some("abc=-3"));
        assert!(parse::<R>(ok, "ListPartsResult").is_none());

        let slow = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>try again</Message></Error>";
        let err = error_in(slow).unwrap();
        assert!(matches!(err, TransferError::Transient { .. }), "{err}");
        let bad = "<Error><Code>InvalidPart</Code><Message>no such part</Message></Error>";
        let err = error_in(bad).unwrap();
        assert_eq!(err.s3_code(), Some("InvalidPart"));
        assert!(matches!(err, TransferError::Refused(_)), "{err}");
        assert!(parse::<R>(bad, "CompleteMultipartUploadResult").is_none());
        assert!(root_element("not xml at all").is_none());
    }
}
