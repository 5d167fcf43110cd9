//! Presigned POST: browser-based upload with a SigV4-signed POST policy.
//!
//! The policy is a JSON document (`expiration` and `conditions`) sent base64-encoded in the
//! `policy` field; the signature is HMAC-SHA256 of that base64 text under the derived key. No
//! canonical request is involved: whoever holds the policy and signature may post any form the
//! policy's conditions allow, so [`verify_post`] enforces every condition and refuses fields that
//! no condition covers, as S3 does.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::canonical::{Credential, hmac_sha256, verify_hmac};
use super::{ALGORITHM, Credentials, SignError, malformed};
use crate::utc::{amz_date, parse_amz_date, parse_iso8601, policy_expiration};

/// The user metadata PROMINENCE keeps the SHA-256 in.
pub const META_SHA256: &str = "x-amz-meta-prominence_sha256";

/// S3's own full-object checksum field; S3 rejects a body whose SHA-256 differs.
pub const CHECKSUM_SHA256: &str = "x-amz-checksum-sha256";

/// What to presign a POST for.
#[derive(Debug, Clone)]
pub struct PostRequest<'a> {
    /// The URL the form posts to (the bucket URL); passed through to [`PresignedPost::url`].
    pub url: &'a str,
    /// Bucket name, for the `bucket` condition.
    pub bucket: &'a str,
    /// Exact object key (an `eq` condition).
    pub key: &'a str,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Signing time.
    pub now: SystemTime,
    /// The policy expires `expires_in` after `now`.
    pub expires_in: Duration,
    /// Lowercase hex SHA-256 to store as `x-amz-meta-prominence_sha256` (field and `eq`
    /// condition).
    pub meta_sha256: Option<&'a str>,
    /// SHA-256 for the `x-amz-checksum-sha256` field and condition (sent base64).
    pub checksum_sha256: Option<[u8; 32]>,
    /// Inclusive bounds on the body size (`content-length-range` condition; no field).
    pub content_length_range: Option<(u64, u64)>,
}

/// A presigned POST: post `fields` in this order, then the `file` part, to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    /// Where the form goes.
    pub url: String,
    /// Form fields, in order: `key, x-amz-algorithm, x-amz-credential, x-amz-date,
    /// [x-amz-security-token], policy, x-amz-signature, [x-amz-meta-prominence_sha256],
    /// [x-amz-checksum-sha256]`.
    pub fields: Vec<(String, String)>,
}

/// What a valid POST form is allowed to do; the caller enforces the size and checksum while
/// streaming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPost {
    /// Who signed the policy.
    pub access_key_id: String,
    /// Region of the credential scope.
    pub region: String,
    /// The object key from the `key` field (a `${filename}` in it is not substituted).
    pub key: String,
    /// `x-amz-meta-*` fields in form order, names lowercase.
    pub metadata: Vec<(String, String)>,
    /// Inclusive body size bounds from `content-length-range` (intersected when repeated).
    pub content_length_range: Option<(u64, u64)>,
    /// SHA-256 the body must have, from the `x-amz-checksum-sha256` field.
    pub checksum_sha256: Option<[u8; 32]>,
    /// `success_action_status` when it is 200, 201 or 204 (S3 answers 204 for anything else).
    pub success_action_status: Option<u16>,
    /// When the policy expires.
    pub expiration: SystemTime,
}

