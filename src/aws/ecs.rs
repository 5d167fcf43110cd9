//! Container credentials: ECS tasks (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, answered at
//! 169.254.170.2) and EKS Pod Identity or other agents (`AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! with `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `_TOKEN_FILE`). One GET, a JSON answer.

use std::path::PathBuf;
use std::time::Duration;

use super::{Expiring, FetchError, KeysAnswer, KeysProblem, http_client, read_body};

/// The ECS agent's address for relative URIs.
pub const ECS_HOST: &str = "http://169.254.170.2";

/// Connect timeout.
const CONNECT: Duration = Duration::from_secs(2);

/// The whole request.
const DEADLINE: Duration = Duration::from_secs(5);

/// The `Authorization` header's value, given or in a file (read for every request: EKS
/// rotates it).
#[derive(Clone, PartialEq, Eq)]
pub enum Authorization {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Token(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    File(PathBuf),
}

/// One container credentials endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Container {
    /// The full URL.
    pub url: String,
    /// What to send as `Authorization`, if anything.
    pub authorization: Option<Authorization>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret; its file's name is not.
        f.write_str(&self.describe())
    }
}

impl Container {
    /// For messages.
    pub fn describe(&self) -> String {
        format!("container credentials at {}", self.url)
    }

    /// Asks once.
    pub async fn fetch(&self) -> Result<Expiring, FetchError> {
        let fail = |message: String, fatal: bool| FetchError { message, fatal };
        let mut request = http_client(CONNECT, false).get(&self.url).timeout(DEADLINE);
        match &self.authorization {
            Some(Authorization::Token(token)) => request = request.header("authorization", token),
            Some(Authorization::File(path)) => {
                let token =
                    super::read_small_file(path, super::TOKEN_FILE_LIMIT).and_then(|bytes| {
                        String::from_utf8(bytes)
                            .map_err(|_| std::io::Error::other("not UTF-8 text"))
                    });
                let token = token.map_err(|e| {
                    fail(
                        format!(
                            "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}: {}",
                            path.display(),
                            crate::message::plain_io_message(&e)
                        ),
                        true,
                    )
                })?;
                request = request.header("authorization", token.trim());
            }
            None => {}
        }
        let response = request.send().await.map_err(|e| {
            fail(
                format!("no answer: {}", crate::message::error_chain(&e)),
                false,
            )
        })?;
        let status = response.status().as_u16();
        let body = read_body(response).await.map_err(|e| fail(e, false))?;
        let answer: Option<KeysAnswer> = serde_json::from_str(&body).ok();
        if !(200..300).contains(&status) {
            // The body is quoted only where it holds no keys: an agent that answers an error
            // status with credentials in it must not have them printed.
            let secret = answer.as_ref().is_some_and(KeysAnswer::holds_keys)
                || body.to_ascii_lowercase().contains("secretaccesskey");
            let detail = match answer {
                _ if secret => "(the answer holds credentials: not shown)".into(),
                Some(a) => a
                    .message
                    .or(a.code)
                    .unwrap_or_else(|| body.chars().take(120).collect()),
                None => body.chars().take(120).collect(),
            };
            return Err(fail(
                format!("HTTP {status}: {}", crate::message::server_text(&detail)),
                (400..500).contains(&status) && status != 429,
            ));
        }
        let answer = answer.ok_or_else(|| fail("the answer is not JSON".into(), true))?;
        answer.into_expiring().map_err(|problem| match problem {
            KeysProblem::NoKey => fail(
                "the answer has no AccessKeyId and SecretAccessKey".into(),
                true,
            ),
            KeysProblem::BadExpiration => {
                fail("the answer's Expiration is unreadable".into(), true)
            }
        })
    }
}

/// Whether `url` may be asked for credentials: https anywhere, plain http only on a loopback
/// address or the ECS/EKS agents' link-local ones (as the AWS SDKs allow).
pub fn allowed_full_uri(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let ok = match host.trim_start_matches('[').trim_end_matches(']').parse() {
                Ok(ip) => {
                    let agents: [std::net::IpAddr; 3] = [
                        [169, 254, 170, 2].into(),
                        [169, 254, 170, 23].into(),
                        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23].into(),
                    ];
                    std::net::IpAddr::is_loopback(&ip) || agents.contains(&ip)
                }
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if ok {
                Ok(())
            } else {
                Err("plain http is allowed only to a loopback address or the ECS/EKS agent".into())
            }
        }
        _ => Err("not an http(s) URL".into()),
    }
}
