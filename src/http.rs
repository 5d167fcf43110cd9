//! The HTTP layer under every client in hashup: how a `reqwest::Client` is built (timeouts, TLS
//! roots, no redirects), how much of an answer is read, and what a refused request said
//! ([`Refusal`]). The S3 XML documents themselves are [`crate::s3xml`]'s, shared with `serve`.
//!
//! Both the API client ([`crate::presign::prominence`]) and the storage client
//! ([`crate::transfer`]) build their clients here, each its own: the API's `Authorization`
//! header is added per request by the API client alone, so it can never reach a storage URL.

use std::path::Path;
use std::time::Duration;

use crate::s3xml::S3ErrorBody;

/// Timeouts for one HTTP client: how long to connect, how long without a byte moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// No bytes read for this long fails the request (there is no total timeout: a large
    /// file may take as long as it takes).
    pub stall: Duration,
}

/// The slowest a request's bytes may move on average before its deadline passes: far below
/// any real link (a 1 Mbit/s line moves 122 KiB/s), far above a server trickling a byte a
/// second to hold a request open forever.
pub const MIN_RATE_BYTES_PER_SEC: u64 = 64 << 10;

impl Timeouts {
    /// The longest a whole request moving `bytes` (sent and received) may take: the connect
    /// and stall allowances plus its bytes at [`MIN_RATE_BYTES_PER_SEC`]. The stall timeout
    /// alone is defeated by a server that sends one byte just before it runs out.
    pub fn deadline(&self, bytes: u64) -> Duration {
        self.connect + self.stall + Duration::from_secs(bytes / MIN_RATE_BYTES_PER_SEC)
    }
}

/// TLS settings shared by the API and storage clients (rustls, with the system's roots).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Extra trusted roots (`--cacert`), added to the system's.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Skip certificate verification (`PROMINENCE_SSL_VERIFY=False`; API only, as in the
    /// reference CLI).
    pub insecure: bool,
}

impl Tls {
    /// Reads a PEM file of one or more CA certificates.
    pub fn read_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read {}: {}",
                path.display(),
                crate::message::plain_io_message(&e)
            )
        })?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        Ok(roots)
    }
}

/// A client for requests with small bodies (the API's): these timeouts and TLS settings, no
/// default headers, and no redirects (a redirect could carry a token elsewhere or turn a POST
/// into a GET, and a presigned URL is signed for one host). The stall timeout is reqwest's read
/// timeout, which runs while a request waits for its answer.
pub fn client(timeouts: Timeouts, tls: &Tls) -> reqwest::Result<reqwest::Client> {
    builder(timeouts, tls).read_timeout(timeouts.stall).build()
}

/// A client for requests that upload large bodies: as [`client`], but without the read
/// timeout, which would fire while a body that takes longer than the stall timeout is still
/// going up (nothing is read until it is all sent). Its caller watches the body's progress
/// instead (see [`crate::transfer`]).
pub fn streaming_client(timeouts: Timeouts, tls: &Tls) -> reqwest::Result<reqwest::Client> {
    builder(timeouts, tls).build()
}

fn builder(timeouts: Timeouts, tls: &Tls) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_merge(tls.extra_roots.iter().cloned())
        .tls_danger_accept_invalid_certs(tls.insecure)
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
}

/// The most of an error answer's body that is read: a real S3 or API error is a few hundred
/// bytes; a hostile server's 300 MB "error" must not become 300 MB of memory.
pub const ERROR_BODY_LIMIT: usize = 64 << 10;

/// Reads at most `limit` bytes of a body; `Ok(None)` when it is longer (the rest is not read).
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The start of an error answer's body as text: at most [`ERROR_BODY_LIMIT`] bytes; a body
/// that cannot be read counts as empty (the status says enough).
pub async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == ERROR_BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// What storage said when it refused a request: the status, the S3 `<Code>` if the answer had
/// one, and a one-line message for people (`Code: Message`, else the start of the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The S3 error `<Code>`, if the answer had one.
    pub code: Option<String>,
    /// `Code: Message` of an S3 error, else the start of the answer.
    pub message: String,
}

impl Refusal {
    /// The refusal an error answer's status and body make. The server's words are data:
    /// cleaned and cut by [`crate::message::server_text`] before anyone prints or records them.
    pub fn of(status: u16, text: &str) -> Refusal {
        use crate::message::server_text;
        match S3ErrorBody::parse(text) {
            Some(S3ErrorBody { code, message }) => {
                let code = code.map(|code| server_text(&code));
                Refusal {
                    status,
                    message: server_text(&match (&code, message) {
                        (Some(code), Some(message)) => format!("{code}: {message}"),
                        (Some(code), None) => code.clone(),
                        (None, Some(message)) => message,
                        (None, None) => String::new(),
                    }),
                    code,
                }
            }
            None => Refusal {
                status,
                code: None,
                message: server_text(&text.chars().take(120).collect::<String>()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_grow_with_the_bytes() {
        let t = Timeouts {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(60),
        };
        assert_eq!(t.deadline(0), Duration::from_secs(70));
        assert_eq!(t.deadline(5 << 30), Duration::from_secs(70 + 81_920));
    }

    #[test]
    fn s3_error_answers() {
        let r = Refusal::of(
            403,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message><Resource>/b/k</Resource></Error>",
        );
        assert_eq!(r.code.as_deref(), Some("AccessDenied"));
        assert_eq!(r.message, "AccessDenied: Request has expired");
        let r = Refusal::of(400, "<Error><Code>BadDigest</Code></Error>");
        assert_eq!(
            (r.code.as_deref(), r.message.as_str()),
            (Some("BadDigest"), "BadDigest")
        );
    }

    #[test]
    fn other_answers_give_their_start() {
        assert_eq!(Refusal::of(502, "plain\ntext").message, "plain text");
        assert_eq!(Refusal::of(502, "plain\ntext").code, None);
        let html = "<html><body>bad gateway</body></html>";
        assert_eq!(Refusal::of(502, html).message, html);
        assert_eq!(Refusal::of(500, "").message, "");
    }
}
