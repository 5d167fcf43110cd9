//! hashup-wan-proxy: a TCP proxy that emulates a distant server (delay, window, bandwidth,
//! resets) in front of a loopback one. The flags become a [`hashup::wan::Config`]; the work is
//! [`hashup::wan::Proxy`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hashup::select::parse_size;
use hashup::wan::{Config, Proxy, RequestLog};

/// Forward TCP connections to HOST:PORT as if it were a round trip away.
#[derive(Debug, Parser)]
#[command(
    name = "hashup-wan-proxy",
    version,
    about,
    after_help = "Prints `listening on ADDR` as its first line on stdout, then runs until Ctrl-C \
                  or SIGTERM.\nSizes: bytes, or k/M/G (powers of 1000) or Ki/Mi/Gi (powers of \
                  1024), e.g. 4MiB."
)]
struct Args {
    /// Where to forward every connection.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,

    /// Address (or just a port, on 127.0.0.1) to listen on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Round-trip time in milliseconds: each direction delays every byte by half of it, and a
    /// new connection costs one more round trip before its first byte arrives.
    #[arg(long, value_name = "MS", default_value = "0", value_parser = parse_rtt)]
    rtt: Duration,

    /// Bytes in flight per connection and direction (a TCP window): one stream tops out near
    /// WINDOW / RTT.
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_positive)]
    window: u64,

    /// Total bandwidth per direction, shared by all connections, in bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_positive)]
    rate: Option<u64>,

    /// Reset (RST) each connection once it has carried this many bytes upstream.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    reset_after: Option<u64>,

    /// Read what clients send as HTTP/1.1 and write each request's line (`GET /bucket?... \
    /// HTTP/1.1`) to FILE, one a line, as its head arrives: `wc -l` counts the requests.
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an address (IP:PORT) or a port"))
}

fn parse_rtt(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .ok_or_else(|| format!("{s:?} is not a number of milliseconds"))
}

fn parse_positive(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = Config::new(args.to);
    config.listen = args.listen;
    config.rtt = args.rtt;
    config.window = args.window;
    config.rate = args.rate;
    config.reset_after = args.reset_after;
    config.log_errors = true;
    if let Some(path) = &args.request_log {
        match RequestLog::create(path) {
            Ok(log) => config.request_log = Some(Arc::new(log)),
            Err(e) => {
                eprintln!("hashup-wan-proxy: --request-log {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let proxy = match Proxy::start(config).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("hashup-wan-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Scripts read the port from this line, so it goes out before any connection is taken.
    println!("listening on {}", proxy.local_addr());
    let _ = std::io::stdout().flush();
    proxy.run_until(shutdown_signal()).await;
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_the_config_values() {
        let args = Args::try_parse_from([
            "hashup-wan-proxy",
            "--to",
            "127.0.0.1:8333",
            "--listen",
            "9000",
            "--rtt",
            "12.5",
            "--window",
            "1MiB",
            "--rate",
            "50M",
            "--request-log",
            "requests.log",
        ])
        .unwrap();
        assert_eq!(args.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(args.rtt, Duration::from_micros(12_500));
        assert_eq!(args.window, 1 << 20);
        assert_eq!(args.rate, Some(50_000_000));
        assert_eq!(args.reset_after, None);
        assert_eq!(args.request_log, Some(PathBuf::from("requests.log")));
        assert!(Args::try_parse_from(["p", "--to", "h:1", "--rtt", "-1"]).is_err());
        assert!(Args::try_parse_from(["p", "--to", "h:1", "--window", "0"]).is_err());
    }
}
