//! `hashup serve`, run as a binary against real clients: its API, the embedded store, and the
//! S3 backend on a real SeaweedFS.

mod api;
mod clients;
pub(crate) mod fixture;
mod hostile;
mod names;
mod s3;
mod store;
mod tokens;
