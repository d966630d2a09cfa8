//! Scenario tests of the shard with a manual clock: scheduling, leases, failures, DLQ,
//! redrive, config, stats, deletion, storage failure and recovery.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::{HeaderHooks, T0_MS, World};
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::storage::{Keyspace, Storage, StorageError, WriteBatch};
use fila_shard::*;

#[test]
fn ten_thousand_keys_and_a_newcomer_is_served_within_the_round() {
    let mut w = World::new();
    w.create("q", 60_000);
    let mut items = Vec::new();
    for k in 0..10_000 {
        for _ in 0..2 {
            items.push(EnqueueItem {
                queue: "q".to_string(),
                headers: vec![("fk".to_string(), format!("k{k}"))],
                payload: Bytes::new(),
            });
        }
    }
    assert!(w.shard.enqueue(w.now, items).iter().all(Result::is_ok));
    w.shard.commit().unwrap();
    w.consume("q", 1, 1_000_000);
    let first = w.poll(5_000);
    assert_eq!(first.len(), 5_000);
    w.enqueue("q", &[("fk", "newcomer")]);
    let mut served_this_round: std::collections::HashSet<_> =
        first.iter().map(|d| d.fairness_key.clone()).collect();
    assert_eq!(
        served_this_round.len(),
        5_000,
        "one message per key per round"
    );
    let mut waited = 0;
    loop {
        let d = w.poll(1).pop().expect("a delivery");
        if d.fairness_key.as_str() == "newcomer" {
            break;
        }
        assert!(
            served_this_round.insert(d.fairness_key.clone()),
            "{:?} served twice before the newcomer",
            d.fairness_key
        );
        waited += 1;
    }
    assert!(waited <= 5_000, "newcomer waited {waited} deliveries");
    w.check();
}

#[test]
fn weights_from_the_seam_are_clamped_without_overflow() {
    let mut w = World::with_quantum(u32::MAX);
    w.create("q", 0);
    w.enqueue("q", &[("fk", "zero"), ("w", "0")]);
    w.enqueue("q", &[("fk", "negative"), ("w", "-5")]);
    w.enqueue("q", &[("fk", "huge"), ("w", &i64::MAX.to_string())]);
    w.enqueue("q", &[("fk", "huge"), ("w", &i64::MAX.to_string())]);
    let stats = w.shard.stats("q").unwrap();
    let weight = |key: &str| {
        stats
            .per_key
            .iter()
            .find(|k| k.key.as_str() == key)
            .unwrap()
            .weight
    };
    assert_eq!(weight("zero"), 1);
    assert_eq!(weight("negative"), 1);
    assert_eq!(weight("huge"), 10_000);
    w.consume("q", 1, 100);
    let delivered = w.poll(10);
    assert_eq!(delivered.len(), 4);
    assert_eq!(delivered[2].weight, 10_000);
    w.check();
}

#[test]
fn a_delayed_retry_does_not_block_a_ready_message_of_the_same_key() {
    let mut w = World::new();
    w.create("q", 60_000);
    let a = w.enqueue("q", &[("fk", "k"), ("fail", "delay=1000")]);
    let b = w.enqueue("q", &[("fk", "k")]);
    w.consume("q", 1, 1);
    let d = w.poll(10);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].message_id, a);
    w.nack(1, "q", a, "boom").unwrap();
    let d = w.poll(10);
    assert_eq!(d.len(), 1, "B goes while A waits");
    assert_eq!(d[0].message_id, b);
    w.ack(1, "q", b).unwrap();
    let stats = w.shard.stats("q").unwrap();
    assert_eq!(
        (stats.depth, stats.delayed, stats.active_fairness_keys),
        (1, 1, 0)
    );
    assert_eq!(w.shard.next_timer(), Some(Time::from_millis(T0_MS + 1_000)));
    w.advance_ms(999);
    assert!(w.poll(10).is_empty());
    w.advance_ms(1);
    let d = w.poll(10);
    assert_eq!(d.len(), 1, "deliverable exactly when due");
    assert_eq!((d[0].message_id, d[0].attempts), (a, 1));
    w.check();
}

