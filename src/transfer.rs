//! Sends one file to a [`Target`]: a `multipart/form-data` POST or a PUT, streamed from disk; or
//! a byte range of a file as one part of a multipart upload ([`Storage::put_range`]).
//!
//! The storage client is its own `reqwest::Client` with no default headers, built here and
//! nowhere else: the API's `Authorization` header can never reach a storage URL. The multipart
//! body is built by hand (preamble bytes, file chunks, closing boundary) so that the fields go in
//! the order received, the `file` part comes last without a `Content-Type`, and the request has an
//! exact `Content-Length` (S3 refuses chunked POSTs).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};

use crate::bandwidth::Bandwidth;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::http::{Refusal, Timeouts, Tls};
use crate::limit::Limiter;
use crate::message::error_chain;
use crate::presign::Target;

/// The most one request may carry (S3's single-upload limit).
pub const MAX_OBJECT_SIZE: u64 = 5 << 30;

/// Bytes read from the file per chunk of the body.
const CHUNK: usize = 256 << 10;

/// Why a file did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Over [`MAX_OBJECT_SIZE`]: refused before sending anything.
    #[error("{size} bytes is over the 5 GiB single-upload limit")]
    TooLarge {
        /// The file's size.
        size: u64,
    },
    /// The file could not be opened.
    #[error("cannot open: {}", crate::message::plain_io_message(.0))]
    Open(#[source] std::io::Error),
    /// 403 from storage: most likely the URL expired; presign again.
    #[error("storage refused the upload: HTTP 403: {}", .0.message)]
    Forbidden(Refusal),
    /// A transient failure (connection, stall, 408, 429, 5xx).
    #[error("upload failed: {message}")]
    Transient {
        /// The HTTP status, if an answer came.
        status: Option<u16>,
        /// What the server asked us to wait.
        retry_after: Option<Duration>,
        /// What happened.
        message: String,
    },
    /// Any other refusal (400 and such).
    #[error("storage refused the upload: HTTP {}: {}", .0.status, .0.message)]
    Refused(Refusal),
}

impl TransferError {
    /// The HTTP status storage answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            TransferError::TooLarge { .. } | TransferError::Open(_) => None,
            TransferError::Forbidden(refusal) | TransferError::Refused(refusal) => {
                Some(refusal.status)
            }
            TransferError::Transient { status, .. } => *status,
        }
    }

    /// Whether the store said it is full: 429, 503 (SlowDown), 504, or no answer in time.
    pub fn is_push_back(&self) -> bool {
        match self {
            TransferError::Transient { status, .. } => crate::retry::pushes_back(*status),
            _ => false,
        }
    }

    /// The S3 error code of a refusal (`SignatureDoesNotMatch`, `BadDigest`, ...), if any.
    pub fn s3_code(&self) -> Option<&str> {
        self.refusal()?.code.as_deref()
    }

    /// What storage said when it refused the request (403 and other non-retryable answers).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            TransferError::Forbidden(refusal) | TransferError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// What a storage failure means to the request layer: a refusal of the credentials, the
