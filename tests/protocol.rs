//! The broker over the wire: the message lifecycle against a 2-shard server, with queues on
//! both shards so that every test crosses shards whichever shard accepted the connection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;

use common::client::{Client, queue_on};
use common::{ServerOptions, TestServer};
use fila_wire::{CreateQueue, ErrorCode, Request, Response};

const SHARDS: usize = 2;

/// One queue per shard, created on `client`.
fn queues(client: &mut Client, prefix: &str, visibility_timeout_ms: u64) -> Vec<String> {
    (0..SHARDS)
        .map(|shard| {
            let name = queue_on(prefix, shard, SHARDS);
            client.create_queue(&name, visibility_timeout_ms);
            name
        })
        .collect()
}

#[test]
fn enqueue_consume_ack_nack_across_shards() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "life", 0);

    // One Enqueue batch spanning both shards: results come back in request order.
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| format!("m{i}").into_bytes()).collect();
    let items: Vec<(&str, &[u8])> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (names[i % 2].as_str(), p.as_slice()))
        .collect();
    let ids = client.enqueue(&items);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 10);
    for name in &names {
        assert_eq!(client.stats(name).depth, 5);
    }

    // Two subscriptions on one connection, one per shard.
    let subs: Vec<u32> = names.iter().map(|n| client.consume(n)).collect();
    for (q, sub) in subs.iter().enumerate() {
        let got = client.take(*sub, 5);
        let expected: Vec<&String> = ids.iter().skip(q).step_by(2).collect();
        let got_ids: Vec<&str> = got.iter().map(|m| &*m.message_id).collect();
        assert_eq!(got_ids, expected, "FIFO within the default key");
        for m in &got {
            assert_eq!(&*m.queue, names[q].as_str());
            assert_eq!(m.attempt_count, 0);
            assert_eq!(&*m.fairness_key, "default");
            assert_eq!(m.headers, vec![("n".into(), "v".into())]);
            assert!(m.enqueued_at > 0 && m.leased_at >= m.enqueued_at);
        }
        let stats = client.stats(&names[q]);
        assert_eq!((stats.depth, stats.in_flight), (5, 5));
        assert_eq!(stats.active_consumers, 1);

        // Ack the first two, nack the rest: they come back with attempts 1.
        let acks: Vec<(&str, &str)> = got[..2]
            .iter()
            .map(|m| (&*m.queue, &*m.message_id))
            .collect();
        assert_eq!(client.ack(&acks), vec![ErrorCode::Ok; 2]);
        let nacks: Vec<(&str, &str)> = got[2..]
            .iter()
            .map(|m| (&*m.queue, &*m.message_id))
            .collect();
        assert_eq!(client.nack(&nacks, "boom"), vec![ErrorCode::Ok; 3]);
        let again = client.take(*sub, 3);
        let again_ids: BTreeSet<&str> = again.iter().map(|m| &*m.message_id).collect();
        let nacked_ids: BTreeSet<&str> = nacks.iter().map(|(_, id)| *id).collect();
        assert_eq!(again_ids, nacked_ids);
        assert!(again.iter().all(|m| m.attempt_count == 1));
        // A second ack of an acked message changes nothing.
        assert_eq!(client.ack(&acks[..1]), vec![ErrorCode::MessageNotFound]);
        let rest: Vec<(&str, &str)> = again.iter().map(|m| (&*m.queue, &*m.message_id)).collect();
        assert_eq!(client.ack(&rest), vec![ErrorCode::Ok; 3]);
        let stats = client.stats(&names[q]);
        assert_eq!((stats.depth, stats.in_flight), (0, 0));
    }

    // Ack of an unknown id, a malformed id and an unknown queue: per-item errors.
    let codes = client.ack(&[
        (names[0].as_str(), "0190b7c2-0000-7000-8000-000000000000"),
        (names[1].as_str(), "not-a-uuid"),
        ("nope", "0190b7c2-0000-7000-8000-000000000000"),
    ]);
    assert_eq!(codes, vec![ErrorCode::MessageNotFound; 3]);
}

