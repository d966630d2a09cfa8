//! `keys`: lifecycle throughput against the number of fairness keys. Queues get a hook that
//! takes the fairness key from the `fila-bench-key` header, and producers spread messages over
//! N key values (over all queues together: with 4 queues each queue sees about N/4 keys).
//! Figures per N: acked and enqueued msg/s, as in `lifecycle`.

use crate::client::Endpoint;

use crate::cli::{Defaults, Settings};
use crate::clock;
use crate::error::Result;
use crate::report::format_number;
use crate::workloads::{BETWEEN_RUNS, KEY_HOOK, Outcome, Series, Tally, lifecycle};

/// Defaults of `keys`: those of `lifecycle`.
pub const DEFAULTS: Defaults = lifecycle::DEFAULTS;

/// Runs the sweep over `key_counts` with 64 B messages.
pub fn run(addr: Endpoint, settings: &Settings, key_counts: &[usize]) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &keys in key_counts {
        let mut series = Series::new(format!("keys {} (64 B)", count_label(keys)));
        let run_settings = Settings { keys, ..*settings };
        let mut failures = Tally::default();
        for run in 0..settings.runs {
            let tally = lifecycle::one_run_with(addr, &run_settings, 64, Some(KEY_HOOK))?;
            lifecycle::record(&mut series, run, &run_settings, &tally);
            failures.merge(tally.enqueued);
            failures.merge(tally.acked);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

/// `10`, `1,000`, `100,000`.
fn count_label(count: usize) -> String {
    if count >= 1_000 {
        format_number(count as f64)
    } else {
        count.to_string()
    }
}
