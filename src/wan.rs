//! A WAN emulator: a TCP proxy that makes a loopback server look 20-100 ms away.
//!
//! Benchmarks on 127.0.0.1 hide what a round trip costs; users upload to stores tens of
//! milliseconds away, where presign requests, fresh connections and TCP windows dominate. A
//! [`Proxy`] listens on a local port and forwards every connection to a target, and on the way:
//!
//! - **Delay.** Every byte, in each direction, arrives half a round trip ([`Config::rtt`]) after
//!   it was read, in order and with its timing kept: a steady stream still flows at full rate,
//!   only shifted. A new connection also costs one extra round trip (the TCP handshake) before
//!   any of its bytes is delivered.
//! - **Window.** Per connection and direction at most [`Config::window`] bytes are in flight: a
//!   chunk read at `t` holds its share until it is delivered (`t + RTT/2`) and "acknowledged"
//!   half a round trip later, so one stream tops out near `window / rtt`, as a TCP stream with
//!   that window does. The proxy's own socket buffers are kept small so the kernel does not add
//!   a large hidden buffer in front of the window.
//! - **Rate** (optional). A bandwidth cap per direction shared by all connections: a link with
//!   a bounded queue, which bytes cross one after another at [`Config::rate`].
//! - **Resets** (optional, for fault tests). A connection is reset (RST both ways) once it has
//!   carried [`Config::reset_after`] bytes upstream.
//!
//! Half-closes propagate (a client's `shutdown(Write)` reaches the target, after the delay), a
//! reset or error on one side resets the other once the bytes before it have been delivered,
//! and memory stays bounded: at most a window of data per connection and direction.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::time::Duration;
//! use hashup::wan::{Config, Proxy};
//!
//! let mut config = Config::new("127.0.0.1:8333");
//! config.rtt = Duration::from_millis(50);
//! let proxy = Proxy::start(config).await?;
//! println!("S3 50 ms away at http://{}", proxy.local_addr());
//! // ... the proxy runs until it is dropped.
//! # Ok(())
//! # }
//! ```
//!
//! The `hashup-wan-proxy` binary runs one from the command line; `scripts/bench-upload.sh
//! --rtt` and `scripts/bench-sync.sh --rtt` put one in front of each server they start.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

/// The default window: 4 MiB, about what a Linux host's TCP autotuning reaches on a long path.
pub const DEFAULT_WINDOW: u64 = 4 << 20;

/// The most one read takes from a socket: small next to a window, so the window is shared out
/// in steps fine enough for a stream to keep it full.
const CHUNK: usize = 64 << 10;

/// SO_RCVBUF and SO_SNDBUF of the proxy's sockets (Linux doubles it for bookkeeping). Whatever
/// the kernel buffers on the proxy's receiving side is not yet "in flight" in this model, so an
/// autotuned buffer (up to 6 MiB) would be a hidden extra window; 128 KiB still keeps loopback
/// at well over a GB/s.
const SOCKET_BUFFER: u32 = 128 << 10;

/// Messages (chunks) queued per direction between reading and writing; with the window this
/// bounds memory, and it only limits tiny chunks (1,024 per round trip).
const QUEUE: usize = 1024;

/// The most bytes the shared link of [`Config::rate`] queues, for all connections together,
/// before readers wait: a router's buffer, so a cap does not queue a window per connection.
const LINK_QUEUE: u64 = 1 << 20;

/// What to emulate; build with [`Config::new`] and set the fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one ([`Proxy::local_addr`] tells which).
    pub listen: SocketAddr,
    /// Where to forward connections, `HOST:PORT`; resolved once, at [`Proxy::start`].
    pub to: String,
    /// Round-trip time: each direction delays every byte by half of it, and a new connection
    /// costs one more before its first byte is delivered.
    pub rtt: Duration,
    /// Bytes in flight per connection and direction (at least 1).
    pub window: u64,
    /// Total bytes per second per direction, shared by all connections; `None` is no cap.
    pub rate: Option<u64>,
    /// Reset each connection once this many bytes have been forwarded from client to target.
    pub reset_after: Option<u64>,
    /// Print connection failures (the target refusing a connection, accept errors) on stderr.
    pub log_errors: bool,
}

impl Config {
    /// A proxy to `to` on 127.0.0.1, with no delay, the default window, no rate cap, no resets.
    pub fn new(to: impl Into<String>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            to: to.into(),
            rtt: Duration::ZERO,
            window: DEFAULT_WINDOW,
            rate: None,
            reset_after: None,
            log_errors: false,
        }
    }
}

