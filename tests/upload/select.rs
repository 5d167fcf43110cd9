//! Which files `hashup upload` takes: globs, sizes, ages, hidden files, `--follow` loops,
//! `--files-from` and `--shard`. Almost all with `--dry-run`, whose `<sha256>  <name>` lines
//! show exactly what would be uploaded and which touches no network.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::read_manifest;
use crate::serve::fixture::sha256_hex;
use crate::util::{self, Run, tree};

/// `hashup upload --dry-run ARGS` in `cwd`, with `stdin`, no PROMINENCE, AWS or shard variables
/// but those in `env`.
fn dry_run<S: AsRef<OsStr>>(cwd: &Path, args: &[S], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    // HOME (where the hash cache goes) outside the tree being walked.
    let home = tempfile::tempdir().unwrap();
    util::hashup(["upload", "--dry-run"])
        .args(args)
        .current_dir(cwd)
        .home(home.path())
        .envs(env.iter().copied())
        .stdin(stdin)
        .run()
}

/// The names a successful dry run printed, in its order, after checking each line's hash is
/// that of `root/<path>` where the name is `path` (or as `path_of` maps it).
fn names_checked(run: &Run, path_of: impl Fn(&str) -> std::path::PathBuf) -> Vec<String> {
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (0, ""),
        "{}",
        run.stdout_str()
    );
    run.stdout_str()
        .lines()
        .map(|line| {
            let (hash, name) = line.split_once("  ").expect("a `<sha256>  <name>` line");
            let data = std::fs::read(path_of(name)).unwrap();
            assert_eq!(hash, sha256_hex(&data), "{name}");
            name.to_string()
        })
        .collect()
}

/// The names a successful dry run over `src` selected with `args`.
fn selected(src: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["."];
    all.extend_from_slice(args);
    names_checked(&dry_run(src, &all, &[], b""), |name| src.join(name))
}

/// `tree`'s layout for the glob tests.
const LIBRARY: [(&str, &[u8]); 9] = [
    ("a.sif", b"a"),
    ("b.tar", b"b"),
    ("notes.txt", b"n"),
    ("lib/c.sif", b"c"),
    ("lib/d.tar", b"d"),
    ("lib/old/e.sif", b"e"),
    ("tmp/f.sif", b"f"),
    ("x/lib/g.tar", b"g"),
    ("x/tmp", b"a file named like the tmp directory"),
];

#[test]
fn include_takes_base_names_anywhere_and_paths_from_the_root() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &LIBRARY);
    assert_eq!(
        selected(dir.path(), &["--include", "*.sif"]),
        ["a.sif", "lib/c.sif", "lib/old/e.sif", "tmp/f.sif"]
    );
    // `*` stops at `/`; a glob with `/` is matched against the whole name, from the root.
    assert_eq!(
        selected(
            dir.path(),
            &["--include", "lib/*.tar", "--include", "/b.tar"]
        ),
        ["b.tar", "lib/d.tar"]
    );
    assert_eq!(
        selected(dir.path(), &["--include", "lib/**"]),
        ["lib/c.sif", "lib/d.tar", "lib/old/e.sif"]
    );
    assert_eq!(
        selected(dir.path(), &["--include", "**/lib/*.tar"]),
        ["lib/d.tar", "x/lib/g.tar"]
    );
}

#[test]
fn exclude_wins_over_include_and_a_trailing_slash_means_directories() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &LIBRARY);
    assert_eq!(
        selected(dir.path(), &["--include", "*.sif", "--exclude", "a.sif"]),
        ["lib/c.sif", "lib/old/e.sif", "tmp/f.sif"]
    );
    // `tmp/` leaves the directory out but not the file x/tmp; `old` any entry so named.
    assert_eq!(
        selected(dir.path(), &["--exclude", "tmp/", "--exclude", "old"]),
        [
            "a.sif",
            "b.tar",
            "lib/c.sif",
            "lib/d.tar",
            "notes.txt",
            "x/lib/g.tar",
            "x/tmp"
        ]
    );
    assert_eq!(
        selected(dir.path(), &["--exclude", "tmp", "--exclude", "x/lib"]),
        [
            "a.sif",
            "b.tar",
            "lib/c.sif",
            "lib/d.tar",
            "lib/old/e.sif",
            "notes.txt"
        ]
    );
}

