//! hashup: high-throughput parallel SHA-256 hashing and bulk upload to object storage through
//! presigned URLs.
//!
//! The crate in layers, each using only those below it (`docs/design.md` says more):
//!
//! - **Commands** ([`commands`]): one `run` per subcommand, from its plain [`config`] to an
//!   [`exit`] code. `upload` drives the [`pipeline`] (and, with `--delete`, [`mirror`]);
//!   `verify` drives [`verify`]; `hash` and `check` the engine alone.
//! - **Stages**: [`walk`] (filtered by [`select`]) -> [`naming`] -> [`hash`] (the engine and its
//!   cache) -> [`pipeline`] (the bridge to the uploader pool: presign, [`transfer`], big files
//!   in [`multipart`]) -> [`manifest`] (the journal, which [`skip`] reads back); [`verify`]
//!   compares what is expected with what is stored; [`mirror`] decides what `--delete` deletes.
//! - **The remote** ([`remote`]): the destination resolved once (a PROMINENCE API, the embedded
//!   store, direct S3 mode) into one value every command asks for targets, multipart, listings,
//!   lookups, deletions, its key rule and size limit. Under it: [`request`] (the one retry loop:
//!   classify, back off with [`retry`], tell the adaptive [`limit`], stop on Ctrl-C via
//!   [`stop`]), [`presign`] (the API client and the local signer), [`bandwidth`] (`--bwlimit`), [`sign`] (SigV4), [`aws`]
//!   (credentials, region, endpoint as the AWS tools find them), [`http`] (clients, capped
//!   answers).
//! - **The server** ([`serve`]): the PROMINENCE-compatible presign endpoint and embedded store;
//!   it shares [`sign`] and the leaves below with the client, nothing of its pipeline.
//! - **Leaves** every layer, client or server, may use: [`utc`], [`message`], [`keys`],
//!   [`jwt`], [`s3xml`] (the S3 XML documents); and [`progress`], [`sumfile`], [`rlimit`],
//!   [`wan`], a TCP proxy that emulates a distant store (delay, window,
//!   bandwidth, resets) for benchmarks and tests.

pub mod aws;
pub mod bandwidth;
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
pub mod remote;
pub mod request;
pub mod retry;
pub mod rlimit;
pub mod s3xml;
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
