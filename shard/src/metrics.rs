//! Shard-local metric cells and the snapshot the exporter reads (design §8, compat.md
//! §Metrics).
//!
//! Recording touches only memory the shard owns: plain integers, and histogram buckets held
//! by the queue they describe ([`QueueMetrics`]) or by the shard ([`ShardMetrics`], the
//! throttle cells). Nothing here is atomic or shared; no clock is read (latencies are
//! computed from the `now` the shard was given). Counters that `fila top` already needs live
//! in [`QueueCounters`](crate::QueueCounters) and the scheduler ([`Drr`](crate::drr::Drr));
//! gauges are read from the queue state when a snapshot is taken
//! ([`Shard::metrics_snapshot`]), so they cost nothing between exports.
//!
//! Cardinality: a snapshot carries at most `max_key_series` fairness-key series per queue and
//! as many throttle-key series; further keys are folded into one series named [`OTHER_KEY`].
//! Keys and queues that no longer exist are simply absent from the next snapshot. Message ids
//! never appear.
//!
//! # Throttle metrics
//!
//! `fila.throttle.decisions{throttle_key, result}` and `fila.throttle.tokens_remaining` come
//! from the throttle state itself: [`Shard::metrics_snapshot`] reads each key's hits, passes
//! and bucket from `throttle_views()` (hits and passes are counted where the scheduler makes
//! the decision; tokens only on the key's home shard, so the merged gauge is the owner's).
//! [`ShardMetrics::record_throttle`], [`ShardMetrics::set_throttle_tokens`] and
//! [`ShardMetrics::forget_throttle_key`] are a second, explicit recording path whose cells are
//! added to those counts; the broker does not use it today (tests do).

use std::collections::HashMap;
use std::time::Duration;

use crate::hooks::HookRun;
use crate::ids::ThrottleKey;
use crate::shard::Shard;
use crate::storage::Storage;

/// The series name that absorbs keys beyond the per-queue series cap.
pub const OTHER_KEY: &str = "_other";

/// Bucket upper bounds of `fila.lua.execution_duration_us` (µs).
pub const LUA_DURATION_BOUNDS_US: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0,
    50_000.0, 100_000.0,
];

/// Bucket upper bounds of `fila.delivery.latency_us` (µs).
pub const DELIVERY_LATENCY_BOUNDS_US: &[f64] = &[
    100.0,
    500.0,
    1_000.0,
    5_000.0,
    10_000.0,
    50_000.0,
    100_000.0,
    500_000.0,
    1_000_000.0,
    5_000_000.0,
    10_000_000.0,
    60_000_000.0,
    300_000_000.0,
    3_600_000_000.0,
];

/// A fixed-bucket histogram: per bucket a count and the sum of the values that fell in it
/// (so an exporter can replay it exactly: every bucket's mean lies inside the bucket).
/// Bucket `i` holds values `v` with `bounds[i-1] < v <= bounds[i]`; the last one is `v >
/// bounds[last]` (the OpenTelemetry convention).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sums: Vec<f64>,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sums: vec![0.0; bounds.len() + 1],
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: f64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        if let (Some(count), Some(sum)) = (self.counts.get_mut(bucket), self.sums.get_mut(bucket)) {
            *count += 1;
            *sum += value;
        }
    }

    /// The bucket upper bounds.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Count per bucket (`bounds().len() + 1` entries).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Sum of the values per bucket.
    pub fn bucket_sums(&self) -> &[f64] {
        &self.sums
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the values recorded.
    pub fn sum(&self) -> f64 {
        self.sums.iter().sum()
    }

    /// Adds `other` (same bounds; a histogram over other bounds is ignored).
    pub fn merge(&mut self, other: &Histogram) {
        if self.bounds != other.bounds {
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        for (mine, theirs) in self.sums.iter_mut().zip(&other.sums) {
            *mine += theirs;
        }
    }

    /// What was recorded since `earlier` (a previous reading of the same series). A series
    /// that went backwards (its queue was deleted and created again) starts over: the whole
    /// of `self` is new.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let restarted = self.bounds != earlier.bounds
            || self.counts.iter().zip(&earlier.counts).any(|(a, b)| a < b);
        if restarted {
            return self.clone();
        }
        Histogram {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a - b)
                .collect(),
            sums: self
                .sums
                .iter()
                .zip(&earlier.sums)
                .map(|(a, b)| (a - b).max(0.0))
                .collect(),
        }
    }
}

/// Which script hook ran (label `hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `on_enqueue`.
    OnEnqueue,
    /// `on_failure`.
    OnFailure,
}

impl Hook {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OnEnqueue => "on_enqueue",
            Hook::OnFailure => "on_failure",
        }
    }
}

