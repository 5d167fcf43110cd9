//! Which files an upload takes: globs, size and age filters, hidden files, a list of paths, and
//! a shard of the whole.
//!
//! Selection happens in two places, both before any file is opened:
//!
//! - **While walking** ([`Selector`], applied by [`crate::walk::Walk::selecting`]): every entry
//!   is matched by its *name*, the path below the argument it was found under (for a file given
//!   as an argument, its base name; with `--files-from`, the path as listed, a leading `./`
//!   dropped). That is the object name before `--prefix` and `--flatten`.
//!   - A glob without `/` matches the base name at any depth (`*.sif`); a glob with `/` matches
//!     the whole name (`lib/**/*.tar`; a leading `/` is allowed and changes nothing). `*`, `?`
//!     and `[...]` never cross a `/`; `**` does. Matching is case-sensitive.
//!   - `--exclude` applies to files and directories: an excluded directory is not descended
//!     into. A glob ending in `/` excludes directories only. Exclude wins over include.
//!   - `--include` applies to files only (directories are always descended into, so
//!     `--include '*.sif'` finds every `.sif` at any depth); with none, every file is included.
//!   - `--exclude-hidden` drops files and directories whose name starts with `.` below each
//!     argument (a path named on the command line or listed is taken as given). The default
//!     takes hidden files, as `aws s3 sync`, rclone and s5cmd do: a sync job that silently left
//!     files behind would be worse than one that uploads a dotfile.
//!   - Size (`--min-size`, `--max-size`, both inclusive) and age (`--newer-than`, by mtime,
//!     strictly newer) need the file's metadata: one `stat` per file that passed the globs,
//!     and only when such a filter is set (walkdir reads types from the directory and keeps no
//!     metadata).
//! - **After naming** ([`ResolvedShard`]): `--shard K/N` keeps the files whose final object name
//!   falls in shard `K` of `N` ([`shard_of`]), after every name was checked, so a duplicate is
//!   refused by every shard alike.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest as _, Sha256};

use crate::naming::Plan;

/// The environment variables `--shard auto/N` reads the index from, first set wins: a
/// Kubernetes Indexed Job, a Slurm job array, and hashup's own (for HTCondor's `$(Process)`
/// or anything else).
pub const SHARD_INDEX_VARS: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "HASHUP_SHARD_INDEX",
];

/// What to select, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectOptions {
    /// Globs a file must match one of (none: every file).
    pub include: Vec<String>,
    /// Globs no file or directory may match.
    pub exclude: Vec<String>,
    /// Drop names starting with `.` below each root.
    pub exclude_hidden: bool,
    /// Smallest size taken, in bytes (inclusive).
    pub min_size: Option<u64>,
    /// Largest size taken, in bytes (inclusive).
    pub max_size: Option<u64>,
    /// Take only files modified after this.
    pub newer_than: Option<NewerThan>,
    /// A file listing more roots, one per line (`-`: standard input).
    pub files_from: Option<PathBuf>,
    /// The list is NUL-separated.
    pub null_separated: bool,
    /// Take only this shard of the files.
    pub shard: Option<Shard>,
}

/// The `--newer-than` threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewerThan {
    /// Modified less than this long before the run started.
    Age(Duration),
    /// Modified after this instant.
    Since(SystemTime),
}

impl NewerThan {
    /// The instant a file's mtime must be after, for a run started at `now`.
    pub fn cutoff(&self, now: SystemTime) -> SystemTime {
        match *self {
            // Far enough back to be unrepresentable: every file is newer.
            NewerThan::Age(age) => now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH),
            NewerThan::Since(t) => t,
        }
    }
}

/// `--shard K/N`: shard `K` (from 0) of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `K`, or where to read it from.
    pub index: ShardIndex,
    /// `N`, at least 1.
    pub count: u64,
}

/// Where a shard's index comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardIndex {
    /// Given.
    Fixed(u64),
    /// From the first of [`SHARD_INDEX_VARS`] that is set.
    Auto,
}

/// A shard with a known index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedShard {
    /// From 0, below `count`.
    pub index: u64,
    /// How many shards.
    pub count: u64,
}

