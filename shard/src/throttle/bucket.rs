//! [`TokenBucket`]: a continuous-refill token bucket driven by `now` (no clock reads).
//!
//! Starts full. Tokens refill at `rate` per second up to the capacity (`burst` minus any
//! tokens the owner has reserved, e.g. leased out to other shards). A limit change keeps the
//! current tokens, clamped to the new burst; it never adds tokens. Burst 0 blocks; rate 0
//! allows the burst and then blocks; fractional rates work.

use crate::time::Time;

/// Tolerance of float accumulation: a bucket that is within this of a whole token has it.
pub const EPSILON: f64 = 1e-9;

/// A token bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    reserved: f64,
    last: Time,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate_per_second: f64, burst: f64, now: Time) -> TokenBucket {
        let rate = sanitize(rate_per_second);
        let burst = sanitize(burst);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            reserved: 0.0,
            last: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Bucket size.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Tokens reserved outside the bucket (they count against the burst).
    pub fn reserved(&self) -> f64 {
        self.reserved
    }

    fn capacity(&self) -> f64 {
        (self.burst - self.reserved).max(0.0)
    }

    /// Adds the refill since the last call (time never goes backwards here).
    pub fn refill(&mut self, now: Time) {
        if now <= self.last {
            return;
        }
        let secs = now.micros_since(self.last) as f64 / 1_000_000.0;
        let cap = self.capacity();
        if self.tokens < cap {
            self.tokens = (self.tokens + self.rate * secs).min(cap);
        }
        self.last = now;
    }

    /// Tokens available at `now` (fractional).
    pub fn tokens(&mut self, now: Time) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Tokens at `now` without changing the bucket.
    pub fn tokens_at(&self, now: Time) -> f64 {
        let mut copy = self.clone();
        copy.tokens(now)
    }

    /// Tokens as of the last refill (no refill; for read-only views).
    pub fn tokens_stale(&self) -> f64 {
        self.tokens
    }

    /// True when `n` tokens are available at `now`.
    pub fn has(&mut self, now: Time, n: f64) -> bool {
        self.tokens(now) + EPSILON >= n
    }

    /// Takes `n` tokens if available.
    pub fn try_take(&mut self, now: Time, n: f64) -> bool {
        if !self.has(now, n) {
            return false;
        }
        self.tokens = (self.tokens - n).max(0.0);
        true
    }

    /// Takes up to `n` whole tokens; returns how many were taken.
    pub fn take_whole(&mut self, now: Time, n: u32) -> u32 {
        let whole = (self.tokens(now) + EPSILON).floor().max(0.0);
        let take = whole.min(f64::from(n));
        self.tokens = (self.tokens - take).max(0.0);
        take as u32
    }

    /// Reserves `n` tokens outside the bucket (leased out): they no longer refill.
    pub fn reserve(&mut self, n: f64) {
        self.reserved += n;
    }

    /// Ends a reservation of `reserved` tokens of which `unused` come back into the bucket.
    pub fn release(&mut self, now: Time, reserved: f64, unused: f64) {
        self.refill(now);
        self.reserved = (self.reserved - reserved).max(0.0);
        self.tokens = (self.tokens + unused.min(reserved)).min(self.capacity());
    }

    /// Changes the limit: current tokens are kept, clamped to the new burst; never added.
    pub fn set_limit(&mut self, now: Time, rate_per_second: f64, burst: f64) {
        self.refill(now);
        self.rate = sanitize(rate_per_second);
        self.burst = sanitize(burst);
        self.tokens = self.tokens.min(self.capacity());
    }

    /// The earliest instant at which `n` tokens are available (`None`: never at this limit).
    pub fn available_at(&mut self, now: Time, n: f64) -> Option<Time> {
        self.refill(now);
        if self.tokens + EPSILON >= n {
            return Some(now);
        }
        if self.rate <= 0.0 || n > self.capacity() + EPSILON {
            return None;
        }
        let micros = ((n - self.tokens) / self.rate * 1_000_000.0).ceil();
        if !micros.is_finite() || micros >= u64::MAX as f64 {
            return None;
        }
        Some(now.plus_micros(micros as u64))
    }
}

fn sanitize(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn starts_full_and_refills() {
        let mut b = TokenBucket::new(10.0, 2.0, t(0));
        assert!(b.try_take(t(0), 1.0));
        assert!(b.try_take(t(0), 1.0));
        assert!(!b.try_take(t(0), 1.0));
        assert_eq!(b.available_at(t(0), 1.0), Some(t(100)));
        assert!(!b.try_take(t(99), 1.0));
        assert!(b.try_take(t(100), 1.0));
    }

    #[test]
    fn burst_zero_blocks_and_rate_zero_allows_burst_only() {
        let mut b = TokenBucket::new(5.0, 0.0, t(0));
        assert!(!b.try_take(t(10_000), 1.0));
        assert_eq!(b.available_at(t(0), 1.0), None);
        let mut b = TokenBucket::new(0.0, 3.0, t(0));
        for _ in 0..3 {
            assert!(b.try_take(t(0), 1.0));
        }
        assert!(!b.try_take(t(1_000_000), 1.0));
        assert_eq!(b.available_at(t(0), 1.0), None);
    }

    #[test]
    fn fractional_rate() {
        let mut b = TokenBucket::new(0.05, 1.0, t(0));
        assert!(b.try_take(t(0), 1.0));
        assert_eq!(b.available_at(t(0), 1.0), Some(t(20_000)));
        assert!(!b.try_take(t(19_999), 1.0));
        assert!(b.try_take(t(20_000), 1.0));
    }

    #[test]
    fn limit_change_clamps_and_never_adds() {
        let mut b = TokenBucket::new(1.0, 10.0, t(0));
        assert_eq!(b.take_whole(t(0), 7), 7);
        b.set_limit(t(0), 100.0, 20.0);
        assert!((b.tokens(t(0)) - 3.0).abs() < 1e-9);
        b.set_limit(t(0), 100.0, 2.0);
        assert!((b.tokens(t(0)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn reservations_cap_refill() {
        let mut b = TokenBucket::new(100.0, 10.0, t(0));
        assert_eq!(b.take_whole(t(0), 6), 6);
        b.reserve(6.0);
        assert!((b.tokens(t(1_000)) - 4.0).abs() < 1e-9);
        b.release(t(1_000), 6.0, 2.0);
        assert!((b.tokens(t(1_000)) - 6.0).abs() < 1e-9);
        assert!((b.tokens(t(2_000)) - 10.0).abs() < 1e-9);
    }
}
