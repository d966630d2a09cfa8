//! `enqueue`: maximum sustained enqueue throughput. Closed-loop producers keep `--window`
//! requests of `--batch` messages in flight on each of `--connections` connections; nothing
//! consumes. Figures per payload size: messages accepted per second and payload MB/s
//! (10^6 bytes), counted over the window after the warm-up.

use crate::client::Endpoint;

use crate::cli::{Defaults, Settings, format_bytes};
use crate::clock;
use crate::error::Result;
use crate::report::{Better, format_number};
use crate::workloads::producer::{self, ProducerPlan};
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Window, create_queues_with, delete_queues, join,
    progress, queue_names,
};

/// Defaults of `enqueue`.
pub const DEFAULTS: Defaults = Defaults {
    connections: 4,
    window: 4,
    batch: 100,
};

/// Runs the sweep over `payloads`.
pub fn run(addr: Endpoint, settings: &Settings, payloads: &[usize]) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &bytes in payloads {
        let mut series = Series::new(format!("enqueue {}", format_bytes(bytes)));
        let mut failures = Tally::default();
        for run in 0..settings.runs {
            let tally = one_run(addr, settings, bytes)?;
            let window_s = settings.duration.as_secs_f64();
            let per_s = tally.ok as f64 / window_s;
            let mb_per_s = per_s * bytes as f64 / 1e6;
            progress(
                series.workload(),
                run,
                settings.runs,
                &format!("{} msg/s, {:.1} MB/s", format_number(per_s), mb_per_s),
            );
            series.push("msg/s", Better::Higher, per_s);
            series.push("MB/s", Better::Higher, mb_per_s);
            failures.merge(tally);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

fn one_run(addr: Endpoint, settings: &Settings, bytes: usize) -> Result<Tally> {
    one_run_with(addr, settings, bytes, None)
}

/// One run at `bytes` per message on queues with an optional `on_enqueue` hook.
pub fn one_run_with(
    addr: Endpoint,
    settings: &Settings,
    bytes: usize,
    hook: Option<&str>,
) -> Result<Tally> {
    let queues = queue_names(settings.queues);
    create_queues_with(addr, &queues, hook)?;
    let measure = Window::after_warmup(settings);
    let producers: Vec<_> = (0..settings.connections)
        .map(|offset| {
            let plan = ProducerPlan {
                queues: queues.clone(),
                offset,
                batch: settings.batch,
                window: settings.window,
                payload: bytes,
                keys: settings.keys,
            };
            producer::spawn(addr, plan, measure)
        })
        .collect();
    let mut tally = Tally::default();
    for handle in producers {
        tally.merge(join(handle, "producer")?);
    }
    delete_queues(addr, &queues)?;
    Ok(tally)
}
