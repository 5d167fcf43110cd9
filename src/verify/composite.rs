//! A multipart object's composite checksum computed from the local file, where no manifest
//! recorded it: S3 keeps `base64(SHA-256 of the parts' SHA-256s)-N`, not the file's SHA-256.
//!
//! One part needs no reading: the composite is the SHA-256 of the file's SHA-256. More parts
//! are read in hashup's default part size ([`crate::multipart::part_size`]), when that cuts the
//! file into as many parts as the store's composite counts; the whole file is hashed in the
//! same pass, and the composite counts only if that SHA-256 is still the expected one.

use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use crate::multipart::{Plan, part_size};

/// The number of parts a composite checksum (`base64-N`) counts.
pub fn parts_of(checksum: &str) -> Option<u32> {
    let (_, n) = checksum.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The composite of a one-part upload of content whose SHA-256 is `sha256`.
pub fn one_part(sha256: &[u8; 32]) -> String {
    format!("{}-1", BASE64.encode(Sha256::digest(sha256)))
}

/// The composite of `path` cut into hashup's default parts, if that makes `parts` parts and
/// the file (of `size` bytes) still has SHA-256 `sha256`; `None` otherwise (or when it cannot
/// be read).
pub fn of_file(path: &Path, size: u64, sha256: &[u8; 32], parts: u32) -> Option<String> {
    let plan = Plan {
        size,
        part_size: part_size(size, None)?,
    };
    if plan.parts() != parts || parts < 2 {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut whole = Sha256::new();
    let mut of_parts = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for number in 1..=parts {
        let (_, mut left) = plan.range(number);
        let mut part = Sha256::new();
        while left > 0 {
            let want = left.min(buffer.len() as u64) as usize;
            let got = file.read(&mut buffer[..want]).ok()?;
            if got == 0 {
                return None; // shorter than it was
            }
            part.update(&buffer[..got]);
            whole.update(&buffer[..got]);
            left -= got as u64;
        }
        of_parts.update(part.finalize());
    }
    // Longer than it was, or other bytes: not the content expected.
    if file.read(&mut buffer[..1]).ok()? != 0 || whole.finalize()[..] != sha256[..] {
        return None;
    }
    Some(format!("{}-{parts}", BASE64.encode(of_parts.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn a_one_part_composite_is_the_sha256_of_the_sha256() {
        // S3's composite of one part whose checksum is SHA-256("hello\n").
        let sha: [u8; 32] = Sha256::digest(b"hello\n").into();
        let want = format!("{}-1", BASE64.encode(Sha256::digest(sha)));
        assert_eq!(one_part(&sha), want);
        assert_eq!(parts_of(&want), Some(1));
        assert_eq!(parts_of("abc=-12"), Some(12));
        assert_eq!(parts_of("abc="), None);
        assert_eq!(parts_of("abc-"), None);
    }

    #[test]
    fn many_parts_are_read_in_the_default_part_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // 40 MiB + 3: parts of 16, 16 and 8 MiB + 3.
        let data: Vec<u8> = (0..40 * MIB + 3).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let mut of_parts = Sha256::new();
        for chunk in data.chunks(16 * MIB) {
            of_parts.update(Sha256::digest(chunk));
        }
        let want = format!("{}-3", BASE64.encode(of_parts.finalize()));
        let size = data.len() as u64;
        assert_eq!(of_file(&path, size, &sha, 3), Some(want));
        // Another part count: not hashup's default cut, nothing to compare.
        assert_eq!(of_file(&path, size, &sha, 5), None);
        // The file no longer has the expected content.
        assert_eq!(of_file(&path, size, &[0; 32], 3), None);
        std::fs::write(&path, &data[..data.len() - 1]).unwrap();
        assert_eq!(of_file(&path, size, &sha, 3), None);
    }
}