/// Builds and signs a POST policy for `req` (the shape of boto3's `generate_presigned_post`).
pub fn presign_post(creds: &Credentials, req: &PostRequest) -> PresignedPost {
    let date = amz_date(req.now);
    let credential = Credential::new(&creds.access_key_id, &date, req.region, "s3");
    let checksum = req.checksum_sha256.map(|d| BASE64.encode(d));

    let mut eq: Vec<(&str, String)> = vec![
        ("bucket", req.bucket.to_owned()),
        ("key", req.key.to_owned()),
        ("x-amz-algorithm", ALGORITHM.to_owned()),
        ("x-amz-credential", credential.value()),
        ("x-amz-date", date.clone()),
    ];
    if let Some(token) = &creds.session_token {
        eq.push(("x-amz-security-token", token.clone()));
    }
    if let Some(sum) = req.meta_sha256 {
        eq.push((META_SHA256, sum.to_owned()));
    }
    if let Some(sum) = &checksum {
        eq.push((CHECKSUM_SHA256, sum.clone()));
    }
    let mut conditions: Vec<Value> = eq
        .iter()
        .map(|(name, value)| serde_json::json!({ *name: value }))
        .collect();
    if let Some((min, max)) = req.content_length_range {
        conditions.push(serde_json::json!(["content-length-range", min, max]));
    }
    // Written by hand so `expiration` comes first, as in AWS's and boto3's policies.
    let policy = format!(
        r#"{{"expiration": {}, "conditions": {}}}"#,
        Value::from(policy_expiration(req.now + req.expires_in)),
        Value::from(conditions)
    );
    let policy = BASE64.encode(policy);
    let signature = hex::encode(hmac_sha256(
        &credential.signing_key(&creds.secret_access_key),
        policy.as_bytes(),
    ));

    let mut fields = vec![
        ("key", req.key.to_owned()),
        ("x-amz-algorithm", ALGORITHM.to_owned()),
        ("x-amz-credential", credential.value()),
        ("x-amz-date", date),
    ];
    if let Some(token) = &creds.session_token {
        fields.push(("x-amz-security-token", token.clone()));
    }
    fields.push(("policy", policy));
    fields.push(("x-amz-signature", signature));
    if let Some(sum) = req.meta_sha256 {
        fields.push((META_SHA256, sum.to_owned()));
    }
    if let Some(sum) = checksum {
        fields.push((CHECKSUM_SHA256, sum));
    }
    PresignedPost {
        url: req.url.to_owned(),
        fields: fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    }
}

/// Verifies a POST form addressed to `bucket`, as S3 would.
///
/// `fields` are the form fields in order, the `file` part excluded (it is ignored if present).
/// Field names match case-insensitively. Checked, in order: the authentication fields, the
/// signature of the policy (constant-time), the session token, the policy's expiration, every
/// condition, and that every field is covered by a condition except `x-amz-signature`, `file`,
/// `policy` and `x-ignore-*` (the exemptions S3 documents).
pub fn verify_post(
    lookup: impl Fn(&str) -> Option<Credentials>,
    bucket: &str,
    fields: &[(String, String)],
    now: SystemTime,
) -> Result<VerifiedPost, SignError> {
    let form = Form::new(fields)?;
    let required = |name: &str| {
        form.get(name)
            .ok_or_else(|| malformed(format!("form field {name} is missing")))
    };

    let algorithm = required("x-amz-algorithm")?;
    if algorithm != ALGORITHM {
        return Err(SignError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let date = required("x-amz-date")?;
    parse_amz_date(date)
        .ok_or_else(|| malformed(format!("x-amz-date {date:?} is not YYYYMMDDTHHMMSSZ")))?;
    let credential = Credential::parse(required("x-amz-credential")?, date)?;
    let policy_b64 = required("policy")?;
    let signature = required("x-amz-signature")?;
    let key = required("key")?;

    let creds = lookup(&credential.access_key_id)
        .ok_or_else(|| SignError::UnknownAccessKey(credential.access_key_id.clone()))?;
    verify_hmac(
        &credential.signing_key(&creds.secret_access_key),
        policy_b64.as_bytes(),
        signature,
    )?;
    if form.get("x-amz-security-token") != creds.session_token.as_deref() {
        return Err(SignError::InvalidToken);
    }

    // Only now, with the signature good, is the policy worth parsing.
    let policy: Value = BASE64
        .decode(policy_b64)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| malformed("policy is not base64-encoded JSON"))?;
    let expiration = policy
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(parse_iso8601)
        .ok_or_else(|| malformed("policy expiration is missing or not ISO 8601 UTC"))?;
    if now >= expiration {
        return Err(SignError::Expired);
    }
    let conditions = policy
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("policy conditions are missing"))?;

    let mut covered = HashSet::new();
    let mut content_length_range: Option<(u64, u64)> = None;
    for condition in conditions {
        match Condition::parse(condition)? {
            Condition::ContentLengthRange(min, max) => {
                let (lo, hi) = content_length_range.unwrap_or((0, u64::MAX));
                content_length_range = Some((lo.max(min), hi.min(max)));
            }
            Condition::Match {
                field,
                value,
                prefix,
            } => {
                let actual = if field == "bucket" {
                    Some(bucket)
                } else {
                    form.get(&field)
                };
                let actual = actual.unwrap_or("");
                let holds = if prefix {
                    actual.starts_with(value)
                } else {
                    actual == value
                };
                if !holds {
                    return Err(SignError::ConditionFailed {
                        field,
                        condition: condition.to_string(),
                    });
                }
                covered.insert(field);
            }
        }
    }
    for (name, _) in fields {
        let lower = name.to_ascii_lowercase();
        let exempt = matches!(lower.as_str(), "x-amz-signature" | "file" | "policy")
            || lower.starts_with("x-ignore-");
        if !exempt && !covered.contains(&lower) {
            return Err(SignError::ExtraField(name.clone()));
        }
    }

    let checksum_sha256 = match form.get(CHECKSUM_SHA256) {
        None => None,
        Some(b64) => Some(
            BASE64
                .decode(b64)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    malformed(format!("{CHECKSUM_SHA256} {b64:?} is not a base64 SHA-256"))
                })?,
        ),
    };
    Ok(VerifiedPost {
        access_key_id: credential.access_key_id,
        region: credential.region,
        key: key.to_owned(),
        metadata: fields
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .filter(|(n, _)| n.starts_with("x-amz-meta-"))
            .collect(),
        content_length_range,
        checksum_sha256,
        success_action_status: form
            .get("success_action_status")
            .and_then(|s| s.parse().ok())
            .filter(|s| matches!(s, 200 | 201 | 204)),
        expiration,
    })
}

