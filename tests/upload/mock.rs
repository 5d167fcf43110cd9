//! A small in-test PROMINENCE API plus storage, for faults a real server won't produce on demand
//! (a 503 with Retry-After on the next request, a 401, garbage JSON, a connection dropped without
//! an answer, a stalled answer) and for looking at exactly what reached storage. Real behaviour
//! is tested against `hashup serve` and SeaweedFS instead.
//!
//! Answers are scripted per object name; unscripted requests get a POST target (or, in PUT mode,
//! a PUT URL) pointing at this server's `/storage/<name>`, and storage answers 204 (PUT: 200).
//! The listing (`GET /data`) and deletions (`DELETE /data/<name>`) answer as set for all of them
//! (default: an empty listing, 204). Every request that reaches the server is logged, method and
//! path, in the order it arrived ([`Mock::requests`]).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answers with the status, headers and body.
    Answer,
    /// Reads the request, then closes the socket without a byte of answer.
    Drop,
    /// Reads the request, then sends nothing, ever (until the mock stops).
    Stall,
    /// Sends the status line and headers, then never a byte of the body.
    StallBody,
    /// Sends the status line and headers, then a byte of body every 200 ms, forever.
    Trickle,
    /// Sends a body of this many bytes (`x`), counting what the client let it send in
    /// [`HUGE_SENT`].
    Huge(u64),
}

/// Bytes of every [`Kind::Huge`] body produced so far: what a client let the server send
/// before it stopped reading.
pub static HUGE_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub kind: Kind,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Waits this long before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            kind: Kind::Answer,
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// Closes the connection without answering.
    pub fn drop_connection() -> Answer {
        Answer {
            kind: Kind::Drop,
            ..Answer::new(200, "")
        }
    }

    /// Never answers.
    pub fn stall() -> Answer {
        Answer {
            kind: Kind::Stall,
            ..Answer::new(200, "")
        }
    }

    /// Answers `status` and its headers, then never sends the body.
    pub fn stall_body(status: u16) -> Answer {
        Answer {
            kind: Kind::StallBody,
            ..Answer::new(status, "")
        }
    }

    /// Answers `status`, then trickles its body a byte at a time, never ending it.
    pub fn trickle(status: u16) -> Answer {
        Answer {
            kind: Kind::Trickle,
            ..Answer::new(status, "")
        }
    }

    /// Answers `status` with a body of `bytes` bytes.
    pub fn huge(status: u16, bytes: u64) -> Answer {
        Answer {
            kind: Kind::Huge(bytes),
            ..Answer::new(status, "")
        }
    }

    /// The same answer, `delay` later.
    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The object name (API: the `filename` sent; storage: the path after `/storage/`).
    pub name: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived (its body read).
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    api_script: HashMap<String, VecDeque<Answer>>,
    storage_script: HashMap<String, VecDeque<Answer>>,
    api_seen: Vec<Seen>,
    storage_seen: Vec<Seen>,
    /// Every API request after the first `.0` gets `.1`, whatever its name.
    api_after: Option<(usize, Answer)>,
    put: bool,
    /// Default storage answers come this late.
    storage_delay: Duration,
    on_presign: HashMap<String, Box<dyn FnOnce() + Send>>,
    /// What every `GET /data` gets (`None`: 200 `[]`).
    listing: Option<Answer>,
    /// What every `DELETE /data/<name>` gets (`None`: 204).
    deletion: Option<Answer>,
    /// Every request, method and path, as it arrived.
    requests: Vec<(Method, String)>,
}

struct Shared {
    base: String,
    inner: Mutex<Inner>,
}

