//! `--bwlimit`: one cap on the bytes per second that every upload in flight shares, whole files
//! and parts alike, optionally changing by the time of day (rclone's syntax).
//!
//! The cap is a virtual clock: each chunk of a request body reserves its bytes' share of time
//! before it is handed to the connection, and waits until the clock, less a small burst
//! allowance, has caught up. Reservations are granted in the order they are asked for, so the
//! uploads in flight share the rate about equally, and the total holds whatever their number.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead of the rate the cap lets bytes go at once: what a chunk may use of time saved
/// while nothing was sent.
const BURST: Duration = Duration::from_millis(100);

/// A rate in bytes per second, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No cap.
    Off,
    /// At most this many bytes per second.
    Bytes(u64),
}

impl Rate {
    /// rclone's form: a number in KiB/s, or with a suffix `B`, `K`, `M`, `G`, `T` (bytes,
    /// KiB, MiB, GiB, TiB per second, either case; fractions allowed), or `off`. rclone's
    /// `UP:DOWN` pair gives the upload rate, `UP`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        if minute_of_day(text).is_some() {
            return Err(format!("{text:?}: a time needs a rate (HH:MM,RATE)"));
        }
        let up = match text.split_once(':') {
            Some((up, down)) => {
                Rate::parse(down)?;
                up
            }
            None => text,
        };
        if up.eq_ignore_ascii_case("off") {
            return Ok(Rate::Off);
        }
        let (number, unit) = match up.char_indices().last() {
            Some((at, c)) if c.is_ascii_alphabetic() => (&up[..at], c.to_ascii_lowercase()),
            _ => (up, 'k'),
        };
        let scale: f64 = match unit {
            'b' => 1.0,
            'k' => 1024.0,
            'm' => 1024.0 * 1024.0,
            'g' => 1024.0 * 1024.0 * 1024.0,
            't' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use B, K, M, G or T)"
                ));
            }
        };
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0 && !number.starts_with('+'))
            .ok_or_else(|| format!("{text:?}: not a rate (e.g. 10M, 512k, off)"))?;
        let bytes = (value * scale).round();
        if bytes < 1.0 {
            return Err(format!(
                "{text:?}: a rate must be at least 1 byte/s, or off"
            ));
        }
        Ok(Rate::Bytes(bytes.min(u64::MAX as f64) as u64))
    }
}

impl std::fmt::Display for Rate {
    /// `off`, or the rate in rclone's units (`8M`, `512K`, `1000B`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Rate::Off => f.write_str("off"),
            Rate::Bytes(b) => {
                for (unit, scale) in [
                    ('T', 1u64 << 40),
                    ('G', 1 << 30),
                    ('M', 1 << 20),
                    ('K', 1 << 10),
                ] {
                    if b >= scale && b % scale == 0 {
                        return write!(f, "{}{unit}", b / scale);
                    }
                }
                write!(f, "{b}B")
            }
        }
    }
}

/// Minutes in a week.
const WEEK: u32 = 7 * 24 * 60;

/// A rate, or rates that change by the local time of day (and day of week).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `(minute of the week from Sunday 00:00, rate)`, sorted; one entry without a time for a
    /// plain rate.
    changes: Vec<(u32, Rate)>,
}