impl ResolvedShard {
    /// Whether the object `name` belongs to this shard.
    pub fn contains(&self, name: &[u8]) -> bool {
        shard_of(name, self.count) == self.index
    }
}

/// The shard (from 0) of `count` that an object name belongs to: the first 8 bytes of the
/// SHA-256 of the name's UTF-8 bytes, read as a big-endian integer, modulo `count`.
///
/// This is a contract: it depends on nothing but the name and `count`, so every version of
/// hashup on every platform splits a tree the same way, and shards run by different versions
/// still cover each file exactly once.
pub fn shard_of(name: &[u8], count: u64) -> u64 {
    let digest = Sha256::digest(name);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

/// Why a selection cannot be set up; every one is a usage error.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A glob that does not parse.
    #[error("invalid --{flag} pattern {pattern:?}: {reason}")]
    Glob {
        /// `include` or `exclude`.
        flag: &'static str,
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--min-size` above `--max-size`: nothing could be selected.
    #[error("--min-size ({min} bytes) is larger than --max-size ({max} bytes)")]
    SizeRange {
        /// Smallest size.
        min: u64,
        /// Largest size.
        max: u64,
    },
    /// `--shard auto/N` without a usable index.
    #[error("--shard: {0}")]
    Shard(String),
    /// The `--files-from` list cannot be read.
    // No #[source]: the message already says it, and `{:#}` would say it twice.
    #[error("cannot read --files-from {}: {}", path.display(), crate::message::plain_io_message(error))]
    List {
        /// The list.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// An empty entry in a NUL-separated list.
    #[error("--files-from {}: entry {entry} is empty", path.display())]
    EmptyEntry {
        /// The list.
        path: PathBuf,
        /// Its position, from 1.
        entry: usize,
    },
}

/// Compiled globs and thresholds, asked about each walk entry.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    include_base: GlobSet,
    include_path: GlobSet,
    exclude_base: GlobSet,
    exclude_path: GlobSet,
    exclude_dir_base: GlobSet,
    exclude_dir_path: GlobSet,
    has_include: bool,
    exclude_hidden: bool,
    min_size: Option<u64>,
    max_size: Option<u64>,
    newer_than: Option<SystemTime>,
}

/// Globs split by what they match against.
struct Sets {
    base: GlobSetBuilder,
    path: GlobSetBuilder,
    dir_base: GlobSetBuilder,
    dir_path: GlobSetBuilder,
}

impl Sets {
    fn new() -> Sets {
        Sets {
            base: GlobSetBuilder::new(),
            path: GlobSetBuilder::new(),
            dir_base: GlobSetBuilder::new(),
            dir_path: GlobSetBuilder::new(),
        }
    }

    fn add(
        &mut self,
        flag: &'static str,
        pattern: &str,
        dirs_allowed: bool,
    ) -> Result<(), SelectError> {
        let bad = |reason: &str| SelectError::Glob {
            flag,
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let (glob, dir_only) = match pattern.strip_suffix('/') {
            Some(_) if !dirs_allowed => {
                return Err(bad(
                    "matches files only; to take what is below a directory, use DIR/**",
                ));
            }
            Some(dir) => (dir, true),
            None => (pattern, false),
        };
        let anchored = glob.contains('/');
        let glob = glob.strip_prefix('/').unwrap_or(glob);
        if glob.is_empty() {
            return Err(bad("empty pattern"));
        }
        let compiled = GlobBuilder::new(glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| bad(&e.kind().to_string()))?;
        let set = match (dir_only, anchored) {
            (false, false) => &mut self.base,
            (false, true) => &mut self.path,
            (true, false) => &mut self.dir_base,
            (true, true) => &mut self.dir_path,
        };
        set.add(compiled);
        Ok(())
    }
}

fn build(set: GlobSetBuilder) -> GlobSet {
    // Every glob was built on its own already, so the set cannot fail.
    set.build().unwrap_or_else(|_| GlobSet::empty())
}

impl Selector {
    /// Compiles `options` for a run started at `now` (the reference for `--newer-than AGE`).
    pub fn new(options: &SelectOptions, now: SystemTime) -> Result<Selector, SelectError> {
        let mut include = Sets::new();
        for pattern in &options.include {
            include.add("include", pattern, false)?;
        }
        let mut exclude = Sets::new();
        for pattern in &options.exclude {
            exclude.add("exclude", pattern, true)?;
        }
        if let (Some(min), Some(max)) = (options.min_size, options.max_size)
            && min > max
        {
            return Err(SelectError::SizeRange { min, max });
        }
        Ok(Selector {
            include_base: build(include.base),
            include_path: build(include.path),
            exclude_base: build(exclude.base),
            exclude_path: build(exclude.path),
            exclude_dir_base: build(exclude.dir_base),
            exclude_dir_path: build(exclude.dir_path),
            has_include: !options.include.is_empty(),
            exclude_hidden: options.exclude_hidden,
            min_size: options.min_size,
            max_size: options.max_size,
            newer_than: options.newer_than.map(|n| n.cutoff(now)),
        })
    }

    /// Whether a directory named `name` is walked into (`below_root`: found inside a root,
    /// rather than named as one). A directory given as an argument is not asked: its own name
    /// is no part of the names below it.
    pub fn enters_dir(&self, name: &Path, below_root: bool) -> bool {
        let base = base_name(name);
        if self.exclude_hidden && below_root && is_hidden(base) {
            return false;
        }
        !(self.exclude_base.is_match(base)
            || self.exclude_path.is_match(name)
            || self.exclude_dir_base.is_match(base)
            || self.exclude_dir_path.is_match(name))
    }

    /// Whether a file named `name` passes the globs and the hidden rule (no metadata needed).
    pub fn takes_name(&self, name: &Path, below_root: bool) -> bool {
        let base = base_name(name);
        if self.exclude_hidden && below_root && is_hidden(base) {
            return false;
        }
        if self.exclude_base.is_match(base) || self.exclude_path.is_match(name) {
            return false;
        }
        !self.has_include || self.include_base.is_match(base) || self.include_path.is_match(name)
    }

    /// Whether size or age filters are set, so a file's metadata must be read.
    pub fn needs_metadata(&self) -> bool {
        self.min_size.is_some() || self.max_size.is_some() || self.newer_than.is_some()
    }

    /// Whether a file of `size` bytes passes the size filters.
    pub fn takes_size(&self, size: u64) -> bool {
        !(self.min_size.is_some_and(|min| size < min)
            || self.max_size.is_some_and(|max| size > max))
    }

    /// Whether a file with this metadata passes the size and age filters.
    pub fn takes_metadata(&self, meta: &Metadata) -> bool {
        if !self.takes_size(meta.len()) {
            return false;
        }
        match self.newer_than {
            // A file system without mtimes cannot show a file is new.
            Some(cutoff) => meta.modified().is_ok_and(|m| m > cutoff),
            None => true,
        }
    }
}

fn base_name(name: &Path) -> &Path {
    name.file_name().map_or(name, Path::new)
}

fn is_hidden(base: &Path) -> bool {
    base.as_os_str().as_bytes().first() == Some(&b'.')
}

/// Everything a run needs to select files, set up once before the walk.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The walk-time filter.
    pub selector: Selector,
    /// Roots read from `--files-from`, in list order, a leading `./` dropped.
    pub listed: Vec<PathBuf>,
    /// The shard to keep, if any.
    pub shard: Option<ResolvedShard>,
}

impl Selection {
    /// Compiles the filters, resolves the shard index (`var` looks up an environment
    /// variable) and reads the `--files-from` list (from `stdin` when it is `-`).
    pub fn prepare(
        options: &SelectOptions,
        now: SystemTime,
        var: impl Fn(&str) -> Option<String>,
        stdin: impl Read,
    ) -> Result<Selection, SelectError> {
        let selector = Selector::new(options, now)?;
        let shard = options
            .shard
            .map(|shard| resolve_shard(shard, var))
            .transpose()?;
        let listed = match &options.files_from {
            None => Vec::new(),
            Some(path) => {
                let error = |error| SelectError::List {
                    path: path.clone(),
                    error,
                };
                let mut bytes = Vec::new();
                if path.as_os_str() == "-" {
                    let mut stdin = stdin;
                    stdin.read_to_end(&mut bytes).map_err(error)?;
                } else {
                    bytes = std::fs::read(path).map_err(error)?;
                }
                parse_list(&bytes, options.null_separated).map_err(|entry| {
                    SelectError::EmptyEntry {
                        path: path.clone(),
                        entry,
                    }
                })?
            }
        };
        Ok(Selection {
            selector,
            listed,
            shard,
        })
    }

    /// Keeps the entries of this run's shard (all of them without `--shard`). A file is placed
    /// by its final object name; a walk error by its name below its root, so each is reported
    /// by exactly one shard.
    pub fn shard(&self, entries: Plan) -> Plan {
        let Some(shard) = self.shard else {
            return entries;
        };
        entries.retain(|name| shard.contains(name.as_os_str().as_bytes()))
    }
}

/// Splits a `--files-from` list: lines (empty ones ignored; no trimming, so names may hold
/// spaces) or NUL-terminated entries (a last terminator is optional; an empty entry is an
/// error, returned as its position from 1). A leading `./` is dropped.
pub fn parse_list(bytes: &[u8], null_separated: bool) -> Result<Vec<PathBuf>, usize> {
    let mut paths = Vec::new();
    let separator = if null_separated { b'\0' } else { b'\n' };
    let mut entries: Vec<&[u8]> = bytes.split(|&b| b == separator).collect();
    if entries.last().is_some_and(|last| last.is_empty()) {
        entries.pop(); // the final terminator
    }
    for (at, entry) in entries.into_iter().enumerate() {
        if entry.is_empty() {
            if null_separated {
                return Err(at + 1);
            }
            continue;
        }
        let mut entry = entry;
        while let Some(rest) = entry.strip_prefix(b"./") {
            entry = rest;
        }
        if entry.is_empty() {
            entry = b"."; // `./` itself: the current directory
        }
        paths.push(PathBuf::from(std::ffi::OsString::from_vec(entry.to_vec())));
    }
    Ok(paths)
}

fn resolve_shard(
    shard: Shard,
    var: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedShard, SelectError> {
    let count = shard.count;
    let index = match shard.index {
        ShardIndex::Fixed(index) => index,
        ShardIndex::Auto => {
            let Some((name, value)) = SHARD_INDEX_VARS
                .iter()
                .find_map(|&name| var(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
            else {
                return Err(SelectError::Shard(format!(
                    "auto/{count} needs the shard index in {}",
                    SHARD_INDEX_VARS.join(", ")
                )));
            };
            let index: u64 = digits(value.trim()).ok_or_else(|| {
                SelectError::Shard(format!("{name}={value:?} is not a shard index"))
            })?;
            if index >= count {
                let hint = if name == "SLURM_ARRAY_TASK_ID" {
                    format!(" (run the array as --array=0-{})", count - 1)
                } else {
                    String::new()
                };
                return Err(SelectError::Shard(format!(
                    "{name}={index} is not below the shard count {count}{hint}"
                )));
            }
            index
        }
    };
    Ok(ResolvedShard { index, count })
}

/// A non-negative integer of ASCII digits only (`str::parse` would take a `+`).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `--shard K/N` or `auto/N`: `K` from 0 and below `N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| "expected K/N or auto/N, e.g. 0/4".to_string())?;
    let count = digits(n)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("the shard count {n:?} is not a whole number above 0"))?;
    let index = if k == "auto" {
        ShardIndex::Auto
    } else {
        let index =
            digits(k).ok_or_else(|| format!("the shard index {k:?} is not auto or a number"))?;
        if index >= count {
            return Err(format!(
                "the shard index {index} is not below the shard count {count} (shards count from 0)"
            ));
        }
        ShardIndex::Fixed(index)
    };
    Ok(Shard { index, count })
}

/// Parses a size: a number (fractions allowed) and an optional unit, case-insensitive. `k`,
/// `M`, `G`, `T` (also `kB`, `MB`...) are powers of 1000; `Ki`, `Mi`, `Gi`, `Ti` (also `KiB`...)
/// powers of 1024; `B` or none is bytes. A fraction of a byte is dropped.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a size: use bytes or a unit, e.g. 500, 10M, 1.5G, 4KiB (k/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n)"
        )
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let multiplier: u128 = match unit {
        "" => 1,
        "k" => 1000,
        "m" => 1000u128.pow(2),
        "g" => 1000u128.pow(3),
        "t" => 1000u128.pow(4),
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(bad)?;
    if !fraction.is_empty() {
        let digits = fraction.get(..18).unwrap_or(fraction);
        let scale = 10u128.pow(digits.len() as u32);
        let part: u128 = digits.parse().map_err(|_| bad())?;
        bytes += part * multiplier / scale;
    }
    u64::try_from(bytes).map_err(|_| bad())
}

/// Parses `--newer-than`: an age (`36h`, `7d`, `1d12h`; units `s`, `m`, `h`, `d`, `w`) or an
/// RFC 3339 time (`2026-05-01T12:00:00Z`, `2026-05-01T14:00:00+02:00`) or a date
/// (`2026-05-01`, midnight UTC). Fractions of a second are dropped.
pub fn parse_newer_than(s: &str) -> Result<NewerThan, String> {
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return parse_time(s).map(NewerThan::Since).ok_or_else(|| {
            format!("{s:?} is not an RFC 3339 time: use e.g. 2026-05-01T12:00:00Z, 2026-05-01T14:00:00+02:00 or 2026-05-01")
        });
    }
    parse_age(s).map(NewerThan::Age).ok_or_else(|| {
        format!(
            "{s:?} is neither an age (e.g. 36h, 7d, 1d12h; units s m h d w) nor an RFC 3339 time"
        )
    })
}

fn parse_age(s: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, after) = rest.split_at(split);
        let number: u64 = digits(number)?;
        let unit = after.chars().next()?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(seconds)?)?;
        rest = &after[1..];
    }
    Some(Duration::from_secs(total))
}

