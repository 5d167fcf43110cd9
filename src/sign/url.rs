//! Presigned URLs: SigV4 query-string authentication with `UNSIGNED-PAYLOAD`.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::canonical::{
    Credential, canonical_header_value, canonical_query, canonical_request, canonical_uri,
    encode_query_component, hmac_sha256, query_pairs, string_to_sign, verify_hmac,
};
use super::{ALGORITHM, Credentials, MAX_URL_EXPIRES_SECS, SignError, malformed};
use crate::utc::{amz_date, parse_amz_date};

/// The payload hash of every presigned URL: the body is not part of the signature.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// How far in the future `X-Amz-Date` may lie before a URL is "not valid yet" (S3's clock skew).
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// What to presign.
#[derive(Debug, Clone)]
pub struct UrlRequest<'a> {
    /// HTTP method the URL is for, e.g. `PUT`.
    pub method: &'a str,
    /// Full `http(s)://host[:port]/path[?query]` URL, path percent-encoded as on the wire (build
    /// it with [`uri_encode_path`](super::uri_encode_path)). It is re-encoded canonically.
    pub url: &'a str,
    /// Region of the credential scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service of the credential scope; `s3`.
    pub service: &'a str,
    /// Signing time; the URL is valid from then for `expires_in`.
    pub now: SystemTime,
    /// 1 s to 7 days (whole seconds).
    pub expires_in: Duration,
    /// Extra headers to sign besides `host`, e.g. `("x-amz-checksum-sha256", base64)`. The client
    /// must send them with exactly these values.
    pub signed_headers: &'a [(&'a str, &'a str)],
}

/// What a valid presigned URL said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUrl {
    /// Who signed it.
    pub access_key_id: String,
    /// Region of the credential scope.
    pub region: String,
    /// Lowercase names of the signed headers (`host` among them).
    pub signed_headers: Vec<String>,
    /// The SHA-256 from a *signed* `x-amz-checksum-sha256` header: the caller must check the body
    /// against it. (An unsigned checksum header is the caller's business.)
    pub checksum_sha256: Option<[u8; 32]>,
    /// When the URL stops being valid.
    pub expires_at: SystemTime,
}

/// Presigns `req` with query-string authentication and returns the URL to hand out.
///
/// The path and query of the result are in canonical form, so the URL a client sends is the one
/// that was signed.
pub fn presign_url(creds: &Credentials, req: &UrlRequest) -> Result<String, SignError> {
    let expires = req.expires_in.as_secs();
    if !(1..=MAX_URL_EXPIRES_SECS).contains(&expires) {
        return Err(malformed(format!(
            "X-Amz-Expires must be 1..={MAX_URL_EXPIRES_SECS} seconds, not {expires}"
        )));
    }
    let url = SplitUrl::parse(req.url)?;
    let date = amz_date(req.now);
    let credential = Credential::new(&creds.access_key_id, &date, req.region, req.service);

    let mut headers = vec![("host".to_owned(), url.host.clone())];
    for (name, value) in req.signed_headers {
        let name = name.to_ascii_lowercase();
        if headers.iter().any(|(n, _)| *n == name) {
            return Err(malformed(format!("header {name:?} is signed twice")));
        }
        headers.push((name, canonical_header_value(value)));
    }
    headers.sort();
    let signed_names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();

    let mut query = url.query.to_owned();
    let mut add = |name: &str, value: &str| {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("{name}={}", encode_query_component(value)));
    };
    add("X-Amz-Algorithm", ALGORITHM);
    add("X-Amz-Credential", &credential.value());
    add("X-Amz-Date", &date);
    add("X-Amz-Expires", &expires.to_string());
    add("X-Amz-SignedHeaders", &signed_names.join(";"));
    if let Some(token) = &creds.session_token {
        add("X-Amz-Security-Token", token);
    }
    let query = canonical_query(&query, None);
    let path = canonical_uri(url.path);

    let creq = canonical_request(req.method, &path, &query, &headers, UNSIGNED_PAYLOAD);
    let sts = string_to_sign(&date, &credential, &creq);
    let signature = hex::encode(hmac_sha256(
        &credential.signing_key(&creds.secret_access_key),
        sts.as_bytes(),
    ));
    Ok(format!(
        "{}://{}{path}?{query}&X-Amz-Signature={signature}",
        url.scheme, url.authority
    ))
}