/// bucket or the clock ([`crate::presign::s3::FATAL_CODES`]) dooms the run; any other 403 is
/// taken for an expired signature (signed again at once); 429, 503, 504 and no answer in time
/// are push-back; other connection failures, 408 and 5xx are transient; the rest fail the
/// object.
impl crate::request::Classify for TransferError {
    fn class(&self) -> crate::request::Class {
        use crate::request::Class;
        if self
            .s3_code()
            .is_some_and(|code| crate::presign::s3::FATAL_CODES.contains(&code))
        {
            return Class::Fatal;
        }
        match self {
            TransferError::Forbidden(_) => Class::Resign,
            TransferError::Transient { .. } if self.is_push_back() => Class::PushBack,
            TransferError::Transient { .. } => Class::Transient,
            TransferError::TooLarge { .. } | TransferError::Open(_) | TransferError::Refused(_) => {
                Class::Object
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            TransferError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn answered(&self) -> bool {
        self.status().is_some()
    }
}

/// What the store answered a file's upload with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The HTTP status.
    pub status: u16,
    /// The `ETag`, quotes kept (made printable), where the store gave one.
    pub etag: Option<String>,
    /// The store's `Date`, where it gave one that parses: the store's own clock, which its
    /// listings' last-modified times are told in.
    pub date: Option<std::time::SystemTime>,
}

impl Sent {
    fn of(response: &reqwest::Response) -> Sent {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(crate::message::server_text)
        };
        Sent {
            status: response.status().as_u16(),
            etag: header(reqwest::header::ETAG).filter(|e| !e.is_empty()),
            date: header(reqwest::header::DATE).and_then(|d| httpdate::parse_http_date(&d).ok()),
        }
    }
}

/// The storage side's HTTP client.
#[derive(Clone)]
pub struct Storage {
    client: reqwest::Client,
    timeouts: Timeouts,
    /// File bytes handed to the connection so far (retries included), for progress.
    sent: Arc<AtomicU64>,
    /// Told of every answer that says the store is full (a whole file's or a part's).
    limiter: Option<Arc<Limiter>>,
    /// `--bwlimit`: the cap every body's bytes share.
    cap: Option<Arc<Bandwidth>>,
}

impl Storage {
    /// A client with the given timeouts, the system's trusted roots and no default headers.
    pub fn new(timeouts: Timeouts) -> reqwest::Result<Self> {
        Storage::with_tls(timeouts, &Tls::default())
    }

    /// A client with the given timeouts and TLS settings, and no default headers.
    pub fn with_tls(timeouts: Timeouts, tls: &Tls) -> reqwest::Result<Self> {
        Ok(Storage {
            client: crate::http::streaming_client(timeouts, tls)?,
            timeouts,
            sent: Arc::default(),
            limiter: None,
            cap: None,
        })
    }

    /// The same client, counting the file bytes it sends into `sent`.
    pub fn counting_sent(self, sent: Arc<AtomicU64>) -> Self {
        Storage { sent, ..self }
    }

    /// The same client, telling `limiter` when the store pushes back (429, 503, 504, no answer
    /// in time): for a part of a big file as for a whole small one, which the part engine's
    /// own retries would otherwise hide from the run's limit.
    pub fn telling(self, limiter: Arc<Limiter>) -> Self {
        Storage {
            limiter: Some(limiter),
            ..self
        }
    }

    /// The same client, its bodies' bytes held to `cap` (shared with every clone of it).
    pub fn capped(self, cap: Arc<Bandwidth>) -> Self {
        Storage {
            cap: Some(cap),
            ..self
        }
    }

    /// The cap on its bodies' bytes, if any.
    pub fn cap(&self) -> Option<&Arc<Bandwidth>> {
        self.cap.as_ref()
    }

    /// Sends the first `size` bytes of `path` as object `name`; the storage's success status.
    pub async fn send(
        &self,
        target: &Target,
        path: &Path,
        name: &str,
        size: u64,
    ) -> Result<Sent, TransferError> {
        if size > MAX_OBJECT_SIZE {
            return Err(TransferError::TooLarge { size });
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(TransferError::Open)?;
        self.send_file(target, file, name, size).await
    }

    /// [`Storage::send`] of a file opened already, from its current position.
    pub async fn send_file(
        &self,
        target: &Target,
        file: tokio::fs::File,
        name: &str,
        size: u64,
    ) -> Result<Sent, TransferError> {
        if size > MAX_OBJECT_SIZE {
            return Err(TransferError::TooLarge { size });
        }
        let progress = Arc::new(Progress::new());
        let request = match target {
            Target::Put { url, headers } => self.put(url, headers, file, size, &progress),
            Target::Post { url, fields } => {
                let form = Form::new(fields, name);
                let body = stream::once(async { Ok(Bytes::from(form.head)) })
                    .chain(self.file_chunks(file, size, &progress))
                    .chain(stream::once(async { Ok(Bytes::from(form.tail)) }));
                self.client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, form.content_type)
                    .header(reqwest::header::CONTENT_LENGTH, form.overhead + size)
                    .body(reqwest::Body::wrap_stream(body))
            }
        };
        let response = self.success(request, size, &progress).await?;
        Ok(Sent::of(&response))
    }

