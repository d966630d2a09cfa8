//! In-process metrics tests: drive real `Shard`s to each instrumentation point, snapshot and
//! merge them through `fila::telemetry::Pipeline`, export with the SDK's in-memory exporter,
//! and assert names, labels and values (counters and gauges exact, histograms by count).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fila::telemetry::Pipeline;
use fila::telemetry::pipeline::{CATALOGUE, METER, TEMPORALITY};
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, InMemoryMetricExporterBuilder};

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Counter(u64),
    GaugeU(u64),
    GaugeI(i64),
    GaugeF(f64),
    Histogram(u64),
}

type Labels = BTreeMap<String, String>;
type Points = BTreeMap<(String, Labels), Value>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Harness {
    pipeline: Pipeline,
    memory: InMemoryMetricExporter,
}

impl Harness {
    fn new(max_key_series: usize) -> Harness {
        let memory = InMemoryMetricExporterBuilder::new()
            .with_temporality(TEMPORALITY)
            .build();
        Harness {
            pipeline: Pipeline::new(memory.clone(), "fila-test", max_key_series),
            memory,
        }
    }

    /// Snapshots `shards`, merges, exports once, and returns the exported points.
    fn export(&mut self, shards: &[&Shard<MemoryStorage>], max_key_series: usize) -> Points {
        let snapshots: Vec<_> = shards
            .iter()
            .map(|s| s.metrics_snapshot(max_key_series))
            .collect();
        self.pipeline.update(&snapshots);
        self.memory.reset();
        self.pipeline.flush().unwrap();
        let mut points = Points::new();
        for rm in self.memory.get_finished_metrics().unwrap() {
            let service = rm
                .resource()
                .iter()
                .find(|(k, _)| k.as_str() == "service.name")
                .map(|(_, v)| v.to_string());
            assert_eq!(service.as_deref(), Some("fila-test"));
            for scope in rm.scope_metrics() {
                assert_eq!(scope.scope().name(), METER);
                for metric in scope.metrics() {
                    let name = metric.name().to_string();
                    let mut put = |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>,
                                   value: Value| {
                        let labels = attrs
                            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                            .collect();
                        points.insert((name.clone(), labels), value);
                    };
                    match metric.data() {
                        AggregatedMetrics::U64(MetricData::Sum(s)) => {
                            assert!(s.is_monotonic(), "{name}");
                            for p in s.data_points() {
                                put(&mut p.attributes(), Value::Counter(p.value()));
                            }
                        }
                        AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                            for p in g.data_points() {
                                put(&mut p.attributes(), Value::GaugeU(p.value()));
                            }
                        }
                        AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                            for p in g.data_points() {
                                put(&mut p.attributes(), Value::GaugeI(p.value()));
                            }
                        }
                        AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                            for p in g.data_points() {
                                put(&mut p.attributes(), Value::GaugeF(p.value()));
                            }
                        }
                        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                            assert_eq!(metric.unit(), "us", "{name}");
                            for p in h.data_points() {
                                assert_eq!(p.bucket_counts().sum::<u64>(), p.count());
                                put(&mut p.attributes(), Value::Histogram(p.count()));
                            }
                        }
                        other => panic!("{name}: unexpected data {other:?}"),
                    }
                }
            }
        }
        points
    }
}

fn get(points: &Points, name: &str, pairs: &[(&str, &str)]) -> Option<Value> {
    points.get(&(name.to_string(), labels(pairs))).cloned()
}

fn counter(points: &Points, name: &str, queue: &str) -> u64 {
    match get(points, name, &[("queue_id", queue)]) {
        Some(Value::Counter(v)) => v,
        other => panic!("{name}{{queue_id={queue}}}: {other:?} in {points:#?}"),
    }
}

fn gauge(points: &Points, name: &str, queue: &str) -> u64 {
    match get(points, name, &[("queue_id", queue)]) {
        Some(Value::GaugeU(v)) => v,
        other => panic!("{name}{{queue_id={queue}}}: {other:?}"),
    }
}

/// A monotonic fake clock for the Lua host: every read advances it by 7 µs.
fn lua_clock() -> Box<dyn Fn() -> Duration> {
    let now = Rc::new(Cell::new(1_000_000u64));
    Box::new(move || {
        let t = now.get();
        now.set(t + 7);
        Duration::from_micros(t)
    })
}

