//! Two real [`Shard`]s sharing a global throttle key through the token-lease protocol, with a
//! manual clock and a 1 ms channel: parking, event releases, timers and stats together.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{HeaderHooks, T0_MS};
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::throttle::TokenMsg;
use fila_shard::*;

fn shard(i: u32, now: Time) -> Shard<MemoryStorage> {
    let mut s = Shard::new(
        MemoryStorage::new(),
        ShardOptions {
            seed: u64::from(i) + 1,
            ..ShardOptions::default()
        },
        Box::new(HeaderHooks::default()),
    );
    s.set_throttle_topology(now, i, 2);
    s.set_config(now, "throttle.p", "50,10").unwrap();
    s.create_queue(now, QueueSpec::named("q")).unwrap();
    let items = (0..1_000)
        .map(|_| EnqueueItem {
            queue: "q".to_string(),
            headers: vec![("tk".to_string(), "p".to_string())],
            payload: bytes::Bytes::new(),
        })
        .collect();
    s.enqueue(now, items);
    s.commit().unwrap();
    s.register_consumer(now, "q", ConnectionId(1), 100_000)
        .unwrap();
    s
}

#[test]
fn two_shards_share_one_global_rate() {
    let mut now = Time::from_millis(T0_MS);
    let mut shards = [shard(0, now), shard(1, now)];
    let mut channel: Vec<(Time, u32, TokenMsg)> = Vec::new();
    let mut per_shard = [0usize; 2];
    let mut deliveries: Vec<Time> = Vec::new();
    for step in 0..20_000u64 {
        now = now.plus_micros(500);
        let (due, later): (Vec<_>, Vec<_>) = channel.into_iter().partition(|m| m.0 <= now);
        channel = later;
        for (_, to, msg) in due {
            shards[to as usize].throttle_receive(now, msg);
        }
        for (i, s) in shards.iter_mut().enumerate() {
            if s.next_timer().is_some_and(|t| t <= now) {
                s.tick(now);
            }
            let mut out = Vec::new();
            s.poll_deliveries(now, 1_000, &mut out);
            let acks: Vec<AckItem> = out
                .iter()
                .map(|d| AckItem {
                    queue: "q".to_string(),
                    id: d.message_id,
                })
                .collect();
            if !acks.is_empty() {
                s.ack(now, ConnectionId(1), &acks);
            }
            s.commit().unwrap();
            per_shard[i] += out.len();
            deliveries.extend(out.iter().map(|_| now));
            for (to, msg) in s.take_throttle_messages() {
                channel.push((now.plus_millis(1), to, msg));
            }
            if step % 1_000 == 0 {
                s.check_invariants().unwrap();
            }
        }
    }
    // 10 s at 50/s plus the burst of 10.
    let total = deliveries.len();
    assert!(total <= 510, "{total}");
    assert!(total >= 485, "{total}");
    for w in 0..deliveries.len() {
        let end = deliveries[w].plus_millis(1_000);
        let n = deliveries[w..].iter().take_while(|t| **t < end).count();
        assert!(n <= 60, "{n} deliveries within 1 s");
    }
    assert!(per_shard.iter().all(|n| *n >= 200), "{per_shard:?}");
    let stats = shards[0].stats("q").unwrap();
    assert_eq!(stats.per_throttle.len(), 1);
    assert!(stats.per_throttle[0].tokens <= 10.0);
    let views = shards[0].throttle_views();
    let hits: u64 = views.iter().map(|(_, v)| v.hits).sum();
    let passes: u64 = views.iter().map(|(_, v)| v.passes).sum();
    assert_eq!(passes as usize, per_shard[0]);
    assert!(hits > 0);
}
