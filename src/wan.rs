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
//! - **Request log** (optional, for benchmarks). The client-to-target bytes of each connection
//!   are read as HTTP/1.1, and each request's line (`GET /bucket?list-type=2&... HTTP/1.1`) is
//!   written to a [`RequestLog`], so a script can count the requests a tool made.
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
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::Path;
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

/// The longest line of a request head (or chunk size line) [`RequestHeads`] keeps looking
/// through; past it the connection is taken for something other than HTTP/1.1.
const MAX_LINE: usize = 64 << 10;

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
    /// Write each HTTP/1.1 request's line that a client sends here; `None` reads no request.
    pub request_log: Option<Arc<RequestLog>>,
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
            request_log: None,
        }
    }
}

/// A file that gets one line per HTTP/1.1 request through a [`Proxy`]: its request line
/// (`METHOD TARGET VERSION`), written when the proxy has read the request's head, so before
/// the target can answer it. A client that has its answers has had its requests logged.
#[derive(Debug)]
pub struct RequestLog {
    file: Mutex<std::fs::File>,
}

impl RequestLog {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<RequestLog> {
        let file = std::fs::File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(RequestLog {
            file: Mutex::new(file),
        })
    }

    /// Appends `line` and a newline in one write, so lines from concurrent connections do not
    /// interleave. A blocking write on a runtime worker, but a short one into the page cache;
    /// a failed write is dropped (the log is a measurement aid, not the proxy's job).
    fn record(&self, line: &[u8]) {
        let mut text = Vec::with_capacity(line.len() + 1);
        text.extend_from_slice(line);
        text.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = file.write_all(&text);
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
    let log = match direction {
        Direction::Up => shared.config.request_log.as_deref(),
        Direction::Down => None,
    };
    let mut heads = RequestHeads::default();
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
                if let Some(log) = log {
                    heads.feed(&buf, |line| log.record(line));
                }
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

/// Finds the requests in one connection's client-to-target bytes, read as HTTP/1.1: each head
/// up to its blank line, then its body skipped by `Content-Length` or chunk by chunk for
/// `Transfer-Encoding: chunked`. Bytes it cannot frame (a bad length, a line past
/// [`MAX_LINE`]) end the search for that connection; an upgraded connection is read on as if
/// it were HTTP, which the tools measured here never ask for.
#[derive(Debug, Default)]
struct RequestHeads {
    framing: Framing,
    /// The line read so far.
    line: Vec<u8>,
    /// The request line of the head being read, once it has been.
    request: Option<Vec<u8>>,
    /// Its `Content-Length`, or 0.
    length: u64,
    /// Whether its body is chunked.
    chunked: bool,
}

/// What the next bytes of a connection are.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Lines of a request head.
    #[default]
    Head,
    /// This many more bytes of a body.
    Body(u64),
    /// A chunk's size line.
    ChunkSize,
    /// This many more bytes of a chunk, its closing CRLF included.
    ChunkData(u64),
    /// Trailer lines after the last chunk, up to a blank line.
    Trailer,
    /// Not HTTP/1.1 as understood here: the rest is not looked at.
    Lost,
}

impl RequestHeads {
    /// Reads the next bytes of the connection; calls `request` with each request line whose
    /// head ends in them.
    fn feed(&mut self, mut data: &[u8], mut request: impl FnMut(&[u8])) {
        while !data.is_empty() {
            match self.framing {
                Framing::Lost => return,
                Framing::Body(left) | Framing::ChunkData(left) => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.framing = match (self.framing, left - n) {
                        (Framing::Body(_), 0) => Framing::Head,
                        (Framing::Body(_), left) => Framing::Body(left),
                        (_, 0) => Framing::ChunkSize,
                        (_, left) => Framing::ChunkData(left),
                    };
                }
                Framing::Head | Framing::ChunkSize | Framing::Trailer => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.line.len() > MAX_LINE {
                        self.lost();
                    } else if end.is_some() {
                        let line = std::mem::take(&mut self.line);
                        let line = line.strip_suffix(b"\n").unwrap_or(&line);
                        self.end_of_line(line.strip_suffix(b"\r").unwrap_or(line), &mut request);
                    }
                }
            }
        }
    }

    fn end_of_line(&mut self, line: &[u8], request: &mut impl FnMut(&[u8])) {
        self.framing = match (self.framing, &self.request) {
            // Blank lines before a request line are allowed (RFC 9112, 2.2).
            (Framing::Head, None) if line.is_empty() => Framing::Head,
            (Framing::Head, None) => {
                self.request = Some(line.to_vec());
                self.length = 0;
                self.chunked = false;
                Framing::Head
            }
            (Framing::Head, Some(_)) if !line.is_empty() => match self.header(line) {
                Some(()) => Framing::Head,
                None => Framing::Lost,
            },
            (Framing::Head, Some(_)) => {
                if let Some(line) = self.request.take() {
                    request(&line);
                }
                match (self.chunked, self.length) {
                    (true, _) => Framing::ChunkSize,
                    (false, 0) => Framing::Head,
                    (false, length) => Framing::Body(length),
                }
            }
            (Framing::ChunkSize, _) => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                {
                    Some(0) => Framing::Trailer,
                    Some(size) => Framing::ChunkData(size.saturating_add(2)),
                    None => Framing::Lost,
                }
            }
            (Framing::Trailer, _) if line.is_empty() => Framing::Head,
            (framing, _) => framing,
        };
        if self.framing == Framing::Lost {
            self.lost();
        }
    }

    /// Notes a header line's `Content-Length` or `Transfer-Encoding`; `None` for a length that
    /// is not a number.
    fn header(&mut self, line: &[u8]) -> Option<()> {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(());
        };
        let (name, value) = (&line[..colon], String::from_utf8_lossy(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            self.length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default();
            self.chunked = last.trim().eq_ignore_ascii_case("chunked");
        }
        Some(())
    }

    fn lost(&mut self) {
        self.framing = Framing::Lost;
        self.line = Vec::new();
        self.request = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request lines `feed` finds in `stream` when it arrives in pieces of `step` bytes.
    fn requests(stream: &[u8], step: usize) -> Vec<String> {
        let mut heads = RequestHeads::default();
        let mut found = Vec::new();
        for piece in stream.chunks(step) {
            heads.feed(piece, |line| {
                found.push(String::from_utf8_lossy(line).into_owned());
            });
        }
        found
    }

    #[test]
    fn request_heads_skip_bodies_by_length_and_by_chunk() {
        // Bodies that look like requests, a chunked body with an extension and a trailer, a
        // blank line between requests, bare LFs, and a head logged before its body arrives.
        let stream = b"PUT /b/k1 HTTP/1.1\r\nHost: x\r\ncontent-length: 22\r\n\r\n\
                       GET /fake HTTP/1.1\r\n\r\n\
                       \r\n\
                       PUT /b/k2 HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
                       5;ext=1\r\nGET /\r\n\
                       14\r\nHEAD /fake HTTP/1.1\n\r\n\
                       0\r\nx-checksum: 1\r\n\r\n\
                       GET /b?list-type=2&prefix=p%2F HTTP/1.1\nHost: x\n\n\
                       DELETE /b/k1 HTTP/1.1\r\nContent-Length: 7\r\n\r\n";
        let want = [
            "PUT /b/k1 HTTP/1.1",
            "PUT /b/k2 HTTP/1.1",
            "GET /b?list-type=2&prefix=p%2F HTTP/1.1",
            "DELETE /b/k1 HTTP/1.1",
        ];
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(requests(stream, step), want, "in pieces of {step} bytes");
        }
    }

    #[test]
    fn request_heads_stop_at_what_they_cannot_frame() {
        let bad_length = b"PUT /a HTTP/1.1\r\nContent-Length: lots\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert!(requests(bad_length, 5).is_empty());
        let mut long = b"GET /a HTTP/1.1\r\n\r\nGET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        long.extend(b" HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
        assert_eq!(requests(&long, 4096), ["GET /a HTTP/1.1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_request_log_has_one_line_per_request_on_every_connection() {
        // A target that echoes every connection back.
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = target.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = target.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.log");
        let mut config = Config::new(to.to_string());
        config.request_log = Some(Arc::new(RequestLog::create(&path).unwrap()));
        let proxy = Proxy::start(config).await.unwrap();
        // Four connections at once, each with three requests (a body that looks like a request,
        // a chunked body, none), written in odd pieces; each read back, so the proxy has read it.
        let mut clients = JoinSet::new();
        for c in 0..4 {
            let addr = proxy.local_addr();
            clients.spawn(async move {
                let requests = format!(
                    "PUT /b/c{c} HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /not HTTP/1.1\n\
                     PUT /b/d{c} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3\r\nGET\r\n0\r\n\r\n\
                     GET /b?list-type=2&prefix=c{c} HTTP/1.1\r\nHost: x\r\n\r\n"
                );
                let mut stream = TcpStream::connect(addr).await.unwrap();
                for piece in requests.as_bytes().chunks(7) {
                    stream.write_all(piece).await.unwrap();
                }
                let mut echoed = vec![0; requests.len()];
                stream.read_exact(&mut echoed).await.unwrap();
                assert_eq!(echoed, requests.as_bytes());
            });
        }
        while let Some(client) = clients.join_next().await {
            client.unwrap();
        }
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        let mut want: Vec<String> = (0..4)
            .flat_map(|c| {
                [
                    format!("GET /b?list-type=2&prefix=c{c} HTTP/1.1"),
                    format!("PUT /b/c{c} HTTP/1.1"),
                    format!("PUT /b/d{c} HTTP/1.1"),
                ]
            })
            .collect();
        want.sort();
        assert_eq!(lines, want);
    }
}
