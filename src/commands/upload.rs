//! `hashup upload`: plan names, then hash and upload through the pipeline; or, with
//! `--dry-run`, hash and print what would be uploaded.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::config::{Destination, ProgressMode, UploadConfig};
use crate::exit::ExitCode;
use crate::hash::{FileEntry, FileError, Hasher};
use crate::manifest::Manifest;
use crate::pipeline::{self, PipelineOptions, human_bytes};
use crate::presign::Presigner;
use crate::presign::prominence::{self, Prominence, Timeouts};
use crate::retry::RetryPolicy;
use crate::select::Selection;
use crate::serve::auth::{Identity, Tokens};
use crate::serve::{BackendConfig, ServeConfig, Server, StoreConfig};
use crate::transfer::Storage;
use crate::walk::Walk;

/// The progress line's period with `--progress log`.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The user the embedded store's one-run token stands for.
pub const EMBEDDED_USER: &str = "hashup";

/// Runs `hashup upload`.
pub fn run(config: &UploadConfig) -> anyhow::Result<ExitCode> {
    // Usage first: bad globs, a shard index missing from the environment, an unreadable list.
    let selection = Selection::prepare(
        &config.select,
        SystemTime::now(),
        |name| std::env::var(name).ok(),
        std::io::stdin().lock(),
    )?;
    // Credentials next: an expired token must stop the run before any work.
    let api = match (&config.destination, config.dry_run) {
        (Destination::Prominence { url, token_file }, false) => {
            let url = url
                .clone()
                .filter(|u| !u.is_empty())
                .or_else(|| {
                    std::env::var("PROMINENCE_URL")
                        .ok()
                        .filter(|u| !u.is_empty())
                })
                .context("no API URL: use --url or set PROMINENCE_URL")?;
            let token = prominence::load_token(token_file.as_deref())?;
            prominence::check_expiry(&token, SystemTime::now())?;
            Some((url, token))
        }
        _ => None,
    };

    let walk = Walk::new(config.paths.clone(), config.walk.clone())
        .with_listed(selection.listed.clone())
        .selecting(selection.selector.clone());
    // Sharded after naming, so every shard refuses the same duplicates.
    let entries = match pipeline::plan(walk, &config.naming) {
        Ok(entries) => selection.shard(entries),
        Err(problems) => {
            for problem in &problems {
                eprintln!("hashup: {problem}");
            }
            eprintln!(
                "hashup: {} unusable object name(s); nothing was uploaded",
                problems.len()
            );
            return Ok(ExitCode::Fatal);
        }
    };
    if config.dry_run {
        return dry_run(entries, config);
    }

    let timeouts = Timeouts {
        connect: config.connect_timeout,
        stall: config.stall_timeout,
    };
    let manifest = Arc::new(match &config.manifest {
        Some(path) => Manifest::create(path)
            .with_context(|| format!("cannot create manifest {}", path.display()))?,
        None => Manifest::none(),
    });
    let options = PipelineOptions {
        hash: config.hash.clone(),
        uploads: config.uploads,
        retry: RetryPolicy {
            retries: config.retries,
            ..RetryPolicy::default()
        },
        progress_every: match config.progress {
            ProgressMode::None => None,
            ProgressMode::Auto | ProgressMode::Log => Some(PROGRESS_EVERY),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let storage = Storage::new(timeouts)?;
        match (&config.destination, api) {
            (_, Some((url, token))) => {
                let presigner: Arc<dyn Presigner> =
                    Arc::new(Prominence::new(&url, &token, timeouts)?);
                pipeline::run(entries, presigner, storage, options, manifest).await
            }
            (Destination::Embedded { store }, None) => {
                let (url, token, stop, server) = start_embedded(store, &entries).await?;
                let presigner: Arc<dyn Presigner> =
                    Arc::new(Prominence::new(&url, &token, timeouts)?);
                let report = pipeline::run(entries, presigner, storage, options, manifest).await;
                let _ = stop.send(());
                server.await??;
                report
            }
            (Destination::Prominence { .. }, None) => unreachable!("credentials were loaded"),
        }
    })?;

    let s = &report.summary;
    eprintln!(
        "hashup: {} files, {} uploaded ({}), {} failed, {} skipped in {:.2} s; hash {:.2} GB/s per thread, upload {:.1} MB/s, {:.1} objects/s",
        s.files,
        s.uploaded,
        human_bytes(s.bytes),
        s.failed,
        s.skipped,
        s.elapsed_ms as f64 / 1000.0,
        s.hash_gb_per_s,
        s.upload_mb_per_s,
        s.objects_per_s
    );
    if let Some(why) = &s.stopped {
        eprintln!("hashup: stopped: {why}");
        return Ok(ExitCode::Fatal);
    }
    Ok(if s.failed > 0 {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    })
}

/// Starts `serve`'s embedded store on a loopback port with a one-run token whose groups cover
/// every directory in the names (PROMINENCE reads `a/b` as group `a`'s object `b`).
async fn start_embedded(
    store: &std::path::Path,
    entries: &[Result<FileEntry, FileError>],
) -> anyhow::Result<(
    String,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let groups: BTreeSet<String> = entries
        .iter()
        .flatten()
        .filter_map(|e| {
            let name = e.name.to_str()?;
            name.rsplit_once('/').map(|(dir, _)| dir.to_string())
        })
        .collect();
    let token = hex::encode(rand::random::<[u8; 24]>());
    let identity = Identity {
        user: EMBEDDED_USER.into(),
        groups: groups.into_iter().collect(),
    };
    let tokens = Tokens::from_map(HashMap::from([(token.clone(), identity)]))
        .map_err(|e| anyhow::anyhow!("cannot set up the embedded store's token: {e}"))?;
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        tokens: Default::default(),
        public_url: None,
        backend: BackendConfig::Store(StoreConfig {
            dir: store.to_path_buf(),
            bucket: "hashup".into(),
            region: "us-east-1".into(),
            credentials: None,
        }),
    };
    let server = Server::bind_with_tokens(config, tokens).await?;
    let url = server.api_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Ok((url, token, stop, handle))
}

/// `--dry-run`: `<sha256>  <object name>` per file, in walk order; no network.
fn dry_run(
    entries: Vec<Result<FileEntry, FileError>>,
    config: &UploadConfig,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for result in Hasher::spawn(entries, &config.hash)?.in_order() {
        match result {
            Ok(file) => {
                let line = writeln!(out, "{}  {}", file.hex(), file.name.display());
                if !super::keep_writing(line)? {
                    return Ok(ExitCode::Success);
                }
            }
            Err(err) => {
                failed |= !err.is_skip();
                eprintln!("hashup: {err}");
            }
        }
    }
    if !super::keep_writing(out.flush())? {
        return Ok(ExitCode::Success);
    }
    Ok(if failed {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    })
}
