//! `hashup hash`: walk, hash in parallel, print in walk order.

use std::io::{self, BufWriter, IsTerminal, Write};

use anyhow::Context;

use super::keep_writing;
use crate::config::{HashConfig, OutputFormat};
use crate::exit::ExitCode;
use crate::hash::{FileError, HashedFile, Hasher};
use crate::sumfile;
use crate::walk::Walk;

/// Hashes every file under `config.paths` and prints one line (or JSON object) per
/// file, in a deterministic order. Per-file problems go to stderr and make the exit
/// code 1; skipped special files and links are reported but are not failures.
pub fn run(config: &HashConfig) -> anyhow::Result<ExitCode> {
    let walk = Walk::new(config.paths.clone(), config.walk.clone());
    let hasher = Hasher::spawn(walk, &config.hash).context("cannot start hashing threads")?;
    let stdout = io::stdout();
    let interactive = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut failed = 0u64;
    for result in hasher.in_order() {
        let written = match &result {
            Ok(file) => write_file(&mut out, file, config.format),
            Err(err) => {
                if !err.is_skip() {
                    failed += 1;
                }
                keep_writing(out.flush())?;
                eprintln!("hashup: {err}");
                match config.format {
                    OutputFormat::Json => write_error_json(&mut out, err),
                    OutputFormat::Sums => Ok(()),
                }
            }
        };
        let flushed = written.and_then(|()| if interactive { out.flush() } else { Ok(()) });
        if !keep_writing(flushed).context("cannot write to standard output")? {
            return Ok(ExitCode::Success);
        }
    }
    if !keep_writing(out.flush()).context("cannot write to standard output")? {
        return Ok(ExitCode::Success);
    }
    Ok(if failed > 0 {
        ExitCode::SomeFailed
    } else {
        ExitCode::Success
    })
}

fn write_file(out: &mut impl Write, file: &HashedFile, format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Sums => sumfile::write_line(out, &file.sha256, &file.path),
        OutputFormat::Json => {
            let mut record = serde_json::json!({
                "path": file.path.to_string_lossy(),
                "name": file.name.to_string_lossy(),
                "size": file.stamp.size,
                "mtime": file.stamp.mtime.0,
                "mtime_nsec": file.stamp.mtime.1,
                "sha256": file.hex(),
            });
            if file.path.to_str().is_none() {
                record["path_lossy"] = true.into();
            }
            serde_json::to_writer(&mut *out, &record)?;
            out.write_all(b"\n")
        }
    }
}

fn write_error_json(out: &mut impl Write, err: &FileError) -> io::Result<()> {
    let record = serde_json::json!({
        "path": err.path.to_string_lossy(),
        "name": err.name.to_string_lossy(),
        "error": err.kind.to_string(),
        "skipped": err.is_skip(),
    });
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}
