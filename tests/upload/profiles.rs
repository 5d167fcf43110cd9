//! Direct S3 mode finds its credentials as the AWS tools do: the profile files in `$HOME/.aws`
//! (or where `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` say), web identity through
//! STS, container credentials and the EC2 instance metadata service; uploads go to the real
//! SeaweedFS.
//!
//! SeaweedFS has no STS, instance metadata or container agent that a test can drive, so those
//! three are played by [`Agent`], a small in-test server that hands out SeaweedFS's real keys
//! with an expiry, or the error it is told to. SeaweedFS refuses a request that carries a
//! session token it did not issue itself (`403 InvalidAccessKeyId`), so the agent hands out a
//! session token only where a test wants to see it sent, refused and never printed.

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::serve::fixture::{WEED_KEY, WEED_SECRET, Weed, weed};
use crate::util::{self, Run, tree};

/// The session token the agent hands out with SeaweedFS's keys.
const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLE-session-token-0123456789";

/// The web identity token the tests' pods "have".
const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.web-identity-token.signature";

/// The container agent's authorization token.
const CONTAINER_AUTH: &str = "container-authorization-secret";

/// Every AWS variable a developer's shell might have, removed (the test command drops
/// `AWS_*` already; this says so where it matters).
const AWS_VARS: [&str; 12] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
];

/// What STS answers.
#[derive(Clone, Copy)]
enum Sts {
    /// SeaweedFS's keys, expiring after this long.
    Keys(Duration),
    /// `400 ExpiredTokenException`.
    Expired,
}

#[derive(Default)]
struct Seen {
    /// Bodies of STS requests.
    sts: Vec<String>,
    /// IMDS requests: method, path, `x-aws-ec2-metadata-token`.
    imds: Vec<(String, String, Option<String>)>,
    /// Container requests' `Authorization`.
    container: Vec<Option<String>>,
}

struct AgentState {
    sts: Sts,
    /// Hand out [`SESSION_TOKEN`] with the keys.
    session_token: bool,
    seen: Mutex<Seen>,
}

/// An in-test STS (`POST /`), IMDSv2 (`/latest/...`) and container agent (`GET /creds`).
struct Agent {
    url: String,
    state: Arc<AgentState>,
}

