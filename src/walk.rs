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

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::hash::{FileEntry, FileError, FileErrorKind, SkipReason};

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
    roots: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, walkdir::IntoIter)>,
    options: WalkOptions,
}

impl Walk {
    /// Walks `roots` in the order given.
    pub fn new(roots: Vec<PathBuf>, options: WalkOptions) -> Self {
        Walk {
            roots: roots.into_iter(),
            current: None,
            options,
        }
    }
}

impl Iterator for Walk {
    type Item = Result<FileEntry, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((root, iter)) = &mut self.current {
                match iter.next() {
                    Some(Ok(entry)) => {
                        if let Some(item) = classify(root, entry, self.options.follow_links) {
                            return Some(item);
                        }
                        continue;
                    }
                    Some(Err(err)) => return Some(Err(walk_error(root, err))),
                    None => self.current = None,
                }
            }
            let root = self.roots.next()?;
            if root.as_os_str() == "-" {
                return Some(Ok(FileEntry::named(root)));
            }
            let iter = walkdir::WalkDir::new(&root)
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

/// Turns one directory entry into an item, or `None` for directories.
fn classify(
    root: &Path,
    entry: walkdir::DirEntry,
    follow: bool,
) -> Option<Result<FileEntry, FileError>> {
    let is_root = entry.depth() == 0;
    let mut file_type = entry.file_type();
    if is_root && file_type.is_symlink() {
        // walkdir descends into a root link to a directory but still reports the
        // root itself as a link: look through it, as `find -H` and sha256sum do.
        match std::fs::metadata(entry.path()) {
            Ok(target) => file_type = target.file_type(),
            Err(err) => {
                return Some(Err(FileError {
                    name: relative_name(root, &entry),
                    path: entry.into_path(),
                    kind: FileErrorKind::Io(err),
                }));
            }
        }
    }
    if file_type.is_dir() {
        return None;
    }
    let name = relative_name(root, &entry);
    let path = entry.into_path();
    if file_type.is_file() {
        return Some(Ok(FileEntry {
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
    Some(Err(FileError {
        path,
        name,
        kind: FileErrorKind::Skipped(reason),
    }))
}

/// The path relative to the root it was found under; a root that is a file is named
/// by its base name.
fn relative_name(root: &Path, entry: &walkdir::DirEntry) -> PathBuf {
    let path = entry.path();
    if entry.depth() == 0 {
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
        .strip_prefix(root.as_os_str().as_bytes())
        .map(|rest| rest.strip_prefix(b"/").unwrap_or(rest));
    match rest {
        Some(rest) if !rest.is_empty() => PathBuf::from(OsStr::from_bytes(rest)),
        _ => path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf()),
    }
}

fn walk_error(root: &Path, err: walkdir::Error) -> FileError {
    let path = err.path().unwrap_or(root).to_path_buf();
    // Relative to the root; the root itself is named by its base name, as files
    // given as roots are.
    let name = match path.strip_prefix(root) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
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
