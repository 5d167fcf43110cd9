//! `hashup upload`: resolve the destination, plan names, then hash and upload through the
//! pipeline; or, with `--dry-run`, hash and print what would be uploaded. With `--delete`, the
//! mirror step (`delete.rs`) follows, before the summary line.

mod delete;
pub(crate) mod embedded;
mod report;
pub mod resolve;

use std::collections::BTreeSet;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

pub use embedded::EMBEDDED_USER;
use resolve::{Reach, Resolved};

use crate::config::UploadConfig;
use crate::exit::ExitCode;
use crate::hash::cache::{HashCache, Loaded};
use crate::hash::{FileEntry, FileError, HashOptions, Hasher, SizeLimit};
use crate::http::Timeouts;
use crate::manifest::{self, Manifest, OpenUpload};
use crate::mirror::remote::Remote;
use crate::multipart::{Multipart, MultipartOptions};
use crate::naming::Keys;
use crate::pipeline::{self, PipelineOptions, Report, StopLevel};
use crate::presign::prominence::{Listed, Prominence};
use crate::presign::{PresignError, Presigner};
use crate::progress::Style;
use crate::request::Requests;
use crate::retry::RetryPolicy;
use crate::select::Selection;
use crate::skip::AlreadyStored;
use crate::transfer::{MAX_OBJECT_SIZE, Storage};
use crate::walk::Walk;

/// How often the hash cache is saved during a run.
const CACHE_SAVE_EVERY: Duration = Duration::from_secs(5);

/// Runs `hashup upload`: usage and credentials are checked first, then names are planned, and
/// only then is anything hashed or sent.
pub fn run(config: &UploadConfig) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    // --delete refuses options that show the run only part of the tree.
    if config.delete {
        crate::mirror::check_usage(&config.select, &config.naming).map_err(anyhow::Error::msg)?;
    }
    // Usage first: bad globs, a shard index missing from the environment, an unreadable list.
    let selection = Selection::prepare(
        &config.select,
        SystemTime::now(),
        env,
        std::io::stdin().lock(),
    )?;
    // Credentials next: an expired token or missing AWS keys must stop the run before any work.
    // A dry run touches no network and needs none (but --delete's listing).
    let reach = match config.dry_run && !config.delete {
        true => None,
        false => Some(Reach::resolve(config, &env)?),
    };
    let Some(entries) = plan(config, &selection) else {
        return Ok(ExitCode::Fatal);
    };
    let mirror = config
        .delete
        .then(|| delete::Mirror::prepare(config, &selection, &entries));
    let (stored, open_uploads) = already_stored(config)?;
    let cache = open_cache(resolve::cache_dir(config, &env));
    let hash = HashOptions {
        cache: cache.clone(),
        max_size: Some(match config.destination {
            // Direct S3 mode sends big files in parts.
            crate::config::Destination::S3 { .. } => SizeLimit {
                bytes: crate::multipart::MAX_OBJECT_SIZE,
                why: "over S3's 5 TiB object limit (not read)",
            },
            _ => SizeLimit {
                bytes: MAX_OBJECT_SIZE,
                why: "over the 5 GiB one presigned upload can carry (not read); direct S3 mode (--s3) sends larger files in parts",
            },
        }),
        ..config.hash.clone()
    };
    if config.dry_run {
        // With --delete the embedded store is started to be listed: it needs the groups.
        let groups_of = match (&mirror, &config.destination) {
            (Some(_), crate::config::Destination::Embedded { .. }) => entries
                .iter()
                .filter_map(|e| e.as_ref().ok().cloned().map(Ok))
                .collect(),
            _ => Vec::new(),
        };
        let printed = dry_run(entries, &hash, &stored);
        save_cache(cache.as_deref());
        let Some(failed) = printed? else {
            return Ok(ExitCode::Success); // stdout closed
        };
        let code = match failed {
            0 => ExitCode::Success,
            _ => ExitCode::SomeFailed,
        };
        let (Some(mirror), Some(reach)) = (mirror, reach) else {
            return Ok(code);
        };
        let incomplete = (failed > 0).then(|| format!("{} failed", crate::mirror::files(failed)));
        let deleting = dry_run_deletions(config, &mirror, reach, &groups_of, incomplete)?;
        return Ok(worse(code, deleting));
    }
    let reach = reach.expect("only a dry run without --delete leaves the destination unresolved");

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
    if let Resolved::Api { token, .. } = &reach.destination {
        report::warn_if_token_outlived(token, &entries, &hash);
    }
    let manifest = Arc::new(open_manifest(config)?);
    let options = PipelineOptions {
        hash,
        uploads: config.uploads.within(crate::limit::uploads_that_fit()),
        retry: RetryPolicy {
            retries: config.retries,
            ..RetryPolicy::default()
        },
        progress: progress_style(config),
        stored: Arc::default(),
        drain_timeout: config.drain_timeout,
        multipart: None,
        // With --delete, the summary waits for the deletions it counts.
        journal_summary: mirror.is_none(),
    };
    let journal = Journal {
        manifest,
        stored,
        open_uploads,
    };
    let (report, deleting) = runtime.block_on(upload(
        config, reach, entries, journal, options, mirror, stop,
    ))?;
    // Uploads aborted by a second Ctrl-C may still hold a connection: don't wait for them.
    runtime.shutdown_background();
    save_cache(cache.as_deref());
    Ok(worse(exit_code(config, &report), deleting))
}

