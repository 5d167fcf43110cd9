//! AWS settings for direct S3 mode, found where the AWS tools find them: credentials, region
//! and endpoint from the command line, the environment and the shared config files, and
//! temporary credentials from STS, a container agent or the EC2 instance metadata service.
//!
//! **Credentials**, the first source that has them (the AWS SDKs' default chain):
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 2. the profile (`AWS_PROFILE`, else `default`) in `~/.aws/credentials` and `~/.aws/config`
//!    (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`): `aws_access_key_id`,
//!    `aws_secret_access_key`, `aws_session_token`, or `role_arn` with
//!    `web_identity_token_file` ([`profile`]);
//! 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (and
//!    `AWS_ROLE_SESSION_NAME`), traded with STS ([`sts`]);
//! 4. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`
//!    ([`ecs`]);
//! 5. the EC2 instance metadata service, IMDSv2, unless `AWS_EC2_METADATA_DISABLED=true`
//!    ([`imds`]).
//!
//! A source that is set up but broken stops the search with its own error (a profile without
//! its secret, an expired web identity token): falling through to another identity would upload
//! as someone the user did not mean. Finding none at all lists what was tried.
//!
//! **Region** and **endpoint**: the flag, then the environment (`AWS_REGION`,
//! `AWS_DEFAULT_REGION`; `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), then the profile
//! (`region`; `endpoint_url` under `s3 =` in its `[services NAME]` section, then its own
//! `endpoint_url`). `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` (or the profile's
//! `ignore_configured_endpoint_urls`) leaves only `--endpoint`.
//!
//! **Why our own code and not the `aws-config` crate:** measured on this project, `aws-config`
//! (rt-tokio + default-https-client) adds 54 crates and about a quarter to a clean build; more
//! to the point, its errors name neither the profile's file nor what was tried, it skips an
//! unreadable config file with only a log line, and its asynchronous credentials cache would
//! still need a synchronous cache in front of it for per-request signing ([`LiveCredentials`]).
//! The subset here (static keys, web identity, container, IMDSv2) is what batch jobs use;
//! SSO, `credential_process` and `source_profile` role chains are refused with a message
//! naming the profile.
//!
//! Every lookup goes through an `env` function, `$HOME` included, so tests need no real
//! environment. Secrets never reach a message: [`crate::sign::Credentials`] redacts itself, and
//! the web identity and container tokens are never quoted.

pub mod ecs;
pub mod imds;
pub mod live;
pub mod profile;
pub mod sts;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use live::{Expiring, LiveCredentials, Source};

use crate::sign::Credentials;

/// The region when nothing names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The largest answer read from STS, a container agent or IMDS (a real one is about 1 KiB).
pub const ANSWER_LIMIT: usize = 64 << 10;

/// The largest token file read (`AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`; a real one is about 1 KiB).
pub const TOKEN_FILE_LIMIT: u64 = 64 << 10;

/// The largest shared config or credentials file read (a thousand profiles fit).
pub const PROFILE_FILE_LIMIT: u64 = 1 << 20;

/// Reads a small file whole: at most `limit` bytes, else an error, and only a regular file
/// (`/dev/null` reads as empty). It is opened without blocking, so a FIFO with no writer is
/// refused at once rather than waited on for ever, and a device such as `/dev/zero` is refused
/// rather than read until memory runs out.
pub(crate) fn read_small_file(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    if path == std::path::Path::new("/dev/null") {
        return Ok(Vec::new());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a directory, FIFO, socket or device is not read)",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            limit >> 10
        )));
    }
    Ok(bytes)
}

/// A setting and where it came from (`--region`, `AWS_REGION`, `profile "x" in FILE`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// Where it came from, for messages.
    pub from: String,
}

/// What direct S3 mode needs to sign: credentials, region and, unless AWS itself, endpoint.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The credentials, kept fresh.
    pub credentials: LiveCredentials,
    /// Where they came from, e.g. `environment`, `profile "x" in /h/.aws/credentials`.
    pub credentials_from: String,
    /// The signing region.
    pub region: Setting,
    /// An S3-compatible endpoint (path-style), or `None` for AWS in the region.
    pub endpoint: Option<Setting>,
}

