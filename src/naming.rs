//! Naming, the stage between walking and hashing: every file gets its object name (relative
//! path, `--flatten`, `--prefix`) and every name is checked before anything is hashed, so a
//! bad or duplicate name stops the run before any byte leaves.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher as _, RandomState};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

use crate::config::Naming;
use crate::hash::{FileEntry, FileError};

/// An object name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", crate::message::shown_path(path))]
pub struct NameProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with its name.
    pub problem: String,
}

/// The object name for a file found as `relative` below its root.
pub fn object_name(relative: &Path, naming: &Naming) -> Result<String, String> {
    // Only a listed path (`--files-from`) can be absolute; say so rather than "empty segment".
    if relative.has_root() && !naming.flatten {
        return Err(
            "an absolute path cannot be an object name (list relative paths, or use --flatten)"
                .into(),
        );
    }
    let relative = if naming.flatten {
        relative.file_name().map(Path::new).unwrap_or(relative)
    } else {
        relative
    };
    let name = relative
        .to_str()
        .ok_or_else(|| format!("name {:?} is not UTF-8", relative.as_os_str()))?;
    let name = match naming.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{name}"),
        _ => name.to_string(),
    };
    if name.is_empty() {
        return Err("empty object name".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("object name {name:?} contains control characters"));
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "object name {name:?} has an empty, `.` or `..` segment"
        ));
    }
    Ok(name)
}

/// How the destination turns object names into storage keys, as far as it is known before
/// anything is sent. Two names may land on one key: planning by key refuses that up front,
/// where planning by name would have stored one file over the other and called both uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// One key per name: direct S3 mode (`prefix/name`), or a PROMINENCE API whose user name
    /// is not known here.
    Names,
    /// PROMINENCE's rule for a known user: a name without `/` is `uploads/<user>/<name>`, a
    /// name with `/` is a group path, `uploads/<name>`. So `x` and `<user>/x` are one key.
    Prominence {
        /// The user the token stands for.
        user: String,
    },
    /// Direct S3 mode's keys: `prefix/name` (the name alone with an empty prefix). One key per
    /// name, as [`Keys::Names`], for planning.
    Prefixed(String),
}

impl Keys {
    /// The storage key of object `name`.
    pub fn key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match self {
            Keys::Names => Cow::Borrowed(name),
            Keys::Prominence { user } if !name.contains('/') => {
                Cow::Owned(format!("uploads/{user}/{name}"))
            }
            Keys::Prominence { .. } => Cow::Owned(format!("uploads/{name}")),
            Keys::Prefixed(prefix) if prefix.is_empty() => Cow::Borrowed(name),
            Keys::Prefixed(prefix) => Cow::Owned(format!("{prefix}/{name}")),
        }
    }
}