/// A running proxy on the current tokio runtime. Dropping it stops it: the listener closes and
/// every connection it forwards is closed.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Resolves the target, binds the listener and starts accepting on the current runtime.
    pub async fn start(config: Config) -> io::Result<Proxy> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if config.window == 0 {
            return Err(invalid("the window must be at least 1 byte"));
        }
        if config.rate == Some(0) {
            return Err(invalid("the rate must be at least 1 byte per second"));
        }
        let target = tokio::net::lookup_host(&config.to)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.to)))?
            .next()
            .ok_or_else(|| invalid(&format!("{}: no address", config.to)))?;
        let socket = small_socket(config.listen)?;
        // Accepted sockets inherit the listener's buffer sizes (and the window scale it offers).
        socket.set_reuseaddr(true)?;
        socket.bind(config.listen)?;
        // As deep a queue as `hashup serve`'s: a burst of uploads opening connections must
        // not see SYNs dropped (and retried 1 s later) at the proxy either.
        let listener = socket.listen(crate::serve::connections::BACKLOG)?;
        let addr = listener.local_addr()?;
        let links = match config.rate {
            Some(rate) => [Some(Link::new(rate)), Some(Link::new(rate))],
            None => [None, None],
        };
        let shared = Arc::new(Shared {
            target,
            chunk: CHUNK.min(usize::try_from(config.window).unwrap_or(usize::MAX)),
            config,
            links,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Proxy { addr, task })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `shutdown` completes, then stops the proxy.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop owns every connection task (a JoinSet), so this ends them all.
        self.task.abort();
    }
}

/// What every connection reads.
struct Shared {
    config: Config,
    target: SocketAddr,
    /// The most one read takes: [`CHUNK`], or the window when smaller.
    chunk: usize,
    /// The shared links of `rate`: client to target, target to client.
    links: [Option<Link>; 2],
}

/// Which way bytes flow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to target.
    Up = 0,
    /// Target to client.
    Down = 1,
}

/// A bottleneck of `rate` bytes per second: bytes cross it one after another.
struct Link {
    rate: f64,
    /// When the bytes queued so far will have crossed it.
    free_at: Mutex<Instant>,
    /// [`LINK_QUEUE`] bytes' worth of time.
    queue: Duration,
}

impl Link {
    fn new(rate: u64) -> Link {
        Link {
            rate: rate as f64,
            free_at: Mutex::new(Instant::now()),
            queue: Duration::from_secs_f64(LINK_QUEUE as f64 / rate as f64),
        }
    }

    /// Queues `n` bytes that reach the link at `at`; returns when they have crossed it.
    fn send(&self, at: Instant, n: usize) -> Instant {
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let end = (*free_at).max(at) + Duration::from_secs_f64(n as f64 / self.rate);
        *free_at = end;
        end
    }

    /// Waits while the link's queue is full.
    async fn room(&self) {
        loop {
            let free_at = *self.free_at.lock().unwrap_or_else(|e| e.into_inner());
            let Some(wait) = free_at.checked_sub(self.queue) else {
                return;
            };
            if wait <= Instant::now() {
                return;
            }
            sleep_until(wait).await;
        }
    }
}

