//! `lifecycle`: producers and consumers together. `--connections` closed-loop producers
//! enqueue while at least as many consumers (one or more per queue) receive and ack. Figures
//! per payload size: messages delivered and acked per second (acks the server confirmed inside
//! the window) and messages enqueued per second over the same window.

use crate::client::Endpoint;
use std::thread::JoinHandle;

use crate::cli::{Defaults, Settings, format_bytes};
use crate::clock;
use crate::error::Result;
use crate::report::{Better, format_number};
use crate::workloads::producer::{self, ProducerPlan};
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Window, consumer, create_queues_with, delete_queues,
    join, progress, queue_names,
};

/// Defaults of `lifecycle`.
pub const DEFAULTS: Defaults = Defaults {
    connections: 2,
    window: 4,
    batch: 100,
};

/// Results of one run.
#[derive(Debug, Default)]
pub struct RunTally {
    /// Accepted enqueues inside the window.
    pub enqueued: Tally,
    /// Confirmed acks inside the window.
    pub acked: Tally,
}

/// Reports one lifecycle run: the progress line and the acked and enqueued rates.
pub fn record(series: &mut Series, run: usize, settings: &Settings, tally: &RunTally) {
    let window_s = settings.duration.as_secs_f64();
    let acked = tally.acked.ok as f64 / window_s;
    let enqueued = tally.enqueued.ok as f64 / window_s;
    progress(
        series.workload(),
        run,
        settings.runs,
        &format!(
            "{} msg/s acked, {} msg/s enqueued, {:.1} messages per Delivery frame",
            format_number(acked),
            format_number(enqueued),
            tally.acked.messages_per_delivery()
        ),
    );
    series.push("acked msg/s", Better::Higher, acked);
    series.push("enqueued msg/s", Better::Higher, enqueued);
}

/// Runs the sweep over `payloads`.
pub fn run(addr: Endpoint, settings: &Settings, payloads: &[usize]) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &bytes in payloads {
        let mut series = Series::new(format!("lifecycle {}", format_bytes(bytes)));
        let mut failures = RunTally::default();
        for run in 0..settings.runs {
            let tally = one_run(addr, settings, bytes)?;
            record(&mut series, run, settings, &tally);
            failures.enqueued.merge(tally.enqueued);
            failures.acked.merge(tally.acked);
            clock::sleep(BETWEEN_RUNS);
        }
        let label = series.workload().to_owned();
        outcome
            .notes
            .extend(failures.enqueued.note(&format!("{label} enqueue")));
        outcome
            .notes
            .extend(failures.acked.note(&format!("{label} ack")));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

/// One run at `bytes` per message (also used by `latency` to find the maximum rate).
pub fn one_run(addr: Endpoint, settings: &Settings, bytes: usize) -> Result<RunTally> {
    one_run_with(addr, settings, bytes, None)
}

/// One run at `bytes` per message on queues with an optional `on_enqueue` hook.
pub fn one_run_with(
    addr: Endpoint,
    settings: &Settings,
    bytes: usize,
    hook: Option<&str>,
) -> Result<RunTally> {
    let queues = queue_names(settings.queues);
    create_queues_with(addr, &queues, hook)?;
    let measure = Window::after_warmup(settings);
    let consumers: Vec<JoinHandle<Result<Tally>>> = (0..settings.connections.max(settings.queues))
        .map(|index| {
            let queue = queues
                .get(index % queues.len())
                .cloned()
                .unwrap_or_default();
            std::thread::spawn(move || {
                consumer::run(
                    addr,
                    &queue,
                    measure.end,
                    measure,
                    &|| false,
                    &mut |_, _| {},
                )
            })
        })
        .collect();
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
    let mut tally = RunTally::default();
    for handle in producers {
        tally.enqueued.merge(join(handle, "producer")?);
    }
    for handle in consumers {
        tally.acked.merge(join(handle, "consumer")?);
    }
    delete_queues(addr, &queues)?;
    Ok(tally)
}
