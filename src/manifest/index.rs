//! The manifests' state in compact form, for a run that resumes a journal (`upload --manifest`,
//! `--previous`): what each name's lines come to, without the lines.
//!
//! A [`Journal`] keeps every [`Record`] with its strings, over a kilobyte a file once
//! `latest()` and `stored()` have mapped them. A run needs far less of a name: the SHA-256 last
//! stored, the ETag and time the store gave the upload, whether the resumed journal still holds
//! it stored or gone, its size, and whether its path lay under one of the run's PATHs. An
//! [`Index`] keeps that as one fixed-size entry per name (the SHA-256 in binary), sorted by
//! name, the names and ETags in one byte arena, and answers by binary search; nothing is
//! allocated per name. It is built by streaming the manifests' lines (through the same line
//! parser as [`super::read`]): each record, `deleted`, `gone` and `back` line becomes an entry;
//! the entries are then sorted in place by name and line, and each name's run folded into one
//! entry by the rules of [`Journal::latest`], [`Journal::stored`], [`Journal::deletions`] and
//! [`Journal::gone`] and those of `skip::AlreadyStored` (a later record wins; a skip as already
//! stored keeps the upload it rests on; a deletion or a failure removes the evidence). The
//! figures are in docs/design.md ("Memory against the size of the tree").

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Journal, Line, LocalLine, OpenUpload, Record, Status};

/// Which manifest a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An earlier manifest (`--previous`).
    Previous,
    /// The manifest this run appends to (`--manifest`).
    Resumed,
}

/// A stored SHA-256, as the manifest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha<'a> {
    /// 64 lowercase hex digits, kept in binary.
    Binary(&'a [u8; 32]),
    /// Anything else, kept as written (it matches no file's hex).
    Text(&'a str),
}

impl Sha<'_> {
    /// Whether this is the SHA-256 whose lowercase hex is `hex`, as the strings would compare.
    pub fn is(&self, hex: &str) -> bool {
        match self {
            Sha::Binary(bytes) => lower_hex(hex).is_some_and(|b| b == **bytes),
            Sha::Text(text) => *text == hex,
        }
    }
}

/// What the manifests say of a stored name: the latest evidence, by the rules of
/// `skip::AlreadyStored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known<'a> {
    /// The SHA-256 stored, or `None` where the latest record failed (or a deletion).
    pub sha256: Option<Sha<'a>>,
    /// The ETag the store answered the upload with (`None` from an index built without
    /// them, [`Builder::etags`]).
    pub etag: Option<&'a str>,
    /// When the store acknowledged the upload, by its clock.
    pub stored_at: Option<SystemTime>,
    /// Which manifest said so last.
    pub role: Role,
}

/// A name the resumed manifest records as stored ([`Journal::stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The object name.
    pub name: &'a str,
    /// Gone locally ([`Journal::gone`]).
    pub gone: bool,
    /// Its latest record's path lay under one of the PATHs given to [`Builder::new`].
    pub under: bool,
    /// Its latest record's size.
    pub size: Option<u64>,
}

/// A span of the arena.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// What kind of line an entry was, while building.
const RECORD: u8 = 0;
const DELETED: u8 = 1;
const GONE: u8 = 2;
const BACK: u8 = 3;

// Flags. While building, of a record: its fields. Once folded, of a name: its state.
/// `sha` holds a SHA-256 (binary, or with `ODD` the span of its text).
const SHA: u16 = 1;
const ODD: u16 = 1 << 1;
const ETAG: u16 = 1 << 2;
const STORED_AT: u16 = 1 << 3;
const SIZE: u16 = 1 << 4;
/// The line's path lay under one of the run's PATHs (a resumed manifest's record).
const UNDER: u16 = 1 << 5;
/// From the resumed manifest (while building); the evidence's source (folded).
const RESUMED: u16 = 1 << 6;
const UPLOADED: u16 = 1 << 7;
const SKIPPED: u16 = 1 << 8;
/// Folded: the manifests say something of the name (`Known`).
const KNOWN: u16 = 1 << 9;
/// Folded: the resumed manifest holds it stored, and gone.
const HERE_STORED: u16 = 1 << 10;
const HERE_GONE: u16 = 1 << 11;

