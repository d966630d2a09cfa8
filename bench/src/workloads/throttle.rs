//! `throttle`: token-bucket rate limits under excess demand. `throttle.t<i>` is set to
//! `"<rate>,<burst>"` for each configured rate; one queue's `on_enqueue` hook gives every
//! message the fairness key and the single throttle key named in its `t` header. A backlog of
//! well above `rate × (warm-up + duration)` messages per key is enqueued first, then consumers
//! ack everything delivered. The warm-up absorbs the initial burst; deliveries per key inside
//! the window give the observed rate. Figures per key: observed msg/s and the error against
//! the configured rate in percent.

use crate::client::Endpoint;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fila_wire::{ByteString, EnqueueMessage, Request};

use crate::cli::{Defaults, Settings};
use crate::client::Connection;
use crate::clock;
use crate::error::Result;
use crate::report::Better;
use crate::shares::rate_error_pct;
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Window, consumer, create_queues_with, delete_queues,
    join, payload, producer, progress,
};

/// Defaults of `throttle` (connections: consumers).
pub const DEFAULTS: Defaults = Defaults {
    connections: 2,
    window: 4,
    batch: 100,
};

/// The hook: fairness key and one throttle key, both from header `t`.
pub const HOOK: &str = "function on_enqueue(msg) local t = msg.headers[\"t\"] return { fairness_key = t, throttle_keys = { t } } end";

const QUEUE: &str = "fila-bench-throttle";

/// The throttle key of rate index `i`.
fn key_name(i: usize) -> String {
    format!("fila-bench-t{i}")
}

/// Messages enqueued per key: 1.5 × what the rate allows over the whole run, plus the burst.
pub fn backlog_for(rate: f64, burst: f64, seconds: f64) -> usize {
    (rate * seconds * 1.5 + burst).ceil().max(1.0) as usize + 100
}

/// Runs `settings.runs` runs with one throttle key per rate.
pub fn run(addr: Endpoint, settings: &Settings, rates: &[f64], burst: f64) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut series: Vec<Series> = rates
        .iter()
        .map(|rate| Series::new(format!("throttle {rate} msg/s (burst {burst})")))
        .collect();
    let mut failures = Tally::default();
    for run in 0..settings.runs {
        let (counts, tally) = one_run(addr, settings, rates, burst)?;
        let window_s = settings.duration.as_secs_f64();
        let mut line = Vec::new();
        for ((rate, count), series) in rates.iter().zip(&counts).zip(series.iter_mut()) {
            let observed = *count as f64 / window_s;
            let error = rate_error_pct(*rate, observed);
            line.push(format!("{rate}/s -> {observed:.1}/s ({error:+.1} %)"));
            series.push("configured msg/s", Better::Higher, *rate);
            series.push("observed msg/s", Better::Higher, observed);
            series.push("abs error %", Better::Lower, error.abs());
        }
        progress("throttle", run, settings.runs, &line.join(", "));
        failures.merge(tally);
        clock::sleep(BETWEEN_RUNS);
    }
    outcome.notes.extend(failures.note("throttle"));
    for series in series {
        outcome.figures.extend(series.figures());
    }
    Ok(outcome)
}

fn one_run(
    addr: Endpoint,
    settings: &Settings,
    rates: &[f64],
    burst: f64,
) -> Result<(Vec<u64>, Tally)> {
    let queues = vec![QUEUE.to_owned()];
    create_queues_with(addr, &queues, Some(HOOK))?;
    let mut admin = Connection::open(addr)?;
    for (i, rate) in rates.iter().enumerate() {
        admin.set_config(
            &format!("throttle.{}", key_name(i)),
            &format!("{rate},{burst}"),
        )?;
    }
    let seconds = (settings.warmup + settings.duration).as_secs_f64();
    let body = payload(64);
    let mut requests = Vec::new();
    for (i, rate) in rates.iter().enumerate() {
        let messages: Vec<EnqueueMessage> = (0..backlog_for(*rate, burst, seconds))
            .map(|_| EnqueueMessage {
                queue: ByteString::from(QUEUE),
                headers: vec![("t".into(), key_name(i).into())],
                payload: body.clone(),
            })
            .collect();
        for chunk in messages.chunks(settings.batch.max(1)) {
            requests.push(Request::Enqueue {
                messages: chunk.to_vec(),
            });
        }
    }
    let filled = producer::fill(addr, requests, 2, settings.window)?;
    let mut tally = Tally::default();
    tally.merge(Tally { ok: 0, ..filled });
    let names: Arc<Vec<String>> = Arc::new((0..rates.len()).map(key_name).collect());
    let counts: Arc<Vec<AtomicU64>> = Arc::new(rates.iter().map(|_| AtomicU64::new(0)).collect());
    let measure = Window::after_warmup(settings);
    let consumers: Vec<_> = (0..settings.connections)
        .map(|_| {
            let (names, counts) = (Arc::clone(&names), Arc::clone(&counts));
            std::thread::spawn(move || {
                consumer::run(
                    addr,
                    QUEUE,
                    measure.end,
                    measure,
                    &|| false,
                    &mut |message, at| {
                        if !measure.contains(at) {
                            return;
                        }
                        for key in &message.throttle_keys {
                            let key: &str = key;
                            if let Some(count) = names
                                .iter()
                                .position(|name| name == key)
                                .and_then(|i| counts.get(i))
                            {
                                count.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                    },
                )
            })
        })
        .collect();
    for handle in consumers {
        let consumed = join(handle, "consumer")?;
        tally.merge(Tally { ok: 0, ..consumed });
    }
    delete_queues(addr, &queues)?;
    for i in 0..rates.len() {
        admin.set_config(&format!("throttle.{}", key_name(i)), "")?;
    }
    let counts = counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
    Ok((counts, tally))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_exceeds_what_the_rate_allows() {
        assert!(backlog_for(50.0, 5.0, 6.0) as f64 > 50.0 * 6.0 + 5.0);
        assert!(backlog_for(1000.0, 20.0, 6.0) as f64 > 1000.0 * 6.0 + 20.0);
    }
}
