//! `hashup upload`: plan names, then hash and upload through the pipeline; or, with
//! `--dry-run`, hash and print what would be uploaded.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::config::{Destination, UploadConfig};
use crate::exit::ExitCode;
use crate::hash::cache::{HashCache, Loaded};
use crate::hash::{FileEntry, FileError, Hasher};
use crate::manifest::{self, Manifest};
use crate::pipeline::{self, PipelineOptions, StopLevel};
use crate::presign::PresignError;
use crate::presign::Presigner;
use crate::presign::prominence::Listed;
use crate::presign::prominence::{self, Prominence, Timeouts, Tls};
use crate::presign::s3::DirectS3;
use crate::progress::{Style, human_bytes};
use crate::retry::RetryPolicy;
use crate::select::Selection;
use crate::serve::auth::{Identity, Tokens};
use crate::serve::{BackendConfig, ServeConfig, Server, StoreConfig};
use crate::skip::AlreadyStored;
use crate::transfer::Storage;
use crate::walk::Walk;

/// Hashing speed per thread assumed when judging whether a token outlives the hashing
/// (SHA-NI speed measured on the project's 2-core machines, page-cached; disks are slower).
const HASH_BYTES_PER_SEC_PER_THREAD: f64 = 1.5e9;

/// How often the hash cache is saved during a run.
const CACHE_SAVE_EVERY: Duration = Duration::from_secs(5);

/// Only tokens expiring within this are checked against the hashing time (it costs a stat per
/// file).
const EXPIRY_HORIZON: Duration = Duration::from_secs(24 * 3600);

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
    // Credentials next: an expired token or missing AWS keys must stop the run before any work.
    let Access { api, direct } = access(config)?;

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
    let mut stored = already_stored(config)?;
    let cache = open_cache(config);
    let hash = crate::hash::HashOptions {
        cache: cache.clone(),
        ..config.hash.clone()
    };
    if config.dry_run {
        let code = dry_run(entries, &hash, &stored);
        save_cache(cache.as_deref());
        return code;
    }
    // From here on a Ctrl-C or SIGTERM is a request to stop cleanly.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stop = {
        let _context = runtime.enter();
        let (stop_tx, stop) = tokio::sync::watch::channel(StopLevel::Run);
        if let Some(signals) = StopSignals::install() {
            tokio::spawn(signals.listen(stop_tx));
        }
        stop
    };
    if let Some((_, token)) = &api {
        warn_if_token_outlived(token, &entries, &hash);
    }

    let timeouts = Timeouts {
        connect: config.connect_timeout,
        stall: config.stall_timeout,
    };
    let (storage_tls, api_tls) = tls(config, api.is_some())?;
    let manifest = Arc::new(match &config.manifest {
        Some(path) if config.restart => Manifest::create(path)
            .with_context(|| format!("cannot create manifest {}", path.display()))?,
        Some(path) => Manifest::append(path)
            .with_context(|| format!("cannot open manifest {}", path.display()))?,
        None => Manifest::none(),
    });
    let options = PipelineOptions {
        hash,
        uploads: config.uploads,
        retry: RetryPolicy {
            retries: config.retries,
            ..RetryPolicy::default()
        },
        progress: if config.quiet {
            Style::Hidden
        } else {
            Style::choose(
                config.progress,
                config.progress_every,
                std::io::stderr().is_terminal(),
            )
        },
        stored: Arc::default(),
    };
    let report = runtime.block_on(async {
        let storage = Storage::with_tls(timeouts, &storage_tls)?;
        let (api, presigner, server): (Option<Arc<Prominence>>, Arc<dyn Presigner>, _) =
            match (&config.destination, api) {
                (_, Some((url, token))) => {
                    let api = Arc::new(Prominence::with_tls(&url, &token, timeouts, &api_tls)?);
                    (Some(api.clone()), api, None)
                }
                (Destination::Embedded { store }, None) => {
                    let (url, token, stop_server, server) = start_embedded(store, &entries).await?;
                    let api = Arc::new(Prominence::new(&url, &token, timeouts)?);
                    (Some(api.clone()), api, Some((stop_server, server)))
                }
                (Destination::S3 { .. }, None) => {
                    (None, direct.context("direct S3 mode was set up")?, None)
                }
                (Destination::Prominence { .. }, None) => {
                    unreachable!("credentials were loaded")
                }
            };
        let mut options = options;
        if config.skip_existing {
            let api = api.context(
                "--skip-existing needs the PROMINENCE API's listing; in direct S3 mode the \
                 manifests (--manifest, --previous) say what is stored",
            )?;
            stored.add_listing(list_stored(&api, &entries, &options.retry).await?);
        }
        options.stored = Arc::new(stored);
        // Save the hash cache every few seconds: a killed run loses little hashing.
        let saver = cache.clone().map(|cache| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(CACHE_SAVE_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let cache = cache.clone();
                    let _ = tokio::task::spawn_blocking(move || save_cache(Some(&cache))).await;
                }
            })
        });
        let report = pipeline::run(entries, presigner, storage, options, manifest, stop).await;
        if let Some(saver) = saver {
            saver.abort();
        }
        if let Some((stop_server, server)) = server {
            let _ = stop_server.send(());
            server.await??;
        }
        report
    })?;
    // Uploads aborted by a second Ctrl-C may still hold a connection: don't wait for them.
    runtime.shutdown_background();
    save_cache(cache.as_deref());

    let s = &report.summary;
    if !config.quiet {
        print_summary(s);
    }
    if report.interrupted {
        return Ok(ExitCode::Interrupted);
    }
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