/// One line while building; one name once folded (80 bytes).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Binary SHA-256; with `ODD`, the span of its text in the first 8 bytes.
    sha: [u8; 32],
    size: u64,
    stored_at_secs: i64,
    name: Span,
    etag: Span,
    /// The line's number across all manifests read, in order.
    seq: u32,
    stored_at_nanos: u32,
    flags: u16,
    /// Which manifest (in the order read).
    journal: u16,
    kind: u8,
}

impl Entry {
    fn blank(name: Span, seq: u32, journal: u16, kind: u8) -> Entry {
        Entry {
            sha: [0; 32],
            size: 0,
            stored_at_secs: 0,
            name,
            etag: Span::default(),
            seq,
            stored_at_nanos: 0,
            flags: 0,
            journal,
            kind,
        }
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u16, on: bool) {
        match on {
            true => self.flags |= flag,
            false => self.flags &= !flag,
        }
    }

    /// Whether two entries carry the same SHA-256 (or both none), as the strings compare.
    fn same_sha(&self, other: &Entry, arena: &[u8]) -> bool {
        match (self.has(SHA), other.has(SHA)) {
            (false, false) => true,
            (true, true) => match (self.has(ODD), other.has(ODD)) {
                (false, false) => self.sha == other.sha,
                (true, true) => {
                    text(arena, odd_span(&self.sha)) == text(arena, odd_span(&other.sha))
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Takes `from`'s evidence (SHA-256, ETag, time) as the name's.
    fn take_evidence(&mut self, from: &Entry) {
        self.sha = from.sha;
        self.etag = from.etag;
        self.stored_at_secs = from.stored_at_secs;
        self.stored_at_nanos = from.stored_at_nanos;
        for flag in [SHA, ODD, ETAG, STORED_AT] {
            self.set(flag, from.has(flag));
        }
    }
}

fn odd_span(sha: &[u8; 32]) -> Span {
    Span {
        start: u32::from_le_bytes(sha[..4].try_into().expect("4 bytes")),
        len: u32::from_le_bytes(sha[4..8].try_into().expect("4 bytes")),
    }
}

fn text(arena: &[u8], span: Span) -> &str {
    let bytes = &arena[span.start as usize..span.start as usize + span.len as usize];
    // Only whole `str`s are put in the arena.
    std::str::from_utf8(bytes).expect("the arena holds whole strings")
}

/// 64 lowercase hex digits in binary; `None` for anything else.
fn lower_hex(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let digit = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Reads manifests into an [`Index`]: any `--previous` ones, oldest first, then the one the run
/// resumes.
pub struct Builder {
    sources: Vec<PathBuf>,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    journals: u16,
    seq: u32,
    resumed_id: Option<u16>,
    open_uploads: Vec<OpenUpload>,
    /// A manifest too large to index (over 4 GiB of names, or 4 billion lines).
    overflow: bool,
    /// Whether records' ETags are kept ([`Builder::etags`]).
    etags: bool,
}

impl Builder {
    /// A builder for a run over `sources` (its PATHs, as given): each resumed record notes
    /// whether its path lies under one of them.
    pub fn new(sources: &[PathBuf]) -> Builder {
        Builder {
            sources: sources.to_vec(),
            arena: Vec::new(),
            entries: Vec::new(),
            journals: 0,
            seq: 0,
            resumed_id: None,
            open_uploads: Vec::new(),
            overflow: false,
            etags: true,
        }
    }

    /// Whether to keep the records' ETags (the default). Only a comparison with a listing of
    /// the destination reads them ([`Known::etag`]); a run that lists nothing leaves them out
    /// and saves their bytes for every name.
    pub fn etags(mut self, keep: bool) -> Builder {
        self.etags = keep;
        self
    }

    /// Reads the manifest at `path` as [`super::read`] does (the same errors), keeping only
    /// what the index needs; a resumed manifest's open multipart uploads too.
    pub fn read(&mut self, path: &Path, role: Role) -> io::Result<()> {
        super::with_file(path, |input, origin| self.read_from(input, origin, role))
    }

    /// [`Builder::read`] from any reader; `origin` names it in errors.
    pub fn read_from(
        &mut self,
        input: impl io::BufRead,
        origin: &str,
        role: Role,
    ) -> io::Result<()> {
        let journal = self.next_journal(role)?;
        let mut uploads = Journal::default();
        super::scan(input, origin, |line| match line {
            Line::Record(record) => self.record(&record, journal, role),
            Line::Deleted(deleted) => self.named(&deleted.name, journal, DELETED),
            Line::Local(LocalLine::Gone(p)) => self.named(&p.name, journal, GONE),
            Line::Local(LocalLine::Back(p)) => self.named(&p.name, journal, BACK),
            Line::Upload(line) if role == Role::Resumed => uploads.apply(line),
            Line::Upload(_) | Line::Summary(_) | Line::Other => {}
        })?;
        if self.overflow {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{origin}: too large to index (over 4 GiB of names or 4 billion lines)"),
            ));
        }
        if role == Role::Resumed {
            self.open_uploads = uploads.open_uploads;
        }
        Ok(())
    }

    /// Adds a journal already read, as if its lines were read (tests, and callers that hold
    /// one).
    pub fn add(&mut self, journal: &Journal, role: Role) {
        let Ok(id) = self.next_journal(role) else {
            return;
        };
        let mut deleted = journal.deleted.iter().peekable();
        let mut local = journal.local.iter().peekable();
        for i in 0..=journal.records.len() {
            // The `deleted`, `gone` and `back` lines read before record i (the two kinds do not
            // bear on each other, so their order among themselves does not matter).
            while let Some((_, d)) = deleted.next_if(|(after, _)| *after == i) {
                self.named(&d.name, id, DELETED);
            }
            while let Some((_, line)) = local.next_if(|(after, _)| *after == i) {
                match line {
                    LocalLine::Gone(p) => self.named(&p.name, id, GONE),
                    LocalLine::Back(p) => self.named(&p.name, id, BACK),
                }
            }
            if let Some(record) = journal.records.get(i) {
                self.record(record, id, role);
            }
        }
        if role == Role::Resumed {
            self.open_uploads = journal.open_uploads.clone();
        }
    }

    fn next_journal(&mut self, role: Role) -> io::Result<u16> {
        let id = self.journals;
        if role == Role::Resumed {
            self.resumed_id = Some(id);
        }
        self.journals = id
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many manifests"))?;
        Ok(id)
    }

    fn push_str(&mut self, s: &str) -> Span {
        let (Ok(start), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(s.len())) else {
            self.overflow = true;
            return Span::default();
        };
        if start.checked_add(len).is_none() {
            self.overflow = true;
            return Span::default();
        }
        self.arena.extend_from_slice(s.as_bytes());
        Span { start, len }
    }

    fn push(&mut self, entry: Entry) {
        match self.seq.checked_add(1) {
            Some(next) => {
                self.seq = next;
                self.entries.push(entry);
            }
            None => self.overflow = true,
        }
    }

    fn named(&mut self, name: &str, journal: u16, kind: u8) {
        let name = self.push_str(name);
        let mut entry = Entry::blank(name, self.seq, journal, kind);
        entry.set(RESUMED, self.resumed_id == Some(journal));
        self.push(entry);
    }

    fn record(&mut self, record: &Record, journal: u16, role: Role) {
        let name = self.push_str(&record.name);
        let mut entry = Entry::blank(name, self.seq, journal, RECORD);
        if let Some(sha) = &record.sha256 {
            entry.flags |= SHA;
            match lower_hex(sha) {
                Some(bytes) => entry.sha = bytes,
                None => {
                    let span = self.push_str(sha);
                    entry.sha[..4].copy_from_slice(&span.start.to_le_bytes());
                    entry.sha[4..8].copy_from_slice(&span.len.to_le_bytes());
                    entry.flags |= ODD;
                }
            }
        }
        if let Some(etag) = record.etag.as_ref().filter(|_| self.etags) {
            entry.etag = self.push_str(etag);
            entry.flags |= ETAG;
        }
        if let Some(at) = record
            .stored_at
            .as_deref()
            .and_then(crate::utc::parse_iso8601)
        {
            let (secs, nanos) = match at.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(before) => {
                    let d = before.duration();
                    match d.subsec_nanos() {
                        0 => (-(d.as_secs() as i64), 0),
                        n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
                    }
                }
            };
            entry.stored_at_secs = secs;
            entry.stored_at_nanos = nanos;
            entry.flags |= STORED_AT;
        }
        if let Some(size) = record.size {
            entry.size = size;
            entry.flags |= SIZE;
        }
        entry.set(UPLOADED, record.status == Status::Uploaded);
        entry.set(SKIPPED, record.status == Status::Skipped);
        if role == Role::Resumed {
            entry.flags |= RESUMED;
            let path = Path::new(&record.path);
            entry.set(
                UNDER,
                self.sources.iter().any(|source| path.starts_with(source)),
            );
        }
        self.push(entry);
    }

    /// Sorts the lines by name, folds each name's into one entry, and drops the rest.
    pub fn finish(self) -> Index {
        let Builder {
            mut arena,
            mut entries,
            resumed_id,
            open_uploads,
            ..
        } = self;
        entries.sort_unstable_by(|a, b| {
            let (x, y) = (span_bytes(&arena, a.name), span_bytes(&arena, b.name));
            x.cmp(y).then(a.seq.cmp(&b.seq))
        });
        let mut kept = 0;
        let mut start = 0;
        while start < entries.len() {
            let name = span_bytes(&arena, entries[start].name);
            let end = start
                + entries[start..]
                    .iter()
                    .position(|e| span_bytes(&arena, e.name) != name)
                    .unwrap_or(entries.len() - start);
            let folded = fold(&entries[start..end], &arena);
            if folded.has(KNOWN) {
                entries[kept] = folded;
                kept += 1;
            }
            start = end;
        }
        entries.truncate(kept);
        // Names read more than once (records of several runs) and lines dropped leave the
        // arena with dead bytes: copied out when they are more than half of it.
        let live: usize = entries.iter().map(|e| live_bytes(e) as usize).sum();
        if live < arena.len() / 2 {
            let mut compact = Vec::with_capacity(live);
            let mut copy = |span: Span| {
                let start = compact.len() as u32;
                compact.extend_from_slice(span_bytes(&arena, span));
                Span {
                    start,
                    len: span.len,
                }
            };
            for entry in &mut entries {
                entry.name = copy(entry.name);
                if entry.has(ETAG) {
                    entry.etag = copy(entry.etag);
                }
                if entry.has(ODD) {
                    let span = copy(odd_span(&entry.sha));
                    entry.sha[..4].copy_from_slice(&span.start.to_le_bytes());
                    entry.sha[4..8].copy_from_slice(&span.len.to_le_bytes());
                }
            }
            arena = compact;
        }
        entries.shrink_to_fit();
        arena.shrink_to_fit();
        Index {
            arena,
            entries,
            resumed: resumed_id.is_some(),
            open_uploads,
        }
    }
}

fn span_bytes(arena: &[u8], span: Span) -> &[u8] {
    &arena[span.start as usize..span.start as usize + span.len as usize]
}

fn live_bytes(entry: &Entry) -> u32 {
    let mut n = entry.name.len;
    if entry.has(ETAG) {
        n += entry.etag.len;
    }
    if entry.has(ODD) {
        n += odd_span(&entry.sha).len;
    }
    n
}

/// One name's lines, in order, folded into its state.
fn fold(lines: &[Entry], arena: &[u8]) -> Entry {
    let mut out = Entry::blank(lines[0].name, 0, 0, RECORD);
    let mut i = 0;
    while i < lines.len() {
        // One manifest's lines at a time: its deletions count at its end.
        let journal = lines[i].journal;
        let resumed = lines[i].has(RESUMED);
        // A `deleted` line after the last record.
        let mut deleted = false;
        let mut latest: Option<&Entry> = None;
        // The last `gone` or `back` line said gone, and no record followed it.
        let mut gone = false;
        while let Some(line) = lines.get(i).filter(|l| l.journal == journal) {
            i += 1;
            match line.kind {
                RECORD => {
                    deleted = false;
                    gone = false;
                    latest = Some(line);
                    record(&mut out, line, arena);
                }
                DELETED => deleted = true,
                kind => gone = kind == GONE,
            }
        }
        if deleted {
            // A deletion removes the evidence, like a failed record.
            out.take_evidence(&Entry::blank(out.name, 0, 0, RECORD));
            out.flags |= KNOWN;
            out.set(RESUMED, resumed);
        }
        if resumed {
            let stored =
                latest.filter(|r| !deleted && (r.has(UPLOADED) || (r.has(SKIPPED) && r.has(SHA))));
            out.set(HERE_STORED, stored.is_some());
            out.set(HERE_GONE, gone);
            if let Some(r) = stored {
                out.set(UNDER, r.has(UNDER));
                out.set(SIZE, r.has(SIZE));
                out.size = r.size;
            }
        }
    }
    out
}

/// Folds a record into the name's evidence (`skip::AlreadyStored`'s rules).
fn record(out: &mut Entry, line: &Entry, arena: &[u8]) {
    let failed = !line.has(UPLOADED) && !line.has(SKIPPED);
    // A skip without a checksum (a link, a special file) says nothing of storage.
    if line.has(SKIPPED) && !line.has(SHA) {
        return;
    }
    let mut evidence = *line;
    if failed {
        evidence.set(SHA, false);
        evidence.set(ODD, false);
    }
    // A skip as already stored keeps what the upload it rests on recorded.
    if line.has(SKIPPED) && out.has(KNOWN) && out.same_sha(&evidence, arena) {
        out.set(RESUMED, line.has(RESUMED));
        return;
    }
    out.take_evidence(&evidence);
    out.flags |= KNOWN;
    out.set(RESUMED, line.has(RESUMED));
}

/// What the manifests say of each name, compact and sorted; see the module's docs.
#[derive(Debug, Default)]
pub struct Index {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    resumed: bool,
    open_uploads: Vec<OpenUpload>,
}

impl Index {
    /// Builds an index of journals already read: `previous` (oldest first), then `resumed`.
    pub fn of<'a>(
        previous: impl IntoIterator<Item = &'a Journal>,
        resumed: Option<&Journal>,
        sources: &[PathBuf],
    ) -> Index {
        let mut builder = Builder::new(sources);
        for journal in previous {
            builder.add(journal, Role::Previous);
        }
        if let Some(journal) = resumed {
            builder.add(journal, Role::Resumed);
        }
        builder.finish()
    }

    /// Names the manifests say something of.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether they say nothing of any name.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a resumed manifest was read (it may have been empty).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The multipart uploads the resumed manifest left open, taken out.
    pub fn take_open_uploads(&mut self) -> Vec<OpenUpload> {
        std::mem::take(&mut self.open_uploads)
    }

    /// Heap bytes held (for the benchmarks and tests).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| span_bytes(&self.arena, e.name).cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// What the manifests say of `name`, if anything.
    pub fn known(&self, name: &str) -> Option<Known<'_>> {
        self.entry(name).map(|e| self.known_of(e))
    }

