//! `depth`: the broker with a large backlog pending. `--depth` 64 B messages are enqueued over
//! the queues first; then, with that backlog in place, producers alone run for the window
//! (enqueue msg/s, which grows the backlog further) and then consumers alone (acked msg/s,
//! draining it; the backlog at that point comes from GetStats). When the bench
//! started the server it also reads the server's `VmRSS` after the pre-fill and `VmRSS`/`VmHWM`
//! at the end from `/proc/PID/status`.

use crate::client::Endpoint;
use std::thread::JoinHandle;

use fila_wire::Request;

use crate::cli::{Defaults, Settings};
use crate::clock;
use crate::error::Result;
use crate::report::{Better, format_number};
use crate::shares::process_memory_mib;
use crate::workloads::producer::{self, ProducerPlan};
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Target, Window, batch_messages, consumer, create_queues,
    delete_queues, join, payload, pending, progress, queue_names,
};

/// Defaults of `depth`.
pub const DEFAULTS: Defaults = Defaults {
    connections: 2,
    window: 4,
    batch: 100,
};

/// Pre-fill connections.
const FILLERS: usize = 2;

/// Runs `settings.runs` runs with a backlog of `depth` messages.
pub fn run(target: &Target, settings: &Settings, depth: usize) -> Result<Outcome> {
    let addr = target.addr;
    let mut series = Series::new(format!("depth {} (64 B)", format_number(depth as f64)));
    let mut failures = Tally::default();
    let mut notes = Vec::new();
    for run in 0..settings.runs {
        let queues = queue_names(settings.queues);
        create_queues(addr, &queues)?;
        let fill_start = clock::now();
        failures.merge(prefill(addr, settings, &queues, depth)?);
        let fill_s = clock::now().duration_since(fill_start).as_secs_f64();
        let after_fill = target.server_pid().and_then(process_memory_mib);
        let measure = Window::after_warmup(settings);
        let producers: Vec<_> = (0..settings.connections)
            .map(|offset| {
                let plan = ProducerPlan {
                    queues: queues.clone(),
                    offset,
                    batch: settings.batch,
                    window: settings.window,
                    payload: 64,
                    keys: settings.keys,
                };
                producer::spawn(addr, plan, measure)
            })
            .collect();
        let mut enqueued = Tally::default();
        for handle in producers {
            enqueued.merge(join(handle, "producer")?);
        }
        let backlog = pending(addr, &queues)?;
        let measure = Window::after_warmup(settings);
        let consumers: Vec<JoinHandle<Result<Tally>>> =
            (0..settings.connections.max(settings.queues))
                .map(|index| {
                    let queue = queues
                        .get(index % queues.len().max(1))
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
        let mut acked = Tally::default();
        for handle in consumers {
            acked.merge(join(handle, "consumer")?);
        }
        let at_end = target.server_pid().and_then(process_memory_mib);
        delete_queues(addr, &queues)?;
        let window_s = settings.duration.as_secs_f64();
        let (enqueue_s, ack_s) = (enqueued.ok as f64 / window_s, acked.ok as f64 / window_s);
        let consumed_all = acked.delivered >= backlog;
        if consumed_all {
            notes.push(format!(
                "{}: consumers drained the whole backlog; acked msg/s is a lower bound",
                series.workload()
            ));
        }
        progress(
            series.workload(),
            run,
            settings.runs,
            &format!(
                "pre-fill {:.1} s, {} msg/s enqueued and {} msg/s acked with the backlog, RSS {}",
                fill_s,
                format_number(enqueue_s),
                format_number(ack_s),
                at_end.map_or("n/a".to_owned(), |(rss, hwm)| format!(
                    "{rss:.0} MiB (peak {hwm:.0} MiB)"
                ))
            ),
        );
        series.push(
            "pre-fill msg/s",
            Better::Higher,
            depth as f64 / fill_s.max(1e-9),
        );
        series.push("enqueued msg/s", Better::Higher, enqueue_s);
        series.push(
            "pending when consuming starts",
            Better::Higher,
            backlog as f64,
        );
        series.push("acked msg/s", Better::Higher, ack_s);
        if let Some((rss, _)) = after_fill {
            series.push("server RSS after pre-fill MiB", Better::Lower, rss);
        }
        if let Some((rss, hwm)) = at_end {
            series.push("server RSS at end MiB", Better::Lower, rss);
            series.push("server peak RSS MiB", Better::Lower, hwm);
        }
        failures.merge(enqueued);
        failures.merge(acked);
        clock::sleep(BETWEEN_RUNS);
    }
    let mut outcome = Outcome::default();
    if target.server_pid().is_none() {
        notes.push("depth: --addr given, server memory not read".to_owned());
    }
    outcome.notes.extend(failures.note(series.workload()));
    outcome.notes.extend(notes);
    outcome.figures.extend(series.figures());
    Ok(outcome)
}

/// Enqueues `depth` messages (rounded up to whole batches) and waits for every reply.
fn prefill(addr: Endpoint, settings: &Settings, queues: &[String], depth: usize) -> Result<Tally> {
    let batch = settings.batch.max(1);
    let requests = depth.div_ceil(batch);
    let body = payload(64);
    let start = clock::now();
    let forever = Window {
        start,
        end: start + producer::FILL_LIMIT,
    };
    let handles: Vec<_> = (0..FILLERS)
        .map(|filler| {
            let share = requests / FILLERS + usize::from(filler < requests % FILLERS);
            let request = Request::Enqueue {
                messages: batch_messages(queues, filler, batch, settings.keys, &body),
            };
            let window = settings.window;
            std::thread::spawn(move || {
                producer::run_requests(addr, &[request], window, forever, Some(share))
            })
        })
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        tally.merge(join(handle, "filler")?);
    }
    Ok(Tally { ok: 0, ..tally })
}