/// Walks `walk`'s output and names every file; the entries carry their object name as `name`.
/// Any unusable name, and any name whose key ([`Keys`]) another file has too, is returned
/// instead, all of them, before anything is hashed.
pub fn plan(
    walk: impl IntoIterator<Item = Result<FileEntry, FileError>>,
    naming: &Naming,
    keys: &Keys,
) -> Result<Plan, Vec<NameProblem>> {
    let mut entries = Plan::default();
    let mut problems = Vec::new();
    // A key's hash -> the index among `entries`' files of the first file with it: no copy of any name
    // or path per file. Keys whose hash an earlier, different key has are kept whole in
    // `collided`.
    let hashing = RandomState::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut collided: HashMap<String, usize> = HashMap::new();
    for item in walk {
        let mut entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                entries.push(Err(err));
                continue;
            }
        };
        if entry.path.as_os_str() == "-" {
            problems.push(NameProblem {
                path: entry.path.clone(),
                problem: "standard input cannot be uploaded".into(),
            });
            continue;
        }
        match object_name(&entry.name, naming) {
            Ok(name) => {
                let key = keys.key(&name);
                let hash = hashing.hash_one(&*key);
                let first = match seen.get(&hash) {
                    None => {
                        seen.insert(hash, entries.files.len());
                        None
                    }
                    Some(&i) if key_of(entries.file(i), keys) == key => Some(i),
                    Some(_) => match collided.get(&*key) {
                        Some(&i) => Some(i),
                        None => {
                            collided.insert(key.to_string(), entries.files.len());
                            None
                        }
                    },
                };
                if let Some(first) = first.map(|i| entries.file(i)) {
                    let first_name = first.name.to_string_lossy();
                    let problem = if first_name == name {
                        format!(
                            "object name {name:?} is also the name of {}",
                            first.path().display()
                        )
                    } else {
                        format!(
                            "object name {name:?} is stored as {key:?}, as {} (named {first_name:?}) is",
                            first.path().display()
                        )
                    };
                    problems.push(NameProblem {
                        path: entry.path.clone(),
                        problem,
                    });
                    continue;
                }
                entry.name = PathBuf::from(name);
                entries.push(Ok(entry));
            }
            Err(problem) => problems.push(NameProblem {
                path: entry.path.clone(),
                problem,
            }),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// The planned files, in walk order, as [`plan`] returns them: each file's object name once in
/// one byte arena, and its path as a shared prefix (the root it was found under, as a rule)
/// followed by the name; 16 bytes of bookkeeping a file, instead of two allocations and a
/// [`FileEntry`] each. Walk errors and skips are kept whole, at their place. The pipeline takes
/// the entries one by one ([`Plan::into_iter`]) as it goes. The figures are in docs/design.md
/// ("Memory against the size of the tree").
#[derive(Debug, Default)]
pub struct Plan {
    arena: Vec<u8>,
    /// Path prefixes in the arena: (start, length).
    prefixes: Vec<(u64, u32)>,
    files: Vec<Planned>,
    /// Each error with its place among all the entries.
    errors: Vec<(usize, FileError)>,
}

/// A planned file: its name's start and length in the arena, and its prefix (with `APART`,
/// the whole path; the name does not end it) and `FOLLOW` in `prefix`'s top bits.
#[derive(Debug, Clone, Copy)]
struct Planned {
    name: u64,
    name_len: u32,
    prefix: u32,
}

const APART: u32 = 1 << 31;
const FOLLOW: u32 = 1 << 30;

/// A planned file, borrowed from its [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The object name.
    pub name: &'a Path,
    /// Open through a symbolic link.
    pub follow: bool,
    /// The path: `prefix` then, unless `apart`, `name`.
    prefix: &'a [u8],
    apart: bool,
}

impl EntryRef<'_> {
    /// The path to open.
    pub fn path(&self) -> PathBuf {
        let mut bytes = Vec::with_capacity(self.prefix.len() + self.name.as_os_str().len());
        bytes.extend_from_slice(self.prefix);
        if !self.apart {
            bytes.extend_from_slice(self.name.as_os_str().as_bytes());
        }
        PathBuf::from(OsString::from_vec(bytes))
    }

    /// The entry, owned.
    pub fn to_owned(&self) -> FileEntry {
        FileEntry {
            path: self.path(),
            name: self.name.to_path_buf(),
            follow: self.follow,
        }
    }
}

