//! Progress on stderr while an upload runs: bars for a person at a terminal, a plain line every
//! few seconds for a log, or nothing. One place decides which (hyperfine's `progress_bar.rs`
//! does the same), and every line the run prints while bars are drawn goes through
//! [`Progress::print`] so it never tears a bar.
//!
//! The pipeline only counts, into a shared [`Tally`]; a ticker task here reads the counts and
//! draws, so counting costs an atomic add and drawing never slows an upload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bandwidth::Rate;
use crate::config::ProgressMode;

/// Counts shared by the pipeline (which adds) and the progress display (which reads).
#[derive(Debug, Default)]
pub struct Tally {
    /// Files planned for upload.
    pub planned: AtomicU64,
    /// Files with an outcome (uploaded + failed + skipped).
    pub done: AtomicU64,
    /// Files uploaded.
    pub uploaded: AtomicU64,
    /// Files failed.
    pub failed: AtomicU64,
    /// Files skipped.
    pub skipped: AtomicU64,
    /// Files skipped because they are already stored.
    pub already_stored: AtomicU64,
    /// Of those, files a listing of the destination agreed with.
    pub confirmed: AtomicU64,
    /// Files sent again: the manifests said stored, the destination's listing did not.
    pub resent: AtomicU64,
    /// Bytes of the files uploaded.
    pub bytes_uploaded: AtomicU64,
    /// Bytes read and hashed (each file once, as the engine hands it over; cache hits not).
    pub bytes_hashed: AtomicU64,
    /// Files answered by the hash cache.
    pub cached: AtomicU64,
    /// Time the hashing threads spent on those bytes, summed over files.
    pub hash_nanos: AtomicU64,
    /// File bytes put on the wire, retries included: what moves the byte bar.
    pub bytes_sent: Arc<AtomicU64>,
    /// Uploads allowed in flight now (0: not known yet).
    pub uploads_limit: Arc<AtomicU64>,
    /// `--bwlimit`, shown on the lines and the bar.
    pub cap: std::sync::OnceLock<Arc<crate::bandwidth::Bandwidth>>,
}

impl Tally {
    /// `capped at 8.4 MB/s (--bwlimit 8M)`, `--bwlimit off now` between a timetable's capped
    /// hours, or nothing.
    fn cap_text(&self) -> Option<String> {
        let cap = self.cap.get()?;
        match cap.schedule().rate_now() {
            Rate::Bytes(b) => Some(format!(
                "capped at {:.1} MB/s (--bwlimit {})",
                b as f64 / 1e6,
                Rate::Bytes(b)
            )),
            Rate::Off if cap.schedule().changes_over_time() => Some("--bwlimit off now".into()),
            Rate::Off => None,
        }
    }
}

impl Tally {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How progress is shown, decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// indicatif bars (drawn only when stderr is a terminal).
    Bars,
    /// One plain line this often.
    Lines(Duration),
    /// Nothing.
    Hidden,
}

impl Style {
    /// `auto` means bars on a terminal and lines otherwise (a cron log, a pipe, CI).
    pub fn choose(mode: ProgressMode, every: Duration, stderr_is_terminal: bool) -> Style {
        match mode {
            ProgressMode::Auto if stderr_is_terminal => Style::Bars,
            ProgressMode::Auto | ProgressMode::Log => Style::Lines(every),
            ProgressMode::Bar => Style::Bars,
            ProgressMode::None => Style::Hidden,
        }
    }
}

