//! `hashup hash -c LIST...` against `sha256sum -c`: round trips both ways, and the
//! same stdout, stderr (modulo the program name) and exit code for every outcome
//! and flag.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use super::fixture::{EMPTY_SHA256, Tree, p, sample_names, sample_tree, sha256_hex};
use super::gnu::{assert_same_as_gnu, sha256sum};
use crate::util;

/// The hex SHA-256 of a file in `tree`.
fn hex_of(tree: &Tree, name: impl AsRef<Path>) -> String {
    sha256_hex(&fs::read(tree.path(name)).unwrap())
}

/// `-c [flags...] lists...` as arguments.
fn check_args<'a>(flags: &[&'a str], lists: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-c"];
    args.extend_from_slice(flags);
    args.extend_from_slice(lists);
    args
}

#[test]
fn sha256sum_accepts_hashup_output() {
    let tree = sample_tree();
    for roots in [sample_names(), vec![Path::new(".")]] {
        let list = util::hashup(["hash"])
            .args(&roots)
            .current_dir(tree.root())
            .run()
            .success()
            .to_vec();
        fs::write(tree.path("list"), &list).unwrap();
        // Equal runs, so this is what sha256sum says too.
        let run = assert_same_as_gnu(tree.root(), &["-c", "--strict", "list"], b"");
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
        let verified = run.stdout.split(|&b| b == b'\n');
        assert_eq!(
            verified.filter(|l| l.ends_with(b": OK")).count(),
            sample_names().len(),
            "{run:?}"
        );
        fs::remove_file(tree.path("list")).unwrap();
    }
}

#[test]
fn hashup_accepts_sha256sum_output_plain_binary_and_tagged() {
    let tree = sample_tree();
    for format in [&[][..], &["--binary"], &["--tag"]] {
        let list = sha256sum(format)
            .args(sample_names())
            .current_dir(tree.root())
            .run()
            .success()
            .to_vec();
        fs::write(tree.path("list"), list).unwrap();
        for flags in [&[][..], &["--strict"], &["--quiet"]] {
            let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
            assert_eq!(run.code, 0, "{format:?} {flags:?}");
        }
        fs::remove_file(tree.path("list")).unwrap();
    }
}

#[test]
fn escaped_names_are_checked_and_reported_like_gnu() {
    let tree = sample_tree();
    let list = sha256sum(["back\\slash", "new\nline", "car\rret", "one"])
        .current_dir(tree.root())
        .run()
        .success()
        .to_vec();
    fs::write(tree.path("list"), &list).unwrap();
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    // Only a newline is escaped in a result line, as GNU does.
    assert_eq!(
        run.stdout,
        b"back\\slash: OK\n\\new\\nline: OK\ncar\rret: OK\none: OK\n"
    );

    // A mismatch on an escaped name.
    fs::write(tree.path("new\nline"), "changed").unwrap();
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        b"back\\slash: OK\n\\new\\nline: FAILED\ncar\rret: OK\none: OK\n"
    );
}

#[test]
fn mismatched_files_fail() {
    let tree = sample_tree();
    let list = sha256sum(sample_names())
        .current_dir(tree.root())
        .run()
        .success()
        .to_vec();
    fs::write(tree.path("list"), list).unwrap();
    // Same size, other content: only the hash can tell.
    fs::write(tree.path("one"), "?").unwrap();
    let mut large = fs::read(tree.path("large")).unwrap();
    large[4 << 20] ^= 1;
    fs::write(tree.path("large"), large).unwrap();

    for flags in [&[][..], &["--quiet"], &["--status"]] {
        let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
        assert_eq!(run.code, 1);
    }
    let run = util::hashup(["hash", "-c", "--quiet", "list"])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.stdout, b"large: FAILED\none: FAILED\n");
    assert_eq!(
        run.stderr,
        "hashup: WARNING: 2 computed checksums did NOT match\n"
    );
}

