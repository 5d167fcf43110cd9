//! The PROMINENCE data API as a [`Presigner`]: `POST {url}/data/upload` with a bearer token and
//! `{"filename", "checksum"}`, answered by `201 {"url", "fields"?}` (`docs/prominence-api.md`);
//! and its listing (`GET /data[/<group>]`) and `DELETE /data/<name>`.
//!
//! Also where the token comes from (`--token-file`, `$PROMINENCE_TOKEN`, `~/.prominence/token`,
//! as the reference CLI reads it) and the check that a JWT has not expired before any work starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{PresignError, Presigner, Target};
use crate::http::{Timeouts, Tls};

/// Why no usable token was found.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No token anywhere.
    #[error(
        "no access token: use --token-file, set PROMINENCE_TOKEN, or write ~/.prominence/token"
    )]
    Missing,
    /// The token is empty or not usable in a header.
    #[error("the access token from {0} is empty or malformed")]
    Malformed(String),
    /// A JWT whose `exp` has passed.
    #[error("access token has expired (exp {exp}, {ago} s ago); get a new token")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// Seconds since then.
        ago: u64,
    },
}

/// Finds the token: `file` if given, else `$PROMINENCE_TOKEN`, else `$HOME/.prominence/token`
/// (`env` looks a variable up). A file holds JSON with `access_token` or the raw token.
pub fn load_token(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, TokenError> {
    let (text, from) = if let Some(path) = file {
        (read_token_file(path)?, path.display().to_string())
    } else if let Some(token) = env("PROMINENCE_TOKEN").filter(|t| !t.is_empty()) {
        (token, "PROMINENCE_TOKEN".to_string())
    } else {
        let home = env("HOME").ok_or(TokenError::Missing)?;
        let path = Path::new(&home).join(".prominence/token");
        match std::fs::read_to_string(&path) {
            Ok(text) => (text, path.display().to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(TokenError::Missing);
            }
            Err(source) => return Err(TokenError::Read { path, source }),
        }
    };
    let token = token_of(&text);
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Malformed(from));
    }
    Ok(token)
}

fn read_token_file(path: &Path) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The token in a token file's text: the `access_token` of a JSON object, else the trimmed text.
fn token_of(text: &str) -> String {
    #[derive(Deserialize)]
    struct TokenFile {
        access_token: String,
    }
    match serde_json::from_str::<TokenFile>(text) {
        Ok(file) => file.access_token.trim().to_string(),
        Err(_) => text.trim().to_string(),
    }
}

/// Refuses a JWT whose `exp` is at or before `now` (other tokens pass: only the server can judge
/// them).
pub fn check_expiry(token: &str, now: SystemTime) -> Result<(), TokenError> {
    let Some(exp) = crate::jwt::exp(token) else {
        return Ok(());
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if exp <= now {
        return Err(TokenError::Expired {
            exp: exp as u64,
            ago: (now - exp) as u64,
        });
    }
    Ok(())
}

/// The most of a presign answer read: `{"url", "fields"}` is well under a kilobyte.
const ANSWER_LIMIT: usize = 1 << 20;

/// The most of a listing read: 64 MiB is several hundred thousand objects.
const LISTING_LIMIT: usize = 64 << 20;

/// A client of one PROMINENCE server.
pub struct Prominence {
    client: reqwest::Client,
    /// `PROMINENCE_URL` without a trailing `/`.
    base: String,
    upload_url: String,
    authorization: String,
    /// The most a presign request may take, answer included ([`Timeouts::deadline`]).
    presign_deadline: Duration,
    /// The same for a listing, which may be a few MiB.
    listing_deadline: Duration,
}

/// One object of a `GET /data` listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Listed {
    /// The object name as uploads name it (`a.sif`, or `group/a.sif` in a group listing).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// `lastModified`: PROMINENCE (Flask) writes an HTTP date; anything else is kept as
    /// nothing.
    #[serde(rename = "lastModified", default, deserialize_with = "lenient_text")]
    pub last_modified: Option<String>,
    /// `sha256`, an extension `hashup serve` adds: the digest its store computed of the bytes.
    /// Kept only when it is 64 hex digits (lowercased).
    #[serde(default, deserialize_with = "lenient_sha256")]
    pub sha256: Option<String>,
}

impl Listed {
    /// When the object was last written, where `lastModified` says it in a form known here (an
    /// HTTP date, or ISO 8601 UTC).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        let text = self.last_modified.as_deref()?;
        httpdate::parse_http_date(text)
            .ok()
            .or_else(|| crate::utc::parse_iso8601(text))
    }
}

/// A string field, or `None` for any other JSON value (a server's odd answer costs the field,
/// not the listing).
fn lenient_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(text) => Some(text),
        _ => None,
    })
}

