//! The PROMINENCE data API, as `docs/prominence-api.md` describes it: routes, JSON bodies, status
//! codes and the key layout (`uploads/<user>/<name>`, group uploads `uploads/<group>/<name>`).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde::ser::SerializeMap as _;

use super::auth::{Identity, Tokens};
use super::backend::Backend;
use super::body::{BodyError, Timed};
use super::connections::Limits;
use super::storage::{ObjectInfo, Presigned};
use crate::keys;

/// Where the API lives, as in `PROMINENCE_URL`.
pub const API_PREFIX: &str = "/prominence/v1";

/// Largest request body the API reads (PROMINENCE's `MAX_CONTENT_LENGTH`); larger gets 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// How much of an oversized body is still read and thrown away before answering 413, so that a
/// client which sends its whole body before reading the answer (Python's requests) sees the 413
/// rather than a reset connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// What every API handler shares.
pub(crate) struct ApiState {
    pub tokens: Tokens,
    pub backend: Backend,
    pub limits: Limits,
}

/// The API routes, under [`API_PREFIX`].
pub(crate) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/prominence/v1/data", post(upload).get(list_own))
        // `upload` is a valid group path too: GET/DELETE on it mean what they do on any path.
        .route(
            "/prominence/v1/data/upload",
            post(upload)
                .get(|s, h| list_path(s, h, Path("upload".to_string())))
                .delete(|s, h| delete(s, h, Path("upload".to_string()))),
        )
        .route("/prominence/v1/data/{*path}", get(list_path).delete(delete))
        .with_state(state)
}

/// `{"error": message}` with a status, the shape of every PROMINENCE error.
fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// An error answer as a value (a `Response` is too large to travel in `Result`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ApiError(StatusCode, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The identity behind the request's bearer token, or the 401 answer.
fn authenticate<'a>(state: &'a ApiState, headers: &HeaderMap) -> Result<&'a Identity, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .tokens
        .authenticate(header, SystemTime::now())
        .map_err(|_| ApiError(StatusCode::UNAUTHORIZED, "Authentication failure"))
}

/// Reads at most [`MAX_BODY`] bytes; more is a 413 (after draining a bounded amount).
async fn read_body(headers: &HeaderMap, body: Body, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = Timed::new(body.into_data_stream(), limits);
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match e {
            BodyError::Idle | BodyError::TooSlow => {
                ApiError(StatusCode::REQUEST_TIMEOUT, "Request body timed out")
            }
            BodyError::Transport(_) => ApiError(StatusCode::BAD_REQUEST, "Incomplete request body"),
        })?;
        seen += chunk.len();
        if seen > MAX_BODY {
            if seen > DRAIN_LIMIT || declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf)
}

/// The first value of a query parameter (Flask's `request.args.get`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query?;
    url_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A validated upload request: the object key and the checksum to bind to it.
#[derive(Debug, PartialEq, Eq)]
struct UploadRequest {
    key: String,
    checksum: Option<String>,
}

/// Applies the contract's rules to the request: `?name=`/`?checksum=` win over the body's
/// `filename`/`checksum`; a name with `/` is a group upload.
fn parse_upload(
    identity: &Identity,
    query: Option<&str>,
    body: &[u8],
) -> Result<UploadRequest, (StatusCode, &'static str)> {
    let bad = |m| (StatusCode::BAD_REQUEST, m);
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                Ok(_) => return Err(bad("The request body must be a JSON object")),
                Err(_) => return Err(bad("The request body is not valid JSON")),
            }
        };
    let field = |name: &str| json.as_ref().and_then(|m| m.get(name));

    let name = match query_param(query, "name") {
        Some(name) => name,
        None => match field("filename") {
            None | Some(serde_json::Value::Null) => {
                return Err(bad("An object name must be specified"));
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("The filename must be a string")),
        },
    };
    let checksum = match query_param(query, "checksum") {
        Some(c) => Some(c),
        None => match field("checksum") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("The checksum must be a string or null")),
        },
    };
    let checksum = match checksum.as_deref() {
        None | Some("") => None,
        Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(c.to_ascii_lowercase())
        }
        Some(_) => return Err(bad("The checksum must be a SHA-256 in hex (64 hex digits)")),
    };

    if name.is_empty() {
        return Err(bad("An object name must be specified"));
    }
    // One set of rules (crate::keys) for the API, the store and the client: a name the store
    // would refuse is a 400 with its reason here, never a 500 a client would retry.
    if let Some(why) = keys::object_name_problem(&name) {
        return Err(bad(why));
    }
    let key = match name.rsplit_once('/') {
        None => format!("uploads/{}/{}", identity.user, name),
        Some((group, _)) => {
            if !identity.in_group(group) {
                return Err((
                    StatusCode::FORBIDDEN,
                    "Not authorized to access upload with this path",
                ));
            }
            format!("uploads/{name}")
        }
    };
    // The prefix can push a valid name past the key length limit.
    if let Some(why) = keys::object_name_problem(&key) {
        return Err(bad(why));
    }
    Ok(UploadRequest { key, checksum })
}