/// The metric cells of one queue that no other structure already counts. They live in the
/// queue, so they vanish with it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueMetrics {
    /// `fila.lua.execution_duration_us{hook="on_enqueue"}`.
    pub lua_on_enqueue_us: Histogram,
    /// `fila.lua.execution_duration_us{hook="on_failure"}`.
    pub lua_on_failure_us: Histogram,
    /// `fila.lua.errors`: failed script runs.
    pub lua_errors: u64,
    /// `fila.lua.circuit_breaker.activations`: breaker trips.
    pub lua_breaker_activations: u64,
    /// `fila.delivery.latency_us`: enqueue → delivery, per delivery.
    pub delivery_latency_us: Histogram,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        QueueMetrics {
            lua_on_enqueue_us: Histogram::new(LUA_DURATION_BOUNDS_US),
            lua_on_failure_us: Histogram::new(LUA_DURATION_BOUNDS_US),
            lua_errors: 0,
            lua_breaker_activations: 0,
            delivery_latency_us: Histogram::new(DELIVERY_LATENCY_BOUNDS_US),
        }
    }
}

impl QueueMetrics {
    /// Records what the script host reported for the hook call just made
    /// ([`Hooks::last_run`](crate::Hooks::last_run)): duration only when the script ran,
    /// an error when it failed, an activation when that failure tripped the breaker.
    pub fn record_hook(&mut self, hook: Hook, run: Option<HookRun>) {
        let Some(HookRun::Ran {
            ok,
            duration,
            tripped,
        }) = run
        else {
            return;
        };
        let histogram = match hook {
            Hook::OnEnqueue => &mut self.lua_on_enqueue_us,
            Hook::OnFailure => &mut self.lua_on_failure_us,
        };
        histogram.record(duration_us(duration));
        self.lua_errors += u64::from(!ok);
        self.lua_breaker_activations += u64::from(tripped);
    }

    /// Records one delivery `latency_us` after its message was enqueued.
    pub fn record_delivery(&mut self, latency_us: u64) {
        self.delivery_latency_us.record(latency_us as f64);
    }
}

fn duration_us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000_000.0
}

/// Throttle cells of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ThrottleCells {
    pass: u64,
    hit: u64,
    tokens: Option<f64>,
}

/// Shard-wide metric cells (throttle keys are global, not per queue). See the module's
/// throttle contract.
#[derive(Clone, Debug, Default)]
pub struct ShardMetrics {
    throttle: HashMap<ThrottleKey, ThrottleCells>,
}

impl ShardMetrics {
    /// One throttle decision for `key`: `hit` = no token when the scheduler tried to deliver,
    /// otherwise a delivered message's pass.
    pub fn record_throttle(&mut self, key: &ThrottleKey, hit: bool) {
        let cells = match self.throttle.get_mut(key) {
            Some(cells) => cells,
            None => self.throttle.entry(key.clone()).or_default(),
        };
        if hit {
            cells.hit += 1;
        } else {
            cells.pass += 1;
        }
    }

    /// The tokens left in `key`'s authoritative bucket (home shard only).
    pub fn set_throttle_tokens(&mut self, key: &ThrottleKey, tokens: f64) {
        match self.throttle.get_mut(key) {
            Some(cells) => cells.tokens = Some(tokens),
            None => {
                self.throttle.insert(
                    key.clone(),
                    ThrottleCells {
                        tokens: Some(tokens),
                        ..ThrottleCells::default()
                    },
                );
            }
        }
    }

    /// Drops `key`'s cells: its series stop being exported.
    pub fn forget_throttle_key(&mut self, key: &ThrottleKey) {
        self.throttle.remove(key);
    }
}

/// A point-in-time copy of one shard's metrics: what the exporter merges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// One entry per queue of the shard.
    pub queues: Vec<QueueSnapshot>,
    /// One entry per throttle key seen by the shard (capped, the rest in [`OTHER_KEY`]).
    pub throttle: Vec<ThrottleSnapshot>,
}