#[test]
fn expiry_under_continuous_enqueue_load_is_reclaimed_on_time() {
    let mut w = World::new();
    w.create("q", 100);
    w.consume("q", 1, 1);
    let first = w.enqueue("q", &[]);
    let d = w.poll(10);
    assert_eq!(d[0].message_id, first);
    let deadline = Time::from_millis(T0_MS + 100);
    for ms in 1..=100 {
        w.now = Time::from_millis(T0_MS + ms);
        let items = (0..20)
            .map(|_| EnqueueItem {
                queue: "q".to_string(),
                headers: vec![],
                payload: Bytes::from_static(b"x"),
            })
            .collect();
        w.shard.enqueue(w.now, items);
        w.shard.commit().unwrap();
        let view = w.view("q", first).unwrap();
        if w.now < deadline {
            assert!(
                matches!(view.state, MessageState::Leased { .. }),
                "at +{ms}"
            );
            assert!(w.shard.next_timer().unwrap() <= deadline);
        } else {
            assert_eq!(view.state, MessageState::Ready, "reclaimed at the deadline");
            assert_eq!(view.attempts, 1);
        }
    }
    assert_eq!(w.shard.stats("q").unwrap().counters.expired, 1);
    let failures = w.hooks.failures.borrow();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].3, EXPIRED_ERROR);
    assert_eq!(failures[0].2, 1);
    drop(failures);
    assert_eq!(w.ack(1, "q", first), Err(AckError::MessageNotFound));
    w.check();
}

#[test]
fn acks_are_connection_scoped_and_stale_acks_change_nothing() {
    let mut w = World::new();
    w.create("q", 1_000);
    let id = w.enqueue("q", &[]);
    w.consume("q", 1, 10);
    assert_eq!(w.poll(10).len(), 1);
    assert_eq!(w.ack(2, "q", id), Err(AckError::MessageNotFound));
    assert_eq!(w.nack(2, "q", id, "x"), Err(NackError::MessageNotFound));
    assert_eq!(w.ack(1, "other", id), Err(AckError::MessageNotFound));
    let view = w.view("q", id).unwrap();
    assert!(matches!(view.state, MessageState::Leased { .. }));
    assert_eq!(view.attempts, 0);
    w.ack(1, "q", id).unwrap();
    assert_eq!(w.ack(1, "q", id), Err(AckError::MessageNotFound));
    assert_eq!(w.shard.stats("q").unwrap().depth, 0);
    assert_eq!(w.shard.storage().len(Keyspace::Messages), 0);
    assert_eq!(w.shard.storage().len(Keyspace::Bodies), 0);
    assert_eq!(w.shard.storage().len(Keyspace::Leases), 0);
    w.check();
}

#[test]
fn cancel_consume_keeps_leases_ackable_and_closing_the_connection_releases_them() {
    let mut w = World::new();
    w.create("q", 60_000);
    let ids: Vec<_> = (0..3).map(|_| w.enqueue("q", &[])).collect();
    let consumer = w.consume("q", 7, 2);
    assert_eq!(w.poll(10).len(), 2);
    assert!(w.shard.unregister_consumer(w.now, consumer));
    assert_eq!(w.shard.stats("q").unwrap().active_consumers, 0);
    assert!(w.poll(10).is_empty(), "no new deliveries after cancel");
    w.ack(7, "q", ids[0]).unwrap();
    assert_eq!(w.shard.stats("q").unwrap().in_flight, 1);
    assert_eq!(w.shard.release_connection(w.now, ConnectionId(7)), 1);
    w.shard.commit().unwrap();
    let view = w.view("q", ids[1]).unwrap();
    assert_eq!((view.state, view.attempts), (MessageState::Ready, 1));
    assert_eq!(w.hooks.failures.borrow()[0].3, DISCONNECTED_ERROR);
    assert_eq!(w.shard.stats("q").unwrap().counters.released, 1);
    w.check();
}

#[test]
fn round_robin_among_consumers_and_credit_returns_on_ack() {
    let mut w = World::new();
    w.create("q", 60_000);
    for _ in 0..6 {
        w.enqueue("q", &[]);
    }
    let c1 = w.consume("q", 1, 2);
    let c2 = w.consume("q", 2, 2);
    let d = w.poll(100);
    assert_eq!(d.len(), 4, "credit limits deliveries");
    let to: Vec<_> = d.iter().map(|d| d.consumer).collect();
    assert_eq!(to, vec![c1, c2, c1, c2]);
    assert!(w.poll(100).is_empty());
    w.ack(1, "q", d[0].message_id).unwrap();
    let d2 = w.poll(100);
    assert_eq!(d2.len(), 1);
    assert_eq!(d2[0].consumer, c1);
    assert_eq!(d2[0].enqueued_at_ms, T0_MS);
    assert_eq!(d2[0].leased_at_ms, T0_MS);
    let mut out = Vec::new();
    assert_eq!(w.shard.next_deliveries(w.now, c2, 10, &mut out), 0);
    w.check();
}