/// Why no usable credentials (or settings) were found. Each names what failed: the file, the
/// profile, the variable or the service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A shared file cannot be read or parsed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The profile asked for with `AWS_PROFILE` is in neither file.
    #[error("profile {profile:?} (from AWS_PROFILE) is in neither {files}")]
    NoProfile {
        /// The profile's name.
        profile: String,
        /// Both files, `A nor B`.
        files: String,
    },
    /// A profile's settings are incomplete or unusable.
    #[error("profile {profile:?} in {file}: {message}")]
    Profile {
        /// The profile's name.
        profile: String,
        /// The file that holds the setting at fault.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Environment variables that are incomplete or unusable.
    #[error("{0}")]
    Environment(String),
    /// A source of temporary credentials refused or failed.
    #[error("{provider}: {message}")]
    Provider {
        /// The source, e.g. `web identity (role R, token FILE from AWS_WEB_IDENTITY_TOKEN_FILE)`.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// No source had credentials.
    #[error("no AWS credentials found; tried: {}", tried.join("; "))]
    NotFound {
        /// Each source, with why it had none.
        tried: Vec<String>,
    },
}

/// A failed fetch of temporary credentials; `fatal` when asking again will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// One line, no secret.
    pub message: String,
    /// Asking again will not help (an expired token, a denied role).
    pub fatal: bool,
}

/// A fatal fetch (an expired token, a denied role) is not asked again; any other is, after a
/// backoff. Whether the source answered is not told apart: the credentials chain has no
/// "unreachable" rule of its own.
impl crate::request::Classify for FetchError {
    fn class(&self) -> crate::request::Class {
        match self.fatal {
            true => crate::request::Class::Object,
            false => crate::request::Class::Transient,
        }
    }

    fn answered(&self) -> bool {
        true
    }
}

/// The flags of the command line that override the chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    /// `--endpoint`.
    pub endpoint: Option<&'a str>,
    /// `--region`.
    pub region: Option<&'a str>,
}

