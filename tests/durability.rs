//! What a producer was told is stored survives: `kill -9` during a stream of acknowledged
//! enqueues and acks, and a graceful SIGTERM with requests in flight. After the restart every
//! acknowledged message is there exactly once and no acked message comes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::client::{Client, queue_on};
use common::{ServerOptions, TestServer};
use fila_wire::{EnqueueMessage, ErrorCode, Request, Response};

/// Producers send batches on their own connections until the server dies; every id whose
/// EnqueueResult arrived is reported.
fn produce_until_gone(addr: std::net::SocketAddr, queue: String, ids: mpsc::Sender<String>) {
    let mut client = Client::connect(addr);
    loop {
        let request = Request::Enqueue {
            messages: (0..20)
                .map(|i| EnqueueMessage {
                    queue: queue.as_str().into(),
                    headers: vec![("i".into(), i.to_string().into())],
                    payload: Bytes::from_static(b"durable"),
                })
                .collect(),
        };
        // Pipeline two batches so requests are in flight when the kill lands.
        let (Some(id), Some(id2)) = (client.try_send(&request), client.try_send(&request)) else {
            return;
        };
        // Replies carry their request id and may come in either order (the protocol lets a
        // server answer pipelined requests as each becomes durable).
        let mut waiting = vec![id, id2];
        while !waiting.is_empty() {
            let Some((got, response)) = client.try_recv_frame() else {
                return;
            };
            let position = waiting.iter().position(|w| *w == got);
            assert!(position.is_some(), "reply to unknown request {got}");
            waiting.retain(|w| *w != got);
            let Response::EnqueueResult { results } = response else {
                panic!("{response:?}")
            };
            for r in results {
                assert_eq!(r.error_code, ErrorCode::Ok);
                if ids.send(r.message_id.to_string()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Consumes (and acks) every pending, not leased, message of `queues`; checks nothing more
/// arrives.
fn drain(client: &mut Client, queues: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut subs = Vec::new();
    for queue in queues {
        let stats = client.stats(queue);
        let mut pending = usize::try_from(stats.depth - stats.in_flight).unwrap();
        let sub = client.consume(queue);
        while pending > 0 {
            let got = client.take(sub, pending.min(100));
            pending -= got.len();
            let acks: Vec<(&str, &str)> = got.iter().map(|m| (&*m.queue, &*m.message_id)).collect();
            assert!(client.ack(&acks).iter().all(|c| *c == ErrorCode::Ok));
            seen.extend(got.iter().map(|m| m.message_id.to_string()));
        }
        subs.push(sub);
    }
    client.ping();
    for sub in subs {
        assert_eq!(client.buffered(sub), 0, "more messages than the depth");
    }
    seen
}

#[test]
fn kill_9_during_acknowledged_enqueues_and_acks_loses_nothing() {
    let mut server = TestServer::start();
    let queues: Vec<String> = (0..2).map(|s| queue_on("crash", s, 2)).collect();
    let mut admin = Client::connect(server.addr);
    for q in &queues {
        admin.create_queue(q, 0);
    }
    // Some messages acked before the crash: they must never come back.
    let mut acked = BTreeSet::new();
    for q in &queues {
        let items: Vec<(&str, &[u8])> = (0..50).map(|_| (q.as_str(), b"a".as_slice())).collect();
        let ids = admin.enqueue(&items);
        let sub = admin.consume(q);
        let got = admin.take(sub, 50);
        let acks: Vec<(&str, &str)> = got.iter().map(|m| (q.as_str(), &*m.message_id)).collect();
        assert_eq!(admin.ack(&acks), vec![ErrorCode::Ok; 50]);
        acked.extend(ids);
    }
    drop(admin);

    let (sender, receiver) = mpsc::channel();
    let producers: Vec<_> = queues
        .iter()
        .flat_map(|q| [q.clone(), q.clone()])
        .map(|q| {
            let sender = sender.clone();
            let addr = server.addr;
            std::thread::spawn(move || produce_until_gone(addr, q, sender))
        })
        .collect();
    drop(sender);
    // Let a few thousand acknowledged messages pile up, then crash.
    let mut confirmed = BTreeSet::new();
    while confirmed.len() < 4000 {
        confirmed.insert(receiver.recv_timeout(Duration::from_secs(20)).unwrap());
    }
    server.kill();
    for producer in producers {
        producer.join().unwrap();
    }
    confirmed.extend(receiver.try_iter());

    let server = TestServer::start_on(server.data_dir(), ServerOptions::default());
    let mut client = Client::connect(server.addr);
    // Unconfirmed batches in flight at the kill may or may not be there; confirmed ones must.
    let seen = drain(&mut client, &queues);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a message is there twice");
    for id in &confirmed {
        assert!(unique.contains(id), "acknowledged message {id} lost");
    }
    for id in &acked {
        assert!(!unique.contains(id), "acked message {id} came back");
    }
}

#[test]
fn sigterm_with_requests_in_flight_exits_0_and_loses_nothing() {
    let mut server = TestServer::start();
    let queues: Vec<String> = (0..2).map(|s| queue_on("graceful", s, 2)).collect();
    let mut admin = Client::connect(server.addr);
    for q in &queues {
        admin.create_queue(q, 0);
    }
    // A consumer holds leases across the shutdown: they survive the restart.
    let mut consumer = Client::connect(server.addr);
    let sub = consumer.consume(&queues[0]);
    admin.enqueue(&[(queues[0].as_str(), b"leased".as_slice())]);
    let leased = consumer.take(sub, 1);
    // Stop further deliveries; the lease taken stays valid across the shutdown.
    consumer.send_with_id(sub, &Request::CancelConsume);
    consumer.ping();

    let (sender, receiver) = mpsc::channel();
    let producers: Vec<_> = queues
        .iter()
        .map(|q| {
            let sender = sender.clone();
            let (addr, q) = (server.addr, q.clone());
            std::thread::spawn(move || produce_until_gone(addr, q, sender))
        })
        .collect();
    drop(sender);
    let mut confirmed = BTreeSet::new();
    while confirmed.len() < 1000 {
        confirmed.insert(receiver.recv_timeout(Duration::from_secs(20)).unwrap());
    }
    let status = server.terminate().expect("no exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    for producer in producers {
        producer.join().unwrap();
    }
    confirmed.extend(receiver.try_iter());
    drop(consumer);

    let server = TestServer::start_on(server.data_dir(), ServerOptions::default());
    let mut client = Client::connect(server.addr);
    let stats = client.stats(&queues[0]);
    // The lease taken before the shutdown is still in flight (its deadline is 30 s away).
    assert_eq!(stats.in_flight, 1);
    let depth: u64 = queues.iter().map(|q| client.stats(q).depth).sum();
    let seen = drain(&mut client, &queues);
    assert_eq!(seen.len() as u64, depth - 1);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    for id in &confirmed {
        assert!(unique.contains(id), "acknowledged message {id} lost");
    }
    assert!(!unique.contains(&leased[0].message_id.to_string()));
}