/// A SHA-256 as 64 hex digits (lowercased), or `None`.
fn lenient_sha256<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_text(d)?
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|hex| hex.to_ascii_lowercase()))
}

impl Prominence {
    /// A client for `url` (the `PROMINENCE_URL`, ending in `/prominence/v1`) sending `token`.
    pub fn new(url: &str, token: &str, timeouts: Timeouts) -> reqwest::Result<Self> {
        Prominence::with_tls(url, token, timeouts, &Tls::default())
    }

    /// [`Prominence::new`] with TLS settings.
    pub fn with_tls(
        url: &str,
        token: &str,
        timeouts: Timeouts,
        tls: &Tls,
    ) -> reqwest::Result<Self> {
        let client = crate::http::client(timeouts, tls)?;
        let base = url.trim_end_matches('/').to_string();
        Ok(Prominence {
            client,
            upload_url: format!("{base}/data/upload"),
            base,
            // A presign answer is well under 64 KiB; a listing of 8 MiB (some 60,000 objects)
            // still fits at the slowest rate.
            presign_deadline: timeouts.deadline(64 << 10),
            listing_deadline: timeouts.deadline(8 << 20),
            authorization: format!("Bearer {token}"),
        })
    }

    /// `GET /data` (the user's own uploads) or `GET /data/<group>` (a group's), once (the
    /// remote retries it: [`crate::remote::api`]).
    pub async fn list(&self, group: Option<&str>) -> Result<Vec<Listed>, PresignError> {
        let url = match group {
            None => format!("{}/data", self.base),
            Some(group) => format!("{}/data/{}", self.base, crate::sign::uri_encode_path(group)),
        };
        let request = self.client.get(&url).timeout(self.listing_deadline);
        let (status, retry_after, text) = self.call(request, LISTING_LIMIT).await?;
        match status {
            200 => serde_json::from_str(&text).map_err(|err| PresignError::BadAnswer {
                status,
                // serde quotes what it did not expect: server text.
                message: crate::message::server_text(&format!("not a listing: {err}")),
            }),
            s => Err(classify(s, retry_after, &text)),
        }
    }

    /// `DELETE /data/<name>` (`upload --delete`): PROMINENCE answers `204` whether or not the
    /// object existed, and `403` for a group path outside the user's groups.
    pub async fn delete(&self, name: &str) -> Result<(), PresignError> {
        let url = format!("{}/data/{}", self.base, crate::sign::uri_encode_path(name));
        let request = self.client.delete(&url).timeout(self.presign_deadline);
        let (status, retry_after, text) = self.call(request, ANSWER_LIMIT).await?;
        match status {
            200..=299 => Ok(()),
            s => Err(classify(s, retry_after, &text)),
        }
    }

    /// Sends an API request with the token (to the API host only): the answer's status,
    /// `Retry-After` and body. A connection failure is transient.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<(u16, Option<Duration>, String), PresignError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|err| PresignError::Transient {
                status: None,
                retry_after: None,
                message: crate::message::error_chain(&err),
            })?;
        read_answer(response, limit).await
    }

    async fn request(&self, name: &str, sha256: &str) -> Result<Target, PresignError> {
        let body = serde_json::json!({"filename": name, "checksum": sha256});
        let (status, retry_after, text) = self
            .call(
                self.client
                    .post(&self.upload_url)
                    .json(&body)
                    .timeout(self.presign_deadline),
                ANSWER_LIMIT,
            )
            .await?;
        match status {
            200 | 201 => {
                parse_answer(&text).map_err(|message| PresignError::BadAnswer { status, message })
            }
            s => Err(classify(s, retry_after, &text)),
        }
    }
}

