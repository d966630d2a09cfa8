//! `rtt`: request/reply round trip. Each connection sends an Enqueue of one message, waits for
//! its EnqueueResult, and only then sends the next, so the figure is the full client-to-server
//! -to-client time of one request with nothing else queued behind it (durability included).

use crate::client::Endpoint;

use fila_wire::{ErrorCode, Request, Response};
use hdrhistogram::Histogram;

use crate::cli::{Defaults, Settings, format_bytes};
use crate::client::{Connection, describe, unexpected};
use crate::clock;
use crate::error::{BenchError, Result};
use crate::report::Better;
use crate::summary::{latency_figures_us, latency_histogram, record_ns};
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Window, batch_messages, create_queues, delete_queues,
    join, payload, progress, queue_names,
};

/// Defaults of `rtt` (one request at a time on one connection).
pub const DEFAULTS: Defaults = Defaults {
    connections: 1,
    window: 1,
    batch: 1,
};

/// Runs the sweep over `payloads`.
pub fn run(addr: Endpoint, settings: &Settings, payloads: &[usize]) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &bytes in payloads {
        let mut series = Series::new(format!("rtt {}", format_bytes(bytes)));
        let mut failures = Tally::default();
        for run in 0..settings.runs {
            let (histogram, tally) = one_run(addr, settings, bytes)?;
            let figures = latency_figures_us(&histogram);
            let text: Vec<String> = figures
                .iter()
                .filter(|(name, _)| matches!(*name, "p50 µs" | "p99 µs"))
                .map(|(name, value)| format!("{name} {value:.1}"))
                .collect();
            progress(series.workload(), run, settings.runs, &text.join(", "));
            for (metric, value) in figures {
                series.push(metric, Better::Lower, value);
            }
            series.push(
                "requests/s",
                Better::Higher,
                histogram.len() as f64 / settings.duration.as_secs_f64(),
            );
            failures.merge(tally);
            clock::sleep(BETWEEN_RUNS);
        }
        outcome.notes.extend(failures.note(series.workload()));
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

fn one_run(addr: Endpoint, settings: &Settings, bytes: usize) -> Result<(Histogram<u64>, Tally)> {
    let queues = queue_names(settings.queues);
    create_queues(addr, &queues)?;
    let measure = Window::after_warmup(settings);
    let workers: Vec<_> = (0..settings.connections)
        .map(|offset| {
            let queues = queues.clone();
            let batch = settings.batch;
            let keys = settings.keys;
            std::thread::spawn(move || {
                let request = Request::Enqueue {
                    messages: batch_messages(&queues, offset, batch, keys, &payload(bytes)),
                };
                round_trips(addr, &request, measure)
            })
        })
        .collect();
    let mut histogram = latency_histogram()?;
    let mut failures = Tally::default();
    for handle in workers {
        let (part, tally) = join(handle, "rtt")?;
        histogram
            .add(&part)
            .map_err(|error| BenchError::Histogram(format!("{error:?}")))?;
        failures.merge(tally);
    }
    delete_queues(addr, &queues)?;
    Ok((histogram, failures))
}

/// One connection's one-at-a-time round trips of `request` until `measure` ends (also the
/// authorized client of `storm`).
pub(super) fn round_trips(
    addr: Endpoint,
    request: &Request,
    measure: Window,
) -> Result<(Histogram<u64>, Tally)> {
    let mut connection = Connection::open(addr)?;
    let mut histogram = latency_histogram()?;
    let mut tally = Tally::default();
    loop {
        let sent = clock::now();
        if sent >= measure.end {
            break;
        }
        let reply = connection.call(request, "Enqueue")?;
        let received = clock::now();
        match &reply {
            Response::EnqueueResult { results }
                if results.iter().all(|r| r.error_code == ErrorCode::Ok) =>
            {
                if measure.contains(sent) {
                    record_ns(&mut histogram, (received - sent).as_nanos() as u64);
                    tally.ok += 1;
                }
            }
            Response::EnqueueResult { .. } | Response::Error { .. } => {
                tally.fail(1, || format!("Enqueue -> {}", describe(&reply)));
            }
            other => return Err(unexpected("Enqueue", other)),
        }
    }
    Ok((histogram, tally))
}