impl Schedule {
    /// A plain rate, or rclone's timetable: space-separated `[Day-]HH:MM,RATE` entries, such
    /// as `08:00,512k 19:00,off` or `Mon-00:00,2M Sat-00:00,off`. An entry without a day holds
    /// every day; each rate holds from its time until the next entry's, and the last entry's
    /// until the first one's (across midnight, or the week).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let entries: Vec<&str> = text.split_whitespace().collect();
        if entries.len() == 1 && !entries[0].contains(',') {
            return Ok(Schedule {
                changes: vec![(0, Rate::parse(entries[0])?)],
            });
        }
        if entries.is_empty() {
            return Err("an empty rate (e.g. 10M, 512k, off)".into());
        }
        let mut changes = Vec::new();
        for entry in entries {
            let (when, rate) = entry
                .split_once(',')
                .ok_or_else(|| format!("{entry:?}: a timetable entry is HH:MM,RATE"))?;
            let rate = Rate::parse(rate)?;
            let (day, time) = match when.split_once('-') {
                Some((day, time)) => (
                    Some(day_of_week(day).ok_or_else(|| {
                        format!("{entry:?}: unknown day {day:?} (Mon, Tue, ... Sun)")
                    })?),
                    time,
                ),
                None => (None, when),
            };
            let minute = minute_of_day(time)
                .ok_or_else(|| format!("{entry:?}: {time:?} is not a time HH:MM"))?;
            match day {
                Some(day) => changes.push((day * 24 * 60 + minute, rate)),
                None => changes.extend((0..7).map(|day| (day * 24 * 60 + minute, rate))),
            }
        }
        changes.sort_by_key(|&(at, _)| at);
        for pair in changes.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!("{text:?}: two entries for the same time"));
            }
        }
        Ok(Schedule { changes })
    }

    /// True for a timetable, false for one rate.
    pub fn changes_over_time(&self) -> bool {
        self.changes.len() > 1
    }

    /// The rate in force at `minute` of the week (0 is Sunday 00:00).
    pub fn rate_at(&self, minute: u32) -> Rate {
        let minute = minute % WEEK;
        let at = self.changes.partition_point(|&(start, _)| start <= minute);
        match at {
            0 => self.changes.last().map_or(Rate::Off, |&(_, rate)| rate),
            n => self.changes[n - 1].1,
        }
    }

    /// The rate in force now, by the local clock.
    pub fn rate_now(&self) -> Rate {
        match self.changes.as_slice() {
            [(_, rate)] => *rate,
            _ => self.rate_at(local_minute_of_week()),
        }
    }
}

fn day_of_week(day: &str) -> Option<u32> {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let day = day.to_ascii_lowercase();
    DAYS.iter()
        .position(|full| day == full[..3] || day == *full)
        .map(|d| d as u32)
}

fn minute_of_day(time: &str) -> Option<u32> {
    let (hours, minutes) = time.split_once(':')?;
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || minutes.len() != 2 || !all_digits(minutes) {
        return None;
    }
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// The local time as minutes since Sunday 00:00.
fn local_minute_of_week() -> u32 {
    // SAFETY: time and localtime_r with valid pointers to plain structs.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        (tm.tm_wday as u32 % 7) * 24 * 60 + (tm.tm_hour as u32 % 24) * 60 + tm.tm_min as u32 % 60
    }
}

/// The run's shared cap.
#[derive(Debug)]
pub struct Bandwidth {
    schedule: Schedule,
    /// When the bytes reserved so far will have gone at the rate: the virtual clock.
    clock: Mutex<Instant>,
}

impl Bandwidth {
    /// A cap following `schedule`.
    pub fn new(schedule: Schedule) -> Bandwidth {
        Bandwidth {
            schedule,
            clock: Mutex::new(Instant::now()),
        }
    }