/// The run's exit code, unless it is a success and `--delete`'s is not: a run that failed
/// keeps its own code, whatever `--delete` said about it.
fn worse(run: ExitCode, deleting: ExitCode) -> ExitCode {
    match run {
        ExitCode::Success => deleting,
        _ => run,
    }
}

/// `--dry-run --delete`, after the dry run's lines: lists the destination and prints a
/// `delete NAME` line per object a run would delete (`incomplete`: why it would delete
/// nothing, when some file failed).
fn dry_run_deletions(
    config: &UploadConfig,
    mirror: &delete::Mirror,
    reach: Reach,
    entries: &[Result<FileEntry, FileError>],
    incomplete: Option<String>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let retry = RetryPolicy {
        retries: config.retries,
        ..RetryPolicy::default()
    };
    let code = runtime.block_on(async {
        let (remote, embedded) = remote(config, reach, entries).await?;
        let never = tokio::sync::watch::channel(StopLevel::Run).1;
        let (_, code) = mirror
            .run(&remote, incomplete, true, &Manifest::none(), retry, never)
            .await;
        if let Some(server) = embedded {
            server.stop().await?;
        }
        anyhow::Ok(code)
    })?;
    runtime.shutdown_background();
    Ok(code)
}

/// `--dry-run --delete`'s remote: what the destination lists through (the embedded store is
/// started for it, with the groups of `entries`, and must be stopped after).
async fn remote(
    config: &UploadConfig,
    reach: Reach,
    entries: &[Result<FileEntry, FileError>],
) -> anyhow::Result<(Remote, Option<embedded::Embedded>)> {
    let timeouts = Timeouts {
        connect: config.connect_timeout,
        stall: config.stall_timeout,
    };
    Ok(match reach.destination {
        Resolved::Api { url, token, tls } => (
            Remote::Api {
                api: Arc::new(Prominence::with_tls(&url, &token, timeouts, &tls)?),
                user: None,
            },
            None,
        ),
        Resolved::Embedded { store } => {
            let server = embedded::start(&store, entries).await?;
            let api = Prominence::new(&server.url, &server.token, timeouts)?;
            (
                Remote::Api {
                    api: Arc::new(api),
                    user: Some(EMBEDDED_USER.into()),
                },
                Some(server),
            )
        }
        Resolved::Direct(s3) => (Remote::s3(s3, timeouts, &reach.storage_tls)?, None),
    })
}