/// Verifies a request made with a presigned URL, as S3 would.
///
/// `raw_path` and `raw_query` are as received (still percent-encoded); `headers` are the request
/// headers, names in any case. Checks the algorithm, credential scope, session token, expiry and
/// the signature (constant-time) over method, path, query and the signed headers.
pub fn verify_presigned_url(
    lookup: impl Fn(&str) -> Option<Credentials>,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(String, String)],
    now: SystemTime,
) -> Result<VerifiedUrl, SignError> {
    let params: Vec<(String, String)> = query_pairs(raw_query).collect();
    let param = |name: &str| -> Result<&str, SignError> {
        let mut found = params.iter().filter(|(n, _)| n == name);
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Ok(v.as_str()),
            (None, _) => Err(malformed(format!("query parameter {name} is missing"))),
            (Some(_), Some(_)) => Err(malformed(format!("query parameter {name} is repeated"))),
        }
    };

    let algorithm = param("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(SignError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let date = param("X-Amz-Date")?;
    let signed_at = parse_amz_date(date)
        .ok_or_else(|| malformed(format!("X-Amz-Date {date:?} is not YYYYMMDDTHHMMSSZ")))?;
    let credential = Credential::parse(param("X-Amz-Credential")?, date)?;
    let expires = param("X-Amz-Expires")?;
    let expires: u64 = expires
        .parse()
        .ok()
        .filter(|s| {
            (1..=MAX_URL_EXPIRES_SECS).contains(s) && expires.bytes().all(|c| c.is_ascii_digit())
        })
        .ok_or_else(|| {
            malformed(format!(
                "X-Amz-Expires {expires:?} is not 1..={MAX_URL_EXPIRES_SECS}"
            ))
        })?;
    let signed_headers = param("X-Amz-SignedHeaders")?;
    let signature = param("X-Amz-Signature")?;

    let creds = lookup(&credential.access_key_id)
        .ok_or_else(|| SignError::UnknownAccessKey(credential.access_key_id.clone()))?;
    let token = params
        .iter()
        .find(|(n, _)| n == "X-Amz-Security-Token")
        .map(|(_, v)| v.as_str());
    if token != creds.session_token.as_deref() {
        return Err(SignError::InvalidToken);
    }

    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if !names.iter().any(|n| n == "host") {
        return Err(malformed("X-Amz-SignedHeaders must include host"));
    }
    let mut canonical_headers = Vec::with_capacity(names.len());
    for name in &names {
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(malformed(format!(
                "X-Amz-SignedHeaders {signed_headers:?} is not lowercase names"
            )));
        }
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| canonical_header_value(v))
            .collect();
        if values.is_empty() {
            return Err(SignError::MissingSignedHeader(name.clone()));
        }
        canonical_headers.push((name.clone(), values.join(",")));
    }

    let creq = canonical_request(
        method,
        &canonical_uri(raw_path),
        &canonical_query(raw_query, Some("X-Amz-Signature")),
        &canonical_headers,
        UNSIGNED_PAYLOAD,
    );
    let sts = string_to_sign(date, &credential, &creq);
    verify_hmac(
        &credential.signing_key(&creds.secret_access_key),
        sts.as_bytes(),
        signature,
    )?;

    // Time is judged only for a genuine signature, so a forger learns nothing from it.
    let expires_at = signed_at + Duration::from_secs(expires);
    if now >= expires_at {
        return Err(SignError::Expired);
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(SignError::NotYetValid);
    }

    let checksum_sha256 = match canonical_headers
        .iter()
        .find(|(n, _)| n == "x-amz-checksum-sha256")
    {
        None => None,
        Some((_, v)) => Some(
            BASE64
                .decode(v)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    malformed(format!(
                        "x-amz-checksum-sha256 {v:?} is not a base64 SHA-256"
                    ))
                })?,
        ),
    };
    Ok(VerifiedUrl {
        access_key_id: credential.access_key_id,
        region: credential.region,
        signed_headers: names,
        checksum_sha256,
        expires_at,
    })
}

/// The parts of an absolute URL that signing needs. Hand-split on purpose: a URL library would
/// normalise the path (dot segments, encoding), and S3 signs the path as sent.
struct SplitUrl<'a> {
    scheme: &'a str,
    /// `host[:port]` as written.
    authority: &'a str,
    /// The `Host` header value: lowercase, default port dropped.
    host: String,
    path: &'a str,
    query: &'a str,
}

