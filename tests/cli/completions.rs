//! `hashup completions SHELL`: a script for each shell that offers every subcommand and the
//! flags, and that its shell accepts.

use std::path::Path;

use super::{have, subcommands};
use crate::util;

/// The shells clap_complete writes for.
const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "powershell", "elvish"];

/// How `shell`'s script spells the offer of subcommand `sub`.
fn offers_subcommand(shell: &str, sub: &str) -> String {
    match shell {
        "bash" => format!("hashup,{sub})"),
        "zsh" => format!("'{sub}:"),
        "fish" => format!("-a \"{sub}\""),
        "powershell" => format!("[CompletionResult]::new('{sub}', '{sub}'"),
        "elvish" => format!("cand {sub} '"),
        _ => unreachable!("{shell}"),
    }
}

/// How `shell`'s script spells the offer of upload's `--s3` flag.
fn offers_s3(shell: &str) -> &'static str {
    match shell {
        "bash" => " --s3 ",
        "zsh" => "--s3=[",
        "fish" => " -l s3 ",
        "powershell" => "[CompletionResult]::new('--s3', '--s3'",
        "elvish" => "cand --s3 '",
        _ => unreachable!("{shell}"),
    }
}

fn script(shell: &str) -> String {
    let run = util::hashup(["completions", shell]).run();
    String::from_utf8(run.success().to_vec()).unwrap()
}

#[test]
fn each_shell_offers_every_subcommand_and_the_flags() {
    let subs = subcommands(&[]);
    for shell in SHELLS {
        let script = script(shell);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for sub in &subs {
            let needle = offers_subcommand(shell, sub);
            assert!(script.contains(&needle), "{shell}: no {needle:?}");
        }
        let s3 = offers_s3(shell);
        assert!(script.contains(s3), "{shell}: no {s3:?}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_choices() {
    let run = util::hashup(["completions", "tcsh"]).run();
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with(
            "error: invalid value 'tcsh' for '<SHELL>'\n  \
             [possible values: bash, elvish, fish, powershell, zsh]\n"
        ),
        "{}",
        run.stderr
    );
}

/// Writes the shell's script to a file and runs `check` on it; the shell's syntax check must
/// pass without a word on stderr.
fn syntax_check(shell: &str, file_name: &str, check: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, script(shell)).unwrap();
    let (program, args) = check.split_first().unwrap();
    let run =
        util::TestCommand::new(program, args.iter().map(Path::new).chain([path.as_path()])).run();
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (0, ""),
        "{check:?} {shell}"
    );
}

#[test]
fn bash_accepts_the_bash_script() {
    syntax_check("bash", "hashup.bash", &["bash", "-n"]);
}

#[test]
fn zsh_accepts_the_zsh_script() {
    if !have("zsh") {
        eprintln!("zsh is not installed: its syntax check is skipped");
        return;
    }
    syntax_check("zsh", "_hashup", &["zsh", "-n"]);
}

#[test]
fn fish_accepts_the_fish_script() {
    if !have("fish") {
        eprintln!("fish is not installed: its syntax check is skipped");
        return;
    }
    syntax_check("fish", "hashup.fish", &["fish", "--no-execute"]);
}

/// The bash script completes as bash runs it: the function it registers, called with the words
/// typed so far, offers the subcommand, the nested subcommand and the flags that match.
#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashup.bash");
    std::fs::write(&path, script("bash")).unwrap();
    // _hashup's arguments are what bash passes: the command, the word being completed and the
    // word before it.
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let (cur, prev) = (words[words.len() - 1], words[words.len() - 2]);
        let program = format!(
            "source {path:?}; COMP_WORDS=({line}); COMP_CWORD={}; \
             _hashup hashup {cur:?} {prev:?}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.len() - 1
        );
        let run = util::TestCommand::new("bash", ["-c", &program]).run();
        String::from_utf8(run.success().to_vec()).unwrap()
    };
    assert_eq!(complete(&["hashup", "up"]), "upload\n");
    assert_eq!(complete(&["hashup", "manifest", "m"]), "merge\n");
    let flags = complete(&["hashup", "upload", "--s"]);
    let flags: Vec<&str> = flags.lines().collect();
    assert!(flags.iter().all(|f| f.starts_with("--s")), "{flags:?}");
    for flag in ["--s3", "--shard", "--skip-existing"] {
        assert!(flags.contains(&flag), "{flag} not in {flags:?}");
    }
}
