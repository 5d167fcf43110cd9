//! Another client deletes, truncates and rewrites (same size) objects hashup uploaded, through
//! `hashup serve` and in an `--embedded` store, whose listings give each object's SHA-256:
//! verify names all three, `upload --check-remote` sends exactly those three again (the other
//! objects' files in the store untouched), and verify then passes on the store's SHA-256.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::serve::fixture::{Backend, Serve};
use crate::util::{self, Run, TestCommand, settle, tree};

/// How the tests reach one destination: its flags and token, and where its objects lie.
struct Destination {
    args: Vec<String>,
    token: Option<String>,
    /// The store's file for an object name.
    object: Box<dyn Fn(&str) -> PathBuf>,
}

impl Destination {
    fn command(&self, subcommand: &str, src: &Path, home: &Path) -> TestCommand {
        let mut command = util::hashup([subcommand.as_ref(), src.as_os_str()])
            .args(&self.args)
            .home(home);
        if let Some(token) = &self.token {
            command = command.env("PROMINENCE_TOKEN", token);
        }
        command
    }
}

/// The store file's identity and time: changes when an upload replaces it.
fn stamp(path: &Path) -> (u64, i64, i64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.ino(), meta.mtime(), meta.mtime_nsec())
}

fn heals_exactly_what_another_client_broke(destination: &Destination) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(
        &src,
        &[
            ("a.sif", b"alpha\n"),
            ("b.sif", b"bravo\n"),
            ("c.sif", b"charl\n"),
            ("g1/d.sif", b"delta\n"),
        ],
    );
    settle(&src);
    let manifest = dir.path().join("nightly.jsonl");
    let nightly = |extra: &[&str]| -> Run {
        destination
            .command("upload", &src, dir.path())
            .args(["--progress", "none", "--manifest"])
            .arg(&manifest)
            .args(extra)
            .run()
    };
    let up = nightly(&[]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let d_before = stamp(&(destination.object)("g1/d.sif"));

    // Another client's run over its own tree: b shorter, c other bytes of the same size;
    // its --delete removes a, which it does not have.
    let other = dir.path().join("other");
    tree(&other, &[("b.sif", b"bra"), ("c.sif", b"CHARL\n")]);
    let other_home = dir.path().join("other-home");
    std::fs::create_dir_all(&other_home).unwrap();
    let r = destination
        .command("upload", &other, &other_home)
        .args(["--progress", "none", "--delete"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!(destination.object)("a.sif").exists());

    let r = destination.command("verify", &src, dir.path()).run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout_str().lines().collect();
    assert_eq!(lines[0], "a.sif: MISSING", "{}", r.stdout_str());
    assert_eq!(
        lines[1],
        "b.sif: DIFFERS (size 6 ≠ 3)",
        "{}",
        r.stdout_str()
    );
    assert!(
        lines[2].starts_with("c.sif: DIFFERS (checksum "),
        "{}",
        r.stdout_str()
    );
    assert_eq!(lines[3], "g1/d.sif: OK");
    assert_eq!(lines.len(), 4);

    let r = nightly(&["--check-remote"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (records, summary) = crate::upload::read_manifest(&manifest);
    let resent: Vec<(&str, &str)> = records
        .iter()
        .filter_map(|r| Some((r["name"].as_str()?, r["resent"].as_str()?)))
        .collect();
    assert_eq!(
        resent,
        [
            ("a.sif", "missing from the destination"),
            ("b.sif", "the destination holds 3 bytes, not 6"),
            (
                "c.sif",
                "the destination holds other bytes (sha256 0c9b3294..)"
            ),
        ]
    );
    assert_eq!(summary["uploaded"], 3, "{summary}");
    assert_eq!(summary["confirmed"], 1, "{summary}");
    assert_eq!(
        stamp(&(destination.object)("g1/d.sif")),
        d_before,
        "d was not sent again"
    );
    for (name, data) in [
        ("a.sif", "alpha\n"),
        ("b.sif", "bravo\n"),
        ("c.sif", "charl\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string((destination.object)(name)).unwrap(),
            data
        );
    }

    let r = destination.command("verify", &src, dir.path()).run();
    assert_eq!(r.code, 0, "{}{}", r.stdout_str(), r.stderr);
    assert_eq!(
        r.stdout_str(),
        "a.sif: OK\nb.sif: OK\nc.sif: OK\ng1/d.sif: OK\n"
    );

    // A new machine: no manifest, the listing's SHA-256 says all is stored.
    let fresh = dir.path().join("fresh.jsonl");
    let r = destination
        .command("upload", &src, dir.path())
        .args(["--progress", "none", "--skip-existing", "--manifest"])
        .arg(&fresh)
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.ends_with(
            "hashup: nothing to do: all 4 files are stored (the destination's listing agrees)\n"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn through_serve_check_remote_heals_exactly_what_another_client_broke() {
    let serve = Serve::start(Backend::Store);
    let store = serve.store.clone();
    heals_exactly_what_another_client_broke(&Destination {
        args: vec!["--url".into(), serve.api.clone()],
        token: Some(serve.alice.clone()),
        object: Box::new(move |name| {
            let key = match name.contains('/') {
                true => format!("uploads/{name}"),
                false => format!("uploads/alice/{name}"),
            };
            store.join("hashup").join(key)
        }),
    });
}

#[test]
fn embedded_check_remote_heals_exactly_what_another_client_broke() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let root = store.clone();
    heals_exactly_what_another_client_broke(&Destination {
        args: vec!["--embedded".into(), store.to_str().unwrap().into()],
        token: None,
        object: Box::new(move |name| {
            let key = match name.contains('/') {
                true => format!("uploads/{name}"),
                false => format!("uploads/hashup/{name}"),
            };
            root.join("hashup").join(key)
        }),
    });
}
