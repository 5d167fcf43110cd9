//! The shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`), parsed as
//! the AWS SDKs' profile-file specification says:
//!
//! - blank lines and lines starting with `#` or `;` are comments;
//! - `[name]` opens a section; on a section line anything after `#` or `;` is a comment;
//! - `name = value` is a property; its name is trimmed and lowercased, its value trimmed, and
//!   a `#` or `;` preceded by whitespace starts a comment (`secret#1` keeps its `#`);
//! - an indented line continues the property above it; after `name =` with an empty value the
//!   indented lines are sub-properties (`s3 =` / `  endpoint_url = ...` under `[services x]`);
//! - in the config file a profile is `[profile NAME]` (`[default]` too), in the credentials file
//!   plain `[NAME]`; a property in the credentials file wins over the same one in the config.
//!
//! A file that does not exist counts as empty; one that cannot be read or parsed is an error
//! naming it (the SDKs stop there too).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One section's properties, names lowercased.
pub type Properties = HashMap<String, String>;

/// One parsed file: its path, and its sections by their header as written (trimmed).
#[derive(Debug, Default)]
pub struct File {
    /// Where it was read from (or would have been, when it does not exist).
    pub path: PathBuf,
    /// Whether the file exists.
    pub exists: bool,
    sections: HashMap<String, Properties>,
}

/// What is wrong with a file: its path and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, e.g. `line 3: expected "name = value"`.
    pub message: String,
}

impl File {
    /// Reads and parses `path`; a missing file is an empty one.
    pub fn read(path: PathBuf) -> Result<File, FileError> {
        let text = match super::read_small_file(&path, super::PROFILE_FILE_LIMIT) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| FileError {
                path: path.clone(),
                message: "not UTF-8 text".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(File::missing(path));
            }
            Err(e) => {
                return Err(FileError {
                    message: format!("cannot read it: {}", crate::message::plain_io_message(&e)),
                    path,
                });
            }
        };
        let sections = parse(&text).map_err(|(line, message)| FileError {
            path: path.clone(),
            message: format!("line {line}: {message}"),
        })?;
        Ok(File {
            path,
            exists: true,
            sections,
        })
    }

    /// A file that does not exist at `path`.
    pub fn missing(path: PathBuf) -> File {
        File {
            path,
            ..File::default()
        }
    }

    /// A file parsed from `text`, as if read from `path` (for tests).
    pub fn from_text(path: impl Into<PathBuf>, text: &str) -> Result<File, FileError> {
        let path = path.into();
        let sections = parse(text).map_err(|(line, message)| FileError {
            path: path.clone(),
            message: format!("line {line}: {message}"),
        })?;
        Ok(File {
            path,
            exists: true,
            sections,
        })
    }

    /// The section whose header, once whitespace runs are squeezed to one space, is `header`.
    fn section(&self, header: &str) -> Option<&Properties> {
        self.sections.get(header)
    }
}

/// The two shared files, and which profile of them is in use.
#[derive(Debug)]
pub struct Profiles {
    /// `~/.aws/config` or `$AWS_CONFIG_FILE`.
    pub config: File,
    /// `~/.aws/credentials` or `$AWS_SHARED_CREDENTIALS_FILE`.
    pub credentials: File,
    /// The profile's name.
    pub name: String,
}

/// One value and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// The value.
    pub value: &'a str,
    /// The file that holds it.
    pub path: &'a Path,
}