    /// A PUT of the next `len` bytes of `file` to `url` with `headers`, streamed, with an
    /// exact `Content-Length`; the body reports its progress to `progress`.
    fn put(
        &self,
        url: &str,
        headers: &[(String, String)],
        file: tokio::fs::File,
        len: u64,
        progress: &Arc<Progress>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(
                self.file_chunks(file, len, progress),
            ));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
    }

    /// PUTs bytes `offset..offset + len` of `path` to `url` with `headers` (a part of a
    /// multipart upload), streamed from the file; the answer's headers (the part's `ETag`).
    pub async fn put_range(
        &self,
        url: &str,
        headers: &[(String, String)],
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<reqwest::header::HeaderMap, TransferError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(TransferError::Open)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(TransferError::Open)?;
        let progress = Arc::new(Progress::new());
        let request = self.put(url, headers, file, len, &progress);
        let response = self.success(request, len, &progress).await?;
        Ok(response.headers().clone())
    }

    /// Sends `request` as [`Storage::watched`] does: a success answer, or why there is none
    /// (the limiter told if the store pushed back).
    async fn success(
        &self,
        request: reqwest::RequestBuilder,
        size: u64,
        progress: &Progress,
    ) -> Result<reqwest::Response, TransferError> {
        let answer = match self.watched(request, size, progress).await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(refused(response).await),
            Err(err) => Err(err),
        };
        if let (Err(err), Some(limiter)) = (&answer, &self.limiter)
            && err.is_push_back()
        {
            limiter.pushed_back();
        }
        answer
    }

    /// Sends a request whose body moves `size` bytes, within its deadline, failing it when
    /// nothing has moved for the stall timeout.
    async fn watched(
        &self,
        request: reqwest::RequestBuilder,
        size: u64,
        progress: &Progress,
    ) -> Result<reqwest::Response, TransferError> {
        let stall = self.timeouts.stall;
        let deadline = self.timeouts.deadline(size);
        // Under a cap the deadline runs only while the body is not waiting for its turn: the
        // wait is ours, not the server's.
        let request = match self.cap {
            None => request.timeout(deadline),
            Some(_) => request,
        };
        tokio::select! {
            response = request.send() => response.map_err(not_sent),
            () = progress.overdue(deadline), if self.cap.is_some() => Err(TransferError::Transient {
                status: None,
                retry_after: None,
                message: format!(
                    "timed out: not done within {} s (not counting waits for --bwlimit)",
                    deadline.as_secs()
                ),
            }),
            () = progress.stalled(stall) => Err(TransferError::Transient {
                status: None,
                retry_after: None,
                message: format!("stalled: nothing moved for {} s", stall.as_secs()),
            }),
        }
    }
}

/// A request that got no answer: transient. The message leaves the URL out: its query holds
/// the signature and any session token.
pub(crate) fn not_sent(err: reqwest::Error) -> TransferError {
    TransferError::Transient {
        status: None,
        retry_after: None,
        message: error_chain(&err.without_url()),
    }
}

/// A request signed by [`crate::presign::s3::DirectS3`] that carries no file (multipart's
/// calls, listings, deletions, HEADs): its method, URL and signed headers, with the deadline of
/// `bytes` moved ([`Timeouts::deadline`]).
pub(crate) fn signed_request(
    client: &reqwest::Client,
    timeouts: Timeouts,
    signed: &crate::presign::s3::Signed,
    bytes: u64,
) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(signed.method.as_bytes())
        .expect("a signed request's method is a valid one");
    let mut request = client
        .request(method, &signed.url)
        .timeout(timeouts.deadline(bytes));
    for (name, value) in &signed.headers {
        request = request.header(name, value);
    }
    request
}

