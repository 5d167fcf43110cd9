//! `hashup upload`: resolve the destination, plan names, then hash and upload through the
//! pipeline; or, with `--dry-run`, hash and print what would be uploaded. With `--delete`, the
//! mirror step (`delete.rs`) follows, before the summary line.

mod delete;
mod gone;
mod report;

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::bandwidth::Bandwidth;
use crate::config::UploadConfig;
use crate::exit::ExitCode;
use crate::hash::cache::{open_or_warn, save_or_warn};
use crate::hash::{HashOptions, Hasher};
use crate::manifest::index::{self, Role};
use crate::manifest::{Manifest, OpenUpload};
use crate::multipart::MultipartOptions;
use crate::naming::Plan;
use crate::pipeline::{self, PipelineOptions, Report, StopLevel};
use crate::progress::Style;
use crate::remote::{Reach, Remote, RemoteError};
use crate::request::Requests;
use crate::select::Selection;
use crate::skip::AlreadyStored;

/// How often the hash cache is saved during a run.
const CACHE_SAVE_EVERY: Duration = Duration::from_secs(5);

/// Runs `hashup upload`: usage and credentials are checked first, then names are planned, and
/// only then is anything hashed or sent.
pub fn run(config: &UploadConfig) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    // --delete refuses options that show the run only part of the tree.
    if config.delete {
        crate::mirror::check_usage(&config.source.select, &config.source.naming)?;
    }
    // Usage first: bad globs, a shard index missing from the environment, an unreadable list.
    let selection = Selection::prepare(
        &config.source.select,
        SystemTime::now(),
        env,
        std::io::stdin().lock(),
    )?;
    // Credentials next: an expired token or missing AWS keys must stop the run before any work.
    // A dry run touches no network and needs none (but the listing of --delete or
    // --check-remote).
    let reach = match config.dry_run && !config.delete && !config.check_remote {
        true => None,
        false => Some(Reach::resolve(
            &config.destination,
            config.network.cacert.as_deref(),
            false,
            &env,
        )?),
    };
    let Some(entries) = super::plan(
        &config.source,
        &selection,
        &config.destination,
        "nothing was uploaded",
    ) else {
        return Ok(ExitCode::Fatal);
    };
    let mirror = config
        .delete
        .then(|| delete::Mirror::prepare(config, &selection, &entries));
    let (mut stored, open_uploads) = already_stored(config)?;
    let cache = open_or_warn(config.cache.dir(&env));
    let hash = HashOptions {
        cache: cache.clone(),
        max_size: Some(crate::remote::resolve::size_limit(&config.destination)),
        ..config.source.hash.clone()
    };
    if config.dry_run {
        // With --delete the destination is listed (the embedded store started for it, with
        // the names' groups), and with --check-remote; otherwise no copy of the names is made.
        let names = match reach.is_some() {
            true => names(&entries),
            false => Vec::new(),
        };
        let reach = match (config.check_remote, reach) {
            (true, Some(reach)) => {
                // The listing is asked here; --delete's (if any) resolves the destination again.
                let listing = dry_run_listing(config, reach, &names)?;
                stored.add_listing(listing, true, config.skip_existing);
                Reach::resolve(
                    &config.destination,
                    config.network.cacert.as_deref(),
                    false,
                    &env,
                )
                .ok()
            }
            (_, reach) => reach,
        };
        let printed = dry_run(entries, &hash, &stored);
        save_or_warn(cache.as_deref());
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
        let deleting = dry_run_deletions(config, &mirror, reach, &names, incomplete)?;
        return Ok(worse(code, deleting));
    }
    let reach = reach.expect("only a dry run without --delete leaves the destination unresolved");

    // From here on a Ctrl-C or SIGTERM is a request to stop cleanly.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A third Ctrl-C means something is stuck: the run is dropped where it stands.
    let (give_up, given_up) = tokio::sync::oneshot::channel::<()>();
    let stop = {
        let _context = runtime.enter();
        let (stop_tx, stop) = tokio::sync::watch::channel(StopLevel::Run);
        if let Some(signals) = StopSignals::install() {
            tokio::spawn(signals.listen(stop_tx, give_up));
        }
        stop
    };
    if let Some(token) = reach.api_token() {
        report::warn_if_token_outlived(token, &entries, &hash);
    }
    let manifest = Arc::new(open_manifest(config)?);
    gone::journal(config, stored.manifests(), &selection, &entries, &manifest);
    let options = PipelineOptions {
        hash,
        uploads: config.uploads.within(crate::limit::uploads_that_fit()),
        requests: Requests::new(config.network.retry(), stop.clone()),
        progress: progress_style(config),
        stored: Arc::default(),
        drain_timeout: config.drain_timeout,
        multipart: None,
        // With --delete, the summary waits for the deletions it counts.
        journal_summary: mirror.is_none(),
    };
    let planned = entries.len() as u64;
    let journal = Journal {
        manifest: manifest.clone(),
        stored,
        open_uploads,
    };
    let stopped = stop.clone();
    let ran = runtime.block_on(async {
        tokio::select! {
            ran = upload(config, reach, entries, journal, options, mirror, stop) => Some(ran),
            Ok(()) = given_up => None,
        }
    });
    // Uploads aborted by a second Ctrl-C may still hold a connection: don't wait for them.
    runtime.shutdown_background();
    let Some(ran) = ran else {
        eprintln!(
            "hashup: interrupted three times: exiting now; the manifest may lack its summary"
        );
        return Ok(ExitCode::Interrupted);
    };
    save_or_warn(cache.as_deref());
    let (report, deleting) = match ran {
        Ok(ran) => ran,
        // A step before the pipeline (--skip-existing's listing) cut short by a stop request:
        // interrupted, not a failure of the destination; its message says so.
        Err(err) if *stopped.borrow() > StopLevel::Run => {
            eprintln!("hashup: {err:#}");
            // Nothing was taken up: the manifest still says how the run ended.
            let mut summary = crate::manifest::Summary {
                not_started: planned,
                stopped: Some(pipeline::INTERRUPTED.into()),
                ..Default::default()
            };
            pipeline::write_summary(&manifest, &mut summary);
            return Ok(ExitCode::Interrupted);
        }
        Err(err) => return Err(err),
    };
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
    names: &[String],
    incomplete: Option<String>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let requests = Requests::unstoppable(config.network.retry());
    let code = runtime.block_on(async {
        let names = names.iter().map(String::as_str);
        let remote =
            Remote::connect(reach, names, config.network.timeouts(), requests.clone()).await?;
        let (_, code) = mirror
            .run(
                &remote,
                incomplete,
                true,
                &Manifest::none(),
                requests.stop().clone(),
            )
            .await;
        remote.close().await?;
        anyhow::Ok(code)
    })?;
    runtime.shutdown_background();
    Ok(code)
}