impl Profiles {
    /// Property `key` of the profile in use: the credentials file's `[name]` first, then the
    /// config file's `[profile name]` (or `[default]` for `default`). An empty value counts as
    /// unset.
    pub fn get(&self, key: &str) -> Option<Found<'_>> {
        let in_credentials = self
            .credentials
            .section(&self.name)
            .and_then(|p| p.get(key))
            .map(|v| (v, &self.credentials.path));
        let in_config = || {
            self.config_section()
                .and_then(|p| p.get(key))
                .map(|v| (v, &self.config.path))
        };
        in_credentials
            .or_else(in_config)
            .filter(|(v, _)| !v.is_empty())
            .map(|(value, path)| Found {
                value: value.as_str(),
                path: path.as_path(),
            })
    }

    /// Whether either file has a section for the profile.
    pub fn exists(&self) -> bool {
        self.credentials.section(&self.name).is_some() || self.config_section().is_some()
    }

    /// Sub-property `key` of `service` in the `[services NAME]` section the profile names with
    /// `services = NAME` (`s3 =` then `  endpoint_url = ...`).
    pub fn service(&self, service: &str, key: &str) -> Option<Found<'_>> {
        let name = self.get("services")?;
        let section = self.config.section(&format!("services {}", name.value))?;
        let block = section.get(service)?;
        block
            .lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .map(|value| Found {
                value,
                path: &self.config.path,
            })
    }

    /// Where the profile would be: the file that has it, else both files' paths.
    pub fn whereabouts(&self) -> String {
        if self.credentials.section(&self.name).is_some() {
            self.credentials.path.display().to_string()
        } else if self.config_section().is_some() {
            self.config.path.display().to_string()
        } else {
            format!(
                "{} or {}",
                self.credentials.path.display(),
                self.config.path.display()
            )
        }
    }

    /// The config file's section of the profile: `[profile NAME]`, and for `default` also
    /// `[default]` (the spec lets `[profile default]` win when both exist).
    fn config_section(&self) -> Option<&Properties> {
        self.config
            .section(&format!("profile {}", self.name))
            .or_else(|| (self.name == "default").then(|| self.config.section("default"))?)
    }
}

/// Parses a profile file into sections (header with whitespace runs squeezed to one space)
/// of properties; `Err((line number, message))` for a line that is none of the known forms.
pub fn parse(text: &str) -> Result<HashMap<String, Properties>, (usize, String)> {
    let mut sections: HashMap<String, Properties> = HashMap::new();
    let mut section: Option<String> = None;
    // The property an indented line continues, and whether it takes sub-properties.
    let mut property: Option<(String, bool)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_matches(WHITESPACE);
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if raw.starts_with('[') {
            let line = strip_comment(raw, false);
            let header = line
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .ok_or((number, "a section header must end with `]`".to_string()))?;
            let header = header.split(WHITESPACE).filter(|w| !w.is_empty());
            let header = header.collect::<Vec<_>>().join(" ");
            if header.is_empty() {
                return Err((number, "empty section name `[]`".into()));
            }
            sections.entry(header.clone()).or_default();
            section = Some(header);
            property = None;
            continue;
        }
        let Some(current) = &section else {
            return Err((number, "a property before any [section] header".to_string()));
        };
        let properties = sections.get_mut(current).expect("the section exists");
        if raw.starts_with(WHITESPACE) {
            let Some((name, subproperties)) = &property else {
                return Err((number, "an indented line that continues no property".into()));
            };
            let line = if *subproperties {
                let line = strip_comment(raw, true);
                if !line.contains('=') {
                    return Err((number, "expected \"name = value\" under a property".into()));
                }
                line
            } else {
                trimmed
            };
            let value = properties.get_mut(name).expect("the property exists");
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let line = strip_comment(raw, true);
        let (name, value) = line
            .split_once('=')
            .ok_or((number, "expected \"name = value\"".to_string()))?;
        let name = name.trim_matches(WHITESPACE).to_ascii_lowercase();
        if name.is_empty() {
            return Err((number, "a property without a name".into()));
        }
        let value = value.trim_matches(WHITESPACE);
        property = Some((name.clone(), value.is_empty()));
        properties.insert(name, value.to_string());
    }
    Ok(sections)
}

/// Space and tab: the only whitespace the spec knows.
const WHITESPACE: &[char] = &[' ', '\t'];

