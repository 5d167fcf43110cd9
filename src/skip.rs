//! What is already stored and need not be sent again: evidence from manifests (this run's
//! journal, earlier runs' manifests) and, with `--skip-existing` or `--check-remote`, from a
//! listing of the destination.
//!
//! The rule is conservative — when unsure, upload:
//! - A name whose **latest** manifest record is `uploaded`, or `skipped` with a SHA-256 (an
//!   earlier skip for this same reason), counts as stored with that SHA-256: the file is skipped
//!   when its SHA-256 is the same and uploaded when it differs. A latest record that is `failed`
//!   removes the evidence (a failed attempt may have left the object in any state).
//! - With `--check-remote` the store has the last word on such a name: the file is sent again
//!   when a listing that covers it does not list it, or lists it differently ([`Decision`]):
//!   another size; another SHA-256 (`hashup serve` lists the store's); another ETag than the
//!   store answered the upload with (S3: a rewrite by another client, same size or not); a
//!   last-modified time after the store acknowledged the upload (a listing of names and sizes).
//! - A name the manifests know nothing about is skipped when the listing gives it the same
//!   SHA-256, or, with `--skip-existing`, the same **size** (a listing without checksums cannot
//!   tell a same-size change; the manifests catch those for files this tool uploaded).

use std::collections::HashMap;
use std::time::Duration;

use crate::manifest::Journal;
use crate::manifest::index::{Index, Known, Role};
use crate::remote::{Listing, Place, StoredObject};

/// Why a file is skipped, as its record says.
pub const IN_MANIFEST: &str = "already uploaded with this SHA-256 (manifest)";
/// Why a file is skipped after the destination's listing matched its size.
pub const IN_LISTING: &str = "already stored with this size (listed by the destination)";
/// Why a file is skipped after the destination's listing matched its SHA-256.
pub const IN_LISTING_SHA256: &str = "already stored with this SHA-256 (listed by the destination)";

/// How much later than the store's own answer to the upload a listed last-modified time must
/// be to count as a rewrite: both are the store's clock, the answer's `Date` to the second.
const REWRITE_SLACK: Duration = Duration::from_secs(2);

/// Where the evidence that a file is stored came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The manifest this run appends to: it already holds the record, so none is written again
    /// (an unchanged night adds nothing to the journal).
    Journal,
    /// An earlier manifest given with `--previous`: the skip is recorded in this run's manifest.
    Previous,
    /// The destination's listing (same name and size): the skip is recorded.
    Listing,
    /// The destination's listing (same name, size and SHA-256): the skip is recorded.
    ListedSha256,
}

impl Evidence {
    /// The skip reason a record carries.
    pub fn reason(self) -> &'static str {
        match self {
            Evidence::Journal | Evidence::Previous => IN_MANIFEST,
            Evidence::Listing => IN_LISTING,
            Evidence::ListedSha256 => IN_LISTING_SHA256,
        }
    }
}

/// What to do with a hashed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It is stored: skip it, on this evidence; `checked` when a listing of the destination
    /// agreed (not only a manifest).
    Stored {
        /// Where the evidence came from.
        evidence: Evidence,
        /// The destination's listing agreed.
        checked: bool,
    },
    /// Send it; with why, when the manifests said it was stored (`--check-remote` found its
    /// object missing or different).
    Send(Option<String>),
}

/// What is known to be stored.
#[derive(Debug, Default)]
pub struct AlreadyStored {
    /// What the manifests say of each name, the latest record winning.
    manifests: Index,
    /// Name -> the object the destination lists.
    listed: HashMap<String, StoredObject>,
    /// The places the listings covered, and those they could not.
    places: Vec<Place>,
    refused: Vec<Place>,
    /// `--check-remote`: a listing overrules the manifests.
    check_remote: bool,
    /// `--skip-existing`: a listed size alone is evidence for names the manifests don't know.
    by_size: bool,
}

/// What a listing says of one name.
enum Listed<'a> {
    /// It lists the object.
    Object(&'a StoredObject),
    /// A place that covers the name was listed, without it.
    Absent,
    /// No listing covers it (none was asked, or its place was refused).
    Unknown,
}

impl AlreadyStored {
    /// Evidence from the manifests, as indexed ([`crate::manifest::index`]).
    pub fn new(manifests: Index) -> AlreadyStored {
        AlreadyStored {
            manifests,
            ..AlreadyStored::default()
        }
    }

