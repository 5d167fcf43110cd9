//! Accepting and running connections, with a bound on every phase, so that idle or slow
//! clients (slowloris) cannot exhaust file descriptors and lock real clients out.
//!
//! `axum::serve` has no header-read timeout and no connection cap: ~20,000 idle connections
//! used up the fd limit. Here each connection is served by hyper's HTTP/1 with a timer, and:
//!
//! - at most [`Limits::max_connections`] are served at once; more wait in the listen backlog
//!   until one ends (and the idle ones end by the header timeout), so no fd is spent on them;
//! - the request line and headers must arrive within [`Limits::header_timeout`] of the
//!   connection opening or of the previous response, which also ends idle keep-alive
//!   connections;
//! - a request body may be silent for at most [`Limits::idle_timeout`] (the handlers check it),
//!   and a response that the client does not read for that long ends the connection;
//! - after a response that left part of the body unread, the server closes its side and reads
//!   and discards for a short while ([`LINGER`]), as nginx's lingering close does, so that a
//!   client still sending sees the answer instead of a reset.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// How long a closed connection's remaining input is read and thrown away, at most.
pub const LINGER: Duration = Duration::from_secs(2);

/// How much of a closed connection's remaining input is thrown away, at most.
const LINGER_BYTES: u64 = 16 * 1024 * 1024;

/// File descriptors one connection can hold: its socket, an upload's temporary file and its
/// second handle, and a sidecar being written.
const FDS_PER_CONNECTION: u64 = 4;

/// File descriptors kept for everything else (the listener, the runtime, logs).
const FDS_RESERVED: u64 = 64;

/// Bounds on what one client can make the server hold; `hashup serve --help` states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog. Lowered at start if the
    /// open-files limit cannot hold this many.
    pub max_connections: usize,
    /// From a connection's start, or the end of its previous response, to the end of the next
    /// request's headers.
    pub header_timeout: Duration,
    /// The longest a request body may send nothing, or a response go unread.
    pub idle_timeout: Duration,
    /// The grace every request body has before [`Limits::min_body_rate`] applies.
    pub body_floor: Duration,
    /// The slowest average rate, in bytes per second, a request body may come at after the
    /// floor: a body of `n` bytes may take at most `body_floor + n / min_body_rate`.
    pub min_body_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_floor: Duration::from_secs(60),
            min_body_rate: 64 * 1024,
        }
    }
}

/// Connections the kernel completes and queues for us while we serve others (the kernel
/// clamps it to `net.core.somaxconn`, 4,096 on current Linux).
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep queue. `TcpListener::bind` asks for 128, as
/// the standard library does: a burst of new connections past that (a client opening a few
/// hundred at once, as `hashup upload --uploads auto` does) had its SYNs dropped, and each
/// dropped one waited the kernel's 1 s retransmit before it was seen.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The soft open-files limit, if there is one.
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid pointer to a plain struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// `wanted`, lowered so that that many connections fit in the open-files limit.
pub fn connection_cap(wanted: usize) -> usize {
    let fit = open_files_limit()
        .map(|n| n.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION)
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    wanted.min(fit).max(1)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropped to tell connections to finish; each holds `alive` until it has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (alive_tx, alive_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of fds or memory, or a connection reset before accept: wait a
                    // little rather than spin.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) {
                        super::log_error("accepting a connection", &e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let stop = stop_rx.clone();
        let alive = alive_rx.clone();
        tokio::spawn(async move {
            connection(stream, router, limits, stop).await;
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(alive_rx);
    alive_tx.closed().await;
}

/// Runs one connection to its end, then closes it.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(WriteTimeout::new(stream, limits.idle_timeout));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        // Boxed so that the connection is Unpin and can be taken apart afterwards.
        Box::pin(async move { router.oneshot(request.map(axum::body::Body::new)).await })
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            changed = stop.changed(), if !stopping => {
                let _ = changed;
                stopping = true;
            }
        }
        Pin::new(&mut conn).graceful_shutdown();
    };
    // At shutdown there is no one left to read an answer for.
    if result.is_ok() && !stopping {
        let stream = conn.into_parts().io.into_inner().into_inner();
        linger(stream).await;
    }
}

/// Closes our side, then reads and discards what the client still sends, for a short while.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = tokio::io::sink();
    let mut rest = (&mut stream).take(LINGER_BYTES);
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
}

/// A stream whose writes fail with `TimedOut` when they cannot progress for `limit`: a client
/// that stops reading its response cannot hold the connection.
struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            sleep: None,
        }
    }

    fn into_inner(self) -> S {
        self.inner
    }

    /// Maps a pending write to an error once it has been pending for `limit`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.sleep = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not read the response",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unread_responses_time_out() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = WriteTimeout::new(server, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = server.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(client);
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(connection_cap(1), 1);
        let cap = connection_cap(usize::MAX);
        if let Some(n) = open_files_limit() {
            assert!(cap as u64 * FDS_PER_CONNECTION + FDS_RESERVED <= n.max(FDS_RESERVED + 4));
        }
    }
}
