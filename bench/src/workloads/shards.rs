//! `shards`: lifecycle throughput against the server's shard count. A fresh server is started
//! for every count (so this workload needs the bench to start the server: `--addr` is
//! refused), and `lifecycle` runs at 64 B. Figures per count: acked and enqueued msg/s.

use crate::cli::{Common, Defaults, Settings};
use crate::clock;
use crate::error::{BenchError, Result};
use crate::report::{Better, format_number};
use crate::workloads::{BETWEEN_RUNS, Outcome, Series, Tally, Target, lifecycle, progress};

/// Defaults of `shards`: those of `lifecycle`.
pub const DEFAULTS: Defaults = lifecycle::DEFAULTS;

/// Runs `lifecycle` 64 B on a server of each shard count.
pub fn run(common: &Common, settings: &Settings, shard_counts: &[u32]) -> Result<Outcome> {
    if common.addr.is_some() {
        return Err(BenchError::InvalidArgument(
            "shards starts a server per shard count; --addr cannot be used".to_owned(),
        ));
    }
    let mut outcome = Outcome::default();
    for &shards in shard_counts {
        let target = Target::new(&Common {
            shards,
            ..common.clone()
        })?;
        let mut series = Series::new(format!("shards {shards} (lifecycle 64 B)"));
        let mut failures = Tally::default();
        for run in 0..settings.runs {
            let tally = lifecycle::one_run(target.addr, settings, 64)?;
            let window_s = settings.duration.as_secs_f64();
            let acked = tally.acked.ok as f64 / window_s;
            let enqueued = tally.enqueued.ok as f64 / window_s;
            progress(
                series.workload(),
                run,
                settings.runs,
                &format!(
                    "{} msg/s acked, {} msg/s enqueued",
                    format_number(acked),
                    format_number(enqueued)
                ),
            );
            series.push("acked msg/s", Better::Higher, acked);
            series.push("enqueued msg/s", Better::Higher, enqueued);
            failures.merge(tally.enqueued);
            failures.merge(tally.acked);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}