    /// Evidence from `previous` manifests (oldest first), then from `journal`, the manifest this
    /// run appends to, already read; a later record for a name wins.
    pub fn from_journals<'a>(
        previous: impl IntoIterator<Item = &'a Journal>,
        journal: Option<&'a Journal>,
    ) -> AlreadyStored {
        AlreadyStored::new(Index::of(previous, journal, &[]))
    }

    /// What the manifests say.
    pub fn manifests(&self) -> &Index {
        &self.manifests
    }

    /// Adds a listing of the destination ([`crate::remote::Remote::list`]), which holds exact
    /// keys only (see [`crate::remote::listing`]): with `check_remote` (`--check-remote`) it
    /// overrules the manifests; with `by_size` (`--skip-existing`) a listed size alone counts
    /// for names they don't know.
    pub fn add_listing(&mut self, listing: Listing, check_remote: bool, by_size: bool) {
        self.check_remote |= check_remote;
        self.by_size |= by_size;
        self.listed.extend(
            listing
                .objects
                .into_iter()
                .map(|object| (object.name.clone(), object)),
        );
        self.places.extend(listing.listed);
        self.refused
            .extend(listing.refused.into_iter().map(|(place, _)| place));
    }

    /// Whether a listing overrules the manifests (`--check-remote`).
    pub fn checks_remote(&self) -> bool {
        self.check_remote
    }

    /// What the listings say of `name`.
    fn listed(&self, name: &str) -> Listed<'_> {
        if let Some(object) = self.listed.get(name) {
            return Listed::Object(object);
        }
        let covers = |places: &[Place]| places.iter().any(|p| p.covers(name));
        if covers(&self.places) && !covers(&self.refused) {
            Listed::Absent
        } else {
            Listed::Unknown
        }
    }

    /// Whether the file named `name` with this size and SHA-256 (hex) is already stored, and
    /// on what evidence; else why it is sent again, if the manifests said it was stored.
    pub fn decide(&self, name: &str, size: u64, sha256: &str) -> Decision {
        let listed = self.listed(name);
        if let Some(known) = self.manifests.known(name) {
            if !known.sha256.is_some_and(|stored| stored.is(sha256)) {
                return Decision::Send(None);
            }
            let evidence = match known.role {
                Role::Previous => Evidence::Previous,
                Role::Resumed => Evidence::Journal,
            };
            let stored = |checked| Decision::Stored { evidence, checked };
            if !self.check_remote {
                return stored(false);
            }
            return match listed {
                // A refused place was warned about: the manifests have to do.
                Listed::Unknown => stored(false),
                Listed::Absent => Decision::Send(Some("missing from the destination".into())),
                Listed::Object(object) => match differs(&known, object, size, sha256) {
                    Some(why) => Decision::Send(Some(why)),
                    None => stored(true),
                },
            };
        }
        match listed {
            Listed::Object(object) if object.size == size => match &object.sha256 {
                Some(listed) if listed == sha256 => Decision::Stored {
                    evidence: Evidence::ListedSha256,
                    checked: true,
                },
                None if self.by_size => Decision::Stored {
                    evidence: Evidence::Listing,
                    checked: true,
                },
                _ => Decision::Send(None),
            },
            _ => Decision::Send(None),
        }
    }
}

