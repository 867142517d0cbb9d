//! A token bucket for the upload bandwidth cap (`--limit-rate`).
//!
//! Owns: the arithmetic of "how long must the sender wait before sending `n` more bytes".
//! Must not: read a clock or sleep. The shell passes in a monotonic time in milliseconds and
//! sleeps for the returned delay itself.
//!
//! Model: the bucket holds at most `burst` bytes of credit and refills at `rate` bytes per
//! second. [`TokenBucket::take`] *reserves* `n` bytes at once, letting the balance go negative
//! (a debt), and returns the time until the debt is repaid. A sender that waits that long before
//! each write therefore never exceeds `rate` over any long window, and never more than `burst`
//! bytes beyond it over any short window.
//!
//! Credit is kept in milli-bytes (bytes × 1000) so that refilling at millisecond resolution is
//! exact: `elapsed_ms × rate` milli-bytes, with no rounding that could drift the long-run rate.

/// Milli-bytes per byte: the bucket's internal unit.
const MILLI: i128 = 1000;

/// A token bucket in bytes. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Refill rate in bytes per second; 0 means unlimited.
    rate_bytes_per_sec: u64,
    /// Largest credit, in bytes.
    burst: u64,
    /// Current credit in milli-bytes; negative while in debt.
    tokens: i128,
    /// Time of the last refill; `None` until the first [`TokenBucket::take`].
    last_ms: Option<u64>,
}