#[test]
fn vanished_files_fail_open_or_read() {
    let tree = sample_tree();
    let list = util::hashup(["hash", "one", "B", "nested/deep-file", "empty"])
        .current_dir(tree.root())
        .run()
        .success()
        .to_vec();
    fs::write(tree.path("list"), list).unwrap();
    fs::remove_file(tree.path("B")).unwrap();
    fs::remove_file(tree.path("nested/deep-file")).unwrap();

    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout_str(),
        "one: OK\nB: FAILED open or read\nnested/deep-file: FAILED open or read\nempty: OK\n"
    );
    assert_eq!(
        run.stderr,
        "hashup: B: No such file or directory\n\
         hashup: nested/deep-file: No such file or directory\n\
         hashup: WARNING: 2 listed files could not be read\n"
    );

    for flags in [
        &["--quiet"][..],
        &["--status"],
        &["--ignore-missing"],
        &["--ignore-missing", "--quiet"],
    ] {
        assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
    }
}

/// A list with a bit of everything; malformed lines come first, before any
/// per-file message (see `warnings_about_lines_come_in_list_order`).
fn mixed_list(tree: &Tree) -> String {
    format!(
        "# a comment line\n\
         not a checksum line\n\
         {short}  one\n\
         {one}  one\n\
         {wrong}  B\n\
         {empty}  gone\n\
         {ab} *a b\n\
         SHA256 (with space) = {space}\n\
         \\{back}  back\\\\slash\n\
         {upper}  empty\n",
        short = &hex_of(tree, "one")[1..],
        one = hex_of(tree, "one"),
        wrong = hex_of(tree, "one"),
        empty = EMPTY_SHA256,
        ab = hex_of(tree, "a b"),
        space = hex_of(tree, "with space"),
        back = hex_of(tree, "back\\slash"),
        upper = EMPTY_SHA256.to_uppercase(),
    )
}

#[test]
fn every_flag_reports_like_gnu_on_a_mixed_list() {
    let tree = sample_tree();
    fs::write(tree.path("list"), mixed_list(&tree)).unwrap();
    for flags in [
        &[][..],
        &["--quiet"],
        &["--status"],
        &["--strict"],
        &["-w"],
        &["--warn", "--strict"],
        &["--ignore-missing"],
        &["--ignore-missing", "--quiet"],
        &["--status", "--strict"],
        &["--quiet", "--strict", "--ignore-missing"],
    ] {
        let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
        assert_eq!(run.code, 1, "{flags:?}");
    }

    let run = util::hashup(["hash", "-c", "-w", "list"])
        .current_dir(tree.root())
        .run();
    assert_eq!(
        run.stdout_str(),
        "one: OK\nB: FAILED\ngone: FAILED open or read\na b: OK\nwith space: OK\n\
         back\\slash: OK\nempty: OK\n"
    );
    assert_eq!(
        run.stderr,
        "hashup: list: 2: improperly formatted SHA256 checksum line\n\
         hashup: list: 3: improperly formatted SHA256 checksum line\n\
         hashup: gone: No such file or directory\n\
         hashup: WARNING: 2 lines are improperly formatted\n\
         hashup: WARNING: 1 listed file could not be read\n\
         hashup: WARNING: 1 computed checksum did NOT match\n"
    );
    let status = util::hashup(["hash", "-c", "--status", "list"])
        .current_dir(tree.root())
        .run();
    assert_eq!(status.stdout, b"");
}

#[test]
fn malformed_lines_only_fail_with_strict() {
    let tree = sample_tree();
    let list = format!("garbage\n{}  one\n  \n", hex_of(&tree, "one"));
    fs::write(tree.path("list"), list).unwrap();
    for (flags, code) in [
        (&[][..], 0),
        (&["-w"], 0),
        (&["--quiet"], 0),
        (&["--status"], 0),
        (&["--strict"], 1),
        (&["--strict", "--status"], 1),
    ] {
        let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
        assert_eq!(run.code, code, "{flags:?}");
    }
}

#[test]
fn list_without_a_valid_line_fails() {
    let tree = sample_tree();
    let one = hex_of(&tree, "one");
    tree.file("good", format!("{one}  one\n"))
        .file("nothing", "")
        .file("comments", "# only\n# comments\n")
        .file("garbage", "nothing\nto see here\n")
        .file("short", format!("{}  one\n", &one[..63]));
    for list in ["nothing", "comments", "garbage", "short"] {
        let run = assert_same_as_gnu(tree.root(), &["-c", list], b"");
        assert_eq!(
            (run.code, run.stdout_str(), run.stderr.as_str()),
            (
                1,
                "",
                format!("hashup: {list}: no properly formatted checksum lines found\n").as_str()
            )
        );
        assert_same_as_gnu(tree.root(), &["-c", "--status", list], b"");
        assert_same_as_gnu(tree.root(), &["-c", "-w", list], b"");
    }
    // The other lists are still checked, and the exit code remembers the bad one.
    let run = assert_same_as_gnu(tree.root(), &["-c", "good", "garbage", "good"], b"");
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, b"one: OK\none: OK\n");
}

