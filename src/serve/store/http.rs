//! The store's HTTP face: the routes under `/store/<bucket>`, the PUT and POST handlers, and
//! S3-style XML errors.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use base64::Engine as _;

use super::form::{self, Event, FormError, FormLimits, FormReader};
use super::receive::{Received, Receiving};
use super::{MAX_OBJECT_SIZE, ObjectMeta, Store, StoreError, validate_key};
use crate::serve::body::{BodyError, Timed};
use crate::serve::connections::Limits;
use crate::sign;

/// The store's routes, under `/store/`.
pub(crate) fn router(store: Arc<Store>, limits: Limits) -> Router {
    Router::new()
        .route("/store/{bucket}", post(post_object))
        .route("/store/{bucket}/", post(post_object))
        .route("/store/{bucket}/{*key}", put(put_object))
        .with_state((store, limits))
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An S3-style XML error answer.
fn s3_error(err: &StoreError, resource: &str) -> Response {
    let (status, code) = err.s3_status_code();
    if status.is_server_error() {
        crate::serve::log_error(&format!("store: {resource}"), err);
    }
    let message = err.to_string();
    let mut message = message.as_str().to_string();
    if let Some(first) = message.get(0..1) {
        message = first.to_uppercase() + &message[1..];
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource></Error>",
        xml_escape(&message),
        xml_escape(resource)
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Splits `/store/<bucket>[/<key>]` (raw, still percent-encoded).
fn split_store_path(raw: &str) -> Option<(&str, Option<&str>)> {
    let rest = raw.strip_prefix("/store/")?;
    match rest.split_once('/') {
        None => Some((rest, None)),
        Some((bucket, "")) => Some((bucket, None)),
        Some((bucket, key)) => Some((bucket, Some(key))),
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Checks the received digest against what the upload was bound to.
fn check_digests(
    received: &Received,
    checksum_sha256: Option<[u8; 32]>,
    metadata: &[(String, String)],
) -> Result<(), StoreError> {
    if let Some(expected) = checksum_sha256
        && expected != received.sha256
    {
        return Err(StoreError::BadDigest("x-amz-checksum-sha256"));
    }
    // Beyond S3: PROMINENCE's own checksum metadata must be true here as well.
    let meta_sum = metadata
        .iter()
        .find(|(n, _)| n == "prominence_sha256")
        .map(|(_, v)| v.as_str());
    if let Some(sum) = meta_sum
        && let Ok(bytes) = hex::decode(sum)
        && bytes.len() == 32
        && bytes[..] != received.sha256[..]
    {
        return Err(StoreError::BadDigest("x-amz-meta-prominence_sha256"));
    }
    Ok(())
}

async fn finish_and_commit(
    store: &Arc<Store>,
    receiving: Receiving,
    key: String,
    checksum_sha256: Option<[u8; 32]>,
    metadata: Vec<(String, String)>,
    min_len: u64,
) -> Result<(), StoreError> {
    let received = receiving.finish().await?;
    if received.len < min_len {
        return Err(StoreError::EntityTooSmall);
    }
    check_digests(&received, checksum_sha256, &metadata)?;
    let meta = ObjectMeta {
        key,
        size: received.len,
        sha256: hex::encode(received.sha256),
        metadata,
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.commit(received, &meta))
        .await
        .map_err(|e| StoreError::io("committing")(io::Error::other(e)))?
}

/// `PUT /store/<bucket>/<key>` with a presigned URL.
async fn put_object(
    State((store, limits)): State<(Arc<Store>, Limits)>,
    request: Request,
) -> Response {
    let resource = request.uri().path().to_string();
    match put_inner(&store, limits, request).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => s3_error(&e, &resource),
    }
}

async fn put_inner(store: &Arc<Store>, limits: Limits, request: Request) -> Result<(), StoreError> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let (bucket, raw_key) = split_store_path(raw_path).ok_or(StoreError::NoSuchBucket)?;
    if bucket != store.bucket {
        return Err(StoreError::NoSuchBucket);
    }
    let raw_key = raw_key.ok_or_else(|| StoreError::InvalidKey("empty".into()))?;
    let key = percent_encoding::percent_decode_str(raw_key)
        .decode_utf8()
        .map_err(|_| StoreError::InvalidKey("not UTF-8".into()))?
        .into_owned();
    validate_key(&key)?;

    let headers = header_pairs(&parts.headers);
    let verified = sign::verify_presigned_url(
        store.lookup(),
        parts.method.as_str(),
        raw_path,
        parts.uri.query().unwrap_or(""),
        &headers,
        SystemTime::now(),
    )?;

    let length: u64 = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .ok_or(StoreError::MissingContentLength)?
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::InvalidArgument("bad Content-Length".into()))?;
    if length > MAX_OBJECT_SIZE {
        return Err(StoreError::EntityTooLarge);
    }
    // S3 checks a checksum header whether or not it was signed.
    let checksum = match (
        verified.checksum_sha256,
        parts.headers.get("x-amz-checksum-sha256"),
    ) {
        (Some(signed), _) => Some(signed),
        (None, Some(v)) => Some(
            v.to_str()
                .ok()
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    StoreError::InvalidArgument(
                        "x-amz-checksum-sha256 is not a base64 SHA-256".into(),
                    )
                })?,
        ),
        (None, None) => None,
    };
    let metadata: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| {
            let n = n.to_ascii_lowercase();
            Some((n.strip_prefix("x-amz-meta-")?.to_string(), v.clone()))
        })
        .collect();

    let mut receiving = store.receive().await?;
    receiving
        .take(Timed::new(body.into_data_stream(), &limits), length)
        .await?;
    if receiving.len != length {
        return Err(StoreError::IncompleteBody);
    }
    finish_and_commit(store, receiving, key, checksum, metadata, 0).await
}