#[test]
fn an_excluded_directory_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &[("keep", b"k"), ("cache/data", b"d")]);
    // A link inside cache/ is reported when cache/ is read (links are not followed by default),
    // and no glob names the link itself: only not reading cache/ keeps it quiet.
    std::os::unix::fs::symlink("data", dir.path().join("cache/link")).unwrap();
    let run = dry_run(dir.path(), &["."], &[], b"");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            0,
            "hashup: ./cache/link: skipped: symbolic link (use --follow to follow links)\n"
        )
    );
    assert_eq!(selected(dir.path(), &["--exclude", "cache"]), ["keep"]);
}

#[test]
fn bad_globs_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            ["--include", "a["],
            "hashup: invalid --include pattern \"a[\": unclosed character class; missing ']'\n",
        ),
        (
            ["--include", "lib/"],
            "hashup: invalid --include pattern \"lib/\": matches files only; to take what is \
             below a directory, use DIR/**\n",
        ),
        (
            ["--exclude", ""],
            "hashup: invalid --exclude pattern \"\": empty pattern\n",
        ),
    ] {
        let run = dry_run(dir.path(), &[&["."][..], &args].concat(), &[], b"");
        assert_eq!((run.code, run.stderr.as_str()), (2, message));
        assert_eq!(run.stdout_str(), "");
    }
}