#[test]
fn enqueue_into_a_missing_queue_fails_per_item() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "partial", 0);
    let reply = client.call(&Request::Enqueue {
        messages: [
            "missing-a",
            names[0].as_str(),
            "missing-b",
            names[1].as_str(),
        ]
        .iter()
        .map(|q| fila_wire::EnqueueMessage {
            queue: (*q).into(),
            headers: vec![],
            payload: bytes::Bytes::from_static(b"x"),
        })
        .collect(),
    });
    let Response::EnqueueResult { results } = reply else {
        panic!("{reply:?}")
    };
    let codes: Vec<ErrorCode> = results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::QueueNotFound,
            ErrorCode::Ok,
            ErrorCode::QueueNotFound,
            ErrorCode::Ok
        ]
    );
}

#[test]
fn visibility_timeout_expiry_redelivers_with_an_attempt() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "expiry", 300);
    for name in &names {
        let ids = client.enqueue(&[(name.as_str(), b"x".as_slice())]);
        let sub = client.consume(name);
        let first = client.take(sub, 1);
        assert_eq!(
            (&*first[0].message_id, first[0].attempt_count),
            (&*ids[0], 0)
        );
        // Not acked: the lease expires and the message comes back.
        let second = client.take(sub, 1);
        assert_eq!(
            (&*second[0].message_id, second[0].attempt_count),
            (&*ids[0], 1)
        );
        // The expired lease can no longer be acked; the current one can.
        assert_eq!(
            client.ack(&[(name.as_str(), &*ids[0])]),
            vec![ErrorCode::Ok]
        );
    }
}

#[test]
fn leases_are_connection_scoped_and_released_on_disconnect() {
    let server = TestServer::start();
    let mut admin = Client::connect(server.addr);
    let names = queues(&mut admin, "scoped", 0);
    for name in &names {
        let ids = admin.enqueue(&[(name.as_str(), b"x".as_slice())]);
        let mut holder = Client::connect(server.addr);
        let sub = holder.consume(name);
        let got = holder.take(sub, 1);
        assert_eq!(&*got[0].message_id, ids[0].as_str());
        // Another connection cannot ack it.
        assert_eq!(
            admin.ack(&[(name.as_str(), ids[0].as_str())]),
            vec![ErrorCode::MessageNotFound]
        );
        // Closing the holder releases the lease at once (a failed attempt).
        drop(holder);
        let sub = admin.consume(name);
        let again = admin.take(sub, 1);
        assert_eq!(
            (&*again[0].message_id, again[0].attempt_count),
            (&*ids[0], 1)
        );
        assert_eq!(admin.ack(&[(name.as_str(), &*ids[0])]), vec![ErrorCode::Ok]);
    }
}

#[test]
fn cancel_consume_stops_deliveries_but_leases_stay_ackable() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "cancel", 0);
    for name in &names {
        let ids = client.enqueue(&[(name.as_str(), b"a".as_slice())]);
        let sub = client.consume(name);
        let got = client.take(sub, 1);
        client.send_with_id(sub, &Request::CancelConsume);
        client.ping();
        let later = client.enqueue(&[(name.as_str(), b"b".as_slice())]);
        assert_eq!(
            client.ack(&[(name.as_str(), &*got[0].message_id)]),
            vec![ErrorCode::Ok]
        );
        let stats = client.stats(name);
        assert_eq!(
            (stats.depth, stats.in_flight, stats.active_consumers),
            (1, 0, 0)
        );
        assert_eq!(client.buffered(sub), 0);
        assert_ne!(ids, later);
    }
}

