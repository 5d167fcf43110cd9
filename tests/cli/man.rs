//! `hashup man`: a roff page for hashup and for every subcommand, which man and groff render
//! without a warning.

use std::path::{Path, PathBuf};

use super::{have, subcommands};
use crate::util;

/// Every page `hashup man --dir` must write: hashup.1 and hashup-SUB.1 for each subcommand,
/// nested ones too, as `--help` lists them.
fn expected_pages() -> Vec<String> {
    let mut pages = vec!["hashup.1".to_owned()];
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&args) {
            let mut child = path.clone();
            child.push(sub);
            pages.push(format!("hashup-{}.1", child.join("-")));
            pending.push(child);
        }
    }
    pages.sort();
    pages
}

fn write_pages(dir: &Path) -> Vec<PathBuf> {
    let run = util::hashup(["man", "--dir"]).arg(dir).run();
    run.stdout_str().lines().map(PathBuf::from).collect()
}

#[test]
fn dir_gets_a_page_for_hashup_and_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory that does not exist yet, as ~/.local/share/man/man1 often does not.
    let dir = tmp.path().join("share/man/man1");
    let printed = write_pages(&dir);
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let expected = expected_pages();
    assert!(expected.contains(&"hashup-manifest-merge.1".to_owned()));
    assert_eq!(on_disk, expected);
    // Printed: each path written, hashup.1 first.
    assert_eq!(printed.first(), Some(&dir.join("hashup.1")));
    let mut printed: Vec<String> = printed
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_str().unwrap().to_owned())
        .collect();
    printed.sort();
    assert_eq!(printed, expected);
    for page in &expected {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap();
        let title = page.strip_suffix(".1").unwrap();
        let th = format!(".TH {title} 1 ");
        assert!(
            roff.starts_with(".ie") && roff.contains(&th),
            "{page}: no {th:?}"
        );
        // The footer arguments keep their places (an empty date would shift them).
        assert!(
            roff.contains("\"hashup 0.1.0\" \"User Commands\"\n"),
            "{page}"
        );
        assert!(roff.contains("\n.SH NAME\n"), "{page}");
    }
}

#[test]
fn the_top_page_names_every_subcommand_and_the_upload_page_its_flags() {
    let top = util::hashup(["man"]).run();
    let top = top.stdout_str();
    assert!(top.contains("\n.TH hashup 1 "), "{top}");
    for sub in subcommands(&[]) {
        assert!(top.contains(&format!("\nhashup\\-{sub}(1)\n")), "{sub}");
    }
    let upload = util::hashup(["man", "upload"]).run();
    let upload = upload.stdout_str();
    assert!(upload.contains("\n.TH hashup-upload 1 "), "{upload}");
    assert!(upload.contains("\\fB\\-\\-s3\\fR"), "{upload}");
    let merge = util::hashup(["man", "manifest", "merge"]).run();
    assert!(
        merge
            .stdout_str()
            .contains("\n.TH hashup-manifest-merge 1 ")
    );
}

#[test]
fn an_unknown_subcommand_has_no_page() {
    let run = util::hashup(["man", "manifest", "nope"]).run();
    assert_eq!(
        (run.code, run.stdout.as_slice(), run.stderr.as_str()),
        (
            2,
            &b""[..],
            "hashup: `hashup manifest` has no subcommand `nope`; it has: summary, merge, diff\n"
        )
    );
    let run = util::hashup(["man", "hash", "x"]).run();
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "hashup: `hashup hash` has no subcommands, so no page for `x`\n"
        )
    );
    let run = util::hashup(["man", "upload", "--dir", "d"]).run();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot be used with"), "{run:?}");
}

/// Every page renders: groff with every warning on prints none, and man shows the NAME and
/// the subcommand's synopsis.
#[test]
fn every_page_renders_without_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let pages = write_pages(tmp.path());
    assert!(!pages.is_empty());
    if !have("groff") {
        eprintln!("groff is not installed: the pages are checked as text only");
        return;
    }
    for page in &pages {
        let run = util::TestCommand::new("groff", ["-man", "-Tutf8", "-ww", "-z"])
            .arg(page)
            .run();
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (0, ""),
            "{}",
            page.display()
        );
    }
    if !have("man") {
        eprintln!("man is not installed: man -l is skipped");
        return;
    }
    let merge = tmp.path().join("hashup-manifest-merge.1");
    let run = util::TestCommand::new("man", ["-l"])
        .arg(&merge)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .run();
    let text = String::from_utf8(run.success().to_vec()).unwrap();
    // man justifies lines with extra spaces: compare the words.
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "NAME hashup-manifest-merge - Merge shard manifests into one;",
        "SYNOPSIS hashup manifest merge [-o|--output] [--expect] [-h|--help] <MANIFEST>",
        "OPTIONS -o, --output <OUT> Write the merged manifest to OUT",
    ] {
        assert!(words.contains(expected), "no {expected:?} in {text}");
    }
}