#[test]
fn sizes_take_decimal_and_binary_units_inclusively() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [999usize, 1000, 1024, 1500, 2048, 1_500_000];
    for size in sizes {
        std::fs::write(dir.path().join(format!("{size:07}")), vec![b'x'; size]).unwrap();
    }
    let check = |args: &[&str], expected: &[usize]| {
        let expected: Vec<String> = expected.iter().map(|s| format!("{s:07}")).collect();
        assert_eq!(selected(dir.path(), args), expected, "{args:?}");
    };
    check(&["--min-size", "1k"], &[1000, 1024, 1500, 2048, 1_500_000]);
    check(&["--max-size", "1KiB"], &[999, 1000, 1024]);
    check(&["--min-size", "1.5k", "--max-size", "2KiB"], &[1500, 2048]);
    check(&["--min-size", "1.5M"], &[1_500_000]);
    check(&["--min-size", "1.5MiB"], &[]);
    check(&["--max-size", "999B"], &[999]);
    check(&["--min-size", "1001", "--max-size", "1023"], &[]);

    let run = dry_run(
        dir.path(),
        &[".", "--min-size", "2k", "--max-size", "1k"],
        &[],
        b"",
    );
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "hashup: --min-size (2000 bytes) is larger than --max-size (1000 bytes)\n"
        )
    );
    let run = dry_run(dir.path(), &[".", "--min-size", "10X"], &[], b"");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "error: invalid value '10X' for '--min-size <SIZE>': \"10X\" is not a size: use \
             bytes or a unit, e.g. 500, 10M, 1.5G, 4KiB (k/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n)\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn newer_than_compares_mtimes_with_an_age_or_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let hours = |h: u64| Duration::from_secs(h * 3600);
    // 2020-01-01T00:00:00Z is 1577836800 (date -u -d 2020-01-01 +%s).
    let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    for (name, mtime) in [
        ("hour-old", now - hours(1)),
        ("two-days-old", now - hours(48)),
        ("ten-days-old", now - hours(240)),
        ("at-new-year", new_year),
        ("second-after-new-year", new_year + Duration::from_secs(1)),
    ] {
        let file = std::fs::File::create(dir.path().join(name)).unwrap();
        file.set_modified(mtime).unwrap();
    }
    let check = |when: &str, expected: &[&str]| {
        assert_eq!(
            selected(dir.path(), &["--newer-than", when]),
            expected,
            "{when}"
        );
    };
    let recent = [
        "hour-old",
        "second-after-new-year",
        "ten-days-old",
        "two-days-old",
    ];
    check("36h", &["hour-old"]);
    check("7d", &["hour-old", "two-days-old"]);
    check("1d12h", &["hour-old"]);
    check("2w", &["hour-old", "ten-days-old", "two-days-old"]);
    // Strictly newer: a file modified at the very second given is left out.
    check("2020-01-01T00:00:00Z", &recent);
    check("2020-01-01T01:00:00+01:00", &recent);
    check("2019-12-31T19:00:00-05:00", &recent);
    check("2020-01-01", &recent);
    check(
        "2019-12-31T23:59:59Z",
        &[
            "at-new-year",
            "hour-old",
            "second-after-new-year",
            "ten-days-old",
            "two-days-old",
        ],
    );

    let run = dry_run(dir.path(), &[".", "--newer-than", "7"], &[], b"");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "error: invalid value '7' for '--newer-than <WHEN>': \"7\" is neither an age \
             (e.g. 36h, 7d, 1d12h; units s m h d w) nor an RFC 3339 time\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn hidden_files_are_taken_unless_excluded() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            (".env", b"1"),
            ("a", b"2"),
            (".git/config", b"3"),
            ("d/.hidden", b"4"),
            ("d/x", b"5"),
        ],
    );
    assert_eq!(
        selected(dir.path(), &[]),
        [".env", ".git/config", "a", "d/.hidden", "d/x"]
    );
    assert_eq!(selected(dir.path(), &["--exclude-hidden"]), ["a", "d/x"]);
    // A path named on the command line is taken as given, hidden or not.
    let run = dry_run(
        dir.path(),
        &["d/.hidden", "d", "--exclude-hidden"],
        &[],
        b"",
    );
    assert_eq!(
        names_checked(&run, |name| dir.path().join("d").join(name)),
        [".hidden", "x"]
    );
}

#[test]
fn a_link_loop_is_reported_once_as_a_skip_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, &[("d/a", b"a"), ("z", b"z")]);
    std::os::unix::fs::symlink("..", src.join("d/up")).unwrap();

    let run = dry_run(dir.path(), &["src", "-L"], &[], b"");
    assert_eq!(
        run.stderr,
        "hashup: src/d/up: skipped: symbolic link loop back to src\n"
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout_str(),
        format!("{}  d/a\n{}  z\n", sha256_hex(b"a"), sha256_hex(b"z"))
    );

    // A real upload: the files go, the loop is a `skipped` record, and the exit status is 0.
    let store = dir.path().join("store");
    let manifest = dir.path().join("m.jsonl");
    let run = util::hashup(["upload"])
        .args([
            src.as_os_str(),
            "-L".as_ref(),
            "--embedded".as_ref(),
            store.as_os_str(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--progress".as_ref(),
            "none".as_ref(),
        ])
        .home(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (records, summary) = read_manifest(&manifest);
    let statuses: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [("d/a", "uploaded"), ("d/up", "skipped"), ("z", "uploaded")]
    );
    assert_eq!(
        (summary["uploaded"].as_u64(), summary["skipped"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn files_from_lines_names_each_path_as_listed() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("a b.sif", b"1"),
            ("dir/c.sif", b"2"),
            ("dir/sub/d.sif", b"3"),
            ("dir/sub/notes.txt", b"4"),
            ("e.sif", b"5"),
            ("not-listed.sif", b"6"),
        ],
    );
    std::fs::write(dir.path().join("list"), "./a b.sif\n\ndir/sub/\ne.sif\n").unwrap();
    let run = dry_run(dir.path(), &["--files-from", "list"], &[], b"");
    assert_eq!(
        names_checked(&run, |name| dir.path().join(name)),
        ["a b.sif", "dir/sub/d.sif", "dir/sub/notes.txt", "e.sif"]
    );
    // Arguments come first; globs see the listed names.
    let run = dry_run(
        dir.path(),
        &[
            "dir/c.sif",
            "--files-from",
            "list",
            "--include",
            "dir/**/*.sif",
        ],
        &[],
        b"",
    );
    assert_eq!(
        names_checked(&run, |name| {
            if name == "c.sif" {
                dir.path().join("dir/c.sif")
            } else {
                dir.path().join(name)
            }
        }),
        ["dir/sub/d.sif"]
    );
    // From standard input.
    let run = dry_run(
        dir.path(),
        &["--files-from", "-"],
        &[],
        b"e.sif\nnot-listed.sif\n",
    );
    assert_eq!(
        names_checked(&run, |name| dir.path().join(name)),
        ["e.sif", "not-listed.sif"]
    );
    // A listed path that is not there fails that file only.
    let run = dry_run(
        dir.path(),
        &["--files-from", "-"],
        &[],
        b"gone.sif\ne.sif\n",
    );
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "hashup: gone.sif: No such file or directory\n")
    );
    assert_eq!(run.stdout_str(), format!("{}  e.sif\n", sha256_hex(b"5")));
    // A list that cannot be read is a usage error.
    let run = dry_run(dir.path(), &["--files-from", "nope"], &[], b"");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "hashup: cannot read --files-from nope: No such file or directory\n"
        )
    );
}