/// Finds region, endpoint and credentials (see the module docs). Temporary credentials are
/// fetched here, blocking (on a thread of its own, so this may be called from async code),
/// so a refused web identity token stops a command before it starts.
pub fn s3_settings(
    flags: Flags<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Settings, CredentialsError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let profiles = read_profiles(&env)?;
    let profile_from = |found: &profile::Found<'_>| {
        format!("profile {:?} in {}", profiles.name, found.path.display())
    };

    let region = flags
        .region
        .map(|v| setting(v, "--region"))
        .or_else(|| first_env(&env, &["AWS_REGION", "AWS_DEFAULT_REGION"]))
        .or_else(|| {
            let found = profiles.get("region")?;
            Some(setting(found.value, &profile_from(&found)))
        })
        .unwrap_or_else(|| setting(DEFAULT_REGION, "the default"));

    let ignore_configured = is_true(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").as_deref())
        || is_true(
            profiles
                .get("ignore_configured_endpoint_urls")
                .map(|f| f.value),
        );
    let configured_endpoint = |service: &str, service_var: &str| {
        if ignore_configured {
            return None;
        }
        first_env(&env, &[service_var, "AWS_ENDPOINT_URL"]).or_else(|| {
            let found = profiles
                .service(service, "endpoint_url")
                .or_else(|| profiles.get("endpoint_url"))?;
            Some(setting(found.value, &profile_from(&found)))
        })
    };
    let endpoint = flags
        .endpoint
        .map(|v| setting(v, "--endpoint"))
        .or_else(|| configured_endpoint("s3", "AWS_ENDPOINT_URL_S3"));

    let sts_endpoint = || {
        configured_endpoint("sts", "AWS_ENDPOINT_URL_STS")
            .map(|s| s.value)
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", region.value))
    };
    let settings = |credentials: LiveCredentials, from: String| S3Settings {
        credentials,
        credentials_from: from,
        region: region.clone(),
        endpoint: endpoint.clone(),
    };
    let mut tried = Vec::new();

    // 1. The environment.
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            let credentials = Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN"),
            };
            return Ok(settings(credentials.into(), "environment".into()));
        }
        (Some(_), None) => {
            return Err(CredentialsError::Environment(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(CredentialsError::Environment(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
            ));
        }
        (None, None) => tried.push("environment (AWS_ACCESS_KEY_ID is not set)".to_string()),
    }

    // 2. The profile.
    match profile_credentials(&profiles, &env, &sts_endpoint)? {
        ProfileCredentials::Fixed(credentials, from) => {
            return Ok(settings(credentials.into(), from));
        }
        ProfileCredentials::WebIdentity(web) => {
            let from = web.from.clone();
            return fetch_first(Source::WebIdentity(web)).map(|c| settings(c, from));
        }
        ProfileCredentials::None(why) => tried.push(why),
    }

    // 3. Web identity from the environment.
    match (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) {
        (Some(file), Some(role_arn)) => {
            let web = sts::WebIdentity {
                role_arn,
                session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(session_name),
                token_file: expand_home(&file, &env),
                endpoint: sts_endpoint(),
                from: "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            };
            return fetch_first(Source::WebIdentity(web))
                .map(|c| settings(c, "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)".into()));
        }
        (Some(_), None) => {
            return Err(CredentialsError::Environment(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(CredentialsError::Environment(
                "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not".into(),
            ));
        }
        (None, None) => {
            tried.push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE is not set)".to_string())
        }
    }

    // 4. Container credentials.
    if let Some(container) = container(&env)? {
        let from = container.describe();
        return fetch_first(Source::Container(container)).map(|c| settings(c, from));
    }
    tried.push(
        "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set)"
            .to_string(),
    );

    // 5. Instance metadata: a failure here only means "not on EC2".
    if is_true(env("AWS_EC2_METADATA_DISABLED").as_deref()) {
        tried.push("EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)".into());
        return Err(CredentialsError::NotFound { tried });
    }
    let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| {
        match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
            Some(mode) if mode.eq_ignore_ascii_case("ipv6") => imds::IPV6_ENDPOINT.into(),
            _ => imds::DEFAULT_ENDPOINT.into(),
        }
    });
    let imds = imds::Imds {
        endpoint: endpoint.trim_end_matches('/').to_string(),
    };
    let from = imds.describe();
    let source = Source::Imds(imds);
    match live::block_on(source.fetch(1)) {
        Ok(Ok(first)) => Ok(settings(LiveCredentials::refreshing(source, first), from)),
        Ok(Err(e)) => {
            tried.push(format!("{from} ({e})"));
            Err(CredentialsError::NotFound { tried })
        }
        Err(e) => Err(CredentialsError::Provider {
            provider: from,
            message: e,
        }),
    }
}

/// The first credentials from `source`, which then keeps them fresh.
fn fetch_first(source: Source) -> Result<LiveCredentials, CredentialsError> {
    let provider = || source.describe();
    match live::block_on(source.fetch(3)) {
        Ok(Ok(first)) if live::expired(&first, std::time::SystemTime::now()) => {
            Err(CredentialsError::Provider {
                provider: provider(),
                message: "it handed out credentials that are already expired".into(),
            })
        }
        Ok(Ok(first)) => Ok(LiveCredentials::refreshing(source, first)),
        Ok(Err(e)) => Err(CredentialsError::Provider {
            provider: provider(),
            message: e.message,
        }),
        Err(message) => Err(CredentialsError::Provider {
            provider: provider(),
            message,
        }),
    }
}

enum ProfileCredentials {
    /// Keys, and `profile "x" in FILE`.
    Fixed(Credentials, String),
    WebIdentity(sts::WebIdentity),
    /// None here; why, for the list of what was tried.
    None(String),
}

