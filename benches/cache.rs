//! What the hash cache costs a nightly rerun: loading (and checking every record of) a cache
//! of 50,000 entries, and looking all of them up; and, for the journal that decides what is
//! already stored, reading a 50,000-record manifest.
//!
//! `cargo bench --bench cache`. These are the figures behind choosing a plain append-only file
//! over an embedded database: the only query is a point lookup of a whole stamp.

use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashup::hash::FileStamp;
use hashup::hash::cache::HashCache;
use hashup::manifest::{Manifest, Record, Status};

const ENTRIES: u64 = 50_000;

fn stamp(i: u64) -> FileStamp {
    FileStamp {
        dev: 64769,
        ino: 1_000_000 + i,
        size: 4096,
        mtime: (1_700_000_000, i as i64),
        ctime: (1_700_000_000, i as i64 + 1),
    }
}

fn cache(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let cache = HashCache::open(dir.path()).unwrap();
    for i in 0..ENTRIES {
        let mut sha = [0u8; 32];
        sha[..8].copy_from_slice(&i.to_le_bytes());
        cache.put(stamp(i), sha, long_ago);
    }
    cache.save().unwrap();
    drop(cache);

    let manifest_path = dir.path().join("journal.jsonl");
    let manifest = Manifest::create(&manifest_path).unwrap();
    for i in 0..ENTRIES {
        manifest
            .record(&Record {
                name: format!("d{:02}/f{i:05}", i % 10),
                path: format!("/data/library/d{:02}/f{i:05}", i % 10),
                size: Some(4096),
                mtime: Some("2026-11-26T01:02:03.123456789Z".into()),
                sha256: Some(format!("{i:064x}")),
                status: Status::Uploaded,
                http_status: Some(204),
                attempts: 1,
                error: None,
                duration_ms: 12,
                checksum_sha256_composite: None,
                etag: None,
                stored_at: None,
                resent: None,
            })
            .unwrap();
    }
    drop(manifest);

    let mut group = c.benchmark_group("rerun-state");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(20);
    group.bench_function("cache-load-50k", |b| {
        b.iter(|| HashCache::open(dir.path()).unwrap().len())
    });
    let loaded = HashCache::open(dir.path()).unwrap();
    group.bench_function("cache-lookup-50k", |b| {
        b.iter(|| {
            (0..ENTRIES)
                .filter(|&i| loaded.get(&stamp(i)).is_some())
                .count()
        })
    });
    group.bench_function("journal-read-50k", |b| {
        b.iter(|| {
            hashup::manifest::read(&manifest_path)
                .unwrap()
                .records
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
