//! [`Time`]: the instant every shard operation receives as `now`.
//!
//! The shard never reads a clock. The server passes the wall clock as microseconds since the
//! Unix epoch; tests and the simulation pass a manual clock. Arithmetic saturates, so a hostile
//! delay or timeout can never overflow.

use std::fmt;

/// Microseconds since the Unix epoch.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The Unix epoch.
    pub const ZERO: Time = Time(0);
    /// The largest representable instant ("never").
    pub const MAX: Time = Time(u64::MAX);

    /// An instant from microseconds since the epoch.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// An instant from milliseconds since the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis.saturating_mul(1_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the epoch (rounded down), the unit of the wire's timestamps.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// This instant plus `millis` milliseconds (saturating).
    pub const fn plus_millis(self, millis: u64) -> Time {
        Time(self.0.saturating_add(millis.saturating_mul(1_000)))
    }

    /// This instant plus `micros` microseconds (saturating).
    pub const fn plus_micros(self, micros: u64) -> Time {
        Time(self.0.saturating_add(micros))
    }

    /// Microseconds from `earlier` to `self`, 0 when `earlier` is later.
    pub const fn micros_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({}.{:06}s)", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Time::MAX.plus_millis(5), Time::MAX);
        assert_eq!(Time::from_millis(u64::MAX), Time::MAX);
        assert_eq!(Time::from_millis(3).as_micros(), 3_000);
        assert_eq!(Time::from_micros(3_999).as_millis(), 3);
        assert_eq!(Time::ZERO.micros_since(Time::from_micros(9)), 0);
    }
}
