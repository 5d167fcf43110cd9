//! The S3 backend against a real SeaweedFS 4.48: what `serve` hands out is accepted as is, lands
//! with its metadata, and every tampering is refused by SeaweedFS itself.

use std::time::{Duration, SystemTime};

use hashup::sign::{self, PostRequest, UrlRequest};

use super::fixture::{
    Backend, Serve, fields_of, post_form, put, s3_code, sha256_hex, weed, with_field,
};

#[tokio::test]
async fn uploads_land_with_metadata_and_list_and_delete() {
    let weed = weed();
    let bucket = weed.fresh_bucket("land").await;
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let sum = sha256_hex(&data);

    // With a checksum: a POST policy with SigV4 fields for SeaweedFS's URL.
    let (status, answer) = serve.presign(&serve.alice, "with.sif", Some(&sum)).await;
    assert_eq!(status, 201);
    assert_eq!(answer["url"], format!("{}/{bucket}", weed.endpoint));
    let (status, text) =
        post_form(answer["url"].as_str().unwrap(), &fields_of(&answer), &data).await;
    assert_eq!(status, 204, "{text}");
    let (status, meta, body) = weed.get(&bucket, "uploads/alice/with.sif").await;
    assert_eq!((status, meta.as_deref()), (200, Some(sum.as_str())));
    assert_eq!(body, data);

    // Without: a presigned PUT; also for a group path and an awkward name.
    for name in ["without.sif", "g1/shared.sif", "spaced name+ü.sif"] {
        let (status, answer) = serve.presign(&serve.alice, name, None).await;
        assert_eq!(status, 201);
        assert!(answer.get("fields").is_none());
        let (status, text) = put(answer["url"].as_str().unwrap(), data.clone()).await;
        assert_eq!(status, 200, "{name}: {text}");
    }
    let (status, meta, body) = weed.get(&bucket, "uploads/g1/shared.sif").await;
    assert_eq!((status, meta, body.len()), (200, None, data.len()));

    // Listing goes through ListObjectsV2; names and sizes as PROMINENCE shows them.
    let own = serve.list("").await;
    let names: Vec<&str> = own.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["spaced name+ü.sif", "with.sif", "without.sif"]);
    assert!(own.iter().all(|o| o["size"] == data.len()));
    assert!(own[0]["lastModified"].as_str().unwrap().ends_with(" GMT"));
    let g1 = serve.list("/g1").await;
    assert_eq!(g1[0]["name"], "g1/shared.sif");
    // Only the contract's fields: ListObjectsV2 has no metadata, so no `sha256`, not even for
    // with.sif, whose checksum SeaweedFS keeps.
    for object in own.iter().chain(&g1) {
        let mut fields: Vec<&str> = object
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(fields, ["lastModified", "name", "size"], "{object}");
    }

    // DeleteObject.
    for name in ["with.sif", "g1/shared.sif", "not-there"] {
        let r = super::fixture::http()
            .delete(format!("{}/data/{name}", serve.api))
            .bearer_auth(&serve.alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    assert_eq!(weed.get(&bucket, "uploads/alice/with.sif").await.0, 404);
    assert_eq!(serve.list("").await.len(), 2);
    assert!(serve.list("/g1").await.is_empty());
}

#[tokio::test]
async fn seaweedfs_refuses_what_the_signature_does_not_allow() {
    let weed = weed();
    let bucket = weed.fresh_bucket("refuse").await;
    let serve = Serve::start(Backend::S3 { bucket: &bucket });
    let data = b"the content that was hashed\n".to_vec();
    let sum = sha256_hex(&data);
    let (_, answer) = serve.presign(&serve.alice, "r.sif", Some(&sum)).await;
    let url = answer["url"].as_str().unwrap().to_string();
    let fields = fields_of(&answer);
    let with = |name: &str, value: &str| with_field(&fields, name, value);

    // The body's SHA-256 is enforced by the store through x-amz-checksum-sha256.
    let (status, text) = post_form(&url, &fields, b"a different body\n").await;
    assert_eq!((status, s3_code(&text)), (400, "BadDigest"), "{text}");
    for (what, fields) in [
        (
            "tampered checksum metadata",
            with("x-amz-meta-prominence_sha256", &"0".repeat(64)),
        ),
        ("tampered key", with("key", "uploads/bob/r.sif")),
        ("extra field", with("x-amz-meta-extra", "1")),
        ("bad signature", with("x-amz-signature", &"0".repeat(64))),
    ] {
        let (status, text) = post_form(&url, &fields, &data).await;
        assert_eq!(status, 403, "{what}: {text}");
        assert!(
            matches!(s3_code(&text), "AccessDenied" | "SignatureDoesNotMatch"),
            "{what}: {text}"
        );
    }

    // Expired: signed an hour ago for a minute, with the server's own credentials.
    let old = SystemTime::now() - Duration::from_secs(3600);
    let digest: [u8; 32] = hex::decode(&sum).unwrap().try_into().unwrap();
    let expired_post = sign::presign_post(
        &weed.credentials(),
        &PostRequest {
            url: &url,
            bucket: &bucket,
            key: "uploads/alice/r.sif",
            region: "us-east-1",
            now: old,
            expires_in: Duration::from_secs(60),
            meta_sha256: Some(&sum),
            checksum_sha256: Some(digest),
            content_length_range: None,
        },
    );
    let (status, text) = post_form(&url, &expired_post.fields, &data).await;
    assert_eq!((status, s3_code(&text)), (403, "AccessDenied"), "{text}");
    let expired_put = sign::presign_url(
        &weed.credentials(),
        &UrlRequest {
            method: "PUT",
            url: &format!("{url}/uploads/alice/r.sif"),
            region: "us-east-1",
            service: "s3",
            now: old,
            expires_in: Duration::from_secs(60),
            signed_headers: &[],
        },
    )
    .unwrap();
    let (status, text) = put(&expired_put, data.clone()).await;
    assert_eq!((status, s3_code(&text)), (403, "AccessDenied"), "{text}");

    // A PUT URL reused for another key.
    let (_, answer) = serve.presign(&serve.alice, "p.sif", None).await;
    let moved = answer["url"]
        .as_str()
        .unwrap()
        .replace("/p.sif?", "/q.sif?");
    let (status, text) = put(&moved, data.clone()).await;
    assert_eq!(
        (status, s3_code(&text)),
        (403, "SignatureDoesNotMatch"),
        "{text}"
    );

    assert!(serve.list("").await.is_empty());
    assert_eq!(weed.get(&bucket, "uploads/alice/r.sif").await.0, 404);
}
