//! How errors and outside text become one line for people: shared by every stage, so walking
//! never reaches into hashing for an I/O message and sending never into the API client for an
//! error chain.

/// An I/O error as people read it: `No such file or directory`, without Rust's
/// ` (os error 2)` suffix.
pub fn plain_io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// An error and its causes on one line, `outer: cause: root` (reqwest's and hyper's own
/// messages hide the cause).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_lose_the_os_error_suffix() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(plain_io_message(&err), "No such file or directory");
        let custom = std::io::Error::other("disk on fire");
        assert_eq!(plain_io_message(&custom), "disk on fire");
    }

    #[test]
    fn chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("root"));
        assert_eq!(error_chain(&err), "outer: root");
    }
}
