//! The SigV4 core shared by signing and verifying: key derivation, S3's URI encoding, the
//! canonical request and the string to sign.
//!
//! S3 differs from the other AWS services in one place: the canonical URI is the object path
//! encoded *once* (no double encoding, no dot-segment normalisation).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{ALGORITHM, SignError, malformed};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    mac(key, data).finalize().into_bytes().into()
}

/// Checks `signature_hex` against HMAC-SHA256(`key`, `data`) in constant time.
pub(crate) fn verify_hmac(key: &[u8], data: &[u8], signature_hex: &str) -> Result<(), SignError> {
    // A signature is 64 lowercase hex digits; anything else cannot match what we compute.
    let ok = signature_hex.len() == 64
        && !signature_hex.bytes().any(|c| c.is_ascii_uppercase())
        && hex::decode(signature_hex).is_ok_and(|tag| mac(key, data).verify_slice(&tag).is_ok());
    if ok {
        Ok(())
    } else {
        Err(SignError::SignatureMismatch)
    }
}

fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SigV4 signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request")`, with `yyyymmdd` the date of the credential scope.
pub fn signing_key(secret: &str, yyyymmdd: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), yyyymmdd.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// `<access key>/<yyyymmdd>/<region>/<service>/aws4_request`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    pub fn new(access_key_id: &str, amz_date: &str, region: &str, service: &str) -> Self {
        Credential {
            access_key_id: access_key_id.to_owned(),
            date: amz_date[..8].to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    /// Parses an `x-amz-credential` / `X-Amz-Credential` value and checks that its date is the
    /// date of `amz_date` (S3 refuses a scope from another day).
    pub fn parse(value: &str, amz_date: &str) -> Result<Self, SignError> {
        let parts: Vec<&str> = value.split('/').collect();
        let [key, date, region, service, terminator] = parts[..] else {
            return Err(malformed(format!(
                "credential {value:?} is not key/date/region/service/aws4_request"
            )));
        };
        if key.is_empty() || region.is_empty() || terminator != "aws4_request" {
            return Err(malformed(format!(
                "credential {value:?} is not a SigV4 scope"
            )));
        }
        if service != "s3" {
            return Err(malformed(format!(
                "credential {value:?} is not scoped to s3"
            )));
        }
        if !amz_date.starts_with(date) || date.len() != 8 {
            return Err(malformed(format!(
                "credential date {date:?} is not the date of x-amz-date {amz_date:?}"
            )));
        }
        Ok(Credential::new(key, amz_date, region, service))
    }

    /// `<yyyymmdd>/<region>/<service>/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }

    /// The full credential value, access key first.
    pub fn value(&self) -> String {
        format!("{}/{}", self.access_key_id, self.scope())
    }

    pub fn signing_key(&self, secret: &str) -> [u8; 32] {
        signing_key(secret, &self.date, &self.region, &self.service)
    }
}

/// The string to sign for a request: algorithm, timestamp, scope, hash of the canonical request.
pub(crate) fn string_to_sign(
    amz_date: &str,
    credential: &Credential,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        credential.scope(),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Percent-encodes per SigV4: every byte except `A-Za-z0-9-_.~` as `%XX` (uppercase), and `/`
/// too unless `keep_slash`.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes an object path (or key) for a URL the way S3 canonicalises it: each segment encoded,
/// `/` kept. A URL built with this has a path equal to its own canonical URI.
pub fn uri_encode_path(path: &str) -> String {
    uri_encode(path.as_bytes(), true)
}

fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// The canonical URI of a path as it appears on the wire: decoded once, then encoded once.
/// An empty path is `/`.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    uri_encode(&percent_decode(raw_path), true)
}

/// The canonical query string of a raw query (`a=1&b=2`): each name and value decoded then
/// encoded, sorted by name then value, joined with `&`. `skip` names a parameter left out (the
/// signature itself when verifying). A `+` is taken literally, as S3's canonical form encodes it
/// as `%2B`; SDKs never send a bare `+` for a space.
pub(crate) fn canonical_query(raw_query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(raw_query)
        .filter(|(name, _)| Some(name.as_str()) != skip)
        .map(|(name, value)| {
            (
                uri_encode(name.as_bytes(), false),
                uri_encode(value.as_bytes(), false),
            )
        })
        .collect();
    pairs.sort();
    join_query(&pairs)
}

/// Decoded `(name, value)` pairs of a raw query; a name without `=` has an empty value.
pub(crate) fn query_pairs(raw_query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw_query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (
            String::from_utf8_lossy(&percent_decode(name)).into_owned(),
            String::from_utf8_lossy(&percent_decode(value)).into_owned(),
        )
    })
}

/// Joins already-encoded pairs as `a=1&b=2`.
pub(crate) fn join_query(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    parts.join("&")
}