/// `POST /store/<bucket>`: browser-style upload with a POST policy.
async fn post_object(
    State((store, limits)): State<(Arc<Store>, Limits)>,
    request: Request,
) -> Response {
    let resource = request.uri().path().trim_end_matches('/').to_string();
    match post_inner(&store, limits, request).await {
        Ok((status, key)) => {
            let location = format!("{}/{}", store.bucket_url(), sign::uri_encode_path(&key));
            if status == 201 {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key></PostResponse>",
                    xml_escape(&location),
                    xml_escape(&store.bucket),
                    xml_escape(&key)
                );
                (
                    StatusCode::CREATED,
                    [
                        (header::CONTENT_TYPE, "application/xml".to_string()),
                        (header::LOCATION, location),
                    ],
                    body,
                )
                    .into_response()
            } else {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
                (status, [(header::LOCATION, location)]).into_response()
            }
        }
        Err(e) => s3_error(&e, &resource),
    }
}

async fn post_inner(
    store: &Arc<Store>,
    limits: Limits,
    request: Request,
) -> Result<(u16, String), StoreError> {
    let (parts, body) = request.into_parts();
    let (bucket, _) = split_store_path(parts.uri.path()).ok_or(StoreError::NoSuchBucket)?;
    if bucket != store.bucket {
        return Err(StoreError::NoSuchBucket);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = form::parse_boundary(content_type)?;
    let body = Timed::new(body.into_data_stream(), &limits);
    let mut form = FormReader::new(body, &boundary, FormLimits::default());

    // The fields before the file, bounded in number and size by the reader, and in time by the
    // header timeout: until they are in, nothing says the client may upload at all.
    let fields_by = tokio::time::Instant::now() + limits.header_timeout;
    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        let next = tokio::time::timeout_at(fields_by, form.next(body_error));
        match next.await.map_err(|_| FormError::Timeout)?? {
            Event::Field { name, value } => fields.push((name, value)),
            Event::File => break,
            Event::Data(_) | Event::End => unreachable!("the reader yields File first"),
        }
    }

    // Everything about the request is known before a byte of the file is read.
    let verified = sign::verify_post(store.lookup(), &store.bucket, &fields, SystemTime::now())?;
    validate_key(&verified.key)?;
    let (min_len, max_len) = verified
        .content_length_range
        .unwrap_or((0, MAX_OBJECT_SIZE));
    let max_len = max_len.min(MAX_OBJECT_SIZE);

    let mut receiving = store.receive().await?;
    // S3 ignores parts after the file, but the body must still end with the closing boundary:
    // this is what tells a complete upload from a truncated one.
    loop {
        match form.next(body_error).await? {
            Event::Data(chunk) => receiving.write(&chunk, max_len).await?,
            Event::End => break,
            Event::Field { .. } | Event::File => unreachable!("fields come before the file"),
        }
    }
    let status = verified.success_action_status.unwrap_or(204);
    let key = verified.key.clone();
    let metadata = verified
        .metadata
        .into_iter()
        .map(|(n, v)| {
            (
                n.strip_prefix("x-amz-meta-")
                    .map_or(n.clone(), str::to_string),
                v,
            )
        })
        .collect();
    finish_and_commit(
        store,
        receiving,
        verified.key,
        verified.checksum_sha256,
        metadata,
        min_len,
    )
    .await?;
    Ok((status, key))
}

/// A POST body that failed to arrive: silent for too long, or cut short.
fn body_error(e: BodyError) -> FormError {
    match e {
        BodyError::Idle | BodyError::TooSlow => FormError::Timeout,
        BodyError::Transport(e) => FormError::Malformed(e),
    }
}

impl From<FormError> for StoreError {
    fn from(e: FormError) -> StoreError {
        match e {
            FormError::Malformed(_) | FormError::SuffixTooLarge => {
                StoreError::MalformedPost(e.to_string())
            }
            FormError::FieldsTooLarge | FormError::NoFile => {
                StoreError::InvalidArgument(e.to_string())
            }
            FormError::Timeout => StoreError::RequestTimeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths() {
        assert_eq!(split_store_path("/store/b"), Some(("b", None)));
        assert_eq!(split_store_path("/store/b/"), Some(("b", None)));
        assert_eq!(
            split_store_path("/store/b/k/x%2F"),
            Some(("b", Some("k/x%2F")))
        );
        assert_eq!(split_store_path("/other/b"), None);
    }
}