#[test]
fn ignore_missing_with_nothing_verified_fails() {
    let tree = sample_tree();
    tree.file(
        "list",
        format!("{EMPTY_SHA256}  gone\n{EMPTY_SHA256}  also gone\n"),
    );
    let run = assert_same_as_gnu(tree.root(), &["-c", "--ignore-missing", "list"], b"");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "hashup: list: no file was verified\n")
    );
}

#[test]
fn list_from_standard_input() {
    let tree = sample_tree();
    let list = sha256sum(["one", "a/x", "new\nline"])
        .current_dir(tree.root())
        .run()
        .success()
        .to_vec();
    let run = assert_same_as_gnu(tree.root(), &["-c", "-"], &list);
    assert_eq!(run.stdout, b"one: OK\na/x: OK\n\\new\\nline: OK\n");
    let run = assert_same_as_gnu(tree.root(), &["-c", "-"], b"garbage\n");
    assert_eq!(
        run.stderr,
        "hashup: 'standard input': no properly formatted checksum lines found\n"
    );
}

#[test]
fn listed_fifo_is_not_opened() {
    // GNU would block reading it; hashup skips it (the deadline fails a hang).
    let tree = sample_tree();
    tree.fifo("fifo").file(
        "list",
        format!("{EMPTY_SHA256}  fifo\n{}  one\n", hex_of(&tree, "one")),
    );
    let run = util::hashup(["hash", "-c", "list"])
        .current_dir(tree.root())
        .run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout_str(), "fifo: FAILED open or read\none: OK\n");
    assert_eq!(
        run.stderr,
        "hashup: fifo: skipped: is a FIFO\nhashup: WARNING: 1 listed file could not be read\n"
    );
}

#[test]
fn listed_symlink_is_followed() {
    let tree = sample_tree();
    tree.symlink("link", "nested/deep-file").file(
        "list",
        format!("{}  link\n", hex_of(&tree, "nested/deep-file")),
    );
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.stdout, b"link: OK\n");
}

// --- Where hashup -c still differs from sha256sum -c ---------------------------

#[test]
fn unreadable_list_is_reported_and_the_next_list_checked() {
    // GNU: `sha256sum: nope: No such file or directory`, goes on, exit 1.
    let tree = sample_tree();
    tree.file("good", format!("{}  one\n", hex_of(&tree, "one")));
    let run = assert_same_as_gnu(tree.root(), &["-c", "nope", "good"], b"");
    assert_eq!(run.code, 1);
    assert_same_as_gnu(tree.root(), &["-c", "good", "nested"], b"");
}

#[test]
fn warnings_about_lines_come_in_list_order() {
    // GNU reads the list line by line: a malformed line after a missing file is
    // warned about after that file's error, not before it.
    let tree = sample_tree();
    tree.file(
        "list",
        format!(
            "{EMPTY_SHA256}  gone\nmalformed\n{}  one\n",
            hex_of(&tree, "one")
        ),
    );
    let run = assert_same_as_gnu(tree.root(), &["-c", "-w", "list"], b"");
    assert_eq!(
        run.stderr,
        "hashup: gone: No such file or directory\n\
         hashup: list: 2: improperly formatted SHA256 checksum line\n\
         hashup: WARNING: 1 line is improperly formatted\n\
         hashup: WARNING: 1 listed file could not be read\n"
    );
}

#[test]
fn crlf_lists_are_accepted_like_gnu() {
    // Lists written on Windows end their lines with CR LF; GNU drops the CR.
    let tree = sample_tree();
    tree.file(
        "list",
        format!(
            "{}  one\r\n{}  a b\r\n",
            hex_of(&tree, "one"),
            hex_of(&tree, "a b")
        ),
    );
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.stdout, b"one: OK\na b: OK\n");
}

