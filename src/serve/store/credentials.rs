//! The embedded store's own access key pair, generated on first start and kept in
//! `DIR/.hashup/credentials.json` (mode 0600) when none is configured.

use std::io;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::sign::Credentials;

#[derive(Serialize, Deserialize)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

/// The key pair kept at `path`, generated and written there first if there is none.
pub(super) fn load_or_create_credentials(path: &Path) -> Result<Credentials, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let f: CredentialsFile = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::io(format!("reading {}", path.display()))(io::Error::other(e))
            })?;
            return Ok(Credentials::new(f.access_key_id, f.secret_access_key));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()))(e)),
    }
    let access: [u8; 10] = rand::random();
    let secret: [u8; 30] = rand::random();
    let f = CredentialsFile {
        access_key_id: format!("HASHUP{}", hex::encode_upper(access)),
        secret_access_key: base64::engine::general_purpose::STANDARD.encode(secret),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().expect("has a parent"))
        .map_err(StoreError::io("creating credentials"))?; // created 0600
    io::Write::write_all(
        &mut tmp,
        &serde_json::to_vec_pretty(&f).expect("serialises"),
    )
    .map_err(StoreError::io("writing credentials"))?;
    // Two servers starting on one fresh DIR: the first one's pair wins, both use it.
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(Credentials::new(f.access_key_id, f.secret_access_key)),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            load_or_create_credentials(path)
        }
        Err(e) => Err(StoreError::io("placing credentials")(e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let a = load_or_create_credentials(&path).unwrap();
        let b = load_or_create_credentials(&path).unwrap();
        assert_eq!(a, b);
        assert!(a.access_key_id.starts_with("HASHUP"));
    }
}