#[test]
fn files_from_null_separated_reads_names_with_newlines_and_spaces() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[("odd\nname/x y.sif", b"odd"), ("plain.sif", b"plain")],
    );
    let list = b"./odd\nname/x y.sif\0plain.sif\0";
    // The path is read whole, and its name refused: a newline cannot be in an object name (nor
    // reach the terminal as one: the path is printed escaped).
    let run = dry_run(dir.path(), &["--files-from", "-", "-0"], &[], list);
    assert_eq!(
        (run.code, run.stderr.as_str(), run.stdout_str()),
        (
            2,
            "hashup: odd\\nname/x y.sif: object name \"odd\\nname/x y.sif\" contains control \
             characters\nhashup: 1 unusable object name(s); nothing was uploaded\n",
            ""
        )
    );
    // Named by the base name, the same file goes.
    let run = dry_run(
        dir.path(),
        &["--files-from", "-", "--null", "--flatten"],
        &[],
        list,
    );
    assert_eq!((run.code, run.stderr.as_str()), (0, ""),);
    assert_eq!(
        run.stdout_str(),
        format!(
            "{}  x y.sif\n{}  plain.sif\n",
            sha256_hex(b"odd"),
            sha256_hex(b"plain")
        )
    );
    // An empty entry is not a path.
    let run = dry_run(
        dir.path(),
        &["--files-from", "-", "-0"],
        &[],
        b"plain.sif\0\0",
    );
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (2, "hashup: --files-from -: entry 2 is empty\n")
    );
    // -0 only with a list.
    let run = dry_run(dir.path(), &[".", "-0"], &[], b"");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--files-from <FILE>"), "{}", run.stderr);
}