/// `line` trimmed, without its comment: from the first `#` or `;`, which on a property line
/// must follow whitespace to count (`a = b#c` keeps `b#c`).
fn strip_comment(line: &str, needs_space: bool) -> &str {
    let line = line.trim_matches(WHITESPACE);
    let mut after_space = false;
    for (i, c) in line.char_indices() {
        if matches!(c, '#' | ';') && (after_space || !needs_space) {
            return line[..i].trim_matches(WHITESPACE);
        }
        after_space = WHITESPACE.contains(&c);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str, section: &str) -> Properties {
        parse(text).unwrap().remove(section).unwrap()
    }

    #[test]
    fn comments_whitespace_and_case() {
        let text = "# top comment\n; another\n\n[profile  x ] # after the header\n\
                    AWS_Access_Key_ID = AKID ; the key\n\
                    aws_secret_access_key=se#cret;x # real comment\n\
                    empty =\n\r\n[default];c\nregion=us-east-2\n";
        let x = props(text, "profile x");
        assert_eq!(x["aws_access_key_id"], "AKID");
        assert_eq!(x["aws_secret_access_key"], "se#cret;x");
        assert_eq!(x["empty"], "");
        assert_eq!(x.len(), 3, "{x:?}");
        assert_eq!(props(text, "default")["region"], "us-east-2");
    }

    #[test]
    fn continuation_and_subproperties() {
        let text = "[profile a]\nservices = mine\nnote = one\n  two\n\
                    [services mine]\ns3 =\n  endpoint_url = http://h:1 # c\n  other = x\n\
                    sts =\n  endpoint_url = http://s\n";
        assert_eq!(props(text, "profile a")["note"], "one\ntwo");
        let services = props(text, "services mine");
        assert_eq!(services["s3"], "\nendpoint_url = http://h:1\nother = x");
        let profiles = Profiles {
            config: File::from_text("/c", text).unwrap(),
            credentials: File::default(),
            name: "a".into(),
        };
        assert_eq!(
            profiles.service("s3", "endpoint_url").unwrap().value,
            "http://h:1"
        );
        assert_eq!(
            profiles.service("sts", "ENDPOINT_URL").unwrap().value,
            "http://s"
        );
        assert_eq!(profiles.service("iam", "endpoint_url"), None);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        assert_eq!(
            parse("region = x\n").unwrap_err(),
            (1, "a property before any [section] header".into())
        );
        assert_eq!(
            parse("[a]\n\njust words\n").unwrap_err(),
            (3, "expected \"name = value\"".into())
        );
        assert_eq!(
            parse("[a\n").unwrap_err(),
            (1, "a section header must end with `]`".into())
        );
        assert_eq!(
            parse("[a]\n  indented\n").unwrap_err(),
            (2, "an indented line that continues no property".into())
        );
        assert_eq!(
            parse("[a]\ns3 =\n  no equals\n").unwrap_err(),
            (3, "expected \"name = value\" under a property".into())
        );
        let err = File::from_text("/h/.aws/config", "[a]\n= v\n").unwrap_err();
        assert_eq!(
            (err.path.to_str().unwrap(), err.message.as_str()),
            ("/h/.aws/config", "line 2: a property without a name")
        );
    }

    #[test]
    fn profiles_come_from_both_files_credentials_first() {
        let config = "[default]\nregion = eu-west-1\n[profile x]\nregion = us-west-2\n\
                      aws_access_key_id = FROM_CONFIG\n[x]\nregion = not-a-profile\n";
        let credentials = "[x]\naws_access_key_id = FROM_CREDENTIALS\n\
                           [profile y]\naws_access_key_id = literal\n";
        let profiles = |name: &str| Profiles {
            config: File::from_text("/c", config).unwrap(),
            credentials: File::from_text("/k", credentials).unwrap(),
            name: name.into(),
        };
        let x = profiles("x");
        assert_eq!(
            x.get("aws_access_key_id"),
            Some(Found {
                value: "FROM_CREDENTIALS",
                path: Path::new("/k")
            })
        );
        assert_eq!(x.get("region").unwrap().value, "us-west-2");
        assert_eq!(x.get("region").unwrap().path, Path::new("/c"));
        assert_eq!(
            profiles("default").get("region").unwrap().value,
            "eu-west-1"
        );
        // `[profile y]` in the credentials file is a profile named "profile y".
        assert!(!profiles("y").exists());
        assert!(profiles("profile y").exists());
        assert!(!profiles("z").exists());
        assert_eq!(profiles("z").whereabouts(), "/k or /c");
    }

    #[test]
    fn profile_default_wins_over_default() {
        let config = "[default]\nregion = a\n[profile default]\nregion = b\n";
        let profiles = Profiles {
            config: File::from_text("/c", config).unwrap(),
            credentials: File::default(),
            name: "default".into(),
        };
        assert_eq!(profiles.get("region").unwrap().value, "b");
    }

    #[test]
    fn files_that_are_missing_unreadable_or_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let missing = File::read(dir.path().join("none")).unwrap();
        assert!(!missing.exists);
        let binary = dir.path().join("bin");
        std::fs::write(&binary, b"[a]\nx = \xff\n").unwrap();
        assert_eq!(File::read(binary).unwrap_err().message, "not UTF-8 text");
        let err = File::read(dir.path().to_path_buf()).unwrap_err();
        assert!(err.message.starts_with("cannot read it: "), "{err:?}");
    }
}
