//! Clients that misbehave on purpose, unauthenticated or not: each costs the server a bounded
//! amount of memory, time and disk, and a well-behaved client is still served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use hashup::serve::{BackendConfig, Limits, ServeConfig, Server, StoreConfig};
use hashup::sign::Credentials;

use super::fixture::{Backend, STORE_KEY, STORE_SECRET, Serve, fields_of, multipart, sha256_hex};

/// Reads until the status line and headers of an answer are in, the connection ends, or `limit`.
async fn read_answer(mut read: tokio::net::tcp::OwnedReadHalf, limit: Duration) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `head`, then up to `total` bytes of `filler` in chunks (chunked encoding when asked),
/// stopping when the server answers or hangs up. Returns (answer, bytes of body sent).
async fn send_until_answered(
    serve: &Serve,
    head: &str,
    prefix: &[u8],
    total: usize,
    chunked: bool,
) -> (String, usize) {
    let host = serve.base.trim_start_matches("http://");
    let stream = TcpStream::connect(host).await.unwrap();
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_answer(read, Duration::from_secs(20)));
    write.write_all(head.as_bytes()).await.unwrap();
    const CHUNK: usize = 64 * 1024;
    let filler = vec![b'a'; CHUNK];
    let mut sent = 0;
    let mut first = Some(prefix).filter(|p| !p.is_empty());
    while sent < total && !reader.is_finished() {
        let data: Vec<u8> = match first.take() {
            Some(p) => p.to_vec(),
            None => filler.clone(),
        };
        let framed = if chunked {
            [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat()
        } else {
            data.clone()
        };
        let write_one = tokio::time::timeout(Duration::from_secs(20), write.write_all(&framed));
        match write_one.await {
            Ok(Ok(())) => sent += data.len(),
            _ => break,
        }
    }
    (reader.await.unwrap(), sent)
}

