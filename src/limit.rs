//! How many uploads are in flight: a fixed number (`--uploads N`), or one that finds itself
//! (`--uploads auto`, the default).
//!
//! Far from the store, objects/s ≈ uploads in flight / round-trip time, so the right number
//! grows with distance: 64 in flight caps a 50 ms path at ~1,280 objects/s, while on loopback a
//! 2-core store is saturated long before 128. No fixed number suits both, and the peers each fix
//! one by hand (s5cmd 256, rclone 4 × 4, aws-cli 10).
//!
//! The adaptive limit climbs hills on what the run actually achieves, rather than on a latency
//! model: every window (a few request latencies long) it compares files and bytes completed per
//! second with the window before.
//!
//! - **Probe up.** While the limit was reached (the run was limited by it, not by hashing or a
//!   lack of files), it grows by a step. The window after a change only lets the uploads started
//!   under the new limit come through (one mean slot time); the window after that is judged: if
//!   files finished per second rose by at least [`GAIN`] (or bytes sent did, with no fewer files
//!   finished), the new limit stays and the next probe follows, else the limit goes back.
//! - **Steps.** Until a probe fails the step is × 2, so a WAN path climbs 128 → 256 → 512 in
//!   four windows; after a failed probe the limit holds for a while before gentler probes
//!   (× 1.25). Loopback, where more in flight only queues, pays one short probe and stays
//!   where it was.
//! - **Back off on push-back.** A 429, 503/SlowDown or a timeout from the API or storage (a
//!   whole file's request or one part's) cuts the limit to 70 % (at most once a window) and
//!   holds it: the server said it is full.
//!
//! Every file holds one slot from its send to its record (its URL was asked for while it
//! waited: see [`crate::pipeline`]). Shrinking does not cancel
//! anything: slots are taken back as uploads finish.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The throughput rise that makes a larger limit worth keeping.
pub const GAIN: f64 = 1.10;

/// Where the adaptive limit starts. Measured at 2,000 × 4 KiB on SeaweedFS (scripts in the
/// README's upload section), 128 was the best start on loopback and beat 64 at 50 ms RTT; 256
/// was faster at 50 ms in direct mode but slower on loopback.
pub const AUTO_START: usize = 128;

/// The default ceiling of the adaptive limit. Each upload in flight holds a connection and an
/// open file; the run raises its soft file-descriptor limit to fit.
pub const AUTO_MAX: usize = 1024;

/// The shortest and longest adjustment window.
const WINDOW_MIN: Duration = Duration::from_millis(100);
const WINDOW_MAX: Duration = Duration::from_secs(3);

/// Windows to hold after a failed probe or a push-back before probing again.
const HOLD_WINDOWS: u32 = 8;

/// How many uploads may be in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Exactly this many (`--uploads N`).
    Fixed(usize),
    /// Found while running, between 1 and `max` (`--uploads auto[:MAX]`).
    Auto {
        /// The ceiling.
        max: usize,
    },
}

impl Concurrency {
    /// The most uploads that can ever be in flight.
    pub fn ceiling(self) -> usize {
        match self {
            Concurrency::Fixed(n) => n.max(1),
            Concurrency::Auto { max } => max.max(1),
        }
    }
}

impl std::str::FromStr for Concurrency {
    type Err = String;

    /// `N`, `auto` or `auto:MAX`.
    fn from_str(s: &str) -> Result<Self, String> {
        let positive = |v: &str| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "expected a positive number, `auto` or `auto:MAX`, not {s:?}"
            )),
        };
        match s.strip_prefix("auto") {
            Some("") => Ok(Concurrency::Auto { max: AUTO_MAX }),
            Some(rest) => match rest.strip_prefix(':') {
                Some(max) => Ok(Concurrency::Auto {
                    max: positive(max)?,
                }),
                None => Err(format!(
                    "expected a positive number, `auto` or `auto:MAX`, not {s:?}"
                )),
            },
            None => positive(s).map(Concurrency::Fixed),
        }
    }
}

/// File descriptors kept for everything but uploads: the manifest, the hash cache, the
/// hashing threads' files, the API's connections, standard streams.
const FD_RESERVE: u64 = 128;