impl Agent {
    async fn start(sts: Sts, session_token: bool) -> Agent {
        let state = Arc::new(AgentState {
            sts,
            session_token,
            seen: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Agent { url, state }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.seen.lock().unwrap())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, `after` from now.
fn expiration(after: Duration) -> String {
    let t = SystemTime::now() + after;
    let s = hashup::utc::amz_date(t); // YYYYMMDDTHHMMSSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

async fn answer(
    State(state): State<Arc<AgentState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let path = uri.path().to_string();
    const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";
    let json_keys = || {
        let mut keys = serde_json::json!({
            "Code": "Success",
            "AccessKeyId": WEED_KEY,
            "SecretAccessKey": WEED_SECRET,
            "Expiration": expiration(Duration::from_secs(3600)),
        });
        if state.session_token {
            keys["Token"] = SESSION_TOKEN.into();
        }
        keys.to_string()
    };
    let xml_token = match state.session_token {
        true => format!("<SessionToken>{SESSION_TOKEN}</SessionToken>"),
        false => String::new(),
    };
    match (method.as_str(), path.as_str()) {
        ("POST", "/") => {
            let body = String::from_utf8(body.to_vec()).unwrap();
            state.seen.lock().unwrap().sts.push(body);
            match state.sts {
                Sts::Keys(lifetime) => format!(
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:ns:sa\
                     </SubjectFromWebIdentityToken><Credentials>{xml_token}\
                     <SecretAccessKey>{WEED_SECRET}</SecretAccessKey><Expiration>{}</Expiration>\
                     <AccessKeyId>{WEED_KEY}</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>\
                     <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>\
                     </AssumeRoleWithWebIdentityResponse>",
                    expiration(lifetime)
                )
                .into_response(),
                Sts::Expired => (
                    StatusCode::BAD_REQUEST,
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                     <Type>Sender</Type><Code>ExpiredTokenException</Code><Message>Token expired: \
                     current date/time 1700000600 must be before the expiration date/time \
                     1700000000</Message></Error><RequestId>r-2</RequestId></ErrorResponse>",
                )
                    .into_response(),
            }
        }
        ("PUT", "/latest/api/token") => {
            let ttl = header("x-aws-ec2-metadata-token-ttl-seconds");
            state
                .seen
                .lock()
                .unwrap()
                .imds
                .push(("PUT".into(), path, ttl.clone()));
            match ttl {
                Some(_) => "imds-session-token".into_response(),
                None => StatusCode::BAD_REQUEST.into_response(),
            }
        }
        ("GET", p) if p.starts_with(ROLE_PATH) => {
            let token = header("x-aws-ec2-metadata-token");
            state
                .seen
                .lock()
                .unwrap()
                .imds
                .push(("GET".into(), path.clone(), token.clone()));
            if token.as_deref() != Some("imds-session-token") {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            match &p[ROLE_PATH.len()..] {
                "" => "uploader-role\n".into_response(),
                "uploader-role" => json_keys().into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
        ("GET", "/creds") => {
            let auth = header("authorization");
            state.seen.lock().unwrap().container.push(auth.clone());
            if auth.as_deref() != Some(CONTAINER_AUTH) {
                return (
                    StatusCode::FORBIDDEN,
                    r#"{"code":"Forbidden","message":"bad token"}"#,
                )
                    .into_response();
            }
            json_keys().into_response()
        }
        ("GET", "/creds-expired") => {
            state
                .seen
                .lock()
                .unwrap()
                .container
                .push(header("authorization"));
            let mut keys: serde_json::Value = serde_json::from_str(&json_keys()).unwrap();
            keys["Expiration"] = "2000-01-01T00:00:00Z".into();
            keys.to_string().into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A source tree of `n` small files, and the manifest's path.
fn fixture(dir: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    let names: Vec<String> = (0..n).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    tree(&src, &files);
    (src, dir.join("manifest.jsonl"))
}

/// `hashup upload SRC --s3 s3://BUCKET/p --manifest M EXTRA...` with `env`, HOME in `home`, on
/// a blocking thread.
async fn upload(
    src: &Path,
    bucket: &str,
    manifest: &Path,
    extra: &[&str],
    env: Vec<(&str, String)>,
    home: &Path,
) -> Run {
    let mut args: Vec<OsString> = vec![
        src.into(),
        "--s3".into(),
        format!("s3://{bucket}/p").into(),
        "--manifest".into(),
        manifest.into(),
        "--progress".into(),
        "none".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let mut command = util::hashup(["upload"]).args(args).home(home);
    for var in AWS_VARS {
        command = command.env_remove(var);
    }
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let command = command.envs(env);
    tokio::task::spawn_blocking(move || command.run())
        .await
        .unwrap()
}

/// All `n` files are in the bucket under `p/`, with their bytes.
async fn assert_stored(weed: &Weed, bucket: &str, n: usize) {
    for i in 0..n {
        let name = format!("f{i:02}");
        let (status, _, body) = weed.get(bucket, &format!("p/{name}")).await;
        assert_eq!((status, body), (200, name.into_bytes()), "p/f{i:02}");
    }
}

/// None of the `n` files is in the bucket.
async fn assert_none_stored(weed: &Weed, bucket: &str, n: usize) {
    for i in 0..n {
        assert_eq!(
            weed.get(bucket, &format!("p/f{i:02}")).await.0,
            404,
            "p/f{i:02}"
        );
    }
}

/// No secret in the output or the manifest.
fn assert_no_secret(r: &Run, manifest: &Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    for secret in secrets {
        for (what, out) in [
            ("stdout", r.stdout_str()),
            ("stderr", r.stderr.as_str()),
            ("manifest", text.as_str()),
        ] {
            assert!(!out.contains(secret), "{what} holds {secret:?}: {out}");
        }
    }
}

#[tokio::test]
async fn a_named_profile_uploads_and_the_wrong_default_one_is_refused() {
    let weed = weed();
    let bucket = weed.fresh_bucket("profile").await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 3);
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "# the default profile points at the same store, with wrong keys\n\
             [default]\nendpoint_url = {0}\n\n[profile x] ; the right one\n\
             endpoint_url = {0}\nregion = us-east-1\n",
            weed.endpoint
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG\naws_secret_access_key = wrong-secret\n\
             [x]\nAWS_ACCESS_KEY_ID = {WEED_KEY}\n  \naws_secret_access_key = {WEED_SECRET}\n"
        ),
    )
    .unwrap();

    // Without AWS_PROFILE: the default profile's keys, refused at once.
    let r = upload(&src, &bucket, &manifest, &[], vec![], &home).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("hashup: stopped: S3 refused the credentials (HTTP 403: "),
        "{}",
        r.stderr
    );
    assert_none_stored(weed, &bucket, 3).await;
    assert_no_secret(&r, &manifest, &["wrong-secret"]);
    std::fs::remove_file(&manifest).unwrap();

    let r = upload(
        &src,
        &bucket,
        &manifest,
        &[],
        vec![("AWS_PROFILE", "x".into())],
        &home,
    )
    .await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 3).await;
    assert_no_secret(&r, &manifest, &[WEED_SECRET]);
}

#[tokio::test]
async fn files_named_by_variables_and_a_broken_profile_named_in_the_error() {
    let weed = weed();
    let bucket = weed.fresh_bucket("files").await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 2);
    // HOME has nothing; the files are elsewhere.
    let config = dir.path().join("aws-config");
    let credentials = dir.path().join("aws-credentials");
    std::fs::write(
        &config,
        format!(
            "[profile batch]\nservices = weed\n[services weed]\ns3 =\n  endpoint_url = {}\n\
             [profile half]\naws_access_key_id = {WEED_KEY}\nendpoint_url = {}\n",
            weed.endpoint, weed.endpoint
        ),
    )
    .unwrap();
    std::fs::write(
        &credentials,
        format!("[batch]\naws_access_key_id = {WEED_KEY}\naws_secret_access_key = {WEED_SECRET}\n"),
    )
    .unwrap();
    let env = |profile: &str| {
        vec![
            ("AWS_CONFIG_FILE", config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_PROFILE", profile.to_string()),
        ]
    };

    let r = upload(&src, &bucket, &manifest, &[], env("half"), dir.path()).await;
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            format!(
                "hashup: profile \"half\" in {}: no aws_secret_access_key\n",
                config.display()
            )
            .as_str()
        )
    );
    assert!(!manifest.exists(), "nothing was started");
    assert_none_stored(weed, &bucket, 2).await;

    let r = upload(&src, &bucket, &manifest, &[], env("batch"), dir.path()).await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 2).await;
}

/// The web identity variables of a Kubernetes pod, with STS at `agent`.
fn web_identity_env(dir: &Path, agent: &Agent) -> Vec<(&'static str, String)> {
    let token = dir.join("token");
    std::fs::write(&token, format!("{WEB_TOKEN}\n")).unwrap();
    vec![
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/uploader".into(),
        ),
        ("AWS_ROLE_SESSION_NAME", "pod-7".into()),
        ("AWS_ENDPOINT_URL_STS", agent.url.clone()),
        ("AWS_ENDPOINT_URL_S3", weed().endpoint.clone()),
    ]
}

#[tokio::test]
async fn a_web_identity_token_is_traded_with_sts_for_the_keys_that_upload() {
    let weed = weed();
    let bucket = weed.fresh_bucket("webid").await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 3);

    // With a session token, as from AWS: signed into the URLs, so SeaweedFS, which did not
    // issue it, refuses them; and never printed.
    let with_token = Agent::start(Sts::Keys(Duration::from_secs(3600)), true).await;
    let env = web_identity_env(dir.path(), &with_token);
    let r = upload(&src, &bucket, &manifest, &[], env, dir.path()).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().last(),
        Some(
            "hashup: stopped: S3 refused the credentials (HTTP 403: InvalidAccessKeyId: The access \
             key ID you provided does not exist in our records.)"
        )
    );
    assert_none_stored(weed, &bucket, 3).await;
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN, WEB_TOKEN]);
    std::fs::remove_file(&manifest).unwrap();

    let agent = Agent::start(Sts::Keys(Duration::from_secs(3600)), false).await;
    let env = web_identity_env(dir.path(), &agent);
    let r = upload(&src, &bucket, &manifest, &[], env, dir.path()).await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 3).await;

    // One call, with the role, the session name and the token, as a form.
    let sts = agent.seen(|s| s.sts.clone());
    assert_eq!(sts.len(), 1, "{sts:?}");
    let form: Vec<(String, String)> = sts[0]
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_string(), v.into_owned())
        })
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("Action"), Some("AssumeRoleWithWebIdentity"));
    assert_eq!(
        field("RoleArn"),
        Some("arn:aws:iam::123456789012:role/uploader")
    );
    assert_eq!(field("RoleSessionName"), Some("pod-7"));
    assert_eq!(field("WebIdentityToken"), Some(WEB_TOKEN));
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN, WEB_TOKEN]);
}

