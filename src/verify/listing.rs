//! The PROMINENCE API's [`Store`]: what `GET /data` (the user's own uploads) and
//! `GET /data/<group>` (each group path among the names) list, fetched once before any lookup.
//! A listing has names and sizes only, so only sizes are compared ([`super::Evidence::Size`]).
//!
//! Only exact keys count, as for `hashup upload --skip-existing`: a name without `/` is the
//! user's own (`uploads/<user>/<name>`), found in `GET /data`; a name with `/` is a group path
//! (`uploads/<group>/...`), found in that group's listing.
//!
//! A 401, an API that cannot be reached (after the retries) or an answer that is not a listing
//! is fatal: no name could be checked. A listing refused (403: not a member of the group) fails
//! the names it would have answered for, and the others go on.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::BoxFuture;

use super::{Expected, Lookup, LookupError, Store, Stored};
use crate::presign::PresignError;
use crate::presign::prominence::Prominence;
use crate::retry::RetryPolicy;

/// One listing: name -> size, or why it could not be had.
type Listed = Result<HashMap<String, u64>, String>;

/// The listings covering a set of names.
#[derive(Debug, Default)]
pub struct Listing {
    /// `GET /data`, when some name has no `/`.
    own: Option<Listed>,
    /// `GET /data/<group>`, by group path.
    groups: HashMap<String, Listed>,
}

impl Listing {
    /// Fetches the listings `names` need. `Err` is fatal (see the module docs).
    pub async fn fetch<'a>(
        api: &Prominence,
        names: impl IntoIterator<Item = &'a str>,
        retry: RetryPolicy,
    ) -> Result<Listing, String> {
        let groups: BTreeSet<Option<&str>> = names
            .into_iter()
            .map(|name| name.rsplit_once('/').map(|(group, _)| group))
            .collect();
        let mut listing = Listing::default();
        for group in groups {
            let listed = list(api, group, retry).await?;
            // Only exact keys: own names have no `/`, a group's all do.
            let listed = listed.map(|objects| {
                objects
                    .into_iter()
                    .filter(|l| l.name.contains('/') == group.is_some())
                    .map(|l| (l.name, l.size))
                    .collect()
            });
            match group {
                None => listing.own = Some(listed),
                Some(group) => {
                    listing.groups.insert(group.to_string(), listed);
                }
            }
        }
        Ok(listing)
    }

    /// What the listings say of `name`.
    pub fn lookup(&self, name: &str) -> Result<Lookup, LookupError> {
        let listed = match name.rsplit_once('/') {
            None => self.own.as_ref(),
            Some((group, _)) => self.groups.get(group),
        };
        match listed {
            Some(Ok(objects)) => Ok(match objects.get(name) {
                Some(&size) => Lookup::Found(Stored {
                    size,
                    ..Stored::default()
                }),
                None => Lookup::Missing,
            }),
            Some(Err(why)) => Err(LookupError::Failed(why.clone())),
            None => Err(LookupError::Failed("not covered by any listing".into())),
        }
    }
}

impl Store for Listing {
    fn look<'a>(&'a self, expected: &'a Expected) -> BoxFuture<'a, Result<Lookup, LookupError>> {
        Box::pin(std::future::ready(self.lookup(&expected.name)))
    }
}

/// One listing with its retries: `Ok(Err(why))` when the API refused it.
async fn list(
    api: &Prominence,
    group: Option<&str>,
    retry: RetryPolicy,
) -> Result<Result<Vec<crate::presign::prominence::Listed>, String>, String> {
    let what = group.map_or("your uploads".to_string(), |g| format!("group {g}"));
    match api.list_retrying(group, retry).await {
        Ok(objects) => Ok(Ok(objects)),
        Err((PresignError::Transient { message, .. }, attempts)) => Err(format!(
            "cannot list {what} through the PROMINENCE API: {message} (after {attempts} attempts)"
        )),
        Err((PresignError::Refused { status, message }, _)) => {
            Ok(Err(format!("cannot list {what}: HTTP {status}: {message}")))
        }
        Err((PresignError::Fatal { message, .. }, _)) => Err(message),
        Err((PresignError::BadAnswer { status, message }, _)) => Err(format!(
            "the PROMINENCE API's listing of {what} is unusable (HTTP {status}: {message})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_their_own_listing_only() {
        let listing = Listing {
            own: Some(Ok(HashMap::from([("a.sif".to_string(), 3)]))),
            groups: HashMap::from([
                (
                    "g1".to_string(),
                    Ok(HashMap::from([("g1/b.sif".to_string(), 5)])),
                ),
                (
                    "g2".to_string(),
                    Err("cannot list group g2: HTTP 403: no".into()),
                ),
            ]),
        };
        assert_eq!(
            listing.lookup("a.sif"),
            Ok(Lookup::Found(Stored {
                size: 3,
                ..Stored::default()
            }))
        );
        assert_eq!(listing.lookup("b.sif"), Ok(Lookup::Missing));
        assert!(matches!(listing.lookup("g1/b.sif"), Ok(Lookup::Found(_))));
        assert_eq!(listing.lookup("g1/a.sif"), Ok(Lookup::Missing));
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
}
