//! The open-loop send schedule: message `i` of a producer is due at `start + i / rate`,
//! whatever happened to the messages before it.
//!
//! Latency is measured from these scheduled instants, not from when a message actually left,
//! so a sender that falls behind (a stalled server, a full socket) is charged for the wait
//! (no coordinated omission).

/// Evenly spaced send times at a fixed rate, in nanoseconds since a shared epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSchedule {
    start_ns: u64,
    rate_per_s: f64,
}

impl RateSchedule {
    /// Messages at `rate_per_s` (must be positive and finite), the first at `start_ns`.
    pub fn new(start_ns: u64, rate_per_s: f64) -> Option<RateSchedule> {
        (rate_per_s.is_finite() && rate_per_s > 0.0).then_some(RateSchedule {
            start_ns,
            rate_per_s,
        })
    }

    /// When message `index` is due.
    pub fn send_ns(&self, index: u64) -> u64 {
        let offset = (index as f64) * 1e9 / self.rate_per_s;
        self.start_ns.saturating_add(offset as u64)
    }

    /// How many messages are due at `now_ns` (indices `0..count` have send times `<= now_ns`).
    pub fn due_count(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed_s = (now_ns - self.start_ns) as f64 / 1e9;
        let mut count = (elapsed_s * self.rate_per_s) as u64 + 1;
        // Correct floating-point rounding at the boundaries so the two methods agree exactly.
        while count > 0 && self.send_ns(count - 1) > now_ns {
            count -= 1;
        }
        while self.send_ns(count) <= now_ns {
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_are_evenly_spaced_from_the_start() {
        let schedule = RateSchedule::new(1_000, 10_000.0).unwrap();
        let times: Vec<u64> = (0..4).map(|i| schedule.send_ns(i)).collect();
        assert_eq!(times, [1_000, 101_000, 201_000, 301_000]);
        // One second of schedule holds exactly `rate` messages.
        assert_eq!(schedule.send_ns(10_000), 1_000 + 1_000_000_000);
    }

    #[test]
    fn due_count_agrees_with_send_times() {
        for rate in [1.0, 3.0, 7_777.0, 10_000.0, 1_000_000.0] {
            let schedule = RateSchedule::new(5, rate).unwrap();
            assert_eq!(schedule.due_count(0), 0);
            assert_eq!(schedule.due_count(4), 0);
            for index in [0u64, 1, 2, 99, 1_000, 12_345] {
                let at = schedule.send_ns(index);
                assert_eq!(
                    schedule.due_count(at),
                    index + 1,
                    "rate {rate} index {index}"
                );
                if at > schedule.send_ns(index.saturating_sub(1)) && index > 0 {
                    assert_eq!(
                        schedule.due_count(at - 1),
                        index,
                        "rate {rate} index {index}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_late_sender_still_sees_every_missed_message_as_due() {
        // A sender that wakes 50 ms late at 10,000/s owes 500 messages at once, each keeping
        // its own scheduled time.
        let schedule = RateSchedule::new(0, 10_000.0).unwrap();
        assert_eq!(schedule.due_count(50_000_000), 501);
        assert_eq!(schedule.send_ns(250), 25_000_000);
    }

    #[test]
    fn rates_must_be_positive_and_finite() {
        assert!(RateSchedule::new(0, 0.0).is_none());
        assert!(RateSchedule::new(0, -1.0).is_none());
        assert!(RateSchedule::new(0, f64::INFINITY).is_none());
        assert!(RateSchedule::new(0, f64::NAN).is_none());
    }
}
