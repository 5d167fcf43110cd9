//! `hashup hash -c LIST...`: verify a `sha256sum` list in parallel, reporting like
//! GNU `sha256sum -c`.

use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::keep_writing;
use crate::config::CheckConfig;
use crate::exit::ExitCode;
use crate::hash::{FileEntry, FileErrorKind, Hasher};
use crate::message::plain_io_message;
use crate::sumfile::{self, Line};

/// Counts for one list, reported as GNU's closing warnings.
#[derive(Debug, Default)]
struct Tally {
    verified: u64,
    mismatched: u64,
    unreadable: u64,
    malformed: u64,
}

/// Checks every list; exit 1 if any file failed, could not be read, or (with
/// `strict`) any line was malformed, or a list had no valid line at all.
pub fn run(config: &CheckConfig) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let interactive = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut ok = true;
    for list in &config.lists {
        match check_list(config, list, &mut out, interactive)? {
            Some(list_ok) => ok &= list_ok,
            None => return Ok(ExitCode::Success), // stdout closed
        }
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::SomeFailed
    })
}

fn display(list: &Path) -> String {
    if list == Path::new("-") {
        "'standard input'".into()
    } else {
        list.display().to_string()
    }
}

/// Returns `Some(all good)`, or `None` when stdout went away.
fn check_list(
    config: &CheckConfig,
    list: &Path,
    out: &mut impl Write,
    interactive: bool,
) -> anyhow::Result<Option<bool>> {
    let text = match read_list(list) {
        Ok(text) => text,
        Err(why) => {
            // Like GNU: report it, go on with the next list, exit 1 at the end.
            eprintln!("hashup: {}: {why}", display(list));
            return Ok(Some(false));
        }
    };
    let mut tally = Tally::default();
    let mut expected = Vec::new();
    let mut entries = Vec::new();
    // (files listed before it, line number) of each malformed line, so `-w` can
    // warn in list order, between the results, as GNU does.
    let mut malformed = Vec::new();
    // The final newline ends the last line; it does not start another.
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let lines = body.split(|&b| b == b'\n').take_while(|_| !text.is_empty());
    // Like GNU, a list read from standard input cannot name it as a file too: such a line
    // is malformed (read as a file, it would be whatever follows the list, usually nothing).
    let stdin_listed =
        |listed: &sumfile::ListedFile| list == Path::new("-") && listed.path.as_os_str() == "-";
    for (number, line) in lines.enumerate() {
        match sumfile::parse_line(line) {
            Line::File(listed) if !stdin_listed(&listed) => {
                expected.push(listed.digest);
                entries.push(Ok(FileEntry::named(listed.path)));
            }
            Line::Comment => {}
            Line::File(_) | Line::Malformed => malformed.push((expected.len(), number + 1)),
        }
    }
    tally.malformed = malformed.len() as u64;
    let mut malformed = malformed.into_iter().peekable();
    let mut warn_up_to = |files: usize, out: &mut dyn Write| -> io::Result<()> {
        while let Some(&(_, number)) = malformed.peek().filter(|(before, _)| *before <= files) {
            malformed.next();
            if config.warn {
                out.flush()?;
                eprintln!(
                    "hashup: {}: {number}: improperly formatted SHA256 checksum line",
                    display(list)
                );
            }
        }
        Ok(())
    };
    if expected.is_empty() {
        warn_up_to(usize::MAX, out)?;
        eprintln!(
            "hashup: {}: no properly formatted checksum lines found",
            display(list)
        );
        return Ok(Some(false));
    }

    let hasher = Hasher::spawn(entries, &config.hash).context("cannot start hashing threads")?;
    for (index, (result, want)) in hasher.in_order().zip(&expected).enumerate() {
        if !keep_writing(warn_up_to(index, out))? {
            return Ok(None);
        }
        let (path, verdict): (PathBuf, &str) = match result {
            Ok(file) if file.sha256 == *want => {
                tally.verified += 1;
                if config.quiet || config.status {
                    continue;
                }
                (file.path, "OK")
            }
            Ok(file) => {
                tally.verified += 1;
                tally.mismatched += 1;
                if config.status {
                    continue;
                }
                (file.path, "FAILED")
            }
            Err(err) => {
                let missing = matches!(&err.kind, FileErrorKind::Io(e) if e.kind() == io::ErrorKind::NotFound);
                if missing && config.ignore_missing {
                    continue;
                }
                tally.unreadable += 1;
                if !keep_writing(out.flush())? {
                    return Ok(None);
                }
                eprintln!("hashup: {err}");
                if config.status {
                    continue;
                }
                (err.path, "FAILED open or read")
            }
        };
        let written = sumfile::write_check_prefix(out, &path)
            .and_then(|()| writeln!(out, "{verdict}"))
            .and_then(|()| if interactive { out.flush() } else { Ok(()) });
        if !keep_writing(written).context("cannot write to standard output")? {
            return Ok(None);
        }
    }
    if !keep_writing(warn_up_to(usize::MAX, out).and_then(|()| out.flush()))
        .context("cannot write to standard output")?
    {
        return Ok(None);
    }

    if !config.status {
        warn(
            tally.malformed,
            "line is",
            "lines are",
            "improperly formatted",
        );
        warn(
            tally.unreadable,
            "listed file",
            "listed files",
            "could not be read",
        );
        warn(
            tally.mismatched,
            "computed checksum",
            "computed checksums",
            "did NOT match",
        );
    }
    if config.ignore_missing && tally.verified == 0 && tally.unreadable == 0 {
        eprintln!("hashup: {}: no file was verified", display(list));
        return Ok(Some(false));
    }
    Ok(Some(
        tally.mismatched == 0 && tally.unreadable == 0 && !(config.strict && tally.malformed > 0),
    ))
}

fn warn(count: u64, one: &str, many: &str, what: &str) {
    match count {
        0 => {}
        1 => eprintln!("hashup: WARNING: 1 {one} {what}"),
        n => eprintln!("hashup: WARNING: {n} {many} {what}"),
    }
}

/// Reads a whole list. Like GNU, a failure to open says why, a failure to read
/// (a directory, say) says `read error`.
fn read_list(list: &Path) -> Result<Vec<u8>, String> {
    let mut text = Vec::new();
    let read = if list == Path::new("-") {
        io::stdin().lock().read_to_end(&mut text)
    } else {
        let mut file = std::fs::File::open(list).map_err(|e| plain_io_message(&e))?;
        file.read_to_end(&mut text)
    };
    read.map_err(|_| "read error".to_string())?;
    Ok(text)
}
