//! Bearer tokens: the tokens file, and the check every API request goes through.
//!
//! The tokens file maps each token to the identity it stands for:
//!
//! ```json
//! {
//!   "s3cr3t-token-for-alice": {"user": "alice", "groups": ["physics"]},
//!   "eyJhbGciOi...": {"user": "bob"}
//! }
//! ```
//!
//! A token that is a JWT (three base64url parts whose middle one is a JSON object) is also
//! refused once its `exp` has passed, as PROMINENCE's OIDC check would; the JWT's signature is not
//! checked, the tokens file is what vouches for it. The PROMINENCE CLI insists on a JWT with a
//! future `exp`, so tokens meant for it must be JWTs.
//!
//! Private uploads live under `uploads/<user>/` and group uploads under `uploads/<group path>/`,
//! one tree for both (as on PROMINENCE). So a file that names user `g1` and, for someone else,
//! group `g1` (or `g1/sub`) is refused at load, with both names in the error: user `g1` would
//! list, overwrite and delete the group's objects, and the group's members would see `g1`'s. A
//! group may start with a user's name only when that user alone holds it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    /// The user name: private uploads live under `uploads/<user>/`.
    pub user: String,
    /// The groups the user belongs to: group uploads live under `uploads/<group>/`.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether `group` is exactly one of the user's groups.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether `path` is one of the user's groups or lies below one (`grp` or `grp/...`).
    ///
    /// PROMINENCE tests a bare `startswith`, which lets group `g` see `g2/`; this does not.
    pub fn may_access_path(&self, path: &str) -> bool {
        self.groups.iter().any(|g| {
            path == g
                || path
                    .strip_prefix(g.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// Why the tokens file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read tokens file {path}")]
    Read {
        /// The tokens file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not the expected JSON shape.
    #[error("tokens file {path} is not a JSON object of token -> {{\"user\", \"groups\"}}")]
    Parse {
        /// The tokens file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
    /// An identity that cannot be used safely as a key prefix.
    #[error("tokens file {path}: {what}")]
    Invalid {
        /// The tokens file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Why a request was refused; every case answers `401 {"error": "Authentication failure"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not a `Bearer` one.
    Missing,
    /// A token the tokens file does not list.
    Unknown,
    /// A JWT whose `exp` has passed.
    Expired,
}

/// The tokens the server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, Identity>,
}

impl Tokens {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        let by_token: HashMap<String, Identity> =
            serde_json::from_str(&text).map_err(|source| TokensError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let tokens = Tokens { by_token };
        tokens.validate().map_err(|what| TokensError::Invalid {
            path: path.to_owned(),
            what,
        })?;
        Ok(tokens)
    }

    /// Builds the token table directly (for embedding and tests).
    pub fn from_map(by_token: HashMap<String, Identity>) -> Result<Self, String> {
        let tokens = Tokens { by_token };
        tokens.validate()?;
        Ok(tokens)
    }

    /// User and group names become key prefixes, so they must pass [`crate::keys`]'s rules (a
    /// user name being one segment), and the trees they name must not overlap (see the module
    /// docs).
    fn validate(&self) -> Result<(), String> {
        for (token, id) in &self.by_token {
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("a token is empty or contains whitespace".into());
            }
            if id.user.contains('/') || crate::keys::check_object_name(&id.user).is_err() {
                return Err(format!("user name {:?} is not a plain name", id.user));
            }
            for group in &id.groups {
                if crate::keys::check_object_name(group).is_err() {
                    return Err(format!(
                        "group {group:?} of {:?} is not a plain path",
                        id.user
                    ));
                }
            }
        }
        self.check_namespaces()
    }

    /// `uploads/<user>/` and `uploads/<group path>/` share one tree: a group whose path starts
    /// with a user's name lies inside that user's private uploads, which its members could then
    /// list, overwrite and delete, and which that user could list. Only the user itself may hold
    /// such a group (a personal group, as some identity providers make, or the one-run token of
    /// `upload --embedded`).
    fn check_namespaces(&self) -> Result<(), String> {
        let users: std::collections::BTreeSet<&str> =
            self.by_token.values().map(|id| id.user.as_str()).collect();
        // Sorted, so that the error names the same pair on every start.
        let mut ids: Vec<&Identity> = self.by_token.values().collect();
        ids.sort_by(|a, b| (&a.user, &a.groups).cmp(&(&b.user, &b.groups)));
        for id in ids {
            for group in &id.groups {
                let top = group.split('/').next().unwrap_or(group);
                if users.contains(top) && top != id.user {
                    return Err(format!(
                        "user {top:?} and group {group:?} (of user {:?}) would share uploads/{top}/: \
                         rename one; a group may start with a user's name only when that user \
                         alone holds it",
                        id.user
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks an `Authorization` header value, as of `now`.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: SystemTime,
    ) -> Result<&Identity, AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthFailure::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::Missing);
        }
        let token = token.trim();
        let identity = self.by_token.get(token).ok_or(AuthFailure::Unknown)?;
        if let Some(exp) = crate::jwt::exp(token) {
            let now = now
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            if exp <= now {
                return Err(AuthFailure::Expired);
            }
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn jwt(exp: u64) -> String {
        use base64::Engine as _;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(r#"{"alg":"none","typ":"JWT"}"#),
            enc(&format!(r#"{{"sub":"alice","exp":{exp}}}"#))
        )
    }

    fn tokens(pairs: &[(&str, &str, &[&str])]) -> Tokens {
        Tokens::from_map(
            pairs
                .iter()
                .map(|(t, u, g)| {
                    let id = Identity {
                        user: u.to_string(),
                        groups: g.iter().map(|s| s.to_string()).collect(),
                    };
                    (t.to_string(), id)
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn bearer_tokens_map_to_identities() {
        let t = tokens(&[("tok", "alice", &["g1"])]);
        let now = SystemTime::now();
        assert_eq!(
            t.authenticate(Some("Bearer tok"), now).unwrap().user,
            "alice"
        );
        assert_eq!(
            t.authenticate(Some("bearer  tok "), now).unwrap().user,
            "alice"
        );
        assert_eq!(t.authenticate(None, now), Err(AuthFailure::Missing));
        assert_eq!(t.authenticate(Some("tok"), now), Err(AuthFailure::Missing));
        assert_eq!(
            t.authenticate(Some("Basic tok"), now),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            t.authenticate(Some("Bearer nope"), now),
            Err(AuthFailure::Unknown)
        );
    }

    #[test]
    fn expired_jwts_are_refused() {
        let exp = 2_000_000_000;
        let token = jwt(exp);
        let t = tokens(&[(&token, "alice", &[])]);
        let header = format!("Bearer {token}");
        let before = UNIX_EPOCH + Duration::from_secs(exp - 1);
        let after = UNIX_EPOCH + Duration::from_secs(exp);
        assert!(t.authenticate(Some(&header), before).is_ok());
        assert_eq!(
            t.authenticate(Some(&header), after),
            Err(AuthFailure::Expired)
        );
        assert_eq!(crate::jwt::exp("not.a.jwt"), None);
        assert_eq!(crate::jwt::exp("plain-token"), None);
    }

    #[test]
    fn group_paths_need_a_real_membership() {
        let id = Identity {
            user: "alice".into(),
            groups: vec!["g".into(), "lab/sub".into()],
        };
        assert!(id.may_access_path("g"));
        assert!(id.may_access_path("g/x"));
        assert!(!id.may_access_path("g2/x"));
        assert!(id.may_access_path("lab/sub/x"));
        assert!(!id.may_access_path("lab"));
        assert!(id.in_group("lab/sub"));
        assert!(!id.in_group("lab"));
    }

    #[test]
    fn identities_must_be_plain_names() {
        for bad in ["", "..", "a/b", "a\0b"] {
            let map = HashMap::from([(
                "t".to_string(),
                Identity {
                    user: bad.into(),
                    groups: vec![],
                },
            )]);
            assert!(Tokens::from_map(map).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn private_and_group_trees_never_overlap() {
        let id = |user: &str, groups: &[&str]| Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let load = |ids: Vec<Identity>| {
            Tokens::from_map(
                ids.into_iter()
                    .enumerate()
                    .map(|(i, id)| (format!("t{i}"), id))
                    .collect(),
            )
        };
        let err = load(vec![id("alice", &["g1"]), id("g1", &[])]).unwrap_err();
        assert!(err.contains("\"g1\"") && err.contains("\"alice\""), "{err}");
        let err = load(vec![id("alice", &["lab/sub"]), id("lab", &[])]).unwrap_err();
        assert!(
            err.contains("\"lab\"") && err.contains("\"lab/sub\""),
            "{err}"
        );
        // A personal group, held by its user only, is fine; so are users and groups that merely
        // share a prefix.
        assert!(load(vec![id("alice", &["alice", "alice/x"]), id("bob", &["g1"])]).is_ok());
        assert!(load(vec![id("g", &[]), id("bob", &["g1", "gg/g"])]).is_ok());
        // The same user under two tokens still holds its own group.
        assert!(load(vec![id("alice", &["alice"]), id("alice", &[])]).is_ok());
    }
}
