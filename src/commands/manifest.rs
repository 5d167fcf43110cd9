//! `hashup manifest summary|merge|diff`: manifests read back, for the person who looks at last
//! night's run in the morning (plain lines) and for scripts (exit codes, `--json`).
//!
//! `summary` tells two things apart: the latest run, from the summary line that ends the file
//! (what last night did), and each name's state over all runs, from its latest record (what is
//! stored now). A file holding several appended runs (or a merged one) counts every name once
//! there. A name `--delete` deleted after its latest record counts as deleted (or, where its
//! DELETE failed, as not deleted), not as stored; a name a run found gone locally is still
//! stored, and is named.
//!
//! `merge` and `diff` count each name's latest record too.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::config::ManifestConfig;
use crate::exit::ExitCode;
use crate::manifest::{self, DeleteSummary, Deleted, Journal, Presence, Record, Status, Summary};
use crate::message::{server_text, shown};
use crate::progress::human_bytes;
use crate::sumfile;

/// Runs `hashup manifest ...`.
pub fn run(config: &ManifestConfig) -> anyhow::Result<ExitCode> {
    match config {
        ManifestConfig::Summary { files, json } => summary(files, *json),
        ManifestConfig::Merge {
            inputs,
            output,
            expect,
        } => merge(inputs, output.as_deref(), expect.as_deref()),
        ManifestConfig::Diff { old, new } => diff(old, new),
    }
}

/// Counts over a set of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct Totals {
    files: u64,
    uploaded: u64,
    failed: u64,
    skipped: u64,
    /// Bytes uploaded.
    bytes: u64,
}

impl Totals {
    fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Totals {
        let mut totals = Totals::default();
        for record in records {
            totals.files += 1;
            match record.status {
                Status::Uploaded => {
                    totals.uploaded += 1;
                    totals.bytes += record.size.unwrap_or(0);
                }
                Status::Failed => totals.failed += 1,
                Status::Skipped => totals.skipped += 1,
            }
        }
        totals
    }

    /// `3 files: 2 uploaded (1.2 MB), 1 failed, 0 skipped`
    fn line(&self) -> String {
        format!(
            "{}: {} uploaded ({}), {} failed, {} skipped",
            count(self.files, "file"),
            self.uploaded,
            human_bytes(self.bytes),
            self.failed,
            self.skipped
        )
    }
}

/// `1 file`, `2 files`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first characters of a checksum, enough to tell two apart by eye (by characters, not
/// bytes: a reader may have let anything through).
fn short(sha256: &str) -> String {
    format!(
        "{}..",
        server_text(&sha256.chars().take(8).collect::<String>())
    )
}

/// A recorded error as printed: one line of plain text ([`server_text`]).
fn error_text(error: Option<&str>) -> String {
    error.map_or_else(|| "(no error recorded)".into(), server_text)
}

fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// Writes to stdout through `write`; a closed stdout ends quietly (`Ok(false)`).
fn to_stdout(write: impl FnOnce(&mut dyn io::Write) -> io::Result<()>) -> io::Result<bool> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if !super::keep_writing(write(&mut out))? {
        return Ok(false);
    }
    super::keep_writing(out.flush())
}

// ---------------------------------------------------------------------------------------------
// summary

/// Gone names listed one a line in plain output; `--json` lists them all.
const GONE_SHOWN: usize = 10;

/// One manifest's summary, as `--json` prints it. The keys from before `latest_run` and `names`
/// keep their meaning: `files` to `bytes` count each name's latest record over all runs,
/// `elapsed_ms`, `finished` and `stopped` are the latest run's.
#[derive(Debug, Serialize)]
struct Report<'a> {
    manifest: String,
    #[serde(flatten)]
    totals: Totals,
    /// The last run's wall time, from its summary line.
    elapsed_ms: Option<u64>,
    /// Whether the file ends with a summary line.
    finished: bool,
    stopped: Option<&'a str>,
    runs: usize,
    torn_line: Option<usize>,
    failures: Vec<Failure<'a>>,
    /// Objects `--delete` deleted.
    deleted: u64,
    /// Objects `--delete` failed to delete.
    delete_failures: Vec<Failure<'a>>,
    /// Why the last run's `--delete` deleted nothing (or stopped), from its summary line.
    delete_stopped: Option<&'a str>,
    /// The latest run's summary line as written; `None` when the file ends without one.
    latest_run: Option<&'a Summary>,
    /// Each name's state over all runs.
    names: Names,
    /// The names gone locally and still stored, with when a run found each gone.
    gone: Vec<&'a Presence>,
}