/// One queue's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSnapshot {
    /// Label `queue_id`.
    pub queue_id: String,
    /// `fila.messages.enqueued`.
    pub enqueued: u64,
    /// `fila.messages.leased` (deliveries).
    pub leased: u64,
    /// `fila.messages.acked`.
    pub acked: u64,
    /// `fila.messages.nacked`.
    pub nacked: u64,
    /// `fila.messages.expired` (lease expiries).
    pub expired: u64,
    /// `fila.messages.dead_lettered` (moved out to the DLQ).
    pub dead_lettered: u64,
    /// `fila.messages.redriven` (moved into this queue by redrive).
    pub redriven: u64,
    /// `fila.queue.depth`: pending (ready or delayed), not leased.
    pub depth: u64,
    /// `fila.leases.active`.
    pub leases_active: u64,
    /// `fila.queue.consumers`.
    pub consumers: u64,
    /// `fila.scheduler.drr.rounds`.
    pub drr_rounds: u64,
    /// `fila.scheduler.drr.keys_processed`.
    pub drr_keys_processed: u64,
    /// `fila.scheduler.drr.active_keys`.
    pub drr_active_keys: u64,
    /// `fila.lua.errors`.
    pub lua_errors: u64,
    /// `fila.lua.circuit_breaker.activations`.
    pub lua_breaker_activations: u64,
    /// `fila.lua.execution_duration_us{hook="on_enqueue"}`.
    pub lua_on_enqueue_us: Histogram,
    /// `fila.lua.execution_duration_us{hook="on_failure"}`.
    pub lua_on_failure_us: Histogram,
    /// `fila.delivery.latency_us`.
    pub delivery_latency_us: Histogram,
    /// Per fairness key (live keys: those with pending or leased messages), capped.
    pub keys: Vec<KeySnapshot>,
}

/// One fairness key's metrics (or the fold of keys beyond the cap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySnapshot {
    /// Label `fairness_key`.
    pub fairness_key: String,
    /// `fila.fairness.throughput`: deliveries since the key appeared.
    pub throughput: u64,
    /// `fila.scheduler.drr.deficit` (summed over folded keys).
    pub deficit: i64,
    /// `fila.scheduler.drr.weight` (summed over folded keys).
    pub weight: u64,
}

/// One throttle key's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleSnapshot {
    /// Label `throttle_key`.
    pub throttle_key: String,
    /// `fila.throttle.decisions{result="pass"}`.
    pub pass: u64,
    /// `fila.throttle.decisions{result="hit"}`.
    pub hit: u64,
    /// `fila.throttle.tokens_remaining`, set by the key's home shard only.
    pub tokens_remaining: Option<f64>,
}

impl<S: Storage> Shard<S> {
    /// The shard-wide metric cells (the throttle code records here; see [`crate::metrics`]).
    pub fn metrics_mut(&mut self) -> &mut ShardMetrics {
        &mut self.metrics
    }

    /// Copies every metric of this shard, with at most `max_key_series` fairness-key (and
    /// throttle-key) series per queue; further keys fold into [`OTHER_KEY`]. Cost: linear in
    /// queues and live keys; meant to run once per export interval.
    pub fn metrics_snapshot(&self, max_key_series: usize) -> MetricsSnapshot {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (_, q) in self.queues.iter() {
            let mut keys: Vec<KeySnapshot> = Vec::new();
            let mut other: Option<KeySnapshot> = None;
            for (_, k) in q.keys.iter() {
                let entry = KeySnapshot {
                    fairness_key: k.key.as_str().to_string(),
                    throughput: k.delivered,
                    deficit: k.drr.deficit,
                    weight: u64::from(k.drr.weight),
                };
                if keys.len() < max_key_series {
                    keys.push(entry);
                } else {
                    fold_key(&mut other, entry);
                }
            }
            keys.extend(other);
            let c = &q.counters;
            let m = &q.metrics;
            queues.push(QueueSnapshot {
                queue_id: q.id.as_str().to_string(),
                enqueued: c.enqueued,
                leased: c.leased,
                acked: c.acked,
                nacked: c.nacked,
                expired: c.expired,
                dead_lettered: c.dead_lettered,
                redriven: c.redriven,
                depth: q.pending() as u64,
                leases_active: q.in_flight() as u64,
                consumers: q.consumers.len() as u64,
                drr_rounds: q.drr.rounds_started,
                drr_keys_processed: q.drr.keys_processed,
                drr_active_keys: q.drr.active_keys() as u64,
                lua_errors: m.lua_errors,
                lua_breaker_activations: m.lua_breaker_activations,
                lua_on_enqueue_us: m.lua_on_enqueue_us.clone(),
                lua_on_failure_us: m.lua_on_failure_us.clone(),
                delivery_latency_us: m.delivery_latency_us.clone(),
                keys,
            });
        }
        queues.sort_by(|a, b| a.queue_id.cmp(&b.queue_id));
        // Throttle decisions and tokens come from the scheduler's own throttle state (hits and
        // passes are counted where the decision is made), merged with any cells recorded
        // through `ShardMetrics`. Tokens are reported by the key's home shard only.
        let mut by_key: std::collections::BTreeMap<String, ThrottleSnapshot> = self
            .metrics
            .throttle
            .iter()
            .map(|(key, cells)| {
                let snapshot = ThrottleSnapshot {
                    throttle_key: key.as_str().to_string(),
                    pass: cells.pass,
                    hit: cells.hit,
                    tokens_remaining: cells.tokens,
                };
                (snapshot.throttle_key.clone(), snapshot)
            })
            .collect();
        for (key, view) in self.throttle_views() {
            let home = self.throttle.is_home(key.as_str());
            let entry =
                by_key
                    .entry(key.as_str().to_string())
                    .or_insert_with(|| ThrottleSnapshot {
                        throttle_key: key.as_str().to_string(),
                        pass: 0,
                        hit: 0,
                        tokens_remaining: None,
                    });
            entry.pass += view.passes;
            entry.hit += view.hits;
            if home {
                entry.tokens_remaining = Some(view.tokens);
            }
        }
        // In key order already (a BTreeMap by key).
        let mut throttle: Vec<ThrottleSnapshot> = by_key.into_values().collect();
        if throttle.len() > max_key_series {
            let folded = throttle.split_off(max_key_series);
            let mut other = ThrottleSnapshot {
                throttle_key: OTHER_KEY.to_string(),
                pass: 0,
                hit: 0,
                tokens_remaining: None,
            };
            for t in folded {
                other.pass += t.pass;
                other.hit += t.hit;
                if let Some(tokens) = t.tokens_remaining {
                    other.tokens_remaining = Some(other.tokens_remaining.unwrap_or(0.0) + tokens);
                }
            }
            throttle.push(other);
        }
        MetricsSnapshot { queues, throttle }
    }
}

