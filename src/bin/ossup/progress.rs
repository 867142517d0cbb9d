//! Progress output: a redrawn line on a terminal, a plain log line every few seconds
//! otherwise, nothing with `-q`. Owns formatting only.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// True while a progress line is drawn (so log lines clear it first).
static DRAWN: AtomicBool = AtomicBool::new(false);

/// Clears a drawn progress line, if any.
pub fn clear_line() {
    if DRAWN.swap(false, Ordering::Relaxed) {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// Progress display state.
pub struct Progress {
    quiet: bool,
    tty: bool,
    start: Instant,
    last: Option<Instant>,
    first_bytes: Option<u64>,
    done: u64,
    total: u64,
}

impl Progress {
    /// A display on stderr.
    pub fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: None,
            first_bytes: None,
            done: 0,
            total: 0,
        }
    }

    /// Records progress and redraws when due.
    pub fn update(&mut self, done: u64, total: u64) {
        self.done = done;
        self.total = total;
        if self.quiet {
            return;
        }
        let first = *self.first_bytes.get_or_insert(done);
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let now = Instant::now();
        if self.last.is_some_and(|l| now - l < every) && done < total {
            return;
        }
        self.last = Some(now);
        let line = format_line(done, total, done - first, now - self.start);
        if self.tty {
            DRAWN.store(true, Ordering::Relaxed);
            let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(std::io::stderr(), "ossup: info: {line}");
        }
    }

    /// Ends the display.
    pub fn finish(&mut self) {
        if self.tty && !self.quiet && DRAWN.load(Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr());
            DRAWN.store(false, Ordering::Relaxed);
        }
    }
}

/// `12.0 MiB / 256.0 MiB  4%  3.1 MiB/s  ETA 1m18s`
///
/// Integer arithmetic only: the board build carries no float formatting for this.
pub fn format_line(done: u64, total: u64, sent_here: u64, elapsed: Duration) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let nanos = elapsed.as_nanos();
    // Bytes per second, rounded down; u128 keeps `bytes * 1e9` from overflowing.
    let rate = (u128::from(sent_here) * 1_000_000_000)
        .checked_div(nanos)
        .unwrap_or(0);
    let eta = if sent_here > 0 && nanos > 0 && total > done {
        // Seconds left = bytes left / rate, with the exact rate (not the rounded one).
        let s = u128::from(total - done)
            .checked_mul(nanos)
            .map_or(u128::MAX, |n| n / (u128::from(sent_here) * 1_000_000_000));
        let s = u64::try_from(s).unwrap_or(u64::MAX);
        format!("  ETA {}m{:02}s", s / 60, s % 60)
    } else {
        String::new()
    };
    format!(
        "{} / {}  {pct}%  {}/s{eta}",
        human(done),
        human(total),
        human(u64::try_from(rate).unwrap_or(u64::MAX))
    )
}

/// Bytes in binary units with one decimal (`512 B`, `1.5 KiB`, `3.0 MiB`): the unit is the
/// largest one (up to TiB) not above the value, and the tenths are rounded half to even, as
/// `{:.1}` would print the exact quotient.
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut u = 0;
    let mut unit: u128 = 1;
    while u128::from(b) >= unit * 1024 && u < UNITS.len() - 1 {
        unit *= 1024;
        u += 1;
    }
    if u == 0 {
        return format!("{b} B");
    }
    // Tenths of a unit: b * 10 / unit, rounded half to even.
    let scaled = u128::from(b) * 10;
    let (mut tenths, rest) = (scaled / unit, scaled % unit);
    if rest * 2 > unit || (rest * 2 == unit && tenths % 2 == 1) {
        tenths += 1;
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        let l = format_line(1 << 20, 4 << 20, 1 << 20, Duration::from_secs(1));
        assert!(
            l.starts_with("1.0 MiB / 4.0 MiB  25%  1.0 MiB/s  ETA 0m03s"),
            "{l}"
        );
        assert!(format_line(0, 0, 0, Duration::ZERO).contains("100%"));
    }

    /// The float formatting this replaced: the value in the unit, printed with `{:.1}`.
    fn human_f64(b: u64) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = b as f64;
        let mut u = 0;
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            format!("{b} B")
        } else {
            format!("{v:.1} {}", UNITS[u])
        }
    }

    #[test]
    fn human_matches_float_formatting() {
        // Unit edges, ties (1280 B = 1.25 KiB rounds to even: 1.2), 1023.95 KiB and up.
        let mut values = vec![
            0,
            1,
            1023,
            1024,
            1025,
            1280,
            1331,
            1332,
            1792,
            2304,
            u64::MAX >> 11,
        ];
        for u in 1..=5u32 {
            let unit = 1u64 << (10 * u);
            for k in [1, 2, 3, 10, 1023, 1024, 1025] {
                values.extend([
                    unit * k / 20,
                    (unit * k).saturating_sub(1),
                    unit.saturating_mul(k) + 1,
                ]);
            }
            values.extend([unit - unit / 2048, unit - unit / 2048 - 1, unit + unit / 20]);
        }
        // A bounded pseudo-random sweep (xorshift) over magnitudes below 2^53, where f64 is exact.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (11 + x % 50));
        }
        for b in values.into_iter().filter(|&b| b < 1 << 53) {
            assert_eq!(human(b), human_f64(b), "b = {b}");
        }
    }

    #[test]
    fn rate_and_eta() {
        // 3 MiB in 2 s is 1.5 MiB/s; 6 MiB left at that rate is 4 s.
        let l = format_line(3 << 20, 9 << 20, 3 << 20, Duration::from_secs(2));
        assert_eq!(l, "3.0 MiB / 9.0 MiB  33%  1.5 MiB/s  ETA 0m04s");
        // Resumed: only the bytes sent in this run count for the rate.
        let l = format_line(8 << 20, 10 << 20, 1 << 20, Duration::from_millis(500));
        assert_eq!(l, "8.0 MiB / 10.0 MiB  80%  2.0 MiB/s  ETA 0m01s");
        // 100 KiB/s with 1 GiB left: 10485.76 s, shown rounded down as 174m45s.
        let l = format_line(0, 1 << 30, 100 << 10, Duration::from_secs(1));
        assert!(l.ends_with("100.0 KiB/s  ETA 174m45s"), "{l}");
        // Nothing sent yet, or no time elapsed: no ETA, rate 0.
        assert_eq!(
            format_line(0, 1024, 0, Duration::from_secs(3)),
            "0 B / 1.0 KiB  0%  0 B/s"
        );
        assert!(!format_line(1, 1024, 1, Duration::ZERO).contains("ETA"));
        // Done: no ETA.
        assert!(!format_line(1024, 1024, 1024, Duration::from_secs(1)).contains("ETA"));
    }
}