/// What a run needs to reach its destination (neither for `--embedded`, which makes its own,
/// nor for a dry run, which touches no network).
struct Access {
    /// PROMINENCE mode: the API URL and the token.
    api: Option<(String, String)>,
    /// Direct S3 mode: the presigner signing with the user's AWS credentials.
    direct: Option<Arc<dyn Presigner>>,
}

/// Loads and checks the credentials: an expired JWT or missing AWS keys stop the run here.
fn access(config: &UploadConfig) -> anyhow::Result<Access> {
    let none = Access {
        api: None,
        direct: None,
    };
    if config.dry_run {
        return Ok(none);
    }
    match &config.destination {
        Destination::Prominence { url, token_file } => {
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
            Ok(Access {
                api: Some((url, token)),
                direct: None,
            })
        }
        Destination::S3 {
            location,
            endpoint,
            region,
        } => Ok(Access {
            api: None,
            direct: Some(Arc::new(DirectS3::from_env(
                location.clone(),
                endpoint.as_deref(),
                region.as_deref(),
                |name| std::env::var(name).ok(),
            )?)),
        }),
        Destination::Embedded { .. } => Ok(none),
    }
}

/// What earlier runs stored, from the manifest being resumed and any `--previous` ones. A
/// manifest that cannot be read stops the run: resuming blind could send everything again.
fn already_stored(config: &UploadConfig) -> anyhow::Result<AlreadyStored> {
    let mut previous = Vec::new();
    for path in &config.previous {
        previous.push(
            manifest::read(path)
                .with_context(|| format!("cannot read --previous {}", path.display()))?,
        );
    }
    let journal = match &config.manifest {
        Some(path) if !config.restart => match manifest::read(path) {
            Ok(read) => Some(read),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot resume from manifest {}: {err}; --restart starts it afresh",
                    path.display()
                ));
            }
        },
        _ => None,
    };
    Ok(AlreadyStored::from_journals(&previous, journal.as_ref()))
}

/// TLS for storage and for the API: `--cacert` for both; `PROMINENCE_SSL_VERIFY=False` turns
/// verification off for the API alone, loudly.
fn tls(config: &UploadConfig, uses_api: bool) -> anyhow::Result<(Tls, Tls)> {
    let storage_tls = Tls {
        extra_roots: match &config.cacert {
            Some(path) => Tls::read_roots(path).map_err(|e| anyhow::anyhow!("--cacert: {e}"))?,
            None => Vec::new(),
        },
        insecure: false,
    };
    let api_tls = Tls {
        insecure: uses_api && ssl_verify_off(),
        ..storage_tls.clone()
    };
    if api_tls.insecure {
        eprintln!(
            "hashup: WARNING: PROMINENCE_SSL_VERIFY=False: the API's TLS certificate is NOT checked; \
             anyone on the network path could read your token and hand out their own URLs"
        );
    }
    Ok((storage_tls, api_tls))
}

