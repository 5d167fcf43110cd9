//! The hashup binary: parse the command line, build a plain config, run, map to an exit code.

mod cli;

use clap::Parser;
use cli::hash::HashJob;
use cli::{Cli, Command};
use hashup::exit::ExitCode;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hash(args) => match args.into_job() {
            HashJob::Hash(config) => hashup::commands::hash::run(&config),
            HashJob::Check(config) => hashup::commands::check::run(&config),
        },
        Command::Bench(args) => args
            .into_config()
            .and_then(|config| hashup::commands::bench::run(&config)),
        Command::Serve(args) => args
            .into_config()
            .and_then(hashup::serve::run)
            .map(|()| ExitCode::Success),
        Command::Upload(args) => hashup::commands::upload::run(&args.into_config()),
        Command::Verify(args) => hashup::commands::verify::run(&args.into_config()),
        Command::Manifest(args) => hashup::commands::manifest::run(&args.into_config()),
        Command::Completions(args) => args.run(),
        Command::Man(args) => args.run(),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("hashup: {err:#}");
            ExitCode::Fatal.into()
        }
    }
}