/// Walks, selects and names the files; `None` (after saying why) when a name is unusable or
/// taken twice, before anything is hashed.
fn plan(config: &UploadConfig, selection: &Selection) -> Option<Vec<Result<FileEntry, FileError>>> {
    let walk = Walk::new(config.paths.clone(), config.walk.clone())
        .with_listed(selection.listed.clone())
        .selecting(selection.selector.clone());
    // Only the embedded store's user is known before the run; PROMINENCE's rule maps names to
    // keys per user, direct S3 mode one key per name.
    let keys = match &config.destination {
        crate::config::Destination::Embedded { .. } => Keys::Prominence {
            user: EMBEDDED_USER.into(),
        },
        _ => Keys::Names,
    };
    // Sharded after naming, so every shard refuses the same duplicates.
    match crate::naming::plan(walk, &config.naming, &keys) {
        Ok(entries) => Some(selection.shard(entries)),
        Err(problems) => {
            for problem in &problems {
                eprintln!("hashup: {problem}");
            }
            eprintln!(
                "hashup: {} unusable object name(s); nothing was uploaded",
                problems.len()
            );
            None
        }
    }
}

/// The manifest journal: appended to (resumed), or started afresh with `--restart`.
fn open_manifest(config: &UploadConfig) -> anyhow::Result<Manifest> {
    Ok(match &config.manifest {
        Some(path) if config.restart => Manifest::create(path)
            .with_context(|| format!("cannot create manifest {}", path.display()))?,
        Some(path) => Manifest::append(path)
            .with_context(|| format!("cannot open manifest {}", path.display()))?,
        None => Manifest::none(),
    })
}

/// Bars or log lines on stderr, or nothing with `--quiet`.
fn progress_style(config: &UploadConfig) -> Style {
    if config.quiet {
        return Style::Hidden;
    }
    Style::choose(
        config.progress,
        config.progress_every,
        std::io::stderr().is_terminal(),
    )
}

/// The journal a run appends to, and what earlier runs left in it.
struct Journal {
    /// The manifest being written.
    manifest: Arc<Manifest>,
    /// What the manifests say is stored.
    stored: AlreadyStored,
    /// Multipart uploads the journal left open: resumed or aborted in direct S3 mode.
    open_uploads: Vec<OpenUpload>,
}