#[tokio::test]
async fn an_expired_web_identity_token_stops_the_run_before_anything_is_sent() {
    let weed = weed();
    let bucket = weed.fresh_bucket("expired").await;
    let agent = Agent::start(Sts::Expired, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 3);

    let env = web_identity_env(dir.path(), &agent);
    let r = upload(&src, &bucket, &manifest, &[], env, dir.path()).await;
    assert_eq!(
        (r.code, r.stdout_str(), r.stderr.as_str()),
        (
            2,
            "",
            format!(
                "hashup: web identity (role arn:aws:iam::123456789012:role/uploader, token {} from \
                 AWS_WEB_IDENTITY_TOKEN_FILE): the web identity token has expired (STS: HTTP 400: \
                 ExpiredTokenException: Token expired: current date/time 1700000600 must be \
                 before the expiration date/time 1700000000)\n",
                dir.path().join("token").display()
            )
            .as_str()
        )
    );
    // Asked once: an expired token does not get better by asking again.
    assert_eq!(agent.seen(|s| s.sts.len()), 1);
    assert!(!manifest.exists(), "nothing was started");
    assert_none_stored(weed, &bucket, 3).await;
    assert_no_secret(&r, &manifest, &[WEB_TOKEN]);
}

#[tokio::test]
async fn credentials_about_to_expire_are_refreshed_during_the_run() {
    let weed = weed();
    let bucket = weed.fresh_bucket("refresh").await;
    // Four minutes left: under the five that trigger a refresh, over the one that blocks.
    let agent = Agent::start(Sts::Keys(Duration::from_secs(240)), false).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 30);

    let env = web_identity_env(dir.path(), &agent);
    let r = upload(
        &src,
        &bucket,
        &manifest,
        &["--uploads", "2"],
        env,
        dir.path(),
    )
    .await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 30).await;
    let calls = agent.seen(|s| s.sts.len());
    assert!(calls >= 2, "STS was asked {calls} time(s): no refresh");
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN, WEB_TOKEN]);
}

