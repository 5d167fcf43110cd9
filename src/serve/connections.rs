//! Accepting and running connections, with a bound on every phase, so that idle or slow
//! clients (slowloris) cannot exhaust file descriptors and lock real clients out.
//!
//! `axum::serve` has no header-read timeout and no connection cap: ~20,000 idle connections
//! used up the fd limit. Here each connection is served by hyper's HTTP/1 with a timer, and:
//!
//! - at most [`Limits::max_connections`] are served at once; more wait in the listen backlog
//!   until one ends (and the idle ones end by the header timeout), so no fd is spent on them;
//! - at most [`Limits::max_per_address`] of those come from one source address (an IPv6 /64
//!   counts as one): the backlog is served in arrival order, so one address that keeps
//!   reconnecting could otherwise fill every slot and hold the real clients in the queue
//!   behind it. A connection over this cap is closed as soon as it is accepted, which moves
//!   the queue on at once;
//! - the request line and headers may fill at most [`HEADER_BUFFER`] bytes (more is a 431),
//!   which is what an unauthenticated connection costs in buffers;
//! - the request line and headers must arrive within [`Limits::header_timeout`] of the
//!   connection opening or of the previous response, which also ends idle keep-alive
//!   connections;
//! - a request body may be silent for at most [`Limits::idle_timeout`] (the handlers check it),
//!   and a response that the client does not read for that long ends the connection;
//! - after a response that left part of the body unread, the server closes its side and reads
//!   and discards for a short while ([`LINGER`]), as nginx's lingering close does, so that a
//!   client still sending sees the answer instead of a reset.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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

/// The largest read buffer of a connection, which bounds a request's line and headers: more
/// headers than fit are answered 431. hyper's default (about 400 KiB) let 1,000 tokenless
/// connections that never finished their headers cost 389 MB.
pub const HEADER_BUFFER: usize = 64 * 1024;

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
    /// Connections served at once from one source address (one IPv6 /64); more are closed as
    /// soon as they are accepted.
    pub max_per_address: usize,
    /// From a connection's start, or the end of its previous response, to the end of the next
    /// request's headers; also the time a POST form has, from its start, to deliver its fields
    /// before the file (they are what authenticates it).
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
            max_per_address: 256,
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
    let sources = Arc::new(Sources::new(limits.max_per_address));
    // Dropped to tell connections to finish; each holds `alive` until it has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (alive_tx, alive_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, slot) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match sources.admit(peer.ip()) {
                    Some(slot) => (stream, slot),
                    // Over its address's cap: closed now, so the backlog moves on.
                    None => continue,
                },
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
            drop(slot);
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(alive_rx);
    alive_tx.closed().await;
}

/// The connections open per source address, each at most `max`.
struct Sources {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection's place in its address's count, given back on drop.
struct SourceSlot {
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Sources {
    fn new(max: usize) -> Self {
        Sources {
            open: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// A place for one more connection from `peer`, unless its source has `max` open.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<SourceSlot> {
        let source = source_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.sources.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// The source a peer counts as: its IPv4 address (also when mapped into IPv6), or its IPv6
/// /64, the smallest block a site is given, so that one host cannot rotate its addresses.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
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
        .max_buf_size(HEADER_BUFFER)
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
    fn sources_are_counted_per_address_and_per_ipv6_64() {
        let sources = Arc::new(Sources::new(2));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let first = sources.admit(a).unwrap();
        let second = sources.admit("::ffff:127.0.0.2".parse().unwrap()).unwrap();
        assert!(sources.admit(a).is_none());
        assert!(sources.admit("127.0.0.1".parse().unwrap()).is_some());
        drop(first);
        let third = sources.admit(a).unwrap();
        drop((second, third));
        assert!(sources.open.lock().unwrap().is_empty());

        let _one = sources.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _two = sources.admit("2001:db8::ffff:2".parse().unwrap()).unwrap();
        assert!(sources.admit("2001:db8::3".parse().unwrap()).is_none());
        assert!(sources.admit("2001:db8:0:1::1".parse().unwrap()).is_some());
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
