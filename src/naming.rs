//! Naming, the stage between walking and hashing: every file gets its object name (relative
//! path, `--flatten`, `--prefix`) and every name is checked before anything is hashed, so a
//! bad or duplicate name stops the run before any byte leaves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::Naming;
use crate::hash::{FileEntry, FileError};

/// An object name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
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

/// Walks `walk`'s output and names every file; the entries carry their object name as `name`.
/// Any unusable or duplicate name is returned instead, all of them, before anything is hashed.
pub fn plan(
    walk: impl IntoIterator<Item = Result<FileEntry, FileError>>,
    naming: &Naming,
) -> Result<Vec<Result<FileEntry, FileError>>, Vec<NameProblem>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
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
                if let Some(first) = seen.get(&name) {
                    problems.push(NameProblem {
                        path: entry.path.clone(),
                        problem: format!(
                            "object name {name:?} is also the name of {}",
                            first.display()
                        ),
                    });
                    continue;
                }
                seen.insert(name.clone(), entry.path.clone());
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
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].problem.contains("also the name of x/a"));
    }
}
