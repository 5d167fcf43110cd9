//! Mirror deletes, `hashup upload --delete`: after a complete run, the stored objects under the
//! run's destination that no local file maps to are deleted, as `rclone sync`,
//! `aws s3 sync --delete` and `s5cmd sync --delete` do.
//!
//! The deletion set is pure data, worked out here from three things:
//!
//! - **What is stored** ([`StoredObject`]): a listing of the destination ([`crate::remote::Remote::list`]): in direct
//!   S3 mode the keys under `PREFIX/` (and `--prefix`), with PROMINENCE the user's own uploads
//!   (`GET /data`, only without `--prefix`) and the groups the run's names are in
//!   (`GET /data/<group>`).
//! - **What the run maps to** ([`Planned`]): every planned file's object name, turned into a
//!   storage key by the same rule as [`crate::naming::plan`] ([`KeyMap`]), so an object is kept
//!   exactly when some local file maps to its key.
//! - **What the run is about** ([`Scope`]): a stored name counts only if it lies under
//!   `--prefix` and the run's selection (`--include`, `--exclude`, `--exclude-hidden`, the size
//!   filters) would have taken a file of that name and size, as `aws s3 sync --delete` applies
//!   its filters to keys: `--include '*.sif'` never deletes a `.tar`. A stored name hashup could
//!   not have written (an empty, `.` or `..` segment, a control character) is left alone.
//!
//! [`deletions`] is the set; [`incomplete`] says when a run must not delete at all (a failed,
//! stopped or interrupted one: an unreadable directory would make its files look removed);
//! [`check_usage`] refuses options under which the run sees only part of the tree.

pub mod execute;

pub use crate::remote::{KeyMap, StoredObject};

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::config::Naming;
use crate::manifest::Summary;
use crate::naming::Keys;
use crate::select::{SelectOptions, Selector};

/// `--max-delete`'s default. A nightly mirror of an image library retires a handful of objects
/// a night; a tree that went missing (an unmounted disk, a wrong path or `--prefix`) would take
/// everything with it. 100 is far above the first and stops the second before it starts; a
/// run that really retires more says how many, to be checked with `--dry-run --delete` and run
/// again with a higher `--max-delete`.
pub const DEFAULT_MAX_DELETE: u64 = 100;

/// An option `--delete` cannot be used with: the run would see only part of the tree (so
/// every object of the other part would look removed), or a filter cannot be applied to a
/// stored name. The message names the flag and the documented way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// `--shard K/N` with N > 1.
    #[error(
        "--delete cannot be used with --shard (of {0}): a shard sees only its part of the \
         tree, so every other shard's objects would look removed. Mirror with one run over \
         the whole tree; after sharded uploads, merge their manifests (hashup manifest merge \
         shard-*.jsonl -o all.jsonl) and run once without --shard, with --delete --previous \
         all.jsonl: it sends nothing again and deletes what no file maps to"
    )]
    Shard(u64),
    /// `--files-from`.
    #[error(
        "--delete cannot be used with --files-from: a list names only some files, so every \
         other stored object would look removed; give the directories to mirror as arguments"
    )]
    FilesFrom,
    /// `--newer-than`.
    #[error(
        "--delete cannot be used with --newer-than: older files are left out of the run, so \
         their objects would look removed"
    )]
    NewerThan,
    /// `--flatten` with filters that look at directories.
    #[error(
        "--delete with --flatten: a stored name is only a base name, so --exclude, \
         --exclude-hidden and --include patterns with `/` cannot be checked against it (they \
         may have left out whole directories); drop --flatten or those filters"
    )]
    FlattenFilters,
}

/// Refuses options under which a run sees only part of the tree, and the combinations whose
/// filters cannot be applied to a stored name ([`UsageError`]).
pub fn check_usage(select: &SelectOptions, naming: &Naming) -> Result<(), UsageError> {
    if let Some(shard) = select.shard.filter(|s| s.count > 1) {
        return Err(UsageError::Shard(shard.count));
    }
    if select.files_from.is_some() {
        return Err(UsageError::FilesFrom);
    }
    if select.newer_than.is_some() {
        return Err(UsageError::NewerThan);
    }
    let path_globs = select.include.iter().any(|g| g.contains('/'));
    if naming.flatten && (!select.exclude.is_empty() || select.exclude_hidden || path_globs) {
        return Err(UsageError::FlattenFilters);
    }
    Ok(())
}

