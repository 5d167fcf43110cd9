//! Running `hashup` and GNU `sha256sum` with a deadline, and comparing the two.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every run must finish within this; a FIFO opened for reading would block forever,
/// and that must fail the test rather than hang it.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const HASHUP: &str = env!("CARGO_BIN_EXE_hashup");

/// What a process printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub code: i32,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("code", &self.code)
            .field("stdout", &Lines(&self.stdout))
            .field("stderr", &Lines(self.stderr.as_bytes()))
            .finish()
    }
}

/// Bytes shown one escaped line at a time, so a failed comparison reads like a diff.
struct Lines<'a>(&'a [u8]);

impl fmt::Debug for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .split_inclusive(|&b| b == b'\n')
                    .map(|line| line.escape_ascii().to_string()),
            )
            .finish()
    }
}

impl Run {
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("UTF-8 stdout")
    }

    /// GNU's stderr as hashup would word it: `sha256sum: ` becomes `hashup: `.
    pub fn worded_as_hashup(mut self) -> Run {
        self.stderr = self
            .stderr
            .split_inclusive('\n')
            .map(|line| match line.strip_prefix("sha256sum: ") {
                Some(rest) => format!("hashup: {rest}"),
                None => line.to_string(),
            })
            .collect();
        self
    }

    /// Asserts exit code 0 and no stderr; returns stdout.
    pub fn success(&self) -> &[u8] {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "{self:?}");
        &self.stdout
    }
}

/// A command to run: `hashup` or `sha256sum`, optionally in a directory, with
/// standard input, or as an unprivileged user.
pub struct Exec {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    prefix: Vec<OsString>,
}

impl Exec {
    pub fn new<I, S>(program: impl AsRef<OsStr>, args: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Exec {
            program: program.as_ref().to_owned(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            cwd: None,
            stdin: None,
            prefix: Vec::new(),
        }
    }

    pub fn hashup<I, S>(args: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Exec::new(HASHUP, args)
    }

    pub fn sha256sum<I, S>(args: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Exec::new("sha256sum", args)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Exec {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Exec {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Exec {
        self.stdin = Some(input.into());
        self
    }

    /// Runs under `user`'s identity, if given.
    pub fn with_user(mut self, user: Option<&Unprivileged>) -> Exec {
        self.prefix = user
            .map(|user| user.0.iter().map(OsString::from).collect())
            .unwrap_or_default();
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&self.program);
                cmd
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs to completion (killed and failed after [`DEADLINE`]); a death by signal
    /// fails the test.
    pub fn run(self) -> Run {
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let feeder = self.stdin.map(|input| {
            let mut pipe = child.stdin.take().unwrap();
            // A program may exit without reading everything; that is its business.
            std::thread::spawn(move || drop(pipe.write_all(&input)))
        });
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let status = wait_with_deadline(&mut child, &format!("{cmd:?}"));
        if let Some(feeder) = feeder {
            feeder.join().unwrap();
        }
        let run = Run {
            stdout: stdout.join().unwrap(),
            stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
            code: status.code().unwrap_or(-1),
        };
        assert_eq!(
            status.signal(),
            None,
            "{cmd:?} was killed by a signal: {run:?}"
        );
        run
    }
}

pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        pipe.read_to_end(&mut out).unwrap();
        out
    })
}

/// Waits for `child`, killing it and failing the test after [`DEADLINE`].
pub fn wait_with_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?} (blocked on a FIFO?)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
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
    let gnu = Exec::sha256sum(args)
        .with_user(user)
        .cwd(dir)
        .stdin(stdin)
        .run()
        .worded_as_hashup();
    let ours = Exec::hashup(["hash"])
        .args(args)
        .with_user(user)
        .cwd(dir)
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
                Exec::new("id", ["-u"])
                    .with_user(Some(user))
                    .command()
                    .output()
                    .is_ok_and(|out| out.status.success() && out.stdout != b"0\n")
                    && Exec::hashup(["--version"])
                        .with_user(Some(user))
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
