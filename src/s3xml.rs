//! The S3 XML documents hashup reads, on either side of the wire: an error answer
//! (`<Error>`), a ListObjectsV2 page (`<ListBucketResult>`) and the root element that tells
//! them apart. Shapes only, no I/O and nothing else of hashup's: the client ([`crate::http`],
//! [`crate::multipart`], [`crate::mirror`], [`crate::aws`]) and `serve`'s S3 backend (its
//! listing) both read them, so they sit below both rather than in the client's HTTP layer.

use serde::Deserialize;

/// An S3 error answer: `<Error><Code>…</Code><Message>…</Message>…</Error>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "Error")]
pub struct S3ErrorBody {
    /// `AccessDenied`, `SignatureDoesNotMatch`, `BadDigest`, ...
    #[serde(rename = "Code")]
    pub code: Option<String>,
    /// The human-readable explanation.
    #[serde(rename = "Message")]
    pub message: Option<String>,
}

impl S3ErrorBody {
    /// Parses an S3 XML error document; `None` when `text` is not one (an HTML page from a
    /// proxy, plain text, nothing).
    pub fn parse(text: &str) -> Option<S3ErrorBody> {
        let body: S3ErrorBody = quick_xml::de::from_str(text).ok()?;
        (body.code.is_some() || body.message.is_some()).then_some(body)
    }
}

/// One page of a ListObjectsV2 answer (`<ListBucketResult>`), as both S3 clients in hashup
/// read it: `hashup serve`'s S3 backend (its API's listing) and `upload --delete` in direct S3
/// mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListBucketResult {
    /// The objects of this page.
    #[serde(default)]
    pub contents: Vec<ListedObject>,
    /// More pages follow.
    pub is_truncated: Option<bool>,
    /// What to send as `continuation-token` for the next page.
    pub next_continuation_token: Option<String>,
}

/// One `<Contents>` of a ListObjectsV2 page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedObject {
    /// The whole key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// ISO 8601 (`2026-11-26T08:00:00.000Z`).
    pub last_modified: String,
    /// The ETag, quotes included; absent from some stores' listings.
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
}

impl ListBucketResult {
    /// Parses a page; the error says what did not parse (quick-xml's words, not the answer's).
    /// Another document (an `<Error>` in a 200, a proxy's page) is refused by its root element
    /// rather than read as an empty page.
    pub fn parse(text: &str) -> Result<ListBucketResult, String> {
        match root_element(text).as_deref() {
            Some("ListBucketResult") => quick_xml::de::from_str(text).map_err(|e| e.to_string()),
            Some(other) => Err(format!("the answer is <{other}>, not <ListBucketResult>")),
            None => Err("the answer is not XML".into()),
        }
    }

    /// The continuation token of the next page, if there is one.
    pub fn next_page(&self) -> Option<&str> {
        match (self.is_truncated, &self.next_continuation_token) {
            (Some(true), Some(next)) if !next.is_empty() => Some(next),
            _ => None,
        }
    }
}

/// The local name of an XML document's root element (`Error`, `ListBucketResult`, ...).
pub fn root_element(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(e.local_name().into_inner().to_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listing() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>uploads/a/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>uploads/a/x</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"e"</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>uploads/a/y &amp; z</Key><LastModified>2026-01-02T03:04:06Z</LastModified><Size>0</Size></Contents>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let page = ListBucketResult::parse(xml).unwrap();
        assert_eq!(page.contents.len(), 2);
        assert_eq!(page.contents[1].key, "uploads/a/y & z");
        assert_eq!(page.contents[0].size, 12);
        assert_eq!(page.is_truncated, Some(true));
        assert_eq!(page.next_page(), Some("tok"));
        let empty = ListBucketResult::parse(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(empty.contents.is_empty());
        assert_eq!(empty.next_page(), None);
        // Another document, even one that would parse, is not a listing.
        let err = ListBucketResult::parse("<Error><Code>AccessDenied</Code></Error>").unwrap_err();
        assert_eq!(err, "the answer is <Error>, not <ListBucketResult>");
        assert!(ListBucketResult::parse("<html>hi</html>").is_err());
    }
}