/// Each name's state by its latest record over all runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct Names {
    /// Names stored: the latest record uploaded, or skipped with a SHA-256 (already stored).
    stored: u64,
    /// Their bytes.
    stored_bytes: u64,
    /// Names whose latest attempt failed.
    failed: u64,
    /// Names last skipped as not regular files: nothing stored.
    skipped: u64,
    /// Stored names gone locally.
    gone: u64,
}

#[derive(Debug, Serialize)]
struct Failure<'a> {
    name: &'a str,
    error: Option<&'a str>,
}

impl<'a> Report<'a> {
    fn new(manifest: String, journal: &'a Journal) -> Report<'a> {
        let latest = journal.latest();
        let stored = journal.stored();
        let gone_lines = journal.gone();
        let gone: Vec<&Presence> = stored
            .keys()
            .filter_map(|name| gone_lines.get(name).copied())
            .collect();
        let totals = Totals::of(latest.values().copied());
        let names = Names {
            stored: stored.len() as u64,
            stored_bytes: stored.values().map(|r| r.size.unwrap_or(0)).sum(),
            failed: totals.failed,
            skipped: latest
                .values()
                .filter(|r| r.status == Status::Skipped && r.sha256.is_none())
                .count() as u64,
            gone: gone.len() as u64,
        };
        Report {
            manifest,
            totals,
            elapsed_ms: journal.summary.as_ref().map(|s| s.elapsed_ms),
            finished: journal.summary.is_some(),
            stopped: journal.summary.as_ref().and_then(|s| s.stopped.as_deref()),
            runs: journal.runs,
            torn_line: journal.torn,
            failures: latest
                .values()
                .filter(|r| r.status == Status::Failed)
                .map(|r| Failure {
                    name: &r.name,
                    error: r.error.as_deref(),
                })
                .collect(),
            deleted: journal
                .deletions()
                .values()
                .filter(|d| d.error.is_none())
                .count() as u64,
            delete_failures: journal
                .deletions()
                .into_values()
                .filter_map(|d| {
                    Some(Failure {
                        name: &d.name,
                        error: Some(d.error.as_deref()?),
                    })
                })
                .collect(),
            delete_stopped: journal
                .summary
                .as_ref()
                .and_then(|s| s.delete.as_ref()?.stopped.as_deref()),
            latest_run: journal.summary.as_ref(),
            names,
            gone,
        }
    }

    /// Failures, a stop, or no summary: the run did not do all its work.
    fn exit_code(&self) -> ExitCode {
        if self.totals.failed > 0
            || !self.finished
            || self.stopped.is_some()
            || !self.delete_failures.is_empty()
            || self.delete_stopped.is_some()
        {
            ExitCode::SomeFailed
        } else {
            ExitCode::Success
        }
    }

    /// Plain lines, each starting with the manifest's name: the latest run, then each name's
    /// state over all runs, then what needs a look (failures, names gone locally, deletions).
    fn lines(&self) -> Vec<String> {
        let m = &self.manifest;
        let mut lines = vec![
            format!("{m}: latest run: {}", self.latest_run_line()),
            format!("{m}: {}", self.names_line()),
        ];
        if let Some(line) = self.torn_line {
            lines.push(format!(
                "{m}:{line}: torn last line ignored (cut off while it was written)"
            ));
        }
        for failure in &self.failures {
            lines.push(format!(
                "{m}: failed: {}: {}",
                shown(failure.name),
                error_text(failure.error)
            ));
        }
        for gone in self.gone.iter().take(GONE_SHOWN) {
            lines.push(format!("{m}: gone locally: {}", shown(&gone.name)));
        }
        if self.gone.len() > GONE_SHOWN {
            lines.push(format!(
                "{m}: ... and {} more gone locally (--json lists them all)",
                self.gone.len() - GONE_SHOWN
            ));
        }
        if let Some(why) = self.delete_stopped {
            lines.push(format!("{m}: --delete: {}", server_text(why)));
        }
        for failure in &self.delete_failures {
            lines.push(format!(
                "{m}: not deleted: {}: {}",
                shown(failure.name),
                error_text(failure.error)
            ));
        }
        lines
    }

    /// `3 files: 1 uploaded (6 B), 0 failed, 2 skipped (2 unchanged since uploaded); finished
    /// in 0.04 s`, from the summary line that ends the file.
    fn latest_run_line(&self) -> String {
        let Some(s) = self.latest_run else {
            return "no summary line: the run did not finish (killed, or still running)".into();
        };
        let how = match &s.stopped {
            None => format!("finished in {}", seconds(s.elapsed_ms)),
            Some(why) => format!(
                "stopped early after {}: {}",
                seconds(s.elapsed_ms),
                server_text(why)
            ),
        };
        let deletions = match &s.delete {
            Some(d) if d.failed > 0 => format!(", {} deleted, {} not deleted", d.deleted, d.failed),
            Some(d) if d.deleted > 0 => format!(", {} deleted", d.deleted),
            _ => String::new(),
        };
        let delete_stopped = s.delete.as_ref().is_some_and(|d| d.stopped.is_some());
        if s.files == 0
            && s.not_started == 0
            && s.stopped.is_none()
            && deletions.is_empty()
            && !delete_stopped
        {
            return format!("nothing to do: no files; {how}");
        }
        // Files already stored, saying only what was checked, as the run's own line does: a
        // file unchanged since its upload is not known to be stored unless a listing agreed.
        let unchecked = s.already_stored.saturating_sub(s.confirmed);
        let already: Vec<String> = [
            (s.confirmed, "confirmed by the destination's listing"),
            (unchecked, "unchanged since uploaded"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let already = match already.is_empty() {
            true => String::new(),
            false => format!(" ({})", already.join(", ")),
        };
        let resent = match s.resent {
            0 => String::new(),
            n => format!(", {n} sent again"),
        };
        let not_started = match s.not_started {
            0 => String::new(),
            n => format!(", {n} not started"),
        };
        format!(
            "{}: {} uploaded ({}{resent}), {} failed, {} skipped{already}{not_started}{deletions}; \
             {how}",
            count(s.files, "file"),
            s.uploaded,
            human_bytes(s.bytes),
            s.failed,
            s.skipped,
        )
    }

    /// `per name, over 2 runs: 3 stored (18 B), 0 failed; 1 gone locally but still stored
    /// (...)`: each name's latest record.
    fn names_line(&self) -> String {
        let n = &self.names;
        let skipped = match n.skipped {
            0 => String::new(),
            k => format!(", {k} skipped (not regular files)"),
        };
        let deletions = match (self.deleted, self.delete_failures.len()) {
            (0, 0) => String::new(),
            (deleted, 0) => format!(", {deleted} deleted"),
            (deleted, failed) => format!(", {deleted} deleted, {failed} not deleted"),
        };
        let gone = match n.gone {
            0 => String::new(),
            1 => "; 1 gone locally but still stored (hashup upload --delete removes it from \
                  the store)"
                .into(),
            g => format!(
                "; {g} gone locally but still stored (hashup upload --delete removes them \
                 from the store)"
            ),
        };
        format!(
            "per name, over {}: {} stored ({}), {} failed{skipped}{deletions}{gone}",
            count(self.runs as u64, "run"),
            n.stored,
            human_bytes(n.stored_bytes),
            n.failed,
        )
    }
}

fn summary(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::Success;
    for path in files {
        let journal = match manifest::read(path) {
            Ok(journal) => journal,
            Err(err) => {
                eprintln!("hashup: {err}");
                code = ExitCode::Fatal;
                continue;
            }
        };
        let report = Report::new(path.display().to_string(), &journal);
        if code == ExitCode::Success {
            code = report.exit_code();
        }
        let written = to_stdout(|out| {
            if json {
                serde_json::to_writer(&mut *out, &report)?;
                writeln!(out)
            } else {
                report.lines().iter().try_for_each(|l| writeln!(out, "{l}"))
            }
        })?;
        if !written {
            break;
        }
    }
    Ok(code)
}

// ---------------------------------------------------------------------------------------------
// merge

/// Shard manifests put together.
#[derive(Debug)]
struct Merged {
    /// The record kept for each name, and the input it came from.
    records: BTreeMap<String, (usize, Record)>,
    /// Names found in more than one input: each input's record.
    overlaps: BTreeMap<String, Vec<(usize, Record)>>,
    /// Objects `--delete` deleted (or failed to) in some input, whose name no input's record
    /// kept: the `deleted` line kept, and the input it came from.
    deleted: BTreeMap<String, (usize, Deleted)>,
    /// The recomputed summary line.
    summary: Summary,
}

/// An uploaded record beats a failed or skipped one; otherwise the later input wins.
fn rank(status: Status) -> u8 {
    match status {
        Status::Uploaded => 1,
        Status::Failed | Status::Skipped => 0,
    }
}

/// Why an input's run is incomplete, if it is.
fn incomplete(journal: &Journal) -> Option<String> {
    match &journal.summary {
        None => Some("no summary line: that run did not finish".into()),
        Some(Summary {
            stopped: Some(why), ..
        }) => Some(format!("stopped early: {}", server_text(why))),
        Some(_) => None,
    }
}

fn merge_journals(inputs: &[(String, Journal)]) -> Merged {
    let mut records: BTreeMap<String, (usize, Record)> = BTreeMap::new();
    let mut owners: BTreeMap<String, Vec<(usize, Record)>> = BTreeMap::new();
    for (i, (_, journal)) in inputs.iter().enumerate() {
        for (name, record) in journal.latest() {
            owners
                .entry(name.to_string())
                .or_default()
                .push((i, record.clone()));
            match records.get(name) {
                Some((_, kept)) if rank(kept.status) > rank(record.status) => {}
                _ => {
                    records.insert(name.to_string(), (i, record.clone()));
                }
            }
        }
    }
    owners.retain(|_, owners| owners.len() > 1);
    let mut deleted: BTreeMap<String, (usize, Deleted)> = BTreeMap::new();
    for (i, (_, journal)) in inputs.iter().enumerate() {
        for (name, line) in journal.deletions() {
            if !records.contains_key(name) {
                deleted.insert(name.to_string(), (i, line.clone()));
            }
        }
    }
    let deletes: Vec<&DeleteSummary> = inputs
        .iter()
        .filter_map(|(_, j)| j.summary.as_ref()?.delete.as_ref())
        .collect();
    let delete = (!deleted.is_empty() || !deletes.is_empty()).then(|| {
        let stopped: Vec<String> = inputs
            .iter()
            .filter_map(|(name, j)| {
                let why = j.summary.as_ref()?.delete.as_ref()?.stopped.as_deref()?;
                Some(format!("{name}: {why}"))
            })
            .collect();
        let failed = deleted.values().filter(|(_, d)| d.error.is_some()).count() as u64;
        DeleteSummary {
            found: deletes.iter().map(|d| d.found).sum(),
            deleted: deleted.len() as u64 - failed,
            failed,
            // Run one after another, as a delete run follows the uploads.
            elapsed_ms: deletes.iter().map(|d| d.elapsed_ms).sum(),
            stopped: (!stopped.is_empty()).then(|| stopped.join("; ")),
        }
    });

    let totals = Totals::of(records.values().map(|(_, r)| r));
    let summaries: Vec<&Summary> = inputs
        .iter()
        .filter_map(|(_, j)| j.summary.as_ref())
        .collect();
    // Shards run side by side: the merged run took as long as the slowest.
    let elapsed_ms = summaries.iter().map(|s| s.elapsed_ms).max().unwrap_or(0);
    let secs = elapsed_ms as f64 / 1000.0;
    let per_second = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let hashed: u64 = summaries.iter().map(|s| s.bytes_hashed).sum();
    let stopped: Vec<String> = inputs
        .iter()
        .filter_map(|(name, j)| incomplete(j).map(|why| format!("{name}: {why}")))
        .collect();
    let summary = Summary {
        files: totals.files,
        uploaded: totals.uploaded,
        failed: totals.failed,
        skipped: totals.skipped,
        not_started: summaries.iter().map(|s| s.not_started).sum(),
        bytes: totals.bytes,
        bytes_hashed: hashed,
        cached: summaries.iter().map(|s| s.cached).sum(),
        already_stored: summaries.iter().map(|s| s.already_stored).sum(),
        confirmed: summaries.iter().map(|s| s.confirmed).sum(),
        resent: summaries.iter().map(|s| s.resent).sum(),
        elapsed_ms,
        // The shards' per-thread figures, weighted by the bytes each hashed.
        hash_gb_per_s: if hashed > 0 {
            summaries
                .iter()
                .map(|s| s.hash_gb_per_s * s.bytes_hashed as f64)
                .sum::<f64>()
                / hashed as f64
        } else {
            0.0
        },
        upload_mb_per_s: per_second(totals.bytes as f64) / 1e6,
        objects_per_s: per_second(totals.uploaded as f64),
        // Each shard found its own; their sum is what was in flight against the store.
        uploads_limit: summaries.iter().map(|s| s.uploads_limit).sum(),
        uploads_limit_max: summaries.iter().map(|s| s.uploads_limit_max).sum(),
        stopped: (!stopped.is_empty()).then(|| stopped.join("; ")),
        delete,
    };
    Merged {
        records,
        overlaps: owners,
        deleted,
        summary,
    }
}

/// `A (uploaded 1234abcd..)`, `B (failed)`
fn owner(input: &str, record: &Record) -> String {
    match &record.sha256 {
        Some(sha) => format!("{input} ({} {})", record.status.as_str(), short(sha)),
        None => format!("{input} ({})", record.status.as_str()),
    }
}

/// `A and B`, `A, B and C`
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Reads a `sha256sum`-style list: object name -> lowercase hex.
fn read_list(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let mut list = BTreeMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        match sumfile::parse_line(line) {
            sumfile::Line::Comment => {}
            sumfile::Line::Malformed => anyhow::bail!(
                "{}:{}: improperly formatted SHA256 checksum line",
                path.display(),
                i + 1
            ),
            sumfile::Line::File(file) => {
                let name = file.path.to_str().with_context(|| {
                    format!("{}:{}: the name is not UTF-8", path.display(), i + 1)
                })?;
                list.insert(name.to_string(), hex::encode(file.digest));
            }
        }
    }
    Ok(list)
}

fn merge(
    paths: &[PathBuf],
    output: Option<&Path>,
    expect: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut inputs = Vec::new();
    for path in paths {
        inputs.push((path.display().to_string(), manifest::read(path)?));
    }
    let expected = expect.map(read_list).transpose()?;
    let merged = merge_journals(&inputs);

    // Everything said about the merge is worked out before OUT is written: nothing that goes
    // wrong in it can leave OUT replaced.
    let mut said: Vec<String> = Vec::new();
    let mut problems = 0;
    for (name, journal) in &inputs {
        if let Some(line) = journal.torn {
            said.push(format!("{name}:{line}: torn last line ignored"));
        }
        if let Some(why) = incomplete(journal) {
            said.push(format!("{name}: {why}"));
            problems += 1;
        }
    }
    for (name, owners) in &merged.overlaps {
        let same = owners.iter().all(|(_, r)| {
            r.status == Status::Uploaded && r.sha256.is_some() && r.sha256 == owners[0].1.sha256
        });
        let detail = if same {
            let files: Vec<String> = owners.iter().map(|(i, _)| inputs[*i].0.clone()).collect();
            let all = if files.len() == 2 { "both" } else { "all" };
            format!(
                "in {}, {all} uploaded with the same sha256",
                and_list(&files)
            )
        } else {
            let files: Vec<String> = owners
                .iter()
                .map(|(i, r)| owner(&inputs[*i].0, r))
                .collect();
            format!("in {}", and_list(&files))
        };
        said.push(format!("overlap: {}: {detail}", shown(name)));
    }
    for (name, (i, record)) in &merged.records {
        if record.status == Status::Failed {
            said.push(format!(
                "failed: {}: {} (in {})",
                shown(name),
                error_text(record.error.as_deref()),
                inputs[*i].0
            ));
        }
    }
    for (name, (i, line)) in &merged.deleted {
        if let Some(error) = &line.error {
            said.push(format!(
                "not deleted: {}: {} (in {})",
                shown(name),
                server_text(error),
                inputs[*i].0
            ));
            problems += 1;
        }
    }
    let mut checked = String::new();
    if let (Some(list), Some(list_path)) = (&expected, expect) {
        let list_name = list_path.display();
        let (mut gaps, mut extras, mut mismatches) = (0, 0, 0);
        for name in list.keys().filter(|n| !merged.records.contains_key(*n)) {
            said.push(format!(
                "gap: {}: listed in {list_name}, in no manifest",
                shown(name)
            ));
            gaps += 1;
        }
        for (name, (i, record)) in &merged.records {
            match (list.get(name), &record.sha256) {
                (None, _) => {
                    said.push(format!(
                        "extra: {}: in {}, not listed in {list_name}",
                        shown(name),
                        inputs[*i].0
                    ));
                    extras += 1;
                }
                (Some(want), Some(got)) if !want.eq_ignore_ascii_case(got) => {
                    said.push(format!(
                        "mismatch: {}: sha256 {} in {}, {} in {list_name}",
                        shown(name),
                        short(got),
                        inputs[*i].0,
                        short(want)
                    ));
                    mismatches += 1;
                }
                _ => {}
            }
        }
        problems += gaps + mismatches;
        checked = format!(
            ", {}, {}, {}",
            count(gaps, "gap"),
            count(extras, "extra"),
            if mismatches == 1 {
                "1 mismatch".to_string()
            } else {
                format!("{mismatches} mismatches")
            }
        );
    }
    let summary = &merged.summary;
    let totals = Totals::of(merged.records.values().map(|(_, r)| r));
    let deletions = match &summary.delete {
        Some(d) if d.deleted > 0 || d.failed > 0 => {
            format!(", {} deleted, {} not deleted", d.deleted, d.failed)
        }
        _ => String::new(),
    };
    said.push(format!(
        "merged {}: {}{deletions}; {}{checked}",
        count(inputs.len() as u64, "manifest"),
        totals.line(),
        count(merged.overlaps.len() as u64, "overlap"),
    ));
    problems += merged.overlaps.len() as u64 + summary.failed;

    match output {
        Some(out) => write_atomically(out, &merged)?,
        None => {
            let records = merged.records.values().map(|(_, r)| r);
            let deleted = merged.deleted.values().map(|(_, d)| d);
            if !to_stdout(|out| manifest::write_all(out, records, deleted, &merged.summary))? {
                return Ok(ExitCode::Success);
            }
        }
    }

    for line in said {
        eprintln!("hashup: {line}");
    }
    Ok(if problems > 0 {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    })
}

/// Writes the merged manifest to a temporary file beside `out`, then renames it into place:
/// `out` is either the old file or the whole new one.
fn write_atomically(out: &Path, merged: &Merged) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let context = || format!("cannot write {}", out.display());
    // The mode any new file gets (0666 less the umask), as upload's manifests have; a
    // temporary file's own 0600 would make the merged manifest unreadable to the group.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder.tempfile_in(dir).with_context(context)?;
    {
        let mut writer = io::BufWriter::new(temp.as_file_mut());
        let records = merged.records.values().map(|(_, r)| r);
        let deleted = merged.deleted.values().map(|(_, d)| d);
        manifest::write_all(&mut writer, records, deleted, &merged.summary)
            .with_context(context)?;
        writer.flush().with_context(context)?;
    }
    temp.as_file().sync_data().with_context(context)?;
    temp.persist(out)
        .map_err(|e| e.error)
        .with_context(context)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// diff

/// How one name differs between two manifests.
#[derive(Debug, PartialEq)]
enum Change<'a> {
    Added(&'a str),
    Removed(&'a str),
    /// Removed by `--delete` (counted with the removed).
    Deleted(&'a str),
    Changed {
        name: &'a str,
        sha256: Option<(&'a str, &'a str)>,
        status: Option<(Status, Status)>,
    },
}

impl std::fmt::Display for Change<'_> {
    /// `+ name`, `- name`, `- name (deleted)`, `~ name (sha 1234abcd.. -> 5678abcd.., failed -> uploaded)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added(name) => write!(f, "+ {}", shown(name)),
            Change::Removed(name) => write!(f, "- {}", shown(name)),
            Change::Deleted(name) => write!(f, "- {} (deleted)", shown(name)),
            Change::Changed {
                name,
                sha256,
                status,
            } => {
                let mut what = Vec::new();
                if let Some((old, new)) = sha256 {
                    what.push(format!("sha {} -> {}", short(old), short(new)));
                }
                if let Some((old, new)) = status {
                    what.push(format!("{} -> {}", old.as_str(), new.as_str()));
                }
                write!(f, "~ {} ({})", shown(name), what.join(", "))
            }
        }
    }
}

/// The differences, by name, and how many names are unchanged.
fn compare<'a>(old: &'a Journal, new: &'a Journal) -> (Vec<Change<'a>>, u64) {
    let deleted = new.deletions();
    let (old, new) = (old.latest(), new.latest());
    let mut changes = Vec::new();
    let mut unchanged = 0;
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        match (old.get(name), new.get(name)) {
            (None, Some(_)) => changes.push(Change::Added(name)),
            (Some(_), None) if deleted.contains_key(name) => changes.push(Change::Deleted(name)),
            (Some(_), None) => changes.push(Change::Removed(name)),
            (Some(a), Some(b)) => {
                let sha256 = match (&a.sha256, &b.sha256) {
                    (Some(x), Some(y)) if !x.eq_ignore_ascii_case(y) => {
                        Some((x.as_str(), y.as_str()))
                    }
                    _ => None,
                };
                let status = (a.status != b.status).then_some((a.status, b.status));
                if sha256.is_none() && status.is_none() {
                    unchanged += 1;
                } else {
                    changes.push(Change::Changed {
                        name,
                        sha256,
                        status,
                    });
                }
            }
            (None, None) => unreachable!("every name comes from one side"),
        }
    }
    (changes, unchanged)
}

fn diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let old = manifest::read(old)?;
    let new = manifest::read(new)?;
    let (changes, unchanged) = compare(&old, &new);
    let count_of = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let added = count_of(|c| matches!(c, Change::Added(_)));
    let removed = count_of(|c| matches!(c, Change::Removed(_) | Change::Deleted(_)));
    let changed = count_of(|c| matches!(c, Change::Changed { .. }));
    to_stdout(|out| {
        for change in &changes {
            writeln!(out, "{change}")?;
        }
        writeln!(
            out,
            "{added} added, {removed} removed, {changed} changed, {unchanged} unchanged"
        )
    })?;
    Ok(if changes.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::SomeFailed
    })
}