impl<'a> SplitUrl<'a> {
    fn parse(url: &'a str) -> Result<Self, SignError> {
        let bad = |why: &str| malformed(format!("URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not absolute"))?;
        let default_port = match scheme {
            "http" => ":80",
            "https" => ":443",
            _ => return Err(bad("scheme is not http or https")),
        };
        if rest.contains('#') {
            return Err(bad("has a fragment"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host and no user info"));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let host = authority
            .strip_suffix(default_port)
            .unwrap_or(authority)
            .to_ascii_lowercase();
        Ok(SplitUrl {
            scheme,
            authority,
            host,
            path,
            query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 20130524T000000Z, the date of AWS's S3 examples.
    const T0: u64 = 1_369_353_600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn creds() -> Credentials {
        Credentials::new(AKID, SECRET)
    }

    fn lookup(id: &str) -> Option<Credentials> {
        (id == AKID).then(creds)
    }

    /// Splits a URL we produced into (path, query) the way a server receives them.
    fn split(url: &str) -> (&str, &str) {
        let rest = url.split_once("://").unwrap().1;
        let rest = &rest[rest.find('/').unwrap()..];
        rest.split_once('?').unwrap()
    }

    fn host_header(host: &str) -> Vec<(String, String)> {
        vec![("Host".to_owned(), host.to_owned())]
    }

    /// AWS S3 API Reference, "Authenticating Requests: Using Query Parameters (AWS Signature
    /// Version 4)" (sigv4-query-string-auth.html), "An Example": GET test.txt from examplebucket,
    /// 20130524T000000Z, us-east-1, X-Amz-Expires=86400, SignedHeaders=host. Signature is AWS's.
    const AWS_QUERY_EXAMPLE_SIGNATURE: &str =
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn aws_query_auth_example() {
        let url = presign_url(
            &creds(),
            &UrlRequest {
                method: "GET",
                url: "https://examplebucket.s3.amazonaws.com/test.txt",
                region: "us-east-1",
                service: "s3",
                now: at(T0),
                expires_in: Duration::from_secs(86_400),
                signed_headers: &[],
            },
        )
        .unwrap();
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert!(url.ends_with(AWS_QUERY_EXAMPLE_SIGNATURE));
    }

    #[test]
    fn verifies_the_aws_query_example_as_received() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let host = host_header("examplebucket.s3.amazonaws.com");
        let ok =
            verify_presigned_url(lookup, "GET", "/test.txt", query, &host, at(T0 + 60)).unwrap();
        assert_eq!(ok.access_key_id, AKID);
        assert_eq!(ok.region, "us-east-1");
        assert_eq!(ok.expires_at, at(T0 + 86_400));
        assert_eq!(ok.checksum_sha256, None);
        // Valid until the last second, expired from then on.
        assert!(
            verify_presigned_url(lookup, "GET", "/test.txt", query, &host, at(T0 + 86_399)).is_ok()
        );
        assert_eq!(
            verify_presigned_url(lookup, "GET", "/test.txt", query, &host, at(T0 + 86_400)),
            Err(SignError::Expired)
        );
        assert_eq!(
            verify_presigned_url(lookup, "PUT", "/test.txt", query, &host, at(T0)),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify_presigned_url(
                lookup,
                "GET",
                "/test.txt",
                query,
                &host_header("evil.example"),
                at(T0)
            ),
            Err(SignError::SignatureMismatch)
        );
    }

    /// The canonical request of AWS's query example hashes to the value on the last line of the
    /// StringToSign that the same page shows.
    #[test]
    fn aws_query_example_string_to_sign() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host";
        let headers = [(
            "host".to_owned(),
            "examplebucket.s3.amazonaws.com".to_owned(),
        )];
        let creq = canonical_request(
            "GET",
            &canonical_uri("/test.txt"),
            &canonical_query(query, None),
            &headers,
            UNSIGNED_PAYLOAD,
        );
        let cred = Credential::new(AKID, "20130524T000000Z", "us-east-1", "s3");
        assert_eq!(
            string_to_sign("20130524T000000Z", &cred, &creq),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );
    }

    // What boto3 1.43.11 `generate_presigned_url("put_object", ..., ExpiresIn=600)` emits with
    // signature_version="s3v4", path addressing, endpoint http://127.0.0.1:8333, the example key
    // pair, and `botocore.auth.get_current_datetime` pinned to 2024-05-01T12:00:00Z (the same
    // script as the POST vector in post.rs). The second also passes
    // ChecksumSHA256=base64(bytes 0..32), which boto3 turns into a signed header.
    const BOTO_PUT: &str = "http://127.0.0.1:8333/prominence/uploads/alice/my%20image%2B1.sif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240501%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature=78591eae9dc43f6b2f9254f371bf2f612a2faf69adfe3cf6ee541169f7294e2f";
    const BOTO_PUT_CHECKSUM: &str = "http://127.0.0.1:8333/prominence/uploads/alice/a.sif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240501%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256&X-Amz-Signature=f62ad764a05c6b385ac8295c9566060310600c06126ef3cb10ea1f45af0cd9e8";
    const BOTO_CHECKSUM: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// 2024-05-01T12:00:00Z.
    const BOTO_DATE: u64 = 1_714_564_800;

    #[test]
    fn signs_and_verifies_like_boto3() {
        let mut req = put_request(&[]);
        req.url = "http://127.0.0.1:8333/prominence/uploads/alice/my%20image+1.sif";
        req.now = at(BOTO_DATE);
        assert_eq!(presign_url(&creds(), &req).unwrap(), BOTO_PUT);
        let checksum = [("x-amz-checksum-sha256", BOTO_CHECKSUM)];
        let mut req = put_request(&checksum);
        req.url = "http://127.0.0.1:8333/prominence/uploads/alice/a.sif";
        req.now = at(BOTO_DATE);
        assert_eq!(presign_url(&creds(), &req).unwrap(), BOTO_PUT_CHECKSUM);

        let host = host_header("127.0.0.1:8333");
        let (path, query) = split(BOTO_PUT);
        assert!(
            verify_presigned_url(lookup, "PUT", path, query, &host, at(BOTO_DATE + 599)).is_ok()
        );
        let (path, query) = split(BOTO_PUT_CHECKSUM);
        let mut headers = host.clone();
        headers.push(("X-Amz-Checksum-Sha256".to_owned(), BOTO_CHECKSUM.to_owned()));
        let ok = verify_presigned_url(lookup, "PUT", path, query, &headers, at(BOTO_DATE)).unwrap();
        let expected: Vec<u8> = (0..32).collect();
        assert_eq!(ok.checksum_sha256.map(Vec::from), Some(expected));
    }

    fn put_request<'a>(headers: &'a [(&'a str, &'a str)]) -> UrlRequest<'a> {
        UrlRequest {
            method: "PUT",
            url: "http://127.0.0.1:8080/bucket/uploads/al%20ice/a+b.sif",
            region: "us-east-1",
            service: "s3",
            now: at(T0),
            expires_in: Duration::from_secs(600),
            signed_headers: headers,
        }
    }

    #[test]
    fn round_trip_with_signed_checksum() {
        let digest = [7u8; 32];
        let b64 = BASE64.encode(digest);
        let url = presign_url(&creds(), &put_request(&[("X-Amz-Checksum-SHA256", &b64)])).unwrap();
        let (path, query) = split(&url);
        assert_eq!(path, "/bucket/uploads/al%20ice/a%2Bb.sif");
        assert!(query.contains("X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256"));
        let mut headers = host_header("127.0.0.1:8080");
        headers.push(("x-amz-checksum-sha256".to_owned(), b64.clone()));
        let ok = verify_presigned_url(lookup, "PUT", path, query, &headers, at(T0 + 1)).unwrap();
        assert_eq!(ok.checksum_sha256, Some(digest));
        assert_eq!(ok.signed_headers, ["host", "x-amz-checksum-sha256"]);

        // Without the signed header, or with another checksum, the signature does not hold.
        let host = host_header("127.0.0.1:8080");
        assert_eq!(
            verify_presigned_url(lookup, "PUT", path, query, &host, at(T0 + 1)),
            Err(SignError::MissingSignedHeader(
                "x-amz-checksum-sha256".to_owned()
            ))
        );
        let mut other = host.clone();
        other.push(("x-amz-checksum-sha256".to_owned(), BASE64.encode([8u8; 32])));
        assert_eq!(
            verify_presigned_url(lookup, "PUT", path, query, &other, at(T0 + 1)),
            Err(SignError::SignatureMismatch)
        );
    }

    #[test]
    fn refuses_tampering_expiry_and_strangers() {
        let url = presign_url(&creds(), &put_request(&[])).unwrap();
        let (path, query) = split(&url);
        let host = host_header("127.0.0.1:8080");
        let verify = |method: &str, path: &str, query: &str, now: u64| {
            verify_presigned_url(lookup, method, path, query, &host, at(now))
        };
        assert!(verify("PUT", path, query, T0).is_ok());
        // Another spelling of the same path is the same canonical URI.
        assert!(verify("PUT", "/bucket/uploads/al%20ice/a%2bb.sif", query, T0).is_ok());
        assert_eq!(
            verify("GET", path, query, T0),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify("PUT", "/bucket/uploads/al%20ice/b.sif", query, T0),
            Err(SignError::SignatureMismatch)
        );
        let longer = query.replace("X-Amz-Expires=600", "X-Amz-Expires=6000");
        assert_eq!(
            verify("PUT", path, &longer, T0),
            Err(SignError::SignatureMismatch)
        );
        let extra = format!("{query}&versionId=1");
        assert_eq!(
            verify("PUT", path, &extra, T0),
            Err(SignError::SignatureMismatch)
        );
        assert_eq!(
            verify("PUT", path, query, T0 + 600),
            Err(SignError::Expired)
        );
        assert_eq!(
            verify("PUT", path, query, T0 - 16 * 60),
            Err(SignError::NotYetValid)
        );
        let stranger = query.replace("AKIAIOSFODNN7EXAMPLE", "AKIDOTHER");
        assert_eq!(
            verify("PUT", path, &stranger, T0),
            Err(SignError::UnknownAccessKey("AKIDOTHER".to_owned()))
        );
        let wrong_secret = |_: &str| Some(Credentials::new(AKID, "not the secret"));
        assert_eq!(
            verify_presigned_url(wrong_secret, "PUT", path, query, &host, at(T0)),
            Err(SignError::SignatureMismatch)
        );
        let no_alg = query.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256&", "");
        assert!(matches!(
            verify("PUT", path, &no_alg, T0),
            Err(SignError::Malformed(_))
        ));
        let v2 = query.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256");
        assert!(matches!(
            verify("PUT", path, &v2, T0),
            Err(SignError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn session_token_is_signed_and_required() {
        let mut temp = creds();
        temp.session_token = Some("tok/en+=".to_owned());
        let url = presign_url(&temp, &put_request(&[])).unwrap();
        let (path, query) = split(&url);
        assert!(query.contains("X-Amz-Security-Token=tok%2Fen%2B%3D"));
        let host = host_header("127.0.0.1:8080");
        let with_token = |_: &str| Some(temp.clone());
        assert!(verify_presigned_url(with_token, "PUT", path, query, &host, at(T0)).is_ok());
        assert_eq!(
            verify_presigned_url(lookup, "PUT", path, query, &host, at(T0)),
            Err(SignError::InvalidToken)
        );
        let plain = presign_url(&creds(), &put_request(&[])).unwrap();
        let (path, query) = split(&plain);
        assert_eq!(
            verify_presigned_url(with_token, "PUT", path, query, &host, at(T0)),
            Err(SignError::InvalidToken)
        );
    }

    #[test]
    fn keeps_existing_query_and_drops_default_ports() {
        let mut req = put_request(&[]);
        req.url = "https://Example.COM:443/b/k?versionId=a%20b";
        let url = presign_url(&creds(), &req).unwrap();
        assert!(url.starts_with("https://Example.COM:443/b/k?X-Amz-Algorithm="));
        assert!(url.contains("&versionId=a%20b&X-Amz-Signature="));
        let (path, query) = split(&url);
        let ok = verify_presigned_url(
            lookup,
            "PUT",
            path,
            query,
            &host_header("example.com"),
            at(T0),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn refuses_bad_input_to_presign() {
        for url in [
            "ftp://h/k",
            "h/k",
            "https:///k",
            "https://u@h/k",
            "https://h/k#f",
        ] {
            let mut req = put_request(&[]);
            req.url = url;
            assert!(
                matches!(presign_url(&creds(), &req), Err(SignError::Malformed(_))),
                "{url}"
            );
        }
        for secs in [0, MAX_URL_EXPIRES_SECS + 1] {
            let mut req = put_request(&[]);
            req.expires_in = Duration::from_secs(secs);
            assert!(matches!(
                presign_url(&creds(), &req),
                Err(SignError::Malformed(_))
            ));
        }
        assert!(matches!(
            presign_url(&creds(), &put_request(&[("Host", "x")])),
            Err(SignError::Malformed(_))
        ));
    }
}