const LIMITS: LuaLimits = LuaLimits {
    timeout_ms: 10,
    memory_limit_bytes: 1024 * 1024,
    circuit_breaker_threshold: 3,
    circuit_breaker_cooldown_ms: 60_000,
};

fn shard() -> Shard<MemoryStorage> {
    let options = ShardOptions {
        seed: 7,
        quantum: 1,
        ..ShardOptions::default()
    };
    let hooks = LuaHooks::new(LIMITS, lua_clock()).unwrap();
    Shard::new(MemoryStorage::new(), options, Box::new(hooks))
}

const ON_ENQUEUE: &str = r#"
function on_enqueue(msg)
  return { fairness_key = msg.headers.k, weight = tonumber(msg.headers.w or "1") }
end
"#;
const ON_FAILURE: &str = r#"
function on_failure(msg)
  if msg.attempts >= 2 then return { action = "dlq" } end
  return { action = "retry" }
end
"#;

fn create(shard: &mut Shard<MemoryStorage>, now: Time, name: &str, enqueue: Option<&str>) {
    shard
        .create_queue(
            now,
            QueueSpec {
                name: name.to_string(),
                scripts: QueueScripts {
                    on_enqueue: enqueue.map(str::to_string),
                    on_failure: Some(ON_FAILURE.to_string()),
                },
                visibility_timeout_ms: 1_000,
            },
        )
        .unwrap();
}

fn enqueue(shard: &mut Shard<MemoryStorage>, now: Time, queue: &str, key: &str, weight: &str) {
    let item = EnqueueItem {
        queue: queue.to_string(),
        headers: vec![
            ("k".to_string(), key.to_string()),
            ("w".to_string(), weight.to_string()),
        ],
        payload: Bytes::from_static(b"payload"),
    };
    for result in shard.enqueue(now, vec![item]) {
        result.unwrap();
    }
    shard.commit().unwrap();
}

fn poll(shard: &mut Shard<MemoryStorage>, now: Time) -> Vec<Delivery> {
    let mut out = Vec::new();
    shard.poll_deliveries(now, 1_000, &mut out);
    shard.commit().unwrap();
    out
}

const CONN: ConnectionId = ConnectionId(1);

/// The scripted lifecycle workload on queue `q` (see the numbers in `lifecycle_counters`).
fn lifecycle(shard: &mut Shard<MemoryStorage>, q: &str, t0: Time) {
    create(shard, t0, q, Some(ON_ENQUEUE));
    for (key, weight) in [("a", "3"), ("a", "3"), ("b", "1"), ("b", "1")] {
        enqueue(shard, t0, q, key, weight);
    }
    let consumer = shard.register_consumer(t0, q, CONN, 100).unwrap();
    let t1 = t0.plus_millis(5);
    let first = poll(shard, t1);
    assert_eq!(first.len(), 4);
    let ack = AckItem {
        queue: q.to_string(),
        id: first[0].message_id,
    };
    assert!(shard.ack(t1, CONN, &[ack]).iter().all(Result::is_ok));
    let nack = NackItem {
        queue: q.to_string(),
        id: first[1].message_id,
        error: "no".to_string(),
    };
    assert!(shard.nack(t1, CONN, &[nack]).iter().all(Result::is_ok));
    shard.commit().unwrap();
    // The two unacked leases expire (and go through on_failure: retry).
    let t2 = t1.plus_millis(2_000);
    shard.tick(t2);
    shard.commit().unwrap();
    let second = poll(shard, t2);
    assert_eq!(
        second.len(),
        3,
        "{:?} {:?}",
        shard.stats(q),
        shard.hook_stats(q)
    );
    let nacks: Vec<NackItem> = second
        .iter()
        .map(|d| NackItem {
            queue: q.to_string(),
            id: d.message_id,
            error: "again".to_string(),
        })
        .collect();
    assert!(shard.nack(t2, CONN, &nacks).iter().all(Result::is_ok));
    assert_eq!(shard.redrive(t2, &format!("{q}.dlq"), 2).unwrap(), 2);
    // Unsubscribe, so that a later workload on another queue of this shard sees only its own
    // deliveries.
    assert!(shard.unregister_consumer(t2, consumer));
    shard.commit().unwrap();
}

