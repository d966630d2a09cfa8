//! The OpenTelemetry side: a meter provider whose instruments read the merged view.
//!
//! Counters and gauges are observable instruments: at each collection their callbacks report
//! the merged values, so a series that is no longer in the view (a deleted queue, a vanished
//! key) is simply not reported. Histograms cannot be observed, so each update replays what
//! the shards recorded since the previous update into synchronous histograms: per bucket, its
//! count of observations at the bucket's mean (which lies inside the bucket), so counts,
//! bucket counts and sums are exact; min and max are bucket means. The exporter uses the
//! low-memory temporality: histograms are deltas (a deleted queue's series stops), counters
//! cumulative.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fila_shard::metrics::{
    DELIVERY_LATENCY_BOUNDS_US, Histogram as Cells, LUA_DURATION_BOUNDS_US, MetricsSnapshot,
    QueueSnapshot,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::merge::{FairShare, HistogramSeries, Merged, histograms, merge};

/// The temporality exporters must use (see the module docs).
pub const TEMPORALITY: Temporality = Temporality::LowMemory;

/// The meter (instrumentation scope) name.
pub const METER: &str = "fila";

/// Every exported metric: name, instrument type as compat.md names it, labels.
pub const CATALOGUE: &[(&str, &str, &[&str])] = &[
    ("fila.messages.enqueued", "counter", &["queue_id"]),
    ("fila.messages.leased", "counter", &["queue_id"]),
    ("fila.messages.acked", "counter", &["queue_id"]),
    ("fila.messages.nacked", "counter", &["queue_id"]),
    ("fila.messages.expired", "counter", &["queue_id"]),
    ("fila.messages.dead_lettered", "counter", &["queue_id"]),
    ("fila.messages.redriven", "counter", &["queue_id"]),
    ("fila.queue.depth", "gauge", &["queue_id"]),
    ("fila.queue.consumers", "gauge", &["queue_id"]),
    ("fila.leases.active", "gauge", &["queue_id"]),
    (
        "fila.fairness.throughput",
        "counter",
        &["queue_id", "fairness_key"],
    ),
    (
        "fila.fairness.fair_share_ratio",
        "gauge",
        &["queue_id", "fairness_key"],
    ),
    ("fila.scheduler.drr.rounds", "counter", &["queue_id"]),
    ("fila.scheduler.drr.active_keys", "gauge", &["queue_id"]),
    (
        "fila.scheduler.drr.keys_processed",
        "counter",
        &["queue_id"],
    ),
    (
        "fila.scheduler.drr.deficit",
        "gauge",
        &["queue_id", "fairness_key"],
    ),
    (
        "fila.scheduler.drr.weight",
        "gauge",
        &["queue_id", "fairness_key"],
    ),
    (
        "fila.throttle.decisions",
        "counter",
        &["throttle_key", "result"],
    ),
    ("fila.throttle.tokens_remaining", "gauge", &["throttle_key"]),
    (
        "fila.lua.execution_duration_us",
        "histogram",
        &["queue_id", "hook"],
    ),
    ("fila.lua.errors", "counter", &["queue_id"]),
    (
        "fila.lua.circuit_breaker.activations",
        "counter",
        &["queue_id"],
    ),
    ("fila.delivery.latency_us", "histogram", &["queue_id"]),
];

type Shared = Arc<Mutex<Merged>>;
/// A per-queue u64 metric: name, description, how to read it from a snapshot.
type QueueMetric = (&'static str, &'static str, fn(&QueueSnapshot) -> u64);