/// `--dry-run --check-remote`: the destination's listing, asked before anything is hashed.
fn dry_run_listing(
    config: &UploadConfig,
    reach: Reach,
    names: &[String],
) -> anyhow::Result<crate::remote::Listing> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let requests = Requests::unstoppable(config.network.retry());
    let listing = runtime.block_on(async {
        let names = names.iter().map(String::as_str);
        let remote =
            Remote::connect(reach, names.clone(), config.network.timeouts(), requests).await?;
        let prefix = config.source.naming.prefix.as_deref();
        let listing = remote.list(names, prefix).await;
        remote.close().await?;
        listing.map_err(|err| anyhow::anyhow!("--check-remote: cannot list what is stored: {err}"))
    })?;
    runtime.shutdown_background();
    for (_, why) in &listing.refused {
        eprintln!("hashup: warning: {why}; its files are not checked against the listing");
    }
    Ok(listing)
}

/// The object names of the planned files.
fn names(entries: &Plan) -> Vec<String> {
    entries
        .iter()
        .flatten()
        .filter_map(|e| e.name.to_str().map(str::to_string))
        .collect()
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
    entries: Plan,
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
    // The names borrowed from the plan: no copy per file.
    let names = || entries.iter().flatten().filter_map(|e| e.name.to_str());
    let remote = Remote::connect(
        reach,
        names(),
        config.network.timeouts(),
        options.requests.clone(),
    )
    .await?;
    let mut storage = remote.storage()?;
    if let Some(schedule) = &config.bwlimit {
        storage = storage.capped(Arc::new(Bandwidth::new(schedule.clone())));
    }
    let presigner = remote.presigner();
    let multipart = MultipartOptions {
        threshold: config.multipart_threshold,
        part_size: config.part_size,
        parts_in_flight: config.parts_in_flight,
    };
    if let Some(multipart) = remote.multipart(multipart, manifest.clone(), open_uploads)? {
        multipart.sweep(config.restart, SystemTime::now()).await;
        options.multipart = Some(Arc::new(multipart));
    }
    if config.skip_existing || config.check_remote {
        let flag = match config.check_remote {
            true => "--check-remote",
            false => "--skip-existing",
        };
        let prefix = config.source.naming.prefix.as_deref();
        let listing = remote
            .list(names(), prefix)
            .await
            .map_err(|err| match err {
                RemoteError::Stopped(last) => anyhow::anyhow!(
                    "interrupted while listing what is stored ({flag}); last attempt: {last}"
                ),
                err => anyhow::anyhow!("{flag}: cannot list what is stored: {err}"),
            })?;
        for (_, why) in &listing.refused {
            eprintln!("hashup: warning: {why}; its files are not checked against the listing");
        }
        stored.add_listing(listing, config.check_remote, config.skip_existing);
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
                let _ = tokio::task::spawn_blocking(move || save_or_warn(Some(&cache))).await;
            }
        })
    });
    let multipart = options.multipart.clone();
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
            if let Some(mirror) = mirror {
                let incomplete = crate::mirror::incomplete(&report.summary, report.interrupted);
                let (summary, code) = mirror
                    .run(&remote, incomplete, false, &manifest, stop)
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
    remote.close().await?;
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
/// the manifest about to be truncated, as far as it reads, so that they are aborted.) The
/// manifests are read into an index, not kept whole ([`crate::manifest::index`]).
fn already_stored(config: &UploadConfig) -> anyhow::Result<(AlreadyStored, Vec<OpenUpload>)> {
    // Only a listing of the destination is compared with the recorded ETags.
    let listed = config.skip_existing || config.check_remote;
    let mut index = index::Builder::new(&config.source.paths).etags(listed);
    for path in &config.previous {
        index
            .read(path, Role::Previous)
            .with_context(|| format!("cannot read --previous {}", path.display()))?;
    }
    let restarted = match &config.manifest {
        Some(path) if config.restart => Some(index::open_uploads(path).unwrap_or_default()),
        Some(path) => match index.read(path, Role::Resumed) {
            Ok(()) => None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot resume from manifest {}: {err}; --restart starts it afresh",
                    path.display()
                ));
            }
        },
        None => None,
    };
    let mut index = index.finish();
    let open = restarted.unwrap_or_else(|| index.take_open_uploads());
    Ok((AlreadyStored::new(index), open))
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

    /// Raises the stop level on each signal: drain, then abort; a third one gives the run up
    /// at once (something is stuck): the command returns without waiting for it.
    async fn listen(
        mut self,
        stop: tokio::sync::watch::Sender<StopLevel>,
        give_up: tokio::sync::oneshot::Sender<()>,
    ) {
        for level in [StopLevel::Drain, StopLevel::Abort] {
            self.next().await;
            let _ = stop.send(level);
        }
        self.next().await;
        let _ = give_up.send(());
    }
}

