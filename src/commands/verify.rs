//! `hashup verify`: resolve the destination as `upload` does, plan the local files' names as
//! `upload` does (or read what a manifest records), hash through the hash cache, look every
//! object up ([`crate::verify`]) and report like `sha256sum -c`.

use std::collections::HashMap;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::Context as _;
use serde::Serialize;

use super::keep_writing;
use crate::config::VerifyConfig;
use crate::exit::ExitCode;
use crate::hash::cache::{HashCache, open_or_warn, save_or_warn};
use crate::hash::{FileEntry, FileError, HashOptions, HashResult, Hasher};
use crate::limit::Limiter;
use crate::progress::human_bytes;
use crate::remote::{KeyRule, Reach, Remote};
use crate::request::Requests;
use crate::select::Selection;
use crate::verify::{self, Checked, Evidence, Expected, Item, Report, Store, Verdict};

/// Runs `hashup verify`: usage, credentials and names are checked before any request.
pub fn run(config: &VerifyConfig) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let local = !config.source.paths.is_empty() || config.source.select.files_from.is_some();
    if !local && config.manifest.is_none() {
        anyhow::bail!("nothing to verify: give PATHs, --files-from or --manifest");
    }
    if !local
        && (config.source.select != Default::default()
            || config.source.naming != Default::default()
            || config.source.walk.follow_links)
    {
        anyhow::bail!(
            "selection and naming flags choose and name local files: give PATHs with them \
             (without PATHs, what --manifest records is checked as recorded)"
        );
    }
    let selection = local
        .then(|| {
            Selection::prepare(
                &config.source.select,
                SystemTime::now(),
                env,
                io::stdin().lock(),
            )
        })
        .transpose()?;
    let reach = Reach::resolve(
        &config.destination,
        config.network.cacert.as_deref(),
        true,
        &env,
    )?;
    let journal = match &config.manifest {
        // The error names the file (and the line).
        Some(path) => Some(crate::manifest::read(path).map_err(|err| {
            anyhow::anyhow!("--manifest: {}", crate::message::plain_io_message(&err))
        })?),
        None => None,
    };
    let plan = match &selection {
        Some(selection) => {
            let Some(entries) = super::plan(
                &config.source,
                selection,
                &config.destination,
                "nothing was verified",
            ) else {
                return Ok(ExitCode::Fatal);
            };
            Plan::Files(entries)
        }
        None => {
            let journal = journal.as_ref().expect("checked above");
            let (recorded, left_out) = verify::recorded(journal);
            Plan::Recorded { recorded, left_out }
        }
    };
    let composites = journal.as_ref().map(verify::composites).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The hash cache is opened once the lookups say local files are to be hashed.
    let mut cache = None;
    let result = runtime.block_on(check(
        config,
        reach,
        plan,
        composites,
        (config.cache.dir(&env), &mut cache),
    ));
    runtime.shutdown_background();
    save_or_warn(cache.as_deref());
    result
}

/// What is checked: local files, or what a manifest records.
enum Plan {
    Files(crate::naming::Plan),
    Recorded {
        recorded: Vec<verify::Recorded>,
        left_out: usize,
    },
}

