//! Global throttling through the real server (2 shards): one throttle key `p` = 50/s with a
//! burst of 10 on messages of two queues owned by different shards; consumers on both, acking
//! as messages arrive. The aggregate delivery rate measured by the client over 10 s (after
//! the initial burst) is within 5 % of 50/s. A behaviour-about-time assertion with a
//! tolerance, as decisions.md allows for end-to-end tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use common::client::{Client, queue_on};
use fila_wire::{AckItem, CreateQueue, EnqueueMessage, ErrorCode, Request, Response};

const ON_ENQUEUE: &str = r#"
function on_enqueue(msg)
  return { throttle_keys = { "p" } }
end
"#;

fn create(client: &mut Client, name: &str) {
    let reply = client.call(&Request::CreateQueue(CreateQueue {
        name: name.into(),
        on_enqueue_script: Some(ON_ENQUEUE.into()),
        on_failure_script: None,
        visibility_timeout_ms: 0,
    }));
    assert!(
        matches!(
            reply,
            Response::CreateQueueResult {
                error_code: ErrorCode::Ok,
                ..
            }
        ),
        "{reply:?}"
    );
}

fn set_config(client: &mut Client, key: &str, value: &str) {
    let reply = client.call(&Request::SetConfig {
        key: key.into(),
        value: value.into(),
    });
    assert!(
        matches!(
            reply,
            Response::SetConfigResult {
                error_code: ErrorCode::Ok
            }
        ),
        "{reply:?}"
    );
}

fn fill(client: &mut Client, queue: &str, n: usize) {
    for _ in 0..n / 100 {
        let messages = (0..100)
            .map(|_| EnqueueMessage {
                queue: queue.into(),
                headers: Vec::new(),
                payload: Bytes::from_static(b"x"),
            })
            .collect();
        let Response::EnqueueResult { results } = client.call(&Request::Enqueue { messages })
        else {
            panic!("enqueue");
        };
        assert!(results.iter().all(|r| r.error_code == ErrorCode::Ok));
    }
}

/// The client's clock: this end-to-end test measures a rate (decisions.md allows it).
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

#[test]
fn a_global_rate_holds_across_two_shards() {
    let server = TestServer::start();
    let mut admin = Client::connect(server.addr);
    set_config(&mut admin, "throttle.p", "50,10");
    let queues = [queue_on("thr", 0, 2), queue_on("thr", 1, 2)];
    for q in &queues {
        create(&mut admin, q);
        fill(&mut admin, q, 500);
    }
    let mut consumer = Client::connect(server.addr);
    let subs: Vec<u32> = queues.iter().map(|q| consumer.consume(q)).collect();
    let start = clock();
    let mut arrivals: Vec<(Duration, String)> = Vec::new();
    while start.elapsed() < Duration::from_secs(12) {
        let (rid, response) = consumer.recv_frame();
        let Response::Delivery { messages } = response else {
            continue;
        };
        assert!(subs.contains(&rid));
        let at = start.elapsed();
        let items = messages
            .iter()
            .map(|m| AckItem {
                queue: m.queue.clone(),
                message_id: m.message_id.clone(),
            })
            .collect();
        for m in &messages {
            arrivals.push((at, m.queue.to_string()));
        }
        consumer.send(&Request::Ack { items });
    }
    // The first second holds the burst (10) and its first refills; measure the 10 s after.
    let from = Duration::from_secs(1);
    let to = Duration::from_secs(11);
    let window: Vec<_> = arrivals
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .collect();
    let rate = window.len() as f64 / 10.0;
    eprintln!(
        "throttle e2e: {rate}/s aggregate over 10 s, {} in total",
        arrivals.len()
    );
    assert!(
        (rate - 50.0).abs() <= 2.5,
        "aggregate rate {rate}/s over 10 s, want 50 ± 5 % ({} deliveries in total)",
        arrivals.len()
    );
    // Both shards were served.
    for q in &queues {
        let n = window.iter().filter(|(_, queue)| queue == q).count();
        assert!(n >= 100, "queue {q} got {n} of {}", window.len());
    }
    // The first second never exceeds rate + burst.
    let first = arrivals.iter().filter(|(at, _)| *at < from).count();
    assert!(first <= 60 + 2, "{first} deliveries in the first second");
    let stats = admin.stats(&queues[0]);
    let p = stats
        .per_throttle_stats
        .iter()
        .find(|t| &*t.key == "p")
        .expect("stats of throttle key p");
    assert_eq!((p.rate_per_second, p.burst), (50.0, 10.0));
    assert!(p.tokens >= 0.0 && p.tokens <= 10.0);
}
