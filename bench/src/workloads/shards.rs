//! `shards`: lifecycle throughput against the server's shard count. A fresh server is started
//! for every count (so this workload needs the bench to start the server: `--addr` is
//! refused), and `lifecycle` runs at 64 B. Figures per count: acked and enqueued msg/s.

use crate::cli::{Common, Defaults, Settings};
use crate::clock;
use crate::error::{BenchError, Result};
use crate::workloads::{BETWEEN_RUNS, Outcome, Series, Tally, Target, lifecycle};

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
            lifecycle::record(&mut series, run, settings, &tally);
            failures.merge(tally.enqueued);
            failures.merge(tally.acked);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}
