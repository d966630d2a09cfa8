//! `lua`: the cost of an `on_enqueue` hook. The `enqueue` workload runs alternately on queues
//! without a hook and on queues whose hook sets the fairness key from a header (the same
//! messages, `--keys` values), each run fresh. Figures: msg/s without and with the hook, and
//! the implied overhead `1e6/with − 1e6/without` in µs per message of server-wide throughput
//! (with S shards working in parallel, the CPU time per hook call is about S times that).

use crate::client::Endpoint;

use crate::cli::{Defaults, Settings, format_bytes};
use crate::clock;
use crate::error::Result;
use crate::report::{Better, format_number};
use crate::workloads::{BETWEEN_RUNS, KEY_HOOK, Outcome, Series, Tally, enqueue, progress};

/// Defaults of `lua`: those of `enqueue`.
pub const DEFAULTS: Defaults = enqueue::DEFAULTS;

/// µs per message implied by two throughputs (0 when either is not positive).
pub fn overhead_us(without_per_s: f64, with_per_s: f64) -> f64 {
    if without_per_s <= 0.0 || with_per_s <= 0.0 {
        return 0.0;
    }
    1e6 / with_per_s - 1e6 / without_per_s
}

/// Runs `settings.runs` pairs (without, with) per payload size.
pub fn run(addr: Endpoint, settings: &Settings, payloads: &[usize]) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &bytes in payloads {
        let mut series = Series::new(format!("lua on_enqueue {}", format_bytes(bytes)));
        let mut failures = Tally::default();
        for run in 0..settings.runs {
            let window_s = settings.duration.as_secs_f64();
            let without = enqueue::one_run_with(addr, settings, bytes, None)?;
            clock::sleep(BETWEEN_RUNS);
            let with = enqueue::one_run_with(addr, settings, bytes, Some(KEY_HOOK))?;
            let (without_s, with_s) = (without.ok as f64 / window_s, with.ok as f64 / window_s);
            let overhead = overhead_us(without_s, with_s);
            progress(
                series.workload(),
                run,
                settings.runs,
                &format!(
                    "{} msg/s without hook, {} msg/s with, {overhead:.2} µs/msg",
                    format_number(without_s),
                    format_number(with_s)
                ),
            );
            series.push("msg/s without hook", Better::Higher, without_s);
            series.push("msg/s with hook", Better::Higher, with_s);
            series.push("hook µs/msg", Better::Lower, overhead);
            failures.merge(without);
            failures.merge(with);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_the_difference_of_per_message_times() {
        assert!((overhead_us(100_000.0, 50_000.0) - 10.0).abs() < 1e-9);
        assert!((overhead_us(100_000.0, 100_000.0)).abs() < 1e-9);
        assert_eq!(overhead_us(0.0, 5.0), 0.0);
    }
}
