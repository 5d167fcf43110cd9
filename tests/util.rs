//! What every test module uses to run a program: one command builder, [`TestCommand`], and one
//! result, [`Run`]; plus the trees of generated files several modules write.
//!
//! ```ignore
//! let run = util::hashup(["upload", "--dry-run", "src"]).home(dir).run();
//! assert_eq!((run.code, run.stderr.as_str()), (0, ""));
//! ```
//!
//! A command starts without the variables through which the environment of whoever runs the
//! tests could reach hashup (see [`TestCommand::new`]); a test adds what it wants with
//! [`TestCommand::env`].

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Every [`TestCommand::run`] must finish within this: a run that blocks (on a FIFO opened for
/// reading, a server that never answers) must fail the test rather than hang it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Prefixes of the variables that say where and as whom hashup uploads (the PROMINENCE API,
/// direct S3): removed from every command.
const CLEARED_PREFIXES: [&str; 2] = ["PROMINENCE_", "AWS_"];

/// The variables that say which shard of a job array this is: removed from every command.
pub const SHARD_VARS: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "HASHUP_SHARD_INDEX",
];

/// `hashup ARGS`, the binary under test.
pub fn hashup<I, S>(args: I) -> TestCommand
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    TestCommand::new(env!("CARGO_BIN_EXE_hashup"), args)
}

/// A command to run, built up and then either [run](TestCommand::run) to completion or turned
/// into a [`Command`] for a test that spawns, signals or kills it.
pub struct TestCommand {
    wrapper: Vec<OsString>,
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
}

impl TestCommand {
    /// `program ARGS`, without any `PROMINENCE_*` or `AWS_*` variable, nor the shard index
    /// variables, of the tests' environment; with `AWS_EC2_METADATA_DISABLED=true`.
    pub fn new<I, S>(program: impl AsRef<OsStr>, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let inherited = std::env::vars_os().map(|(name, _)| name).filter(|name| {
            let name = name.to_string_lossy();
            CLEARED_PREFIXES.iter().any(|p| name.starts_with(p))
        });
        let mut env: Vec<(OsString, Option<OsString>)> = inherited
            .chain(SHARD_VARS.map(OsString::from))
            .map(|name| (name, None))
            .collect();
        // Direct S3 mode without credentials would ask the EC2 metadata service at
        // 169.254.169.254: no test may send a packet there. A test of that source points
        // AWS_EC2_METADATA_SERVICE_ENDPOINT at its own server and sets this to false.
        env.push(("AWS_EC2_METADATA_DISABLED".into(), Some("true".into())));
        TestCommand {
            wrapper: Vec::new(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env,
            stdin: None,
        }
        .args(args)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> TestCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> TestCommand {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Sets `name`; the last setting or removal of a name wins.
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestCommand {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// [`TestCommand::env`] for each pair.
    pub fn envs<I, K, V>(self, vars: I) -> TestCommand
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        vars.into_iter()
            .fold(self, |cmd, (name, value)| cmd.env(name, value))
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> TestCommand {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    /// HOME in `dir`, and no XDG_CACHE_HOME: no real `~/.prominence/token` is read and the hash
    /// cache is written below `dir`.
    pub fn home(self, dir: impl AsRef<Path>) -> TestCommand {
        self.env("HOME", dir.as_ref()).env_remove("XDG_CACHE_HOME")
    }

    /// What [`TestCommand::run`] writes to standard input (otherwise it reads `/dev/null`).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> TestCommand {
        self.stdin = Some(input.into());
        self
    }

    /// Runs the program through `wrapper`, a command that ends by running its arguments
    /// (`setpriv --reuid=65534 --`); empty runs it directly.
    pub fn via<I, S>(mut self, wrapper: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// The command as built so far; standard input, output and error are the caller's to set
    /// (the input given to [`TestCommand::stdin`] is not written).
    pub fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
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
        for (name, value) in &self.env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        cmd
    }

    /// Runs to completion (killed and failed after [`DEADLINE`]); a death by signal fails the
    /// test.
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
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
        };
        assert_eq!(
            status.signal(),
            None,
            "{cmd:?} was killed by a signal: {run:?}"
        );
        run
    }
}

/// What a process printed and how it ended: standard output as bytes (file names need not be
/// UTF-8), standard error as text (anything not UTF-8 shown as U+FFFD).
#[derive(Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// Standard output, which must be UTF-8.
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("UTF-8 stdout")
    }

    /// Asserts exit code 0 and no stderr; returns stdout.
    pub fn success(&self) -> &[u8] {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "{self:?}");
        &self.stdout
    }
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

/// Reads `pipe` to its end on a thread of its own.
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
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes `files` (relative path, content) below `root`.
pub fn tree(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

/// [`tree`] for generated files (owned names and contents).
pub fn tree_of(root: &Path, files: &[(String, Vec<u8>)]) {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    tree(root, &refs);
}

/// A deterministic, incompressible-looking byte pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sets both times of every file below `root` an hour back, and waits past the hash cache's
/// racy margin, so that an upload's hashes are cached (a file's ctime cannot be set: it must
/// simply be old enough).
pub fn settle(root: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let file = std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap();
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(old)
                    .set_modified(old),
            )
            .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
}
