//! The upload command's settings resolved once, before anything runs (ripgrep's low-level ->
//! high-level arguments): which destination, with its credentials and TLS; where the hash
//! cache lives. Every environment variable `hashup upload` reads is read here, through one
//! lookup function, so the rest of the command never asks the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::config::{Destination, UploadConfig};
use crate::http::Tls;
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
    /// unreadable `--cacert` stop the run here, before any work.
    pub fn resolve(config: &UploadConfig, env: Env) -> anyhow::Result<Reach> {
        Reach::resolve_for(&config.destination, config.cacert.as_deref(), env)
    }

    /// [`Reach::resolve`] for any command with a destination and `--cacert` (`hashup verify`
    /// reaches the same stores).
    pub fn resolve_for(
        destination: &Destination,
        cacert: Option<&Path>,
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
            Destination::Embedded { store } => Resolved::Embedded {
                store: store.clone(),
            },
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

/// The hash cache's directory: `--state DIR`, else `$XDG_CACHE_HOME/hashup`, else
/// `$HOME/.cache/hashup`; `None` with `--no-cache` or when neither variable is set.
pub fn cache_dir(config: &UploadConfig, env: Env) -> Option<PathBuf> {
    cache_dir_for(config.hash_cache, config.state_dir.as_deref(), env)
}

/// [`cache_dir`] for any command with `--state` and `--no-cache` (`use_cache` false): one cache
/// for every command, so `hashup verify` after an upload reads no file.
pub fn cache_dir_for(use_cache: bool, state_dir: Option<&Path>, env: Env) -> Option<PathBuf> {
    if !use_cache {
        return None;
    }
    if let Some(dir) = state_dir {
        return Some(dir.to_path_buf());
    }
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("hashup"))
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

    #[test]
    fn the_cache_lives_in_state_then_xdg_then_home() {
        let config = crate::commands::upload::tests::config();
        assert_eq!(
            cache_dir(&config, &one("XDG_CACHE_HOME", "/x")),
            Some(PathBuf::from("/x/hashup"))
        );
        assert_eq!(
            cache_dir(&config, &one("HOME", "/h")),
            Some(PathBuf::from("/h/.cache/hashup"))
        );
        assert_eq!(cache_dir(&config, &|_: &str| None), None);
        let state = UploadConfig {
            state_dir: Some("/s".into()),
            ..config.clone()
        };
        assert_eq!(
            cache_dir(&state, &one("HOME", "/h")),
            Some(PathBuf::from("/s"))
        );
        let off = UploadConfig {
            hash_cache: false,
            ..state
        };
        assert_eq!(cache_dir(&off, &one("HOME", "/h")), None);
    }
}
