//! Naming, the stage between walking and hashing: every file gets its object name (relative
//! path, `--flatten`, `--prefix`) and every name is checked before anything is hashed, so a
//! bad or duplicate name stops the run before any byte leaves.

use std::borrow::Cow;
use std::collections::HashMap;
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
) -> Result<Vec<Result<FileEntry, FileError>>, Vec<NameProblem>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    // Key -> (the first file with it, its name).
    let mut seen: HashMap<String, (PathBuf, String)> = HashMap::new();
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
                let key = keys.key(&name).into_owned();
                if let Some((first, first_name)) = seen.get(&key) {
                    let problem = if *first_name == name {
                        format!(
                            "object name {name:?} is also the name of {}",
                            first.display()
                        )
                    } else {
                        format!(
                            "object name {name:?} is stored as {key:?}, as {} (named {first_name:?}) is",
                            first.display()
                        )
                    };
                    problems.push(NameProblem {
                        path: entry.path.clone(),
                        problem,
                    });
                    continue;
                }
                seen.insert(key, (entry.path.clone(), name.clone()));
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
}