impl Plan {
    /// Adds the next entry.
    pub fn push(&mut self, item: Result<FileEntry, FileError>) {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                self.errors.push((self.len(), err));
                return;
            }
        };
        let path = entry.path.as_os_str().as_bytes();
        let name = entry.name.as_os_str().as_bytes();
        let (prefix, apart) = match path.strip_suffix(name) {
            Some(prefix) => (prefix, false),
            None => (path, true),
        };
        let same = self
            .prefixes
            .last()
            .is_some_and(|&(at, len)| self.bytes(at, len) == prefix);
        if !same {
            let at = self.arena.len() as u64;
            self.arena.extend_from_slice(prefix);
            self.prefixes.push((at, prefix.len() as u32));
        }
        let at = self.arena.len() as u64;
        self.arena.extend_from_slice(name);
        // Fewer than 2^30 distinct prefixes, and no name 4 GiB long.
        let mut flags = (self.prefixes.len() - 1) as u32;
        if apart {
            flags |= APART;
        }
        if entry.follow {
            flags |= FOLLOW;
        }
        self.files.push(Planned {
            name: at,
            name_len: name.len() as u32,
            prefix: flags,
        });
    }

    fn bytes(&self, at: u64, len: u32) -> &[u8] {
        &self.arena[at as usize..at as usize + len as usize]
    }

    /// Entries planned: files, errors and skips.
    pub fn len(&self) -> usize {
        self.files.len() + self.errors.len()
    }

    /// Whether nothing was planned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th file (errors not counted).
    fn file(&self, i: usize) -> EntryRef<'_> {
        self.entry(&self.files[i])
    }

    fn entry(&self, file: &Planned) -> EntryRef<'_> {
        let (at, len) = self.prefixes[(file.prefix & !(APART | FOLLOW)) as usize];
        EntryRef {
            name: Path::new(OsStr::from_bytes(self.bytes(file.name, file.name_len))),
            follow: file.prefix & FOLLOW != 0,
            prefix: self.bytes(at, len),
            apart: file.prefix & APART != 0,
        }
    }

    /// The entries in walk order, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = Result<EntryRef<'_>, &FileError>> {
        let mut files = self.files.iter();
        let mut errors = self.errors.iter().peekable();
        (0..self.len()).map(move |i| match errors.next_if(|(at, _)| *at == i) {
            Some((_, err)) => Err(err),
            None => Ok(self.entry(files.next().expect("as many files as places left"))),
        })
    }

    /// The entries `keep` keeps (it is given each entry's object name, or an error's name below
    /// its root).
    pub fn retain(self, mut keep: impl FnMut(&Path) -> bool) -> Plan {
        let mut kept = Plan::default();
        for item in self {
            let name = match &item {
                Ok(entry) => &entry.name,
                Err(err) => &err.name,
            };
            if keep(name) {
                kept.push(item);
            }
        }
        kept
    }
}

impl FromIterator<Result<FileEntry, FileError>> for Plan {
    fn from_iter<I: IntoIterator<Item = Result<FileEntry, FileError>>>(items: I) -> Plan {
        let mut plan = Plan::default();
        for item in items {
            plan.push(item);
        }
        plan
    }
}

impl IntoIterator for Plan {
    type Item = Result<FileEntry, FileError>;
    type IntoIter = IntoIter;

    /// The entries in walk order, each made whole as it is taken.
    fn into_iter(self) -> IntoIter {
        IntoIter {
            next: 0,
            file: 0,
            errors: self.errors.into_iter().peekable(),
            plan: Plan {
                arena: self.arena,
                prefixes: self.prefixes,
                files: self.files,
                errors: Vec::new(),
            },
        }
    }
}

/// [`Plan::into_iter`].
pub struct IntoIter {
    plan: Plan,
    next: usize,
    file: usize,
    errors: std::iter::Peekable<std::vec::IntoIter<(usize, FileError)>>,
}

