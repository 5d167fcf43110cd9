//! The PROMINENCE API itself: routes, bodies and status codes as the contract has them, and what
//! bad input gets. Run on the embedded store (the backend does not change these answers).

use serde_json::{Value, json};

use super::fixture::{Backend, Serve, http, sha256_hex};
use crate::util;

const SUM: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn raw_upload(
    serve: &Serve,
    path: &str,
    auth: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = http()
        .post(format!("{}{path}", serve.api))
        .header("content-type", "application/json")
        .body(body);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

#[tokio::test]
async fn presign_answers_have_the_contract_shapes() {
    let serve = Serve::start(Backend::Store);
    let alice = format!("Bearer {}", serve.alice);

    // With a checksum: {"url", "fields"}, fields in boto3's order, binding the checksum.
    let body = json!({"filename": "a.sif", "checksum": SUM}).to_string();
    let r = http()
        .post(format!("{}/data/upload", serve.api))
        .header("authorization", &alice)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["url"], format!("{}/store/hashup", serve.base));
    // serde_json's Value sorts keys: read the order off the text.
    let mut names: Vec<(usize, &str)> = answer["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.as_str()))
        .collect();
    names.sort();
    let names: Vec<&str> = names.into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        names,
        [
            "key",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature",
            "x-amz-meta-prominence_sha256",
            "x-amz-checksum-sha256"
        ]
    );
    assert_eq!(answer["fields"]["key"], "uploads/alice/a.sif");
    assert_eq!(answer["fields"]["x-amz-meta-prominence_sha256"], SUM);
    assert_eq!(answer.as_object().unwrap().len(), 2);

    // Without one (null, absent, or "/data" alias): {"url"} only, a presigned PUT.
    for (path, body) in [
        (
            "/data/upload",
            json!({"filename": "b.sif", "checksum": null}),
        ),
        ("/data", json!({"filename": "b.sif"})),
    ] {
        let (status, answer) = raw_upload(&serve, path, Some(&alice), body.to_string()).await;
        assert_eq!(status, 201, "{path}");
        let url = answer["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "{}/store/hashup/uploads/alice/b.sif?X-Amz-Algorithm=",
                serve.base
            )),
            "{url}"
        );
        assert_eq!(answer.as_object().unwrap().len(), 1);
    }

    // ?name= and ?checksum= win over the body; a group name maps to uploads/<group>/...
    let (status, answer) = raw_upload(
        &serve,
        &format!("/data/upload?name=g1%2Fq.sif&checksum={SUM}"),
        Some(&alice),
        json!({"filename": "ignored", "checksum": null}).to_string(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(answer["fields"]["key"], "uploads/g1/q.sif");
}

#[tokio::test]
async fn bad_requests_get_the_contract_errors() {
    let serve = Serve::start(Backend::Store);
    let alice = format!("Bearer {}", serve.alice);
    let auth_failure = json!({"error": "Authentication failure"});
    let good = json!({"filename": "a"}).to_string();

    // Absent, garbage, unknown, non-bearer and expired credentials.
    for auth in [
        None,
        Some("Bearer".to_string()),
        Some("Bearer nope".to_string()),
        Some(format!("Basic {}", serve.alice)),
        Some("garbage".to_string()),
        Some("Bearer two tokens".to_string()),
        Some(format!("Bearer {}", serve.carol)),
    ] {
        let (status, answer) =
            raw_upload(&serve, "/data/upload", auth.as_deref(), good.clone()).await;
        assert_eq!((status, &answer), (401, &auth_failure), "{auth:?}");
    }
    for r in [
        http()
            .get(format!("{}/data", serve.api))
            .send()
            .await
            .unwrap(),
        http()
            .get(format!("{}/data/g1", serve.api))
            .send()
            .await
            .unwrap(),
        http()
            .delete(format!("{}/data/a", serve.api))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), auth_failure);
    }

    let name_missing = json!({"error": "An object name must be specified"});
    let cases: &[(&str, u16, Option<&Value>)] = &[
        (r#"{"checksum": null}"#, 400, Some(&name_missing)),
        (r#"{"filename": null}"#, 400, Some(&name_missing)),
        (r#"{"filename": ""}"#, 400, Some(&name_missing)),
        ("", 400, Some(&name_missing)),
        (r#"{"filename": "a""#, 400, None),
        ("not json at all", 400, None),
        (r#"["filename"]"#, 400, None),
        (r#"{"filename": 7}"#, 400, None),
        (r#"{"filename": ["a"]}"#, 400, None),
        (r#"{"filename": "a", "checksum": 7}"#, 400, None),
        (r#"{"filename": "a", "checksum": "xyz"}"#, 400, None),
        (r#"{"filename": "../a"}"#, 400, None),
        (r#"{"filename": "a\u0000b"}"#, 400, None),
    ];
    for (body, want_status, want_body) in cases {
        let (status, answer) =
            raw_upload(&serve, "/data/upload", Some(&alice), body.to_string()).await;
        assert_eq!(status, *want_status, "{body}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
        if let Some(want) = want_body {
            assert_eq!(&answer, *want, "{body}");
        }
    }

    // Not one of alice's groups (nor a prefix trick on one).
    for name in ["g2/a", "g/a", "g1x/a", "lab/a"] {
        let body = json!({"filename": name}).to_string();
        let (status, answer) = raw_upload(&serve, "/data/upload", Some(&alice), body).await;
        assert_eq!(
            (status, answer),
            (
                403,
                json!({"error": "Not authorized to access upload with this path"})
            ),
            "{name}"
        );
    }

    // 2 MiB: 413, read to the end so the client sees the answer.
    let big = format!(r#"{{"filename": "a", "pad": "{}"}}"#, "x".repeat(2 << 20));
    let (status, answer) = raw_upload(&serve, "/data/upload", Some(&alice), big).await;
    assert_eq!(
        (status, answer),
        (413, json!({"error": "Request body too large"}))
    );
    // Just under 1 MiB is fine.
    let fits = format!(r#"{{"filename": "a", "pad": "{}"}}"#, "x".repeat(1_000_000));
    assert_eq!(
        raw_upload(&serve, "/data/upload", Some(&alice), fits)
            .await
            .0,
        201
    );

    // Unknown routes and methods.
    let r = http()
        .put(format!("{}/data/upload", serve.api))
        .bearer_auth(&serve.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = http()
        .get(format!("{}/nothing", serve.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn listing_and_delete_follow_the_key_layout() {
    let serve = Serve::start(Backend::Store);
    let data = b"some bytes\n".to_vec();
    let sum = sha256_hex(&data);
    for name in ["a.sif", "b.sif", "g1/shared.sif", "lab/sub/deep.sif"] {
        let (status, answer) = serve.presign(&serve.alice, name, Some(&sum)).await;
        assert_eq!(status, 201);
        let (status, body) = super::fixture::post_form(
            answer["url"].as_str().unwrap(),
            &super::fixture::fields_of(&answer),
            &data,
        )
        .await;
        assert_eq!(status, 204, "{name}: {body}");
    }
    // bob's own upload must not show up in alice's listing.
    let (_, answer) = serve.presign(&serve.bob, "a.sif", None).await;
    let (status, _) = super::fixture::put(answer["url"].as_str().unwrap(), data.clone()).await;
    assert_eq!(status, 200);

    let own = serve.list("").await;
    let names: Vec<&str> = own.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.sif", "b.sif"]);
    assert_eq!(own[0]["size"], data.len());
    let date = own[0]["lastModified"].as_str().unwrap();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    // The contract's three fields, and the embedded store's extension.
    assert_eq!(own[0]["sha256"], sum);
    assert_eq!(own[0].as_object().unwrap().len(), 4);

    let g1 = serve.list("/g1").await;
    assert_eq!(g1.len(), 1);
    assert_eq!(g1[0]["name"], "g1/shared.sif");
    assert_eq!(serve.list("/lab/sub").await[0]["name"], "lab/sub/deep.sif");

    let r = http()
        .get(format!("{}/data/g2", serve.api))
        .bearer_auth(&serve.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Not authorized to access this path"})
    );

    // DELETE: 204 when the object is gone (or never was); a name that cannot be a key is a 400,
    // not a 204 for nothing deleted; a group path needs membership.
    for (name, why) in [
        ("a%00b", "The object name contains a control character"),
        ("a%5Cb", "The object name contains a backslash"),
        ("g1/a%01b", "The object name contains a control character"),
    ] {
        let r = http()
            .delete(format!("{}/data/{name}", serve.api))
            .bearer_auth(&serve.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({ "error": why }));
    }
    for name in ["a.sif", "g1/shared.sif", "never-existed"] {
        let r = http()
            .delete(format!("{}/data/{name}", serve.api))
            .bearer_auth(&serve.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{name}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    for name in ["g2/x", "%2F..%2Fx", "g1x/x"] {
        let r = http()
            .delete(format!("{}/data/{name}", serve.api))
            .bearer_auth(&serve.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}");
    }
    let names: Vec<String> = serve
        .list("")
        .await
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b.sif"]);
    assert!(serve.list("/g1").await.is_empty());
    assert!(serve.object("uploads/bob/a.sif").exists());
}

/// A deletion the storage refused is a 500, not PROMINENCE's unconditional 204: a client told
/// 204 journals a deletion that did not happen. (Here the S3 backend's bucket does not exist on
/// SeaweedFS, which refuses the DELETE.)
#[tokio::test]
async fn a_deletion_the_storage_refused_is_a_500() {
    let serve = Serve::start(Backend::S3 {
        bucket: "hashup-no-such-bucket",
    });
    let r = http()
        .delete(format!("{}/data/a.sif", serve.api))
        .bearer_auth(&serve.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Unable to delete the object"})
    );
}

#[test]
fn serve_refuses_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    std::fs::write(&tokens, r#"{"t": {"user": "../root"}}"#).unwrap();
    let run = util::hashup(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .arg("--store")
        .arg(dir.path().join("s"))
        .run();
    assert_eq!(run.code, 2);
    let stderr = &run.stderr;
    assert!(stderr.starts_with("hashup: tokens file"), "{stderr}");

    // No AWS variables: a command starts without them.
    let run = util::hashup(["serve", "--tokens"])
        .arg(&tokens)
        .args(["--s3-endpoint", "http://127.0.0.1:1", "--bucket", "b"])
        .run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("AWS_ACCESS_KEY_ID"));
}