/// `--dry-run`: `<sha256>  <object name>` per file that would be sent, in walk order; files the
/// manifests (`--manifest`, `--previous`) record as uploaded are left out and counted. No
/// network, so `--skip-existing`'s listing is not asked. The files that failed, or `None`
/// when stdout was closed.
fn dry_run(
    entries: Plan,
    hash: &crate::hash::HashOptions,
    stored: &AlreadyStored,
) -> anyhow::Result<Option<u64>> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0;
    let mut already = 0u64;
    for result in Hasher::spawn(entries, hash)?.in_order() {
        match result {
            Ok(file) => {
                let decision =
                    stored.decide(&file.name.to_string_lossy(), file.stamp.size, &file.hex());
                let why = match decision {
                    crate::skip::Decision::Stored { .. } => {
                        already += 1;
                        continue;
                    }
                    crate::skip::Decision::Send(why) => why,
                };
                if let Some(why) = why {
                    let _ = out.flush();
                    eprintln!(
                        "hashup: {}: would send again: {why}",
                        crate::message::shown_path(&file.path)
                    );
                }
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
        let checked = match stored.checks_remote() {
            true => " and the destination's listing agrees",
            false => "",
        };
        eprintln!(
            "hashup: {already} files left out: the manifests record them as uploaded{checked}"
        );
    }
    Ok(Some(failed))
}
