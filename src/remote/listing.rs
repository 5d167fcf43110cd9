//! What a listing of a destination found, place by place, and what it says of one name.
//!
//! A listing covers the places a run's names go: in direct S3 mode one prefix (ListObjectsV2
//! pages under `PREFIX/`); with PROMINENCE the user's own uploads (`GET /data`, names without
//! `/`) and each group path among the names (`GET /data/<group>`, everything below it). Only
//! exact keys count, as [`crate::naming::Keys`] makes them: an own name with `/` would be
//! `uploads/<user>/a/b`, where no file named `a/b` goes (that is group `a`'s `uploads/a/b`), so
//! it is left out, as is a group's entry not below the group.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;

use super::{Lookup, LookupError, Stored};

/// An object as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its object name, as file records name objects (direct S3 mode: the key without the
    /// `--s3` prefix; PROMINENCE: the listed name).
    pub name: String,
    /// The storage key, where known (see [`crate::manifest::Deleted::key`]).
    pub key: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes (lowercase hex) where the listing gives one: `hashup serve`'s
    /// embedded store lists the digest it computed while receiving them.
    pub sha256: Option<String>,
    /// Its ETag (quotes kept), where the listing gives one (S3's ListObjectsV2).
    pub etag: Option<String>,
    /// When it was last written, where the listing says.
    pub modified: Option<std::time::SystemTime>,
}

impl StoredObject {
    /// An object known by name and size only.
    pub fn sized(name: impl Into<String>, key: Option<String>, size: u64) -> StoredObject {
        StoredObject {
            name: name.into(),
            key,
            size,
            sha256: None,
            etag: None,
            modified: None,
        }
    }
}

/// One place a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The PROMINENCE user's own uploads: names without `/`.
    Own,
    /// A PROMINENCE group path: names below it.
    Group(String),
    /// Every key under an S3 prefix (`s3://bucket/prefix/`, shown as such).
    Prefix(String),
}

impl Place {
    /// Whether a name lies in this place.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Place::Own => !name.contains('/'),
            Place::Group(group) => name
                .strip_prefix(group.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
            Place::Prefix(_) => true,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Own => write!(f, "your uploads"),
            Place::Group(group) => write!(f, "group {group}"),
            Place::Prefix(place) => write!(f, "{place}"),
        }
    }
}

/// The group paths to list for PROMINENCE names: the group of every name with `/`, less those
/// below another one listed (a group's listing holds everything under its path).
pub fn listing_groups<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let groups: std::collections::BTreeSet<&str> = names
        .into_iter()
        .filter_map(|name| name.rsplit_once('/').map(|(group, _)| group))
        .collect();
    groups
        .iter()
        .filter(|group| {
            !group
                .match_indices('/')
                .any(|(at, _)| groups.contains(&group[..at]))
        })
        .map(|group| group.to_string())
        .collect()
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every object listed, in the places' order.
    pub objects: Vec<StoredObject>,
    /// The places listed.
    pub listed: Vec<Place>,
    /// The places the API refused to list (403: not a member of the group), with why.
    pub refused: Vec<(Place, String)>,
    /// Name -> index in `objects`.
    by_name: HashMap<String, usize>,
}

impl Listing {
    /// Adds a place's objects: those it covers (only exact keys count, see the module docs).
    pub fn add(&mut self, place: Place, objects: impl IntoIterator<Item = StoredObject>) {
        for object in objects.into_iter().filter(|o| place.covers(&o.name)) {
            self.by_name.insert(object.name.clone(), self.objects.len());
            self.objects.push(object);
        }
        self.listed.push(place);
    }

    /// Adds a place that could not be listed.
    pub fn refuse(&mut self, place: Place, why: String) {
        self.refused.push((place, why));
    }

    /// The object listed as `name`.
    pub fn get(&self, name: &str) -> Option<&StoredObject> {
        self.by_name.get(name).map(|&at| &self.objects[at])
    }

    /// What the listing says of `name`: found (with its size), missing from a place that
    /// covers it, or unknown (its place was refused, or none covers it).
    pub fn lookup(&self, name: &str) -> Result<Lookup, LookupError> {
        if let Some(object) = self.get(name) {
            // A listed SHA-256 is the store's own digest of the bytes it holds.
            let checksum = object.sha256.as_deref().and_then(|hex| {
                let digest: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
                Some(base64::engine::general_purpose::STANDARD.encode(digest))
            });
            return Ok(Lookup::Found(Stored {
                size: object.size,
                checksum,
                ..Stored::default()
            }));
        }
        if let Some((_, why)) = self.refused.iter().find(|(place, _)| place.covers(name)) {
            return Err(LookupError::Failed(why.clone()));
        }
        if self.listed.iter().any(|place| place.covers(name)) {
            return Ok(Lookup::Missing);
        }
        Err(LookupError::Failed("not covered by any listing".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, size: u64) -> StoredObject {
        StoredObject::sized(name, None, size)
    }

    #[test]
    fn names_are_found_in_the_place_that_covers_them() {
        let mut listing = Listing::default();
        listing.add(Place::Own, [object("a.sif", 3)]);
        listing.add(
            Place::Group("g1".into()),
            [object("g1/b.sif", 5), object("b", 1)],
        );
        listing.add(Place::Own, [object("own/c", 2)]);
        listing.refuse(
            Place::Group("g2".into()),
            "cannot list group g2: HTTP 403: no".into(),
        );
        assert_eq!(
            listing.lookup("a.sif"),
            Ok(Lookup::Found(Stored {
                size: 3,
                ..Stored::default()
            }))
        );
        assert_eq!(listing.lookup("b.sif"), Ok(Lookup::Missing));
        // Not where a file named so goes: an own `own/c` is not group own's `own/c`, a group's
        // `b` is not the user's own `b`.
        assert_eq!(listing.lookup("b"), Ok(Lookup::Missing));
        assert!(matches!(
            listing.lookup("own/c"),
            Err(LookupError::Failed(_))
        ));
        assert!(matches!(listing.lookup("g1/b.sif"), Ok(Lookup::Found(_))));
        assert_eq!(listing.lookup("g1/a.sif"), Ok(Lookup::Missing));
        assert_eq!(listing.lookup("g1/sub/a.sif"), Ok(Lookup::Missing));
        assert_eq!(
            listing.lookup("g2/x"),
            Err(LookupError::Failed(
                "cannot list group g2: HTTP 403: no".into()
            ))
        );
        assert!(matches!(
            listing.lookup("g3/x"),
            Err(LookupError::Failed(_))
        ));
    }

    #[test]
    fn places_cover_their_names() {
        assert!(Place::Own.covers("a") && !Place::Own.covers("g/a"));
        let group = Place::Group("g/h".into());
        assert!(group.covers("g/h/a") && group.covers("g/h/i/a"));
        assert!(!group.covers("g/a") && !group.covers("g/hh/a") && !group.covers("g/h"));
        assert!(Place::Prefix("s3://b/p/".into()).covers("x/y"));
    }

    #[test]
    fn groups_are_listed_once_at_their_top() {
        let names = [
            "a.sif",
            "g1/x",
            "g1/sub/y",
            "g1x/z",
            "lab/sub/deep/w",
            "lab/sub/v",
        ];
        assert_eq!(listing_groups(names), ["g1", "g1x", "lab/sub"]);
        assert!(listing_groups(["a", "b"]).is_empty());
    }
}