/// The running display; [`Progress::finish`] stops it.
pub struct Progress {
    bars: Option<MultiProgress>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing `tally` in `style` (call inside the async runtime).
    pub fn start(style: Style, tally: Arc<Tally>, started: Instant) -> Progress {
        match style {
            Style::Hidden => Progress {
                bars: None,
                ticker: None,
            },
            Style::Lines(every) => {
                let ticker = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        eprintln!("hashup: {}", status_line(&tally, started.elapsed()));
                    }
                });
                Progress {
                    bars: None,
                    ticker: Some(ticker),
                }
            }
            Style::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let files = multi.add(ProgressBar::new(0).with_style(style_of(
                    "{elapsed_precise:.dim} {wide_bar:.cyan/blue} {pos}/{len} files, ETA {eta}",
                )));
                let bytes = multi.add(ProgressBar::new(0).with_style(style_of(
                    "         {wide_bar:.green/blue} {binary_bytes}/{binary_total_bytes} sent {binary_bytes_per_sec} {msg}",
                )));
                let ticker = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    loop {
                        tick.tick().await;
                        files.set_length(Tally::get(&tally.planned));
                        files.set_position(Tally::get(&tally.done));
                        // The byte bar's length is what has been hashed so far: hashing runs
                        // ahead of sending, so the bar shows how far the uploads trail.
                        let hashed = Tally::get(&tally.bytes_hashed);
                        let sent = Tally::get(&tally.bytes_sent);
                        bytes.set_length(hashed.max(sent));
                        bytes.set_position(sent);
                        let failed = Tally::get(&tally.failed);
                        let notes: Vec<String> = (failed > 0)
                            .then(|| format!("{failed} failed"))
                            .into_iter()
                            .chain(tally.cap_text())
                            .collect();
                        bytes.set_message(match notes.is_empty() {
                            true => String::new(),
                            false => format!("({})", notes.join(", ")),
                        });
                    }
                });
                Progress {
                    bars: Some(multi),
                    ticker: Some(ticker),
                }
            }
        }
    }

    /// Prints one line to stderr without tearing the bars.
    pub fn print(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Stops drawing and clears the bars (the caller prints the summary).
    pub fn finish(&self) {
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

fn style_of(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// `120/2000 files (118 uploaded, 2 failed), hashed 1.20 GB, uploaded 800.0 MB (160.0 MB/s), 5 s`
pub fn status_line(tally: &Tally, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let uploaded_bytes = Tally::get(&tally.bytes_uploaded);
    let mut line = format!(
        "{}/{} files ({} uploaded, {} failed",
        Tally::get(&tally.done),
        Tally::get(&tally.planned),
        Tally::get(&tally.uploaded),
        Tally::get(&tally.failed),
    );
    let skipped = Tally::get(&tally.skipped);
    if skipped > 0 {
        line += &format!(", {skipped} skipped");
    }
    line += &format!(
        "), hashed {}, uploaded {} ({:.1} MB/s), {:.0} s",
        human_bytes(Tally::get(&tally.bytes_hashed)),
        human_bytes(uploaded_bytes),
        uploaded_bytes as f64 / secs / 1e6,
        secs
    );
    match Tally::get(&tally.uploads_limit) {
        0 => {}
        n => line += &format!(", up to {n} in flight"),
    }
    if let Some(cap) = tally.cap_text() {
        line += ", ";
        line += &cap;
    }
    line
}

/// `1.2 MB` (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.2} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_bars_on_a_terminal_and_lines_elsewhere() {
        let every = Duration::from_secs(5);
        assert_eq!(Style::choose(ProgressMode::Auto, every, true), Style::Bars);
        assert_eq!(
            Style::choose(ProgressMode::Auto, every, false),
            Style::Lines(every)
        );
        assert_eq!(Style::choose(ProgressMode::Bar, every, false), Style::Bars);
        assert_eq!(
            Style::choose(ProgressMode::Log, every, true),
            Style::Lines(every)
        );
        assert_eq!(
            Style::choose(ProgressMode::None, every, true),
            Style::Hidden
        );
    }

    #[test]
    fn the_status_line_says_what_a_log_reader_needs() {
        let tally = Tally::default();
        tally.planned.store(2000, Ordering::Relaxed);
        tally.done.store(120, Ordering::Relaxed);
        tally.uploaded.store(118, Ordering::Relaxed);
        tally.failed.store(2, Ordering::Relaxed);
        tally.bytes_hashed.store(1_200_000_000, Ordering::Relaxed);
        tally.bytes_uploaded.store(800_000_000, Ordering::Relaxed);
        assert_eq!(
            status_line(&tally, Duration::from_secs(5)),
            "120/2000 files (118 uploaded, 2 failed), hashed 1.20 GB, uploaded 800.0 MB (160.0 MB/s), 5 s"
        );
        tally.skipped.store(3, Ordering::Relaxed);
        assert!(status_line(&tally, Duration::from_secs(5)).contains("2 failed, 3 skipped)"));
        tally.uploads_limit.store(256, Ordering::Relaxed);
        assert!(
            status_line(&tally, Duration::from_secs(5)).ends_with(", 5 s, up to 256 in flight")
        );
    }
}