#[test]
fn lifecycle_counters_gauges_and_histograms() {
    let mut s = shard();
    lifecycle(&mut s, "q", Time::from_millis(1_000));
    let mut h = Harness::new(1_000);
    let p = h.export(&[&s], 1_000);
    assert_eq!(counter(&p, "fila.messages.enqueued", "q"), 4);
    assert_eq!(counter(&p, "fila.messages.leased", "q"), 7);
    assert_eq!(counter(&p, "fila.messages.acked", "q"), 1);
    assert_eq!(counter(&p, "fila.messages.nacked", "q"), 4);
    assert_eq!(counter(&p, "fila.messages.expired", "q"), 2);
    assert_eq!(counter(&p, "fila.messages.dead_lettered", "q"), 3);
    assert_eq!(counter(&p, "fila.messages.redriven", "q"), 2);
    assert_eq!(counter(&p, "fila.lua.errors", "q"), 0);
    assert_eq!(counter(&p, "fila.lua.circuit_breaker.activations", "q"), 0);
    // Two redriven messages pending, one still in the DLQ, nothing leased.
    assert_eq!(gauge(&p, "fila.queue.depth", "q"), 2);
    assert_eq!(gauge(&p, "fila.queue.depth", "q.dlq"), 1);
    assert_eq!(gauge(&p, "fila.leases.active", "q"), 0);
    assert_eq!(gauge(&p, "fila.queue.consumers", "q"), 0);
    assert_eq!(gauge(&p, "fila.queue.consumers", "q.dlq"), 0);
    // 4 enqueue runs; on_failure ran for 1 nack + 2 expiries + 3 nacks.
    let lua = |hook| {
        get(
            &p,
            "fila.lua.execution_duration_us",
            &[("queue_id", "q"), ("hook", hook)],
        )
    };
    assert_eq!(lua("on_enqueue"), Some(Value::Histogram(4)));
    assert_eq!(lua("on_failure"), Some(Value::Histogram(6)));
    assert_eq!(
        get(&p, "fila.delivery.latency_us", &[("queue_id", "q")]),
        Some(Value::Histogram(7))
    );
    // DRR counters are the scheduler's own.
    let snap = s.metrics_snapshot(1_000);
    let q = snap.queues.iter().find(|q| q.queue_id == "q").unwrap();
    assert!(q.drr_rounds > 0 && q.drr_keys_processed > 0);
    assert_eq!(counter(&p, "fila.scheduler.drr.rounds", "q"), q.drr_rounds);
    assert_eq!(
        counter(&p, "fila.scheduler.drr.keys_processed", "q"),
        q.drr_keys_processed
    );
    // The redriven messages made their keys live again (pending, in the ring).
    assert_eq!(
        gauge(&p, "fila.scheduler.drr.active_keys", "q"),
        q.drr_active_keys
    );
    assert!(q.drr_active_keys >= 1);
    // Histograms are deltas: nothing new, no points.
    let again = h.export(&[&s], 1_000);
    assert_eq!(lua("on_enqueue"), Some(Value::Histogram(4)));
    assert!(
        !again
            .keys()
            .any(|(name, _)| name == "fila.lua.execution_duration_us"),
        "{again:#?}"
    );
    assert_eq!(counter(&again, "fila.messages.enqueued", "q"), 4);
}