/// The async part of a run: the presigner for the destination (starting the embedded store
/// if that is the destination; in direct S3 mode the multipart engine too, which first aborts
/// the journal's stale uploads), `--skip-existing`'s listing (added to `stored`), the cache
/// saver, the pipeline; then `--delete`'s mirror step and the summary line it waited for, with
/// the mirror step's exit code ([`ExitCode::Success`] without it).
async fn upload(
    config: &UploadConfig,
    reach: Reach,
    entries: Vec<Result<FileEntry, FileError>>,
    journal: Journal,
    mut options: PipelineOptions,
    mirror: Option<delete::Mirror>,
    stop: tokio::sync::watch::Receiver<StopLevel>,
) -> anyhow::Result<(Report, ExitCode)> {
    let Journal {
        manifest,
        mut stored,
        open_uploads,
    } = journal;
    let timeouts = Timeouts {
        connect: config.connect_timeout,
        stall: config.stall_timeout,
    };
    let storage = Storage::with_tls(timeouts, &reach.storage_tls)?;
    let mut embedded = None;
    let mut remote = None;
    let (api, presigner): (Option<Arc<Prominence>>, Arc<dyn Presigner>) = match reach.destination {
        Resolved::Api { url, token, tls } => {
            let api = Arc::new(Prominence::with_tls(&url, &token, timeouts, &tls)?);
            remote = Some(Remote::Api {
                api: api.clone(),
                user: None,
            });
            (Some(api.clone()), api)
        }
        Resolved::Embedded { store } => {
            let server = embedded::start(&store, &entries).await?;
            let api = Arc::new(Prominence::new(&server.url, &server.token, timeouts)?);
            embedded = Some(server);
            remote = Some(Remote::Api {
                api: api.clone(),
                user: Some(EMBEDDED_USER.into()),
            });
            (Some(api.clone()), api)
        }
        Resolved::Direct(s3) => {
            if mirror.is_some() {
                remote = Some(Remote::s3(s3.clone(), timeouts, &reach.storage_tls)?);
            }
            let multipart = Multipart::new(
                s3.clone(),
                timeouts,
                &reach.storage_tls,
                MultipartOptions {
                    threshold: config.multipart_threshold,
                    part_size: config.part_size,
                    parts_in_flight: config.parts_in_flight,
                },
                Requests::new(options.retry, stop.clone()),
                manifest.clone(),
                open_uploads,
            )?;
            multipart.sweep(config.restart, SystemTime::now()).await;
            options.multipart = Some(Arc::new(multipart));
            (None, s3)
        }
    };
    if config.skip_existing {
        let api = api.context(
            "--skip-existing needs the PROMINENCE API's listing; in direct S3 mode the \
             manifests (--manifest, --previous) say what is stored",
        )?;
        for (group, listed) in list_stored(&api, &entries, &options.retry).await? {
            stored.add_listing(group.as_deref(), listed);
        }
    }
    options.stored = Arc::new(stored);
    // Save the hash cache every few seconds: a killed run loses little hashing.
    let saver = options.hash.cache.clone().map(|cache| {
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
    let multipart = options.multipart.clone();
    let retry = options.retry;
    let summary_written = options.journal_summary;
    let report = pipeline::run(
        entries,
        presigner,
        storage,
        options,
        manifest.clone(),
        stop.clone(),
    )
    .await;
    if let Some(multipart) = multipart {
        multipart.settle().await;
    }
    if let Some(saver) = saver {
        saver.abort();
    }
    let mut deleting = ExitCode::Success;
    let report = match report {
        Ok(mut report) => {
            if let (Some(mirror), Some(remote)) = (mirror, remote) {
                let incomplete = crate::mirror::incomplete(&report.summary, report.interrupted);
                let (summary, code) = mirror
                    .run(&remote, incomplete, false, &manifest, retry, stop)
                    .await;
                report.summary.delete = Some(summary);
                deleting = code;
            }
            if !summary_written {
                pipeline::write_summary(&manifest, &mut report.summary);
            }
            Ok(report)
        }
        Err(err) => Err(err),
    };
    if let Some(server) = embedded {
        server.stop().await?;
    }
    Ok((report?, deleting))
}

/// Prints the summary; the exit code: interrupted, stopped by a fatal answer, some failed, or
/// success.
fn exit_code(config: &UploadConfig, report: &Report) -> ExitCode {
    let s = &report.summary;
    if !config.quiet {
        report::print_summary(s);
    }
    if report.interrupted {
        return ExitCode::Interrupted;
    }
    if let Some(why) = &s.stopped {
        eprintln!("hashup: stopped: {why}");
        return ExitCode::Fatal;
    }
    if s.failed > 0 {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    }
}

/// What earlier runs stored, from the manifest being resumed and any `--previous` ones, and the
/// multipart uploads the manifest being resumed left open. A manifest that cannot be read stops
/// the run: resuming blind could send everything again. (With `--restart`, the open uploads of
/// the manifest about to be truncated, as far as it reads, so that they are aborted.)
fn already_stored(config: &UploadConfig) -> anyhow::Result<(AlreadyStored, Vec<OpenUpload>)> {
    let mut previous = Vec::new();
    for path in &config.previous {
        previous.push(
            manifest::read(path)
                .with_context(|| format!("cannot read --previous {}", path.display()))?,
        );
    }
    let journal = match &config.manifest {
        Some(path) if config.restart => {
            let open = manifest::read(path).map(|j| j.open_uploads);
            return Ok((
                AlreadyStored::from_journals(&previous, None),
                open.unwrap_or_default(),
            ));
        }
        Some(path) => match manifest::read(path) {
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
    let stored = AlreadyStored::from_journals(&previous, journal.as_ref());
    Ok((stored, journal.map(|j| j.open_uploads).unwrap_or_default()))
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

/// The hash cache in `dir` ([`resolve::cache_dir`]); problems are warnings (the run reads every
/// file instead), never errors.
pub(crate) fn open_cache(dir: Option<PathBuf>) -> Option<Arc<HashCache>> {
    let dir = dir?;
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

pub(crate) fn save_cache(cache: Option<&HashCache>) {
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

/// The API's listings covering every name, each with the group it lists (`None`: the user's
/// own): `GET /data` for names without `/`, and
/// `GET /data/<group>` for each group path. A group the user may not list (403) is warned
/// about and left out; a 401 or an API that cannot be reached stops the run.
async fn list_stored(
    api: &Prominence,
    entries: &[Result<FileEntry, FileError>],
    retry: &RetryPolicy,
) -> anyhow::Result<Vec<(Option<String>, Vec<Listed>)>> {
    let groups: BTreeSet<Option<String>> = entries
        .iter()
        .flatten()
        .filter_map(|e| e.name.to_str())
        .map(|name| name.rsplit_once('/').map(|(group, _)| group.to_string()))
        .collect();
    let mut listed = Vec::new();
    for group in groups {
        match api.list_retrying(group.as_deref(), *retry).await {
            Ok(objects) => listed.push((group, objects)),
            Err((PresignError::Refused { status, message }, _)) => eprintln!(
                "hashup: warning: cannot list {}: HTTP {status}: {message}; its files are not checked against the listing",
                group
                    .as_deref()
                    .map_or("your uploads".to_string(), |g| format!("group {g}"))
            ),
            Err((err, _)) => anyhow::bail!("--skip-existing: cannot list what is stored: {err}"),
        }
    }
    Ok(listed)
}

/// `--dry-run`: `<sha256>  <object name>` per file that would be sent, in walk order; files the
/// manifests (`--manifest`, `--previous`) record as uploaded are left out and counted. No
/// network, so `--skip-existing`'s listing is not asked. The files that failed, or `None`
/// when stdout was closed.
fn dry_run(
    entries: Vec<Result<FileEntry, FileError>>,
    hash: &crate::hash::HashOptions,
    stored: &AlreadyStored,
) -> anyhow::Result<Option<u64>> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0;
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
                    return Ok(None);
                }
            }
            Err(err) => {
                failed += u64::from(!err.is_skip());
                eprintln!("hashup: {err}");
            }
        }
    }
    if !super::keep_writing(out.flush())? {
        return Ok(None);
    }
    if already > 0 {
        eprintln!("hashup: {already} files left out: the manifests record them as uploaded");
    }
    Ok(Some(failed))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An upload config with every flag at its default, to `..` from.
    pub(crate) fn config() -> UploadConfig {
        UploadConfig {
            paths: vec![],
            walk: Default::default(),
            select: Default::default(),
            hash: Default::default(),
            destination: crate::config::Destination::Embedded {
                store: "store".into(),
            },
            naming: Default::default(),
            uploads: crate::limit::Concurrency::Auto {
                max: crate::limit::AUTO_MAX,
            },
            multipart_threshold: crate::multipart::DEFAULT_THRESHOLD,
            part_size: None,
            parts_in_flight: crate::multipart::PARTS_IN_FLIGHT,
            retries: 5,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            manifest: None,
            restart: false,
            previous: vec![],
            skip_existing: false,
            progress: Default::default(),
            progress_every: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            quiet: false,
            cacert: None,
            state_dir: None,
            hash_cache: true,
            dry_run: false,
            delete: false,
            max_delete: crate::mirror::DEFAULT_MAX_DELETE,
        }
    }
}
