//! The closed-loop producer: one connection, a writer thread that keeps `window` Enqueue
//! requests of `batch` messages in flight until the window ends, and a reader thread that
//! counts the per-message results that arrive inside the measured window.
//!
//! The writer and reader share a bounded channel as a semaphore: the writer puts a token in
//! before each request, the reader takes one out before reading each reply, so at most
//! `window` requests are ever unanswered.

use std::net::SocketAddr;
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
pub fn spawn(addr: SocketAddr, plan: ProducerPlan, measure: Window) -> JoinHandle<Result<Tally>> {
    std::thread::spawn(move || run(addr, &plan, measure))
}

fn run(addr: SocketAddr, plan: &ProducerPlan, measure: Window) -> Result<Tally> {
    let (mut writer, reader) = Connection::open(addr)?.split();
    let request = Request::Enqueue {
        messages: batch_messages(
            &plan.queues,
            plan.offset,
            plan.batch,
            plan.keys,
            &payload(plan.payload),
        ),
    };
    let (tokens, pending) = mpsc::sync_channel::<()>(plan.window.saturating_sub(1));
    let replies = std::thread::spawn(move || count_replies(reader, &pending, measure));
    let mut sent = Ok(());
    while clock::now() < measure.end {
        if tokens.send(()).is_err() {
            break; // the reader stopped; its error is reported below
        }
        if let Err(error) = writer.send(&request, "Enqueue") {
            sent = Err(error);
            break;
        }
    }
    drop(tokens);
    let tally = join(replies, "producer reader")?;
    sent.map(|()| tally)
}

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
