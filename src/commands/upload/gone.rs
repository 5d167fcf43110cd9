//! Names gone locally, journalled before the pipeline starts ([`crate::manifest::LocalLine`]):
//! a `gone` line for each name the manifest records as stored whose file lay under one of the
//! run's PATHs and which no planned file maps to any more; a `back` line for each gone name a
//! planned file maps to again (an unchanged file that comes back is skipped as already stored
//! and gets no record, which would leave it gone). Nothing is deleted (`--delete` does that),
//! and what a run skips is not changed.
//!
//! Only a run that sees the whole tree can tell a file is gone: `--delete`'s conditions
//! ([`crate::mirror::check_usage`]), and, as `--delete` judges stored names, only names the
//! run's `--prefix` and filters would have taken ([`Scope`]); and no walk error (an unreadable
//! directory would make its files look gone). A `back` line needs none of that: a planned
//! file is there.

use std::borrow::Cow;
use std::time::SystemTime;

use crate::config::UploadConfig;

use crate::manifest::index::Index;
use crate::manifest::{LocalLine, Manifest, Presence};
use crate::mirror::Scope;
use crate::select::Selection;

/// Journals the names gone locally, and those back, in `manifest`, the journal of a run (not a
/// dry run) about to upload `entries`, from `read`, what the manifests held before the run
/// (indexed over the run's PATHs). A journal that cannot be written is warned about: the lines
/// say what the run saw, they are not needed to upload.
pub(super) fn journal(
    config: &UploadConfig,
    read: &Index,
    selection: &Selection,
    entries: &crate::naming::Plan,
    manifest: &Manifest,
) {
    // No journal, or one started afresh: no name is recorded as stored.
    if config.manifest.is_none() || config.restart || !read.resumed() {
        return;
    }
    let naming = &config.source.naming;
    let walked_all = !entries
        .iter()
        .any(|e| matches!(e, Err(err) if !err.is_skip()));
    let scope = (walked_all && crate::mirror::check_usage(&config.source.select, naming).is_ok())
        .then(|| Scope::new(naming, selection.selector.clone()));
    // The planned names, borrowed from the plan (a walk error's name is made): sorted, searched.
    let mut planned: Vec<Cow<'_, str>> = entries
        .iter()
        .filter_map(|entry| match entry {
            Ok(entry) => entry.name.to_str().map(Cow::Borrowed),
            Err(err) => crate::naming::object_name(&err.name, naming)
                .ok()
                .map(Cow::Owned),
        })
        .collect();
    planned.sort_unstable();
    let time = crate::utc::rfc3339_nanos(SystemTime::now());
    for line in changes(read, &planned, scope.as_ref(), &time) {
        if let Err(err) = manifest.local(&line) {
            eprintln!("hashup: warning: cannot journal a name gone locally: {err}");
            return;
        }
    }
}