/// Sends `request`; the body of a success answer as text, read to `limit` bytes (a longer one
/// is refused: the server is not answering this request).
pub(crate) async fn small_answer(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<String, TransferError> {
    let response = request.send().await.map_err(not_sent)?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    match crate::http::read_capped(response, limit).await {
        Ok(Some(body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok(None) => Err(TransferError::Refused(Refusal {
            status,
            code: None,
            message: format!("an answer over {limit} bytes"),
        })),
        Err(err) => Err(not_sent(err)),
    }
}

/// What an error answer means: a 403 (sign again), transient (408, 429, 5xx, with the
/// server's `Retry-After`), or refused.
pub(crate) async fn refused(response: reqwest::Response) -> TransferError {
    let status = response.status().as_u16();
    let retry_after = crate::retry::retry_after_of(response.headers());
    let refusal = Refusal::of(status, &crate::http::error_body(response).await);
    match status {
        403 => TransferError::Forbidden(refusal),
        s if crate::retry::retryable_status(s) => TransferError::Transient {
            status: Some(s),
            retry_after,
            message: format!("HTTP {s}: {}", refusal.message),
        },
        _ => TransferError::Refused(refusal),
    }
}

/// When a request last made progress: the connection took a chunk of its body (it asks for the
/// next only once the last is written), or the request started. Bytes in the kernel's send
/// buffer (up to `tcp_wmem`'s 4 MiB on Linux) count as moved: after the last chunk, the answer
/// must come within the stall timeout, which those bytes need only on links slower than
/// 4 MiB per stall timeout (70 KB/s at the default 60 s).
struct Progress {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
    /// Milliseconds the body spent waiting for the bandwidth cap.
    waited: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// Waits `wait` for the bandwidth cap, counted as progress (the stall is ours) and kept
    /// out of the deadline.
    async fn wait_for_cap(&self, wait: Duration) {
        let until = Instant::now() + wait;
        // In steps, so that a long wait never looks like a stall, nor runs into the deadline.
        loop {
            self.touch();
            let step = until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            if step.is_zero() {
                break;
            }
            // Counted before the sleep: the deadline's watch may look during it.
            self.waited
                .fetch_add(step.as_millis() as u64 + 1, Ordering::Relaxed);
            tokio::time::sleep(step).await;
        }
    }

    /// Resolves once the request has run `deadline` beyond its waits for the cap.
    async fn overdue(&self, deadline: Duration) {
        loop {
            let waited = Duration::from_millis(self.waited.load(Ordering::Relaxed));
            let ran = self.started.elapsed().saturating_sub(waited);
            if ran >= deadline {
                return;
            }
            tokio::time::sleep(deadline - ran).await;
        }
    }

    /// Resolves once nothing has moved for `stall`: a body the peer stopped taking, or an
    /// answer that does not come after the body went. (reqwest's read timeout cannot watch an
    /// upload: nothing is read while the body goes up, so it fires on any body that takes
    /// longer than the stall timeout.)
    async fn stalled(&self, stall: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let idle = self.started.elapsed().saturating_sub(last);
            if idle >= stall {
                return;
            }
            tokio::time::sleep(stall - idle).await;
        }
    }
}

impl Storage {
    /// Exactly `size` bytes of `file`, in chunks, each waiting for its turn under the cap; an
    /// error if the file ends early.
    fn file_chunks(
        &self,
        file: tokio::fs::File,
        size: u64,
        progress: &Arc<Progress>,
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let sent = self.sent.clone();
        let progress = progress.clone();
        let cap = self.cap.clone();
        stream::try_unfold((file, size), move |(mut file, left)| {
            let sent = sent.clone();
            let progress = progress.clone();
            let cap = cap.clone();
            async move {
                progress.touch();
                if left == 0 {
                    return Ok(None);
                }
                let want = left.min(CHUNK as u64) as usize;
                if let Some(cap) = &cap {
                    let wait = cap.reserve(want as u64);
                    if !wait.is_zero() {
                        progress.wait_for_cap(wait).await;
                    }
                }
                let mut buf = vec![0u8; want];
                let mut got = 0;
                while got < want {
                    let n = file.read(&mut buf[got..]).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "file shrank while uploading",
                        ));
                    }
                    got += n;
                }
                sent.fetch_add(want as u64, Ordering::Relaxed);
                Ok(Some((Bytes::from(buf), (file, left - want as u64))))
            }
        })
    }
}