#[tokio::test]
async fn instance_metadata_v2_gives_the_keys() {
    let weed = weed();
    let bucket = weed.fresh_bucket("imds").await;
    let agent = Agent::start(Sts::Expired, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 2);

    let env = vec![
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", agent.url.clone()),
        ("AWS_ENDPOINT_URL", weed.endpoint.clone()),
    ];
    let r = upload(&src, &bucket, &manifest, &[], env, dir.path()).await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 2).await;
    // A session token first, then role and credentials asked with it.
    let seen = agent.seen(|s| s.imds.clone());
    let role = "/latest/meta-data/iam/security-credentials/";
    let token = Some("imds-session-token".to_string());
    assert_eq!(
        seen,
        vec![
            (
                "PUT".into(),
                "/latest/api/token".into(),
                Some("21600".into())
            ),
            ("GET".into(), role.into(), token.clone()),
            ("GET".into(), format!("{role}uploader-role"), token),
        ]
    );
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN]);
}

#[tokio::test]
async fn container_credentials_come_with_the_authorization_token() {
    let weed = weed();
    let bucket = weed.fresh_bucket("container").await;
    let agent = Agent::start(Sts::Expired, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 2);

    let env = |auth: &str| {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/creds", agent.url),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", auth.to_string()),
            ("AWS_ENDPOINT_URL_S3", weed.endpoint.clone()),
        ]
    };
    let r = upload(
        &src,
        &bucket,
        &manifest,
        &[],
        env("not-the-token"),
        dir.path(),
    )
    .await;
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            format!(
                "hashup: container credentials at {}/creds: HTTP 403: bad token\n",
                agent.url
            )
            .as_str()
        )
    );
    assert!(!manifest.exists());

    let r = upload(
        &src,
        &bucket,
        &manifest,
        &[],
        env(CONTAINER_AUTH),
        dir.path(),
    )
    .await;
    assert_eq!((r.code, r.stdout_str()), (0, ""), "{}", r.stderr);
    assert_stored(weed, &bucket, 2).await;
    assert_eq!(
        agent.seen(|s| s.container.clone()),
        vec![Some("not-the-token".into()), Some(CONTAINER_AUTH.into())]
    );
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN, CONTAINER_AUTH]);
}