/// Why a run must not delete anything, if so: it was interrupted, stopped (a fatal answer, a
/// manifest that could not be written), some file failed (a walk error among them: an
/// unreadable directory would make its files look removed), or some file was never taken up.
pub fn incomplete(run: &Summary, interrupted: bool) -> Option<String> {
    if interrupted {
        return Some("the run was interrupted".into());
    }
    if let Some(why) = &run.stopped {
        return Some(format!("the run stopped ({why})"));
    }
    if run.failed > 0 {
        return Some(format!("{} failed", files(run.failed)));
    }
    if run.not_started > 0 {
        return Some(format!("{} were not started", files(run.not_started)));
    }
    None
}

/// `1 file`, `3 files`.
pub fn files(n: u64) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// The keys this run's files map to.
#[derive(Debug, Clone)]
pub struct Planned {
    map: KeyMap,
    keys: HashSet<String>,
    /// [`KeyMap::ProminenceUnknownUser`]: names without `/`.
    own: HashSet<String>,
    /// [`KeyMap::ProminenceUnknownUser`]: `x` of every name `s/x` whose group `s` is one segment.
    group_tails: HashSet<String>,
    files: u64,
}

impl Planned {
    /// The keys of `names`, the final object names of every planned file (skipped ones too: a
    /// special file or a link not followed still stands for its object).
    pub fn new(names: impl IntoIterator<Item = String>, map: KeyMap) -> Planned {
        let mut planned = Planned {
            keys: HashSet::new(),
            own: HashSet::new(),
            group_tails: HashSet::new(),
            files: 0,
            map,
        };
        for name in names {
            planned.files += 1;
            if planned.map == KeyMap::ProminenceUnknownUser {
                match name.split_once('/') {
                    None => {
                        planned.own.insert(name.clone());
                    }
                    Some((_, tail)) if !tail.contains('/') => {
                        planned.group_tails.insert(tail.to_string());
                    }
                    Some(_) => {}
                }
            }
            let key = planned.key(&name);
            planned.keys.insert(key);
        }
        planned
    }

    /// How many files the run planned.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// The storage key of `name` by this map (for [`KeyMap::ProminenceUnknownUser`], the name:
    /// own names have no `/` and group names have one, so names stand for distinct keys but
    /// for the aliases [`Planned::keeps`] allows for).
    pub fn key(&self, name: &str) -> String {
        match &self.map {
            KeyMap::Names | KeyMap::ProminenceUnknownUser => name.to_string(),
            KeyMap::Prominence { user } => Keys::Prominence { user: user.clone() }
                .key(name)
                .into_owned(),
        }
    }

    /// Whether some planned file maps to the key of the stored object `name`.
    pub fn keeps(&self, name: &str) -> bool {
        if self.keys.contains(&self.key(name)) {
            return true;
        }
        if self.map != KeyMap::ProminenceUnknownUser {
            return false;
        }
        match name.split_once('/') {
            None => self.group_tails.contains(name),
            Some((_, tail)) if !tail.contains('/') => self.own.contains(tail),
            Some(_) => false,
        }
    }
}

/// Which stored objects are the run's to judge: those under its `--prefix` whose names its
/// selection would have taken.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `--prefix` without slashes around it.
    prefix: Option<String>,
    flatten: bool,
    selector: Selector,
}

impl Scope {
    /// The scope of a run named by `naming` and selecting with `selector`.
    pub fn new(naming: &Naming, selector: Selector) -> Scope {
        Scope {
            prefix: naming
                .prefix
                .as_deref()
                .map(|p| p.trim_matches('/'))
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            flatten: naming.flatten,
            selector,
        }
    }

    /// `--prefix`, if given: every name of the run starts with it and a `/`.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// Whether the run would have taken a file stored as `name` with `size` bytes: a name hashup
    /// could write, under `--prefix`, that the filters take (the part below `--prefix` is the
    /// name the filters saw; every directory on its way must be one the walk enters).
    pub fn selects(&self, name: &str, size: u64) -> bool {
        if crate::naming::object_name(Path::new(name), &Naming::default()).as_deref() != Ok(name) {
            return false;
        }
        let below = match &self.prefix {
            Some(prefix) => match name
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(below) => below,
                None => return false,
            },
            None => name,
        };
        if self.flatten && below.contains('/') {
            return false; // not a name a flattened run makes
        }
        let below = Path::new(below);
        let dirs_entered = below
            .ancestors()
            .skip(1)
            .filter(|dir| !dir.as_os_str().is_empty())
            .all(|dir| self.selector.enters_dir(dir, true));
        dirs_entered && self.selector.takes_name(below, true) && self.selector.takes_size(size)
    }
}