#[test]
fn dead_letter_moves_to_the_dlq_and_falls_back_to_retry_without_one() {
    let mut w = World::new();
    w.create("q", 60_000);
    let id = w.enqueue("q", &[("fail", "dlq"), ("fk", "t1"), ("w", "3")]);
    w.consume("q", 1, 10);
    w.poll(10);
    w.nack(1, "q", id, "poison").unwrap();
    assert!(w.view("q", id).is_none());
    let moved = w.view("q.dlq", id).unwrap();
    assert_eq!((moved.attempts, moved.fairness_key.as_str()), (1, "t1"));
    assert_eq!(w.shard.stats("q").unwrap().counters.dead_lettered, 1);
    // In the DLQ itself a dead-letter decision retries (a DLQ has no DLQ).
    w.consume("q.dlq", 2, 10);
    let d = w.poll(10);
    assert_eq!(d[0].queue.as_str(), "q.dlq");
    assert_eq!(d[0].weight, 3);
    w.nack(2, "q.dlq", id, "again").unwrap();
    assert_eq!(w.view("q.dlq", id).unwrap().attempts, 2);
    // Without the DLQ: retry.
    w.shard.delete_queue(w.now, "q.dlq").unwrap();
    let id2 = w.enqueue("q", &[("fail", "dlq")]);
    let d = w.poll(10);
    assert_eq!(d[0].message_id, id2);
    w.nack(1, "q", id2, "poison").unwrap();
    assert_eq!(w.view("q", id2).unwrap().attempts, 1);
    w.check();
}

#[test]
fn redrive_checks_names_resets_attempts_and_skips_leased() {
    let mut w = World::new();
    w.create("q", 60_000);
    assert_eq!(
        w.shard.redrive(w.now, "q", 0),
        Err(RedriveError::NotADlq(QueueId::new("q")))
    );
    assert_eq!(
        w.shard.redrive(w.now, "nope.dlq", 0),
        Err(RedriveError::QueueNotFound)
    );
    w.create("orphan.dlq", 0);
    assert_eq!(
        w.shard.redrive(w.now, "orphan.dlq", 0),
        Err(RedriveError::ParentQueueNotFound(QueueId::new("orphan")))
    );
    let ids: Vec<_> = (0..4)
        .map(|_| w.enqueue("q", &[("fail", "dlq-after=2")]))
        .collect();
    w.consume("q", 1, 10);
    for _ in 0..2 {
        for d in w.poll(10) {
            w.nack(1, "q", d.message_id, "bad").unwrap();
        }
    }
    assert_eq!(w.shard.stats("q.dlq").unwrap().depth, 4);
    w.consume("q.dlq", 2, 1);
    let leased = w.poll(10);
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].message_id, ids[0], "oldest first in the DLQ");
    assert_eq!(w.shard.redrive(w.now, "q.dlq", 2), Ok(2));
    assert_eq!(w.shard.redrive(w.now, "q.dlq", 0), Ok(1));
    w.shard.commit().unwrap();
    let dlq = w.shard.stats("q.dlq").unwrap();
    assert_eq!((dlq.depth, dlq.in_flight), (1, 1), "the leased one stays");
    let back = w.view("q", ids[1]).unwrap();
    assert_eq!(back.attempts, 0);
    assert_eq!(w.shard.stats("q").unwrap().counters.redriven, 3);
    let order: Vec<_> = w.poll(10).iter().map(|d| d.message_id).collect();
    assert_eq!(order, vec![ids[1], ids[2], ids[3]]);
    w.check();
}