    /// The schedule it follows.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// How long `bytes` must wait before they go, their time reserved: zero under no cap.
    pub fn reserve(&self, bytes: u64) -> Duration {
        let rate = match self.schedule.rate_now() {
            Rate::Off => return Duration::ZERO,
            Rate::Bytes(rate) => rate,
        };
        let now = Instant::now();
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        // Time not used while nothing was sent is lost, but for the burst allowance.
        let start = (*clock).max(now.checked_sub(BURST).unwrap_or(now));
        *clock = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        clock.saturating_duration_since(now + BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_rclone_reads_them() {
        assert_eq!(Rate::parse("8M"), Ok(Rate::Bytes(8 << 20)));
        assert_eq!(Rate::parse("512k"), Ok(Rate::Bytes(512 << 10)));
        assert_eq!(Rate::parse("512"), Ok(Rate::Bytes(512 << 10)));
        assert_eq!(Rate::parse("1.5M"), Ok(Rate::Bytes(3 << 19)));
        assert_eq!(Rate::parse("100B"), Ok(Rate::Bytes(100)));
        assert_eq!(Rate::parse("1G"), Ok(Rate::Bytes(1 << 30)));
        assert_eq!(Rate::parse("off"), Ok(Rate::Off));
        assert_eq!(Rate::parse("OFF"), Ok(Rate::Off));
        assert_eq!(Rate::parse("10M:100k"), Ok(Rate::Bytes(10 << 20)));
        assert_eq!(Rate::parse("off:1M"), Ok(Rate::Off));
        assert_eq!(Rate::parse("1M:off"), Ok(Rate::Bytes(1 << 20)));
        for bad in [
            "", "M", "-1M", "+1M", "1X", "0", "0.0001B", "nan", "inf", "1e400M",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rates_print_in_rclone_units() {
        assert_eq!(Rate::Bytes(8 << 20).to_string(), "8M");
        assert_eq!(Rate::Bytes(512 << 10).to_string(), "512K");
        assert_eq!(Rate::Bytes(1000).to_string(), "1000B");
        assert_eq!(Rate::Off.to_string(), "off");
    }

    #[test]
    fn a_daily_timetable_wraps_around_midnight() {
        let s = Schedule::parse("08:00,512k 19:00,off").unwrap();
        assert!(s.changes_over_time());
        let monday = 24 * 60;
        assert_eq!(s.rate_at(monday + 7 * 60 + 59), Rate::Off);
        assert_eq!(s.rate_at(monday + 8 * 60), Rate::Bytes(512 << 10));
        assert_eq!(s.rate_at(monday + 18 * 60 + 59), Rate::Bytes(512 << 10));
        assert_eq!(s.rate_at(monday + 19 * 60), Rate::Off);
        // Sunday before 08:00 is still Saturday evening's rate.
        assert_eq!(s.rate_at(0), Rate::Off);
    }

    #[test]
    fn day_entries_hold_until_the_next_across_the_week() {
        let s = Schedule::parse("Mon-08:00,2M Fri-18:00,off").unwrap();
        let at = |day: u32, h: u32| day * 24 * 60 + h * 60;
        assert_eq!(s.rate_at(at(1, 7)), Rate::Off);
        assert_eq!(s.rate_at(at(1, 8)), Rate::Bytes(2 << 20));
        assert_eq!(s.rate_at(at(3, 3)), Rate::Bytes(2 << 20));
        assert_eq!(s.rate_at(at(5, 18)), Rate::Off);
        assert_eq!(s.rate_at(at(0, 12)), Rate::Off);
        assert_eq!(
            Schedule::parse("sunday-00:00,1M")
                .unwrap()
                .rate_at(at(3, 3)),
            Rate::Bytes(1 << 20)
        );
    }

    #[test]
    fn a_plain_rate_is_one_entry() {
        let s = Schedule::parse("10M").unwrap();
        assert!(!s.changes_over_time());
        assert_eq!(s.rate_now(), Rate::Bytes(10 << 20));
    }

    #[test]
    fn bad_timetables_are_refused() {
        for bad in [
            "",
            "08:00",
            "25:00,1M",
            "08:60,1M",
            "8:0,1M",
            "Xyz-08:00,1M",
            "08:00,1X",
            "08:00,1M 08:00,off",
            "08:00,1M,2M",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn reservations_add_up_to_the_rate() {
        let cap = Bandwidth::new(Schedule::parse("1M").unwrap());
        // Ten chunks of 256 KiB at 1 MiB/s: the tenth may go 2.5 s after the first, less the
        // burst allowance, whatever the order they were asked in.
        let waits: Vec<Duration> = (0..10).map(|_| cap.reserve(256 << 10)).collect();
        let last = waits.last().unwrap().as_secs_f64();
        assert!((2.35..=2.41).contains(&last), "last chunk waits {last} s");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            Bandwidth::new(Schedule::parse("off").unwrap()).reserve(1 << 30),
            Duration::ZERO
        );
    }
}
