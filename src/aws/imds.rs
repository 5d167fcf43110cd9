//! The EC2 instance metadata service, IMDSv2: a session token (`PUT /latest/api/token`), then
//! the role's name and its temporary credentials, each asked with the token.
//!
//! Timeouts are short (connect [`CONNECT`], each request [`DEADLINE`]) and nothing is retried
//! at start-up: off EC2 there is nobody at 169.254.169.254, and a laptop must learn that it has
//! no credentials in about a second, not after the SDKs' several attempts. No proxy is used.

use std::time::Duration;

use super::{Expiring, FetchError, KeysAnswer, KeysProblem, http_client, read_body};

/// Where the service is on every EC2 instance (IPv4).
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// Its IPv6 address (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
pub const IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";

/// Connect timeout.
pub const CONNECT: Duration = Duration::from_secs(1);

/// Each request, answer included.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The session token's lifetime, seconds.
const TOKEN_TTL: &str = "21600";

/// The instance metadata service at one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imds {
    /// `http://169.254.169.254` or `$AWS_EC2_METADATA_SERVICE_ENDPOINT`, without a trailing `/`.
    pub endpoint: String,
}

impl Imds {
    /// For messages.
    pub fn describe(&self) -> String {
        format!("EC2 instance metadata at {}", self.endpoint)
    }

    /// Asks once: token, role, credentials. Every failure is transient (the chain treats a
    /// failure at start-up as "no credentials here").
    pub async fn fetch(&self) -> Result<Expiring, FetchError> {
        let client = http_client(CONNECT, false);
        let fail = |message: String| FetchError {
            message,
            fatal: false,
        };
        let request = |method: reqwest::Method, path: &str| {
            client
                .request(method, format!("{}{path}", self.endpoint))
                .timeout(DEADLINE)
        };
        let send = |builder: reqwest::RequestBuilder, what: &'static str| async move {
            let response = builder.send().await.map_err(|e| {
                fail(format!(
                    "no answer ({what}): {}",
                    crate::message::error_chain(&e)
                ))
            })?;
            let status = response.status();
            let body = read_body(response)
                .await
                .map_err(|e| fail(format!("{what}: {e}")))?;
            if !status.is_success() {
                return Err(fail(format!("{what}: HTTP {}", status.as_u16())));
            }
            Ok(body)
        };
        let token = send(
            request(reqwest::Method::PUT, "/latest/api/token")
                .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL),
            "session token",
        )
        .await?;
        let token = token.trim().to_string();
        const CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/";
        let roles = send(
            request(reqwest::Method::GET, CREDENTIALS).header("x-aws-ec2-metadata-token", &token),
            "role name",
        )
        .await?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| fail("the instance has no IAM role".into()))?
            .to_string();
        if role.contains(['/', '?', '#']) {
            return Err(fail(format!("unusable role name {role:?}")));
        }
        let body = send(
            request(reqwest::Method::GET, &format!("{CREDENTIALS}{role}"))
                .header("x-aws-ec2-metadata-token", &token),
            "credentials",
        )
        .await?;
        let answer: KeysAnswer = serde_json::from_str(&body)
            .map_err(|e| fail(format!("credentials of role {role:?} are not JSON: {e}")))?;
        if answer.code.as_deref().is_some_and(|c| c != "Success") {
            return Err(fail(format!(
                "credentials of role {role:?}: {}",
                crate::message::server_text(answer.code.as_deref().unwrap_or(""))
            )));
        }
        // `/latest/meta-data/iam/security-credentials/ROLE`'s answer.
        answer.into_expiring().map_err(|problem| match problem {
            KeysProblem::NoKey => fail(format!("credentials of role {role:?} lack a key")),
            KeysProblem::BadExpiration => fail(format!(
                "credentials of role {role:?}: unreadable Expiration"
            )),
        })
    }
}