#[test]
fn runtime_config_validates_throttle_values_and_shows_them_in_stats() {
    let mut w = World::new();
    w.create("q", 0);
    w.shard
        .set_config(w.now, "throttle.api", " 10.5 , 20 ")
        .unwrap();
    w.shard.set_config(w.now, "app.mode", "fast").unwrap();
    for bad in ["10", "a,b", "-1,2", "1,inf", "1,2,3"] {
        assert!(matches!(
            w.shard.set_config(w.now, "throttle.api", bad),
            Err(ConfigError::Invalid(_))
        ));
    }
    assert!(w.shard.set_config(w.now, "throttle.", "1,1").is_err());
    assert_eq!(w.shard.get_config("throttle.api"), Some(" 10.5 , 20 "));
    assert_eq!(w.shard.list_config("").len(), 2);
    let stats = w.shard.stats("q").unwrap();
    assert_eq!(stats.per_throttle.len(), 1);
    assert_eq!(stats.per_throttle[0].rate_per_second, 10.5);
    assert_eq!(stats.per_throttle[0].burst, 20.0);
    w.shard.set_config(w.now, "app.mode", "").unwrap();
    assert_eq!(w.shard.get_config("app.mode"), None);
    w.shard.commit().unwrap();
    assert_eq!(w.shard.storage().len(Keyspace::Config), 1);
}

#[test]
fn delete_removes_messages_leases_dlq_and_consumers() {
    let mut w = World::new();
    w.create("q", 60_000);
    for _ in 0..3 {
        w.enqueue("q", &[]);
    }
    let c = w.consume("q", 1, 1);
    w.poll(10);
    assert_eq!(w.shard.list_queues().len(), 2);
    let deleted = w.shard.delete_queue(w.now, "q").unwrap();
    w.shard.commit().unwrap();
    assert_eq!(deleted.queues.len(), 2);
    assert_eq!(deleted.dropped_consumers, vec![(c, ConnectionId(1))]);
    assert!(w.shard.list_queues().is_empty());
    let store = w.shard.storage();
    for ks in [
        Keyspace::Messages,
        Keyspace::Bodies,
        Keyspace::Leases,
        Keyspace::Queues,
    ] {
        assert_eq!(store.len(ks), 0, "{ks:?}");
    }
    assert!(matches!(
        w.shard.delete_queue(w.now, "q"),
        Err(DeleteQueueError::QueueNotFound)
    ));
    w.create("q", 0);
    assert_eq!(
        w.shard.stats("q").unwrap().depth,
        0,
        "recreated queue starts empty"
    );
    assert_eq!(w.shard.release_connection(w.now, ConnectionId(1)), 0);
    w.check();
}

#[test]
fn create_queue_errors_and_listing() {
    let mut w = World::new();
    w.create("q", 0);
    assert!(matches!(
        w.shard.create_queue(w.now, QueueSpec::named("q")),
        Err(CreateQueueError::AlreadyExists(_))
    ));
    assert!(matches!(
        w.shard.create_queue(w.now, QueueSpec::named("")),
        Err(CreateQueueError::InvalidName { .. })
    ));
    let long = "x".repeat(limits::QUEUE_NAME_BYTES_MAX - 3);
    assert!(matches!(
        w.shard.create_queue(w.now, QueueSpec::named(&long)),
        Err(CreateQueueError::InvalidName { .. })
    ));
    let bad = QueueSpec {
        scripts: QueueScripts {
            on_enqueue: Some("bad".to_string()),
            on_failure: None,
        },
        ..QueueSpec::named("scripted")
    };
    assert!(matches!(
        w.shard.create_queue(w.now, bad),
        Err(CreateQueueError::HookCompile(_))
    ));
    assert!(w.shard.stats("scripted").is_err());
    let names: Vec<_> = w
        .shard
        .list_queues()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, vec!["q", "q.dlq"]);
    assert_eq!(w.shard.stats("q").unwrap().visibility_timeout_ms, 30_000);
    assert_eq!(
        w.shard
            .register_consumer(w.now, "missing", ConnectionId(1), 1),
        Err(ConsumeError::QueueNotFound)
    );
    let default_hooks = Shard::new(
        MemoryStorage::new(),
        ShardOptions::default(),
        Box::new(NoHooks),
    );
    let mut default_hooks = default_hooks;
    let scripted = QueueSpec {
        scripts: QueueScripts {
            on_enqueue: Some("return {}".to_string()),
            on_failure: None,
        },
        ..QueueSpec::named("s")
    };
    assert!(matches!(
        default_hooks.create_queue(w.now, scripted),
        Err(CreateQueueError::HookCompile(_))
    ));
}

