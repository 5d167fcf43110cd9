//! STS `AssumeRoleWithWebIdentity`: a web identity token (a Kubernetes service account's, an
//! OIDC provider's) traded for temporary credentials of a role. The call is not signed: the
//! token is the proof.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{Expiring, FetchError, http_client, read_body};
use crate::sign::Credentials;

/// Connect timeout of a call to STS.
const CONNECT: Duration = Duration::from_secs(5);

/// The whole call, answer included.
const DEADLINE: Duration = Duration::from_secs(15);

/// One role to assume with one token file.
#[derive(Clone, PartialEq, Eq)]
pub struct WebIdentity {
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// `RoleSessionName`: who assumed the role, in CloudTrail.
    pub session_name: String,
    /// The token's file; read again for every call (Kubernetes rotates it).
    pub token_file: PathBuf,
    /// `https://sts.{region}.amazonaws.com`, or an endpoint from the settings.
    pub endpoint: String,
    /// Where the setting came from: `AWS_WEB_IDENTITY_TOKEN_FILE`, `profile "x" in FILE`.
    pub from: String,
}

impl std::fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(rename = "AssumeRoleWithWebIdentityResult")]
    result: ResponseResult,
}

#[derive(Deserialize)]
struct ResponseResult {
    #[serde(rename = "Credentials")]
    credentials: XmlCredentials,
}

#[derive(Deserialize)]
struct XmlCredentials {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
    /// Always there from AWS; an S3-compatible store's own STS may leave it out.
    #[serde(rename = "SessionToken")]
    session_token: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: String,
}

/// `<ErrorResponse><Error><Code>…</Code><Message>…</Message></Error></ErrorResponse>`.
#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(rename = "Error")]
    error: crate::s3xml::S3ErrorBody,
}

/// Characters a form value keeps as they are (RFC 3986 unreserved).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl WebIdentity {
    /// For messages: `web identity (role ARN, token FILE from SOURCE)`.
    pub fn describe(&self) -> String {
        format!(
            "web identity (role {}, token {} from {})",
            self.role_arn,
            self.token_file.display(),
            self.from
        )
    }

    /// Reads the token and asks STS once.
    pub async fn fetch(&self) -> Result<Expiring, FetchError> {
        let token = self.read_token()?;
        let body = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &self.role_arn),
            ("RoleSessionName", &self.session_name),
            ("WebIdentityToken", &token),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, FORM)))
        .collect::<Vec<_>>()
        .join("&");
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let transient = |message: String| FetchError {
            message,
            fatal: false,
        };
        let response = http_client(CONNECT, true)
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/xml")
            .body(body)
            .timeout(DEADLINE)
            .send()
            .await
            .map_err(|e| {
                transient(format!(
                    "cannot reach STS at {url}: {}",
                    crate::message::error_chain(&e)
                ))
            })?;
        let status = response.status();
        let text = read_body(response)
            .await
            .map_err(|e| transient(format!("STS at {url}: {e}")))?;
        // The token is never quoted back, whatever the server says.
        let text = text.replace(&token, "<token>");
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &text));
        }
        let parsed: Response = quick_xml::de::from_str(&text).map_err(|e| FetchError {
            message: format!("STS at {url} answered with no credentials: {e}"),
            fatal: true,
        })?;
        let c = parsed.result.credentials;
        let expires = crate::utc::parse_iso8601(c.expiration.trim()).ok_or_else(|| FetchError {
            message: format!("STS at {url} answered an unreadable Expiration"),
            fatal: true,
        })?;
        Ok(Expiring {
            credentials: Credentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
            },
            expires: Some(expires),
        })
    }

    fn read_token(&self) -> Result<String, FetchError> {
        let fatal = |message: String| FetchError {
            message,
            fatal: true,
        };
        let path = self.token_file.display();
        let token = super::read_small_file(&self.token_file, super::TOKEN_FILE_LIMIT)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
            })
            .map_err(|e| {
                fatal(format!(
                    "cannot read the web identity token {path}: {}",
                    crate::message::plain_io_message(&e)
                ))
            })?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(fatal(format!("the web identity token {path} is empty")));
        }
        Ok(token)
    }
}

/// STS's error answer as one message; fatal unless throttling, the identity provider's
/// hiccup or a server error.
fn refusal(status: u16, text: &str) -> FetchError {
    use crate::message::server_text;
    let error = quick_xml::de::from_str::<ErrorResponse>(text)
        .ok()
        .map(|r| r.error)
        .or_else(|| crate::s3xml::S3ErrorBody::parse(text))
        .unwrap_or_default();
    let code = error.code.as_deref().map(str::trim);
    let detail = match (code, error.message.as_deref()) {
        (None, None) => text.chars().take(120).collect(),
        (code, message) => [code, message.map(str::trim)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
    };
    let transient = status >= 500
        || status == 429
        || code.is_some_and(|c| c.contains("Throttl") || c == "IDPCommunicationError");
    let why = match code {
        Some("ExpiredTokenException") => "the web identity token has expired",
        Some("InvalidIdentityToken") => "the web identity token is invalid",
        Some("AccessDenied") => "the role may not be assumed with this token",
        _ => "STS refused the token",
    };
    FetchError {
        message: format!("{why} (STS: HTTP {status}: {})", server_text(&detail)),
        fatal: !transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_refusals_are_one_clear_message() {
        let expired = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>ExpiredTokenException</Code>
    <Message>Token expired: current date/time 1700000000 must be before the expiration date/time 1600000000</Message>
  </Error><RequestId>r-1</RequestId></ErrorResponse>"#;
        let e = refusal(400, expired);
        assert!(e.fatal);
        assert_eq!(
            e.message,
            "the web identity token has expired (STS: HTTP 400: ExpiredTokenException: Token expired: \
             current date/time 1700000000 must be before the expiration date/time 1600000000)"
        );
        let invalid = "<Error><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found</Message></Error>";
        let e = refusal(400, invalid);
        assert!(e.fatal);
        assert!(e.message.starts_with("the web identity token is invalid (STS: HTTP 400: InvalidIdentityToken: No OpenIDConnect"), "{}", e.message);
        let idp = "<ErrorResponse><Error><Code>IDPCommunicationError</Code><Message>x</Message></Error></ErrorResponse>";
        assert!(!refusal(400, idp).fatal);
        assert!(!refusal(503, "oops").fatal);
        assert!(refusal(403, "<html>no</html>").fatal);
    }
}
