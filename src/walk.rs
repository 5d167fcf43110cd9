//! Paths -> file entries: the first stage of the pipeline.
//!
//! A single walker thread is enough: on 50,000 small page-cached files the walk
//! costs about a tenth of what opening, reading and hashing them does, so it never
//! starves the hashing pool (see `scripts/bench-hash.sh`). Entries come out in a
//! deterministic order (each directory sorted by file name, depth first), which is
//! what lets `hashup hash` print the same output for the same tree.
//!
//! Special files (FIFOs, sockets, devices) are never opened: they are reported as
//! skipped. Symbolic links are skipped unless [`WalkOptions::follow_links`] is set;
//! a path named on the command line is always followed, like `find -H`. The root
//! `-` stands for standard input.
//!
//! With a [`Selector`] ([`Walk::selecting`]) the walk yields only the entries selected (see
//! [`crate::select`]) and does not descend into excluded directories.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::hash::{FileEntry, FileError, FileErrorKind, SkipReason};
use crate::select::Selector;

/// How to walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Follow symbolic links found inside directories (with loop detection).
    pub follow_links: bool,
}

/// An iterator over the files below a list of roots, in a deterministic order.
///
/// Yields `Ok(FileEntry)` for every regular file (or link to one, when following)
/// and `Err(FileError)` for what could not be read or was skipped.
pub struct Walk {
    roots: VecDeque<Root>,
    current: Option<(Root, walkdir::IntoIter)>,
    options: WalkOptions,
    selector: Option<Selector>,
}

/// A path to walk and how the names below it are made.
#[derive(Debug, Clone)]
struct Root {
    path: PathBuf,
    /// Read from a list: names start with the path as listed (`prefix`, normalised; `None`
    /// for `.`), and `-` is a file of that name rather than standard input.
    listed: bool,
    prefix: Option<PathBuf>,
}

impl Walk {
    /// Walks `roots` in the order given.
    pub fn new(roots: Vec<PathBuf>, options: WalkOptions) -> Self {
        Walk {
            roots: roots
                .into_iter()
                .map(|path| Root {
                    path,
                    listed: false,
                    prefix: None,
                })
                .collect(),
            current: None,
            options,
            selector: None,
        }
    }

    /// Walks `listed` after the other roots, naming what is found by the path as listed
    /// rather than relative to it (`--files-from`): a listed file is named by its path, and
    /// `d/x` below a listed `d` is named `d/x`. The name is the path's components joined by
    /// `/`, so a repeated or trailing `/` and inner `.` segments are dropped; `..` and a leading
    /// `/` are kept (and refused as object names by [`crate::naming::plan`]).
    pub fn with_listed(mut self, listed: Vec<PathBuf>) -> Self {
        self.roots.extend(listed.into_iter().map(|path| {
            let prefix: PathBuf = path
                .components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect();
            Root {
                prefix: (!prefix.as_os_str().is_empty()).then_some(prefix),
                path,
                listed: true,
            }
        }));
        self
    }

    /// Yields only what `selector` takes (see [`crate::select`]); an excluded directory is
    /// not read.
    pub fn selecting(mut self, selector: Selector) -> Self {
        self.selector = Some(selector);
        self
    }
}

impl Iterator for Walk {
    type Item = Result<FileEntry, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((root, iter)) = &mut self.current {
                match iter.next() {
                    Some(Ok(entry)) => {
                        match classify(
                            root,
                            entry,
                            self.options.follow_links,
                            self.selector.as_ref(),
                        ) {
                            Step::Item(item) => return Some(item),
                            Step::Next => {}
                            Step::Prune => iter.skip_current_dir(),
                        }
                        continue;
                    }
                    Some(Err(err)) => {
                        let err = walk_error(root, err);
                        // A loop is a link to a directory: not reported if that is excluded.
                        let excluded = matches!(
                            (&err.kind, &self.selector),
                            (FileErrorKind::Skipped(SkipReason::Loop(_)), Some(selector))
                                if !selector.enters_dir(&err.name, true)
                        );
                        if excluded {
                            continue;
                        }
                        return Some(Err(err));
                    }
                    None => self.current = None,
                }
            }
            let root = self.roots.pop_front()?;
            if root.path.as_os_str() == "-" && !root.listed {
                return Some(Ok(FileEntry::named(root.path)));
            }
            let iter = walkdir::WalkDir::new(&root.path)
                .follow_links(self.options.follow_links)
                .follow_root_links(true)
                // Same order as sort_by_file_name: siblings share their parent's
                // bytes, so comparing whole paths compares names. It skips the
                // component parsing file_name() does, a few % of a small-file run.
                .sort_by(|a, b| a.path().as_os_str().cmp(b.path().as_os_str()))
                .into_iter();
            self.current = Some((root, iter));
        }
    }
}

