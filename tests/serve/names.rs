//! Names the store cannot hold are refused when presigning, with the reason: a `400`, never a
//! `500` that a client would retry (or a `201` whose upload fails later).

use super::fixture::{Backend, Serve, put, sha256_hex};

#[tokio::test]
async fn unstorable_names_get_400_with_the_reason() {
    let serve = Serve::start(Backend::Store);
    let sum = sha256_hex(b"x");
    let segment_256 = "s".repeat(256);
    let group_segment_256 = format!("g1/{segment_256}");
    let name_1025 = "n".repeat(1025);
    let cases = [
        ("a\\b.sif", "backslash"),
        ("..\\..\\escaped", "backslash"),
        (segment_256.as_str(), "longer than 255 bytes"),
        (group_segment_256.as_str(), "longer than 255 bytes"),
        (name_1025.as_str(), "longer than 1024 bytes"),
    ];
    for (name, why) in cases {
        for checksum in [None, Some(sum.as_str())] {
            let (status, answer) = serve.presign(&serve.alice, name, checksum).await;
            let error = answer["error"].as_str().unwrap_or_default();
            assert_eq!(
                (status, error.contains(why)),
                (400, true),
                "{name:?} (checksum {checksum:?}): {answer}"
            );
        }
    }

    // The longest segment allowed is stored.
    let segment_255 = "s".repeat(255);
    let (status, answer) = serve.presign(&serve.alice, &segment_255, None).await;
    assert_eq!(status, 201, "{answer}");
    let (status, body) = put(answer["url"].as_str().unwrap(), b"x".to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        serve
            .object(&format!("uploads/alice/{segment_255}"))
            .is_file()
    );
}
