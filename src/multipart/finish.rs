//! The end of an upload: CompleteMultipartUpload (S3's composite checksum, and the error an
//! answer of 200 may carry), or AbortMultipartUpload.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::control::{Control, parse, send_signed, start_of};
use super::{
    Completed, Ending, Multipart, MultipartError, PartSent, Source, Step, Upload, changed,
};
use crate::http::Refusal;
use crate::presign::Presigner as _;
use crate::presign::s3::DirectS3;
use crate::request::{GaveUp, Requests};
use crate::s3xml::root_element;
use crate::transfer::TransferError;

impl Multipart {
    /// CompleteMultipartUpload, after checking the file is unchanged; the composite checksum,
    /// checked against the store's.
    pub(super) async fn complete(
        &self,
        key: &str,
        upload: &Upload,
        file: &Source,
        parts: Vec<PartSent>,
        requests: &Requests,
    ) -> Result<Completed, MultipartError> {
        if !file.unchanged().await.unwrap_or(false) {
            return Err(changed("the file changed while it was sent"));
        }
        let ours = composite(&parts);
        let text = self
            .complete_request(key, &upload.id, &complete_body(&parts), requests)
            .await?;
        let answered = complete_result(&text)?;
        if let Some(theirs) = answered.checksum_sha256.filter(|c| !c.is_empty())
            && theirs != ours
        {
            return Err(MultipartError::BadAnswer {
                step: Step::Complete,
                message: format!("composite checksum {theirs}, expected {ours}"),
            });
        }
        Ok(Completed {
            status: 200,
            composite: ours,
            etag: answered
                .etag
                .filter(|e| !e.is_empty())
                .map(|e| crate::message::server_text(&e)),
        })
    }

    /// CompleteMultipartUpload with `body`, until it succeeds or the retries run out: S3 may
    /// answer 200 and still fail (the error is in the body), which is retried like any failure.
    async fn complete_request(
        &self,
        key: &str,
        upload_id: &str,
        body: &str,
        requests: &Requests,
    ) -> Result<String, MultipartError> {
        requests
            .send(|| async {
                let signed = self
                    .s3
                    .complete_multipart(key, upload_id, SystemTime::now())
                    .map_err(MultipartError::Sign)?;
                let text = self
                    .call(&signed, Some(body.to_string()), Step::Complete)
                    .await?;
                match error_in(&text) {
                    Some(error) => Err(MultipartError::Request {
                        step: Step::Complete,
                        error,
                    }),
                    None => Ok(text),
                }
            })
            .await
            .map_err(GaveUp::into_error)
    }

    /// Deals with an upload `result` left: completed, it is journalled as such; failed, it is
    /// aborted, unless a later run can resume it: with a journal, after a stop request or a
    /// network that stayed down (or a refusal of the credentials, which the next run may have
    /// fixed).
    pub(super) async fn end(
        &self,
        key: &str,
        upload_id: &str,
        result: &Result<Completed, MultipartError>,
    ) {
        match result {
            Ok(_) => self.journal(|j| j.ended(upload_id, Ending::Completed)),
            Err(err)
                if self.journal.resumable()
                    && (err.is_transient()
                        || err
                            .refusal()
                            .is_some_and(|r| self.s3.fatal_refusal(r).is_some())) => {}
            Err(_) => {
                self.abort(key, upload_id).await;
            }
        }
    }

    /// AbortMultipartUpload (a few quick tries), journalled; whether the store no longer has
    /// the upload.
    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> bool {
        let gone = abort_request(&self.control, &self.s3, &self.aborts, key, upload_id).await;
        if gone {
            self.journal(|j| j.ended(upload_id, Ending::Aborted));
        }
        gone
    }
}

/// An upload not yet completed or dealt with: dropped like this (a second Ctrl-C drops the
/// whole file's future), it is left to resume when journalled, else aborted in the background
/// before the command exits ([`Multipart::settle`]).
pub(super) struct Open<'a> {
    engine: &'a Multipart,
    key: &'a str,
    id: &'a str,
    settled: bool,
}

impl<'a> Open<'a> {
    pub(super) fn new(engine: &'a Multipart, key: &'a str, id: &'a str) -> Self {
        Open {
            engine,
            key,
            id,
            settled: false,
        }
    }

    /// The upload was dealt with ([`Multipart::end`]): nothing is left to do when dropped.
    pub(super) fn settled(&mut self) {
        self.settled = true;
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.settled || self.engine.journal.resumable() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (control, s3, aborts) = (
            self.engine.control.clone(),
            self.engine.s3.clone(),
            self.engine.aborts.clone(),
        );
        let (key, id) = (self.key.to_string(), self.id.to_string());
        let handle = runtime.spawn(async move {
            abort_request(&control, &s3, &aborts, &key, &id).await;
        });
        self.engine
            .cleanup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }
}

/// AbortMultipartUpload, retried by `aborts` (a few quick tries, also after a stop request);
/// whether the store no longer has the upload (aborted now, or already gone: 404 NoSuchUpload).
pub(super) async fn abort_request(
    control: &Control,
    s3: &DirectS3,
    aborts: &Requests,
    key: &str,
    upload_id: &str,
) -> bool {
    let sent = aborts
        .send(|| async {
            let signed = s3
                .abort_multipart(key, upload_id, SystemTime::now())
                .map_err(MultipartError::Sign)?;
            send_signed(control, &signed, None)
                .await
                .map_err(|error| MultipartError::Request {
                    step: Step::Abort,
                    error,
                })
        })
        .await;
    match sent {
        Ok(_) => true,
        Err(gave_up) => gave_up.error().status() == Some(404),
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

/// What a CompleteMultipartUploadResult says: the composite checksum and the ETag, where the
/// store gave them.
#[derive(Deserialize)]
struct CompleteResult {
    #[serde(rename = "ChecksumSHA256", default)]
    checksum_sha256: Option<String>,
    #[serde(rename = "ETag", default)]
    etag: Option<String>,
}

/// Reads a CompleteMultipartUploadResult.
fn complete_result(text: &str) -> Result<CompleteResult, MultipartError> {
    parse::<CompleteResult>(text, "CompleteMultipartUploadResult").ok_or_else(|| {
        MultipartError::BadAnswer {
            step: Step::Complete,
            message: format!("not a CompleteMultipartUploadResult: {:?}", start_of(text)),
        }
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
