//! Merging shard snapshots into one view: one series per label set, no `shard` attribute.
//! Counters and histograms are summed; gauges come from their owner (a queue lives on one
//! shard, so its gauges are that shard's; a throttle key's tokens are set by its home shard
//! only). `fila.fairness.fair_share_ratio` is derived here from the throughput deltas
//! between two merges.

use std::collections::{BTreeMap, HashMap};

use fila_shard::metrics::{
    Histogram, KeySnapshot, MetricsSnapshot, OTHER_KEY, QueueSnapshot, ThrottleSnapshot,
};

/// The merged metrics of every shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// Per queue id.
    pub queues: BTreeMap<String, QueueSnapshot>,
    /// Per throttle key (capped, the rest folded into `_other`).
    pub throttle: BTreeMap<String, ThrottleSnapshot>,
    /// `fila.fairness.fair_share_ratio` per (queue id, fairness key), for queues that
    /// delivered since the previous merge.
    pub fair_share: BTreeMap<(String, String), f64>,
}

/// Merges snapshots (one per shard) with at most `max_key_series` throttle-key series.
pub fn merge(snapshots: &[MetricsSnapshot], max_key_series: usize) -> Merged {
    let mut merged = Merged::default();
    for snapshot in snapshots {
        for queue in &snapshot.queues {
            match merged.queues.get_mut(&queue.queue_id) {
                Some(into) => add_queue(into, queue),
                None => {
                    merged.queues.insert(queue.queue_id.clone(), queue.clone());
                }
            }
        }
        for t in &snapshot.throttle {
            let into = merged
                .throttle
                .entry(t.throttle_key.clone())
                .or_insert_with(|| ThrottleSnapshot {
                    throttle_key: t.throttle_key.clone(),
                    pass: 0,
                    hit: 0,
                    tokens_remaining: None,
                });
            add_throttle(into, t);
        }
    }
    if merged.throttle.len() > max_key_series {
        let mut other = merged
            .throttle
            .remove(OTHER_KEY)
            .unwrap_or_else(|| ThrottleSnapshot {
                throttle_key: OTHER_KEY.to_string(),
                pass: 0,
                hit: 0,
                tokens_remaining: None,
            });
        let keep = max_key_series.saturating_sub(1);
        let folded: Vec<String> = merged.throttle.keys().skip(keep).cloned().collect();
        for key in folded {
            if let Some(t) = merged.throttle.remove(&key) {
                other.pass += t.pass;
                other.hit += t.hit;
                if let Some(tokens) = t.tokens_remaining {
                    other.tokens_remaining = Some(other.tokens_remaining.unwrap_or(0.0) + tokens);
                }
            }
        }
        merged.throttle.insert(OTHER_KEY.to_string(), other);
    }
    merged
}

fn add_queue(into: &mut QueueSnapshot, q: &QueueSnapshot) {
    into.enqueued += q.enqueued;
    into.leased += q.leased;
    into.acked += q.acked;
    into.nacked += q.nacked;
    into.expired += q.expired;
    into.dead_lettered += q.dead_lettered;
    into.redriven += q.redriven;
    into.depth += q.depth;
    into.leases_active += q.leases_active;
    into.consumers += q.consumers;
    into.drr_rounds += q.drr_rounds;
    into.drr_keys_processed += q.drr_keys_processed;
    into.drr_active_keys += q.drr_active_keys;
    into.lua_errors += q.lua_errors;
    into.lua_breaker_activations += q.lua_breaker_activations;
    into.lua_on_enqueue_us.merge(&q.lua_on_enqueue_us);
    into.lua_on_failure_us.merge(&q.lua_on_failure_us);
    into.delivery_latency_us.merge(&q.delivery_latency_us);
    for key in &q.keys {
        match into
            .keys
            .iter_mut()
            .find(|k| k.fairness_key == key.fairness_key)
        {
            Some(k) => {
                k.throughput += key.throughput;
                k.deficit += key.deficit;
                k.weight += key.weight;
            }
            None => into.keys.push(key.clone()),
        }
    }
}

fn add_throttle(into: &mut ThrottleSnapshot, t: &ThrottleSnapshot) {
    into.pass += t.pass;
    into.hit += t.hit;
    if into.tokens_remaining.is_none() {
        into.tokens_remaining = t.tokens_remaining;
    }
}

/// Derives `fila.fairness.fair_share_ratio` from throughput deltas: a key's share of the
/// queue's deliveries since the previous call ÷ (its weight ÷ Σ weights of the queue's live
/// keys). 1.0 = fair; 0 = starved. Queues without deliveries in the window report nothing.
#[derive(Debug, Default)]
pub struct FairShare {
    previous: HashMap<(String, String), u64>,
}

impl FairShare {
    /// Fills `merged.fair_share` and remembers the throughputs for the next call.
    pub fn update(&mut self, merged: &mut Merged) {
        let mut now: HashMap<(String, String), u64> = HashMap::new();
        merged.fair_share.clear();
        for (queue_id, q) in &merged.queues {
            let deltas: Vec<(&KeySnapshot, u64)> = q
                .keys
                .iter()
                .map(|k| {
                    let id = (queue_id.clone(), k.fairness_key.clone());
                    let before = self.previous.get(&id).copied().unwrap_or(0);
                    now.insert(id, k.throughput);
                    let delta = if k.throughput >= before {
                        k.throughput - before
                    } else {
                        k.throughput
                    };
                    (k, delta)
                })
                .collect();
            let total: u64 = deltas.iter().map(|(_, d)| d).sum();
            let weights: u64 = q.keys.iter().map(|k| k.weight).sum();
            if total == 0 || weights == 0 {
                continue;
            }
            for (k, delta) in deltas {
                if k.weight == 0 {
                    continue;
                }
                let share = delta as f64 / total as f64;
                let fair = k.weight as f64 / weights as f64;
                merged
                    .fair_share
                    .insert((queue_id.clone(), k.fairness_key.clone()), share / fair);
            }
        }
        self.previous = now;
    }
}

/// The histograms of a merged view, by series, for replaying deltas into the SDK.
pub fn histograms(merged: &Merged) -> Vec<(HistogramSeries, &Histogram)> {
    let mut out = Vec::new();
    for (queue_id, q) in &merged.queues {
        out.push((
            HistogramSeries::Lua {
                queue_id: queue_id.clone(),
                hook: "on_enqueue",
            },
            &q.lua_on_enqueue_us,
        ));
        out.push((
            HistogramSeries::Lua {
                queue_id: queue_id.clone(),
                hook: "on_failure",
            },
            &q.lua_on_failure_us,
        ));
        out.push((
            HistogramSeries::DeliveryLatency {
                queue_id: queue_id.clone(),
            },
            &q.delivery_latency_us,
        ));
    }
    out
}

/// One histogram series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HistogramSeries {
    /// `fila.lua.execution_duration_us{queue_id, hook}`.
    Lua {
        /// Queue.
        queue_id: String,
        /// Hook label.
        hook: &'static str,
    },
    /// `fila.delivery.latency_us{queue_id}`.
    DeliveryLatency {
        /// Queue.
        queue_id: String,
    },
}
