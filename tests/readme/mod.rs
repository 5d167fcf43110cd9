//! The README's usage blocks are the binary's `--help`, word for word: a block in
//! the README that starts with `$ hashup ... --help` must equal what that prints.

use crate::util;

#[test]
fn readme_usage_matches_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut checked = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("$ hashup ") else {
            continue;
        };
        if !command.ends_with("--help") {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let args: Vec<&str> = command.split_whitespace().collect();
        let run = util::hashup(&args).run();
        assert!(run.code == 0, "hashup {command} failed");
        let help = run.stdout_str();
        let actual: Vec<&str> = help.lines().map(str::trim_end).collect();
        let documented: Vec<&str> = block.iter().map(|l| l.trim_end()).collect();
        assert_eq!(
            documented, actual,
            "README block for `hashup {command}` differs from the binary's output; \
             regenerate it with `hashup {command}`"
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected usage blocks for hashup and each subcommand, found {checked}"
    );
}