/// The SDK pipeline fed from merged snapshots.
pub struct Pipeline {
    provider: SdkMeterProvider,
    state: Shared,
    lua: Histogram<f64>,
    latency: Histogram<f64>,
    replayed: HashMap<HistogramSeries, Cells>,
    fair: FairShare,
    max_key_series: usize,
    _observables: Vec<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline exporting through `exporter` (which should use [`TEMPORALITY`]) with
    /// resource `service.name`. Exports happen on [`Pipeline::flush`] (the caller's
    /// interval) and at [`Pipeline::shutdown`].
    pub fn new<E: PushMetricExporter>(
        exporter: E,
        service_name: &str,
        max_key_series: usize,
    ) -> Pipeline {
        // The caller drives exports with `flush`; the reader's own timer is a day away.
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(86_400))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            )
            .build();
        let meter = provider.meter(METER);
        let state: Shared = Arc::default();
        let mut observables: Vec<Box<dyn Any + Send + Sync>> = Vec::new();
        let queue_counters: &[QueueMetric] = &[
            ("fila.messages.enqueued", "Messages enqueued", |q| {
                q.enqueued
            }),
            ("fila.messages.leased", "Deliveries (leases granted)", |q| {
                q.leased
            }),
            ("fila.messages.acked", "Messages acked", |q| q.acked),
            ("fila.messages.nacked", "Messages nacked", |q| q.nacked),
            ("fila.messages.expired", "Leases that expired", |q| {
                q.expired
            }),
            (
                "fila.messages.dead_lettered",
                "Messages moved to the dead-letter queue",
                |q| q.dead_lettered,
            ),
            (
                "fila.messages.redriven",
                "Messages redriven into the queue",
                |q| q.redriven,
            ),
            ("fila.scheduler.drr.rounds", "DRR rounds started", |q| {
                q.drr_rounds
            }),
            ("fila.scheduler.drr.keys_processed", "DRR key visits", |q| {
                q.drr_keys_processed
            }),
            ("fila.lua.errors", "Failed Lua script runs", |q| {
                q.lua_errors
            }),
            (
                "fila.lua.circuit_breaker.activations",
                "Lua circuit breaker trips",
                |q| q.lua_breaker_activations,
            ),
        ];
        for &(name, description, read) in queue_counters {
            let state = Arc::clone(&state);
            let unit = if name.starts_with("fila.messages") {
                "{message}"
            } else {
                "1"
            };
            observables.push(Box::new(
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(move |obs| each_queue(&state, |id, q| observe(obs, read(q), id)))
                    .build(),
            ));
        }
        let queue_gauges: &[QueueMetric] = &[
            (
                "fila.queue.depth",
                "Pending messages (ready or delayed), not leased",
                |q| q.depth,
            ),
            ("fila.queue.consumers", "Registered consumers", |q| {
                q.consumers
            }),
            ("fila.leases.active", "Messages leased now", |q| {
                q.leases_active
            }),
            (
                "fila.scheduler.drr.active_keys",
                "Fairness keys in the DRR ring",
                |q| q.drr_active_keys,
            ),
        ];
        for &(name, description, read) in queue_gauges {
            let state = Arc::clone(&state);
            observables.push(Box::new(
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_callback(move |obs| each_queue(&state, |id, q| observe(obs, read(q), id)))
                    .build(),
            ));
        }
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .u64_observable_counter("fila.fairness.throughput")
                .with_description("Deliveries per fairness key")
                .with_unit("{message}")
                .with_callback(move |obs| {
                    each_queue(&s, |id, q| {
                        for k in &q.keys {
                            obs.observe(k.throughput, &key_attrs(id, &k.fairness_key));
                        }
                    })
                })
                .build(),
        ));
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .i64_observable_gauge("fila.scheduler.drr.deficit")
                .with_description("DRR deficit per fairness key")
                .with_callback(move |obs| {
                    each_queue(&s, |id, q| {
                        for k in &q.keys {
                            obs.observe(k.deficit, &key_attrs(id, &k.fairness_key));
                        }
                    })
                })
                .build(),
        ));
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .u64_observable_gauge("fila.scheduler.drr.weight")
                .with_description("DRR weight per fairness key")
                .with_callback(move |obs| {
                    each_queue(&s, |id, q| {
                        for k in &q.keys {
                            obs.observe(k.weight, &key_attrs(id, &k.fairness_key));
                        }
                    })
                })
                .build(),
        ));
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .f64_observable_gauge("fila.fairness.fair_share_ratio")
                .with_description(
                    "A key's share of recent deliveries / (its weight / sum of live weights); 1.0 = fair",
                )
                .with_callback(move |obs| {
                    if let Ok(m) = s.lock() {
                        for ((queue, key), ratio) in &m.fair_share {
                            obs.observe(*ratio, &key_attrs(queue, key));
                        }
                    }
                })
                .build(),
        ));
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .u64_observable_counter("fila.throttle.decisions")
                .with_description("Throttle decisions per throttle key (pass or hit)")
                .with_callback(move |obs| {
                    if let Ok(m) = s.lock() {
                        for (key, t) in &m.throttle {
                            for (result, value) in [("pass", t.pass), ("hit", t.hit)] {
                                obs.observe(
                                    value,
                                    &[
                                        KeyValue::new("throttle_key", key.clone()),
                                        KeyValue::new("result", result),
                                    ],
                                );
                            }
                        }
                    }
                })
                .build(),
        ));
        let s = Arc::clone(&state);
        observables.push(Box::new(
            meter
                .f64_observable_gauge("fila.throttle.tokens_remaining")
                .with_description("Tokens left in a throttle key's bucket (home shard)")
                .with_callback(move |obs| {
                    if let Ok(m) = s.lock() {
                        for (key, t) in &m.throttle {
                            if let Some(tokens) = t.tokens_remaining {
                                obs.observe(tokens, &[KeyValue::new("throttle_key", key.clone())]);
                            }
                        }
                    }
                })
                .build(),
        ));
        let lua = histogram(
            &meter,
            "fila.lua.execution_duration_us",
            "Lua hook run time (only when the script ran)",
            LUA_DURATION_BOUNDS_US,
        );
        let latency = histogram(
            &meter,
            "fila.delivery.latency_us",
            "Enqueue to delivery time, per delivery",
            DELIVERY_LATENCY_BOUNDS_US,
        );
        Pipeline {
            provider,
            state,
            lua,
            latency,
            replayed: HashMap::new(),
            fair: FairShare::default(),
            max_key_series,
            _observables: observables,
        }
    }

    /// Merges the shards' snapshots and makes them the values of the next export.
    pub fn update(&mut self, snapshots: &[MetricsSnapshot]) {
        let mut merged = merge(snapshots, self.max_key_series);
        self.fair.update(&mut merged);
        let mut seen = HashMap::with_capacity(self.replayed.len());
        for (series, cells) in histograms(&merged) {
            let delta = match self.replayed.get(&series) {
                Some(before) => cells.since(before),
                None => cells.clone(),
            };
            let (instrument, attrs) = match &series {
                HistogramSeries::Lua { queue_id, hook } => (
                    &self.lua,
                    vec![
                        KeyValue::new("queue_id", queue_id.clone()),
                        KeyValue::new("hook", *hook),
                    ],
                ),
                HistogramSeries::DeliveryLatency { queue_id } => (
                    &self.latency,
                    vec![KeyValue::new("queue_id", queue_id.clone())],
                ),
            };
            replay(instrument, &delta, &attrs);
            seen.insert(series, cells.clone());
        }
        self.replayed = seen;
        if let Ok(mut state) = self.state.lock() {
            *state = merged;
        }
    }

    /// The merged view of the last update.
    pub fn merged(&self) -> Merged {
        self.state.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Collects and exports now.
    pub fn flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }

    /// Exports a last time and stops the pipeline.
    pub fn shutdown(&self) -> OTelSdkResult {
        self.provider.shutdown()
    }
}

