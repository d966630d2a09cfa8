//! The wall clock of the shell: the one place the server reads the time for the broker core.
//! Shard logic takes `now` as an argument; the shell passes Unix time in microseconds so that
//! stored deadlines and enqueue times stay meaningful across restarts (the core keeps time
//! monotone itself if the wall clock steps back).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fila_shard::Time;

/// Now, as the broker core's [`Time`] (Unix microseconds).
pub fn now() -> Time {
    // The shell is the designated clock reader; the core never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Time::from_micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

/// How long from `now` until `at` (zero when `at` has passed).
pub fn until(now: Time, at: Time) -> Duration {
    Duration::from_micros(at.micros_since(now))
}

/// A monotonic clock for time budgets (Lua hook calls): time elapsed since this call.
pub fn monotonic() -> Box<dyn Fn() -> Duration> {
    // The shell is the designated clock reader; budgets need a clock that never steps back.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    Box::new(move || start.elapsed())
}