/// An answer's status, `Retry-After` and body.
/// A success answer is read up to `limit` bytes (longer is a bad answer, not a reason to use
/// unbounded memory); an error answer up to [`crate::http::ERROR_BODY_LIMIT`].
async fn read_answer(
    response: reqwest::Response,
    limit: usize,
) -> Result<(u16, Option<Duration>, String), PresignError> {
    let status = response.status().as_u16();
    let retry_after = crate::retry::retry_after_of(response.headers());
    if !response.status().is_success() {
        return Ok((status, retry_after, crate::http::error_body(response).await));
    }
    let body = crate::http::read_capped(response, limit)
        .await
        .map_err(|err| PresignError::Transient {
            status: Some(status),
            retry_after,
            message: crate::message::error_chain(&err),
        })?
        .ok_or(PresignError::BadAnswer {
            status,
            message: format!("an answer over {limit} bytes"),
        })?;
    Ok((
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// What an error status from the API means: 401 dooms the run, 408/429/5xx are worth retrying,
/// the rest refuse this request.
fn classify(status: u16, retry_after: Option<Duration>, text: &str) -> PresignError {
    match status {
        401 => PresignError::Fatal {
            status: Some(401),
            message: format!(
                "the PROMINENCE API refused the token (HTTP 401: {})",
                error_message(text)
            ),
        },
        s if crate::retry::retryable_status(s) => PresignError::Transient {
            status: Some(s),
            retry_after,
            message: format!("HTTP {s}: {}", error_message(text)),
        },
        s => PresignError::Refused {
            status: s,
            message: error_message(text),
        },
    }
}

impl Presigner for Prominence {
    fn presign<'a>(
        &'a self,
        name: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Target, PresignError>> {
        Box::pin(self.request(name, sha256))
    }
}

/// The `error` of a JSON error body, else the `<title>` of an HTML page (what Flask and
/// Werkzeug answer when the server crashes or refuses a body: "500 Internal Server Error"), else
/// the body's start.
fn error_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    use crate::message::server_text;
    if let Ok(body) = serde_json::from_str::<ErrorBody>(text) {
        return server_text(&body.error);
    }
    let title = text
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|title| !title.is_empty() && title.len() <= 120);
    if let Some(title) = title {
        return server_text(&title);
    }
    let flat = server_text(&text.chars().take(120).collect::<String>());
    if flat.is_empty() {
        "(empty body)".into()
    } else {
        flat
    }
}

/// Parses `{"url": U, "fields": {...}}` (a POST, fields kept in order) or `{"url": U}` (a PUT).
pub fn parse_answer(text: &str) -> Result<Target, String> {
    #[derive(Deserialize)]
    struct Answer {
        url: Option<String>,
        fields: Option<OrderedFields>,
    }
    let answer: Answer = serde_json::from_str(text)
        .map_err(|e| crate::message::server_text(&format!("not the expected JSON ({e})")))?;
    let url = answer
        .url
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or("no http(s) `url` in the answer")?;
    Ok(match answer.fields {
        Some(OrderedFields(fields)) => Target::Post { url, fields },
        None => {
            let mut headers = Vec::new();
            if is_azure_blob(&url) {
                headers.push(("x-ms-blob-type".to_string(), "BlockBlob".to_string()));
            }
            Target::Put { url, headers }
        }
    })
}

/// Whether `url` points at Azure Blob Storage (`*.blob.core.windows.net`).
fn is_azure_blob(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.ends_with(".blob.core.windows.net")))
        .unwrap_or(false)
}

/// A JSON object of strings, in document order (serde_json's map would sort it).
struct OrderedFields(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order() {
        let t = parse_answer(
            r#"{"url": "http://s/b", "fields": {"key": "k", "AWSAccessKeyId": "A", "policy": "p", "signature": "s"}}"#,
        )
        .unwrap();
        let Target::Post { url, fields } = t else {
            panic!("not a POST")
        };
        assert_eq!(url, "http://s/b");
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["key", "AWSAccessKeyId", "policy", "signature"]);
    }

    #[test]
    fn put_answers_and_azure() {
        assert_eq!(
            parse_answer(r#"{"url": "https://s3.example/b/k?X-Amz-Signature=1"}"#).unwrap(),
            Target::Put {
                url: "https://s3.example/b/k?X-Amz-Signature=1".into(),
                headers: vec![]
            }
        );
        let Target::Put { headers, .. } =
            parse_answer(r#"{"url": "https://acct.blob.core.windows.net/c/k?sig=1"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(headers, [("x-ms-blob-type".into(), "BlockBlob".into())]);
    }

    #[test]
    fn bad_answers_are_refused() {
        for text in [
            "<html>oops</html>",
            "{}",
            r#"{"url": 3}"#,
            r#"{"url": "ftp://x"}"#,
            r#"{"url": "http://x", "fields": {"a": 1}}"#,
        ] {
            assert!(parse_answer(text).is_err(), "{text}");
        }
    }

    #[test]
    fn error_messages_from_json_html_and_text() {
        assert_eq!(
            error_message(r#"{"error": "Authentication failure"}"#),
            "Authentication failure"
        );
        assert_eq!(
            error_message(
                "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>"
            ),
            "500 Internal Server Error"
        );
        assert_eq!(error_message("bad\ngateway"), "bad gateway");
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn token_files_hold_json_or_raw_text() {
        assert_eq!(token_of("{\"access_token\": \"abc\"}\n"), "abc");
        assert_eq!(token_of("  raw.token.text \n"), "raw.token.text");
    }

    #[test]
    fn expired_jwts_are_refused() {
        use base64::Engine as _;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = |exp: u64| format!("{}.{}.sig", enc("{}"), enc(&format!("{{\"exp\":{exp}}}")));
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(check_expiry(&jwt(1_000_100), now).is_ok());
        assert!(matches!(
            check_expiry(&jwt(999_940), now),
            Err(TokenError::Expired { ago: 60, .. })
        ));
        assert!(check_expiry("plain-token", now).is_ok());
    }
}