/// The profile's own credentials. A profile named with `AWS_PROFILE` must exist; one with
/// half a key pair, or a kind of credentials hashup does not fetch, is an error naming it.
fn profile_credentials(
    profiles: &profile::Profiles,
    env: &dyn Fn(&str) -> Option<String>,
    sts_endpoint: &dyn Fn() -> String,
) -> Result<ProfileCredentials, CredentialsError> {
    let name = &profiles.name;
    if !profiles.exists() {
        let files = format!(
            "{} nor {}",
            profiles.credentials.path.display(),
            profiles.config.path.display()
        );
        if env("AWS_PROFILE").is_some() {
            return Err(CredentialsError::NoProfile {
                profile: name.clone(),
                files,
            });
        }
        return Ok(ProfileCredentials::None(format!(
            "profile {name:?} (in neither {files})"
        )));
    }
    let error = |file: &std::path::Path, message: String| CredentialsError::Profile {
        profile: name.clone(),
        file: file.display().to_string(),
        message,
    };
    let id = profiles.get("aws_access_key_id");
    let secret = profiles.get("aws_secret_access_key");
    match (id, secret) {
        (Some(id), Some(secret)) => {
            let credentials = Credentials {
                access_key_id: id.value.to_string(),
                secret_access_key: secret.value.to_string(),
                session_token: profiles
                    .get("aws_session_token")
                    .map(|t| t.value.to_string()),
            };
            let from = format!("profile {name:?} in {}", secret.path.display());
            return Ok(ProfileCredentials::Fixed(credentials, from));
        }
        (Some(id), None) => return Err(error(id.path, "no aws_secret_access_key".into())),
        (None, Some(secret)) => return Err(error(secret.path, "no aws_access_key_id".into())),
        (None, None) => {}
    }
    if let Some(role) = profiles.get("role_arn") {
        if let Some(file) = profiles.get("web_identity_token_file") {
            return Ok(ProfileCredentials::WebIdentity(sts::WebIdentity {
                role_arn: role.value.to_string(),
                session_name: profiles
                    .get("role_session_name")
                    .map(|s| s.value.to_string())
                    .unwrap_or_else(session_name),
                token_file: expand_home(file.value, env),
                endpoint: sts_endpoint(),
                from: format!("profile {name:?} in {}", file.path.display()),
            }));
        }
        return Err(error(
            role.path,
            "role_arn without web_identity_token_file (source_profile and credential_source \
             role chains are not supported; put the keys in AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or use a profile with keys)"
                .into(),
        ));
    }
    for key in ["credential_process", "sso_session", "sso_start_url"] {
        if let Some(found) = profiles.get(key) {
            return Err(error(
                found.path,
                format!("{key} is not supported; use a profile with keys or web identity"),
            ));
        }
    }
    Ok(ProfileCredentials::None(format!(
        "profile {name:?} in {} (no credentials in it)",
        profiles.whereabouts()
    )))
}

