//! Lazy message bodies: the body cache stays within its byte budget, deliveries of bodies
//! it does not hold read storage, a failing read keeps the message pending and is reported,
//! the failure path reads headers for the hook, and recovery reads no body at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::{HeaderHooks, World};
use fila_shard::storage::Keyspace;
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

const PAYLOAD: usize = 100;

fn payload(i: usize) -> Bytes {
    Bytes::from(vec![i as u8; PAYLOAD])
}

fn world(budget: usize) -> World {
    World::with_options(ShardOptions {
        seed: 42,
        quantum: 1,
        body_cache_bytes: budget,
        ..ShardOptions::default()
    })
}

fn enqueue(w: &mut World, queue: &str, i: usize, headers: &[(&str, &str)]) -> MessageId {
    let item = EnqueueItem {
        queue: queue.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        payload: payload(i),
    };
    let id = w.shard.enqueue(w.now, vec![item]).remove(0).unwrap();
    w.shard.commit().unwrap();
    id
}

#[test]
fn the_cache_stays_within_budget_and_cold_bodies_are_read_from_storage() {
    // Room for three 100-byte bodies (each is charged payload + a fixed overhead).
    let budget = 3 * (PAYLOAD + 64) + 10;
    let mut w = world(budget);
    w.create("q", 0);
    let ids: Vec<_> = (0..10).map(|i| enqueue(&mut w, "q", i, &[])).collect();
    let stats = w.shard.body_cache().clone();
    assert_eq!(stats.entries, 3, "{stats:?}");
    assert!(stats.used_bytes <= budget);
    w.check();
    w.shard.storage().reset_reads();
    w.consume("q", 1, 100);
    let out = w.poll(100);
    assert_eq!(out.len(), 10);
    for (i, d) in out.iter().enumerate() {
        assert_eq!(d.message_id, ids[i]);
        assert_eq!(d.payload, payload(i), "payload of message {i}");
    }
    // The three oldest came from the cache, the other seven from storage.
    assert_eq!(w.shard.storage().reads(Keyspace::Bodies), 7);
    let stats = w.shard.body_cache().clone();
    assert_eq!((stats.hits, stats.reads, stats.read_errors), (3, 7, 0));
    assert_eq!((stats.entries, stats.used_bytes), (0, 0));
    // Room again: new bodies are admitted while older cold ones wait in storage.
    let more = enqueue(&mut w, "q", 42, &[]);
    assert_eq!(w.shard.body_cache().entries, 1);
    w.check();
    for d in &out {
        w.ack(1, "q", d.message_id).unwrap();
    }
    let out = w.poll(10);
    assert_eq!(out[0].message_id, more);
    assert_eq!(out[0].payload, payload(42));
    w.ack(1, "q", more).unwrap();
    assert_eq!(w.shard.storage().len(Keyspace::Bodies), 0);
    assert_eq!(w.shard.body_cache().used_bytes, 0);
    w.check();
}

#[test]
fn a_zero_budget_disables_the_cache() {
    let mut w = world(0);
    w.create("q", 0);
    enqueue(&mut w, "q", 1, &[("a", "b")]);
    assert_eq!(w.shard.body_cache().entries, 0);
    w.consume("q", 1, 10);
    let out = w.poll(10);
    assert_eq!(out[0].payload, payload(1));
    assert_eq!(&out[0].headers[..], &[("a".to_string(), "b".to_string())]);
    assert_eq!(w.shard.body_cache().reads, 1);
}