fn histogram(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    bounds: &[f64],
) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_description(description)
        .with_unit("us")
        .with_boundaries(bounds.to_vec())
        .build()
}

/// Records each bucket's observations at the bucket mean (clamped inside the bucket).
fn replay(instrument: &Histogram<f64>, delta: &Cells, attrs: &[KeyValue]) {
    let bounds = delta.bounds();
    for (i, (count, sum)) in delta.counts().iter().zip(delta.bucket_sums()).enumerate() {
        if *count == 0 {
            continue;
        }
        let mut value = sum / *count as f64;
        if let Some(upper) = bounds.get(i) {
            value = value.min(*upper);
        }
        if let Some(lower) = i.checked_sub(1).and_then(|j| bounds.get(j))
            && value <= *lower
        {
            value = bounds.get(i).copied().unwrap_or(*lower + 1.0);
        }
        for _ in 0..*count {
            instrument.record(value, attrs);
        }
    }
}

fn each_queue(state: &Shared, mut f: impl FnMut(&str, &QueueSnapshot)) {
    if let Ok(m) = state.lock() {
        for (id, q) in &m.queues {
            f(id, q);
        }
    }
}

fn observe(obs: &dyn AsyncInstrument<u64>, value: u64, queue_id: &str) {
    obs.observe(value, &[KeyValue::new("queue_id", queue_id.to_string())]);
}

fn key_attrs(queue_id: &str, key: &str) -> [KeyValue; 2] {
    [
        KeyValue::new("queue_id", queue_id.to_string()),
        KeyValue::new("fairness_key", key.to_string()),
    ]
}
