//! One `run` per subcommand: each takes its plain config, drives the pipeline and
//! decides the exit code.

pub mod bench;
pub mod check;
pub mod hash;
pub mod manifest;
pub mod upload;
pub mod verify;

use std::io;

use crate::config::{Destination, Source};
use crate::naming::Plan;
use crate::select::Selection;
use crate::walk::Walk;

/// Treats a broken pipe on stdout (`hashup hash | head`) as a quiet end, like
/// ripgrep does: `Ok(false)` means stop writing.
pub(crate) fn keep_writing(result: io::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err),
    }
}

/// Walks, selects and names `source`'s files as every command that reaches `destination` does,
/// so they agree on each object's key; `None` (after saying why, and that `nothing` was done)
/// when a name is unusable or two files share a key, before anything is hashed. Sharded after
/// naming, so every shard refuses the same duplicates.
pub(crate) fn plan(
    source: &Source,
    selection: &Selection,
    destination: &Destination,
    nothing: &str,
) -> Option<Plan> {
    let walk = Walk::new(source.paths.clone(), source.walk.clone())
        .with_listed(selection.listed.clone())
        .selecting(selection.selector.clone());
    let keys = crate::remote::planning_keys(destination);
    match crate::naming::plan(walk, &source.naming, &keys) {
        Ok(entries) => Some(selection.shard(entries)),
        Err(problems) => {
            for problem in &problems {
                eprintln!("hashup: {problem}");
            }
            eprintln!(
                "hashup: {} unusable object name(s); {nothing}",
                problems.len()
            );
            None
        }
    }
}
