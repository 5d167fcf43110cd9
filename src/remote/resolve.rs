//! A destination resolved once, before anything runs (ripgrep's low-level -> high-level
//! arguments): its credentials and TLS settings, checked without touching the network; and
//! the rules a run plans with before it connects (how names become keys, the largest file).
//! Every environment variable a destination reads is read here, through one lookup function.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::config::Destination;
use crate::hash::SizeLimit;
use crate::http::Tls;
use crate::naming::Keys;
use crate::presign::prominence;
use crate::presign::s3::DirectS3;

/// Looks an environment variable up (`std::env::var(name).ok()`, or a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where the files go, with what it takes to get there.
pub enum Resolved {
    /// A PROMINENCE API: its URL, the token, and the API's TLS settings.
    Api {
        /// The `PROMINENCE_URL`.
        url: String,
        /// The bearer token (a JWT checked for expiry already).
        token: String,
        /// `--cacert`, and `PROMINENCE_SSL_VERIFY=False` turning verification off.
        tls: Tls,
    },
    /// `hashup serve`'s embedded store in this directory, run in-process for this run.
    Embedded {
        /// The store directory.
        store: PathBuf,
    },
    /// Direct S3 mode: targets signed here with the user's AWS credentials.
    Direct(Arc<DirectS3>),
}

/// A run's destination and the TLS settings of its storage client.
pub struct Reach {
    /// Where the files go.
    pub destination: Resolved,
    /// `--cacert` for storage (never `PROMINENCE_SSL_VERIFY`: that is the API's alone).
    pub storage_tls: Tls,
}

impl Reach {
    /// Loads and checks credentials and TLS roots: an expired JWT, missing AWS keys or an
    /// unreadable `--cacert` stop the run here, before any work. `must_exist`: an embedded
    /// store that is not there is an error (a command that only reads from it).
    pub fn resolve(
        destination: &Destination,
        cacert: Option<&Path>,
        must_exist: bool,
        env: Env,
    ) -> anyhow::Result<Reach> {
        let storage_tls = Tls {
            extra_roots: match cacert {
                Some(path) => {
                    Tls::read_roots(path).map_err(|e| anyhow::anyhow!("--cacert: {e}"))?
                }
                None => Vec::new(),
            },
            insecure: false,
        };
        let destination = match destination {
            Destination::Prominence { url, token_file } => {
                let url = url
                    .clone()
                    .filter(|u| !u.is_empty())
                    .or_else(|| env("PROMINENCE_URL").filter(|u| !u.is_empty()))
                    .context("no API URL: use --url or set PROMINENCE_URL")?;
                let token = prominence::load_token(token_file.as_deref(), env)?;
                prominence::check_expiry(&token, SystemTime::now())?;
                let tls = Tls {
                    insecure: ssl_verify_off(env),
                    ..storage_tls.clone()
                };
                if tls.insecure {
                    eprintln!(
                        "hashup: WARNING: PROMINENCE_SSL_VERIFY=False: the API's TLS certificate is NOT checked; \
                         anyone on the network path could read your token and hand out their own URLs"
                    );
                }
                Resolved::Api { url, token, tls }
            }
            Destination::Embedded { store } => {
                if must_exist && let Err(err) = std::fs::metadata(store) {
                    anyhow::bail!(
                        "--embedded {}: no store there ({})",
                        store.display(),
                        crate::message::plain_io_message(&err)
                    );
                }
                Resolved::Embedded {
                    store: store.clone(),
                }
            }
            Destination::S3 {
                location,
                endpoint,
                region,
            } => Resolved::Direct(Arc::new(DirectS3::from_env(
                location.clone(),
                endpoint.as_deref(),
                region.as_deref(),
                env,
            )?)),
        };
        Ok(Reach {
            destination,
            storage_tls,
        })
    }
}

impl Reach {
    /// The bearer token, when the destination is a PROMINENCE API (to warn when it will expire
    /// before the run can end).
    pub fn api_token(&self) -> Option<&str> {
        match &self.destination {
            Resolved::Api { token, .. } => Some(token),
            Resolved::Embedded { .. } | Resolved::Direct(_) => None,
        }
    }
}

/// How a destination's names become keys when a run plans them, before it connects: only the
/// embedded store's user is known then; PROMINENCE's rule maps names to keys per user, direct
/// S3 mode one key per name.
pub fn planning_keys(destination: &Destination) -> Keys {
    match destination {
        Destination::Embedded { .. } => Keys::Prominence {
            user: super::embedded::EMBEDDED_USER.into(),
        },
        Destination::Prominence { .. } | Destination::S3 { .. } => Keys::Names,
    }
}

/// The largest file a destination takes: direct S3 mode sends big files in parts, up to S3's
/// 5 TiB; a presigned upload carries one request's 5 GiB.
pub fn size_limit(destination: &Destination) -> SizeLimit {
    match destination {
        Destination::S3 { .. } => SizeLimit {
            bytes: crate::multipart::MAX_OBJECT_SIZE,
            why: "over S3's 5 TiB object limit (not read)",
        },
        Destination::Prominence { .. } | Destination::Embedded { .. } => SizeLimit {
            bytes: crate::transfer::MAX_OBJECT_SIZE,
            why: "over the 5 GiB one presigned upload can carry (not read); direct S3 mode (--s3) sends larger files in parts",
        },
    }
}

/// `PROMINENCE_SSL_VERIFY=False` (as the reference CLI reads it; `false` and `0` too).
fn ssl_verify_off(env: Env) -> bool {
    env("PROMINENCE_SSL_VERIFY")
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup answering `name` with `value` and nothing else.
    fn one(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |n| (n == name).then(|| value.to_string())
    }

    #[test]
    fn ssl_verify_is_off_only_when_asked() {
        for (value, off) in [
            ("False", true),
            ("false", true),
            ("0", true),
            ("True", false),
        ] {
            assert_eq!(
                ssl_verify_off(&one("PROMINENCE_SSL_VERIFY", value)),
                off,
                "{value}"
            );
        }
        assert!(!ssl_verify_off(&|_: &str| None));
    }
}