#[test]
fn per_key_throughput_weights_deficit_and_fair_share() {
    let mut s = shard();
    let t0 = Time::from_millis(1_000);
    create(&mut s, t0, "f", Some(ON_ENQUEUE));
    for _ in 0..20 {
        enqueue(&mut s, t0, "f", "a", "3");
        enqueue(&mut s, t0, "f", "b", "1");
    }
    s.register_consumer(t0, "f", CONN, 8).unwrap();
    let delivered = poll(&mut s, t0.plus_millis(1));
    assert_eq!(delivered.len(), 8);
    let mut h = Harness::new(1_000);
    let p = h.export(&[&s], 1_000);
    let key = |name, k| get(&p, name, &[("queue_id", "f"), ("fairness_key", k)]);
    // quantum 1, weights 3:1 → 6 of a, 2 of b in 8 deliveries: exactly fair.
    assert_eq!(
        key("fila.fairness.throughput", "a"),
        Some(Value::Counter(6))
    );
    assert_eq!(
        key("fila.fairness.throughput", "b"),
        Some(Value::Counter(2))
    );
    assert_eq!(
        key("fila.scheduler.drr.weight", "a"),
        Some(Value::GaugeU(3))
    );
    assert_eq!(
        key("fila.scheduler.drr.weight", "b"),
        Some(Value::GaugeU(1))
    );
    let snap = s.metrics_snapshot(1_000);
    let f = snap.queues.iter().find(|q| q.queue_id == "f").unwrap();
    for k in &f.keys {
        assert_eq!(
            key("fila.scheduler.drr.deficit", &k.fairness_key),
            Some(Value::GaugeI(k.deficit))
        );
    }
    for k in ["a", "b"] {
        match key("fila.fairness.fair_share_ratio", k) {
            Some(Value::GaugeF(r)) => assert!((r - 1.0).abs() < 1e-9, "{k}: {r}"),
            other => panic!("{k}: {other:?}"),
        }
    }
    assert_eq!(gauge(&p, "fila.scheduler.drr.active_keys", "f"), 2);
    assert_eq!(gauge(&p, "fila.leases.active", "f"), 8);
    assert_eq!(gauge(&p, "fila.queue.consumers", "f"), 1);
    assert_eq!(gauge(&p, "fila.queue.depth", "f"), 32);
    // The window is "since the previous export": b alone now → a is starved (0), b over (4).
    let acks: Vec<AckItem> = delivered
        .iter()
        .map(|d| AckItem {
            queue: "f".to_string(),
            id: d.message_id,
        })
        .collect();
    s.ack(t0.plus_millis(2), CONN, &acks);
    let mut drained = Vec::new();
    for d in poll(&mut s, t0.plus_millis(3)) {
        drained.push(d.fairness_key.as_str().to_string());
    }
    let a = drained.iter().filter(|k| *k == "a").count() as f64;
    let total = drained.len() as f64;
    let p = h.export(&[&s], 1_000);
    match get(
        &p,
        "fila.fairness.fair_share_ratio",
        &[("queue_id", "f"), ("fairness_key", "a")],
    ) {
        Some(Value::GaugeF(r)) => assert!((r - (a / total) / 0.75).abs() < 1e-9),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lua_errors_breaker_and_bypass() {
    let mut s = shard();
    let t0 = Time::from_millis(1_000);
    create(
        &mut s,
        t0,
        "bad",
        Some("function on_enqueue(msg) error('boom') end"),
    );
    // Threshold 3: three failed runs, the third trips the breaker, the fourth is bypassed.
    for _ in 0..4 {
        enqueue(&mut s, t0, "bad", "x", "1");
    }
    let mut h = Harness::new(1_000);
    let p = h.export(&[&s], 1_000);
    assert_eq!(counter(&p, "fila.lua.errors", "bad"), 3);
    assert_eq!(
        counter(&p, "fila.lua.circuit_breaker.activations", "bad"),
        1
    );
    assert_eq!(counter(&p, "fila.messages.enqueued", "bad"), 4);
    assert_eq!(
        get(
            &p,
            "fila.lua.execution_duration_us",
            &[("queue_id", "bad"), ("hook", "on_enqueue")]
        ),
        Some(Value::Histogram(3))
    );
}

#[test]
fn fairness_key_series_are_capped_and_vanish_with_their_queue() {
    let mut s = shard();
    let t0 = Time::from_millis(1_000);
    create(&mut s, t0, "many", Some(ON_ENQUEUE));
    for key in ["k1", "k2", "k3", "k4", "k5"] {
        enqueue(&mut s, t0, "many", key, "2");
    }
    let mut h = Harness::new(2);
    let p = h.export(&[&s], 2);
    let weights: BTreeMap<String, Value> = p
        .iter()
        .filter(|((name, l), _)| name == "fila.scheduler.drr.weight" && l["queue_id"] == "many")
        .map(|((_, l), v)| (l["fairness_key"].clone(), v.clone()))
        .collect();
    assert_eq!(weights.len(), 3, "{weights:?}");
    assert_eq!(weights.get("_other"), Some(&Value::GaugeU(6)));
    // Message ids never become labels.
    for (_, l) in p.keys() {
        for value in l.values() {
            assert!(!uuid_like(value), "{value}");
        }
    }
    s.delete_queue(t0, "many").unwrap();
    let p = h.export(&[&s], 2);
    assert!(
        !p.keys()
            .any(|(_, l)| l.get("queue_id").is_some_and(|q| q.starts_with("many"))),
        "{p:#?}"
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn two_shards_merge_to_the_single_shard_values() {
    let t0 = Time::from_millis(1_000);
    let mut one = shard();
    lifecycle(&mut one, "q1", t0);
    let t9 = t0.plus_millis(10_000);
    lifecycle(&mut one, "q2", t9);
    let throttle = ThrottleKey::new("tenant");
    for hit in [true, false, false] {
        one.metrics_mut().record_throttle(&throttle, hit);
    }
    one.metrics_mut().set_throttle_tokens(&throttle, 2.5);
    let mut a = shard();
    let mut b = shard();
    lifecycle(&mut a, "q1", t0);
    lifecycle(&mut b, "q2", t9);
    a.metrics_mut().record_throttle(&throttle, true);
    a.metrics_mut().set_throttle_tokens(&throttle, 2.5);
    b.metrics_mut().record_throttle(&throttle, false);
    b.metrics_mut().record_throttle(&throttle, false);
    let single = Harness::new(1_000).export(&[&one], 1_000);
    let merged = Harness::new(1_000).export(&[&a, &b], 1_000);
    assert_eq!(single, merged);
    let decision = |r| {
        get(
            &merged,
            "fila.throttle.decisions",
            &[("throttle_key", "tenant"), ("result", r)],
        )
    };
    assert_eq!(decision("hit"), Some(Value::Counter(1)));
    assert_eq!(decision("pass"), Some(Value::Counter(2)));
    assert_eq!(
        get(
            &merged,
            "fila.throttle.tokens_remaining",
            &[("throttle_key", "tenant")]
        ),
        Some(Value::GaugeF(2.5))
    );
    assert!(!merged.keys().any(|(_, l)| l.contains_key("shard")));
}

/// The compat.md table (copied to tests/data/metrics.md) and the code agree, and every
/// exported name and label follows the naming rule.
#[test]
fn names_labels_and_the_compat_table_agree() {
    let table = include_str!("data/metrics.md");
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `fila.")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().split('`').nth(1).unwrap_or_default().to_string())
            .collect();
        documented.insert(name, labels);
    }
    // The new metrics named in the prose, with their labels.
    for name in [
        "fila.messages.expired",
        "fila.messages.dead_lettered",
        "fila.messages.redriven",
        "fila.queue.consumers",
        "fila.delivery.latency_us",
    ] {
        assert!(table.contains(&format!("`{name}`")), "{name}");
        documented.insert(name.to_string(), BTreeSet::from(["queue_id".to_string()]));
    }
    let code: BTreeMap<String, BTreeSet<String>> = CATALOGUE
        .iter()
        .map(|(name, _, labels)| {
            (
                name.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(code, documented);
    for (name, kind, _) in CATALOGUE {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")));
        if let Some(row) = row {
            let documented_kind = row.split('|').nth(2).unwrap().trim();
            assert!(documented_kind.starts_with(kind), "{name}: {kind} vs {row}");
        }
    }
    // Everything a full workload exports is catalogued, with those labels, and well named.
    let t0 = Time::from_millis(1_000);
    let mut s = shard();
    lifecycle(&mut s, "q", t0);
    // Deliver the two redriven messages, so the fair-share window has deliveries.
    s.register_consumer(t0, "q", CONN, 10).unwrap();
    assert_eq!(poll(&mut s, t0.plus_millis(3_000)).len(), 2);
    create(
        &mut s,
        t0,
        "bad",
        Some("function on_enqueue(msg) error('x') end"),
    );
    enqueue(&mut s, t0, "bad", "x", "1");
    s.metrics_mut()
        .record_throttle(&ThrottleKey::new("t"), true);
    s.metrics_mut()
        .set_throttle_tokens(&ThrottleKey::new("t"), 1.0);
    let p = Harness::new(1_000).export(&[&s], 1_000);
    let exported: BTreeSet<&String> = p.keys().map(|(n, _)| n).collect();
    for (name, l) in p.keys() {
        assert!(well_named(name), "{name}");
        let expected = &code[name];
        let got: BTreeSet<String> = l.keys().cloned().collect();
        assert_eq!(&got, expected, "{name}");
        for label in l.keys() {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !label.starts_with('_'),
                "{label}"
            );
        }
    }
    let missing: Vec<&String> = code.keys().filter(|n| !exported.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "not exported by the full workload: {missing:?}"
    );
}

/// `fila\.[a-z_]+(\.[a-z_]+)*`
fn well_named(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("fila.") else {
        return false;
    };
    rest.split('.')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}