impl Plan {
    fn names(&self) -> Vec<&str> {
        match self {
            Plan::Files(entries) => entries
                .iter()
                .flatten()
                .filter_map(|e| e.name.to_str())
                .collect(),
            Plan::Recorded { recorded, .. } => recorded.iter().map(|r| r.name.as_str()).collect(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Plan::Files(entries) => entries.len(),
            Plan::Recorded { recorded, .. } => recorded.len(),
        }
    }
}

/// What was read of the local files.
#[derive(Debug, Default)]
struct LocalTally {
    /// Files read and hashed.
    read: AtomicU64,
    /// Their bytes.
    bytes: AtomicU64,
    /// Files answered by the hash cache.
    cached: AtomicU64,
}

/// The async part: the store, the item source, the lookups, the output. Local files are
/// hashed (through the hash cache in `cache.0`, opened into `cache.1`) only where the lookups
/// can tell a SHA-256 to compare with.
async fn check(
    config: &VerifyConfig,
    reach: Reach,
    plan: Plan,
    composites: HashMap<(String, String), String>,
    cache: (Option<PathBuf>, &mut Option<Arc<HashCache>>),
) -> anyhow::Result<ExitCode> {
    let timeouts = config.network.timeouts();
    let retry = config.network.retry();
    let requests = config.requests.within(crate::limit::uploads_that_fit());
    let limiter = Limiter::new(requests);
    // verify has no Ctrl-C handling of its own: the default action ends it.
    let sending = Requests::unstoppable(retry).telling(limiter.clone());
    let remote = Remote::connect(reach, plan.names(), timeouts, sending).await?;
    // Through the API the listings are fetched here, once; the embedded store is then done.
    let lookups = remote.lookups(plan.names()).await;
    let keys = remote.key_rule();
    remote.close().await?;
    let lookups = lookups.map_err(anyhow::Error::msg)?;
    let hashes = lookups.tell_sha256();
    let hashed = hashes && matches!(plan, Plan::Files(_));
    if hashed {
        *cache.1 = open_or_warn(cache.0);
    }
    let cache = cache.1.clone();
    let store: Arc<dyn Store> = Arc::new(lookups);

    let planned = plan.len() as u64;
    let local = Arc::new(LocalTally::default());
    let (left_out, source): (usize, Box<dyn Iterator<Item = Item> + Send>) = match plan {
        Plan::Recorded { recorded, left_out } => (
            left_out,
            Box::new(recorded.into_iter().map(move |r| recorded_item(r, &keys))),
        ),
        Plan::Files(entries) if hashes => {
            let hash = HashOptions {
                cache,
                max_size: Some(crate::remote::resolve::size_limit(&config.destination)),
                ..config.source.hash.clone()
            };
            let local = local.clone();
            let hashed = Hasher::spawn(entries, &hash).context("cannot start hashing threads")?;
            (
                0,
                Box::new(
                    hashed
                        .in_order()
                        .map(move |r| hashed_item(r, &keys, &composites, &local)),
                ),
            )
        }
        // The listing has sizes only: a stat per file, no read.
        Plan::Files(entries) => (
            0,
            Box::new(
                entries
                    .into_iter()
                    .map(move |entry| sized_item(entry, &keys)),
            ),
        ),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let feeder = tokio::task::spawn_blocking(move || {
        for item in source {
            if tx.blocking_send(item).is_err() {
                return; // the run stopped
            }
        }
    });

    let mut output = Output::new(config, planned);
    let result = verify::run(rx, store, limiter, requests.ceiling(), |report| {
        output.emit(report)
    })
    .await;
    output.finish();
    // A feeder still running stops at its next send: the receiver is gone.
    drop(feeder);
    result?;
    if let Some(err) = output.error.take() {
        return Err(err).context("cannot write to standard output");
    }
    if output.closed {
        return Ok(ExitCode::Success);
    }
    let local = LocalCounts {
        read: local.read.load(Ordering::Relaxed),
        bytes: local.bytes.load(Ordering::Relaxed),
        cached: local.cached.load(Ordering::Relaxed),
        hashed,
    };
    if !config.quiet {
        output.summary(&local, left_out)?;
    }
    Ok(output.tally.exit_code())
}

/// An item for a file hashed (or answered by the cache) in direct S3 mode.
fn hashed_item(
    result: HashResult,
    keys: &KeyRule,
    composites: &HashMap<(String, String), String>,
    local: &LocalTally,
) -> Item {
    let file = match result {
        Ok(file) => file,
        Err(err) => return error_item(err),
    };
    if file.cached {
        local.cached.fetch_add(1, Ordering::Relaxed);
    } else {
        local.read.fetch_add(1, Ordering::Relaxed);
        local.bytes.fetch_add(file.stamp.size, Ordering::Relaxed);
    }
    let name = file.name.to_string_lossy().into_owned();
    let composite = composites.get(&(name.clone(), file.hex())).cloned();
    Item::Check(Expected {
        key: keys.key(&name),
        name,
        path: Some(file.path),
        size: file.stamp.size,
        sha256: Some(file.sha256),
        composite,
    })
}

/// An item for a file whose size alone is compared (through the PROMINENCE API).
fn sized_item(entry: Result<FileEntry, FileError>, keys: &KeyRule) -> Item {
    let entry = match entry {
        Ok(entry) => entry,
        Err(err) => return error_item(err),
    };
    let meta = if entry.follow {
        std::fs::metadata(&entry.path)
    } else {
        std::fs::symlink_metadata(&entry.path)
    };
    match meta {
        Ok(meta) if meta.is_file() => {
            let name = entry.name.to_string_lossy().into_owned();
            Item::Check(Expected {
                key: keys.key(&name),
                name,
                path: Some(entry.path),
                size: meta.len(),
                sha256: None,
                composite: None,
            })
        }
        Ok(meta) => error_item(FileError {
            kind: crate::hash::FileErrorKind::Skipped(crate::hash::SkipReason::special(
                meta.file_type(),
            )),
            path: entry.path,
            name: entry.name,
        }),
        Err(err) => error_item(FileError {
            path: entry.path,
            name: entry.name,
            kind: crate::hash::FileErrorKind::Io(err),
        }),
    }
}

/// A local entry that could not be checked: skipped (a notice) or unreadable (a failure).
fn error_item(err: FileError) -> Item {
    if err.is_skip() {
        return Item::Ready(Report::Skipped(err.to_string()));
    }
    Item::Ready(Report::Checked(Box::new(Checked::failed(
        err.name.to_string_lossy().into_owned(),
        Some(err.path.clone()),
        Verdict::Unreadable(err.to_string()),
    ))))
}

/// An item for what a manifest records: its name must be one an upload could have made.
fn recorded_item(recorded: verify::Recorded, keys: &KeyRule) -> Item {
    let path = Some(PathBuf::from(&recorded.path));
    if let Err(why) = crate::keys::check_object_name(&recorded.name) {
        return Item::Ready(Report::Checked(Box::new(Checked::failed(
            recorded.name,
            path,
            Verdict::Failed(format!("the manifest's name is unusable: {why}")),
        ))));
    }
    let sha256 = hex::decode(&recorded.sha256)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok());
    let Some(sha256) = sha256 else {
        return Item::Ready(Report::Checked(Box::new(Checked::failed(
            recorded.name,
            path,
            Verdict::Failed("the manifest's sha256 is not a SHA-256".into()),
        ))));
    };
    Item::Check(Expected {
        key: keys.key(&recorded.name),
        name: recorded.name,
        path,
        size: recorded.size,
        sha256: Some(sha256),
        composite: recorded.composite,
    })
}

/// Counts of outcomes.
#[derive(Debug, Default, Serialize)]
struct Tally {
    ok: u64,
    missing: u64,
    differs: u64,
    failed: u64,
    skipped: u64,
    /// `OK`s by evidence.
    #[serde(skip)]
    evidence: HashMap<Evidence, u64>,
}

impl Tally {
    fn exit_code(&self) -> ExitCode {
        if self.missing + self.differs + self.failed > 0 {
            ExitCode::SomeFailed
        } else {
            ExitCode::Success
        }
    }
}

/// What was read of the local files, for the summary.
struct LocalCounts {
    read: u64,
    bytes: u64,
    cached: u64,
    /// Local files were hashed at all (direct S3 mode with PATHs).
    hashed: bool,
}

/// Results on standard output, notices and the summary on standard error, and a bar on a
/// terminal.
struct Output {
    out: io::BufWriter<io::Stdout>,
    json: bool,
    quiet: bool,
    /// Flush each line (a person is watching standard output).
    interactive: bool,
    bar: Option<indicatif::ProgressBar>,
    tally: Tally,
    /// Standard output went away (a closed pipe): stop quietly.
    closed: bool,
    error: Option<io::Error>,
}

impl Output {
    fn new(config: &VerifyConfig, planned: u64) -> Output {
        let interactive = io::stdout().is_terminal();
        let bar = (!config.quiet && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(planned),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise:.dim} {wide_bar:.cyan/blue} {pos}/{len} objects, ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Output {
            out: io::BufWriter::with_capacity(64 << 10, io::stdout()),
            json: config.json,
            quiet: config.quiet,
            interactive,
            bar,
            tally: Tally::default(),
            closed: false,
            error: None,
        }
    }

