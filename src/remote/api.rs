//! A PROMINENCE API as a remote (the embedded store too, through its API): targets from
//! `POST /data/upload`, listings from `GET /data` and `GET /data/<group>`, deletions with
//! `DELETE /data/<name>`; the bearer token goes to the API host only
//! ([`crate::presign::prominence`]).

use std::sync::Arc;

use futures_util::StreamExt as _;

use super::listing::{Listing, Place, StoredObject, listing_groups};
use super::{KeyMap, RemoteError};
use crate::naming::Keys;
use crate::presign::prominence::Prominence;
use crate::presign::{PresignError, Presigner};
use crate::request::{GaveUp, Requests};

/// Places (the user's uploads, each group) listed at once.
const PLACES_IN_FLIGHT: usize = 8;

/// The API remote.
pub struct Api {
    client: Arc<Prominence>,
    /// The user the token stands for, when known (the embedded store's).
    user: Option<String>,
    requests: Requests,
}

impl Api {
    /// The remote of `client`, whose token stands for `user` when known.
    pub fn new(client: Prominence, user: Option<String>, requests: Requests) -> Api {
        Api {
            client: Arc::new(client),
            user,
            requests,
        }
    }

    /// The API hands out targets.
    pub fn presigner(&self) -> Arc<dyn Presigner> {
        self.client.clone()
    }

    /// PROMINENCE's key rule, for the user when known.
    pub fn key_map(&self) -> KeyMap {
        match &self.user {
            Some(user) => KeyMap::Prominence { user: user.clone() },
            None => KeyMap::ProminenceUnknownUser,
        }
    }

    /// How names become keys (names are keys when the user is not known).
    pub fn keys(&self) -> Keys {
        match &self.user {
            Some(user) => Keys::Prominence { user: user.clone() },
            None => Keys::Names,
        }
    }

    /// Lists the user's own uploads (without `prefix`: with one, every name is below it) and
    /// the groups of `names`. A refused place (403) is noted in the listing; a refused token is
    /// fatal; anything else fails the listing.
    pub async fn list<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        prefix: Option<&str>,
    ) -> Result<Listing, RemoteError> {
        let mut places: Vec<Place> = Vec::new();
        if prefix.is_none() {
            places.push(Place::Own);
        }
        places.extend(listing_groups(names).into_iter().map(Place::Group));
        // Each place is its own request: up to PLACES_IN_FLIGHT at once, taken in order.
        let answers: Vec<_> = futures_util::stream::iter(places)
            .map(|place| async move {
                let group = match &place {
                    Place::Group(group) => Some(group.clone()),
                    _ => None,
                };
                let answer = self
                    .requests
                    .send(|| self.client.list(group.as_deref()))
                    .await;
                (place, answer)
            })
            .buffered(PLACES_IN_FLIGHT)
            .collect()
            .await;
        let mut listing = Listing::default();
        for (place, answer) in answers {
            let group = match &place {
                Place::Group(group) => Some(group.as_str()),
                _ => None,
            };
            match answer {
                Ok(listed) => {
                    let objects = listed
                        .into_iter()
                        .map(|listed| StoredObject {
                            key: match group {
                                None => self
                                    .user
                                    .as_ref()
                                    .map(|u| format!("uploads/{u}/{}", listed.name)),
                                Some(_) => Some(format!("uploads/{}", listed.name)),
                            },
                            modified: listed.modified(),
                            name: listed.name,
                            size: listed.size,
                            sha256: listed.sha256,
                            etag: None,
                        })
                        .collect::<Vec<_>>();
                    listing.add(place, objects);
                }
                Err(GaveUp::Failed {
                    error: PresignError::Refused { status, message },
                    ..
                }) => {
                    let why = format!("cannot list {place}: HTTP {status}: {message}");
                    listing.refuse(place, why);
                }
                Err(gave_up) => return Err(listing_failed(&place, gave_up)),
            }
        }
        Ok(listing)
    }

    /// `DELETE /data/<name>`, with retries.
    pub async fn delete(&self, object: &StoredObject) -> Result<(), RemoteError> {
        self.requests
            .send(|| self.client.delete(&object.name))
            .await
            .map_err(|gave_up| match gave_up {
                GaveUp::Fatal(err) => RemoteError::Fatal(err.to_string()),
                GaveUp::Failed { error, .. } => RemoteError::Failed(describe(&error)),
                GaveUp::Stopped(error) => RemoteError::Stopped(describe(&error)),
            })
    }
}

/// Why a listing failed as a whole.
fn listing_failed(place: &Place, gave_up: GaveUp<PresignError>) -> RemoteError {
    match gave_up {
        GaveUp::Fatal(err) => RemoteError::Fatal(err.to_string()),
        GaveUp::Failed {
            error: error @ PresignError::Transient { .. },
            attempts,
            ..
        } => RemoteError::Failed(format!(
            "cannot list {place} through the PROMINENCE API: {} (after {attempts} attempts)",
            describe(&error)
        )),
        GaveUp::Failed { error, .. } => {
            RemoteError::Failed(format!("cannot list {place}: {}", describe(&error)))
        }
        GaveUp::Stopped(error) => {
            RemoteError::Stopped(format!("cannot list {place}: {}", describe(&error)))
        }
    }
}

/// An API failure in words that fit a listing or a deletion (not "presign failed").
fn describe(err: &PresignError) -> String {
    match err {
        PresignError::Fatal { message, .. } | PresignError::Transient { message, .. } => {
            message.clone()
        }
        PresignError::Refused { status, message } => format!("HTTP {status}: {message}"),
        PresignError::BadAnswer { status, message } => {
            format!("HTTP {status}: unusable answer: {message}")
        }
    }
}
