//! What `fila top` shows, as plain data: a [`Snapshot`] built by a [`Sampler`] from one
//! ListQueues and one GetStats reply plus the previous sample. No I/O and no clock: the caller
//! passes the seconds elapsed since the previous sample, so rates are testable.
//!
//! GetStats has no delivery counters, so rates are estimates from changes between samples:
//! a queue's drain rate is its depth decrease per second (negative while it grows), and a
//! fairness key's share is its part of the pending decrease across the queue's keys since the
//! last sample, next to its fair share (weight ÷ Σ weights of the active keys).

use std::collections::HashMap;

use fila_wire::{QueueStats, QueueSummary};

/// One row of the queue table.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// Queue name.
    pub name: String,
    /// Pending plus in flight.
    pub depth: u64,
    /// Leased.
    pub in_flight: u64,
    /// Registered consumers.
    pub consumers: u32,
    /// Depth decrease per second since the previous sample; `None` on the first sample.
    pub drain_per_second: Option<f64>,
}

/// One fairness key of the selected queue.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    /// Fairness key.
    pub key: String,
    /// Pending messages.
    pub pending: u64,
    /// DRR deficit.
    pub deficit: i64,
    /// Weight.
    pub weight: u32,
    /// Share of the queue's pending decrease since the previous sample (0..=1); `None` when
    /// nothing drained.
    pub share: Option<f64>,
    /// Weight ÷ Σ weights of the active keys (0..=1).
    pub fair_share: f64,
}

/// One throttle key.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleRow {
    /// Throttle key.
    pub key: String,
    /// Tokens available.
    pub tokens: f64,
    /// Refill per second.
    pub rate_per_second: f64,
    /// Bucket size.
    pub burst: f64,
    /// Fewer than one token: messages with this key wait.
    pub limiting: bool,
}

/// The selected queue in detail.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDetail {
    /// Queue name.
    pub name: String,
    /// Pending plus in flight.
    pub depth: u64,
    /// Leased.
    pub in_flight: u64,
    /// Fairness keys with pending messages.
    pub active_keys: u64,
    /// Registered consumers.
    pub consumers: u32,
    /// DRR quantum.
    pub quantum: u32,
    /// Fairness keys, most pending first.
    pub keys: Vec<KeyRow>,
    /// Throttle keys of the broker, by name.
    pub throttles: Vec<ThrottleRow>,
}

/// Everything one frame of `fila top` draws.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Server address, for the title.
    pub addr: String,
    /// Refresh interval in milliseconds, for the title.
    pub interval_ms: u64,
    /// Every queue, by name.
    pub queues: Vec<QueueRow>,
    /// The queue shown in detail (highlighted in the table).
    pub selected: Option<String>,
    /// Its statistics, when they could be read.
    pub detail: Option<QueueDetail>,
    /// Why the selected queue has no detail (e.g. it does not exist).
    pub detail_error: Option<String>,
    /// Why the last refresh failed; the rest is the last good data.
    pub error: Option<String>,
}

/// Keeps the previous sample to turn counts into rates.
#[derive(Debug, Default)]
pub struct Sampler {
    depths: HashMap<String, u64>,
    /// (queue, fairness key) → pending at the previous sample of that queue's detail.
    pending: HashMap<String, HashMap<String, u64>>,
}

impl Sampler {
    /// A sampler with no history.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Builds the next snapshot from `queues` (ListQueues) and `stats` (GetStats of the
    /// selected queue, if any), `elapsed_seconds` after the previous call (`None` = first).
    pub fn sample(
        &mut self,
        queues: &[QueueSummary],
        stats: Option<(&str, &QueueStats)>,
        elapsed_seconds: Option<f64>,
    ) -> (Vec<QueueRow>, Option<QueueDetail>) {
        let dt = elapsed_seconds.filter(|dt| *dt > 0.0);
        let mut rows: Vec<QueueRow> = queues
            .iter()
            .map(|q| {
                let name = q.name.to_string();
                let drain_per_second = match (dt, self.depths.get(&name)) {
                    (Some(dt), Some(previous)) => Some((*previous as f64 - q.depth as f64) / dt),
                    _ => None,
                };
                QueueRow {
                    name,
                    depth: q.depth,
                    in_flight: q.in_flight,
                    consumers: q.active_consumers,
                    drain_per_second,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        self.depths = rows.iter().map(|r| (r.name.clone(), r.depth)).collect();

        let detail = stats.map(|(name, stats)| {
            let previous = self.pending.remove(name);
            let detail = detail(name, stats, previous.as_ref());
            self.pending.insert(
                name.to_owned(),
                detail
                    .keys
                    .iter()
                    .map(|k| (k.key.clone(), k.pending))
                    .collect(),
            );
            detail
        });
        (rows, detail)
    }
}

fn detail(name: &str, stats: &QueueStats, previous: Option<&HashMap<String, u64>>) -> QueueDetail {
    let total_weight: u64 = stats
        .per_key_stats
        .iter()
        .map(|k| u64::from(k.weight))
        .sum();
    // Pending decrease per key since the previous sample; keys that vanished drained fully.
    let drained: HashMap<&str, u64> = match previous {
        Some(previous) => previous
            .iter()
            .map(|(key, before)| {
                let now = stats
                    .per_key_stats
                    .iter()
                    .find(|k| &*k.key == key.as_str())
                    .map_or(0, |k| k.pending_count);
                (key.as_str(), before.saturating_sub(now))
            })
            .collect(),
        None => HashMap::new(),
    };
    let total_drained: u64 = drained.values().sum();
    let mut keys: Vec<KeyRow> = stats
        .per_key_stats
        .iter()
        .map(|k| KeyRow {
            key: k.key.to_string(),
            pending: k.pending_count,
            deficit: k.current_deficit,
            weight: k.weight,
            share: (total_drained > 0)
                .then(|| drained.get(&*k.key).copied().unwrap_or(0) as f64 / total_drained as f64),
            fair_share: if total_weight == 0 {
                0.0
            } else {
                f64::from(k.weight) / total_weight as f64
            },
        })
        .collect();
    keys.sort_by(|a, b| b.pending.cmp(&a.pending).then_with(|| a.key.cmp(&b.key)));
    let mut throttles: Vec<ThrottleRow> = stats
        .per_throttle_stats
        .iter()
        .map(|t| ThrottleRow {
            key: t.key.to_string(),
            tokens: t.tokens,
            rate_per_second: t.rate_per_second,
            burst: t.burst,
            limiting: t.tokens < 1.0,
        })
        .collect();
    throttles.sort_by(|a, b| a.key.cmp(&b.key));
    QueueDetail {
        name: name.to_owned(),
        depth: stats.depth,
        in_flight: stats.in_flight,
        active_keys: stats.active_fairness_keys,
        consumers: stats.active_consumers,
        quantum: stats.quantum,
        keys,
        throttles,
    }
}
