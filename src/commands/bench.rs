//! `hashup bench`: how fast SHA-256 runs here, per thread count, and on given
//! files with mapped versus plain reads.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::BenchConfig;
use crate::exit::ExitCode;
use crate::hash::io::Reader;
use crate::hash::{FileEntry, HashOptions, IoMode};

/// Bytes each thread hashes per pass: large enough that setup is noise, small
/// enough to stay cache-friendly across passes on any machine.
const BLOCK: usize = 8 << 20;

/// One in-memory measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryRow {
    /// Threads hashing at once.
    pub threads: usize,
    /// Aggregate throughput, GB/s (10^9 bytes).
    pub gb_per_s: f64,
    /// Throughput over `threads` x the single-thread figure.
    pub efficiency: f64,
}

/// One file measured with one I/O mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileRow {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// `read` or `mmap`.
    pub io: &'static str,
    /// Throughput, GB/s (10^9 bytes).
    pub gb_per_s: f64,
}

/// Runs the benchmark and prints a table or JSON.
pub fn run(config: &BenchConfig) -> anyhow::Result<ExitCode> {
    let memory = measure_memory(config.max_threads.max(1), config.duration);
    let mut files = Vec::new();
    for path in &config.files {
        for (io, name) in [(IoMode::Read, "read"), (IoMode::Mmap, "mmap")] {
            files.push(measure_file(path, io, name, config.duration)?);
        }
    }
    if config.json {
        let report = serde_json::json!({
            "sha_ni": sha_extensions(),
            "memory": memory,
            "files": files,
        });
        println!("{report}");
    } else {
        print_table(&memory, &files);
    }
    Ok(ExitCode::Success)
}

fn sha_extensions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Hashes an in-memory block on `1..=max` threads at once, each for `duration`.
pub fn measure_memory(max: usize, duration: Duration) -> Vec<MemoryRow> {
    let block: Vec<u8> = (0..BLOCK).map(|i| (i * 131 % 251) as u8).collect();
    let mut rows: Vec<MemoryRow> = Vec::new();
    for threads in 1..=max {
        let barrier = Barrier::new(threads);
        let bytes: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (block, barrier) = (&block, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let mut done = 0u64;
                        while start.elapsed() < duration {
                            black_box(Sha256::digest(black_box(block.as_slice())));
                            done += block.len() as u64;
                        }
                        (done, start.elapsed())
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    let (done, took) = w.join().expect("bench thread");
                    // Normalise each thread to the nominal duration so a thread that
                    // ran one pass longer does not inflate the total.
                    (done as f64 * duration.as_secs_f64() / took.as_secs_f64()) as u64
                })
                .sum()
        });
        let gb_per_s = bytes as f64 / duration.as_secs_f64() / 1e9;
        let single = rows.first().map_or(gb_per_s, |r| r.gb_per_s);
        rows.push(MemoryRow {
            threads,
            gb_per_s,
            efficiency: gb_per_s / (threads as f64 * single),
        });
    }
    rows
}

/// Hashes one file repeatedly with one I/O mode for about `duration` (at least
/// twice: the first pass warms the page cache and is not counted).
pub fn measure_file(
    path: &std::path::Path,
    io: IoMode,
    name: &'static str,
    duration: Duration,
) -> anyhow::Result<FileRow> {
    let options = HashOptions {
        io,
        ..HashOptions::default()
    };
    let mut reader = Reader::new(&options);
    let entry = FileEntry::named(path);
    let hash = |reader: &mut Reader| {
        reader
            .hash(entry.clone())
            .with_context(|| path.display().to_string())
    };
    let size = hash(&mut reader)?.stamp.size;
    let start = Instant::now();
    let mut passes = 0u32;
    while passes == 0 || start.elapsed() < duration {
        hash(&mut reader)?;
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(FileRow {
        path: path.to_path_buf(),
        size,
        io: name,
        gb_per_s: size as f64 * f64::from(passes) / secs / 1e9,
    })
}

fn print_table(memory: &[MemoryRow], files: &[FileRow]) {
    println!(
        "SHA-256 in memory ({} MiB blocks, SHA extensions: {})",
        BLOCK >> 20,
        if sha_extensions() { "yes" } else { "no" }
    );
    println!(
        "{:>8}  {:>8}  {:>11}  {:>10}",
        "threads", "GB/s", "per thread", "efficiency"
    );
    for row in memory {
        println!(
            "{:>8}  {:>8.3}  {:>11.3}  {:>9.1}%",
            row.threads,
            row.gb_per_s,
            row.gb_per_s / row.threads as f64,
            row.efficiency * 100.0
        );
    }
    if let (Some(single), Some(best)) = (memory.first(), memory.last()) {
        println!(
            "single-core limit: {:.3} GB/s; {} threads reach {:.3} GB/s = {:.1}% of {} x {:.3} GB/s",
            single.gb_per_s,
            best.threads,
            best.gb_per_s,
            best.efficiency * 100.0,
            best.threads,
            single.gb_per_s
        );
    }
    if files.is_empty() {
        return;
    }
    println!();
    println!("files (one thread, page cache warm)");
    println!("{:>14}  {:>5}  {:>8}  path", "bytes", "io", "GB/s");
    for row in files {
        println!(
            "{:>14}  {:>5}  {:>8.3}  {}",
            row.size,
            row.io,
            row.gb_per_s,
            row.path.display()
        );
    }
}