#[tokio::test]
async fn a_preamble_without_a_boundary_is_refused_before_it_is_read() {
    let serve = Serve::start(Backend::Store);
    let host = serve.base.trim_start_matches("http://");
    let head = format!(
        "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=never-sent\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let started = Instant::now();
    let (answer, sent) = send_until_answered(&serve, &head, b"", 64 << 20, true).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(sent < 32 << 20, "{sent} bytes went out before the answer");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_part_header_that_never_ends_is_refused() {
    let serve = Serve::start(Backend::Store);
    let host = serve.base.trim_start_matches("http://");
    // 1 MiB of one header line, in a body that promises 64 MiB more.
    let head = format!(
        "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    let prefix = b"--b0undary\r\nContent-Disposition: form-data; name=\"key\"\r\nX-Pad: ";
    let (answer, _) = send_until_answered(&serve, &head, prefix, 1 << 20, false).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

/// A `hashup serve` in this process, on the embedded store, with the given limits.
struct InProcess {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// `PROMINENCE_URL`.
    api: String,
    /// The store's directory.
    store: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// alice's token on every in-process server.
const TOKEN: &str = "hostile-test-token";

async fn in_process(limits: Limits) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        serde_json::json!({ TOKEN: {"user": "alice", "groups": ["g1"]} }).to_string(),
    )
    .unwrap();
    let store = dir.path().join("store");
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens,
        public_url: None,
        backend: BackendConfig::Store(StoreConfig {
            dir: store.clone(),
            bucket: "hashup".into(),
            region: "us-east-1".into(),
            credentials: Some(Credentials::new(STORE_KEY, STORE_SECRET)),
        }),
        limits,
    };
    let server = Server::bind(config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let api = server.api_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    InProcess {
        base,
        api,
        store,
        _dir: dir,
        _stop: stop,
    }
}

/// `GET /data` as alice, as a well-behaved client would: the status, or the error.
async fn real_request(server: &InProcess) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    client
        .get(format!("{}/data", server.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Waits until the server closes `read`'s connection (EOF or reset), up to `limit`; how long
/// it took, or `None` if it stayed open.
async fn closed_within(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(n)) if n > 0 => continue,
            Ok(_) => return Some(started.elapsed()),
        }
    }
}

/// Opens a connection and sends a request head one byte every `tick`, never finishing it;
/// returns when the server closed the connection, or `None` if it was still open at `limit`.
async fn slow_headers(addr: String, tick: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = b"GET /prominence/v1/data HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    if write.write_all(head).await.is_err() {
        return Some(started.elapsed());
    }
    let writer = tokio::spawn(async move {
        for _ in 0..(limit.as_millis() / tick.as_millis().max(1)) {
            tokio::time::sleep(tick).await;
            if write.write_all(b"a").await.is_err() {
                break;
            }
        }
        write
    });
    let closed = closed_within(&mut read, started, limit).await;
    writer.abort();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_real_clients_get_through() {
    let limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = in_process(limits).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Three times the cap, each trickling a header byte every 200 ms for up to 8 s.
    let slow: Vec<_> = (0..12)
        .map(|_| {
            tokio::spawn(slow_headers(
                addr.clone(),
                Duration::from_millis(200),
                Duration::from_secs(8),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(real_request(&server).await, Ok(200));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the real request waited {:?}",
        started.elapsed()
    );
    for (i, task) in slow.into_iter().enumerate() {
        let closed = task.await.unwrap();
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(6)),
            "slow connection {i} was not closed in time: {closed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_are_closed() {
    let limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = in_process(limits).await;
    let addr = server.base.trim_start_matches("http://");
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..20 {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        idle.push((read, write));
    }
    // The idle ones are served (and timed out) in turn: a real client gets its turn.
    assert_eq!(real_request(&server).await, Ok(200));
    for (i, (read, _write)) in idle.iter_mut().enumerate() {
        let closed = closed_within(read, started, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "idle connection {i} is still open");
    }
    assert_eq!(real_request(&server).await, Ok(200));
}

/// More clients at once than are served wait in the listen backlog, as the help says, rather
/// than having their connection attempts dropped (a SYN dropped is retried after 1 s): a
/// listener with the standard library's backlog of 128 failed this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_backlog() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let burst = somaxconn.min(600).saturating_sub(50);
    // The burst's sockets, beside the other tests' files.
    hashup::rlimit::raise_open_files_limit();
    if burst < 300 {
        eprintln!("skipped: net.core.somaxconn is {somaxconn}, too small to tell 128 from more");
        return;
    }
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server = in_process(limits).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let connects = (0..burst).map(|_| {
        let addr = addr.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(700), TcpStream::connect(addr)).await
        })
    });
    let mut connected = 0;
    let mut held = Vec::new();
    for connect in futures_util::future::join_all(connects).await {
        if let Ok(Ok(stream)) = connect.unwrap() {
            connected += 1;
            held.push(stream);
        }
    }
    assert_eq!(connected, burst, "connections made within 700 ms");
}

impl InProcess {
    /// Files in the store's temporary directory (uploads in flight).
    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.store.join(".hashup/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Sends a whole, valid POST upload up to and including the start of a part after the file,
/// then trickles that part's data one byte every `tick` (never, with `None`), never ending the
/// form. Returns how long after the file part the server closed the connection, the answer,
/// and the most temporary files seen while the file was held.
async fn stop_after_the_file(
    server: &InProcess,
    tick: Option<Duration>,
) -> (Option<Duration>, String, usize) {
    let data = vec![b'd'; 100 * 1024];
    let r = reqwest::Client::new()
        .post(format!("{}/data/upload", server.api))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"filename": "pinned.sif", "checksum": sha256_hex(&data)}))
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = r.json().await.unwrap();
    let (content_type, mut body) = multipart(&fields_of(&answer), "pinned.sif", &data);
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
    // Cut the closing delimiter; open one more part instead, whose data never ends.
    body.truncate(body.len() - format!("--{boundary}--\r\n").len());
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\n")
            .as_bytes(),
    );
    let host = server.base.trim_start_matches("http://");
    let head = format!(
        "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len() + (1 << 20)
    );
    let (mut read, mut write) = TcpStream::connect(host).await.unwrap().into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(&body).await.unwrap();
    let sent = Instant::now();
    let writer = tokio::spawn(async move {
        if let Some(tick) = tick {
            for _ in 0..100 {
                tokio::time::sleep(tick).await;
                if write.write_all(b"x").await.is_err() {
                    break;
                }
            }
        }
        write
    });
    let mut held = 0;
    let watch_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < watch_until {
        held = held.max(server.temp_files());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let Some(left) = Duration::from_secs(8).checked_sub(sent.elapsed()) else {
            break None;
        };
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            Ok(_) => break Some(sent.elapsed()),
        }
    };
    writer.abort();
    (closed, String::from_utf8_lossy(&answer).into_owned(), held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_that_never_ends_frees_its_temp_file_in_time() {
    // A 100 KiB upload at 1 MiB/s after a 1 s grace may last ~1.1 s; idle alone would be 5 s.
    let limits = Limits {
        idle_timeout: Duration::from_secs(5),
        body_floor: Duration::from_secs(1),
        min_body_rate: 1 << 20,
        ..Limits::default()
    };
    let server = in_process(limits).await;
    for tick in [Some(Duration::from_millis(200)), None] {
        let (closed, answer, held) = stop_after_the_file(&server, tick).await;
        assert_eq!(held, 1, "the file part was not being held ({tick:?})");
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(4)),
            "closed after {closed:?} ({tick:?}): {answer}"
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.temp_files() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.temp_files(), 0, "({tick:?})");
    }
}

