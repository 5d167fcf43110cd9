//! The hashup binary: parse the command line, build a plain config, run, map to an exit code.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use hashup::exit::ExitCode;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args
            .into_config()
            .and_then(hashup::serve::run)
            .map(|()| ExitCode::Success),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("hashup: {err:#}");
            ExitCode::Fatal.into()
        }
    }
}