/// The objects to delete: stored ones the scope takes and no planned file maps to, by name
/// (sorted, each once).
pub fn deletions(
    stored: impl IntoIterator<Item = StoredObject>,
    planned: &Planned,
    scope: &Scope,
) -> Vec<StoredObject> {
    let mut gone: BTreeMap<String, StoredObject> = BTreeMap::new();
    for object in stored {
        if scope.selects(&object.name, object.size) && !planned.keeps(&object.name) {
            gone.entry(object.name.clone()).or_insert(object);
        }
    }
    gone.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::select::{NewerThan, Shard, ShardIndex};

    fn object(name: &str, size: u64) -> StoredObject {
        StoredObject::sized(name, Some(format!("p/{name}")), size)
    }

    fn scope(naming: &Naming, select: &SelectOptions) -> Scope {
        Scope::new(naming, Selector::new(select, SystemTime::now()).unwrap())
    }

    fn names(objects: &[StoredObject]) -> Vec<&str> {
        objects.iter().map(|o| o.name.as_str()).collect()
    }

    fn planned(names: &[&str], map: KeyMap) -> Planned {
        Planned::new(names.iter().map(|n| n.to_string()), map)
    }

    #[test]
    fn objects_no_file_maps_to_go_and_the_others_stay() {
        let stored = ["a.sif", "b.sif", "dir/c.sif", "dir/d.sif", "e.sif"].map(|n| object(n, 1));
        let planned = planned(&["a.sif", "dir/c.sif", "new.sif"], KeyMap::Names);
        let all = scope(&Naming::default(), &SelectOptions::default());
        let gone = deletions(stored.clone(), &planned, &all);
        assert_eq!(names(&gone), ["b.sif", "dir/d.sif", "e.sif"]);
        assert_eq!(gone[0], object("b.sif", 1));
        // Listed twice (two listings overlap): once.
        let twice = stored.iter().chain(&stored).cloned();
        assert_eq!(deletions(twice, &planned, &all).len(), 3);
        assert_eq!(planned.files(), 3);
    }

    #[test]
    fn the_selection_protects_what_it_would_not_have_taken() {
        let stored = [
            object("a.sif", 10),
            object("a.tar", 10),
            object("lib/x.tar", 10),
            object("scratch/y.sif", 10),
            object("deep/scratch/z.sif", 10),
            object(".hidden/w.sif", 10),
            object("big.sif", 5000),
        ];
        let nothing = planned(&[], KeyMap::Names);
        let select = SelectOptions {
            include: vec!["*.sif".into(), "lib/**/*.tar".into()],
            exclude: vec!["scratch/".into()],
            exclude_hidden: true,
            max_size: Some(1000),
            ..SelectOptions::default()
        };
        let gone = deletions(stored, &nothing, &scope(&Naming::default(), &select));
        // .tar outside lib/ is not the run's; an excluded directory at any depth, a hidden
        // one, a size over --max-size neither.
        assert_eq!(names(&gone), ["a.sif", "lib/x.tar"]);
    }

    #[test]
    fn only_names_under_the_prefix_count_and_filters_see_the_name_below_it() {
        let stored = [
            object("lab/a.sif", 1),
            object("lab/sub/b.sif", 1),
            object("lab2/c.sif", 1),
            object("other/lab/d.sif", 1),
            object("e.sif", 1),
            object("lab/x.tar", 1),
        ];
        let naming = Naming {
            flatten: false,
            prefix: Some("/lab/".into()),
        };
        let select = SelectOptions {
            include: vec!["/sub/*.sif".into(), "a.sif".into()],
            ..SelectOptions::default()
        };
        let s = scope(&naming, &select);
        assert_eq!(s.prefix(), Some("lab"));
        let gone = deletions(stored, &planned(&[], KeyMap::Names), &s);
        assert_eq!(names(&gone), ["lab/a.sif", "lab/sub/b.sif"]);
    }

    #[test]
    fn names_hashup_could_not_have_written_are_left_alone() {
        let stored = ["a//b", "dir/", "./x", "a/../b", "ctl\u{1}x", "", "ok"].map(|n| object(n, 1));
        let gone = deletions(
            stored,
            &planned(&[], KeyMap::Names),
            &scope(&Naming::default(), &SelectOptions::default()),
        );
        assert_eq!(names(&gone), ["ok"]);
    }

    #[test]
    fn a_flattened_run_judges_base_names_only() {
        let naming = Naming {
            flatten: true,
            prefix: Some("flat".into()),
        };
        let select = SelectOptions {
            include: vec!["*.sif".into()],
            ..SelectOptions::default()
        };
        let stored = ["flat/a.sif", "flat/a.tar", "flat/sub/b.sif"].map(|n| object(n, 1));
        let gone = deletions(
            stored,
            &planned(&[], KeyMap::Names),
            &scope(&naming, &select),
        );
        assert_eq!(names(&gone), ["flat/a.sif"]);
    }

    #[test]
    fn prominence_keys_match_as_the_store_maps_them() {
        // The embedded store's user is known: `x` and `hashup/x` are one key.
        let known = planned(
            &["hashup/x", "g/y"],
            KeyMap::Prominence {
                user: "hashup".into(),
            },
        );
        assert!(known.keeps("x"));
        assert!(known.keeps("hashup/x"));
        assert!(known.keeps("g/y"));
        assert!(!known.keeps("y"));
        assert!(!known.keeps("g2/y"));
        // Unknown user: the possible alias protects, a two-segment group does not alias.
        let unknown = planned(&["u/x", "z", "a/b/w"], KeyMap::ProminenceUnknownUser);
        assert!(unknown.keeps("x"), "u may be the user's own name");
        assert!(unknown.keeps("s/z"), "s may be the user's own name");
        assert!(unknown.keeps("a/b/w"));
        assert!(!unknown.keeps("w"));
        assert!(!unknown.keeps("s/t/z"));
        assert!(
            !unknown.keeps("v/x"),
            "two groups are two keys: u/x does not keep v/x"
        );
    }

    #[test]
    fn partial_views_are_refused_by_flag() {
        let plain = Naming::default();
        let ok = |select: &SelectOptions, naming: &Naming| {
            check_usage(select, naming).map_err(|e| e.to_string())
        };
        assert_eq!(ok(&SelectOptions::default(), &plain), Ok(()));
        let shard = |count| SelectOptions {
            shard: Some(Shard {
                index: ShardIndex::Fixed(0),
                count,
            }),
            ..SelectOptions::default()
        };
        assert_eq!(ok(&shard(1), &plain), Ok(()));
        let err = ok(&shard(2), &plain).unwrap_err();
        assert!(
            err.starts_with("--delete cannot be used with --shard (of 2)"),
            "{err}"
        );
        assert!(err.contains("hashup manifest merge"), "{err}");
        let list = SelectOptions {
            files_from: Some("-".into()),
            ..SelectOptions::default()
        };
        assert!(ok(&list, &plain).unwrap_err().contains("--files-from"));
        let newer = SelectOptions {
            newer_than: Some(NewerThan::Age(std::time::Duration::from_secs(60))),
            ..SelectOptions::default()
        };
        assert!(ok(&newer, &plain).unwrap_err().contains("--newer-than"));
        let flat = Naming {
            flatten: true,
            prefix: None,
        };
        let base_include = SelectOptions {
            include: vec!["*.sif".into()],
            ..SelectOptions::default()
        };
        assert_eq!(ok(&base_include, &flat), Ok(()));
        for select in [
            SelectOptions {
                exclude: vec!["tmp".into()],
                ..SelectOptions::default()
            },
            SelectOptions {
                include: vec!["lib/*.sif".into()],
                ..SelectOptions::default()
            },
            SelectOptions {
                exclude_hidden: true,
                ..SelectOptions::default()
            },
        ] {
            assert!(ok(&select, &flat).unwrap_err().contains("--flatten"));
            assert_eq!(ok(&select, &plain), Ok(()));
        }
    }

    #[test]
    fn an_incomplete_run_says_why() {
        let done = Summary {
            files: 3,
            uploaded: 3,
            ..Summary::default()
        };
        assert_eq!(incomplete(&done, false), None);
        assert_eq!(
            incomplete(&done, true).as_deref(),
            Some("the run was interrupted")
        );
        let failed = Summary {
            failed: 2,
            ..done.clone()
        };
        assert_eq!(
            incomplete(&failed, false).as_deref(),
            Some("2 files failed")
        );
        let one = Summary {
            failed: 1,
            ..done.clone()
        };
        assert_eq!(incomplete(&one, false).as_deref(), Some("1 file failed"));
        let stopped = Summary {
            stopped: Some("cannot write the manifest: disk full".into()),
            not_started: 4,
            ..done.clone()
        };
        assert_eq!(
            incomplete(&stopped, false).as_deref(),
            Some("the run stopped (cannot write the manifest: disk full)")
        );
        let not_started = Summary {
            not_started: 4,
            ..done
        };
        assert_eq!(
            incomplete(&not_started, false).as_deref(),
            Some("4 files were not started")
        );
    }
}