/// A whole upload as alice, as a well-behaved client from 127.0.0.1 makes it (presign, then the
/// POST form), on fresh connections: the store's status, or the error.
async fn real_upload(server: &InProcess, name: &str) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let data = b"real client's bytes\n";
    let answer: serde_json::Value = client
        .post(format!("{}/data/upload", server.api))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"filename": name, "checksum": sha256_hex(data)}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let (content_type, body) = multipart(&fields_of(&answer), name, data);
    client
        .post(answer["url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// A connection from `source` to `addr` that sends nothing, reopened as soon as the server
/// closes it, until `stop`; counts the connections made in `made`.
async fn idle_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let Ok(mut stream) = socket.connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        made.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        // Until the server closes it (or the test ends).
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => break,
                Err(_) => {}
            }
        }
    }
}

/// One address that opens 20 times the connection cap and reopens each one the moment it is
/// closed cannot keep a client from another address waiting: the per-address cap closes its
/// excess on accept, so the backlog keeps moving. Without the cap (every slot held until the
/// 10 s header timeout, reopened at once) the real upload waited for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_lock_the_others_out() {
    hashup::rlimit::raise_open_files_limit();
    let limits = Limits {
        max_connections: 16,
        max_per_address: 4,
        ..Limits::default()
    };
    let server = in_process(limits).await;
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let idle: Vec<_> = (0..320)
        .map(|_| tokio::spawn(idle_from(attacker, addr, stop.clone(), made.clone())))
        .collect();
    while made.load(std::sync::atomic::Ordering::Relaxed) < 320 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..3 {
        let started = Instant::now();
        assert_eq!(
            real_upload(&server, &format!("real-{i}.sif")).await,
            Ok(204)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "upload {i} waited {:?}",
            started.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in idle {
        task.await.unwrap();
    }
}

/// A POST form is unauthenticated until its fields are in: they must all arrive within the
/// header timeout, not merely keep trickling within the 60 s body floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_delivers_its_fields_within_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = in_process(limits).await;
    let host = server.base.trim_start_matches("http://").to_string();
    // Nothing after the headers; a field's value trickled a byte every 200 ms.
    for trickle in [false, true] {
        let head = format!(
            "POST /store/hashup HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\n\r\n",
            1 << 20
        );
        let (read, mut write) = TcpStream::connect(&host).await.unwrap().into_split();
        let started = Instant::now();
        write.write_all(head.as_bytes()).await.unwrap();
        let writer = tokio::spawn(async move {
            if trickle {
                let part = b"--b0undary\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n";
                write.write_all(part).await.unwrap();
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if write.write_all(b"k").await.is_err() {
                        break;
                    }
                }
            }
            write
        });
        let answer = read_answer(read, Duration::from_secs(8)).await;
        let took = started.elapsed();
        writer.abort();
        assert!(answer.starts_with("HTTP/1.1 400"), "{trickle}: {answer:?}");
        assert!(
            took < Duration::from_secs(3),
            "trickle {trickle}: answered after {took:?}"
        );
    }
}

/// A connection's headers may fill 64 KiB of buffer, not hyper's default of about 400 KiB:
/// 100 KiB of an unfinished header is answered 431 at once rather than waited on.
#[tokio::test]
async fn headers_over_64_kib_are_refused_at_once() {
    let server = in_process(Limits::default()).await;
    let host = server.base.trim_start_matches("http://").to_string();
    let (read, mut write) = TcpStream::connect(&host).await.unwrap().into_split();
    let started = Instant::now();
    let head = format!(
        "GET /prominence/v1/data HTTP/1.1\r\nHost: {host}\r\nX-Pad: {}",
        "a".repeat(100 * 1024)
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(read, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // 60 KiB of headers are still served.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/data", server.api))
        .bearer_auth(TOKEN)
        .header("x-pad", "a".repeat(60 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