#[test]
fn enqueue_items_fail_individually() {
    let mut w = World::new();
    w.create("q", 0);
    let item = |queue: &str, headers: usize, payload: usize| EnqueueItem {
        queue: queue.to_string(),
        headers: (0..headers)
            .map(|i| (format!("h{i}"), String::new()))
            .collect(),
        payload: Bytes::from(vec![0u8; payload]),
    };
    let results = w.shard.enqueue(
        w.now,
        vec![
            item("q", 0, 10),
            item("missing", 0, 10),
            item("q", limits::HEADERS_MAX + 1, 0),
            item("q", 0, limits::PAYLOAD_BYTES_MAX_DEFAULT + 1),
            item("q", 0, limits::PAYLOAD_BYTES_MAX_DEFAULT),
        ],
    );
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(EnqueueError::QueueNotFound));
    assert!(matches!(
        results[2],
        Err(EnqueueError::TooManyHeaders { .. })
    ));
    assert!(matches!(
        results[3],
        Err(EnqueueError::PayloadTooLarge { .. })
    ));
    assert!(results[4].is_ok());
    assert_eq!(w.shard.stats("q").unwrap().depth, 2);
    assert!(w.shard.enqueue(w.now, vec![]).is_empty());
}

#[test]
fn stats_report_every_field() {
    let mut w = World::with_quantum(5);
    w.create("q", 0);
    w.enqueue("q", &[("fk", "a"), ("w", "2")]);
    w.enqueue("q", &[("fk", "a"), ("w", "3")]);
    w.enqueue("q", &[("fk", "b")]);
    w.consume("q", 1, 1);
    w.consume("q", 2, 1);
    w.poll(1);
    let s = w.shard.stats("q").unwrap();
    assert_eq!((s.depth, s.in_flight, s.pending), (3, 1, 2));
    assert_eq!(
        (s.active_fairness_keys, s.active_consumers, s.quantum),
        (2, 2, 5)
    );
    assert_eq!((s.leader_node_id, s.replication_count), (0, 0));
    assert_eq!(s.per_key.len(), 2);
    let a = s.per_key.iter().find(|k| k.key.as_str() == "a").unwrap();
    assert_eq!((a.pending, a.weight, a.deficit), (1, 3, 14));
    let rows = w.shard.list_queues();
    assert_eq!(
        (rows[0].depth, rows[0].in_flight, rows[0].active_consumers),
        (3, 1, 2)
    );
    assert!(!s.storage_poisoned);
    assert_eq!(w.shard.stats("nope"), Err(StatsError::QueueNotFound));
}

#[test]
fn a_failed_commit_poisons_the_shard() {
    let mut w = World::new();
    w.create("q", 0);
    w.shard.storage_mut().fail_next_apply();
    let item = EnqueueItem {
        queue: "q".to_string(),
        headers: vec![],
        payload: Bytes::new(),
    };
    assert!(w.shard.enqueue(w.now, vec![item.clone()])[0].is_ok());
    assert!(w.shard.commit().is_err());
    assert!(w.shard.is_poisoned());
    assert_eq!(
        w.shard.enqueue(w.now, vec![item])[0],
        Err(EnqueueError::Storage(Poisoned))
    );
    assert!(w.shard.stats("q").unwrap().storage_poisoned);
    assert!(matches!(
        w.shard.set_config(w.now, "a", "b"),
        Err(ConfigError::Storage(_))
    ));
    assert!(matches!(w.shard.commit(), Err(StorageError::Poisoned)));
}

#[test]
fn take_writes_lets_the_server_apply_elsewhere() {
    let mut w = World::new();
    w.create("q", 0);
    w.enqueue("q", &[]);
    let item = EnqueueItem {
        queue: "q".to_string(),
        headers: vec![],
        payload: Bytes::new(),
    };
    w.shard.enqueue(w.now, vec![item]);
    let batch: WriteBatch = w.shard.take_writes();
    // One index record and one body record.
    assert_eq!(batch.len(), 2);
    assert!(!w.shard.has_writes());
    let mut other = w.shard.storage().clone();
    other.apply(&batch).unwrap();
    assert_eq!(other.len(Keyspace::Messages), 2);
    assert_eq!(other.len(Keyspace::Bodies), 2);
    w.shard.poison();
    assert!(w.shard.is_poisoned());
}

fn reopen(
    storage: MemoryStorage,
    now: Time,
    skip_corrupt: bool,
) -> Result<(Shard<MemoryStorage>, RecoveryReport), RecoveryError> {
    let options = ShardOptions {
        seed: 43,
        quantum: 1,
        skip_corrupt,
        ..ShardOptions::default()
    };
    Shard::open(storage, options, Box::new(HeaderHooks::default()), now)
}

