//! What is already stored and need not be sent again: evidence from manifests (this run's
//! journal, earlier runs' manifests) and, with `--skip-existing`, from the API's listing.
//!
//! The rule is conservative — when unsure, upload:
//! - A name whose **latest** manifest record is `uploaded`, or `skipped` with a SHA-256 (an
//!   earlier skip for this same reason), counts as stored with that SHA-256: the file is skipped
//!   when its SHA-256 is the same and uploaded when it differs. A latest record that is `failed`
//!   removes the evidence (a failed attempt may have left the object in any state).
//! - A name the manifests know nothing about is skipped when the API lists an object of that
//!   name **and size** (the listing has no checksum: same-size changes are not detected there;
//!   the manifests catch them for files this tool uploaded).

use std::collections::HashMap;

use crate::manifest::{Journal, Status};
use crate::remote::Listing;

/// Why a file is skipped, as its record says.
pub const IN_MANIFEST: &str = "already uploaded with this SHA-256 (manifest)";
/// Why a file is skipped after the destination's listing matched.
pub const IN_LISTING: &str = "already stored with this size (listed by the destination)";

/// Where the evidence that a file is stored came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The manifest this run appends to: it already holds the record, so none is written again
    /// (an unchanged night adds nothing to the journal).
    Journal,
    /// An earlier manifest given with `--previous`: the skip is recorded in this run's manifest.
    Previous,
    /// The API's listing (same name and size): the skip is recorded.
    Listing,
}

impl Evidence {
    /// The skip reason a record carries.
    pub fn reason(self) -> &'static str {
        match self {
            Evidence::Journal | Evidence::Previous => IN_MANIFEST,
            Evidence::Listing => IN_LISTING,
        }
    }
}

/// What is known to be stored.
#[derive(Debug, Default)]
pub struct AlreadyStored {
    /// Name -> SHA-256 (hex) known stored, or `None` where the latest record failed; and where
    /// that latest record is.
    manifests: HashMap<String, (Option<String>, Evidence)>,
    /// Name -> size, from the API's listings.
    listing: HashMap<String, u64>,
}

impl AlreadyStored {
    /// Evidence from `previous` manifests (oldest first), then from `journal`, the manifest this
    /// run appends to; a later record for a name wins.
    pub fn from_journals<'a>(
        previous: impl IntoIterator<Item = &'a Journal>,
        journal: Option<&'a Journal>,
    ) -> AlreadyStored {
        let mut manifests = HashMap::new();
        let sources = previous
            .into_iter()
            .map(|j| (j, Evidence::Previous))
            .chain(journal.map(|j| (j, Evidence::Journal)));
        for (journal, source) in sources {
            for record in &journal.records {
                let stored = match record.status {
                    Status::Uploaded | Status::Skipped => record.sha256.clone(),
                    Status::Failed => None,
                };
                // A skip without a checksum (a link, a special file) says nothing of storage.
                if record.status == Status::Skipped && stored.is_none() {
                    continue;
                }
                manifests.insert(record.name.clone(), (stored, source));
            }
            // A name deleted by `--delete` after its last record here (or with none here) is not
            // stored, whatever earlier records said: like a failed record, the deletion removes
            // the evidence.
            for (name, _) in journal.deletions() {
                manifests.insert(name.to_string(), (None, source));
            }
        }
        AlreadyStored {
            manifests,
            listing: HashMap::new(),
        }
    }

    /// Adds the objects of a listing of the destination ([`crate::remote::Remote::list`]),
    /// which holds exact keys only (see [`crate::remote::listing`]).
    pub fn add_listing(&mut self, listing: &Listing) {
        self.listing.extend(
            listing
                .objects
                .iter()
                .map(|object| (object.name.clone(), object.size)),
        );
    }

    /// Whether (and by what evidence) the file named `name` with this size and SHA-256 (hex) is
    /// already stored.
    pub fn stored(&self, name: &str, size: u64, sha256: &str) -> Option<Evidence> {
        if let Some((known, source)) = self.manifests.get(name) {
            return (known.as_deref() == Some(sha256)).then_some(*source);
        }
        (self.listing.get(name) == Some(&size)).then_some(Evidence::Listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Record;
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
        stored.add_listing(&listing);
    }

    fn journal(records: Vec<Record>) -> Journal {
        Journal {
            records,
            summary: None,
            torn: None,
            runs: 1,
            open_uploads: vec![],
            deleted: vec![],
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