/// Raises the soft limit on open files to the hard one (each upload in flight holds a socket
/// and an open file; many systems start processes at 1,024) and returns how many uploads fit.
pub fn uploads_that_fit() -> usize {
    match crate::rlimit::raise_open_files_limit() {
        Some(soft) => (soft.saturating_sub(FD_RESERVE) / 2).max(1) as usize,
        None => AUTO_MAX,
    }
}

impl Concurrency {
    /// An adaptive ceiling brought within `fit` uploads (see [`uploads_that_fit`]); a fixed
    /// number is the user's to choose and stays.
    pub fn within(self, fit: usize) -> Concurrency {
        match self {
            Concurrency::Auto { max } => Concurrency::Auto {
                max: max.min(fit).max(1),
            },
            fixed => fixed,
        }
    }
}

/// The gate every upload passes, and what the controller learns from them.
pub struct Limiter {
    slots: Arc<Semaphore>,
    mode: Concurrency,
    /// The current limit (permits handed out plus available, less the debt).
    limit: AtomicUsize,
    /// Permits to take back as uploads finish (a shrink larger than what was available).
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    /// The most in flight since the controller last looked.
    peak: AtomicUsize,
    /// The highest limit reached.
    highest: AtomicUsize,
    /// Files finished (any outcome) and push-backs seen, for the controller.
    finished: AtomicU64,
    pushbacks: AtomicU64,
    /// Nanoseconds of the finished files' slot time, for the window length.
    busy_nanos: AtomicU64,
    control: Mutex<Control>,
}

/// The controller's memory between windows.
#[derive(Debug)]
struct Control {
    phase: Phase,
    /// When the current window started, and the counters then.
    window_start: Instant,
    finished_at_start: u64,
    bytes_at_start: u64,
    busy_at_start: u64,
    /// The mean slot time of the uploads that finished in the last window (or, when none did,
    /// at least that window's length): what the next window is measured in.
    slot_time: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Watching at a limit; `hold` windows to go before the next probe, which multiplies the
    /// limit by `step`.
    Steady { hold: u32, step: f64 },
    /// A probe from `from` is running; `rates` are what `from` achieved. Until `settled`, the
    /// uploads started under the new limit are still on their way: the first (short) window
    /// after a change is not judged, so the next one compares steady state with steady state.
    Probing {
        from: usize,
        rates: Rates,
        step: f64,
        settled: bool,
    },
}

/// The probe step until a probe fails: a far store is reached in a few windows (128 → 256 →
/// 512 → 1,024). × 4 overshot: at 50 ms RTT on a 2-core machine, 1,024 in flight is slower than
/// 512, and the failed probe to it cost more than the climb saved.
const START_STEP: f64 = 2.0;

/// The step after a failed probe of `step`: a larger step gives way to × 2 at once, × 2 to
/// × 1.25 after a hold.
fn after_failed(step: f64) -> Phase {
    if step > 2.0 {
        Phase::Steady { hold: 0, step: 2.0 }
    } else {
        Phase::Steady {
            hold: HOLD_WINDOWS,
            step: 1.25,
        }
    }
}

/// Files and bytes per second over a window.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    files: f64,
    bytes: f64,
}

impl Rates {
    /// Whether these rates beat `was` by [`GAIN`] (nothing is no gain): in files finished, or
    /// in bytes sent while no fewer files finished. Bytes count as they go on the wire, so a
    /// burst of new uploads raises them before the store has taken anything; big files seldom
    /// finish within a window, and then their bytes decide.
    fn gained_on(self, was: Rates) -> bool {
        let gained = |now: f64, was: f64| now > 0.0 && now >= was * GAIN;
        gained(self.files, was.files)
            || (gained(self.bytes, was.bytes) && self.files * GAIN >= was.files)
    }
}

/// One upload's slot; dropping it frees the slot (or pays off a shrink).
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
    taken: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let limiter = &self.limiter;
        limiter.in_flight.fetch_sub(1, Ordering::Relaxed);
        limiter.finished.fetch_add(1, Ordering::Relaxed);
        limiter
            .busy_nanos
            .fetch_add(self.taken.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let paid = limiter
            .debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok();
        if let Some(permit) = self.permit.take()
            && paid
        {
            permit.forget();
        }
    }
}

