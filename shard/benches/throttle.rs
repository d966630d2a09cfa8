//! Throttle benchmarks (criterion):
//! - `throttle_check`: the scheduler's check of a message carrying 3 throttle keys against a
//!   table of 10,000 configured buckets (`can_pass`), and check + take.
//! - `deliver_ack`: the deliver+ack cycle per message of an unthrottled queue with 0 and with
//!   10,000 configured buckets (must not differ), and of messages carrying 3 throttle keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fila_shard::config::ThrottleLimit;
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::throttle::Throttle;
use fila_shard::*;

const BUCKETS: usize = 10_000;
const BATCH: usize = 100;

fn huge() -> ThrottleLimit {
    ThrottleLimit {
        rate_per_second: 1e12,
        burst: 1e12,
    }
}

fn throttle_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("throttle_check");
    let now = Time::from_millis(1_700_000_000_000);
    let mut throttle = Throttle::new(0, 1);
    for i in 0..BUCKETS {
        throttle.set_limit(now, &ThrottleKey::new(&format!("tenant-{i}")), Some(huge()));
    }
    let keys = [
        ThrottleKey::new("tenant-17"),
        ThrottleKey::new("tenant-4242"),
        ThrottleKey::new("tenant-9999"),
    ];
    let mut t = now;
    group.bench_function("can_pass_3_keys", |b| {
        b.iter(|| {
            t = t.plus_micros(1);
            black_box(throttle.can_pass(black_box(&keys), t))
        })
    });
    group.bench_function("can_pass_and_take_3_keys", |b| {
        b.iter(|| {
            t = t.plus_micros(1);
            if throttle.can_pass(black_box(&keys), t) {
                throttle.take(&keys, t);
            }
        })
    });
    group.finish();
}

struct Keys(Vec<String>);

impl Hooks for Keys {
    fn compile(
        &mut self,
        _: HookContext<'_>,
        _: &QueueId,
        _: &QueueScripts,
    ) -> Result<(), HookCompileError> {
        Ok(())
    }
    fn forget(&mut self, _: &QueueId) {}
    fn on_enqueue(&mut self, _: HookContext<'_>, input: &EnqueueInput<'_>) -> EnqueueDecision {
        EnqueueDecision {
            fairness_key: input.headers.first().map(|(_, v)| v.clone()),
            weight: 1,
            throttle_keys: self.0.clone(),
        }
    }
    fn on_failure(&mut self, _: HookContext<'_>, _: &FailureInput<'_>) -> FailureDecision {
        FailureDecision::Retry { delay_ms: 0 }
    }
}

fn item(key: &str) -> EnqueueItem {
    EnqueueItem {
        queue: "q".to_string(),
        headers: vec![("fk".to_string(), key.to_string())],
        payload: Bytes::from_static(&[7u8; 64]),
    }
}

fn setup(buckets: usize, throttle_keys: Vec<String>) -> Shard<MemoryStorage> {
    let mut shard = Shard::new(
        MemoryStorage::new(),
        ShardOptions {
            seed: 1,
            body_cache_bytes: usize::MAX,
            ..ShardOptions::default()
        },
        Box::new(Keys(throttle_keys)),
    );
    let now = Time::from_millis(1_700_000_000_000);
    for i in 0..buckets {
        shard
            .set_config(
                now,
                &format!("throttle.tenant-{i}"),
                "1000000000,1000000000",
            )
            .unwrap();
    }
    shard.create_queue(now, QueueSpec::named("q")).unwrap();
    let items = (0..100_000)
        .map(|i| item(&format!("k{}", i % 10)))
        .collect();
    shard.enqueue(now, items);
    shard.take_writes();
    shard
        .register_consumer(now, "q", ConnectionId(1), 1_000_000)
        .unwrap();
    shard
}

fn deliver_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("deliver_ack");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    let three = vec![
        "tenant-17".to_string(),
        "tenant-4242".to_string(),
        "tenant-9999".to_string(),
    ];
    for (label, buckets, keys) in [
        ("unthrottled", BUCKETS, Vec::new()),
        ("unthrottled", 0, Vec::new()),
        ("3_throttle_keys", BUCKETS, three),
    ] {
        let mut shard = setup(buckets, keys);
        let now = Time::from_millis(1_700_000_000_000);
        let mut out = Vec::with_capacity(BATCH);
        let mut acks = Vec::with_capacity(BATCH);
        group.bench_function(BenchmarkId::new(label, format!("{buckets}_buckets")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    out.clear();
                    #[allow(clippy::disallowed_methods)] // benchmark timing
                    let start = std::time::Instant::now();
                    shard.poll_deliveries(now, BATCH, &mut out);
                    acks.clear();
                    acks.extend(out.iter().map(|d| AckItem {
                        queue: "q".to_string(),
                        id: d.message_id,
                    }));
                    black_box(shard.ack(now, ConnectionId(1), &acks));
                    black_box(shard.take_writes());
                    total += start.elapsed();
                    done += out.len().max(1) as u64;
                    let refill = out.iter().map(|d| item(d.fairness_key.as_str())).collect();
                    shard.enqueue(now, refill);
                    shard.take_writes();
                }
                total.mul_f64(iters as f64 / done as f64)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, throttle_check, deliver_ack);
criterion_main!(benches);
