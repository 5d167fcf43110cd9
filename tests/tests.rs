//! The one integration-test binary: each area of hashup is a module.

mod cli;
mod hash;
mod manifest;
mod props;
mod readme;
mod serve;
mod upload;
mod util;
mod verify;
mod wan;