/// The running mock; stops when dropped.
pub struct Mock {
    /// `PROMINENCE_URL`.
    pub api: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    /// Starts on 127.0.0.1:0, on its own thread and runtime.
    pub fn start() -> Mock {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            base: base.clone(),
            inner: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/prominence/v1/data/upload", axum::routing::post(api))
            .route("/prominence/v1/data", axum::routing::get(list))
            .route("/prominence/v1/data/{*name}", axum::routing::delete(delete))
            .route("/storage/{*name}", axum::routing::any(storage))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), log))
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<Kill>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = KillListener(tokio::net::TcpListener::from_std(listener).unwrap());
                // No graceful shutdown: stalled connections never finish. Dropping the runtime
                // closes them all.
                tokio::select! {
                    served = axum::serve(listener, app).into_future() => served.unwrap(),
                    _ = stopped => {}
                }
            });
        });
        Mock {
            api: format!("{base}/prominence/v1"),
            base,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Delays every default storage answer (to keep uploads in flight for a while).
    pub fn storage_delay(&self, delay: Duration) {
        self.shared.inner.lock().unwrap().storage_delay = delay;
    }

    /// Answer presign requests with PUT URLs instead of POST forms.
    pub fn use_put(&self) {
        self.shared.inner.lock().unwrap().put = true;
    }

    /// Queues answers the API gives for `name`, in order, before the default ones.
    pub fn script_api(&self, name: &str, answers: Vec<Answer>) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner
            .api_script
            .entry(name.into())
            .or_default()
            .extend(answers);
    }

    /// Answers every API request after the first `n` (counting from now on, scripted or not) with
    /// `answer`, whatever the name: for a fault "mid-run" whichever file comes next.
    pub fn api_after(&self, n: usize, answer: Answer) {
        let mut inner = self.shared.inner.lock().unwrap();
        let n = n + inner.api_seen.len();
        inner.api_after = Some((n, answer));
    }

    /// The storage URL the default answers point at for `name`.
    pub fn storage_url(&self, name: &str) -> String {
        format!("{}/storage/{name}", self.base)
    }

    /// Queues answers storage gives for `name`.
    pub fn script_storage(&self, name: &str, answers: Vec<Answer>) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner
            .storage_script
            .entry(name.into())
            .or_default()
            .extend(answers);
    }

    /// Runs `hook` while answering the first presign request for `name` (to change the file
    /// between hashing and sending, at a known moment).
    pub fn on_presign(&self, name: &str, hook: impl FnOnce() + Send + 'static) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.on_presign.insert(name.into(), Box::new(hook));
    }

    /// Answers every `GET /data` (the user's own uploads) with `answer`.
    pub fn answer_listings(&self, answer: Answer) {
        self.shared.inner.lock().unwrap().listing = Some(answer);
    }

    /// Answers every `DELETE /data/<name>` with `answer`.
    pub fn answer_deletions(&self, answer: Answer) {
        self.shared.inner.lock().unwrap().deletion = Some(answer);
    }

    /// Every request that reached the server so far (API and storage), method and path, in the
    /// order they arrived.
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// How many requests with `method` on `path` reached the server.
    pub fn count(&self, method: Method, path: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .requests
            .iter()
            .filter(|(m, p)| *m == method && p == path)
            .count()
    }

    /// Presign requests (`POST /data/upload`) as they arrived.
    pub fn api_seen(&self) -> Vec<Seen> {
        self.shared.inner.lock().unwrap().api_seen.clone()
    }

    pub fn storage_seen(&self) -> Vec<Seen> {
        self.shared.inner.lock().unwrap().storage_seen.clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn respond(answer: Answer, kill: &Kill) -> Response {
    tokio::time::sleep(answer.delay).await;
    let body = match answer.kind {
        Kind::Answer => Body::from(answer.body),
        Kind::Drop => {
            // The response built below is never written: the connection fails its first write.
            kill.0.store(true, Ordering::SeqCst);
            Body::empty()
        }
        Kind::Stall => std::future::pending().await,
        Kind::StallBody => {
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>())
        }
        Kind::Trickle => Body::from_stream(futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
        })),
        Kind::Huge(bytes) => {
            const CHUNK: u64 = 64 << 10;
            let chunks = futures_util::stream::iter((0..bytes.div_ceil(CHUNK)).map(move |i| {
                let len = CHUNK.min(bytes - i * CHUNK);
                HUGE_SENT.fetch_add(len, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; len as usize]))
            }));
            Body::from_stream(chunks)
        }
    };
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Logs every request as it arrives, before it is routed.
async fn log(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let seen = (request.method().clone(), request.uri().path().to_string());
    shared.inner.lock().unwrap().requests.push(seen);
    next.run(request).await
}