#[test]
fn credit_window_bounds_unacked_deliveries() {
    let server = TestServer::start_with(
        ServerOptions::default().with_config("[server]\ncredit_window = 3\n"),
    );
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "credit", 0);
    for name in &names {
        let payload = [b'x'; 8];
        let items: Vec<(&str, &[u8])> = (0..10).map(|_| (name.as_str(), &payload[..])).collect();
        client.enqueue(&items);
        let sub = client.consume(name);
        let first = client.take(sub, 3);
        // The core leases at most the window; stats are answered after any delivery it made.
        client.ping();
        let stats = client.stats(name);
        assert_eq!((stats.depth, stats.in_flight), (10, 3));
        let acks: Vec<(&str, &str)> = first.iter().map(|m| (&*m.queue, &*m.message_id)).collect();
        assert_eq!(client.ack(&acks), vec![ErrorCode::Ok; 3]);
        let next = client.take(sub, 3);
        let acks: Vec<(&str, &str)> = next.iter().map(|m| (&*m.queue, &*m.message_id)).collect();
        assert_eq!(client.ack(&acks), vec![ErrorCode::Ok; 3]);
        assert_eq!(client.stats(name).depth, 4);
    }
}

#[test]
fn admin_requests_queues_config_stats_redrive() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "admin", 0);

    // Duplicate create, consume of a missing queue, stats of a missing queue.
    let dup = client.call(&Request::CreateQueue(CreateQueue {
        name: names[0].as_str().into(),
        on_enqueue_script: None,
        on_failure_script: None,
        visibility_timeout_ms: 0,
    }));
    assert!(matches!(
        dup,
        Response::CreateQueueResult {
            error_code: ErrorCode::QueueAlreadyExists,
            ..
        }
    ));
    let missing = client.call(&Request::Consume {
        queue: "missing".into(),
    });
    assert!(matches!(
        missing,
        Response::Error {
            code: ErrorCode::QueueNotFound,
            ..
        }
    ));
    let missing = client.call(&Request::GetStats {
        queue: "missing".into(),
    });
    assert!(matches!(
        missing,
        Response::Error {
            code: ErrorCode::QueueNotFound,
            ..
        }
    ));

    // ListQueues gathers every shard: both queues and their DLQs.
    client.enqueue(&[(names[1].as_str(), b"x".as_slice())]);
    let Response::ListQueuesResult { queues, .. } = client.call(&Request::ListQueues) else {
        panic!("ListQueues")
    };
    let listed: Vec<(String, u64)> = queues
        .iter()
        .map(|q| (q.name.to_string(), q.depth))
        .collect();
    let mut expected = vec![
        (names[0].clone(), 0),
        (format!("{}.dlq", names[0]), 0),
        (names[1].clone(), 1),
        (format!("{}.dlq", names[1]), 0),
    ];
    expected.sort();
    assert_eq!(listed, expected);

    // Stats fields.
    let stats = client.stats(&names[1]);
    assert_eq!(stats.error_code, ErrorCode::Ok);
    assert_eq!((stats.depth, stats.active_fairness_keys), (1, 1));
    assert_eq!(stats.quantum, 1000);
    assert_eq!(stats.per_key_stats.len(), 1);
    assert_eq!(&*stats.per_key_stats[0].key, "default");

    // Runtime config reaches every shard; invalid throttle values are refused.
    let set = |client: &mut Client, key: &str, value: &str| match client.call(&Request::SetConfig {
        key: key.into(),
        value: value.into(),
    }) {
        Response::SetConfigResult { error_code } => error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        set(&mut client, "throttle.stripe", "100, 10"),
        ErrorCode::Ok
    );
    assert_eq!(set(&mut client, "app.mode", "blue"), ErrorCode::Ok);
    assert_eq!(
        set(&mut client, "throttle.bad", "fast"),
        ErrorCode::InvalidConfigValue
    );
    // The empty key and the broker's reserved namespace are refused, and refusing them breaks
    // nothing (an empty key once reached storage and stopped every shard's writes).
    assert_eq!(set(&mut client, "", "x"), ErrorCode::InvalidConfigValue);
    assert_eq!(set(&mut client, "", ""), ErrorCode::InvalidConfigValue);
    assert_eq!(
        set(&mut client, "__fila.apikey.x", "{}"),
        ErrorCode::InvalidConfigValue
    );
    client.enqueue(&[(names[0].as_str(), b"still writable".as_slice())]);
    // Every connection sees it, whichever shard it landed on.
    for _ in 0..4 {
        let mut other = Client::connect(server.addr);
        let got = other.call(&Request::GetConfig {
            key: "app.mode".into(),
        });
        assert_eq!(
            got,
            Response::GetConfigResult {
                error_code: ErrorCode::Ok,
                value: "blue".into()
            }
        );
        let missing = other.call(&Request::GetConfig {
            key: "throttle.bad".into(),
        });
        assert_eq!(
            missing,
            Response::GetConfigResult {
                error_code: ErrorCode::Ok,
                value: "".into()
            }
        );
    }
    let Response::ListConfigResult { entries, .. } = client.call(&Request::ListConfig {
        prefix: "throttle.".into(),
    }) else {
        panic!("ListConfig")
    };
    let keys: Vec<&str> = entries.iter().map(|e| &*e.key).collect();
    assert_eq!(keys, vec!["throttle.stripe"]);
    let stats = client.stats(&names[0]);
    assert_eq!(stats.per_throttle_stats.len(), 1);
    assert_eq!(stats.per_throttle_stats[0].rate_per_second, 100.0);
    assert_eq!(set(&mut client, "app.mode", ""), ErrorCode::Ok);
    let Response::ListConfigResult { entries, .. } = client.call(&Request::ListConfig {
        prefix: "app.".into(),
    }) else {
        panic!("ListConfig")
    };
    assert!(entries.is_empty());

    // Redrive: errors for a non-DLQ and an orphan DLQ; an empty DLQ moves nothing.
    let redrive = |client: &mut Client, dlq: &str| match client.call(&Request::Redrive {
        dlq_queue: dlq.into(),
        count: 0,
    }) {
        Response::RedriveResult {
            error_code,
            redriven,
        } => (error_code, redriven),
        Response::Error { code, .. } => (code, 0),
        other => panic!("{other:?}"),
    };
    assert_eq!(redrive(&mut client, &names[0]).0, ErrorCode::NotADLQ);
    assert_eq!(
        redrive(&mut client, &format!("{}.dlq", names[0])),
        (ErrorCode::Ok, 0)
    );
    let orphan = redrive(&mut client, "ghost.dlq").0;
    assert!(
        matches!(
            orphan,
            ErrorCode::ParentQueueNotFound | ErrorCode::QueueNotFound
        ),
        "{orphan:?}"
    );

    // Delete removes the queue and its DLQ; a queue created again starts empty.
    let deleted = client.call(&Request::DeleteQueue {
        queue: names[1].as_str().into(),
    });
    assert_eq!(
        deleted,
        Response::DeleteQueueResult {
            error_code: ErrorCode::Ok
        }
    );
    client.create_queue(&names[1], 0);
    assert_eq!(client.stats(&names[1]).depth, 0);

    // Key management works with authentication off (unchecked, §11).
    let auth = client.call(&Request::ListApiKeys);
    assert_eq!(
        auth,
        Response::ListApiKeysResult {
            error_code: ErrorCode::Ok,
            keys: Vec::new()
        }
    );
}

#[test]
fn messages_survive_a_restart_and_acked_ones_stay_gone() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let names = queues(&mut client, "restart", 0);
    let mut kept = BTreeSet::new();
    for name in &names {
        let items: Vec<(&str, &[u8])> = (0..6).map(|_| (name.as_str(), b"p".as_slice())).collect();
        let ids = client.enqueue(&items);
        let sub = client.consume(name);
        let got = client.take(sub, 6);
        let acks: Vec<(&str, &str)> = got[..3]
            .iter()
            .map(|m| (&*m.queue, &*m.message_id))
            .collect();
        assert_eq!(client.ack(&acks), vec![ErrorCode::Ok; 3]);
        kept.extend(ids[3..].iter().cloned());
    }
    drop(client);
    let server = server.restart();
    let mut client = Client::connect(server.addr);
    let mut seen = BTreeSet::new();
    for name in &names {
        let sub = client.consume(name);
        for m in client.take(sub, 3) {
            assert!(seen.insert(m.message_id.to_string()), "delivered twice");
        }
        client.ping();
        assert_eq!(client.buffered(sub), 0, "an acked message came back");
    }
    assert_eq!(seen, kept);
}
