//! Object names and keys: the one set of rules every stage checks them against.
//!
//! A name (`image.sif`, `group/sub/image.sif`) becomes part of an object key
//! (`uploads/<user>/image.sif`, `uploads/group/sub/image.sif`), and a key becomes a path in the
//! embedded store. So that a bad name is refused up front with its reason, instead of failing
//! later on storage with an error a client would retry, the API, the store and the client all
//! ask [`check_object_name`] (or [`check_key`] for a whole key) and nothing else.
//!
//! The rules, for a name or a key:
//!
//! - not empty, and at most [`MAX_KEY_BYTES`] bytes of UTF-8 (S3's limit for a whole key);
//! - every `/`-separated segment is non-empty (no leading, trailing or doubled `/`), is not `.`
//!   or `..`, and is at most [`MAX_SEGMENT_BYTES`] bytes (a file name on common file systems);
//! - no backslash (a path separator somewhere) and no control character (`char::is_control`:
//!   NUL, C0, DEL and C1).
//!
//! A name that passes can still make too long a key once `uploads/<user>/` is put in front of
//! it: whoever builds the key checks it again with [`check_key`].

/// The longest key S3 stores, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest `/`-separated segment, in bytes: one file name on ext4, XFS, APFS, NTFS.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Checks an object name as a user gives it (`image.sif`, `group/image.sif`).
///
/// `Err` carries the reason as a sentence for people, e.g. `The object name contains a
/// backslash`. See the module docs for the rules.
pub fn check_object_name(name: &str) -> Result<(), String> {
    match object_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(reason.to_string()),
    }
}

/// Checks a whole object key (`uploads/alice/image.sif`); the rules are those of a name.
pub fn check_key(key: &str) -> Result<(), String> {
    check_object_name(key)
}

/// What is wrong with `name`, if anything, as a fixed sentence: [`check_object_name`] for
/// callers that need a `&'static str` (an HTTP answer built from constants).
pub fn object_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("The object name is empty");
    }
    if name.len() > MAX_KEY_BYTES {
        return Some("The object key would be longer than 1024 bytes");
    }
    if name.contains('\\') {
        return Some("The object name contains a backslash");
    }
    if name.chars().any(char::is_control) {
        return Some("The object name contains a control character");
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Some("The object name has an empty segment (a / at the start or end, or //)");
        }
        if segment == "." || segment == ".." {
            return Some("The object name has a . or .. segment");
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Some("A segment of the object name is longer than 255 bytes");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_pass() {
        let longest = format!("{}/{}", "s".repeat(255), "n".repeat(255));
        for good in [
            "a",
            "image.sif",
            "g1/a.sif",
            "lab/sub/x",
            "a b/c%2e%2e",
            "ünï/cödé",
            "a..b/..c/.d",
            longest.as_str(),
        ] {
            assert_eq!(check_object_name(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_key("k/".repeat(511).trim_end_matches('/')), Ok(()));
    }

    #[test]
    fn bad_names_say_why() {
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "empty segment"),
            ("a/", "empty segment"),
            ("a//b", "empty segment"),
            ("..", ". or .."),
            ("a/./b", ". or .."),
            ("a\\b", "backslash"),
            ("a\0b", "control"),
            ("a\nb", "control"),
            ("a\u{7f}b", "control"),
            ("a\u{85}b", "control"),
        ];
        for (name, why) in cases {
            let err = check_object_name(name).unwrap_err();
            assert!(err.contains(why), "{name:?}: {err}");
        }
        let long_segment = "a".repeat(256);
        assert!(
            check_object_name(&long_segment)
                .unwrap_err()
                .contains("255")
        );
        let long_key = "ab/".repeat(342);
        assert!(
            check_key(long_key.trim_end_matches('/'))
                .unwrap_err()
                .contains("1024")
        );
    }

    /// Names from every corner: any string, the characters the rules are about, and long
    /// segments and keys around the limits.
    fn names() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a./\\\\\x00\x1f\x7f\u{85}é ]{0,40}",
            prop::collection::vec("[a-zé]{1,300}", 1..6).prop_map(|v| v.join("/")),
            "[ab/]{1000,1100}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn accepted_names_obey_every_rule(name in names()) {
            if check_object_name(&name).is_ok() {
                prop_assert!(!name.is_empty() && name.len() <= MAX_KEY_BYTES);
                prop_assert!(!name.contains('\\'));
                prop_assert!(!name.chars().any(char::is_control));
                for segment in name.split('/') {
                    prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
                    prop_assert!(segment.len() <= MAX_SEGMENT_BYTES);
                }
            }
            prop_assert_eq!(check_key(&name).is_ok(), check_object_name(&name).is_ok());
        }

        #[test]
        fn dot_dot_backslash_and_control_characters_are_refused(
            before in names(),
            after in names(),
            control in prop_oneof![0u32..0x20, Just(0x7f), 0x80u32..0xa0],
        ) {
            let control = char::from_u32(control).unwrap();
            for name in [
                format!("{before}/../{after}"),
                format!("../{after}"),
                format!("{before}/.."),
                format!("{before}\\{after}"),
                format!("{before}{control}{after}"),
            ] {
                prop_assert!(check_object_name(&name).is_err(), "{:?}", name);
            }
        }
    }
}