async fn list(State(shared): State<Arc<Shared>>, ConnectInfo(kill): ConnectInfo<Kill>) -> Response {
    let answer = shared.inner.lock().unwrap().listing.clone();
    let answer =
        answer.unwrap_or_else(|| Answer::new(200, "[]").header("content-type", "application/json"));
    respond(answer, &kill).await
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
) -> Response {
    let answer = shared.inner.lock().unwrap().deletion.clone();
    respond(answer.unwrap_or_else(|| Answer::new(204, "")), &kill).await
}

async fn api(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = api_answer(&shared, headers, body);
    respond(answer, &kill).await
}

fn api_answer(shared: &Shared, headers: HeaderMap, body: Bytes) -> Answer {
    let name = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["filename"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap();
    inner.api_seen.push(Seen {
        method: Method::POST,
        name: name.clone(),
        headers,
        body,
        at: std::time::Instant::now(),
    });
    if let Some(hook) = inner.on_presign.remove(&name) {
        hook();
    }
    let after = match &inner.api_after {
        Some((n, answer)) if inner.api_seen.len() > *n => Some(answer.clone()),
        _ => None,
    };
    if let Some(answer) = after.or_else(|| {
        inner
            .api_script
            .get_mut(&name)
            .and_then(VecDeque::pop_front)
    }) {
        return answer;
    }
    let url = format!("{}/storage/{name}", shared.base);
    let body = if inner.put {
        serde_json::json!({ "url": format!("{url}?sig=1") }).to_string()
    } else {
        // Written by hand to fix the field order.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        format!(
            r#"{{"url": {}, "fields": {{"key": {}, "AWSAccessKeyId": "AK", "policy": "cG9saWN5", "signature": "c2ln"}}}}"#,
            q(&url),
            q(&format!("uploads/{name}"))
        )
    };
    Answer::new(201, &body).header("content-type", "application/json")
}

async fn storage(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = storage_answer(&shared, method, name, headers, body);
    respond(answer, &kill).await
}

fn storage_answer(
    shared: &Shared,
    method: Method,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut inner = shared.inner.lock().unwrap();
    let put = method == Method::PUT;
    inner.storage_seen.push(Seen {
        method,
        name: name.clone(),
        headers,
        body,
        at: std::time::Instant::now(),
    });
    inner
        .storage_script
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
        .unwrap_or_else(|| Answer::new(if put { 200 } else { 204 }, "").after(inner.storage_delay))
}

/// A connection's switch: once set, every write fails, so the server drops the connection
/// without sending a byte of the answer it was about to write.
#[derive(Clone)]
struct Kill(Arc<AtomicBool>);

impl Connected<IncomingStream<'_, KillListener>> for Kill {
    fn connect_info(stream: IncomingStream<'_, KillListener>) -> Kill {
        stream.io().kill.clone()
    }
}

struct KillListener(tokio::net::TcpListener);

impl axum::serve::Listener for KillListener {
    type Io = KillStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (KillStream, std::net::SocketAddr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let kill = Kill(Arc::new(AtomicBool::new(false)));
        (KillStream { stream, kill }, addr)
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

struct KillStream {
    stream: tokio::net::TcpStream,
    kill: Kill,
}

impl KillStream {
    fn killed(&self) -> std::io::Result<()> {
        if self.kill.0.load(Ordering::SeqCst) {
            Err(std::io::ErrorKind::ConnectionAborted.into())
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.killed()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.killed()?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
