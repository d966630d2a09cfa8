//! The consumer: one connection, one subscription; acks every Delivery frame's messages at
//! once in one Ack (the server holds back deliveries beyond its credit window of unacked
//! messages, so prompt acks keep it delivering). Counts acks confirmed inside the measured
//! window and hands each delivered message to a callback (the latency workload reads its
//! send time there).
//!
//! A consumer stops at its deadline or when `stop` says so; it never waits for a drain.

use crate::client::Endpoint;
use std::time::Instant;

use fila_wire::{AckItem, DeliveryMessage, ErrorCode, Request, Response};

use crate::client::{Connection, describe, unexpected};
use crate::clock;
use crate::error::Result;
use crate::workloads::{Tally, Window};

/// Subscribes to `queue` and acks everything delivered until `until` or `stop()`.
pub fn run(
    addr: Endpoint,
    queue: &str,
    until: Instant,
    measure: Window,
    stop: &dyn Fn() -> bool,
    on_message: &mut dyn FnMut(&DeliveryMessage, Instant),
) -> Result<Tally> {
    let Connection {
        mut writer,
        mut reader,
    } = Connection::open(addr)?;
    let consume = Request::Consume {
        queue: queue.into(),
    };
    let subscription = writer.send(&consume, "Consume")?;
    let mut tally = Tally::default();
    let mut subscribed = false;
    while !stop() {
        let Some((id, reply)) = reader.next_before(until, "consuming")? else {
            break;
        };
        let at = clock::now();
        match reply {
            Response::ConsumeOk { .. } if id == subscription => subscribed = true,
            Response::Error { .. } if !subscribed && id == subscription => {
                return Err(unexpected(&format!("Consume {queue}"), &reply));
            }
            Response::Delivery { messages } => {
                tally.delivery_frames += 1;
                tally.delivered += messages.len() as u64;
                let items = messages
                    .iter()
                    .map(|message| {
                        on_message(message, at);
                        AckItem {
                            queue: message.queue.clone(),
                            message_id: message.message_id.clone(),
                        }
                    })
                    .collect();
                writer.send(&Request::Ack { items }, "Ack")?;
            }
            Response::AckResult { results } => {
                for code in results {
                    if code == ErrorCode::Ok {
                        tally.ok += u64::from(measure.contains(at));
                    } else {
                        tally.fail(1, || format!("Ack item -> {code}"));
                    }
                }
            }
            Response::Error { .. } => tally.fail(1, || format!("Ack -> {}", describe(&reply))),
            other => return Err(unexpected("Consume/Ack", &other)),
        }
    }
    Ok(tally)
}
