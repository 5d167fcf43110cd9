//! Engine benchmarks: throughput through each I/O path on a page-cached file, and
//! the per-file cost of the whole engine (walk, open, read, hash, hand-offs) on a
//! tree of small files.
//!
//! `cargo bench --bench engine`

use std::fs;
use std::io::Write;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hashup::hash::io::Reader;
use hashup::hash::{FileEntry, HashOptions, Hasher, IoMode};
use hashup::walk::{Walk, WalkOptions};

fn write_file(path: &Path, len: usize) {
    let mut file = fs::File::create(path).unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i: usize| (i * 31 % 251) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

/// One file through `Reader` with each I/O mode, for sizes around the mmap threshold.
fn io_paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("file");
    for size in [64 << 10, 1 << 20, 4 << 20, 16 << 20, 128 << 20] {
        let path = dir.path().join(format!("f{size}"));
        write_file(&path, size);
        group.throughput(Throughput::Bytes(size as u64));
        for (io, name) in [(IoMode::Read, "read"), (IoMode::Mmap, "mmap")] {
            let mut reader = Reader::new(&HashOptions {
                io,
                ..HashOptions::default()
            });
            let entry = FileEntry::named(&path);
            group.bench_with_input(BenchmarkId::new(name, size), &entry, |b, entry| {
                b.iter(|| reader.hash(entry.clone()).unwrap())
            });
        }
    }
    group.finish();
}

/// The whole engine over 2,000 x 4 KiB files in 20 directories: per-file overhead.
fn small_files(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let sub = dir.path().join(format!("d{d:02}"));
        fs::create_dir(&sub).unwrap();
        for f in 0..100 {
            write_file(&sub.join(format!("f{f:03}")), 4096);
        }
    }
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Elements(2000));
    for threads in [1, 2] {
        let options = HashOptions {
            threads,
            ..HashOptions::default()
        };
        group.bench_function(BenchmarkId::new("2000x4KiB", threads), |b| {
            b.iter(|| {
                let walk = Walk::new(vec![dir.path().to_path_buf()], WalkOptions::default());
                let hashed = Hasher::spawn(walk, &options).unwrap().in_order().count();
                assert_eq!(hashed, 2000);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, io_paths, small_files);
criterion_main!(benches);