/// The run's last lines on stderr: the summary, and "nothing to do" when nothing was sent.
fn print_summary(s: &crate::manifest::Summary) {
    let not_started = match s.not_started {
        0 => String::new(),
        n => format!(", {n} not started"),
    };
    let rate = match s.bytes_hashed {
        0 => String::new(),
        _ => format!(" at {:.2} GB/s per thread", s.hash_gb_per_s),
    };
    let cached = match s.cached {
        0 => String::new(),
        n => format!(", {n} from the hash cache"),
    };
    eprintln!(
        "hashup: {} files, {} uploaded ({}), {} failed, {} skipped{not_started} in {:.2} s; \
         hashed {}{cached}{rate}; upload {:.1} MB/s, {:.1} objects/s",
        s.files,
        s.uploaded,
        human_bytes(s.bytes),
        s.failed,
        s.skipped,
        s.elapsed_ms as f64 / 1000.0,
        human_bytes(s.bytes_hashed),
        s.upload_mb_per_s,
        s.objects_per_s
    );
    if s.uploaded == 0 && s.failed == 0 && s.stopped.is_none() {
        let other = s.skipped - s.already_stored;
        eprintln!(
            "hashup: nothing to do: {}",
            match (s.files, other) {
                (0, _) => "no files".to_string(),
                (n, 0) => format!("all {n} files are already stored"),
                (_, other) => format!(
                    "{} already stored, {other} skipped (not regular files)",
                    s.already_stored
                ),
            }
        );
    }
}

/// Ctrl-C and SIGTERM, caught from the moment they are installed.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside the runtime's context); `None` leaves the default action.
    fn install() -> Option<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(StopSignals {
            interrupt: signal(SignalKind::interrupt()).ok()?,
            terminate: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    /// Raises the stop level on each signal: drain, then abort; a third one exits at once
    /// (something is stuck).
    async fn listen(mut self, stop: tokio::sync::watch::Sender<StopLevel>) {
        for level in [StopLevel::Drain, StopLevel::Abort] {
            self.next().await;
            let _ = stop.send(level);
        }
        self.next().await;
        eprintln!(
            "hashup: interrupted three times: exiting now; the manifest may lack its summary"
        );
        std::process::exit(ExitCode::Interrupted as i32);
    }
}

/// The hash cache in `--state DIR` or the user's cache directory; problems are warnings (the
/// run reads every file instead), never errors.
fn open_cache(config: &UploadConfig) -> Option<Arc<HashCache>> {
    if !config.hash_cache {
        return None;
    }
    let dir = config.state_dir.clone().or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| std::path::Path::new(&home).join(".cache"))
            })?;
        Some(base.join("hashup"))
    })?;
    match HashCache::open(&dir) {
        Ok(cache) => {
            match cache.loaded() {
                Loaded::Corrupt { record } => eprintln!(
                    "hashup: warning: hash cache {} is damaged (record {record} fails its check): \
                     not trusting any of it; this run rebuilds it",
                    cache.path().display()
                ),
                Loaded::OtherFormat => eprintln!(
                    "hashup: warning: hash cache {} has another format or version: this run rebuilds it",
                    cache.path().display()
                ),
                Loaded::New | Loaded::Clean | Loaded::TornTail => {}
            }
            Some(Arc::new(cache))
        }
        Err(err) => {
            eprintln!(
                "hashup: warning: cannot use the hash cache in {}: {}; reading every file",
                dir.display(),
                crate::message::plain_io_message(&err)
            );
            None
        }
    }
}

fn save_cache(cache: Option<&HashCache>) {
    if let Some(cache) = cache
        && let Err(err) = cache.save()
    {
        eprintln!(
            "hashup: warning: cannot update the hash cache {}: {}",
            cache.path().display(),
            crate::message::plain_io_message(&err)
        );
    }
}

