//! `hashup hash`, run as a binary on temp-dir trees: byte-exact output against GNU
//! `sha256sum`, `-c` against `sha256sum -c`, JSON records, special and unreadable
//! files, a file truncated while it is mapped, and exit codes.

mod check;
mod exit_codes;
mod fixture;
mod gnu;
mod json;
mod output;
mod special;
mod truncate;
mod unreadable;
