//! One `run` per subcommand: each takes its plain config, drives the pipeline and
//! decides the exit code.

pub mod bench;
pub mod check;
pub mod hash;
pub mod manifest;
pub mod upload;
pub mod verify;

use std::io;

/// Treats a broken pipe on stdout (`hashup hash | head`) as a quiet end, like
/// ripgrep does: `Ok(false)` means stop writing.
pub(crate) fn keep_writing(result: io::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err),
    }
}