/// The shared files, and the profile in use.
fn read_profiles(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<profile::Profiles, CredentialsError> {
    // Without $HOME and without the variable there is no file to read.
    let read = |var: &str, default: &str| {
        let path = match (env(var), env("HOME")) {
            (Some(path), _) => expand_home(&path, env),
            (None, Some(home)) => PathBuf::from(home).join(default),
            (None, None) => {
                return Ok(profile::File::missing(PathBuf::from("~").join(default)));
            }
        };
        profile::File::read(path).map_err(|e| CredentialsError::File {
            path: e.path,
            message: e.message,
        })
    };
    Ok(profile::Profiles {
        config: read("AWS_CONFIG_FILE", ".aws/config")?,
        credentials: read("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")?,
        name: env("AWS_PROFILE").unwrap_or_else(|| "default".into()),
    })
}

/// The container credentials endpoint the environment names, if any.
fn container(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ecs::Container>, CredentialsError> {
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => {
            if !relative.starts_with('/') {
                return Err(CredentialsError::Environment(format!(
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI {relative:?} does not start with /"
                )));
            }
            format!("{}{relative}", ecs::ECS_HOST)
        }
        (None, Some(full)) => {
            ecs::allowed_full_uri(&full).map_err(|why| {
                CredentialsError::Environment(format!(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI {full:?}: {why}"
                ))
            })?;
            full
        }
        (None, None) => return Ok(None),
    };
    let authorization = match (
        env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    ) {
        (Some(file), _) => Some(ecs::Authorization::File(expand_home(&file, env))),
        (None, Some(token)) => Some(ecs::Authorization::Token(token)),
        (None, None) => None,
    };
    Ok(Some(ecs::Container { url, authorization }))
}

fn setting(value: &str, from: &str) -> Setting {
    Setting {
        value: value.to_string(),
        from: from.to_string(),
    }
}

fn first_env(env: &dyn Fn(&str) -> Option<String>, vars: &[&str]) -> Option<Setting> {
    vars.iter()
        .find_map(|var| env(var).map(|v| setting(&v, var)))
}

fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `~/rest` with `$HOME` for `~`.
fn expand_home(path: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// A role session name when none is given: `hashup-<unix seconds>`.
fn session_name() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("hashup-{secs}")
}

/// A client for one credentials request: no redirects, `connect` timeout, and no proxy for
/// link-local agents (`proxy: false`), whose requests must never leave the machine.
fn http_client(connect: Duration, proxy: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect)
        .redirect(reqwest::redirect::Policy::none());
    if !proxy {
        builder = builder.no_proxy();
    }
    builder.build().unwrap_or_default()
}

/// The body of an answer as text, at most [`ANSWER_LIMIT`] bytes.
async fn read_body(response: reqwest::Response) -> Result<String, String> {
    match crate::http::read_capped(response, ANSWER_LIMIT).await {
        Ok(Some(body)) => String::from_utf8(body).map_err(|_| "the answer is not UTF-8".into()),
        Ok(None) => Err(format!("the answer is over {ANSWER_LIMIT} bytes")),
        Err(e) => Err(format!(
            "the answer broke off: {}",
            crate::message::error_chain(&e)
        )),
    }
}

/// The JSON the container agent and instance metadata both answer with credentials (ECS
/// may write `code`/`message` in lower case).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysAnswer {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
    #[serde(alias = "code")]
    code: Option<String>,
    #[serde(alias = "message")]
    message: Option<String>,
}

/// What a [`KeysAnswer`] lacks.
enum KeysProblem {
    /// No AccessKeyId or SecretAccessKey.
    NoKey,
    /// An Expiration that is not an ISO 8601 time.
    BadExpiration,
}

impl KeysAnswer {
    /// Whether it carries any secret: an answer no message may quote.
    fn holds_keys(&self) -> bool {
        self.access_key_id.is_some() || self.secret_access_key.is_some() || self.token.is_some()
    }