#[test]
fn files_from_refuses_non_utf8_absolute_and_parent_names_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    tree(&work, &[("ok.sif", b"ok")]);
    tree(dir.path(), &[("outside.sif", b"out")]);
    std::fs::write(work.join(OsStr::from_bytes(b"bad\xff.sif")), b"bad").unwrap();
    let absolute = dir.path().join("outside.sif");

    let mut list = b"ok.sif\nbad\xff.sif\n../outside.sif\n".to_vec();
    list.extend_from_slice(absolute.as_os_str().as_bytes());
    list.push(b'\n');
    let run = dry_run(&work, &["--files-from", "-"], &[], &list);
    let a = absolute.display();
    assert_eq!((run.code, run.stdout_str()), (2, ""), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "hashup: bad\u{fffd}.sif: name \"bad\\xFF.sif\" is not UTF-8\n\
             hashup: ../outside.sif: object name \"../outside.sif\" has an empty, `.` or `..` \
             segment\n\
             hashup: {a}: an absolute path cannot be an object name (list relative paths, or use \
             --flatten)\n\
             hashup: 3 unusable object name(s); nothing was uploaded\n"
        )
    );

    // --flatten names a file outside by its base name; a non-UTF-8 name stays refused.
    let run = dry_run(
        &work,
        &["--files-from", "-", "--flatten"],
        &[],
        b"ok.sif\nbad\xff.sif\n",
    );
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "hashup: bad\u{fffd}.sif: name \"bad\\xFF.sif\" is not UTF-8\n\
             hashup: 1 unusable object name(s); nothing was uploaded\n"
        )
    );
    let list = format!("ok.sif\n{a}\n");
    let run = dry_run(
        &work,
        &["--files-from", "-", "--flatten"],
        &[],
        list.as_bytes(),
    );
    assert_eq!(
        run.stdout_str(),
        format!(
            "{}  ok.sif\n{}  outside.sif\n",
            sha256_hex(b"ok"),
            sha256_hex(b"out")
        )
    );
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
}

/// The names in the shard `index` of `count`, computed from the contract: the first 8 bytes of
/// the SHA-256 of the name, big-endian, mod `count`.
fn contract_shard(name: &str, count: u64) -> u64 {
    let hex = sha256_hex(name.as_bytes());
    u64::from_str_radix(&hex[..16], 16).unwrap() % count
}

#[test]
fn four_shards_cover_every_file_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("d{}/f{i:02}.sif", i % 3), vec![i as u8]))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    tree(dir.path(), &borrowed);
    let mut all = selected(dir.path(), &[]);
    all.sort();
    assert_eq!(all.len(), 40);

    let mut union = Vec::new();
    for k in 0..4 {
        let shard = selected(dir.path(), &["--shard", &format!("{k}/4")]);
        assert!(!shard.is_empty(), "shard {k} of 4 is empty");
        for name in &shard {
            assert_eq!(contract_shard(name, 4), k, "{name}");
        }
        // The same shard, its index from each variable a scheduler sets.
        for var in util::SHARD_VARS {
            let run = dry_run(
                dir.path(),
                &[".", "--shard", "auto/4"],
                &[(var, &k.to_string())],
                b"",
            );
            assert_eq!(
                names_checked(&run, |name| dir.path().join(name)),
                shard,
                "{var}={k}"
            );
        }
        union.extend(shard);
    }
    union.sort();
    assert_eq!(union, all, "the shards overlap or miss a file");

    // JOB_COMPLETION_INDEX wins over SLURM_ARRAY_TASK_ID, which wins over HASHUP_SHARD_INDEX.
    let by_env = |env: &[(&str, &str)]| {
        let run = dry_run(dir.path(), &[".", "--shard", "auto/4"], env, b"");
        names_checked(&run, |name| dir.path().join(name))
    };
    assert_eq!(
        by_env(&[("JOB_COMPLETION_INDEX", "1"), ("SLURM_ARRAY_TASK_ID", "2")]),
        selected(dir.path(), &["--shard", "1/4"])
    );
    assert_eq!(
        by_env(&[("SLURM_ARRAY_TASK_ID", "2"), ("HASHUP_SHARD_INDEX", "3")]),
        selected(dir.path(), &["--shard", "2/4"])
    );
}