#[test]
fn recovery_rebuilds_pending_order_leases_attempts_dlq_and_config() {
    let mut w = World::new();
    w.create("q", 10_000);
    w.shard.set_config(w.now, "throttle.x", "1,2").unwrap();
    for i in 0..10 {
        let key = format!("k{}", i % 3);
        let fail = if i % 4 == 0 { "dlq" } else { "delay=500" };
        w.enqueue("q", &[("fk", &key), ("fail", fail)]);
    }
    w.consume("q", 1, 4);
    let d = w.poll(10);
    w.nack(1, "q", d[0].message_id, "x").unwrap();
    w.nack(1, "q", d[1].message_id, "x").unwrap();
    w.advance_ms(5);
    let before_q = w.shard.inspect_queue("q").unwrap();
    let before_dlq = w.shard.inspect_queue("q.dlq").unwrap();
    let (recovered, report) = reopen(w.shard.storage().clone(), w.now, false).unwrap();
    assert!(report.warnings.is_empty());
    assert_eq!(report.queues, 2);
    assert_eq!(report.leases, 2);
    recovered.check_invariants().unwrap();
    let strip = |dump: QueueDump| -> QueueDump {
        QueueDump {
            messages: dump
                .messages
                .into_iter()
                .map(|mut m| {
                    if let MessageState::Leased { connection, .. } = &mut m.state {
                        *connection = None;
                    }
                    m
                })
                .collect(),
            fifos: dump.fifos,
        }
    };
    assert_eq!(
        strip(recovered.inspect_queue("q").unwrap()),
        strip(before_q)
    );
    assert_eq!(recovered.inspect_queue("q.dlq").unwrap(), before_dlq);
    assert_eq!(recovered.get_config("throttle.x"), Some("1,2"));
    assert_eq!(recovered.stats("q").unwrap().visibility_timeout_ms, 10_000);
    // A recovered lease belongs to no connection.
    let mut recovered = recovered;
    let leased = before_q_leased(&recovered);
    let r = recovered.ack(
        w.now,
        ConnectionId(1),
        &[AckItem {
            queue: "q".to_string(),
            id: leased,
        }],
    );
    assert_eq!(r[0], Err(AckError::MessageNotFound));
    // Leases past their deadline at recovery go through the failure path at once.
    let (late, _) = reopen(w.shard.storage().clone(), w.now.plus_millis(20_000), false).unwrap();
    let s = late.stats("q").unwrap();
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.counters.expired, 2);
    late.check_invariants().unwrap();
}

fn before_q_leased(shard: &Shard<MemoryStorage>) -> MessageId {
    shard
        .inspect_queue("q")
        .unwrap()
        .messages
        .into_iter()
        .find(|m| matches!(m.state, MessageState::Leased { .. }))
        .unwrap()
        .id
}

#[test]
fn corrupt_records_fail_recovery_unless_skipped() {
    let mut w = World::new();
    w.create("q", 0);
    w.enqueue("q", &[]);
    w.enqueue("q", &[]);
    let mut storage = w.shard.storage().clone();
    let mut first_key = None;
    storage
        .scan_prefix(Keyspace::Messages, b"", &mut |k, _| {
            first_key = Some(k.to_vec());
            Ok(false)
        })
        .unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Messages, first_key.unwrap(), vec![1, 2, 3]);
    storage.apply(&batch).unwrap();
    let err = reopen(storage.clone(), w.now, false).unwrap_err();
    assert!(matches!(
        err,
        RecoveryError::Storage(StorageError::Corrupt {
            keyspace: Keyspace::Messages,
            ..
        })
    ));
    let (shard, report) = reopen(storage, w.now, true).unwrap();
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(shard.stats("q").unwrap().depth, 1);
}

#[test]
fn ids_continue_after_recovery_without_collisions() {
    let mut w = World::new();
    w.create("q", 0);
    let a = w.enqueue("q", &[]);
    let (mut shard, _) = reopen(w.shard.storage().clone(), w.now, false).unwrap();
    let item = EnqueueItem {
        queue: "q".to_string(),
        headers: vec![],
        payload: Bytes::new(),
    };
    let b = shard.enqueue(w.now, vec![item])[0].clone().unwrap();
    assert_ne!(a, b);
    shard.commit().unwrap();
    let dump = shard.inspect_queue("q").unwrap();
    assert_eq!(dump.messages.len(), 2);
    assert!(dump.messages[0].order < dump.messages[1].order);
    assert_eq!(dump.messages[0].id, a);
}
