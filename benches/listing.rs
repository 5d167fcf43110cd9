//! What a listing of the embedded store costs: 10,000 objects of one user, each with its sidecar
//! as the store writes them, listed through the API (`GET /data`: the walk, the JSON and HTTP on
//! loopback), by the store alone (`Store::list`), and by a store just opened, which has read no
//! sidecar yet (`Store::list, first`; the page cache is warm all the same).
//!
//! `cargo bench --bench listing` (the store goes to `HASHUP_BENCH_DIR`, else the temporary
//! directory). `docs/design.md` ("Listing SHA-256s") has the figures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hashup::serve::auth::{Identity, Tokens};
use hashup::serve::store::{ObjectMeta, Store};
use hashup::serve::{BackendConfig, ServeConfig, Server, StoreConfig};
use hashup::sign::Credentials;
use sha2::{Digest as _, Sha256};

const OBJECTS: usize = 10_000;
const TOKEN: &str = "bench-token";

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        bucket: "hashup".into(),
        region: "us-east-1".into(),
        credentials: Some(Credentials::new("BENCHKEY", "bench-secret")),
    }
}

/// `OBJECTS` small objects under `uploads/alice/`, data first and then the sidecar, as a commit
/// leaves them.
fn fill(dir: &Path) {
    let data_dir = dir.join("hashup/uploads/alice");
    let meta_dir = dir.join(".hashup/meta/hashup/uploads/alice");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&meta_dir).unwrap();
    for i in 0..OBJECTS {
        let name = format!("image-{i:05}.sif");
        let data = format!("object {i}\n").repeat(10);
        std::fs::write(data_dir.join(&name), &data).unwrap();
        let sha256 = hex::encode(Sha256::digest(&data));
        let meta = ObjectMeta {
            key: format!("uploads/alice/{name}"),
            size: data.len() as u64,
            metadata: vec![("prominence_sha256".into(), sha256.clone())],
            sha256,
        };
        std::fs::write(
            meta_dir.join(&name),
            serde_json::to_vec_pretty(&meta).unwrap(),
        )
        .unwrap();
    }
}

fn listing(c: &mut Criterion) {
    let dir = match std::env::var_os("HASHUP_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    fill(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let tokens = Tokens::from_map(HashMap::from([(
        TOKEN.to_string(),
        Identity {
            user: "alice".into(),
            groups: vec![],
        },
    )]))
    .unwrap();
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: Default::default(),
        public_url: None,
        backend: BackendConfig::Store(store_config(dir.path())),
        limits: Default::default(),
    };
    let server = runtime
        .block_on(Server::bind_with_tokens(config, tokens))
        .unwrap();
    let url = format!("{}/data", server.api_url());
    runtime.spawn(server.run_until(std::future::pending()));
    let http = reqwest::Client::new();
    let store = Arc::new(Store::open(store_config(dir.path()), "http://127.0.0.1:1").unwrap());

    let mut group = c.benchmark_group("list-10000-objects");
    group.sample_size(20);
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.bench_function("GET /data", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let body = r.bytes().await.unwrap();
                assert!(body.len() > OBJECTS * 50);
            })
        })
    });
    group.bench_function("Store::list", |b| {
        b.iter(|| {
            let listed = runtime
                .block_on(store.clone().list("uploads/alice/"))
                .unwrap();
            assert_eq!(listed.len(), OBJECTS);
        })
    });
    group.bench_function("Store::list, first", |b| {
        b.iter_batched(
            || Arc::new(Store::open(store_config(dir.path()), "http://127.0.0.1:1").unwrap()),
            |store| {
                let listed = runtime.block_on(store.list("uploads/alice/")).unwrap();
                assert_eq!(listed.len(), OBJECTS);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
