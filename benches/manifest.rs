//! What the manifest's durability costs: 2,000 records written and flushed one by one with an
//! fsync (`sync_data`) after each, with hashup's batching (a background fsync at most once a
//! second, one more with the summary), and with no fsync at all.
//!
//! `cargo bench --bench manifest` (the files go to `HASHUP_BENCH_DIR`, else the temporary
//! directory: on tmpfs every fsync is free, so point it at a real disk there).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashup::manifest::{Manifest, Record, Status, Summary};

const RECORDS: usize = 2_000;

fn records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| Record {
            name: format!("images/batch-{:02}/image-{i:05}.sif", i % 40),
            path: format!("/data/images/batch-{:02}/image-{i:05}.sif", i % 40),
            size: Some(4096 + i as u64),
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
        .collect()
}

/// Written and flushed per record, as before: optionally fsynced per record too.
fn plain(path: &Path, records: &[Record], fsync_each: bool) {
    let file = File::create(path).unwrap();
    let mut out = BufWriter::new(file.try_clone().unwrap());
    for record in records {
        serde_json::to_writer(&mut out, record).unwrap();
        out.write_all(b"\n").unwrap();
        out.flush().unwrap();
        if fsync_each {
            file.sync_data().unwrap();
        }
    }
}

fn manifest(c: &mut Criterion) {
    let dir = match std::env::var_os("HASHUP_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("manifest.jsonl");
    let records = records();
    let mut group = c.benchmark_group("manifest-2000-records");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("fsync-per-record", |b| {
        b.iter(|| plain(&path, &records, true))
    });
    group.bench_function("batched-hashup", |b| {
        b.iter(|| {
            let manifest = Manifest::create(&path).unwrap();
            for record in &records {
                manifest.record(record).unwrap();
            }
            manifest.summary(&Summary::default()).unwrap();
        })
    });
    group.bench_function("no-fsync", |b| b.iter(|| plain(&path, &records, false)));
    group.finish();
}

criterion_group!(benches, manifest);
criterion_main!(benches);
