//! hashup: high-throughput parallel SHA-256 hashing and bulk upload to object storage through
//! presigned URLs.
//!
//! The stages, in pipeline order: [`walk`] (filtered by [`select`]) -> [`naming`] -> [`hash`]
//! -> [`pipeline`] (the bridge to the uploader pool) -> [`presign`] -> [`transfer`] (with
//! [`retry`], over [`http`]; big files in direct S3 mode: [`multipart`]) -> [`manifest`]; then,
//! with `upload --delete`, [`mirror`] (what is stored and no file maps to, deleted). [`serve`]
//! is the PROMINENCE-compatible server; [`sign`] is SigV4, shared by it and direct S3 mode
//! ([`presign::s3`]), whose credentials, region and endpoint [`aws`] finds as the AWS tools
//! do. [`verify`] checks afterwards that what was uploaded is stored, with the
//! same naming. [`utc`] and
//! [`message`] are helpers every stage may use. [`wan`] is a TCP proxy
//! that emulates a distant store (delay, window, bandwidth, resets) for benchmarks and tests.

pub mod aws;
pub mod commands;
pub mod config;
pub mod exit;
pub mod hash;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod limit;
pub mod manifest;
pub mod message;
pub mod mirror;
pub mod multipart;
pub mod naming;
pub mod pipeline;
pub mod presign;
pub mod progress;
pub mod request;
pub mod retry;
pub mod rlimit;
pub mod select;
pub mod serve;
pub mod sign;
pub mod skip;
pub mod stamp;
pub mod stop;
pub mod sumfile;
pub mod transfer;
pub mod utc;
pub mod verify;
pub mod walk;
pub mod wan;
