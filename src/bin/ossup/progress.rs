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
pub fn format_line(done: u64, total: u64, sent_here: u64, elapsed: Duration) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        sent_here as f64 / secs
    } else {
        0.0
    };
    let eta = if rate > 0.0 && total > done {
        let s = ((total - done) as f64 / rate) as u64;
        format!("  ETA {}m{:02}s", s / 60, s % 60)
    } else {
        String::new()
    };
    format!(
        "{} / {}  {pct}%  {}/s{eta}",
        human(done),
        human(total),
        human(rate as u64)
    )
}

/// Bytes in binary units with one decimal.
pub fn human(b: u64) -> String {
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
}