/// `PROMINENCE_SSL_VERIFY=False` (as the reference CLI reads it; `false` and `0` too).
fn ssl_verify_off() -> bool {
    std::env::var("PROMINENCE_SSL_VERIFY")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"))
}

/// Warns when a JWT expires before the files can even be hashed at full speed: presign
/// requests after that get 401 and the run stops. (Other tokens carry no expiry to judge.)
fn warn_if_token_outlived(
    token: &str,
    entries: &[Result<FileEntry, FileError>],
    hash: &crate::hash::HashOptions,
) {
    let Some(exp) = crate::jwt::exp(token) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let left = exp - now;
    if left > EXPIRY_HORIZON.as_secs_f64() {
        return;
    }
    let sizes: Vec<u64> = entries
        .iter()
        .flatten()
        .filter_map(|e| std::fs::metadata(&e.path).ok())
        .map(|m| m.len())
        .collect();
    let bytes: u64 = sizes.iter().sum();
    let threads = match hash.threads {
        0 => rayon::current_num_threads(),
        n => n,
    };
    // Threads share the bytes, but one file is hashed by one thread.
    let critical = (bytes / threads as u64).max(sizes.iter().copied().max().unwrap_or(0));
    let needed = critical as f64 / HASH_BYTES_PER_SEC_PER_THREAD;
    if needed > left {
        eprintln!(
            "hashup: warning: the token expires in {}, but hashing {} takes at least {} on {threads} thread(s); \
             files presigned after that will not be uploaded: get a fresh token first",
            human_duration(left),
            human_bytes(bytes),
            human_duration(needed),
        );
    }
}

/// `2 h 5 min`, `3 min 20 s`, `12 s`.
fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// The API's listings covering every name: `GET /data` for names without `/`, and
/// `GET /data/<group>` for each group path. A group the user may not list (403) is warned
/// about and left out; a 401 or an API that cannot be reached stops the run.
async fn list_stored(
    api: &Prominence,
    entries: &[Result<FileEntry, FileError>],
    retry: &RetryPolicy,
) -> anyhow::Result<Vec<Listed>> {
    let groups: BTreeSet<Option<String>> = entries
        .iter()
        .flatten()
        .filter_map(|e| e.name.to_str())
        .map(|name| name.rsplit_once('/').map(|(group, _)| group.to_string()))
        .collect();
    let mut listed = Vec::new();
    for group in &groups {
        let mut tries = 0;
        loop {
            match api.list(group.as_deref()).await {
                Ok(objects) => {
                    listed.extend(objects);
                    break;
                }
                Err(PresignError::Transient { retry_after, .. }) if tries < retry.retries => {
                    tokio::time::sleep(retry.delay(tries, retry_after)).await;
                    tries += 1;
                }
                Err(PresignError::Refused { status, message }) => {
                    eprintln!(
                        "hashup: warning: cannot list {}: HTTP {status}: {message}; its files are not checked against the listing",
                        group
                            .as_deref()
                            .map_or("your uploads".to_string(), |g| format!("group {g}"))
                    );
                    break;
                }
                Err(err) => anyhow::bail!("--skip-existing: cannot list what is stored: {err}"),
            }
        }
    }
    Ok(listed)
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
        limits: Default::default(),
    };
    let server = Server::bind_with_tokens(config, tokens).await?;
    let url = server.api_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Ok((url, token, stop, handle))
}

/// `--dry-run`: `<sha256>  <object name>` per file that would be sent, in walk order; files the
/// manifests (`--manifest`, `--previous`) record as uploaded are left out and counted. No
/// network, so `--skip-existing`'s listing is not asked.
fn dry_run(
    entries: Vec<Result<FileEntry, FileError>>,
    hash: &crate::hash::HashOptions,
    stored: &AlreadyStored,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    let mut already = 0u64;
    for result in Hasher::spawn(entries, hash)?.in_order() {
        match result {
            Ok(file)
                if stored
                    .stored(&file.name.to_string_lossy(), file.stamp.size, &file.hex())
                    .is_some() =>
            {
                already += 1;
            }
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
    if already > 0 {
        eprintln!("hashup: {already} files left out: the manifests record them as uploaded");
    }
    Ok(if failed {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    })
}
