//! Clients that misbehave on purpose, unauthenticated or not: each costs the server a bounded
//! amount of memory, time and disk, and a well-behaved client is still served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::fixture::{Backend, Serve};

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
