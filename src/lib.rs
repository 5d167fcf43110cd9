//! hashup: high-throughput parallel SHA-256 hashing and bulk upload to object
//! storage through presigned URLs.

pub mod exit;
pub mod serve;
pub mod sign;