    fn known_of<'a>(&'a self, e: &'a Entry) -> Known<'a> {
        let sha256 = e.has(SHA).then(|| match e.has(ODD) {
            true => Sha::Text(text(&self.arena, odd_span(&e.sha))),
            false => Sha::Binary(&e.sha),
        });
        Known {
            sha256,
            etag: e.has(ETAG).then(|| text(&self.arena, e.etag)),
            stored_at: e.has(STORED_AT).then(|| {
                let nanos = Duration::from_nanos(u64::from(e.stored_at_nanos));
                match u64::try_from(e.stored_at_secs) {
                    Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs) + nanos,
                    Err(_) => {
                        UNIX_EPOCH - Duration::from_secs(e.stored_at_secs.unsigned_abs()) + nanos
                    }
                }
            }),
            role: match e.has(RESUMED) {
                true => Role::Resumed,
                false => Role::Previous,
            },
        }
    }

    /// Every name the resumed manifest records as stored ([`Journal::stored`]), in name order.
    pub fn stored(&self) -> impl Iterator<Item = Stored<'_>> {
        self.entries
            .iter()
            .filter(|e| e.has(HERE_STORED))
            .map(|e| Stored {
                name: text(&self.arena, e.name),
                gone: e.has(HERE_GONE),
                under: e.has(UNDER),
                size: e.has(SIZE).then_some(e.size),
            })
    }

    /// Every name the manifests say something of, in name order, with what they say.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Known<'_>)> {
        self.entries
            .iter()
            .map(|e| (text(&self.arena, e.name), self.known_of(e)))
    }
}