#[test]
fn a_failing_body_read_keeps_the_message_pending_and_is_reported() {
    let mut w = world(0);
    w.create("q", 0);
    let first = enqueue(&mut w, "q", 1, &[]);
    let second = enqueue(&mut w, "q", 2, &[]);
    w.consume("q", 1, 10);
    w.shard.storage_mut().fail_gets(Keyspace::Bodies, u64::MAX);
    assert!(w.poll(10).is_empty());
    let stats = w.shard.body_cache().clone();
    assert_eq!(stats.read_errors, 1);
    let report = stats.last_read_error.unwrap();
    assert!(report.contains(&first.to_string()), "{report}");
    assert!(report.contains("injected read failure"), "{report}");
    assert_eq!(w.shard.stats("q").unwrap().counters.body_read_errors, 1);
    let view = w.view("q", first).unwrap();
    assert_eq!(view.state, MessageState::Ready);
    assert_eq!(w.shard.stats("q").unwrap().pending, 2);
    assert!(!w.shard.is_poisoned());
    assert!(!w.shard.has_writes(), "a failed read writes nothing");
    w.check();
    // Deliveries from the queue pause (no read storm) and resume with a timer.
    assert!(w.poll(10).is_empty());
    assert_eq!(w.shard.body_cache().read_errors, 1);
    assert!(w.shard.next_timer().is_some());
    w.advance_ms(100);
    assert!(w.poll(10).is_empty(), "still failing");
    assert_eq!(w.shard.body_cache().read_errors, 2);
    w.shard.storage_mut().heal_gets();
    w.advance_ms(100);
    let out = w.poll(10);
    let got: Vec<_> = out
        .iter()
        .map(|d| (d.message_id, d.payload.clone()))
        .collect();
    assert_eq!(got, vec![(first, payload(1)), (second, payload(2))]);
    w.check();
}

#[test]
fn the_failure_path_reads_headers_for_the_hook() {
    let mut w = world(0);
    w.create("q", 0);
    let id = enqueue(&mut w, "q", 7, &[("fail", "dlq")]);
    w.consume("q", 1, 10);
    assert_eq!(w.poll(10).len(), 1);
    w.nack(1, "q", id, "boom").unwrap();
    // The hook saw `fail=dlq` although no body was cached: the message is dead-lettered.
    assert!(w.view("q", id).is_none());
    assert!(w.view("q.dlq", id).is_some());
    w.consume("q.dlq", 1, 10);
    let out = w.poll(10);
    assert_eq!(out[0].payload, payload(7));
    assert_eq!(out[0].headers[0].1, "dlq");
    w.check();
}

#[test]
fn a_failing_header_read_skips_the_hook_and_retries() {
    let mut w = world(0);
    w.create("q", 0);
    let id = enqueue(&mut w, "q", 7, &[("fail", "dlq")]);
    w.consume("q", 1, 10);
    assert_eq!(w.poll(10).len(), 1);
    w.shard.storage_mut().fail_gets(Keyspace::Bodies, 1);
    w.nack(1, "q", id, "boom").unwrap();
    let view = w.view("q", id).unwrap();
    assert_eq!(view.attempts, 1);
    assert_eq!(view.state, MessageState::Ready);
    assert!(w.hooks.failures.borrow().is_empty(), "hook skipped");
    assert_eq!(w.shard.body_cache().read_errors, 1);
    assert!(w.shard.body_cache().last_read_error.is_some());
    let out = w.poll(10);
    assert_eq!(out[0].payload, payload(7));
    w.check();
}

#[test]
fn recovery_reads_no_bodies() {
    let mut w = world(1 << 20);
    w.create("q", 0);
    let ids: Vec<_> = (0..20)
        .map(|i| enqueue(&mut w, "q", i, &[("h", "v")]))
        .collect();
    w.consume("q", 1, 5);
    assert_eq!(w.poll(5).len(), 5);
    let storage = w.shard.storage().clone();
    storage.reset_reads();
    let options = ShardOptions {
        seed: 43,
        quantum: 1,
        body_cache_bytes: 1 << 20,
        ..ShardOptions::default()
    };
    let (mut shard, report): (Shard<MemoryStorage>, _) =
        Shard::open(storage, options, Box::new(HeaderHooks::default()), w.now).unwrap();
    assert_eq!((report.messages, report.leases), (20, 5));
    assert_eq!(shard.storage().reads(Keyspace::Bodies), 0);
    assert_eq!(shard.storage().reads(Keyspace::Messages), 20);
    assert_eq!(shard.body_cache().entries, 0);
    assert_eq!(shard.body_cache().used_bytes, 0);
    shard.check_invariants().unwrap();
    // Bodies are read when delivered.
    shard
        .register_consumer(w.now, "q", ConnectionId(9), 100)
        .unwrap();
    let mut out = Vec::new();
    shard.poll_deliveries(w.now, 100, &mut out);
    assert_eq!(out.len(), 15);
    for d in &out {
        let i = ids.iter().position(|id| *id == d.message_id).unwrap();
        assert_eq!(d.payload, payload(i));
        assert_eq!(&d.headers[..], &[("h".to_string(), "v".to_string())]);
    }
    assert_eq!(shard.storage().reads(Keyspace::Bodies), 15);
}