#[test]
fn openssl_style_tagged_lines_are_accepted_like_gnu() {
    // `openssl dgst -sha256` (1.x) writes `SHA256(name)= hex`; GNU accepts it.
    let tree = sample_tree();
    tree.file("list", format!("SHA256(one)= {}\n", hex_of(&tree, "one")));
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.stdout, b"one: OK\n");
}

#[test]
fn empty_lines_are_ignored_like_gnu() {
    // GNU skips empty lines (not blank ones) like comments: not malformed, even
    // with --strict.
    let tree = sample_tree();
    tree.file("list", format!("\n{}  one\n\n", hex_of(&tree, "one")));
    for flags in [&[][..], &["--strict"], &["-w"]] {
        let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{flags:?}");
    }
}

#[test]
fn a_list_on_standard_input_cannot_list_standard_input_like_gnu() {
    // GNU counts a line naming `-` as improperly formatted when the list itself is standard
    // input; hashup hashed what was left of standard input (nothing), so this line said OK.
    let tree = sample_tree();
    let list = format!("{EMPTY_SHA256}  -\n{}  one\n", hex_of(&tree, "one"));
    for flags in [&[][..], &["--strict"], &["-w"]] {
        let run = assert_same_as_gnu(tree.root(), &check_args(flags, &["-"]), list.as_bytes());
        assert_eq!(run.stdout, b"one: OK\n", "{flags:?}");
    }
    // In a list read from a file, `-` is standard input as usual.
    tree.file("list", format!("{EMPTY_SHA256}  -\n"));
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!((run.code, run.stdout.as_slice()), (0, &b"-: OK\n"[..]));
}

#[test]
fn an_empty_tagged_name_is_a_file_that_cannot_be_read_like_gnu() {
    // GNU lists `SHA256 () = <hex>` as a file it cannot open, which fails the check; hashup
    // called the line malformed, which (without --strict) let the check pass. Only stderr
    // differs, GNU quoting the empty name as `''`.
    let tree = sample_tree();
    let list = format!(
        "{}  one\nSHA256 () = {EMPTY_SHA256}\n",
        hex_of(&tree, "one")
    );
    let run = |program: &str| {
        let command = match program {
            "hashup" => util::hashup(["hash", "-c", "-"]),
            _ => sha256sum(["-c", "-"]),
        };
        command
            .current_dir(tree.root())
            .stdin(list.as_bytes())
            .run()
    };
    let (ours, gnu) = (run("hashup"), run("sha256sum"));
    assert_eq!(
        (ours.code, &ours.stdout),
        (gnu.code, &gnu.stdout),
        "{gnu:?}"
    );
    assert_eq!(
        (ours.code, ours.stdout.as_slice()),
        (1, &b"one: OK\n: FAILED open or read\n"[..])
    );
}

#[test]
fn listed_directory_is_reported_like_gnu() {
    // GNU: `sha256sum: nested: Is a directory`.
    let tree = sample_tree();
    tree.file("list", format!("{EMPTY_SHA256}  nested\n"));
    assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
}

#[test]
fn last_of_status_warn_and_quiet_wins_like_gnu() {
    // In GNU each of --status, --warn and --quiet cancels the others.
    let tree = sample_tree();
    tree.file("list", format!("bad\n{}  one\n", hex_of(&tree, "one")));
    for flags in [
        &["--status", "-w"][..],
        &["--status", "--quiet"],
        &["-w", "--status"],
        &["--quiet", "-w"],
    ] {
        assert_same_as_gnu(tree.root(), &check_args(flags, &["list"]), b"");
    }
}

#[test]
fn non_utf8_names_round_trip() {
    let tree = sample_tree();
    let list = util::hashup([OsStr::new("hash"), p(b"caf\xe9").as_os_str()])
        .current_dir(tree.root())
        .run()
        .success()
        .to_vec();
    assert!(list.ends_with(b"  caf\xe9\n"), "{list:?}");
    fs::write(tree.path("list"), list).unwrap();
    let run = assert_same_as_gnu(tree.root(), &["-c", "list"], b"");
    assert_eq!(run.stdout, b"caf\xe9: OK\n");
}