/// Form fields by lowercase name.
struct Form<'a> {
    fields: Vec<(String, &'a str)>,
}

impl<'a> Form<'a> {
    fn new(fields: &'a [(String, String)]) -> Result<Self, SignError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let lower = name.to_ascii_lowercase();
            if !seen.insert(lower.clone()) {
                return Err(malformed(format!("form field {name} is repeated")));
            }
            out.push((lower, value.as_str()));
        }
        Ok(Form { fields: out })
    }

    fn get(&self, lower_name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n == lower_name)
            .map(|(_, v)| *v)
    }
}

/// One policy condition.
enum Condition<'a> {
    /// `{"field": "v"}`, `["eq", "$field", "v"]` or (`prefix`) `["starts-with", "$field", "v"]`.
    Match {
        field: String,
        value: &'a str,
        prefix: bool,
    },
    /// `["content-length-range", min, max]`.
    ContentLengthRange(u64, u64),
}

impl<'a> Condition<'a> {
    fn parse(condition: &'a Value) -> Result<Self, SignError> {
        let bad = || malformed(format!("policy condition {condition} is not understood"));
        if let Some(object) = condition.as_object() {
            let [(field, value)] = object.iter().collect::<Vec<_>>()[..] else {
                return Err(bad());
            };
            let field = field
                .strip_prefix('$')
                .unwrap_or(field)
                .to_ascii_lowercase();
            let value = value.as_str().ok_or_else(bad)?;
            return Ok(Condition::Match {
                field,
                value,
                prefix: false,
            });
        }
        let [op, a, b] = condition.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
            return Err(bad());
        };
        let op = op.as_str().ok_or_else(bad)?.to_ascii_lowercase();
        if op == "content-length-range" {
            let (min, max) = (size(a).ok_or_else(bad)?, size(b).ok_or_else(bad)?);
            return if min <= max {
                Ok(Condition::ContentLengthRange(min, max))
            } else {
                Err(bad())
            };
        }
        let prefix = match op.as_str() {
            "eq" => false,
            "starts-with" => true,
            _ => return Err(bad()),
        };
        let field = a
            .as_str()
            .and_then(|f| f.strip_prefix('$'))
            .ok_or_else(bad)?;
        let value = b.as_str().ok_or_else(bad)?;
        Ok(Condition::Match {
            field: field.to_ascii_lowercase(),
            value,
            prefix,
        })
    }
}

