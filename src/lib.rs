//! hashup: high-throughput parallel SHA-256 hashing and bulk upload to object
//! storage through presigned URLs.

pub mod commands;
pub mod config;
pub mod exit;
pub mod hash;
pub mod serve;
pub mod sign;
pub mod sumfile;
pub mod walk;