/// The fixed parts of a multipart body around the file's bytes.
struct Form {
    content_type: String,
    head: Vec<u8>,
    tail: Vec<u8>,
    overhead: u64,
}

impl Form {
    fn new(fields: &[(String, String)], filename: &str) -> Form {
        let boundary = format!("hashup-{}", hex::encode(rand::random::<[u8; 16]>()));
        let mut head = Vec::new();
        for (name, value) in fields {
            head.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                    quote(name)
                )
                .as_bytes(),
            );
        }
        head.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\r\n",
                quote(filename)
            )
            .as_bytes(),
        );
        let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
        Form {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            overhead: (head.len() + tail.len()) as u64,
            head,
            tail,
        }
    }
}

/// A name inside a quoted `Content-Disposition` parameter, escaped as browsers do (WHATWG).
fn quote(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_puts_fields_in_order_and_the_file_last() {
        let fields = vec![
            ("key".to_string(), "uploads/a".to_string()),
            ("policy".to_string(), "cG9s".to_string()),
        ];
        let form = Form::new(&fields, "dir/a \"b\".sif");
        let head = String::from_utf8(form.head.clone()).unwrap();
        let boundary = form.content_type.split("boundary=").nth(1).unwrap();
        assert_eq!(
            head,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/a\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\ncG9s\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dir/a %22b%22.sif\"\r\n\r\n"
            )
        );
        assert_eq!(form.tail, format!("\r\n--{boundary}--\r\n").into_bytes());
        assert_eq!(form.overhead, (form.head.len() + form.tail.len()) as u64);
    }

    /// What each storage failure means to the request layer.
    #[test]
    fn storage_failures_are_classified_once() {
        use crate::request::{Class, Classify as _};
        let refusal = |status: u16, code: &str| Refusal {
            status,
            code: Some(code.into()),
            message: code.into(),
        };
        let transient = |status: Option<u16>| TransferError::Transient {
            status,
            retry_after: Some(Duration::from_secs(3)),
            message: "m".into(),
        };
        for (err, class, answered) in [
            (
                TransferError::Forbidden(refusal(403, "SignatureDoesNotMatch")),
                Class::Fatal,
                true,
            ),
            (
                TransferError::Refused(refusal(404, "NoSuchBucket")),
                Class::Fatal,
                true,
            ),
            (
                TransferError::Forbidden(refusal(403, "AccessDenied")),
                Class::Resign,
                true,
            ),
            (
                TransferError::Refused(refusal(400, "BadDigest")),
                Class::Object,
                true,
            ),
            (TransferError::TooLarge { size: 1 }, Class::Object, false),
            (transient(Some(503)), Class::PushBack, true),
            (transient(Some(429)), Class::PushBack, true),
            (transient(None), Class::PushBack, false),
            (transient(Some(500)), Class::Transient, true),
            (transient(Some(408)), Class::Transient, true),
        ] {
            assert_eq!(err.class(), class, "{err}");
            assert_eq!(err.answered(), answered, "{err}");
        }
        assert_eq!(
            transient(Some(503)).retry_after(),
            Some(Duration::from_secs(3))
        );
    }

    #[tokio::test]
    async fn over_five_gib_fails_before_anything_is_opened_or_sent() {
        let storage = Storage::new(Timeouts {
            connect: Duration::from_secs(1),
            stall: Duration::from_secs(1),
        })
        .unwrap();
        // Nothing listens at the URL and the file does not exist: only the size is looked at.
        let target = Target::Put {
            url: "http://127.0.0.1:9/b/k".into(),
            headers: vec![],
        };
        let err = storage
            .send(&target, Path::new("/nonexistent"), "k", MAX_OBJECT_SIZE + 1)
            .await
            .unwrap_err();
        assert!(matches!(err, TransferError::TooLarge { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "5368709121 bytes is over the 5 GiB single-upload limit"
        );
    }
}
