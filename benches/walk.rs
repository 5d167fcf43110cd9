//! Which walker feeds the hashing pool: walkdir on one thread (sorted, what hashup
//! uses, by name and by whole path) versus the `ignore` crate's parallel walker, over 50,000 files in 50
//! directories. Walking only: no file is opened.
//!
//! `cargo bench --bench walk`

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashup::select::{SelectOptions, Selector};
use hashup::walk::{Walk, WalkOptions};

fn walkers(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..50 {
        let sub = dir.path().join(format!("d{d:02}"));
        fs::create_dir(&sub).unwrap();
        for f in 0..1000 {
            fs::write(sub.join(format!("f{f:04}")), b"x").unwrap();
        }
    }
    let root = dir.path().to_path_buf();
    let mut group = c.benchmark_group("walk-50k");
    group.sample_size(20);
    group.throughput(Throughput::Elements(50_000));
    group.bench_function("walkdir-sorted-by-name", |b| {
        b.iter(|| {
            let files = walkdir::WalkDir::new(&root)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .count();
            assert_eq!(files, 50_000);
        })
    });
    // What hashup's walker does: the same order, compared as whole-path bytes.
    group.bench_function("walkdir-sorted-by-path", |b| {
        b.iter(|| {
            let files = walkdir::WalkDir::new(&root)
                .sort_by(|a, b| a.path().as_os_str().cmp(b.path().as_os_str()))
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .count();
            assert_eq!(files, 50_000);
        })
    });
    // hashup's own walker, no selection: the baseline for the selection stage's cost.
    group.bench_function("hashup-walk", |b| {
        b.iter(|| {
            let files = Walk::new(vec![root.clone()], WalkOptions::default())
                .filter(Result::is_ok)
                .count();
            assert_eq!(files, 50_000);
        })
    });
    // The selection stage: globs alone cost no syscall; a size filter costs one stat per file.
    let globs = SelectOptions {
        include: vec!["f*".into(), "d*/f0*".into(), "d*/f[1-9]*".into()],
        exclude: vec!["*.tmp".into(), "cache/".into()],
        ..SelectOptions::default()
    };
    let min_size = SelectOptions {
        min_size: Some(1),
        ..SelectOptions::default()
    };
    for (name, options) in [
        ("hashup-walk-globs", globs),
        ("hashup-walk-min-size", min_size),
    ] {
        let selector = Selector::new(&options, std::time::SystemTime::now()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let files = Walk::new(vec![root.clone()], WalkOptions::default())
                    .selecting(selector.clone())
                    .filter(Result::is_ok)
                    .count();
                assert_eq!(files, 50_000);
            })
        });
    }
    group.bench_function("walkdir-unsorted", |b| {
        b.iter(|| {
            let files = walkdir::WalkDir::new(&root)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .count();
            assert_eq!(files, 50_000);
        })
    });
    for threads in [1, 2] {
        group.bench_function(format!("ignore-parallel-{threads}"), |b| {
            b.iter(|| {
                let files = AtomicUsize::new(0);
                ignore::WalkBuilder::new(&root)
                    .standard_filters(false)
                    .threads(threads)
                    .build_parallel()
                    .run(|| {
                        Box::new(|entry| {
                            if entry.is_ok_and(|e| e.file_type().is_some_and(|t| t.is_file())) {
                                files.fetch_add(1, Ordering::Relaxed);
                            }
                            ignore::WalkState::Continue
                        })
                    });
                assert_eq!(files.load(Ordering::Relaxed), 50_000);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, walkers);
criterion_main!(benches);