/// Encodes one query component (name or value) for a canonical query.
pub(crate) fn encode_query_component(s: &str) -> String {
    uri_encode(s.as_bytes(), false)
}

/// A header value as SigV4 canonicalises it: outer whitespace trimmed, inner runs collapsed.
pub(crate) fn canonical_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request. `headers` are `(lowercase name, canonical value)` in signed order.
pub(crate) fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let mut out = format!("{method}\n{canonical_uri}\n{canonical_query}\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}:{value}\n"));
    }
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    out.push_str(&format!("\n{}\n{payload_hash}", signed.join(";")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// AWS S3 API Reference, "Authenticating Requests: Using the Authorization Header (AWS
    /// Signature Version 4)" > "Examples: Signature Calculations" (sig-v4-header-based-auth.html),
    /// example "GET Object": `GET /test.txt` with `Range: bytes=0-9` on examplebucket,
    /// 20130524T000000Z. The canonical request, string to sign and signature are AWS's.
    #[test]
    fn aws_header_auth_get_object_example() {
        let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers: Vec<(String, String)> = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", empty_hash),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let creq = canonical_request("GET", &canonical_uri("/test.txt"), "", &headers, empty_hash);
        assert_eq!(
            creq,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let cred = Credential::new(
            "AKIAIOSFODNN7EXAMPLE",
            "20130524T000000Z",
            "us-east-1",
            "s3",
        );
        let sts = string_to_sign("20130524T000000Z", &cred, &creq);
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let sig = hex::encode(hmac_sha256(&cred.signing_key(SECRET), sts.as_bytes()));
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// Same page, example "GET Bucket Lifecycle": a query parameter with an empty value.
    #[test]
    fn aws_header_auth_get_lifecycle_example() {
        let empty_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(canonical_query("lifecycle", None), "lifecycle=");
        let headers: Vec<(String, String)> = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", empty_hash),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let creq = canonical_request("GET", "/", "lifecycle=", &headers, empty_hash);
        let cred = Credential::new(
            "AKIAIOSFODNN7EXAMPLE",
            "20130524T000000Z",
            "us-east-1",
            "s3",
        );
        let sts = string_to_sign("20130524T000000Z", &cred, &creq);
        let sig = hex::encode(hmac_sha256(&cred.signing_key(SECRET), sts.as_bytes()));
        assert_eq!(
            sig,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn s3_encodes_paths_once_and_keeps_slashes() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/b/a%20b/c+d"), "/b/a%20b/c%2Bd");
        assert_eq!(canonical_uri("/b/a b/%2e%2E/x"), "/b/a%20b/../x");
        assert_eq!(canonical_uri("/b/%C3%A9t%C3%A9"), "/b/%C3%A9t%C3%A9");
        assert_eq!(
            uri_encode_path("uploads/al ice/é~x*"),
            "uploads/al%20ice/%C3%A9~x%2A"
        );
        // A URL built with uri_encode_path canonicalises to itself.
        let p = format!("/{}", uri_encode_path("k/!'()*$&,;=@ %/é"));
        assert_eq!(canonical_uri(&p), p);
    }

    #[test]
    fn query_is_decoded_encoded_and_sorted() {
        assert_eq!(
            canonical_query(
                "b=2&a=%2F x&a=1&X-Amz-Signature=ff&c",
                Some("X-Amz-Signature")
            ),
            "a=%2F%20x&a=1&b=2&c="
        );
        assert_eq!(canonical_query("", None), "");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  a   b \t c  "), "a b c");
    }

    #[test]
    fn verify_hmac_is_strict() {
        let sig = hex::encode(hmac_sha256(b"k", b"d"));
        assert_eq!(verify_hmac(b"k", b"d", &sig), Ok(()));
        assert_eq!(
            verify_hmac(b"k", b"d", &sig.to_uppercase()),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_hmac(b"k", b"d", &sig[..62]),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_hmac(b"k", b"e", &sig),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_hmac(b"k", b"d", "zz"),
            Err(SignError::SignatureMismatch)
        );
    }

    #[test]
    fn credential_scope_is_checked() {
        let ok = Credential::parse(
            "AKID/20130524/us-east-1/s3/aws4_request",
            "20130524T000000Z",
        )
        .unwrap();
        assert_eq!(ok.access_key_id, "AKID");
        assert_eq!(ok.scope(), "20130524/us-east-1/s3/aws4_request");
        for bad in [
            "AKID/20130525/us-east-1/s3/aws4_request",
            "AKID/20130524/us-east-1/ec2/aws4_request",
            "AKID/20130524/us-east-1/s3/aws5_request",
            "AKID/20130524/us-east-1/s3",
            "/20130524/us-east-1/s3/aws4_request",
            "AKID/2013052/us-east-1/s3/aws4_request",
        ] {
            assert!(
                matches!(
                    Credential::parse(bad, "20130524T000000Z"),
                    Err(SignError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