fn parse_time(s: &str) -> Option<SystemTime> {
    // Byte offsets below are character offsets only in ASCII.
    if !s.is_ascii() {
        return None;
    }
    if s.len() == 10 {
        return crate::utc::parse_iso8601(&format!("{s}T00:00:00Z"));
    }
    let s = s.replace(['t', ' '], "T").replace('z', "Z");
    if s.ends_with('Z') {
        return crate::utc::parse_iso8601(&s);
    }
    // `±HH:MM`: the same wall time read as UTC, then moved by the offset.
    let (local, offset) = s.split_at(s.len().checked_sub(6)?);
    let (sign, hours, minutes) = (&offset[..1], &offset[1..3], &offset[4..]);
    if &offset[3..4] != ":" {
        return None;
    }
    let (hours, minutes) = (digits(hours)?, digits(minutes)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let utc_wall = crate::utc::parse_iso8601(&format!("{local}Z"))?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    // 12:00+02:00 is 10:00Z: a positive offset is subtracted.
    match sign {
        "+" => utc_wall.checked_sub(shift),
        "-" => utc_wall.checked_add(shift),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn shard_of_is_a_fixed_function_of_the_name() {
        // Independent vectors: int.from_bytes(hashlib.sha256(name).digest()[:8], "big").
        for (name, first8) in VECTORS {
            for count in [1u64, 2, 3, 4, 7, 16, 1000] {
                assert_eq!(
                    shard_of(name, count),
                    first8 % count,
                    "{name:?} mod {count}"
                );
            }
        }
    }

    const VECTORS: [(&[u8], u64); 6] = [
        (b"", 16_406_829_232_824_261_652),
        (b"a.sif", 10_825_502_113_959_098_738),
        (b"lib/ubuntu-22.04.sif", 14_238_369_106_105_638_540),
        (b"g1/images/x.tar", 13_000_519_961_733_917_232),
        (
            "caf\u{e9} au lait.sif".as_bytes(),
            17_042_229_339_717_994_408,
        ),
        (b"with space/and\nnewline", 10_130_004_296_961_639_202),
    ];

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("500"), Ok(500));
        assert_eq!(parse_size("500B"), Ok(500));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4ki"), Ok(4096));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size(".5k"), Ok(500));
        assert_eq!(parse_size("2T"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1Ti"), Ok(1 << 40));
        assert_eq!(parse_size("0.0001k"), Ok(0));
        for bad in [
            "",
            "M",
            "1.2.3",
            "-1",
            "+1",
            "10 M",
            "10X",
            "1e6",
            ".",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ages_and_times() {
        let age = |s| match parse_newer_than(s) {
            Ok(NewerThan::Age(d)) => d.as_secs(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(age("36h"), 36 * 3600);
        assert_eq!(age("7d"), 7 * 86_400);
        assert_eq!(age("1d12h"), 36 * 3600);
        assert_eq!(age("90m"), 5400);
        assert_eq!(age("2w"), 14 * 86_400);
        assert_eq!(age("0s"), 0);
        let at = |s| match parse_newer_than(s) {
            Ok(NewerThan::Since(t)) => t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            other => panic!("{s}: {other:?}"),
        };
        // 2026-05-01T00:00:00Z is 1777593600 (date -u -d 2026-05-01 +%s).
        assert_eq!(at("2026-05-01"), 1_777_593_600);
        assert_eq!(at("2026-05-01T12:00:00Z"), 1_777_593_600 + 12 * 3600);
        assert_eq!(at("2026-05-01t12:00:00z"), 1_777_593_600 + 12 * 3600);
        assert_eq!(at("2026-05-01 12:00:00Z"), 1_777_593_600 + 12 * 3600);
        assert_eq!(at("2026-05-01T12:00:00.75Z"), 1_777_593_600 + 12 * 3600);
        assert_eq!(at("2026-05-01T14:30:00+02:30"), 1_777_593_600 + 12 * 3600);
        assert_eq!(at("2026-05-01T07:00:00-05:00"), 1_777_593_600 + 12 * 3600);
        for bad in [
            "",
            "7",
            "h",
            "7x",
            "-7d",
            "7d-",
            "2026-13-01",
            "2026-05-01T12:00:00",
            "2026-05-01T12:00:00+2:00",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00Z",
            "2026-05-01T12:00:0\u{e9}Z",
            "2026-05-01T12:00:00\u{e9}+0",
            "2026-05-01T12:00:00+0200",
            "7\u{e9}",
        ] {
            assert!(parse_newer_than(bad).is_err(), "{bad:?}");
        }
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        assert_eq!(
            NewerThan::Age(Duration::from_secs(40_000)).cutoff(now),
            UNIX_EPOCH + Duration::from_secs(60_000)
        );
        assert_eq!(
            NewerThan::Age(Duration::from_secs(200_000)).cutoff(now),
            UNIX_EPOCH - Duration::from_secs(100_000)
        );
    }

    #[test]
    fn shard_specs() {
        let fixed = |k, n| {
            Ok(Shard {
                index: ShardIndex::Fixed(k),
                count: n,
            })
        };
        assert_eq!(parse_shard("0/4"), fixed(0, 4));
        assert_eq!(parse_shard("3/4"), fixed(3, 4));
        assert_eq!(parse_shard("0/1"), fixed(0, 1));
        assert_eq!(
            parse_shard("auto/8"),
            Ok(Shard {
                index: ShardIndex::Auto,
                count: 8
            })
        );
        for bad in [
            "4/4", "1/0", "0/0", "-1/4", "+1/4", "a/4", "1", "1/", "/4", "1/4/5", "auto",
        ] {
            assert!(parse_shard(bad).is_err(), "{bad:?}");
        }
        let auto = Shard {
            index: ShardIndex::Auto,
            count: 4,
        };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let resolved = |index| Ok(ResolvedShard { index, count: 4 });
        let r = |pairs| resolve_shard(auto, env(pairs)).map_err(|e| e.to_string());
        assert_eq!(r(&[("HASHUP_SHARD_INDEX", "2")]), resolved(2));
        assert_eq!(
            r(&[("HASHUP_SHARD_INDEX", "2"), ("SLURM_ARRAY_TASK_ID", "1")]),
            resolved(1)
        );
        assert_eq!(
            r(&[("JOB_COMPLETION_INDEX", "3"), ("SLURM_ARRAY_TASK_ID", "1")]),
            resolved(3)
        );
        assert_eq!(
            r(&[("JOB_COMPLETION_INDEX", ""), ("HASHUP_SHARD_INDEX", "0")]),
            resolved(0)
        );
        assert_eq!(
            r(&[]),
            Err(
                "--shard: auto/4 needs the shard index in JOB_COMPLETION_INDEX, \
                 SLURM_ARRAY_TASK_ID, HASHUP_SHARD_INDEX"
                    .into()
            )
        );
        assert_eq!(
            r(&[("SLURM_ARRAY_TASK_ID", "4")]),
            Err(
                "--shard: SLURM_ARRAY_TASK_ID=4 is not below the shard count 4 \
                 (run the array as --array=0-3)"
                    .into()
            )
        );
        assert_eq!(
            r(&[("HASHUP_SHARD_INDEX", "x")]),
            Err("--shard: HASHUP_SHARD_INDEX=\"x\" is not a shard index".into())
        );
    }

    #[test]
    fn lists() {
        let paths = |v: Vec<PathBuf>| {
            v.into_iter()
                .map(|p| p.into_os_string().into_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(parse_list(b"a\n\n./b c\n././d/\n./\n", false).unwrap()),
            [&b"a"[..], b"b c", b"d/", b"."]
        );
        assert_eq!(
            paths(parse_list(b"a\nb", false).unwrap()),
            [&b"a"[..], b"b"]
        );
        assert_eq!(
            paths(parse_list(b"a\nb\0./c d\0", true).unwrap()),
            [&b"a\nb"[..], b"c d"]
        );
        assert_eq!(paths(parse_list(b"a\0b", true).unwrap()), [&b"a"[..], b"b"]);
        assert_eq!(parse_list(b"a\0\0b\0", true), Err(2));
        assert_eq!(parse_list(b"", true), Ok(vec![]));
        assert_eq!(parse_list(b"\n\n", false), Ok(vec![]));
    }

    #[test]
    fn globs() {
        let selector = |include: &[&str], exclude: &[&str]| {
            let options = SelectOptions {
                include: include.iter().map(|s| s.to_string()).collect(),
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
                ..SelectOptions::default()
            };
            Selector::new(&options, SystemTime::now()).unwrap()
        };
        let s = selector(&["*.sif", "lib/*.tar"], &["old-*", "lib/tmp/"]);
        let takes = |name: &str| s.takes_name(Path::new(name), true);
        assert!(takes("a.sif"));
        assert!(takes("x/y/a.sif"));
        assert!(takes("lib/a.tar"));
        assert!(!takes("lib/x/a.tar")); // `*` does not cross `/`
        assert!(!takes("x/lib/a.tar")); // a glob with `/` matches the whole name
        assert!(!takes("a.tar"));
        assert!(!takes("x/old-a.sif")); // exclude wins
        let enters = |name: &str| s.enters_dir(Path::new(name), true);
        assert!(enters("lib"));
        assert!(!enters("lib/tmp"));
        assert!(enters("x/lib/tmp"));
        assert!(!enters("x/old-stuff"));

        let any = |pattern: &str| {
            Selector::new(
                &SelectOptions {
                    include: vec![pattern.into()],
                    ..SelectOptions::default()
                },
                SystemTime::now(),
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            any("a[").unwrap_err(),
            "invalid --include pattern \"a[\": unclosed character class; missing ']'"
        );
        assert!(any("").is_err());
        assert!(any("dir/").is_err());
        let s = selector(&["/top/**"], &[]);
        assert!(s.takes_name(Path::new("top/a/b"), true));
        assert!(!s.takes_name(Path::new("x/top/a"), true));
        let s = selector(&["**/b/*.sif"], &[]);
        assert!(s.takes_name(Path::new("b/1.sif"), true));
        assert!(s.takes_name(Path::new("a/b/1.sif"), true));
    }
}
