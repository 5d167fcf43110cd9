//! `hashup man`: manual pages in roff, generated from the clap definitions (the same text as
//! `--help`), so they can never fall behind them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use hashup::exit::ExitCode;

use super::Cli;
use super::completions::write_stdout;

/// Flags of `hashup man`.
#[derive(Debug, Args)]
#[command(after_help = "Install every page, then read one:
  hashup man --dir ~/.local/share/man/man1 && man hashup-upload
Or read one page without installing it:
  hashup man upload | man -l -")]
pub struct ManArgs {
    /// Print the page of this subcommand (e.g. `upload`, `manifest merge`) instead of hashup(1).
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Vec<String>,

    /// Write every page into DIR (created if missing): hashup.1, and hashup-SUB.1 for each
    /// subcommand, nested ones too (hashup-manifest-merge.1). Prints the paths written.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl ManArgs {
    /// Prints one page, or writes them all into `--dir`.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.dir {
            Some(dir) => {
                for path in write_pages(&dir)? {
                    println!("{}", path.display());
                }
            }
            None => write_stdout(&page(&self.command)?)?,
        }
        Ok(ExitCode::Success)
    }
}

/// The clap command the pages are made from: every subcommand gets its display name
/// (`hashup-manifest-merge`), and `help` is not a page of its own.
fn root() -> clap::Command {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    root
}

/// The page of `command`, footed `hashup VERSION` whatever the subcommand (clap_mangen's
/// default would be the subcommand's bare name, which has no version of its own) and dated
/// today. A date is needed: clap_mangen writes an empty one as nothing at all, which shifts
/// the footer and header arguments of `.TH` one place left.
fn man(command: clap::Command) -> clap_mangen::Man {
    let today = hashup::utc::rfc3339_nanos(std::time::SystemTime::now());
    clap_mangen::Man::new(command)
        .date(&today[..10])
        .source(concat!("hashup ", env!("CARGO_PKG_VERSION")))
        .manual("User Commands")
}

/// The page of the subcommand at `path` (empty: hashup itself), in roff.
pub fn page(path: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut command = root();
    for (depth, name) in path.iter().enumerate() {
        let known: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        command = command.find_subcommand(name).cloned().ok_or_else(|| {
            let parent = ["hashup"]
                .into_iter()
                .chain(path[..depth].iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            if known.is_empty() {
                anyhow::anyhow!("`{parent}` has no subcommands, so no page for `{name}`")
            } else {
                anyhow::anyhow!(
                    "`{parent}` has no subcommand `{name}`; it has: {}",
                    known.join(", ")
                )
            }
        })?;
    }
    let mut roff = Vec::new();
    man(command).render(&mut roff)?;
    Ok(roff)
}

/// Writes the page of hashup and of every subcommand, at any depth, into `dir`; returns the
/// paths written, hashup.1 first.
pub fn write_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("--dir {}", dir.display()))?;
    let mut written = Vec::new();
    let mut pending = vec![root()];
    while let Some(command) = pending.pop() {
        let subcommands: Vec<clap::Command> = command
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .cloned()
            .collect();
        let man = man(command);
        let path = dir.join(man.get_filename());
        man.generate_to(dir)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        pending.extend(subcommands.into_iter().rev());
    }
    Ok(written)
}