/// `POST /data/upload` (and `POST /data`): a presigned POST (with a checksum) or PUT URL.
async fn upload(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let identity = match authenticate(&state, &headers) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let body = match read_body(&headers, body, &state.limits).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let request = match parse_upload(identity, query.as_deref(), &body) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    match state
        .backend
        .presign_upload(&request.key, request.checksum.as_deref())
        .await
    {
        Ok(Presigned::Post { url, fields }) => (
            StatusCode::CREATED,
            axum::Json(PostAnswer {
                url: &url,
                fields: OrderedFields(&fields),
            }),
        )
            .into_response(),
        Ok(Presigned::Put { url }) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "url": url })),
        )
            .into_response(),
        Err(e) => {
            super::log_error(&format!("presigning {}", request.key), &e);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Unable to create a presigned URL",
            )
        }
    }
}

/// `{"url": U, "fields": {...}}` with the fields in signing order.
#[derive(Serialize)]
struct PostAnswer<'a> {
    url: &'a str,
    fields: OrderedFields<'a>,
}

/// A JSON object that keeps its pairs' order (serde_json's `Map` would sort them).
struct OrderedFields<'a>(&'a [(String, String)]);

impl Serialize for OrderedFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One entry of a listing, named relative to the listed prefix as PROMINENCE does.
#[derive(Serialize)]
struct Listed {
    name: String,
    size: u64,
    /// Flask's JSON encoder writes datetimes as HTTP dates: `Tue, 25 Nov 2025 22:05:32 GMT`.
    #[serde(rename = "lastModified")]
    last_modified: String,
    /// An extension of the API: the SHA-256 of the stored bytes, when the backend knows it (the
    /// embedded store does; S3 listings do not say). Absent rather than `null` otherwise, so the
    /// entry is PROMINENCE's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

async fn list(state: &ApiState, prefix: &str, strip: &str) -> Response {
    match state.backend.list(prefix).await {
        Ok(objects) => {
            let listed: Vec<Listed> = objects
                .into_iter()
                .filter_map(
                    |ObjectInfo {
                         key,
                         size,
                         last_modified,
                         sha256,
                     }| {
                        Some(Listed {
                            name: key.strip_prefix(strip)?.to_string(),
                            size,
                            last_modified: httpdate::fmt_http_date(last_modified),
                            sha256,
                        })
                    },
                )
                .collect();
            (StatusCode::OK, axum::Json(listed)).into_response()
        }
        Err(e) => {
            super::log_error(&format!("listing {prefix}"), &e);
            error(
                StatusCode::BAD_REQUEST,
                "Unable to list objects due to storage system problems",
            )
        }
    }
}

/// `GET /data`: the user's own uploads, named without the `uploads/<user>/` prefix.
async fn list_own(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let identity = match authenticate(&state, &headers) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let prefix = format!("uploads/{}/", identity.user);
    list(&state, &prefix, &prefix).await
}

/// `GET /data/<group path>`: a group's uploads, named `<group path>/...`.
async fn list_path(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    let identity = match authenticate(&state, &headers) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let path = path.trim_end_matches('/');
    if keys::check_object_name(path).is_err() || !identity.may_access_path(path) {
        return error(StatusCode::FORBIDDEN, "Not authorized to access this path");
    }
    list(&state, &format!("uploads/{path}/"), "uploads/").await
}

/// `DELETE /data/<name>`: 204 always, whether or not something was deleted.
async fn delete(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let identity = match authenticate(&state, &headers) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let key = if name.contains('/') {
        if !identity.may_access_path(&name) {
            return error(
                StatusCode::FORBIDDEN,
                "Not authorized to access this object",
            );
        }
        format!("uploads/{name}")
    } else {
        format!("uploads/{}/{}", identity.user, name)
    };
    // PROMINENCE answers 204 whatever happened; a client that is told so journals a deletion
    // that did not happen. A missing object is still a 204 (S3's DeleteObject).
    if let Some(why) = keys::object_name_problem(&key) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    match state.backend.delete(&key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            super::log_error(&format!("deleting {key}"), &e);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Unable to delete the object",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            groups: vec!["g1".into(), "lab/sub".into()],
        }
    }

