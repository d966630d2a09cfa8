//! Micro-benchmarks of the shard core (criterion): the deliver+ack cycle per message with 10
//! and 1,000,000 fairness keys, and enqueue per message in batches of 100. Only the shard's
//! own work is timed; refilling and draining happen outside the timed section.
//! Variants: `shard` (writes built, then dropped; unbounded body cache, so every body is
//! warm) and `commit` (applied to MemoryStorage; default 64 MiB body cache, so with 1M keys
//! most bodies are cold and read from storage at delivery).
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
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

/// Fairness key from the `fk` header, like a typical `on_enqueue` script.
struct KeyFromHeader;

impl Hooks for KeyFromHeader {
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
            throttle_keys: Vec::new(),
        }
    }
    fn on_failure(&mut self, _: HookContext<'_>, _: &FailureInput<'_>) -> FailureDecision {
        FailureDecision::Retry { delay_ms: 0 }
    }
}

const BATCH: usize = 100;

fn item(key: &str) -> EnqueueItem {
    EnqueueItem {
        queue: "q".to_string(),
        headers: vec![("fk".to_string(), key.to_string())],
        payload: Bytes::from_static(&[7u8; 64]),
    }
}

fn setup(keys: usize, commit: bool) -> (Shard<MemoryStorage>, Vec<String>) {
    let mut shard = Shard::new(
        MemoryStorage::new(),
        ShardOptions {
            seed: 1,
            // `shard` drops its writes, so every body must stay cached (warm path); `commit`
            // keeps the default 64 MiB budget, so with 1M keys most deliveries read storage.
            body_cache_bytes: if commit {
                BODY_CACHE_BYTES_DEFAULT
            } else {
                usize::MAX
            },
            ..ShardOptions::default()
        },
        Box::new(KeyFromHeader),
    );
    let now = Time::from_millis(1_700_000_000_000);
    shard.create_queue(now, QueueSpec::named("q")).unwrap();
    let names: Vec<String> = (0..keys).map(|k| format!("tenant-{k}")).collect();
    // One message per key for many keys, a deep backlog for few keys.
    let per_key = (100_000 / keys).max(1);
    for chunk in names.chunks(1_000) {
        let items = chunk
            .iter()
            .flat_map(|k| std::iter::repeat_n(k, per_key))
            .map(|k| item(k))
            .collect();
        shard.enqueue(now, items);
        if commit {
            shard.commit().unwrap();
        } else {
            shard.take_writes();
        }
    }
    shard
        .register_consumer(now, "q", ConnectionId(1), 1_000_000)
        .unwrap();
    (shard, names)
}

fn deliver_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("deliver_ack");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for keys in [10usize, 1_000_000] {
        for commit in [false, true] {
            let (mut shard, _) = setup(keys, commit);
            let now = Time::from_millis(1_700_000_000_000);
            let mut out = Vec::with_capacity(BATCH);
            let mut acks = Vec::with_capacity(BATCH);
            let label = if commit { "commit" } else { "shard" };
            group.bench_function(BenchmarkId::new(label, keys), |b| {
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
                        if commit {
                            shard.commit().unwrap();
                        } else {
                            black_box(shard.take_writes());
                        }
                        total += start.elapsed();
                        done += out.len() as u64;
                        // Refill the same keys (untimed) so the key count stays constant.
                        let refill = out.iter().map(|d| item(d.fairness_key.as_str())).collect();
                        shard.enqueue(now, refill);
                        if commit {
                            shard.commit().unwrap();
                        } else {
                            shard.take_writes();
                        }
                    }
                    // Report per message: scale to the requested iteration count.
                    total.mul_f64(iters as f64 / done as f64)
                });
            });
        }
    }
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue_batch_100");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for commit in [false, true] {
        let label = if commit { "commit" } else { "shard" };
        group.bench_function(label, |b| {
            let fresh = || {
                let mut shard = Shard::new(
                    MemoryStorage::new(),
                    ShardOptions::default(),
                    Box::new(NoHooks),
                );
                shard
                    .create_queue(Time::from_millis(1), QueueSpec::named("q"))
                    .unwrap();
                shard
            };
            let mut shard = fresh();
            let mut held = 0usize;
            let now = Time::from_millis(1_700_000_000_000);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch: Vec<EnqueueItem> = (0..BATCH)
                        .map(|_| EnqueueItem {
                            queue: "q".to_string(),
                            headers: Vec::new(),
                            payload: Bytes::from_static(&[7u8; 64]),
                        })
                        .collect();
                    #[allow(clippy::disallowed_methods)] // benchmark timing
                    let start = std::time::Instant::now();
                    black_box(shard.enqueue(now, batch));
                    if commit {
                        shard.commit().unwrap();
                    } else {
                        black_box(shard.take_writes());
                    }
                    total += start.elapsed();
                    done += BATCH as u64;
                    held += BATCH;
                    if held >= 200_000 {
                        shard = fresh();
                        held = 0;
                    }
                }
                total.mul_f64(iters as f64 / done as f64)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, deliver_ack, enqueue);
criterion_main!(benches);
