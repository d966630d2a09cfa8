//! The bench's only clock: monotonic readings, waits, and the wall-clock time stamp of a report.
//!
//! The workspace bans `Instant::now`, `SystemTime::now` and `thread::sleep` (clippy.toml) so
//! that broker logic takes time as an argument. A load generator has to read the real clock and
//! wait for real send times, so this file is the bench's one sanctioned clock site; every other
//! module asks it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The current monotonic instant.
#[allow(
    clippy::disallowed_methods,
    reason = "the load generator measures real elapsed time; this is its single clock site"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// Blocks the calling thread for `duration` (the open-loop sender waits for its next send time).
#[allow(
    clippy::disallowed_methods,
    reason = "the open-loop sender must wait for real send times; this is its single wait site"
)]
pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Blocks until `deadline`; returns at once when it has passed.
pub fn sleep_until(deadline: Instant) {
    if let Some(remaining) = deadline.checked_duration_since(now()) {
        sleep(remaining);
    }
}

/// Seconds since the Unix epoch, for the report's time stamp (0 if the clock is before 1970).
#[allow(
    clippy::disallowed_methods,
    reason = "a report records when it was made; nothing is computed from this value"
)]
pub fn unix_time_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// A shared reference point: producers write "nanoseconds since the epoch" into a message and
/// consumers of the same process subtract it from their own reading.
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    start: Instant,
}

impl Epoch {
    /// An epoch at the current instant.
    pub fn start() -> Epoch {
        Epoch { start: now() }
    }

    /// The instant of the epoch.
    pub fn instant(&self) -> Instant {
        self.start
    }

    /// Nanoseconds from the epoch to `at` (0 if `at` is before it; saturates at `u64::MAX`).
    pub fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds from the epoch to now.
    pub fn ns_now(&self) -> u64 {
        self.ns_at(now())
    }

    /// The instant `ns` nanoseconds after the epoch.
    pub fn at_ns(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}
