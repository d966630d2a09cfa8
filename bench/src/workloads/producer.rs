//! The closed-loop producer: one connection, a writer thread that keeps `window` Enqueue
//! requests of `batch` messages in flight until the window ends, and a reader thread that
//! counts the per-message results that arrive inside the measured window.
//!
//! The writer and reader share a bounded channel as a semaphore: the writer puts a token in
//! before each request, the reader takes one out before reading each reply, so at most
//! `window` requests are ever unanswered.

use crate::client::Endpoint;
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;

use fila_wire::{ErrorCode, Request, Response};

use crate::client::{Connection, Reader, describe, unexpected};
use crate::clock;
use crate::error::Result;
use crate::workloads::{Tally, Window, batch_messages, join, payload};

/// What one producer connection sends.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Queues, round-robin within each batch.
    pub queues: Vec<String>,
    /// Where in the queue rotation this connection starts.
    pub offset: usize,
    /// Messages per Enqueue.
    pub batch: usize,
    /// Requests in flight.
    pub window: usize,
    /// Payload bytes per message.
    pub payload: usize,
    /// Fairness-key values.
    pub keys: usize,
}

/// Starts a producer thread; its tally counts messages accepted inside `measure`.
pub fn spawn(addr: Endpoint, plan: ProducerPlan, measure: Window) -> JoinHandle<Result<Tally>> {
    std::thread::spawn(move || run(addr, &plan, measure))
}

/// Most distinct prebuilt requests one producer cycles through (enough for 1,000,000 keys
/// at a batch of 100).
const REQUESTS_MAX: usize = 10_000;

fn run(addr: Endpoint, plan: &ProducerPlan, measure: Window) -> Result<Tally> {
    let body = payload(plan.payload);
    // Enough distinct batches that every key value occurs (`keys` above `batch` needs more
    // than one batch); with few keys this is a single request sent over and over.
    let count = plan.keys.div_ceil(plan.batch.max(1)).clamp(1, REQUESTS_MAX);
    let requests: Vec<Request> = (0..count)
        .map(|j| Request::Enqueue {
            messages: batch_messages(
                &plan.queues,
                plan.offset + j * plan.batch,
                plan.batch,
                plan.keys,
                &body,
            ),
        })
        .collect();
    run_requests(addr, &requests, plan.window, measure, None)
}

/// Sends `requests` in turn (cycling) with `window` in flight until `measure.end`, or until
/// `limit` requests have been sent; counts accepted messages inside `measure`.
pub fn run_requests(
    addr: Endpoint,
    requests: &[Request],
    window: usize,
    measure: Window,
    limit: Option<usize>,
) -> Result<Tally> {
    let (mut writer, reader) = Connection::open(addr)?.split();
    let (tokens, pending) = mpsc::sync_channel::<()>(window.saturating_sub(1));
    let replies = std::thread::spawn(move || count_replies(reader, &pending, measure));
    let mut sent = Ok(());
    let mut count = 0usize;
    while clock::now() < measure.end && limit.is_none_or(|limit| count < limit) {
        let Some(request) = requests.get(count % requests.len().max(1)) else {
            break;
        };
        if tokens.send(()).is_err() {
            break; // the reader stopped; its error is reported below
        }
        if let Err(error) = writer.send(request, "Enqueue") {
            sent = Err(error);
            break;
        }
        count += 1;
    }
    drop(tokens);
    let tally = join(replies, "producer reader")?;
    sent.map(|()| tally)
}

/// Sends every request once, spread over `connections` connections with `window` in flight
/// each, and waits for all replies (pre-filling a backlog). The tally counts accepted messages.
pub fn fill(
    addr: Endpoint,
    requests: Vec<Request>,
    connections: usize,
    window: usize,
) -> Result<Tally> {
    let connections = connections.max(1);
    let mut shares: Vec<Vec<Request>> = (0..connections).map(|_| Vec::new()).collect();
    for (i, request) in requests.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(i % connections) {
            share.push(request);
        }
    }
    let start = clock::now();
    let measure = Window {
        start,
        end: start + FILL_LIMIT,
    };
    let handles: Vec<_> = shares
        .into_iter()
        .filter(|share| !share.is_empty())
        .map(|share| {
            std::thread::spawn(move || {
                run_requests(addr, &share, window, measure, Some(share.len()))
            })
        })
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        tally.merge(join(handle, "filler")?);
    }
    Ok(tally)
}

/// Longest a pre-fill may take.
pub(super) const FILL_LIMIT: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Reads one reply per token until the writer is done and every reply has arrived.
fn count_replies(mut reader: Reader, pending: &Receiver<()>, measure: Window) -> Result<Tally> {
    let mut tally = Tally::default();
    while pending.recv().is_ok() {
        let (_, reply) = reader.next_reply("waiting for EnqueueResult")?;
        let at = clock::now();
        match reply {
            Response::EnqueueResult { results } => {
                for result in results {
                    if result.error_code == ErrorCode::Ok {
                        tally.ok += u64::from(measure.contains(at));
                    } else {
                        tally.fail(1, || {
                            format!(
                                "Enqueue item -> {} {:?}",
                                result.error_code, result.message_id
                            )
                        });
                    }
                }
            }
            Response::Error { .. } => tally.fail(1, || format!("Enqueue -> {}", describe(&reply))),
            other => return Err(unexpected("Enqueue", &other)),
        }
    }
    Ok(tally)
}
