//! A small in-test PROMINENCE API plus storage, for faults a real server won't produce on demand
//! (a 503 with Retry-After on the next request, a 401, garbage JSON) and for looking at exactly
//! what reached storage. Real behaviour is tested against `hashup serve` and SeaweedFS instead.
//!
//! Answers are scripted per object name; unscripted requests get a POST target (or, in PUT mode,
//! a PUT URL) pointing at this server's `/storage/<name>`, and storage answers 204 (PUT: 200).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
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
}

#[derive(Default)]
struct Inner {
    api_script: HashMap<String, VecDeque<Answer>>,
    storage_script: HashMap<String, VecDeque<Answer>>,
    api_seen: Vec<Seen>,
    storage_seen: Vec<Seen>,
    put: bool,
    on_presign: HashMap<String, Box<dyn FnOnce() + Send>>,
}

struct Shared {
    base: String,
    inner: Mutex<Inner>,
}

/// The running mock; stops when dropped.
pub struct Mock {
    /// `PROMINENCE_URL`.
    pub api: String,
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
            .route("/storage/{*name}", axum::routing::any(storage))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Mock {
            api: format!("{base}/prominence/v1"),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
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

fn respond(answer: Answer) -> Response {
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn api(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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
    });
    if let Some(hook) = inner.on_presign.remove(&name) {
        hook();
    }
    if let Some(answer) = inner
        .api_script
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
    {
        return respond(answer);
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
    respond(Answer::new(201, &body).header("content-type", "application/json"))
}

async fn storage(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let put = method == Method::PUT;
    inner.storage_seen.push(Seen {
        method,
        name: name.clone(),
        headers,
        body,
    });
    match inner
        .storage_script
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
    {
        Some(answer) => respond(answer),
        None => respond(Answer::new(if put { 200 } else { 204 }, "")),
    }
}