/// The lines to journal, by name: `back` for each stored name gone locally that a planned file
/// maps to; `gone` for each stored name not gone already that no planned file maps to, whose
/// recorded path lies under one of the run's PATHs (as the paths were given: the record's path
/// is the one the walk saw; the index tells) and that `scope` takes (none without a scope: the
/// run does not see the whole tree).
fn changes(
    read: &Index,
    planned: &[Cow<'_, str>],
    scope: Option<&Scope>,
    time: &str,
) -> Vec<LocalLine> {
    let presence = |name: &str| Presence {
        name: name.to_string(),
        time: time.to_string(),
    };
    let mut lines = Vec::new();
    for stored in read.stored() {
        let name = stored.name;
        let here = planned.binary_search_by(|p| (**p).cmp(name)).is_ok();
        if stored.gone {
            if here {
                lines.push(LocalLine::Back(presence(name)));
            }
            continue;
        }
        let Some(scope) = scope.filter(|_| !here) else {
            continue;
        };
        // A record without a size (none is written so) is left alone rather than guessed.
        let taken = stored.size.is_some_and(|size| scope.selects(name, size));
        if stored.under && taken {
            lines.push(LocalLine::Gone(presence(name)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Naming;
    use crate::manifest::{Journal, Record, Status};
    use crate::select::{SelectOptions, Selector};

    const TIME: &str = "2027-01-16T02:00:00.000000000Z";

    fn record(name: &str, path: &str, status: Status) -> Record {
        Record {
            name: name.into(),
            path: path.into(),
            size: Some(6),
            mtime: None,
            sha256: Some("ab".repeat(32)),
            status,
            http_status: None,
            attempts: 1,
            error: None,
            duration_ms: 0,
            checksum_sha256_composite: None,
            etag: None,
            stored_at: None,
            resent: None,
        }
    }

    fn scope(select: &SelectOptions) -> Scope {
        Scope::new(
            &Naming::default(),
            Selector::new(select, SystemTime::now()).unwrap(),
        )
    }

    fn gone(name: &str) -> LocalLine {
        LocalLine::Gone(Presence {
            name: name.into(),
            time: TIME.into(),
        })
    }

    fn back(name: &str) -> LocalLine {
        LocalLine::Back(Presence {
            name: name.into(),
            time: TIME.into(),
        })
    }

    /// `changes` for a run over `sources` that plans `planned`.
    fn run(
        journal: &Journal,
        planned: &[&str],
        sources: &[&str],
        scope: Option<&Scope>,
    ) -> Vec<LocalLine> {
        let mut planned: Vec<Cow<str>> = planned.iter().copied().map(Cow::Borrowed).collect();
        planned.sort_unstable();
        let sources: Vec<std::path::PathBuf> = sources.iter().map(Into::into).collect();
        let read = Index::of([], Some(journal), &sources);
        changes(&read, &planned, scope, TIME)
    }

    #[test]
    fn stored_names_no_planned_file_maps_to_are_gone_once() {
        let all = scope(&SelectOptions::default());
        let mut link = record("link", "src/link", Status::Skipped);
        link.sha256 = None;
        let mut journal = Journal {
            records: vec![
                record("a", "src/a", Status::Uploaded),
                record("b", "src/b", Status::Uploaded),
                // Skipped as already stored: stored too.
                record("sub/c", "src/sub/c", Status::Skipped),
                // Not stored: never gone.
                record("d", "src/d", Status::Failed),
                link,
            ],
            ..Journal::default()
        };
        let lines = run(&journal, &["a"], &["src"], Some(&all));
        assert_eq!(lines, [gone("b"), gone("sub/c")]);
        // A trailing slash or a second PATH changes nothing; a sibling PATH sharing the
        // prefix `src` is not the same tree.
        assert_eq!(run(&journal, &["a"], &["other", "src/"], Some(&all)), lines);
        assert_eq!(run(&journal, &["a"], &["sr", "src2"], Some(&all)), []);

        // Journalled: not again, while the files stay away.
        journal.local = lines.into_iter().map(|line| (5, line)).collect();
        assert_eq!(run(&journal, &["a"], &["src"], Some(&all)), []);
        // One comes back: a back line, and the other stays gone.
        assert_eq!(
            run(&journal, &["a", "sub/c"], &["src"], Some(&all)),
            [back("sub/c")]
        );
        // Back lines need no view of the whole tree.
        assert_eq!(run(&journal, &["sub/c"], &["src"], None), [back("sub/c")]);
    }

    #[test]
    fn only_names_under_the_paths_that_the_scope_takes_are_gone() {
        let journal = Journal {
            records: vec![
                record("a.txt", "src/a.txt", Status::Uploaded),
                record("b.bin", "src/b.bin", Status::Uploaded),
                record("x.txt", "/elsewhere/x.txt", Status::Uploaded),
                // A file given as a PATH of its own.
                record("one.txt", "one.txt", Status::Uploaded),
            ],
            ..Journal::default()
        };
        // No scope (a shard, --files-from, --newer-than, a walk error): nothing is gone.
        assert_eq!(run(&journal, &[], &["src", "one.txt"], None), []);
        let txt = scope(&SelectOptions {
            include: vec!["*.txt".into()],
            ..SelectOptions::default()
        });
        assert_eq!(
            run(&journal, &[], &["src", "one.txt"], Some(&txt)),
            [gone("a.txt"), gone("one.txt")]
        );
    }

    #[test]
    fn a_later_record_or_a_deletion_ends_a_gone_name() {
        let all = scope(&SelectOptions::default());
        let journal = Journal {
            records: vec![
                record("a", "src/a", Status::Uploaded),
                record("b", "src/b", Status::Uploaded),
                // Gone after record 2, then sent again (the file came back changed).
                record("a", "src/a", Status::Uploaded),
            ],
            local: vec![(2, gone("a")), (2, gone("b"))],
            deleted: vec![(
                3,
                crate::manifest::Deleted {
                    name: "b".into(),
                    key: None,
                    size: 6,
                    time: TIME.into(),
                    error: None,
                },
            )],
            ..Journal::default()
        };
        // a is stored and not gone: gone again. b was deleted from the store: not stored,
        // neither gone nor back.
        assert_eq!(run(&journal, &[], &["src"], Some(&all)), [gone("a")]);
        assert_eq!(run(&journal, &["b"], &["src"], Some(&all)), [gone("a")]);
    }
}
