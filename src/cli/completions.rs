//! `hashup completions SHELL`: the shell's completion script for every subcommand and flag,
//! generated from the clap definitions, so it can never fall behind them.

use std::io::{self, Write};

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use hashup::exit::ExitCode;

use super::Cli;

/// Flags of `hashup completions`.
#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:
  bash  hashup completions bash > ~/.local/share/bash-completion/completions/hashup
  zsh   hashup completions zsh > ~/.zfunc/_hashup   (with fpath+=(~/.zfunc) before compinit)
  fish  hashup completions fish > ~/.config/fish/completions/hashup.fish")]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

impl CompletionsArgs {
    /// Writes the script to standard output; a closed pipe ends it quietly.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let script = script(self.shell);
        write_stdout(&script)?;
        Ok(ExitCode::Success)
    }
}

/// The completion script for `shell`, for the binary named `hashup`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    // Into a buffer rather than stdout: clap_complete panics on a failed write, and a closed
    // pipe (`hashup completions bash | head`) is not a failure.
    clap_complete::generate(shell, &mut Cli::command(), "hashup", &mut script);
    script
}

/// Writes `bytes` to standard output; a broken pipe is a quiet end, like `hashup hash | head`.
pub(super) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(err).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}
