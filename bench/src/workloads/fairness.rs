//! `fairness`: weighted fair delivery under backlog. One queue with an `on_enqueue` hook that
//! takes the fairness key from header `k` and the weight from header `w`; keys `w1..wN` with
//! the given weights each get `--backlog` messages first, then consumers drain the queue.
//! Deliveries are counted per key until any key's count reaches 80 % of its backlog (so every
//! key stays backlogged in the counted window) or `--duration` passes. Figures: the largest
//! deviation of a key's delivered share from `w / Σw` in percentage points, Jain's index of
//! share/expected, and each key's share.

use crate::client::Endpoint;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use fila_wire::{ByteString, EnqueueMessage, ErrorCode, Request, Response};

use crate::cli::{Defaults, Settings};
use crate::client::{Connection, unexpected};
use crate::clock;
use crate::error::Result;
use crate::report::{Better, format_number};
use crate::shares::{expected_shares, jain_index, max_deviation_pp, shares};
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Tally, Window, consumer, create_queues_with, delete_queues,
    join, payload, producer, progress,
};

/// Defaults of `fairness` (connections: pre-fill producers and consumers).
pub const DEFAULTS: Defaults = Defaults {
    connections: 2,
    window: 4,
    batch: 100,
};

/// The hook: fairness key from header `k`, weight from header `w`.
pub const HOOK: &str = "function on_enqueue(msg) return { fairness_key = msg.headers[\"k\"], weight = tonumber(msg.headers[\"w\"]) } end";

/// The queue.
const QUEUE: &str = "fila-bench-fair";
/// Counting stops when a key has had this fraction of its backlog delivered.
const STOP_FRACTION: f64 = 0.8;

/// The key name of weight index `i`.
fn key_name(i: usize, weight: u32) -> String {
    format!("w{weight}-{i}")
}

/// Runs `settings.runs` runs with `weights` and `backlog` messages per key.
pub fn run(
    addr: Endpoint,
    settings: &Settings,
    weights: &[u32],
    backlog: usize,
) -> Result<Outcome> {
    let label = format!(
        "fairness weights {}",
        weights
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(":")
    );
    let mut series = Series::new(label);
    let mut failures = Tally::default();
    let mut notes = Vec::new();
    let expected = expected_shares(weights);
    for run in 0..settings.runs {
        let (counts, tally, quantum) = one_run(addr, settings, weights, backlog)?;
        let got = shares(&counts);
        let deviation = max_deviation_pp(&got, &expected);
        let jain = jain_index(&got, &expected);
        let total: u64 = counts.iter().sum();
        progress(
            series.workload(),
            run,
            settings.runs,
            &format!(
                "{} delivered, max deviation {deviation:.2} pp, Jain {jain:.4}, shares {:?}",
                format_number(total as f64),
                got.iter().map(|s| format!("{:.3}", s)).collect::<Vec<_>>()
            ),
        );
        series.push("max deviation pp", Better::Lower, deviation);
        series.push("Jain index", Better::Higher, jain);
        for ((i, &weight), (share, want)) in
            weights.iter().enumerate().zip(got.iter().zip(&expected))
        {
            series.push(
                &format!(
                    "share % {} (expected {:.2})",
                    key_name(i, weight),
                    want * 100.0
                ),
                Better::Higher,
                share * 100.0,
            );
        }
        series.push("delivered", Better::Higher, total as f64);
        let round = u64::from(quantum) * weights.iter().map(|&w| u64::from(w)).sum::<u64>();
        if round > 0 {
            notes.push(format!(
                "{} run {}: DRR quantum {quantum}, so one round is {round} messages; the counted window covered {:.1} rounds (a partial last round skews shares)",
                series.workload(),
                run + 1,
                total as f64 / round as f64
            ));
        }
        failures.merge(tally);
        clock::sleep(BETWEEN_RUNS);
    }
    let mut outcome = Outcome::default();
    outcome.notes.extend(failures.note(series.workload()));
    outcome.notes.extend(notes);
    outcome.figures.extend(series.figures());
    Ok(outcome)
}

/// The pre-fill requests: `backlog` messages per key, keys interleaved in every batch.
fn fill_requests(weights: &[u32], backlog: usize, batch: usize, body: &Bytes) -> Vec<Request> {
    let keys = weights.len().max(1);
    let total = backlog * keys;
    let mut requests = Vec::new();
    let mut messages = Vec::with_capacity(batch);
    for n in 0..total {
        let i = n % keys;
        let weight = weights.get(i).copied().unwrap_or(1);
        messages.push(EnqueueMessage {
            queue: ByteString::from(QUEUE),
            headers: vec![
                ("k".into(), key_name(i, weight).into()),
                ("w".into(), weight.to_string().into()),
            ],
            payload: body.clone(),
        });
        if messages.len() == batch.max(1) {
            requests.push(Request::Enqueue {
                messages: std::mem::take(&mut messages),
            });
        }
    }
    if !messages.is_empty() {
        requests.push(Request::Enqueue { messages });
    }
    requests
}

fn one_run(
    addr: Endpoint,
    settings: &Settings,
    weights: &[u32],
    backlog: usize,
) -> Result<(Vec<u64>, Tally, u32)> {
    let queues = vec![QUEUE.to_owned()];
    create_queues_with(addr, &queues, Some(HOOK))?;
    let requests = fill_requests(weights, backlog, settings.batch, &payload(64));
    let filled = producer::fill(addr, requests, settings.connections, settings.window)?;
    let quantum = queue_quantum(addr)?;
    let mut tally = Tally::default();
    tally.errors += filled.errors;
    tally.first_error = filled.first_error;
    let names: Arc<Vec<String>> = Arc::new(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| key_name(i, w))
            .collect(),
    );
    let counts: Arc<Vec<AtomicU64>> = Arc::new(weights.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let limit = (backlog as f64 * STOP_FRACTION) as u64;
    let start = clock::now();
    let measure = Window {
        start,
        end: start + settings.duration,
    };
    let consumers: Vec<_> = (0..settings.connections)
        .map(|_| {
            let (names, counts, stop) =
                (Arc::clone(&names), Arc::clone(&counts), Arc::clone(&stop));
            std::thread::spawn(move || {
                consumer::run(
                    addr,
                    QUEUE,
                    measure.end,
                    measure,
                    &|| stop.load(Ordering::Acquire),
                    &mut |message, _| {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let key: &str = &message.fairness_key;
                        let Some(i) = names.iter().position(|name| name == key) else {
                            return;
                        };
                        if let Some(count) = counts.get(i)
                            && count.fetch_add(1, Ordering::AcqRel) + 1 >= limit
                        {
                            stop.store(true, Ordering::Release);
                        }
                    },
                )
            })
        })
        .collect();
    for handle in consumers {
        let consumed = join(handle, "consumer")?;
        tally.errors += consumed.errors;
        if tally.first_error.is_none() {
            tally.first_error = consumed.first_error;
        }
    }
    delete_queues(addr, &queues)?;
    let counts = counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
    Ok((counts, tally, quantum))
}

/// The queue's DRR quantum from GetStats.
fn queue_quantum(addr: Endpoint) -> Result<u32> {
    let mut connection = Connection::open(addr)?;
    let request = Request::GetStats {
        queue: QUEUE.into(),
    };
    match connection.call(&request, "GetStats")? {
        Response::GetStatsResult(stats) if stats.error_code == ErrorCode::Ok => Ok(stats.quantum),
        other => Err(unexpected("GetStats", &other)),
    }
}