    fn parse(query: Option<&str>, body: &str) -> Result<UploadRequest, (StatusCode, &'static str)> {
        parse_upload(&alice(), query, body.as_bytes())
    }

    const SUM: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn names_map_to_keys_as_prominence_does() {
        let r = parse(None, r#"{"filename": "a.sif", "checksum": null}"#).unwrap();
        assert_eq!(r.key, "uploads/alice/a.sif");
        assert_eq!(r.checksum, None);
        let r = parse(
            None,
            &format!(r#"{{"filename": "g1/a.sif", "checksum": "{SUM}"}}"#),
        )
        .unwrap();
        assert_eq!(r.key, "uploads/g1/a.sif");
        assert_eq!(r.checksum.as_deref(), Some(SUM));
        assert_eq!(
            parse(None, r#"{"filename": "lab/sub/x"}"#).unwrap().key,
            "uploads/lab/sub/x"
        );
    }

    #[test]
    fn query_parameters_win_over_the_body() {
        let q = format!("name=q.sif&checksum={}", SUM.to_uppercase());
        let r = parse(Some(&q), r#"{"filename": "b.sif", "checksum": null}"#).unwrap();
        assert_eq!(r.key, "uploads/alice/q.sif");
        assert_eq!(r.checksum.as_deref(), Some(SUM));
        // With ?name= the body may be empty.
        assert_eq!(
            parse(Some("name=a+b"), "").unwrap().key,
            "uploads/alice/a b"
        );
    }

    #[test]
    fn a_listed_sha256_follows_the_contract_fields_only_when_known() {
        let listed = |sha256: Option<&str>| {
            serde_json::to_string(&Listed {
                name: "a.sif".into(),
                size: 3,
                last_modified: "Tue, 25 Nov 2025 22:05:32 GMT".into(),
                sha256: sha256.map(str::to_string),
            })
            .unwrap()
        };
        assert_eq!(
            listed(None),
            r#"{"name":"a.sif","size":3,"lastModified":"Tue, 25 Nov 2025 22:05:32 GMT"}"#
        );
        assert_eq!(
            listed(Some(SUM)),
            format!(
                r#"{{"name":"a.sif","size":3,"lastModified":"Tue, 25 Nov 2025 22:05:32 GMT","sha256":"{SUM}"}}"#
            )
        );
    }

    #[test]
    fn bad_requests_get_the_contract_errors() {
        let name_missing = Err((StatusCode::BAD_REQUEST, "An object name must be specified"));
        assert_eq!(parse(None, r#"{"checksum": null}"#), name_missing);
        assert_eq!(parse(None, ""), name_missing);
        assert_eq!(parse(None, r#"{"filename": ""}"#), name_missing);
        assert_eq!(
            parse(None, r#"{"filename": "g2/a"}"#),
            Err((
                StatusCode::FORBIDDEN,
                "Not authorized to access upload with this path"
            ))
        );
        assert_eq!(
            parse(None, r#"{"filename": "lab/a"}"#).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        for body in [
            "{",
            "[1]",
            r#"{"filename": 3}"#,
            r#"{"filename": "a", "checksum": 5}"#,
            r#"{"filename": "a", "checksum": "abc"}"#,
            r#"{"filename": ".."}"#,
            r#"{"filename": "g1/"}"#,
            r#"{"filename": "g1//a"}"#,
            "{\"filename\": \"a\\u0000b\"}",
        ] {
            assert_eq!(
                parse(None, body).unwrap_err().0,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
    }
}