#[test]
fn shards_split_by_the_final_object_name_after_every_name_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i:02}"), vec![i])).collect();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    tree(dir.path(), &borrowed);
    for k in 0..2 {
        let run = dry_run(
            dir.path(),
            &[".", "--prefix", "lab", "--shard", &format!("{k}/2")],
            &[],
            b"",
        );
        let names = names_checked(&run, |name| {
            dir.path().join(name.strip_prefix("lab/").unwrap())
        });
        let expected: Vec<String> = files
            .iter()
            .map(|(n, _)| format!("lab/{n}"))
            .filter(|name| contract_shard(name, 2) == k)
            .collect();
        assert_eq!(names, expected);
    }

    // A duplicate name stops every shard, whichever shard either file would fall in.
    tree(dir.path(), &[("x/f00", b"again")]);
    for k in 0..2 {
        let run = dry_run(
            dir.path(),
            &[".", "--flatten", "--shard", &format!("{k}/2")],
            &[],
            b"",
        );
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (
                2,
                "hashup: ./x/f00: object name \"f00\" is also the name of ./f00\n\
                 hashup: 1 unusable object name(s); nothing was uploaded\n"
            )
        );
    }
}

#[test]
fn bad_shards_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &[("a", b"a")]);
    for (value, message) in [
        (
            "4/4",
            "the shard index 4 is not below the shard count 4 (shards count from 0)",
        ),
        ("1/0", "the shard count \"0\" is not a whole number above 0"),
        ("x/4", "the shard index \"x\" is not auto or a number"),
        ("3", "expected K/N or auto/N, e.g. 0/4"),
    ] {
        let run = dry_run(dir.path(), &[".", "--shard", value], &[], b"");
        assert_eq!(run.code, 2, "{value}");
        let expected = format!("error: invalid value '{value}' for '--shard <K/N>': {message}\n");
        assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
    }
    for (env, message) in [
        (
            &[][..],
            "hashup: --shard: auto/4 needs the shard index in JOB_COMPLETION_INDEX, \
             SLURM_ARRAY_TASK_ID, HASHUP_SHARD_INDEX\n",
        ),
        (
            &[("SLURM_ARRAY_TASK_ID", "4")][..],
            "hashup: --shard: SLURM_ARRAY_TASK_ID=4 is not below the shard count 4 \
             (run the array as --array=0-3)\n",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "9")][..],
            "hashup: --shard: JOB_COMPLETION_INDEX=9 is not below the shard count 4\n",
        ),
        (
            &[("HASHUP_SHARD_INDEX", "-1")][..],
            "hashup: --shard: HASHUP_SHARD_INDEX=\"-1\" is not a shard index\n",
        ),
    ] {
        let run = dry_run(dir.path(), &[".", "--shard", "auto/4"], env, b"");
        assert_eq!(
            (run.code, run.stderr.as_str(), run.stdout_str()),
            (2, message, ""),
            "{env:?}"
        );
    }
}

#[test]
fn odd_names_from_a_list_upload_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["sp ace/a b+c%20.sif", "caf\u{e9} #1?.sif"];
    tree(dir.path(), &[(names[0], b"one"), (names[1], b"two")]);
    let list = dir.path().join("list0");
    std::fs::write(&list, format!("./{}\0{}\0", names[0], names[1])).unwrap();
    let store = dir.path().join("store");
    let manifest = dir.path().join("m.jsonl");
    let run = util::hashup(["upload"])
        .args(["--files-from".as_ref(), list.as_os_str(), "-0".as_ref()])
        .args(["--embedded".as_ref(), store.as_os_str()])
        .args(["--manifest".as_ref(), manifest.as_os_str()])
        .args(["--progress", "none"])
        .current_dir(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (records, _) = read_manifest(&manifest);
    let uploaded: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(uploaded, [(names[1], "uploaded"), (names[0], "uploaded")]);
    // PROMINENCE's layout: a plain name is the user's, a nested one a group path.
    let stored = |key: &str| std::fs::read(store.join("hashup/uploads").join(key)).unwrap();
    assert_eq!(stored(&format!("hashup/{}", names[1])), b"two");
    assert_eq!(stored(names[0]), b"one");
}
