//! Property tests: what [`presign_url`] and [`presign_post`] sign, [`verify_presigned_url`] and
//! [`verify_post`] accept, and any change to a signed part is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use proptest::prelude::*;

use super::*;

const AKID: &str = "AKIDPROPTEST";
const SECRET: &str = "proptest/secret+key";
/// 20130524T000000Z.
const T0: u64 = 1_369_353_600;

fn creds() -> Credentials {
    Credentials::new(AKID, SECRET)
}

fn lookup(id: &str) -> Option<Credentials> {
    (id == AKID).then(creds)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Object keys with the characters that make encoding interesting.
fn key() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9 ._~+%!*'()&=éü-]{1,12}", 1..5).prop_map(|s| s.join("/"))
}

/// Changes one character of `s` into another.
fn flip(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return "x".into();
    }
    let i = at % chars.len();
    chars[i] = match chars[i] {
        '0' => '1',
        'a' => 'b',
        'A' => 'B',
        c if c.is_ascii_digit() => '0',
        _ => 'a',
    };
    chars.into_iter().collect()
}

/// `query` with parameter `name`'s value passed through `change`.
fn with_param(query: &str, name: &str, change: impl Fn(&str) -> String) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) if n == name => format!("{n}={}", change(v)),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn split(url: &str) -> (String, String) {
    let rest = url.split_once("://").unwrap().1;
    let rest = &rest[rest.find('/').unwrap()..];
    let (path, query) = rest.split_once('?').unwrap();
    (path.to_string(), query.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn presigned_urls_verify_and_any_change_is_refused(
        key in key(),
        method in prop::sample::select(vec!["PUT", "GET", "HEAD", "DELETE"]),
        checksum in prop::option::of(any::<[u8; 32]>()),
        expires in 2u64..=MAX_URL_EXPIRES_SECS,
        elapsed in 0u64..2,
        mutation in 0usize..7,
        pick in any::<usize>(),
    ) {
        let b64 = checksum.map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        let signed: Vec<(&str, &str)> = b64
            .as_deref()
            .map(|v| vec![("x-amz-checksum-sha256", v)])
            .unwrap_or_default();
        let url = format!("http://127.0.0.1:8080/bucket/{}", uri_encode_path(&key));
        let presigned = presign_url(&creds(), &UrlRequest {
            method,
            url: &url,
            region: "us-east-1",
            service: "s3",
            now: at(T0),
            expires_in: Duration::from_secs(expires),
            signed_headers: &signed,
        }).unwrap();
        let (path, query) = split(&presigned);
        let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
        if let Some(v) = &b64 {
            headers.push(("x-amz-checksum-sha256".to_string(), v.clone()));
        }
        let now = at(T0 + elapsed);
        let ok = verify_presigned_url(lookup, method, &path, &query, &headers, now).unwrap();
        prop_assert_eq!(ok.checksum_sha256, checksum);

        let (mut method2, mut path2, mut query2, mut headers2) =
            (method.to_string(), path.clone(), query.clone(), headers.clone());
        match mutation {
            0 => method2 = if method == "PUT" { "POST".into() } else { "PUT".into() },
            1 => path2 = format!("{path}x"),
            // A signed header: the checksum when there is one, else the host.
            2 => {
                let last = headers2.len() - 1;
                headers2[last].1 = if last == 0 {
                    "127.0.0.1:8081".into()
                } else {
                    base64::engine::general_purpose::STANDARD.encode([pick as u8 ^ 1; 32])
                };
                if headers2[last].1 == headers[last].1 {
                    headers2[last].1 = base64::engine::general_purpose::STANDARD.encode([0xAB; 32]);
                }
            }
            3 => query2 = with_param(&query, "X-Amz-Signature", |v| flip(v, pick)),
            4 => query2 = with_param(&query, "X-Amz-Date", |v| flip(v, 14)),
            5 => query2 = with_param(&query, "X-Amz-Expires", |v| {
                let n: u64 = v.parse().unwrap();
                (if n > 2 { n - 1 } else { n + 1 }).to_string()
            }),
            _ => query2 = with_param(&query, "X-Amz-Credential", |v| flip(v, pick)),
        }
        prop_assert!(
            verify_presigned_url(lookup, &method2, &path2, &query2, &headers2, now).is_err(),
            "mutation {} accepted", mutation
        );
    }

    #[test]
    fn presigned_posts_verify_and_any_field_change_is_refused(
        key in key(),
        meta in prop::option::of("[0-9a-f]{64}"),
        checksum in prop::option::of(any::<[u8; 32]>()),
        range in prop::option::of((0u64..10, 10u64..1 << 40)),
        elapsed in 0u64..600,
        field in any::<usize>(),
        pick in any::<usize>(),
        remove in any::<bool>(),
    ) {
        let post = presign_post(&creds(), &PostRequest {
            url: "http://127.0.0.1:8080/bucket",
            bucket: "bucket",
            key: &key,
            region: "us-east-1",
            now: at(T0),
            expires_in: Duration::from_secs(600),
            meta_sha256: meta.as_deref(),
            checksum_sha256: checksum,
            content_length_range: range,
        });
        let now = at(T0 + elapsed);
        let ok = verify_post(lookup, "bucket", &post.fields, now).unwrap();
        prop_assert_eq!(&ok.key, &key);
        prop_assert_eq!(ok.checksum_sha256, checksum);
        prop_assert_eq!(ok.content_length_range, range);

        let mut fields = post.fields.clone();
        let i = field % fields.len();
        if remove {
            fields.remove(i);
        } else {
            fields[i].1 = flip(&fields[i].1, pick);
        }
        prop_assert!(
            verify_post(lookup, "bucket", &fields, now).is_err(),
            "{} field {} accepted", if remove { "without" } else { "changed" }, post.fields[i].0
        );
        // One field more is refused too.
        let mut extra = post.fields.clone();
        extra.push(("x-amz-meta-extra".into(), "1".into()));
        prop_assert!(verify_post(lookup, "bucket", &extra, now).is_err());
        // And so is another bucket.
        prop_assert!(verify_post(lookup, "other", &post.fields, now).is_err());
    }
}