/// How a listed object differs from what the manifests say was stored for a file of `size`
/// bytes and SHA-256 `sha256`, as strongly as the listing can tell.
fn differs(known: &Known<'_>, object: &StoredObject, size: u64, sha256: &str) -> Option<String> {
    if object.size != size {
        return Some(format!(
            "the destination holds {} bytes, not {size}",
            object.size
        ));
    }
    if let Some(listed) = &object.sha256 {
        return (listed != sha256).then(|| {
            format!(
                "the destination holds other bytes (sha256 {}..)",
                &listed[..8.min(listed.len())]
            )
        });
    }
    if let (Some(listed), Some(recorded)) = (&object.etag, known.etag) {
        return (listed.trim_matches('"') != recorded.trim_matches('"')).then(|| {
            format!("rewritten since it was uploaded (ETag {listed}, uploaded as {recorded})")
        });
    }
    if let (Some(modified), Some(stored_at)) = (object.modified, known.stored_at)
        && modified > stored_at + REWRITE_SLACK
    {
        return Some(format!(
            "rewritten since it was uploaded (last modified {})",
            httpdate::fmt_http_date(modified)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Record, Status};
    use crate::remote::Place;

    fn record(name: &str, status: Status, sha: Option<&str>) -> Record {
        Record {
            name: name.into(),
            path: format!("/src/{name}"),
            size: Some(3),
            mtime: None,
            sha256: sha.map(str::to_string),
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

    /// Adds a listing of one place holding one object.
    fn list(stored: &mut AlreadyStored, place: Place, name: &str, size: u64) {
        let mut listing = Listing::default();
        let object = crate::remote::StoredObject::sized(name, None, size);
        listing.add(place, [object]);
        stored.add_listing(listing, false, true);
    }

    impl AlreadyStored {
        /// The evidence a skip rests on, if any.
        fn stored(&self, name: &str, size: u64, sha256: &str) -> Option<Evidence> {
            match self.decide(name, size, sha256) {
                Decision::Stored { evidence, .. } => Some(evidence),
                Decision::Send(_) => None,
            }
        }
    }

    fn journal(records: Vec<Record>) -> Journal {
        Journal {
            records,
            summary: None,
            torn: None,
            runs: 1,
            open_uploads: vec![],
            deleted: vec![],
            local: vec![],
        }
    }

    #[test]
    fn the_latest_record_decides_and_failures_erase_evidence() {
        let older = journal(vec![
            record("a", Status::Uploaded, Some("aa")),
            record("b", Status::Uploaded, Some("bb")),
            record("c", Status::Uploaded, Some("cc")),
        ]);
        let newer = journal(vec![
            record("b", Status::Failed, Some("b2")),
            record("c", Status::Skipped, Some("cc")),
            record("link", Status::Skipped, None),
        ]);
        let stored = AlreadyStored::from_journals([&older], Some(&newer));
        assert_eq!(stored.stored("a", 3, "aa"), Some(Evidence::Previous));
        assert_eq!(stored.stored("a", 3, "a2"), None, "changed content is sent");
        assert_eq!(
            stored.stored("b", 3, "bb"),
            None,
            "a failure erases evidence"
        );
        assert_eq!(stored.stored("c", 3, "cc"), Some(Evidence::Journal));
        assert_eq!(stored.stored("link", 3, "ll"), None);
        assert_eq!(stored.stored("new", 3, "nn"), None);
    }

    #[test]
    fn a_deletion_after_the_latest_record_erases_evidence() {
        let gone = |name: &str| crate::manifest::Deleted {
            name: name.into(),
            key: None,
            size: 3,
            time: "2027-01-15T08:00:00.000000000Z".into(),
            error: None,
        };
        let older = journal(vec![
            record("a", Status::Uploaded, Some("aa")),
            record("b", Status::Uploaded, Some("bb")),
        ]);
        // This run's journal: a deleted (it was recorded in --previous only), b uploaded, then
        // deleted, then uploaded again.
        let mut newer = journal(vec![record("b", Status::Uploaded, Some("bb"))]);
        newer.deleted = vec![(0, gone("a")), (0, gone("b"))];
        let stored = AlreadyStored::from_journals([&older], Some(&newer));
        assert_eq!(stored.stored("a", 3, "aa"), None, "deleted: send it again");
        assert_eq!(stored.stored("b", 3, "bb"), Some(Evidence::Journal));
        let mut listed = AlreadyStored::from_journals([&older], Some(&newer));
        list(&mut listed, Place::Own, "a", 3);
        assert_eq!(
            listed.stored("a", 3, "aa"),
            None,
            "the deletion knows better"
        );
    }

    #[test]
    fn the_listing_answers_only_for_names_the_manifests_do_not_know() {
        let known = journal(vec![record("a", Status::Uploaded, Some("aa"))]);
        let mut stored = AlreadyStored::from_journals([], Some(&known));
        list(&mut stored, Place::Own, "a", 3);
        list(&mut stored, Place::Group("g".into()), "g/x.sif", 10);
        assert_eq!(
            stored.stored("a", 3, "a2"),
            None,
            "the manifest knows better"
        );
        assert_eq!(stored.stored("g/x.sif", 10, "xx"), Some(Evidence::Listing));
        assert_eq!(
            stored.stored("g/x.sif", 11, "xx"),
            None,
            "another size is sent"
        );
    }

    #[test]
    fn listings_match_keys_not_names() {
        let mut stored = AlreadyStored::default();
        // uploads/<user>/sub/f is not uploads/sub/f.
        list(&mut stored, Place::Own, "sub/f", 3);
        assert_eq!(stored.stored("sub/f", 3, "ff"), None);
        list(&mut stored, Place::Group("sub".into()), "sub/f", 3);
        assert_eq!(stored.stored("sub/f", 3, "ff"), Some(Evidence::Listing));
    }
}
