//! `--delete`, after the pipeline's report: whether the run may delete at all, what the mirror
//! finds to delete ([`crate::mirror`]), the `--max-delete` guard, the deleting itself (or, with
//! `--dry-run`, the `delete NAME` lines), each told once on stderr and counted for the summary.

use std::io::Write as _;

use crate::config::UploadConfig;
use crate::exit::ExitCode;
use crate::manifest::{DeleteSummary, Manifest};
use crate::message::shown;
use crate::mirror::execute::{Event, Halt};
use crate::mirror::{self, Planned, Scope};
use crate::naming::Plan;
use crate::pipeline::StopLevel;
use crate::remote::{Remote, RemoteError};
use crate::select::Selection;

/// What the mirror step knows before anything is sent: the run's object names and its scope.
pub struct Mirror {
    /// The final object name of every planned file (skipped ones too).
    names: Vec<String>,
    scope: Scope,
    max_delete: u64,
    quiet: bool,
}

impl Mirror {
    /// Takes the names from the planned entries (before the pipeline consumes them).
    pub fn prepare(config: &UploadConfig, selection: &Selection, entries: &Plan) -> Mirror {
        Mirror {
            names: planned_names(&config.source.naming, entries),
            scope: Scope::new(&config.source.naming, selection.selector.clone()),
            max_delete: config.max_delete,
            quiet: config.quiet,
        }
    }

    /// Lists, decides and deletes (or, `dry_run`, prints `delete NAME` per object). `incomplete`
    /// says why the run may not delete, if so (the run's own exit code then stands: this one
    /// is [`ExitCode::Success`]).
    pub async fn run(
        &self,
        remote: &Remote,
        incomplete: Option<String>,
        dry_run: bool,
        manifest: &Manifest,
        stop: tokio::sync::watch::Receiver<StopLevel>,
    ) -> (DeleteSummary, ExitCode) {
        let started = std::time::Instant::now();
        let (mut summary, code) = self
            .decide_and_delete(remote, incomplete, dry_run, manifest, stop)
            .await;
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        (summary, code)
    }

    async fn decide_and_delete(
        &self,
        remote: &Remote,
        incomplete: Option<String>,
        dry_run: bool,
        manifest: &Manifest,
        stop: tokio::sync::watch::Receiver<StopLevel>,
    ) -> (DeleteSummary, ExitCode) {
        let nothing = if dry_run {
            "nothing would be deleted"
        } else {
            "nothing deleted"
        };
        let mut summary = DeleteSummary::default();
        let refuse = |summary: &mut DeleteSummary, why: String, code| {
            eprintln!("hashup: --delete: {why}");
            summary.stopped = Some(why);
            code
        };
        if let Some(why) = incomplete {
            let code = refuse(
                &mut summary,
                format!("{nothing} because {why}"),
                ExitCode::Success,
            );
            return (summary, code);
        }
        let names = self.names.iter().map(String::as_str);
        let listed = remote.list(names, self.scope.prefix()).await;
        // A place the API refused to list hides objects that may be gone: delete nothing.
        let listed = listed.and_then(|listing| match listing.refused.first() {
            Some((_, why)) => Err(RemoteError::Failed(why.clone())),
            None => Ok(listing),
        });
        let stored = match listed {
            Ok(listing) => listing.objects,
            Err(err) => {
                let code = match err {
                    RemoteError::Fatal(_) => ExitCode::Fatal,
                    RemoteError::Failed(_) => ExitCode::SomeFailed,
                    RemoteError::Stopped(_) => ExitCode::Interrupted,
                };
                let code = refuse(&mut summary, format!("{nothing}: {err}"), code);
                return (summary, code);
            }
        };
        let planned = Planned::new(self.names.iter().cloned(), remote.key_map());
        let gone = mirror::deletions(stored, &planned, &self.scope);
        let found = gone.len() as u64;
        summary.found = found;
        if gone.is_empty() {
            return (summary, ExitCode::Success);
        }
        if dry_run {
            match print_deletions(&gone) {
                Ok(true) => {}
                Ok(false) => return (summary, ExitCode::Success), // stdout closed
                Err(err) => {
                    let why = format!("cannot write to standard output: {err}");
                    let code = refuse(&mut summary, why, ExitCode::Fatal);
                    return (summary, code);
                }
            }
        }
        let run_would = if dry_run {
            "a run would delete nothing"
        } else {
            "nothing deleted"
        };
        if planned.files() == 0 {
            let code = refuse(
                &mut summary,
                format!(
                    "the run has no files, and {found} objects would be deleted (an empty tree \
                     looks like a missing disk or a wrong path); {run_would}"
                ),
                ExitCode::SomeFailed,
            );
            return (summary, code);
        }
        if found > self.max_delete {
            let code = refuse(
                &mut summary,
                format!(
                    "{found} objects would be deleted, more than --max-delete {}; {run_would}",
                    self.max_delete
                ),
                ExitCode::SomeFailed,
            );
            return (summary, code);
        }
        if dry_run {
            return (summary, ExitCode::Success);
        }

        let quiet = self.quiet;
        let tell = |event: Event<'_>| match event {
            Event::Deleted(object) if !quiet => {
                eprintln!("hashup: deleted {}", shown(&object.name))
            }
            Event::Deleted(_) => {}
            Event::Failed(object, why) => {
                eprintln!("hashup: {}: not deleted: {why}", shown(&object.name))
            }
        };
        let done = mirror::execute::execute(remote, &gone, manifest, stop, &tell).await;
        summary.deleted = done.deleted;
        summary.failed = done.failed;
        let code = match done.halt {
            None if done.failed > 0 => ExitCode::SomeFailed,
            None => ExitCode::Success,
            Some(halt) => {
                let (why, code) = match halt {
                    Halt::Interrupted => (
                        format!("interrupted: {} of {} objects deleted", done.deleted, found),
                        ExitCode::Interrupted,
                    ),
                    Halt::Fatal(message) => (format!("stopped: {message}"), ExitCode::Fatal),
                    Halt::JournalLost(message) => (
                        format!(
                            "stopped: cannot write the manifest: {message}; nothing more is \
                             deleted unjournalled"
                        ),
                        ExitCode::Fatal,
                    ),
                };
                refuse(&mut summary, why, code)
            }
        };
        (summary, code)
    }
}

/// The final object name of every planned file, skipped ones too (a special file or a link not
/// followed still stands for its object), and of every file the walk failed on: what keeps an
/// object from looking removed.
pub(super) fn planned_names(naming: &crate::config::Naming, entries: &Plan) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            Ok(entry) => entry.name.to_str().map(str::to_string),
            // A walk's skip or error carries the name below its root.
            Err(err) => crate::naming::object_name(&err.name, naming).ok(),
        })
        .collect()
}

/// `delete NAME` per object on stdout; `Ok(false)` when stdout is closed.
fn print_deletions(gone: &[mirror::StoredObject]) -> std::io::Result<bool> {
    use crate::commands::keep_writing;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for object in gone {
        if !keep_writing(writeln!(out, "delete {}", shown(&object.name)))? {
            return Ok(false);
        }
    }
    keep_writing(out.flush())
}