fn fold_key(other: &mut Option<KeySnapshot>, entry: KeySnapshot) {
    let folded = other.get_or_insert_with(|| KeySnapshot {
        fairness_key: OTHER_KEY.to_string(),
        throughput: 0,
        deficit: 0,
        weight: 0,
    });
    folded.throughput += entry.throughput;
    folded.deficit += entry.deficit;
    folded.weight += entry.weight;
}

impl crate::queue::Queue {
    /// Records a delivery of `slot` at `now`: its key's throughput and the message's
    /// enqueue → delivery latency.
    pub(crate) fn record_delivery(&mut self, slot: crate::slab::SlabRef, now: crate::Time) {
        let Some(s) = self.messages.get(slot) else {
            return;
        };
        let latency_us = now
            .as_micros()
            .saturating_sub(s.message.enqueued_at.as_micros());
        if let Some(k) = self.keys.get_idx_mut(s.key) {
            k.delivered += 1;
        }
        self.metrics.record_delivery(latency_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_opentelemetry_convention_and_deltas_restart() {
        let mut h = Histogram::new(&[10.0, 100.0]);
        for v in [1.0, 10.0, 10.5, 100.0, 1e6] {
            h.record(v);
        }
        assert_eq!(h.counts(), &[2, 2, 1]);
        assert_eq!(h.count(), 5);
        let before = h.clone();
        h.record(50.0);
        let delta = h.since(&before);
        assert_eq!(delta.counts(), &[0, 1, 0]);
        assert_eq!(delta.sum(), 50.0);
        // A series that went backwards (queue recreated) is new as a whole.
        let fresh = Histogram::new(&[10.0, 100.0]);
        assert_eq!(fresh.since(&h), fresh);
        let mut merged = before.clone();
        merged.merge(&delta);
        assert_eq!(merged, h);
    }

    #[test]
    fn hook_runs_record_duration_errors_and_trips_but_not_bypasses() {
        let mut m = QueueMetrics::default();
        let ran = |ok, tripped| {
            Some(HookRun::Ran {
                ok,
                duration: Duration::from_micros(30),
                tripped,
            })
        };
        m.record_hook(Hook::OnEnqueue, ran(true, false));
        m.record_hook(Hook::OnFailure, ran(false, true));
        m.record_hook(Hook::OnEnqueue, Some(HookRun::Bypassed));
        m.record_hook(Hook::OnEnqueue, None);
        assert_eq!(m.lua_on_enqueue_us.count(), 1);
        assert_eq!(m.lua_on_failure_us.count(), 1);
        assert_eq!((m.lua_errors, m.lua_breaker_activations), (1, 1));
    }

    #[test]
    fn throttle_cells_count_and_forget() {
        let mut m = ShardMetrics::default();
        let key = ThrottleKey::new("t");
        m.record_throttle(&key, true);
        m.record_throttle(&key, false);
        m.set_throttle_tokens(&key, 3.0);
        let cells = m.throttle.get(&key).copied().unwrap_or_default();
        assert_eq!((cells.pass, cells.hit, cells.tokens), (1, 1, Some(3.0)));
        m.forget_throttle_key(&key);
        assert!(m.throttle.is_empty());
    }
}