/// Keys that are already expired when the agent hands them out are refused, as botocore
/// refuses them, rather than used and asked for again for every file (the run used to ask 101
/// times for 100 files and exit 0).
#[tokio::test]
async fn container_credentials_that_are_already_expired_are_refused() {
    let weed = weed();
    let bucket = weed.fresh_bucket("expired-keys").await;
    let agent = Agent::start(Sts::Expired, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 100);
    let url = format!("{}/creds-expired", agent.url);
    let env = vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.clone()),
        ("AWS_ENDPOINT_URL_S3", weed.endpoint.clone()),
    ];
    let r = upload(&src, &bucket, &manifest, &[], env, dir.path()).await;
    assert_eq!(
        (r.code, r.stdout_str(), r.stderr.as_str()),
        (
            2,
            "",
            format!(
                "hashup: container credentials at {url}: it handed out credentials that are \
                 already expired\n"
            )
            .as_str()
        )
    );
    assert_eq!(agent.seen(|s| s.container.len()), 1);
    assert!(!manifest.exists());
    assert_none_stored(weed, &bucket, 100).await;
    assert_no_secret(&r, &manifest, &[WEED_SECRET, SESSION_TOKEN]);
}

#[tokio::test]
async fn without_credentials_a_silent_metadata_service_fails_fast() {
    // A listener that never accepts: connections hang as they would at 169.254.169.254 off EC2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (src, manifest) = fixture(dir.path(), 1);
    let env = vec![
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}", silent.local_addr().unwrap()),
        ),
    ];
    let started = Instant::now();
    let r = upload(&src, "no-bucket", &manifest, &[], env, dir.path()).await;
    let took = started.elapsed();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("hashup: no AWS credentials found; tried: environment"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "; EC2 instance metadata at http://{} (no answer (session token): ",
            silent.local_addr().unwrap()
        )),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!manifest.exists());
}