/// A socket for `addr`'s family with small buffers (see [`SOCKET_BUFFER`]).
fn small_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    Ok(socket)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&shared)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the rest.
                    if shared.config.log_errors {
                        eprintln!("hashup-wan-proxy: accept: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a direction ended badly: the whole connection is reset.
struct Abort;

/// What the two directions of one connection share.
struct ConnState {
    /// A write to one side failed: that peer is gone, so the other direction ends in a reset.
    write_failed: AtomicBool,
    /// Directions that ended cleanly (end of stream forwarded).
    finished: AtomicUsize,
}

async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let accepted = Instant::now();
    // Nothing is delivered before the handshake would have completed.
    let open_at = accepted + shared.config.rtt;
    let _ = client.set_nodelay(true);
    let connected = async {
        let socket = small_socket(shared.target)?;
        socket.connect(shared.target).await
    };
    let mut upstream = match connected.await {
        Ok(upstream) => upstream,
        Err(e) => {
            if shared.config.log_errors {
                eprintln!("hashup-wan-proxy: connect to {}: {e}", shared.config.to);
            }
            // A refused connection shows as a reset, a round trip after the client's connect.
            sleep_until(open_at).await;
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let state = ConnState {
        write_failed: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
    };
    let outcome = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        tokio::try_join!(
            pump(
                client_read,
                upstream_write,
                Direction::Up,
                &shared,
                &state,
                open_at
            ),
            pump(
                upstream_read,
                client_write,
                Direction::Down,
                &shared,
                &state,
                open_at
            ),
        )
    };
    if outcome.is_err() {
        // SO_LINGER 0: closing sends RST, as the network would pass on the reset.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
}

/// What the reading half hands the writing half.
enum Message {
    /// Bytes to write at `at`.
    Data { bytes: Bytes, at: Instant },
    /// End of stream at `at`: a clean end (`ok`) is passed on as a half-close, else a reset.
    End { at: Instant, ok: bool },
}

/// One direction: read from `src`, deliver to `dst` half a round trip later, within the window.
/// Ends when the end of stream has been forwarded, or with [`Abort`] for a reset.
async fn pump<R, W>(
    src: R,
    dst: W,
    direction: Direction,
    shared: &Shared,
    state: &ConnState,
    open_at: Instant,
) -> Result<(), Abort>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let window = Semaphore::new(
        usize::try_from(shared.config.window)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS),
    );
    let (data_tx, data_rx) = mpsc::channel(QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel(QUEUE);
    let background = async {
        tokio::join!(
            read_half(src, data_tx, &window, direction, shared, open_at),
            acknowledge(ack_rx, &window),
        );
        // The writing half decides when this direction is over.
        std::future::pending::<()>().await
    };
    tokio::select! {
        result = write_half(dst, data_rx, ack_tx, direction, shared, state) => result,
        () = background => unreachable!("pending never completes"),
    }
}

async fn read_half<R: AsyncRead + Unpin>(
    mut src: R,
    tx: mpsc::Sender<Message>,
    window: &Semaphore,
    direction: Direction,
    shared: &Shared,
    open_at: Instant,
) {
    let one_way = shared.config.rtt / 2;
    let link = shared.links[direction as usize].as_ref();
    let chunk = shared.chunk;
    let mut buf = BytesMut::new();
    let mut last = open_at;
    loop {
        // Hold a chunk's share of the window before reading, so what is read is in flight.
        let Ok(permit) = window.acquire_many(chunk as u32).await else {
            return;
        };
        permit.forget();
        if let Some(link) = link {
            link.room().await;
        }
        buf.reserve(chunk);
        let read = (&mut src).take(chunk as u64).read_buf(&mut buf).await;
        let now = Instant::now().max(open_at);
        let message = match read {
            Ok(n) if n > 0 => {
                window.add_permits(chunk - n);
                let sent = match link {
                    Some(link) => link.send(now, n),
                    None => now,
                };
                last = last.max(sent + one_way);
                Message::Data {
                    bytes: buf.split().freeze(),
                    at: last,
                }
            }
            end => {
                window.add_permits(chunk);
                last = last.max(now + one_way);
                Message::End {
                    at: last,
                    ok: end.is_ok(),
                }
            }
        };
        let done = matches!(message, Message::End { .. });
        if tx.send(message).await.is_err() || done {
            return;
        }
    }
}

async fn write_half<W: AsyncWrite + Unpin>(
    mut dst: W,
    mut rx: mpsc::Receiver<Message>,
    acks: mpsc::Sender<(Instant, usize)>,
    direction: Direction,
    shared: &Shared,
    state: &ConnState,
) -> Result<(), Abort> {
    let one_way = shared.config.rtt / 2;
    let mut carried: u64 = 0;
    while let Some(message) = rx.recv().await {
        match message {
            Message::Data { mut bytes, at } => {
                wait_until(at).await;
                let len = bytes.len();
                let mut reset = false;
                if let (Direction::Up, Some(limit)) = (direction, shared.config.reset_after) {
                    let room = limit.saturating_sub(carried);
                    if len as u64 >= room {
                        bytes.truncate(room as usize);
                        reset = true;
                    }
                }
                if dst.write_all(&bytes).await.is_err() {
                    return write_failed(state);
                }
                carried += bytes.len() as u64;
                if reset {
                    return Err(Abort);
                }
                // Acknowledged half a round trip after delivery (later if the writer was held up).
                let acked = Instant::now().max(at) + one_way;
                if acks.send((acked, len)).await.is_err() {
                    return Err(Abort);
                }
            }
            Message::End { at, ok } => {
                wait_until(at).await;
                if !ok || state.write_failed.load(Ordering::Relaxed) {
                    return Err(Abort);
                }
                if dst.shutdown().await.is_err() {
                    return write_failed(state);
                }
                state.finished.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
    // The reading half always ends with End; it only drops the sender once that is sent.
    Err(Abort)
}

/// A write to a peer failed, so that peer is gone. Its reset reaches the other side after the
/// bytes it sent before, through the other direction (which reads the same dead socket); when
/// that direction is already over, reset now.
fn write_failed(state: &ConnState) -> Result<(), Abort> {
    state.write_failed.store(true, Ordering::Relaxed);
    if state.finished.load(Ordering::Relaxed) > 0 {
        Err(Abort)
    } else {
        Ok(())
    }
}

/// Gives each delivered chunk's window share back when its acknowledgement would arrive.
async fn acknowledge(mut rx: mpsc::Receiver<(Instant, usize)>, window: &Semaphore) {
    while let Some((at, n)) = rx.recv().await {
        wait_until(at).await;
        window.add_permits(n);
    }
}

async fn wait_until(at: Instant) {
    if at > Instant::now() {
        sleep_until(at).await;
    }
}