/// What to do with one directory entry.
enum Step {
    /// Yield this.
    Item(Result<FileEntry, FileError>),
    /// Nothing to yield (a directory, or a file not selected).
    Next,
    /// A directory not to descend into.
    Prune,
}

/// Turns one directory entry into a step: an item, nothing (directories, files not
/// selected), or a directory to prune.
fn classify(
    root: &Root,
    entry: walkdir::DirEntry,
    follow: bool,
    selector: Option<&Selector>,
) -> Step {
    let is_root = entry.depth() == 0;
    let mut file_type = entry.file_type();
    let mut root_meta = None;
    if is_root && file_type.is_symlink() {
        // walkdir descends into a root link to a directory but still reports the
        // root itself as a link: look through it, as `find -H` and sha256sum do.
        match std::fs::metadata(entry.path()) {
            Ok(target) => {
                file_type = target.file_type();
                root_meta = Some(target);
            }
            Err(err) => {
                return Step::Item(Err(FileError {
                    name: relative_name(root, &entry),
                    path: entry.into_path(),
                    kind: FileErrorKind::Io(err),
                }));
            }
        }
    }
    if file_type.is_dir() {
        // An argument's own name is no part of the names below it: only a listed root's is.
        let named = !is_root || root.prefix.is_some();
        return match selector {
            Some(selector)
                if named && !selector.enters_dir(&relative_name(root, &entry), !is_root) =>
            {
                Step::Prune
            }
            _ => Step::Next,
        };
    }
    let name = relative_name(root, &entry);
    if let Some(selector) = selector {
        if !selector.takes_name(&name, !is_root) {
            return Step::Next;
        }
        if file_type.is_file() && selector.needs_metadata() {
            // walkdir keeps no metadata (on Unix it reads types from the directory), so
            // size and age cost one stat here, and only when asked for.
            let meta = match root_meta.map_or_else(|| std::fs::metadata(entry.path()), Ok) {
                Ok(meta) => meta,
                Err(err) => {
                    return Step::Item(Err(FileError {
                        path: entry.into_path(),
                        name,
                        kind: FileErrorKind::Io(err),
                    }));
                }
            };
            if !selector.takes_metadata(&meta) {
                return Step::Next;
            }
        }
    }
    let path = entry.into_path();
    if file_type.is_file() {
        return Step::Item(Ok(FileEntry {
            path,
            name,
            follow: follow || is_root,
        }));
    }
    let reason = if file_type.is_symlink() {
        SkipReason::Symlink
    } else {
        SkipReason::special(file_type)
    };
    Step::Item(Err(FileError {
        path,
        name,
        kind: FileErrorKind::Skipped(reason),
    }))
}

/// The path relative to the root it was found under; a root that is a file is named
/// by its base name. Below a listed root, the listed path comes first.
fn relative_name(root: &Root, entry: &walkdir::DirEntry) -> PathBuf {
    let path = entry.path();
    if entry.depth() == 0 {
        if let Some(prefix) = &root.prefix {
            return prefix.clone();
        }
        return path
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| path.to_path_buf());
    }
    // walkdir builds every path as `root.join(..)`, so the root's bytes are a prefix
    // and slicing them off is exact; it is also much cheaper than `strip_prefix`,
    // which re-parses both paths into components for every file.
    let bytes = path.as_os_str().as_bytes();
    let rest = bytes
        .strip_prefix(root.path.as_os_str().as_bytes())
        .map(|rest| rest.strip_prefix(b"/").unwrap_or(rest));
    let rest = match rest {
        Some(rest) if !rest.is_empty() => PathBuf::from(OsStr::from_bytes(rest)),
        _ => path
            .strip_prefix(&root.path)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf()),
    };
    match &root.prefix {
        Some(prefix) => prefix.join(rest),
        None => rest,
    }
}

fn walk_error(root: &Root, err: walkdir::Error) -> FileError {
    let path = err.path().unwrap_or(&root.path).to_path_buf();
    // Relative to the root; the root itself is named by its base name, as files
    // given as roots are (or, listed, by the path as listed).
    let name = match (path.strip_prefix(&root.path), &root.prefix) {
        (Ok(rest), Some(prefix)) if !rest.as_os_str().is_empty() => prefix.join(rest),
        (Ok(rest), None) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
        (_, Some(prefix)) => prefix.clone(),
        _ => path.file_name().map_or_else(|| path.clone(), PathBuf::from),
    };
    let kind = if let Some(ancestor) = err.loop_ancestor() {
        FileErrorKind::Skipped(SkipReason::Loop(ancestor.to_path_buf()))
    } else {
        match err.into_io_error() {
            Some(io) => FileErrorKind::Io(io),
            None => FileErrorKind::Io(std::io::Error::other("walk failed")),
        }
    };
    FileError { path, name, kind }
}