/// The multipart uploads the manifest at `path` left open, read as [`super::read`] reads them,
/// keeping nothing else: for a run that starts the manifest afresh (`--restart`) and aborts them.
pub fn open_uploads(path: &Path) -> io::Result<Vec<OpenUpload>> {
    super::with_file(path, |input, origin| {
        let mut journal = Journal::default();
        super::scan(input, origin, |line| {
            if let Line::Upload(line) = line {
                journal.apply(line);
            }
        })?;
        Ok(journal.open_uploads)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::manifest::{Deleted, Presence};

    /// What the manifests said of a name before the index: `skip::AlreadyStored`'s map, built
    /// as it was (the oracle).
    #[derive(Debug, Clone, PartialEq)]
    struct OldKnown {
        sha256: Option<String>,
        etag: Option<String>,
        stored_at: Option<SystemTime>,
        role: Role,
    }

    fn old_known(previous: &[Journal], resumed: Option<&Journal>) -> HashMap<String, OldKnown> {
        let mut manifests: HashMap<String, OldKnown> = HashMap::new();
        let sources = previous
            .iter()
            .map(|j| (j, Role::Previous))
            .chain(resumed.map(|j| (j, Role::Resumed)));
        for (journal, role) in sources {
            for record in &journal.records {
                let stored = match record.status {
                    Status::Uploaded | Status::Skipped => record.sha256.clone(),
                    Status::Failed => None,
                };
                if record.status == Status::Skipped && stored.is_none() {
                    continue;
                }
                if record.status == Status::Skipped
                    && let Some(known) = manifests.get_mut(&record.name)
                    && known.sha256 == stored
                {
                    known.role = role;
                    continue;
                }
                let known = OldKnown {
                    sha256: stored,
                    etag: record.etag.clone(),
                    stored_at: record
                        .stored_at
                        .as_deref()
                        .and_then(crate::utc::parse_iso8601),
                    role,
                };
                manifests.insert(record.name.clone(), known);
            }
            for (name, _) in journal.deletions() {
                let known = OldKnown {
                    sha256: None,
                    etag: None,
                    stored_at: None,
                    role,
                };
                manifests.insert(name.to_string(), known);
            }
        }
        manifests
    }

    /// The index's answer in the oracle's form.
    fn new_known(known: Known<'_>) -> OldKnown {
        OldKnown {
            sha256: known.sha256.map(|sha| match sha {
                Sha::Binary(bytes) => hex::encode(bytes),
                Sha::Text(text) => text.to_string(),
            }),
            etag: known.etag.map(str::to_string),
            stored_at: known.stored_at,
            role: known.role,
        }
    }

    /// The resumed journal's stored names as `gone` judged them before the index.
    fn old_stored(
        journal: &Journal,
        sources: &[PathBuf],
    ) -> Vec<(String, bool, bool, Option<u64>)> {
        let gone = journal.gone();
        journal
            .stored()
            .into_iter()
            .map(|(name, record)| {
                let under = sources
                    .iter()
                    .any(|s| Path::new(&record.path).starts_with(s));
                (
                    name.to_string(),
                    gone.contains_key(name),
                    under,
                    record.size,
                )
            })
            .collect()
    }

    fn new_stored(index: &Index) -> Vec<(String, bool, bool, Option<u64>)> {
        index
            .stored()
            .map(|s| (s.name.to_string(), s.gone, s.under, s.size))
            .collect()
    }

    const NAMES: [&str; 5] = ["a", "b", "b/c", "bc", "d\u{e9}"];
    const SHAS: [Option<&str>; 5] = [
        None,
        Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        Some("0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"),
        // Not lowercase, so kept as text (a reader refuses anything but 64 hex digits).
        Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF"),
    ];

    /// One line of a generated journal.
    #[derive(Debug, Clone)]
    enum Gen {
        Record {
            name: usize,
            status: u8,
            sha: usize,
            etag: Option<bool>,
            stored_at: Option<u8>,
            under: bool,
            size: Option<u64>,
        },
        Deleted(usize),
        Local(usize, bool),
    }

    fn gen_line() -> impl Strategy<Value = Gen> {
        prop_oneof![
            4 => (0..NAMES.len(), 0..3u8, 0..SHAS.len(), proptest::option::of(any::<bool>()),
                proptest::option::of(0..3u8), any::<bool>(), proptest::option::of(0..3u64))
                .prop_map(|(name, status, sha, etag, stored_at, under, size)| Gen::Record {
                    name, status, sha, etag, stored_at, under, size,
                }),
            1 => (0..NAMES.len()).prop_map(Gen::Deleted),
            1 => (0..NAMES.len(), any::<bool>()).prop_map(|(n, g)| Gen::Local(n, g)),
        ]
    }

    fn journal_of(lines: &[Gen]) -> Journal {
        let mut journal = Journal::default();
        let time = "2027-01-16T02:00:00.000000000Z".to_string();
        for line in lines {
            match *line {
                Gen::Record {
                    name,
                    status,
                    sha,
                    etag,
                    stored_at,
                    under,
                    size,
                } => {
                    journal.records.push(Record {
                        name: NAMES[name].into(),
                        path: format!(
                            "{}/{}",
                            if under { "/src" } else { "/elsewhere" },
                            NAMES[name]
                        ),
                        size,
                        mtime: None,
                        sha256: SHAS[sha].map(str::to_string),
                        status: [Status::Uploaded, Status::Skipped, Status::Failed]
                            [status as usize],
                        http_status: None,
                        attempts: 1,
                        error: None,
                        duration_ms: 0,
                        checksum_sha256_composite: None,
                        etag: etag.map(|e| format!("\"{e}\"")),
                        stored_at: stored_at.map(|s| match s {
                            0 => "2027-01-15T08:00:00.000000000Z".into(),
                            1 => "2027-01-15T08:00:01.250000000Z".into(),
                            _ => "1969-12-31T23:59:58.750000000Z".into(),
                        }),
                        resent: None,
                    });
                }
                Gen::Deleted(name) => journal.deleted.push((
                    journal.records.len(),
                    Deleted {
                        name: NAMES[name].into(),
                        key: None,
                        size: 1,
                        time: time.clone(),
                        error: None,
                    },
                )),
                Gen::Local(name, gone) => {
                    let presence = Presence {
                        name: NAMES[name].into(),
                        time: time.clone(),
                    };
                    let line = match gone {
                        true => LocalLine::Gone(presence),
                        false => LocalLine::Back(presence),
                    };
                    journal.local.push((journal.records.len(), line));
                }
            }
        }
        journal
    }

    /// The journal as manifest text, its lines in the order they were generated.
    fn text_of(journal: &Journal) -> String {
        let mut text = String::new();
        let mut add = |value: &dyn erased::Line| text.push_str(&(value.json() + "\n"));
        let (mut d, mut l) = (
            journal.deleted.iter().peekable(),
            journal.local.iter().peekable(),
        );
        for i in 0..=journal.records.len() {
            while let Some((_, deleted)) = d.next_if(|(after, _)| *after == i) {
                add(&super::super::DeletedLine { deleted });
            }
            while let Some((_, line)) = l.next_if(|(after, _)| *after == i) {
                add(line);
            }
            if let Some(record) = journal.records.get(i) {
                add(record);
            }
        }
        text
    }

    mod erased {
        pub trait Line {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Line for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The index gives the answers the maps over whole records gave, whether built from
        /// journals in memory or by reading their text.
        #[test]
        fn the_index_answers_as_the_maps_did(
            previous in proptest::collection::vec(proptest::collection::vec(gen_line(), 0..12), 0..3),
            resumed in proptest::option::of(proptest::collection::vec(gen_line(), 0..16)),
        ) {
            let previous: Vec<Journal> = previous.iter().map(|lines| journal_of(lines)).collect();
            let resumed = resumed.map(|lines| journal_of(&lines));
            let sources = [PathBuf::from("/src")];
            let index = Index::of(&previous, resumed.as_ref(), &sources);
            let mut read = Builder::new(&sources);
            for journal in &previous {
                read.read_from(text_of(journal).as_bytes(), "p.jsonl", Role::Previous).unwrap();
            }
            if let Some(journal) = &resumed {
                read.read_from(text_of(journal).as_bytes(), "m.jsonl", Role::Resumed).unwrap();
            }
            let read = read.finish();

            let old = old_known(&previous, resumed.as_ref());
            for name in NAMES {
                let want = old.get(name).cloned();
                prop_assert_eq!(&index.known(name).map(new_known), &want, "{}", name);
                prop_assert_eq!(&read.known(name).map(new_known), &want, "{}", name);
            }
            prop_assert_eq!(index.known("zz"), None);
            prop_assert_eq!(index.len(), old.len());
            let names: Vec<&str> = index.iter().map(|(name, _)| name).collect();
            let mut sorted = names.clone();
            sorted.sort();
            prop_assert_eq!(names, sorted);

            let want = resumed.as_ref().map(|j| old_stored(j, &sources)).unwrap_or_default();
            prop_assert_eq!(&new_stored(&index), &want);
            prop_assert_eq!(&new_stored(&read), &want);
            prop_assert_eq!(index.resumed(), resumed.is_some());
        }
    }

    #[test]
    fn an_arena_of_dead_names_is_compacted_and_answers_stay() {
        // 50 runs recording the same names: the arena would hold each name 50 times.
        let mut builder = Builder::new(&[]);
        let mut text = String::new();
        for run in 0..50 {
            for i in 0..20 {
                let mut record = journal_of(&[Gen::Record {
                    name: 0,
                    status: 0,
                    sha: 1 + run % 2,
                    etag: Some(true),
                    stored_at: None,
                    under: true,
                    size: Some(1),
                }])
                .records
                .remove(0);
                record.name = format!("file-{i:02}");
                text.push_str(&(serde_json::to_string(&record).unwrap() + "\n"));
            }
        }
        builder
            .read_from(text.as_bytes(), "m.jsonl", Role::Resumed)
            .unwrap();
        let index = builder.finish();
        assert_eq!(index.len(), 20);
        assert_eq!(index.arena.len(), 20 * ("file-00".len() + "\"true\"".len()));
        let known = index.known("file-07").unwrap();
        assert_eq!(
            known.sha256,
            Some(Sha::Binary(&[
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
                0x89, 0xab, 0xcd, 0xef
            ]))
        );
        assert_eq!(known.etag, Some("\"true\""));
        assert_eq!(std::mem::size_of::<Entry>(), 80);
    }

    #[test]
    fn an_index_without_etags_answers_the_same_but_the_etag() {
        let mut text = String::new();
        for (i, etag) in [Some(true), None, Some(false)].into_iter().enumerate() {
            let mut record = journal_of(&[Gen::Record {
                name: 0,
                status: 0,
                sha: 1,
                etag,
                stored_at: Some(i as u8),
                under: true,
                size: Some(1),
            }])
            .records
            .remove(0);
            record.name = format!("file-{i}");
            text.push_str(&(serde_json::to_string(&record).unwrap() + "\n"));
        }
        let build = |etags: bool| {
            let mut builder = Builder::new(&[]).etags(etags);
            builder
                .read_from(text.as_bytes(), "m.jsonl", Role::Resumed)
                .unwrap();
            builder.finish()
        };
        let (with, without) = (build(true), build(false));
        assert_eq!(with.known("file-0").unwrap().etag, Some("\"true\""));
        assert_eq!(without.arena.len(), 3 * "file-0".len());
        let strip = |index: &Index| -> Vec<String> {
            index
                .iter()
                .map(|(name, known)| {
                    format!(
                        "{name} {:?}",
                        Known {
                            etag: None,
                            ..known
                        }
                    )
                })
                .collect()
        };
        assert_eq!(strip(&with), strip(&without));
        assert!(without.iter().all(|(_, known)| known.etag.is_none()));
        assert_eq!(with.stored().count(), 3);
        assert!(with.stored().eq(without.stored()));
    }

    #[test]
    fn a_sha256_matches_its_own_lowercase_hex_only() {
        let hex = SHAS[2].unwrap();
        let bytes = lower_hex(hex).unwrap();
        assert!(Sha::Binary(&bytes).is(hex));
        assert!(!Sha::Binary(&bytes).is(&hex.to_uppercase()));
        assert!(!Sha::Binary(&bytes).is(&hex[..62]));
        assert!(Sha::Text("bb").is("bb"));
        assert_eq!(lower_hex(SHAS[3].unwrap()), None);
    }

    #[test]
    fn open_uploads_and_errors_read_as_the_journal_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, "{\"name\": \"a\"\n{\"name\": \"b\"}\n").unwrap();
        let mut builder = Builder::new(&[]);
        let err = builder.read(&path, Role::Resumed).unwrap_err();
        assert_eq!(
            err.to_string(),
            super::super::read(&path).unwrap_err().to_string()
        );
        let err = open_uploads(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!Builder::new(&[]).finish().resumed());
    }
}