impl Iterator for IntoIter {
    type Item = Result<FileEntry, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.next;
        self.next += 1;
        if let Some((_, err)) = self.errors.next_if(|(i, _)| *i == at) {
            return Some(Err(err));
        }
        let file = self.plan.files.get(self.file)?;
        self.file += 1;
        Some(Ok(self.plan.entry(file).to_owned()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.files.len() - self.file + self.errors.len();
        (left, Some(left))
    }
}

impl ExactSizeIterator for IntoIter {}

/// The key of a planned file (its name is a final object name, so UTF-8).
fn key_of<'a>(entry: EntryRef<'a>, keys: &Keys) -> Cow<'a, str> {
    keys.key(entry.name.to_str().expect("a planned name is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let plain = Naming::default();
        assert_eq!(
            object_name(Path::new("a/b.sif"), &plain).unwrap(),
            "a/b.sif"
        );
        let flat = Naming {
            flatten: true,
            prefix: Some("/g1/".into()),
        };
        assert_eq!(
            object_name(Path::new("a/b.sif"), &flat).unwrap(),
            "g1/b.sif"
        );
        for bad in ["", "a/../b", "./a", "a\u{7}b"] {
            assert!(object_name(Path::new(bad), &plain).is_err(), "{bad:?}");
        }
        use std::os::unix::ffi::OsStrExt as _;
        let non_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"a\xffb"));
        assert!(object_name(non_utf8, &plain).is_err());
    }

    #[test]
    fn duplicates_are_all_reported() {
        let entry = |path: &str, name: &str| {
            Ok(FileEntry {
                path: path.into(),
                name: name.into(),
                follow: false,
            })
        };
        let flat = Naming {
            flatten: true,
            prefix: None,
        };
        let problems = plan(
            vec![entry("x/a", "a"), entry("y/a", "a"), entry("z/b/a", "b/a")],
            &flat,
            &Keys::Names,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].problem.contains("also the name of x/a"));
    }

    #[test]
    fn two_names_on_one_key_are_refused() {
        let entry = |path: &str, name: &str| {
            Ok(FileEntry {
                path: path.into(),
                name: name.into(),
                follow: false,
            })
        };
        let walk = || vec![entry("c/x", "x"), entry("c/hashup/x", "hashup/x")];
        let keys = Keys::Prominence {
            user: "hashup".into(),
        };
        assert_eq!(keys.key("x"), "uploads/hashup/x");
        assert_eq!(keys.key("hashup/x"), "uploads/hashup/x");
        let problems = plan(walk(), &Naming::default(), &keys).unwrap_err();
        assert_eq!(
            problems,
            [NameProblem {
                path: "c/hashup/x".into(),
                problem: "object name \"hashup/x\" is stored as \"uploads/hashup/x\", as c/x (named \"x\") is".into(),
            }]
        );
        // Another user: two keys.
        let other = Keys::Prominence { user: "ann".into() };
        assert_eq!(plan(walk(), &Naming::default(), &other).unwrap().len(), 2);
        assert_eq!(
            plan(walk(), &Naming::default(), &Keys::Names)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_plan_gives_back_its_entries_in_walk_order() {
        let file = |path: &str, name: &str| {
            Ok(FileEntry {
                path: path.into(),
                name: name.into(),
                follow: path.len().is_multiple_of(2),
            })
        };
        let error = |path: &str, name: &str| {
            Err(FileError {
                path: path.into(),
                name: name.into(),
                kind: crate::hash::FileErrorKind::ChangedWhileReading,
            })
        };
        let walk = [
            error("/t/gone", "gone"),
            file("/t/a", "a"),
            // A name that does not end its path (--prefix, --flatten).
            file("/t/d/b", "p/b"),
            error("/t/x", "x"),
            error("/t/y", "y"),
            file("/t/d/\u{e9}", "d/\u{e9}"),
            file("/t/c", "c"),
        ];
        let shape = |items: Vec<Result<FileEntry, FileError>>| -> Vec<(PathBuf, PathBuf, bool)> {
            items
                .into_iter()
                .map(|item| match item {
                    Ok(e) => (e.path, e.name, e.follow),
                    Err(e) => (e.path, e.name, false),
                })
                .collect()
        };
        let plan: Plan = walk.iter().map(clone_item).collect();
        assert_eq!(plan.len(), 7);
        let borrowed: Vec<_> = plan
            .iter()
            .map(|item| item.map(|e| e.to_owned()).map_err(clone_error))
            .collect();
        assert_eq!(
            shape(borrowed),
            shape(walk.iter().map(clone_item).collect())
        );
        assert_eq!(plan.into_iter().len(), 7);
        let plan: Plan = walk.iter().map(clone_item).collect();
        assert_eq!(
            shape(plan.into_iter().collect()),
            shape(walk.iter().map(clone_item).collect())
        );
        // Keeping some: the rest keep their order, errors included.
        let plan: Plan = walk.iter().map(clone_item).collect();
        let kept = plan.retain(|name| name != Path::new("a") && name != Path::new("x"));
        let want: Vec<_> = walk
            .iter()
            .map(clone_item)
            .filter(|item| match item {
                Ok(e) => e.name != Path::new("a"),
                Err(e) => e.name != Path::new("x"),
            })
            .collect();
        assert_eq!(shape(kept.into_iter().collect()), shape(want));
        assert!(Plan::default().is_empty());
    }

    fn clone_error(err: &FileError) -> FileError {
        FileError {
            path: err.path.clone(),
            name: err.name.clone(),
            kind: crate::hash::FileErrorKind::ChangedWhileReading,
        }
    }

    fn clone_item(item: &Result<FileEntry, FileError>) -> Result<FileEntry, FileError> {
        match item {
            Ok(e) => Ok(e.clone()),
            Err(e) => Err(clone_error(e)),
        }
    }
}