    /// One result; `false` once standard output is gone.
    fn emit(&mut self, report: Report) -> bool {
        let checked = match report {
            Report::Skipped(notice) => {
                self.tally.skipped += 1;
                self.stderr(&format!("hashup: {notice}"));
                return true;
            }
            Report::Checked(checked) => checked,
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        match &checked.verdict {
            Verdict::Ok(evidence) => {
                self.tally.ok += 1;
                *self.tally.evidence.entry(*evidence).or_default() += 1;
            }
            Verdict::Missing => self.tally.missing += 1,
            Verdict::Differs(_) => self.tally.differs += 1,
            Verdict::Failed(_) => self.tally.failed += 1,
            Verdict::Unreadable(why) => {
                self.tally.failed += 1;
                self.stderr(&format!("hashup: {why}"));
            }
        }
        if self.quiet && matches!(checked.verdict, Verdict::Ok(_)) {
            return true;
        }
        let mut line = Vec::new();
        let written = if self.json {
            serde_json::to_writer(&mut line, &JsonLine::of(&checked))
                .map_err(io::Error::other)
                .and_then(|()| line.write_all(b"\n"))
        } else {
            write_line(&mut line, &checked)
        };
        written.expect("writing to a Vec");
        self.stdout(&line)
    }

    /// Writes to standard output (around the bar when both are the terminal).
    fn stdout(&mut self, bytes: &[u8]) -> bool {
        let out = &mut self.out;
        let interactive = self.interactive;
        let mut write = || {
            out.write_all(bytes)?;
            if interactive { out.flush() } else { Ok(()) }
        };
        let result = match (&self.bar, interactive) {
            (Some(bar), true) => bar.suspend(write),
            _ => write(),
        };
        match keep_writing(result) {
            Ok(true) => true,
            Ok(false) => {
                self.closed = true;
                false
            }
            Err(err) => {
                self.error = Some(err);
                false
            }
        }
    }

    /// A line on standard error, after what standard output holds so far.
    fn stderr(&mut self, line: &str) {
        let _ = self.out.flush();
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.closed && self.error.is_none() {
            match keep_writing(self.out.flush()) {
                Ok(true) => {}
                Ok(false) => self.closed = true,
                Err(err) => self.error = Some(err),
            }
        }
    }

    /// `hashup: 3 OK, 1 MISSING, 1 DIFFERS`, what was read, and what the OKs rest on; with
    /// `--json`, also a `{"summary": ...}` line on standard output.
    fn summary(&mut self, local: &LocalCounts, left_out: usize) -> io::Result<()> {
        let t = &self.tally;
        let mut line = if t.ok + t.missing + t.differs + t.failed == 0 {
            "hashup: nothing to verify: no files".to_string()
        } else {
            format!("hashup: {} OK", t.ok)
        };
        for (n, what) in [
            (t.missing, "MISSING"),
            (t.differs, "DIFFERS"),
            (t.failed, "FAILED"),
            (t.skipped, "skipped"),
        ] {
            if n > 0 {
                line += &format!(", {n} {what}");
            }
        }
        let mut lines = vec![line];
        if local.hashed {
            lines.push(format!(
                "hashup: hashed {} ({} read, {} from the hash cache)",
                human_bytes(local.bytes),
                files(local.read),
                local.cached
            ));
        }
        let by = |e: Evidence| t.evidence.get(&e).copied().unwrap_or(0);
        if by(Evidence::Size) > 0 {
            lines.push(format!(
                "hashup: note: {} checked by size only: the destination lists names and sizes, \
                 no checksums",
                by(Evidence::Size)
            ));
        }
        if by(Evidence::Metadata) > 0 {
            lines.push(format!(
                "hashup: note: {} checked by prominence_sha256 only: multipart objects cut in \
                 parts other than hashup's default size (--manifest gives the upload's \
                 composite checksum)",
                by(Evidence::Metadata)
            ));
        }
        if left_out > 0 {
            lines.push(format!(
                "hashup: note: {left_out} names in the manifest not checked: their latest \
                 record says the upload failed (hashup manifest summary lists them)"
            ));
        }
        if t.missing + t.differs > 0 {
            lines.push(
                "hashup: the upload command with --check-remote added sends what is missing or \
                 differs again"
                    .into(),
            );
        }
        if self.json {
            #[derive(Serialize)]
            struct Summary<'a> {
                #[serde(flatten)]
                tally: &'a Tally,
                evidence: std::collections::BTreeMap<&'static str, u64>,
                files_read: u64,
                bytes_hashed: u64,
                cached: u64,
                not_checked: usize,
            }
            let summary = Summary {
                tally: t,
                evidence: Evidence::ALL
                    .into_iter()
                    .map(|e| (e.as_str(), by(e)))
                    .collect(),
                files_read: local.read,
                bytes_hashed: local.bytes,
                cached: local.cached,
                not_checked: left_out,
            };
            let mut text = serde_json::to_vec(&serde_json::json!({ "summary": summary }))?;
            text.push(b'\n');
            if !keep_writing(self.out.write_all(&text).and_then(|()| self.out.flush()))? {
                return Ok(());
            }
        }
        for line in lines {
            eprintln!("{line}");
        }
        Ok(())
    }
}

/// `1 file`, `2 files`.
fn files(n: u64) -> String {
    match n {
        1 => "1 file".into(),
        n => format!("{n} files"),
    }
}

/// `name: OK`, `name: MISSING`, `name: DIFFERS (size 10 ≠ 12)`, `name: FAILED (why)`,
/// `name: FAILED open or read`, escaped like `hashup hash -c` (names that cannot be object names
/// are shown with their control characters escaped).
fn write_line(out: &mut Vec<u8>, checked: &Checked) -> io::Result<()> {
    let shown = crate::message::shown(&checked.name);
    crate::sumfile::write_check_prefix(out, Path::new(shown.as_ref()))?;
    match &checked.verdict {
        Verdict::Ok(Evidence::Checksum | Evidence::Composite) => writeln!(out, "OK"),
        Verdict::Ok(Evidence::Metadata) => writeln!(out, "OK (prominence_sha256 only)"),
        Verdict::Ok(Evidence::Size) => writeln!(out, "OK (size only)"),
        Verdict::Missing => writeln!(out, "MISSING"),
        Verdict::Differs(how) => writeln!(out, "DIFFERS ({how})"),
        Verdict::Failed(why) => writeln!(out, "FAILED ({why})"),
        Verdict::Unreadable(_) => writeln!(out, "FAILED open or read"),
    }
}

/// One `--json` line.
#[derive(Serialize)]
struct JsonLine<'a> {
    name: &'a str,
    key: Option<&'a str>,
    path: Option<String>,
    status: &'static str,
    size_local: Option<u64>,
    size_stored: Option<u64>,
    sha256_local: Option<String>,
    sha256_stored: Option<&'a str>,
    checksum_stored: Option<&'a str>,
    evidence: Option<&'static str>,
    detail: Option<String>,
}

impl<'a> JsonLine<'a> {
    fn of(c: &'a Checked) -> JsonLine<'a> {
        let stored = c.stored.as_ref();
        JsonLine {
            name: &c.name,
            key: c.key.as_deref(),
            path: c.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
            status: c.verdict.status(),
            size_local: c.size,
            size_stored: stored.map(|s| s.size),
            sha256_local: c.sha256.map(hex::encode),
            sha256_stored: stored.and_then(|s| s.sha256.as_deref()),
            checksum_stored: stored.and_then(|s| s.checksum.as_deref()),
            evidence: match &c.verdict {
                Verdict::Ok(evidence) => Some(evidence.as_str()),
                _ => None,
            },
            detail: match &c.verdict {
                Verdict::Ok(_) | Verdict::Missing => None,
                Verdict::Differs(how) => Some(how.to_string()),
                Verdict::Failed(why) | Verdict::Unreadable(why) => Some(why.clone()),
            },
        }
    }
}
