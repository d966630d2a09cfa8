//! Lua hook cost (criterion).
//!
//! * `lua_on_enqueue/*`: one `on_enqueue` call through [`LuaHooks`] — three headers in, a
//!   three-field table out — without and with a `fila.get` call. Before criterion runs, each
//!   variant is also timed call by call (100,000 calls, real clock) and its p50 / p99 / p99.9
//!   printed: the per-call distribution the targets are about (p50 <= 2 us, p99 <= 10 us).
//! * `lua_enqueue_batch_100/*`: `Shard::enqueue` of batches of 100 such messages into a queue
//!   without hooks (`NoHooks`), into a queue without scripts on a `LuaHooks` host, and into a
//!   queue with the script (target: with >= 80 % of the throughput without), and with the
//!   same decision computed in Rust (what the decision itself costs the scheduler).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fila_shard::config::RuntimeConfig;
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

const SCRIPT: &str = r#"
function on_enqueue(msg)
  local h = msg.headers
  return { fairness_key = h.tenant, weight = tonumber(h.priority) or 1, throttle_keys = { h.region } }
end"#;

const SCRIPT_WITH_GET: &str = r#"
function on_enqueue(msg)
  local h = msg.headers
  return {
    fairness_key = h.tenant,
    weight = tonumber(fila.get("weight." .. h.tenant)) or 1,
    throttle_keys = { h.region },
  }
end"#;

/// The real monotonic clock (the bench is a legitimate clock site).
fn real_clock() -> Box<dyn Fn() -> Duration> {
    #[allow(clippy::disallowed_methods)] // benchmark: LuaHooks needs a real clock
    let start = Instant::now();
    Box::new(move || start.elapsed())
}

fn headers(i: usize) -> Vec<(String, String)> {
    vec![
        ("tenant".to_string(), format!("tenant-{}", i % 100)),
        ("priority".to_string(), ((i % 5) + 1).to_string()),
        ("region".to_string(), "eu-west".to_string()),
    ]
}

fn hooks_with(script: &str, config: &RuntimeConfig) -> LuaHooks {
    let mut hooks = LuaHooks::new(LuaLimits::default(), real_clock()).unwrap();
    let scripts = QueueScripts {
        on_enqueue: Some(script.to_string()),
        on_failure: None,
    };
    hooks
        .compile(HookContext { config }, &QueueId::new("q"), &scripts)
        .unwrap();
    hooks
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn distribution(name: &str, script: &str) {
    let config = RuntimeConfig::new();
    let mut hooks = hooks_with(script, &config);
    let queue = QueueId::new("q");
    let inputs: Vec<_> = (0..1_000).map(headers).collect();
    let mut samples = Vec::with_capacity(100_000);
    for i in 0..110_000 {
        let h = &inputs[i % inputs.len()];
        let input = EnqueueInput {
            queue: &queue,
            headers: h,
            payload_size: 64,
        };
        #[allow(clippy::disallowed_methods)] // benchmark timing
        let start = Instant::now();
        let decision = hooks.on_enqueue(HookContext { config: &config }, &input);
        let ns = start.elapsed().as_nanos() as u64;
        black_box(decision);
        if i >= 10_000 {
            samples.push(ns); // the first 10,000 calls warm up
        }
    }
    assert_eq!(hooks.stats(&queue).unwrap().errors, 0);
    samples.sort_unstable();
    println!(
        "lua_on_enqueue/{name}: per-call over {} calls: p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
        samples.len(),
        percentile(&samples, 0.50) as f64 / 1_000.0,
        percentile(&samples, 0.99) as f64 / 1_000.0,
        percentile(&samples, 0.999) as f64 / 1_000.0,
        *samples.last().unwrap() as f64 / 1_000.0,
    );
}

fn on_enqueue(c: &mut Criterion) {
    distribution("three_fields", SCRIPT);
    distribution("three_fields_fila_get", SCRIPT_WITH_GET);
    let mut group = c.benchmark_group("lua_on_enqueue");
    for (name, script) in [
        ("three_fields", SCRIPT),
        ("three_fields_fila_get", SCRIPT_WITH_GET),
    ] {
        let config = RuntimeConfig::new();
        let mut hooks = hooks_with(script, &config);
        let queue = QueueId::new("q");
        let h = headers(7);
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = EnqueueInput {
                    queue: &queue,
                    headers: &h,
                    payload_size: 64,
                };
                black_box(hooks.on_enqueue(HookContext { config: &config }, &input))
            });
        });
    }
    group.finish();
}

const BATCH: usize = 100;

/// The script's decision computed in Rust: separates the Lua cost from the cost of what the
/// decision asks of the scheduler (100 keys, weights, a throttle key per message).
struct SameDecisionInRust;

impl Hooks for SameDecisionInRust {
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
        let get = |name: &str| {
            input
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        EnqueueDecision {
            fairness_key: get("tenant"),
            weight: get("priority").and_then(|p| p.parse().ok()).unwrap_or(1),
            throttle_keys: get("region").into_iter().collect(),
        }
    }
    fn on_failure(&mut self, _: HookContext<'_>, _: &FailureInput<'_>) -> FailureDecision {
        FailureDecision::Retry { delay_ms: 0 }
    }
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("lua_enqueue_batch_100");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    for variant in [
        "no_hooks",
        "lua_host_no_script",
        "rust_same_decision",
        "lua_script",
    ] {
        let fresh = || {
            let hooks: Box<dyn Hooks> = match variant {
                "no_hooks" => Box::new(NoHooks),
                "rust_same_decision" => Box::new(SameDecisionInRust),
                _ => Box::new(LuaHooks::new(LuaLimits::default(), real_clock()).unwrap()),
            };
            let mut shard = Shard::new(MemoryStorage::new(), ShardOptions::default(), hooks);
            let spec = QueueSpec {
                name: "q".to_string(),
                scripts: QueueScripts {
                    on_enqueue: (variant == "lua_script").then(|| SCRIPT.to_string()),
                    on_failure: None,
                },
                visibility_timeout_ms: 0,
            };
            shard.create_queue(Time::from_millis(1), spec).unwrap();
            shard
        };
        let mut shard = fresh();
        let mut held = 0usize;
        let now = Time::from_millis(1_700_000_000_000);
        group.bench_function(BenchmarkId::from_parameter(variant), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch: Vec<EnqueueItem> = (0..BATCH)
                        .map(|i| EnqueueItem {
                            queue: "q".to_string(),
                            headers: headers(held + i),
                            payload: Bytes::from_static(&[7u8; 64]),
                        })
                        .collect();
                    #[allow(clippy::disallowed_methods)] // benchmark timing
                    let start = Instant::now();
                    black_box(shard.enqueue(now, batch));
                    black_box(shard.take_writes());
                    total += start.elapsed();
                    done += BATCH as u64;
                    held += BATCH;
                    if held >= 200_000 {
                        shard = fresh();
                        held = 0;
                    }
                }
                // Per message.
                total.mul_f64(iters as f64 / done as f64)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, on_enqueue, enqueue);
criterion_main!(benches);