/// A size bound: a non-negative JSON integer, or a string of digits.
fn size(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::signing_key;
    use std::time::UNIX_EPOCH;

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn lookup(id: &str) -> Option<Credentials> {
        (id == AKID).then(|| Credentials::new(AKID, SECRET))
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn with(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
        let mut out = fields.to_vec();
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value.to_owned(),
            None => out.push((name.to_owned(), value.to_owned())),
        }
        out
    }

    fn without(fields: &[(String, String)], name: &str) -> Vec<(String, String)> {
        fields.iter().filter(|(n, _)| n != name).cloned().collect()
    }

    fn condition_failed(result: Result<VerifiedPost, SignError>) -> String {
        match result {
            Err(SignError::ConditionFailed { field, .. }) => field,
            other => panic!("expected ConditionFailed, got {other:?}"),
        }
    }

    // AWS S3 API Reference, "Example: Browser-Based Upload using HTTP POST (Using AWS Signature
    // Version 4)", https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-post-example.html: the
    // base64 policy (of the 648-byte CRLF policy shown there) and the signature, verbatim.
    const AWS_POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    const AWS_POST_SIGNATURE: &str =
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";
    /// 2015-12-29T00:00:00Z, the x-amz-date of AWS's example; the policy expires 36 h later.
    const AWS_POST_DATE: u64 = 1_451_347_200;

    /// The example page's HTML form, fields in its order, up to the file part (the page notes
    /// that S3 ignores what follows the file, such as its submit button).
    fn aws_form() -> Vec<(String, String)> {
        form(&[
            ("key", "user/user1/${filename}"),
            ("acl", "public-read"),
            (
                "success_action_redirect",
                "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
            ),
            ("Content-Type", "image/jpeg"),
            ("x-amz-meta-uuid", "14365123651274"),
            ("x-amz-server-side-encryption", "AES256"),
            (
                "X-Amz-Credential",
                "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
            ),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Date", "20151229T000000Z"),
            ("x-amz-meta-tag", ""),
            ("Policy", AWS_POLICY),
            ("X-Amz-Signature", AWS_POST_SIGNATURE),
        ])
    }

    fn verify_aws(fields: &[(String, String)], now: u64) -> Result<VerifiedPost, SignError> {
        verify_post(lookup, "sigv4examplebucket", fields, at(now))
    }

    #[test]
    fn aws_post_example_signature() {
        let policy = BASE64.decode(AWS_POLICY).unwrap();
        assert_eq!(policy.len(), 648);
        assert!(policy.starts_with(b"{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n"));
        let key = signing_key(SECRET, "20151229", "us-east-1", "s3");
        assert_eq!(
            hex::encode(hmac_sha256(&key, AWS_POLICY.as_bytes())),
            AWS_POST_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_aws_example_form() {
        let ok = verify_aws(&aws_form(), AWS_POST_DATE).unwrap();
        assert_eq!(ok.access_key_id, AKID);
        assert_eq!(ok.region, "us-east-1");
        assert_eq!(ok.key, "user/user1/${filename}");
        assert_eq!(
            ok.metadata,
            form(&[
                ("x-amz-meta-uuid", "14365123651274"),
                ("x-amz-meta-tag", "")
            ])
        );
        assert_eq!(ok.content_length_range, None);
        assert_eq!(ok.checksum_sha256, None);
        assert_eq!(ok.success_action_status, None);
        assert_eq!(ok.expiration, at(1_451_476_800));
        // Names are case-insensitive ("The post parameters are case insensitive").
        let lower: Vec<_> = aws_form()
            .into_iter()
            .map(|(n, v)| (n.to_lowercase(), v))
            .collect();
        assert!(verify_aws(&lower, AWS_POST_DATE).is_ok());
        // x-ignore-* fields are exempt from the policy.
        assert!(verify_aws(&with(&aws_form(), "x-ignore-note", "hi"), AWS_POST_DATE).is_ok());
    }

    #[test]
    fn refuses_the_aws_example_form_tampered() {
        let f = aws_form();
        let now = AWS_POST_DATE;
        assert_eq!(
            condition_failed(verify_aws(&with(&f, "key", "user/user2/x"), now)),
            "key"
        );
        assert_eq!(
            condition_failed(verify_aws(&with(&f, "Content-Type", "text/html"), now)),
            "content-type"
        );
        assert_eq!(
            condition_failed(verify_aws(&with(&f, "x-amz-meta-uuid", "1"), now)),
            "x-amz-meta-uuid"
        );
        assert_eq!(
            condition_failed(verify_aws(&without(&f, "acl"), now)),
            "acl"
        );
        assert_eq!(
            condition_failed(verify_post(lookup, "otherbucket", &f, at(now))),
            "bucket"
        );
        assert_eq!(
            verify_aws(&with(&f, "x-amz-meta-extra", "1"), now),
            Err(SignError::ExtraField("x-amz-meta-extra".to_owned()))
        );
        let mut sig = AWS_POST_SIGNATURE.to_owned();
        sig.replace_range(0..1, "9");
        assert_eq!(
            verify_aws(&with(&f, "X-Amz-Signature", &sig), now),
            Err(SignError::SignatureMismatch)
        );
        let policy = AWS_POLICY.replacen("eyAi", "eyAj", 1);
        assert_eq!(
            verify_aws(&with(&f, "Policy", &policy), now),
            Err(SignError::SignatureMismatch)
        );
        // Expires at noon on 30 December 2015, to the second.
        assert!(verify_aws(&f, 1_451_476_799).is_ok());
        assert_eq!(verify_aws(&f, 1_451_476_800), Err(SignError::Expired));
        let wrong_secret = |_: &str| Some(Credentials::new(AKID, "wrong"));
        assert_eq!(
            verify_post(wrong_secret, "sigv4examplebucket", &f, at(now)),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_post(|_| None, "sigv4examplebucket", &f, at(now)),
            Err(SignError::UnknownAccessKey(AKID.to_owned()))
        );
        // A credential from another day than x-amz-date is malformed before any lookup.
        let other_day = with(&f, "X-Amz-Date", "20151230T000000Z");
        assert!(matches!(
            verify_aws(&other_day, now),
            Err(SignError::Malformed(_))
        ));
        let repeated = [f.clone(), form(&[("KEY", "user/user1/y")])].concat();
        assert!(matches!(
            verify_aws(&repeated, now),
            Err(SignError::Malformed(_))
        ));
        assert!(matches!(
            verify_aws(&without(&f, "Policy"), now),
            Err(SignError::Malformed(_))
        ));
    }

    // What boto3 1.43.11 `generate_presigned_post` emits with signature_version="s3v4", as the
    // PROMINENCE server calls it. Produced once with:
    //   botocore.auth.get_current_datetime = botocore.signers.get_current_datetime =
    //       lambda remove_tzinfo=True: datetime.datetime(2024, 5, 1, 12, 0, 0)
    //   s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:8333",
    //       aws_access_key_id=AKID, aws_secret_access_key=SECRET,
    //       config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    //   s3.generate_presigned_post("prominence", "uploads/alice/image.sif",
    //       Fields={"x-amz-meta-prominence_sha256": SHA}, Conditions=[{"x-amz-meta-prominence_sha256": SHA}],
    //       ExpiresIn=600)
    // The policy decodes to {"expiration": "2024-05-01T12:10:00Z", "conditions": [{meta}, {"bucket":
    // "prominence"}, {"key": ...}, {"x-amz-algorithm": ...}, {"x-amz-credential": ...}, {"x-amz-date": ...}]}.
    const BOTO_POLICY: &str = "eyJleHBpcmF0aW9uIjogIjIwMjQtMDUtMDFUMTI6MTA6MDBaIiwgImNvbmRpdGlvbnMiOiBbeyJ4LWFtei1tZXRhLXByb21pbmVuY2Vfc2hhMjU2IjogImUzYjBjNDQyOThmYzFjMTQ5YWZiZjRjODk5NmZiOTI0MjdhZTQxZTQ2NDliOTM0Y2E0OTU5OTFiNzg1MmI4NTUifSwgeyJidWNrZXQiOiAicHJvbWluZW5jZSJ9LCB7ImtleSI6ICJ1cGxvYWRzL2FsaWNlL2ltYWdlLnNpZiJ9LCB7IngtYW16LWFsZ29yaXRobSI6ICJBV1M0LUhNQUMtU0hBMjU2In0sIHsieC1hbXotY3JlZGVudGlhbCI6ICJBS0lBSU9TRk9ETk43RVhBTVBMRS8yMDI0MDUwMS91cy1lYXN0LTEvczMvYXdzNF9yZXF1ZXN0In0sIHsieC1hbXotZGF0ZSI6ICIyMDI0MDUwMVQxMjAwMDBaIn1dfQ==";
    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// 2024-05-01T12:00:00Z.
    const BOTO_DATE: u64 = 1_714_564_800;

    fn boto_form() -> Vec<(String, String)> {
        form(&[
            ("x-amz-meta-prominence_sha256", SHA),
            ("key", "uploads/alice/image.sif"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            (
                "x-amz-credential",
                "AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/s3/aws4_request",
            ),
            ("x-amz-date", "20240501T120000Z"),
            ("policy", BOTO_POLICY),
            (
                "x-amz-signature",
                "a93057db73adcf6d781f606982df35564d53b9ef7aa720baef5aa830cc3af782",
            ),
        ])
    }

    #[test]
    fn verifies_what_boto3_generates() {
        let ok = verify_post(lookup, "prominence", &boto_form(), at(BOTO_DATE)).unwrap();
        assert_eq!(ok.key, "uploads/alice/image.sif");
        assert_eq!(ok.metadata, form(&[(META_SHA256, SHA)]));
        assert_eq!(ok.expiration, at(BOTO_DATE + 600));
        let f = boto_form();
        assert_eq!(
            condition_failed(verify_post(
                lookup,
                "prominence",
                &with(&f, META_SHA256, &SHA.replace('e', "f")),
                at(BOTO_DATE)
            )),
            META_SHA256
        );
        assert_eq!(
            verify_post(lookup, "prominence", &f, at(BOTO_DATE + 600)),
            Err(SignError::Expired)
        );
    }

    fn request(now: SystemTime) -> PostRequest<'static> {
        PostRequest {
            url: "http://127.0.0.1:8080/prominence",
            bucket: "prominence",
            key: "uploads/alice/image.sif",
            region: "us-east-1",
            now,
            expires_in: Duration::from_secs(600),
            meta_sha256: Some(SHA),
            checksum_sha256: None,
            content_length_range: None,
        }
    }

    #[test]
    fn presigns_the_documented_field_order_and_policy() {
        let mut req = request(at(BOTO_DATE));
        req.checksum_sha256 = Some([1; 32]);
        req.content_length_range = Some((0, 5 << 30));
        let mut creds = Credentials::new(AKID, SECRET);
        creds.session_token = Some("token".to_owned());
        let post = presign_post(&creds, &req);
        assert_eq!(post.url, "http://127.0.0.1:8080/prominence");
        let names: Vec<&str> = post.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "x-amz-security-token",
                "policy",
                "x-amz-signature",
                META_SHA256,
                CHECKSUM_SHA256,
            ]
        );
        let policy = &post.fields[5].1;
        let json: Value = serde_json::from_slice(&BASE64.decode(policy).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "expiration": "2024-05-01T12:10:00.000Z",
                "conditions": [
                    {"bucket": "prominence"},
                    {"key": "uploads/alice/image.sif"},
                    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                    {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/s3/aws4_request"},
                    {"x-amz-date": "20240501T120000Z"},
                    {"x-amz-security-token": "token"},
                    {META_SHA256: SHA},
                    {CHECKSUM_SHA256: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
                    ["content-length-range", 0, 5u64 << 30],
                ]
            })
        );
        // The signature is the documented one: HMAC of the base64 policy under the derived key.
        let key = signing_key(SECRET, "20240501", "us-east-1", "s3");
        assert_eq!(
            post.fields[6].1,
            hex::encode(hmac_sha256(&key, policy.as_bytes()))
        );
    }

    #[test]
    fn round_trip_and_tampering() {
        let now = at(BOTO_DATE);
        let mut req = request(now);
        req.checksum_sha256 = Some([9; 32]);
        req.content_length_range = Some((1, 1000));
        let post = presign_post(&Credentials::new(AKID, SECRET), &req);
        let f = post.fields;
        let ok = verify_post(lookup, "prominence", &f, now).unwrap();
        assert_eq!(ok.key, "uploads/alice/image.sif");
        assert_eq!(ok.metadata, form(&[(META_SHA256, SHA)]));
        assert_eq!(ok.checksum_sha256, Some([9; 32]));
        assert_eq!(ok.content_length_range, Some((1, 1000)));

        assert_eq!(
            condition_failed(verify_post(
                lookup,
                "prominence",
                &with(&f, "key", "uploads/bob/x"),
                now
            )),
            "key"
        );
        assert_eq!(
            condition_failed(verify_post(
                lookup,
                "prominence",
                &with(&f, META_SHA256, "00"),
                now
            )),
            META_SHA256
        );
        let other_sum = BASE64.encode([8u8; 32]);
        assert_eq!(
            condition_failed(verify_post(
                lookup,
                "prominence",
                &with(&f, CHECKSUM_SHA256, &other_sum),
                now
            )),
            CHECKSUM_SHA256
        );
        // Dropping the checksum field fails its condition rather than skipping the check.
        assert_eq!(
            condition_failed(verify_post(
                lookup,
                "prominence",
                &without(&f, CHECKSUM_SHA256),
                now
            )),
            CHECKSUM_SHA256
        );
        let policy = &f.iter().find(|(n, _)| n == "policy").unwrap().1;
        let forged = BASE64.encode(
            String::from_utf8(BASE64.decode(policy).unwrap())
                .unwrap()
                .replace("uploads/alice/", "uploads/bob/"),
        );
        assert_eq!(
            verify_post(lookup, "prominence", &with(&f, "policy", &forged), now),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_post(
                lookup,
                "prominence",
                &with(&f, "success_action_redirect", "http://x"),
                now
            ),
            Err(SignError::ExtraField("success_action_redirect".to_owned()))
        );
        assert_eq!(
            verify_post(lookup, "prominence", &f, at(BOTO_DATE + 600)),
            Err(SignError::Expired)
        );
        let wrong_secret = |_: &str| Some(Credentials::new(AKID, "wrong"));
        assert_eq!(
            verify_post(wrong_secret, "prominence", &f, now),
            Err(SignError::SignatureMismatch)
        );
        // A session token belongs to the key: missing on either side is refused.
        let with_token = |_: &str| {
            let mut c = Credentials::new(AKID, SECRET);
            c.session_token = Some("t".to_owned());
            Some(c)
        };
        assert_eq!(
            verify_post(with_token, "prominence", &f, now),
            Err(SignError::InvalidToken)
        );
    }

    #[test]
    fn understands_every_condition_form() {
        let conditions = [
            r#"{"key": "k"}"#,
            r#"["eq", "$key", "k"]"#,
            r#"["starts-with", "$key", ""]"#,
            r#"["starts-with", "$Key", "k"]"#,
            r#"["content-length-range", 1, 10]"#,
            r#"["content-length-range", "0", "20"]"#,
        ];
        let policy = format!(
            r#"{{"expiration": "2024-05-01T12:10:00Z", "conditions": [{}, {{"x-amz-algorithm": "AWS4-HMAC-SHA256"}}, ["starts-with", "$x-amz-credential", ""], ["eq", "$x-amz-date", "20240501T120000Z"], {{"success_action_status": "201"}}]}}"#,
            conditions.join(", ")
        );
        let policy = BASE64.encode(policy);
        let key = signing_key(SECRET, "20240501", "us-east-1", "s3");
        let f = form(&[
            ("key", "k"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            (
                "x-amz-credential",
                "AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/s3/aws4_request",
            ),
            ("x-amz-date", "20240501T120000Z"),
            ("success_action_status", "201"),
            ("policy", &policy),
            (
                "x-amz-signature",
                &hex::encode(hmac_sha256(&key, policy.as_bytes())),
            ),
        ]);
        let ok = verify_post(lookup, "any", &f, at(BOTO_DATE)).unwrap();
        assert_eq!(ok.content_length_range, Some((1, 10)));
        assert_eq!(ok.success_action_status, Some(201));

        for bad in [
            r#"["in", "$key", "k"]"#,
            r#"["eq", "key", "k"]"#,
            r#"["content-length-range", 10, 1]"#,
            r#"["content-length-range", -1, 1]"#,
            r#"{"key": 1}"#,
            r#"{"key": "k", "acl": "x"}"#,
            r#""key""#,
        ] {
            let policy = BASE64.encode(format!(
                r#"{{"expiration": "2024-05-01T12:10:00Z", "conditions": [{bad}]}}"#
            ));
            let f = with(&f, "policy", &policy);
            let f = with(
                &f,
                "x-amz-signature",
                &hex::encode(hmac_sha256(&key, policy.as_bytes())),
            );
            assert!(
                matches!(
                    verify_post(lookup, "any", &f, at(BOTO_DATE)),
                    Err(SignError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
