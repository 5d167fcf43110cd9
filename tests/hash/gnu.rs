//! Comparing `hashup hash` with GNU `sha256sum`, and running both as an unprivileged user.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::OnceLock;

use crate::util::{self, Run, TestCommand};

/// `sha256sum ARGS`.
pub fn sha256sum<I, S>(args: I) -> TestCommand
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    TestCommand::new("sha256sum", args)
}

/// GNU's stderr as hashup would word it: `sha256sum: ` becomes `hashup: `.
pub fn worded_as_hashup(mut run: Run) -> Run {
    run.stderr = run
        .stderr
        .split_inclusive('\n')
        .map(|line| match line.strip_prefix("sha256sum: ") {
            Some(rest) => format!("hashup: {rest}"),
            None => line.to_string(),
        })
        .collect();
    run
}

/// Runs `hashup hash ARGS` and `sha256sum ARGS` in `dir` on the same input and
/// asserts the same stdout bytes, the same stderr (modulo the program name) and the
/// same exit code. Returns hashup's run.
pub fn assert_same_as_gnu<S: AsRef<OsStr>>(dir: &Path, args: &[S], stdin: &[u8]) -> Run {
    assert_same_as_gnu_as(None, dir, args, stdin)
}

/// [`assert_same_as_gnu`], both run as `user` when given.
pub fn assert_same_as_gnu_as<S: AsRef<OsStr>>(
    user: Option<&Unprivileged>,
    dir: &Path,
    args: &[S],
    stdin: &[u8],
) -> Run {
    let gnu = worded_as_hashup(
        sha256sum(args)
            .via(Unprivileged::wrapper(user))
            .current_dir(dir)
            .stdin(stdin)
            .run(),
    );
    let ours = util::hashup(["hash"])
        .args(args)
        .via(Unprivileged::wrapper(user))
        .current_dir(dir)
        .stdin(stdin)
        .run();
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    assert_eq!(ours, gnu, "hashup hash vs sha256sum with {shown:?}");
    ours
}

/// A way to run commands as an unprivileged user (uid/gid 65534) when the tests run
/// as root, for whom permission bits do not stop reading.
pub struct Unprivileged(Vec<&'static str>);

impl Unprivileged {
    /// What runs a command as `user` ([`TestCommand::via`]); nothing, to run it directly.
    pub fn wrapper(user: Option<&Unprivileged>) -> &[&'static str] {
        user.map_or(&[], |user| &user.0)
    }

    /// `None` when not root (then just run directly) or when no way to drop
    /// privileges works here; `Err` carries the reason to print.
    pub fn get() -> Result<Option<&'static Unprivileged>, &'static str> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        static FOUND: OnceLock<Option<Unprivileged>> = OnceLock::new();
        let found = FOUND.get_or_init(|| {
            let candidates = [
                vec![
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--",
                ],
                vec!["runuser", "-u", "nobody", "--"],
            ];
            candidates.into_iter().map(Unprivileged).find(|user| {
                // Must run the test binary and no longer be root.
                TestCommand::new("id", ["-u"])
                    .via(&user.0)
                    .command()
                    .output()
                    .is_ok_and(|out| out.status.success() && out.stdout != b"0\n")
                    && util::hashup(["--version"])
                        .via(&user.0)
                        .command()
                        .output()
                        .is_ok_and(|out| out.status.success())
            })
        });
        match found {
            Some(user) => Ok(Some(user)),
            None => Err("running as root and neither setpriv nor runuser can drop privileges"),
        }
    }
}
