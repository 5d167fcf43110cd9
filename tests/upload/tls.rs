//! TLS settings: `--cacert` adds a trusted root, `PROMINENCE_SSL_VERIFY=False` turns checks off
//! for the API with a loud warning, and without either a private CA is refused.
//!
//! The server is a few lines of rustls in the test that answers every request with the API's
//! 401: it exists because neither SeaweedFS nor `hashup serve` speak TLS here, and a 401 is the
//! cheapest proof that the TLS handshake succeeded and a request got through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;

use crate::util::{self, Run, tree};

/// A CA, a certificate for 127.0.0.1 that it signed, and an HTTPS server using it.
struct TlsServer {
    /// `https://127.0.0.1:PORT/prominence/v1`
    url: String,
    ca_pem: String,
    /// Requests that got through a completed handshake.
    requests: Arc<AtomicUsize>,
    _thread: std::thread::JoinHandle<()>,
}

impl TlsServer {
    fn start() -> TlsServer {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "https://127.0.0.1:{}/prominence/v1",
            listener.local_addr().unwrap().port()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let counted = counted.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return; // the client refused our certificate
                        };
                        // Read the head and the body it announces, then answer 401 and close.
                        let mut seen = Vec::new();
                        let mut buf = [0u8; 4096];
                        loop {
                            let Ok(n) = tls.read(&mut buf).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            seen.extend_from_slice(&buf[..n]);
                            let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let length = text[..end]
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .unwrap_or(0);
                                if seen.len() >= end + 4 + length {
                                    break;
                                }
                            }
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let body = r#"{"error":"Unauthorized"}"#;
                        let answer = format!(
                            "HTTP/1.1 401 UNAUTHORIZED\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
        });
        TlsServer {
            url,
            ca_pem: ca.pem(),
            requests,
            _thread: thread,
        }
    }
}

fn run(server: &TlsServer, dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let src = dir.join("src");
    tree(&src, &[("a.txt", b"hello\n")]);
    let mut args = vec![
        src.to_str().unwrap(),
        "--url",
        &server.url,
        "--progress",
        "none",
        "--retries",
        "0",
    ];
    args.extend(extra);
    let mut env = env.to_vec();
    env.push(("PROMINENCE_TOKEN", "tls-token"));
    util::hashup(["upload"])
        .args(&args)
        .envs(env)
        .home(dir)
        .run()
}

const UNAUTHORIZED: &str =
    "hashup: stopped: the PROMINENCE API refused the token (HTTP 401: Unauthorized)";

#[test]
fn a_private_ca_is_refused_without_cacert_and_trusted_with_it() {
    let server = TlsServer::start();
    let dir = tempfile::tempdir().unwrap();

    let refused = run(&server, dir.path(), &[], &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot reach the PROMINENCE API")
            && refused.stderr.contains("certificate"),
        "{}",
        refused.stderr
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);

    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let trusted = run(
        &server,
        dir.path(),
        &["--cacert", ca.to_str().unwrap()],
        &[],
    );
    assert_eq!(trusted.code, 2, "{}", trusted.stderr);
    assert!(trusted.stderr.contains(UNAUTHORIZED), "{}", trusted.stderr);
    assert!(!trusted.stderr.contains("WARNING"), "{}", trusted.stderr);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn prominence_ssl_verify_false_skips_the_check_and_says_so_loudly() {
    let server = TlsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let run = run(
        &server,
        dir.path(),
        &[],
        &[("PROMINENCE_SSL_VERIFY", "False")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "hashup: WARNING: PROMINENCE_SSL_VERIFY=False: the API's TLS certificate is NOT checked; \
             anyone on the network path could read your token and hand out their own URLs\n"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(UNAUTHORIZED), "{}", run.stderr);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_cacert_that_is_not_pem_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("a.txt", b"hello\n")]);
    let run = util::hashup(["upload"])
        .args([
            src.to_str().unwrap(),
            "--url",
            "https://127.0.0.1:9/prominence/v1",
            "--cacert",
            bogus.to_str().unwrap(),
        ])
        .env("PROMINENCE_TOKEN", "t")
        .home(dir.path())
        .run();
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "hashup: --cacert: {}: no PEM certificate in it\n",
            bogus.display()
        )
    );
}