impl TokenBucket {
    /// A bucket refilling at `rate_bytes_per_sec` that holds at most `burst` bytes of credit,
    /// starting full. A `rate_bytes_per_sec` of 0 means "no limit": [`TokenBucket::take`]
    /// always returns 0. A `burst` of 0 is allowed (every byte is paced), but a burst of at
    /// least one write buffer (e.g. 64 KiB) keeps the pacing smooth.
    pub fn new(rate_bytes_per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate_bytes_per_sec,
            burst,
            tokens: i128::from(burst) * MILLI,
            last_ms: None,
        }
    }

    /// The configured rate in bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate_bytes_per_sec
    }

    /// The configured burst in bytes.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Reserves `n` bytes at monotonic time `now_ms` and returns how many milliseconds the
    /// caller must wait before sending them (0: send now). The bytes are reserved whatever the
    /// answer, so the caller must not ask again for the same bytes. A `now_ms` earlier than a
    /// previous one (which a monotonic clock never gives) counts as no time passing.
    /// Saturates instead of overflowing: a wait too long for a `u64` is `u64::MAX`.
    pub fn take(&mut self, n: u64, now_ms: u64) -> u64 {
        if self.rate_bytes_per_sec == 0 {
            return 0;
        }
        let rate = i128::from(self.rate_bytes_per_sec);
        let cap = i128::from(self.burst) * MILLI;
        match self.last_ms {
            None => self.last_ms = Some(now_ms),
            Some(last) if now_ms > last => {
                let elapsed = i128::from(now_ms - last);
                // elapsed ms × rate bytes/s = elapsed × rate milli-bytes.
                self.tokens = self
                    .tokens
                    .saturating_add(elapsed.saturating_mul(rate))
                    .min(cap);
                self.last_ms = Some(now_ms);
            }
            Some(_) => {}
        }
        self.tokens = self.tokens.saturating_sub(i128::from(n) * MILLI);
        if self.tokens >= 0 {
            return 0;
        }
        // Debt in milli-bytes / (rate milli-bytes per ms) = ms, rounded up.
        let debt = -self.tokens;
        let wait = (debt + rate - 1) / rate;
        u64::try_from(wait).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a bucket like the shell does: take, sleep the answer, send. Returns the simulated
    /// time at which the last byte was sent.
    fn simulate(bucket: &mut TokenBucket, chunk: u64, chunks: u64, start_ms: u64) -> u64 {
        let mut now = start_ms;
        for _ in 0..chunks {
            now += bucket.take(chunk, now);
        }
        now
    }

    #[test]
    fn long_run_rate_within_one_percent() {
        for &(rate, burst, chunk) in &[
            (1_000_000u64, 65_536u64, 65_536u64),
            (100_000, 65_536, 65_536),
            (333_333, 10_000, 16_384),
            (7_777, 1_000, 1_000),
            (50_000_000, 1 << 20, 65_536),
        ] {
            let mut b = TokenBucket::new(rate, burst);
            let chunks = 2_000u64;
            let end = simulate(&mut b, chunk, chunks, 5);
            let sent = chunk * chunks;
            // The first `burst` bytes go for free; the rest take (sent - burst) / rate seconds.
            let achieved = (sent - burst.min(sent)) as f64 / ((end - 5) as f64 / 1000.0);
            let err = (achieved - rate as f64).abs() / rate as f64;
            assert!(
                err < 0.01,
                "rate {rate} burst {burst} chunk {chunk}: achieved {achieved}"
            );
            // And never faster than the cap plus the burst over the whole run.
            let allowed = burst as f64 + rate as f64 * (end - 5) as f64 / 1000.0;
            assert!(sent as f64 <= allowed + chunk as f64);
        }
    }

    #[test]
    fn burst_is_free_then_paced() {
        let mut b = TokenBucket::new(1000, 5000);
        // Full bucket: five 1000-byte sends at once cost nothing.
        for _ in 0..5 {
            assert_eq!(b.take(1000, 100), 0);
        }
        // The sixth must wait a whole second.
        assert_eq!(b.take(1000, 100), 1000);
        // A long idle period refills only up to the burst, not beyond.
        let mut b = TokenBucket::new(1000, 2000);
        assert_eq!(b.take(0, 0), 0);
        assert_eq!(b.take(2000, 1_000_000), 0);
        assert_eq!(b.take(1, 1_000_000), 1);
    }

    #[test]
    fn waiting_the_answer_repays_the_debt() {
        let mut b = TokenBucket::new(2000, 0);
        let w = b.take(500, 10);
        assert_eq!(w, 250);
        // Asking again exactly when told: no further wait for zero bytes.
        assert_eq!(b.take(0, 10 + w), 0);
        // Asking early: still in debt.
        let mut b = TokenBucket::new(2000, 0);
        assert_eq!(b.take(500, 10), 250);
        assert_eq!(b.take(0, 100), 160);
    }

    #[test]
    fn unlimited_and_clock_going_back() {
        let mut b = TokenBucket::new(0, 0);
        assert_eq!(b.take(u64::MAX, 0), 0);
        let mut b = TokenBucket::new(1000, 0);
        assert_eq!(b.take(1000, 5000), 1000);
        // Time going backwards gives no credit.
        assert_eq!(b.take(1000, 10), 2000);
    }

    #[test]
    fn no_overflow_with_huge_values() {
        let mut b = TokenBucket::new(1, u64::MAX);
        assert_eq!(b.take(u64::MAX, 0), 0);
        // Empty bucket, 1 byte/s: the wait does not fit in a u64.
        assert_eq!(b.take(u64::MAX, 0), u64::MAX);
        let mut b = TokenBucket::new(1, 0);
        assert_eq!(b.take(u64::MAX, 0), u64::MAX);
        for _ in 0..100 {
            assert_eq!(b.take(u64::MAX, u64::MAX), u64::MAX);
        }
        // Fastest possible rate: 1 ms refills u64::MAX / 1000 bytes.
        let mut b = TokenBucket::new(u64::MAX, u64::MAX);
        assert_eq!(b.take(u64::MAX, 0), 0);
        assert_eq!(b.take(u64::MAX, 1), 999);
        assert_eq!(b.take(u64::MAX, 1), 1999);
    }

    proptest::proptest! {
        #[test]
        fn never_ahead_of_rate_plus_burst(
            rate in 1u64..10_000_000,
            burst in 0u64..1_000_000,
            sizes in proptest::collection::vec(0u64..200_000, 1..200),
            gaps in proptest::collection::vec(0u64..500, 1..200),
        ) {
            let mut b = TokenBucket::new(rate, burst);
            let start = 1_000u64;
            let mut now = start;
            let mut sent: u128 = 0;
            for (i, &n) in sizes.iter().enumerate() {
                now += gaps[i % gaps.len()];
                now += b.take(n, now);
                sent += u128::from(n);
                // Bytes sent by `now` never exceed the credit that could have accrued.
                let allowed = u128::from(burst) + u128::from(rate) * u128::from(now - start) / 1000 + 1;
                proptest::prop_assert!(sent <= allowed, "sent {} allowed {}", sent, allowed);
            }
        }
    }
}