impl Limiter {
    /// A limiter starting at `N` (fixed) or at [`AUTO_START`] (adaptive, capped by its max).
    pub fn new(mode: Concurrency) -> Arc<Limiter> {
        let start = match mode {
            Concurrency::Fixed(n) => n.max(1),
            Concurrency::Auto { max } => AUTO_START.min(max.max(1)),
        };
        Arc::new(Limiter {
            slots: Arc::new(Semaphore::new(start)),
            mode,
            limit: AtomicUsize::new(start),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            highest: AtomicUsize::new(start),
            finished: AtomicU64::new(0),
            pushbacks: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            control: Mutex::new(Control {
                phase: Phase::Steady {
                    hold: 0,
                    step: START_STEP,
                },
                window_start: Instant::now(),
                finished_at_start: 0,
                bytes_at_start: 0,
                busy_at_start: 0,
                slot_time: WINDOW_MIN,
            }),
        })
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Slot {
            permit: Some(permit),
            limiter: self.clone(),
            taken: Instant::now(),
        }
    }

    /// The API or storage pushed back (429, 503/SlowDown, a timeout): it is full.
    pub fn pushed_back(&self) {
        self.pushbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Push-backs heard since the last window's decision.
    #[cfg(test)]
    pub(crate) fn pushbacks(&self) -> u64 {
        self.pushbacks.load(Ordering::Relaxed)
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// The highest limit the run reached.
    pub fn highest(&self) -> usize {
        self.highest.load(Ordering::Relaxed)
    }

    /// Whether the limit adapts.
    pub fn adaptive(&self) -> bool {
        matches!(self.mode, Concurrency::Auto { .. })
    }

    /// Adjusts the limit now and then, for as long as it is polled (a fixed limit returns at
    /// once), publishing it in `shown` if given. `bytes` counts the file bytes put on the wire
    /// so far, where the work moves any (an upload's; `None`: requests without a body, judged
    /// by completions alone).
    pub async fn control(
        self: Arc<Self>,
        bytes: Option<Arc<AtomicU64>>,
        shown: Option<Arc<AtomicU64>>,
    ) {
        let publish = || {
            if let Some(shown) = &shown {
                shown.store(self.limit() as u64, Ordering::Relaxed);
            }
        };
        publish();
        let Concurrency::Auto { max } = self.mode else {
            return;
        };
        loop {
            tokio::time::sleep(self.window()).await;
            let bytes = bytes.as_ref().map_or(0, |b| b.load(Ordering::Relaxed));
            self.adjust(max, bytes, Instant::now());
            publish();
        }
    }

    /// A window is two mean slot times long (as last measured: the window being timed has no
    /// finished uploads yet), within [`WINDOW_MIN`]..[`WINDOW_MAX`]; the settling window after a
    /// probe's change is one (by its end, uploads started under the new limit are finishing).
    fn window(&self) -> Duration {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let mean = control.slot_time;
        let slots = match control.phase {
            Phase::Probing { settled: false, .. } => 1,
            _ => 2,
        };
        (mean * slots).clamp(WINDOW_MIN, WINDOW_MAX)
    }

    /// One window's decision (see the module docs).
    fn adjust(&self, max: usize, bytes: u64, now: Instant) {
        let mut c = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let secs = now.duration_since(c.window_start).as_secs_f64().max(1e-3);
        let finished = self.finished.load(Ordering::Relaxed);
        let rates = Rates {
            files: (finished - c.finished_at_start) as f64 / secs,
            bytes: (bytes - c.bytes_at_start) as f64 / secs,
        };
        let pushbacks = self.pushbacks.swap(0, Ordering::Relaxed);
        let limit = self.limit();
        // Whether the limit held the run back: otherwise this window says nothing about it.
        let limited = self
            .peak
            .swap(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed)
            >= limit;
        let busy = self.busy_nanos.load(Ordering::Relaxed);
        c.slot_time = match finished - c.finished_at_start {
            // None finished: they take at least as long as the window.
            0 => c.slot_time.max(now.duration_since(c.window_start)),
            n => Duration::from_nanos((busy - c.busy_at_start) / n),
        };
        c.window_start = now;
        c.finished_at_start = finished;
        c.bytes_at_start = bytes;
        c.busy_at_start = busy;

        if pushbacks > 0 {
            self.set_limit(((limit as f64) * 0.7) as usize, max);
            c.phase = Phase::Steady {
                hold: HOLD_WINDOWS,
                step: 1.25,
            };
            return;
        }
        c.phase = match c.phase {
            Phase::Steady { hold, step } if hold > 0 => Phase::Steady {
                hold: hold - 1,
                step,
            },
            Phase::Steady { step, .. } if limited && limit < max => {
                self.set_limit(((limit as f64) * step).ceil() as usize, max);
                Phase::Probing {
                    from: limit,
                    rates,
                    step,
                    settled: false,
                }
            }
            steady @ Phase::Steady { .. } => steady,
            Phase::Probing {
                settled: false,
                from,
                rates,
                step,
            } => Phase::Probing {
                from,
                rates,
                step,
                settled: true,
            },
            Phase::Probing {
                from,
                rates: was,
                step,
                settled: true,
            } => {
                if rates.gained_on(was) {
                    // Worth it: keep it, and probe further if the new limit is reached too.
                    if limited && self.limit() < max {
                        let now_limit = self.limit();
                        self.set_limit(((now_limit as f64) * step).ceil() as usize, max);
                        Phase::Probing {
                            from: now_limit,
                            rates,
                            step,
                            settled: false,
                        }
                    } else {
                        Phase::Steady { hold: 0, step }
                    }
                } else {
                    self.set_limit(from, max);
                    after_failed(step)
                }
            }
        };
    }

    /// Moves the limit to `to` (within 1..=max): new permits, or a debt paid as slots free up.
    fn set_limit(&self, to: usize, max: usize) {
        let to = to.clamp(1, max.max(1));
        let from = self.limit.swap(to, Ordering::Relaxed);
        self.highest.fetch_max(to, Ordering::Relaxed);
        if to > from {
            // Pay off any debt first: those permits were never forgotten.
            let mut grow = to - from;
            while grow > 0 {
                match self
                    .debt
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
                {
                    Ok(_) => grow -= 1,
                    Err(_) => break,
                }
            }
            self.slots.add_permits(grow);
        } else if to < from {
            let shrink = from - to;
            let forgotten = self.slots.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_fits_the_open_file_limit() {
        let fit = uploads_that_fit();
        assert!(fit >= 1);
        assert_eq!(
            Concurrency::Auto { max: AUTO_MAX }.within(100),
            Concurrency::Auto { max: 100 }
        );
        assert_eq!(Concurrency::Fixed(500).within(100), Concurrency::Fixed(500));
    }

    #[test]
    fn parses_fixed_and_auto() {
        assert_eq!("8".parse(), Ok(Concurrency::Fixed(8)));
        assert_eq!("auto".parse(), Ok(Concurrency::Auto { max: AUTO_MAX }));
        assert_eq!("auto:300".parse(), Ok(Concurrency::Auto { max: 300 }));
        for bad in ["0", "auto:0", "autox", "-1", "auto:", ""] {
            assert!(bad.parse::<Concurrency>().is_err(), "{bad}");
        }
    }

    /// Runs windows against a fake path whose throughput is min(limit, capacity) / rtt files
    /// per second, with every slot taken (the run is limit-bound).
    fn settle(capacity: usize, windows: usize) -> Vec<usize> {
        let limiter = Limiter::new(Concurrency::Auto { max: AUTO_MAX });
        let start = Instant::now();
        let mut now = start;
        let mut finished = 0u64;
        let mut limits = Vec::new();
        for _ in 0..windows {
            let limit = limiter.limit();
            limiter.peak.store(limit, Ordering::Relaxed);
            let window = Duration::from_millis(300);
            // Files per window at 50 ms per file per slot.
            finished += (limit.min(capacity) as u64) * 6;
            limiter.finished.store(finished, Ordering::Relaxed);
            now += window;
            limiter.adjust(AUTO_MAX, 0, now);
            limits.push(limiter.limit());
        }
        limits
    }

    #[test]
    fn climbs_while_throughput_rises_and_returns_when_it_stops() {
        // Each probe is a settling window, then a judged one.
        // A far store that takes 1,500 in flight: 128 -> 256 -> 512 -> 1,024 (the ceiling).
        let limits = settle(1500, 8);
        assert_eq!(limits, [256, 256, 512, 512, 1024, 1024, 1024, 1024]);
        // A far store that takes up to 270: the probe to 512 gains 5 %, so back to 256 and hold.
        let limits = settle(270, 14);
        assert_eq!(limits[..5], [256, 256, 512, 512, 256]);
        assert!(limits[5..13].iter().all(|&l| l == 256), "{limits:?}");
        // Then a gentler probe (× 1.25), which gains nothing either.
        assert_eq!(limits[13], 320);
        // A near store saturated at 40: the probe to 256 gains nothing; back to 128, hold.
        let limits = settle(40, 10);
        assert_eq!(limits[..3], [256, 256, 128]);
        assert!(limits[3..].iter().all(|&l| l == 128), "{limits:?}");
    }

    /// A failed × 4 probe (no longer the start, but a possible step) tries × 2 at once.
    #[test]
    fn a_failed_big_step_tries_a_smaller_one_at_once() {
        assert!(matches!(
            after_failed(4.0),
            Phase::Steady { hold: 0, step } if step == 2.0
        ));
        assert!(matches!(
            after_failed(2.0),
            Phase::Steady { hold: HOLD_WINDOWS, step } if step == 1.25
        ));
    }

    #[test]
    fn bytes_alone_gain_only_while_files_keep_up() {
        let was = Rates {
            files: 1000.0,
            bytes: 4e6,
        };
        // A burst of new uploads puts bytes on the wire while fewer files land.
        let burst = Rates {
            files: 600.0,
            bytes: 9e6,
        };
        assert!(!burst.gained_on(was));
        // One big file: nothing finishes, its bytes flow faster.
        let big = |bytes| Rates { files: 0.0, bytes };
        assert!(big(150e6).gained_on(big(80e6)));
        assert!(!big(85e6).gained_on(big(80e6)));
        assert!(!big(0.0).gained_on(big(0.0)));
    }

    /// Windows are measured in the slot time of the last window's uploads: through a presign
    /// API 50 ms away an upload takes two round trips and more, and a window of a fixed 200 ms
    /// (which every window was, before) judged probes on a handful of files.
    #[test]
    fn windows_follow_the_slot_time() {
        let limiter = Limiter::new(Concurrency::Fixed(8));
        let start = limiter.control.lock().unwrap().window_start;
        assert_eq!(limiter.window(), WINDOW_MIN * 2);
        // 10 uploads of 300 ms each finished in the window.
        limiter.finished.store(10, Ordering::Relaxed);
        limiter.busy_nanos.store(3_000_000_000, Ordering::Relaxed);
        limiter.adjust(8, 0, start + Duration::from_millis(600));
        assert_eq!(limiter.window(), Duration::from_millis(600));
        // None finished in 900 ms: they take at least that long.
        limiter.adjust(8, 0, start + Duration::from_millis(1500));
        assert_eq!(limiter.window(), Duration::from_millis(1800));
        // Never past the longest window.
        limiter.adjust(8, 0, start + Duration::from_secs(10));
        assert_eq!(limiter.window(), WINDOW_MAX);
    }

    #[test]
    fn push_back_cuts_the_limit_and_holds_it() {
        let limiter = Limiter::new(Concurrency::Auto { max: AUTO_MAX });
        limiter.pushed_back();
        limiter.adjust(AUTO_MAX, 0, Instant::now() + Duration::from_millis(300));
        assert_eq!(limiter.limit(), 89);
    }

    #[tokio::test]
    async fn shrinking_takes_slots_back_as_uploads_finish() {
        let limiter = Limiter::new(Concurrency::Auto { max: 8 });
        assert_eq!(limiter.limit(), 8);
        let held: Vec<Slot> =
            futures_util::future::join_all((0..8).map(|_| limiter.acquire())).await;
        limiter.set_limit(2, 8);
        assert_eq!(limiter.slots.available_permits(), 0);
        drop(held);
        // Six of the eight permits went to pay the debt.
        assert_eq!(limiter.slots.available_permits(), 2);
        limiter.set_limit(5, 8);
        assert_eq!(limiter.slots.available_permits(), 5);
        assert_eq!(limiter.highest(), 8);
    }
}
