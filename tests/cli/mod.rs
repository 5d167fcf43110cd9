//! `hashup completions` and `hashup man`: what clap generates from the command line's
//! definition, checked against what `--help` lists, so a new subcommand is covered without
//! touching these tests.

mod completions;
mod man;

use crate::util;

/// The subcommands `hashup PATH --help` lists (not `help`), in its order.
fn subcommands(path: &[&str]) -> Vec<String> {
    let run = util::hashup(path).arg("--help").run();
    let help = String::from_utf8(run.success().to_vec()).unwrap();
    let listed: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // A description wrapped onto the next line starts with more than two spaces.
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    listed
}

/// Whether `program` is on PATH, for the checks that need a shell or a formatter that may not
/// be installed.
fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn help_lists_the_subcommands_these_tests_rely_on() {
    let top = subcommands(&[]);
    for name in ["hash", "upload", "manifest", "completions", "man"] {
        assert!(top.iter().any(|s| s == name), "{name} not in {top:?}");
    }
    assert_eq!(subcommands(&["manifest"]), ["summary", "merge", "diff"]);
    assert!(subcommands(&["upload"]).is_empty());
}
