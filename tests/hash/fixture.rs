//! Temp-dir trees to hash: a builder for files, directories, links, FIFOs and
//! sockets, the sample tree every output test shares, and deterministic content.

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A path from raw bytes, so names can be non-UTF-8.
pub fn p(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A directory tree in a fresh temp dir, removed on drop.
///
/// The root is made world-traversable so an unprivileged user can walk it (see
/// `unreadable.rs`); dropping the tree first gives every directory back its owner
/// permissions, so removal works even after a test made some unreadable.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("hashup-test-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Tree { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    /// A file with `content`, creating parent directories.
    pub fn file(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> &Tree {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, content).unwrap();
        self
    }

    pub fn dir(&self, rel: impl AsRef<Path>) -> &Tree {
        fs::create_dir_all(self.path(rel)).unwrap();
        self
    }

    /// A symbolic link at `rel` whose target is `target`, verbatim.
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> &Tree {
        std::os::unix::fs::symlink(target, self.path(rel)).unwrap();
        self
    }

    pub fn fifo(&self, rel: impl AsRef<Path>) -> &Tree {
        let path = CString::new(self.path(rel).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let made = unsafe { libc::mkfifo(path.as_ptr(), 0o644) };
        assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());
        self
    }

    /// A Unix socket file (the listener is closed; the file stays).
    pub fn socket(&self, rel: impl AsRef<Path>) -> &Tree {
        std::os::unix::net::UnixListener::bind(self.path(rel)).unwrap();
        self
    }

    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) -> &Tree {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
        self
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        fn restore(dir: &Path) {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    restore(&entry.path());
                }
            }
        }
        restore(self.root());
    }
}

/// The sample tree's files, in the order `hashup hash` must walk them: depth first,
/// each directory's entries sorted by byte-wise file name, files and directories
/// interleaved. Sorting the paths would give another order (`a b` < `a/x`,
/// `nested/deep-file` < `nested/deep/...`), so this checks the walk, not a sort.
///
/// Sizes sit on the edges that matter: empty, one byte, around a page, one byte over
/// the 256 KiB read buffer, exactly the 4 MiB mmap threshold, and above it.
pub const SAMPLE: &[(&[u8], usize)] = &[
    (b"B", 1),
    (b"a/x", 3),
    (b"a b", 5),
    (b"a.txt", 4096),
    (b"back\\slash", 4097),
    (b"caf\xe9", 4095),
    (b"car\rret", 100),
    (b"empty", 0),
    (b"large", (5 << 20) + 3),
    (b"mid", (256 << 10) + 1),
    (b"nested/deep/deeper/leaf", 10),
    (b"nested/deep-file", 11),
    (b"new\nline", 2),
    (b"one", 1),
    (b"threshold", 4 << 20),
    (b"with space", 12),
];

/// The names of [`SAMPLE`], in walk order.
pub fn sample_names() -> Vec<&'static Path> {
    SAMPLE.iter().map(|(name, _)| p(name)).collect()
}

/// The sample tree: [`SAMPLE`]'s files with distinct pseudo-random content, plus an
/// empty directory (which prints nothing).
pub fn sample_tree() -> Tree {
    let tree = Tree::new();
    for (seed, (name, size)) in (1u64..).zip(SAMPLE) {
        tree.file(p(name), Rng::new(seed).bytes(*size));
    }
    tree.dir("empty dir");
    tree
}

/// xorshift64*: deterministic, dependency-free test data and choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for tests (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
