//! clap definitions for `hashup bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hashup::config::BenchConfig;

/// Flags of `hashup bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Files to hash with mapped and with plain reads (one thread, page cache warm).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Measure in-memory throughput for 1 up to this many threads [default: cores].
    #[arg(long, value_name = "N")]
    pub max_threads: Option<usize>,

    /// Seconds per measurement.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub seconds: f64,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Converts the parsed flags into the core's plain configuration.
    pub fn into_config(self) -> anyhow::Result<BenchConfig> {
        let duration = Duration::try_from_secs_f64(self.seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("--seconds must be a positive number"))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(BenchConfig {
            max_threads: self.max_threads.unwrap_or(cores),
            duration,
            files: self.files,
            json: self.json,
        })
    }
}