    /// The keys and when they expire.
    fn into_expiring(self) -> Result<Expiring, KeysProblem> {
        let (Some(id), Some(secret)) = (self.access_key_id, self.secret_access_key) else {
            return Err(KeysProblem::NoKey);
        };
        let expires = match self.expiration {
            Some(e) => Some(crate::utc::parse_iso8601(e.trim()).ok_or(KeysProblem::BadExpiration)?),
            None => None,
        };
        Ok(Expiring {
            credentials: Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: self.token,
            },
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    /// A lookup of `vars`, with instance metadata off (no test may ask 169.254.169.254) unless
    /// `vars` say otherwise.
    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        move |name| map.get(name).cloned()
    }

    /// A HOME with `.aws/config` and `.aws/credentials` holding `config` and `credentials`
    /// (`None`: no such file).
    fn home(config: Option<&str>, credentials: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        if let Some(text) = config {
            std::fs::write(dir.path().join(".aws/config"), text).unwrap();
        }
        if let Some(text) = credentials {
            std::fs::write(dir.path().join(".aws/credentials"), text).unwrap();
        }
        dir
    }

    fn load(vars: &[(&str, &str)], flags: Flags<'_>) -> Result<S3Settings, CredentialsError> {
        s3_settings(flags, &env(vars))
    }

    fn keys(settings: &S3Settings) -> (String, String, Option<String>) {
        let c = settings.credentials.peek().credentials;
        (c.access_key_id, c.secret_access_key, c.session_token)
    }

    fn path(dir: &Path, file: &str) -> String {
        dir.join(".aws").join(file).display().to_string()
    }

    const CONFIG: &str = "[default]\nregion = eu-west-1\nendpoint_url = http://default:1\n\
                          [profile x]\nregion = eu-north-1\nendpoint_url = http://x:1\n\
                          services = local\n[services local]\ns3 =\n  endpoint_url = http://x-s3:1\n";
    const CREDENTIALS: &str = "[default]\naws_access_key_id = WRONG\naws_secret_access_key = wrong\n\
                               [x]\naws_access_key_id = XKEY\naws_secret_access_key = xsecret\n\
                               aws_session_token = xtoken\n";

    #[test]
    fn the_profile_gives_keys_region_and_endpoint() {
        let dir = home(Some(CONFIG), Some(CREDENTIALS));
        let h = dir.path().to_str().unwrap();
        let s = load(&[("HOME", h)], Flags::default()).unwrap();
        assert_eq!(keys(&s), ("WRONG".into(), "wrong".into(), None));
        assert_eq!(
            s.credentials_from,
            format!("profile \"default\" in {}", path(dir.path(), "credentials"))
        );
        assert_eq!(s.region.value, "eu-west-1");
        assert_eq!(s.endpoint.unwrap().value, "http://default:1");

        let s = load(&[("HOME", h), ("AWS_PROFILE", "x")], Flags::default()).unwrap();
        assert_eq!(
            keys(&s),
            ("XKEY".into(), "xsecret".into(), Some("xtoken".into()))
        );
        assert_eq!(
            s.region,
            Setting {
                value: "eu-north-1".into(),
                from: format!("profile \"x\" in {}", path(dir.path(), "config")),
            }
        );
        // The services section's s3 endpoint wins over the profile's own.
        assert_eq!(s.endpoint.unwrap().value, "http://x-s3:1");
    }

    #[test]
    fn flags_then_environment_then_profile() {
        let dir = home(Some(CONFIG), Some(CREDENTIALS));
        let h = dir.path().to_str().unwrap();
        let all = [
            ("HOME", h),
            ("AWS_PROFILE", "x"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://env:1"),
        ];
        let s = load(&all, Flags::default()).unwrap();
        assert_eq!(keys(&s), ("ENVKEY".into(), "envsecret".into(), None));
        assert_eq!(s.credentials_from, "environment");
        assert_eq!(
            (s.region.value.as_str(), s.region.from.as_str()),
            ("ap-south-1", "AWS_DEFAULT_REGION")
        );
        assert_eq!(s.endpoint.unwrap().from, "AWS_ENDPOINT_URL");

        let flags = Flags {
            endpoint: Some("http://flag:1"),
            region: Some("us-west-1"),
        };
        let s = load(&all, flags).unwrap();
        assert_eq!(
            (s.region.value.as_str(), s.region.from.as_str()),
            ("us-west-1", "--region")
        );
        assert_eq!(s.endpoint.unwrap().value, "http://flag:1");

        // Configured endpoints ignored: AWS itself, unless the flag says otherwise.
        let mut ignoring = all.to_vec();
        ignoring.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        assert_eq!(load(&ignoring, Flags::default()).unwrap().endpoint, None);
        assert!(load(&ignoring, flags).unwrap().endpoint.is_some());

        // No files, no variables: us-east-1 on AWS.
        let s = load(
            &[("AWS_ACCESS_KEY_ID", "K"), ("AWS_SECRET_ACCESS_KEY", "S")],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(
            (s.region.value.as_str(), s.region.from.as_str()),
            ("us-east-1", "the default")
        );
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn other_files_by_variable() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cfg");
        let credentials = dir.path().join("creds");
        std::fs::write(&config, "[profile p]\nregion = sa-east-1\n").unwrap();
        std::fs::write(
            &credentials,
            "[p]\naws_access_key_id = P\naws_secret_access_key = ps\n",
        )
        .unwrap();
        let vars = [
            ("HOME", "/nonexistent"),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
            ("AWS_PROFILE", "p"),
        ];
        let s = load(&vars, Flags::default()).unwrap();
        assert_eq!(keys(&s), ("P".into(), "ps".into(), None));
        assert_eq!(s.region.value, "sa-east-1");
        // `~/` is $HOME.
        let s = load(
            &[
                ("HOME", dir.path().to_str().unwrap()),
                ("AWS_SHARED_CREDENTIALS_FILE", "~/creds"),
                ("AWS_PROFILE", "p"),
            ],
            Flags::default(),
        )
        .unwrap();
        assert_eq!(keys(&s).0, "P");
    }

    #[test]
    fn errors_name_the_profile_and_the_file() {
        let dir = home(
            Some(
                "[profile half]\naws_access_key_id = A\n[profile role]\nrole_arn = arn:r\nsource_profile = x\n\
                  [profile proc]\ncredential_process = /bin/true\n[profile empty]\nregion = eu-west-3\n",
            ),
            Some("[other]\naws_secret_access_key = S\n"),
        );
        let h = dir.path().to_str().unwrap();
        let config = path(dir.path(), "config");
        let credentials = path(dir.path(), "credentials");
        let err = |profile: &str| {
            load(&[("HOME", h), ("AWS_PROFILE", profile)], Flags::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("half"),
            format!("profile \"half\" in {config}: no aws_secret_access_key")
        );
        assert_eq!(
            err("other"),
            format!("profile \"other\" in {credentials}: no aws_access_key_id")
        );
        assert!(err("role").starts_with(&format!(
            "profile \"role\" in {config}: role_arn without web_identity_token_file"
        )));
        assert_eq!(
            err("proc"),
            format!(
                "profile \"proc\" in {config}: credential_process is not supported; use a profile with keys or web identity"
            )
        );
        assert_eq!(
            err("nope"),
            format!("profile \"nope\" (from AWS_PROFILE) is in neither {credentials} nor {config}")
        );
        // A profile without credentials sends the search on, and says so when nothing is found.
        assert_eq!(
            err("empty"),
            format!(
                "no AWS credentials found; tried: environment (AWS_ACCESS_KEY_ID is not set); \
                 profile \"empty\" in {config} (no credentials in it); \
                 web identity (AWS_WEB_IDENTITY_TOKEN_FILE is not set); \
                 container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set); \
                 EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"
            )
        );
    }

    #[test]
    fn broken_files_stop_the_search() {
        let dir = home(Some("[default]\nregion\n"), None);
        let err = load(&[("HOME", dir.path().to_str().unwrap())], Flags::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: line 2: expected \"name = value\"",
                path(dir.path(), "config")
            )
        );
        // Even when the environment has keys: the region might have come from it.
        let err = load(
            &[
                ("HOME", dir.path().to_str().unwrap()),
                ("AWS_ACCESS_KEY_ID", "K"),
                ("AWS_SECRET_ACCESS_KEY", "S"),
            ],
            Flags::default(),
        );
        assert!(matches!(err, Err(CredentialsError::File { .. })));
    }

    #[test]
    fn half_set_variables_are_errors() {
        for (vars, message) in [
            (
                &[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")][..],
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
            ),
            (
                &[("AWS_ROLE_ARN", "arn:r")][..],
                "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not",
            ),
            (
                &[(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://10.0.0.1/creds",
                )][..],
                "AWS_CONTAINER_CREDENTIALS_FULL_URI \"http://10.0.0.1/creds\": plain http is allowed only to a loopback address or the ECS/EKS agent",
            ),
            (
                &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "creds")][..],
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \"creds\" does not start with /",
            ),
        ] {
            assert_eq!(
                load(vars, Flags::default()).unwrap_err().to_string(),
                message
            );
        }
        // ECS's relative URI is asked at the agent's address; a token file wins over a token.
        let c = container(&env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://ignored"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.url, "http://169.254.170.2/v2/credentials/abc");
        assert!(c.authorization == Some(ecs::Authorization::File("/var/run/token".into())));
        assert!(ecs::allowed_full_uri("https://creds.example/x").is_ok());
        assert!(ecs::allowed_full_uri("http://127.0.0.1:9/x").is_ok());
        assert!(ecs::allowed_full_uri("http://[::1]:9/x").is_ok());
        assert!(ecs::allowed_full_uri("http://169.254.170.23/v1/credentials").is_ok());
        assert!(ecs::allowed_full_uri("http://[fd00:ec2::23]/v1/credentials").is_ok());
    }

    /// Runs `f` on a thread; `None` if it has not returned within 5 s (it blocked).
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
    }

    /// A FIFO that no one writes to.
    #[cfg(unix)]
    fn fifo(dir: &Path) -> String {
        let path = dir.join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path.display().to_string()
    }

    #[cfg(unix)]
    #[test]
    fn shared_files_that_are_not_small_regular_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        // Sparse: 2 GiB on paper, nothing on disk.
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let huge = huge.display().to_string();
        let not_regular = "cannot read it: not a regular file (a directory, FIFO, socket or \
                           device is not read)";
        for var in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
            for (file, why) in [
                ("/dev/zero", not_regular),
                (fifo.as_str(), not_regular),
                (huge.as_str(), "cannot read it: larger than 1024 KiB"),
            ] {
                let vars = [("HOME", "/nonexistent"), (var, file)];
                let vars: Vec<(String, String)> = vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let err = within_5s(move || {
                    let vars: Vec<(&str, &str)> =
                        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    load(&vars, Flags::default()).unwrap_err().to_string()
                });
                assert_eq!(err, Some(format!("{file}: {why}")), "{var}");
            }
        }
        // /dev/null is an empty file, as the AWS CLI reads it.
        let err = load(
            &[("HOME", "/nonexistent"), ("AWS_CONFIG_FILE", "/dev/null")],
            Flags::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("no AWS credentials found"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn token_files_that_are_not_small_regular_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; (TOKEN_FILE_LIMIT + 1) as usize]).unwrap();
        let big = big.display().to_string();
        for (file, why) in [
            (
                fifo.clone(),
                "not a regular file (a directory, FIFO, socket or device is not read)",
            ),
            (big, "larger than 64 KiB"),
        ] {
            let vars = [
                ("AWS_WEB_IDENTITY_TOKEN_FILE".to_string(), file.clone()),
                ("AWS_ROLE_ARN".into(), "arn:aws:iam::1:role/r".into()),
                ("AWS_REGION".into(), "eu-west-1".into()),
            ];
            let err = within_5s(move || {
                let vars: Vec<(&str, &str)> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                load(&vars, Flags::default()).unwrap_err().to_string()
            });
            assert_eq!(
                err,
                Some(format!(
                    "web identity (role arn:aws:iam::1:role/r, token {file} from \
                     AWS_WEB_IDENTITY_TOKEN_FILE): cannot read the web identity token {file}: \
                     {why}"
                ))
            );
            // The container agent's token file: refused before anything is sent (port 9
            // has no agent).
            let container = ecs::Container {
                url: "http://127.0.0.1:9/creds".into(),
                authorization: Some(ecs::Authorization::File(file.clone().into())),
            };
            let err = within_5s(move || {
                live::block_on(container.fetch())
                    .unwrap()
                    .unwrap_err()
                    .message
            });
            assert_eq!(
                err,
                Some(format!(
                    "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {file}: {why}"
                ))
            );
        }
    }

    #[test]
    fn a_missing_token_file_is_named() {
        let err = load(
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                ("AWS_REGION", "eu-west-1"),
            ],
            Flags::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "web identity (role arn:aws:iam::1:role/r, token /nonexistent/token from \
             AWS_WEB_IDENTITY_TOKEN_FILE): cannot read the web identity token \
             /nonexistent/token: No such file or directory"
        );
    }
}
