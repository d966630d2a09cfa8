//! [`Shard`]: the per-core broker core. It owns the queues of one shard and is driven only by
//! method calls that take `now`; it never reads a clock, sleeps, spawns or does I/O except
//! through its [`Storage`].
//!
//! Group commit: every operation appends its writes to an internal [`WriteBatch`] and
//! changes memory at once. [`Shard::commit`] applies the batch atomically; the server calls it
//! once per loop turn before releasing that turn's replies (a crash before commit loses only
//! writes nobody was told about). After a failed apply the shard is poisoned: writes fail with
//! [`Poisoned`] and stats show it. A server that wants to apply (fsync) elsewhere uses
//! [`Shard::take_writes`] and reports the outcome with [`Shard::poison`] on failure.
//!
//! Operations are grouped by family: `shard/admin.rs` (queues, config, stats, redrive),
//! `shard/flow.rs` (enqueue, consumers, deliveries, ack, nack, timers, failures).

mod admin;
pub mod flow;
mod throttling;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use crate::cache::BodyCache;
use crate::command::{BodyCacheStats, ShardOptions};
use crate::config::RuntimeConfig;
use crate::error::Poisoned;
use crate::hooks::Hooks;
use crate::ids::{ConnectionId, ConsumerId, FairnessKey, IdGenerator, QueueId, ThrottleKey};
use crate::limits::PAYLOAD_BYTES_MAX_LIMIT;
use crate::queue::Queue;
use crate::slab::{Slab, SlabRef};
use crate::storage::keys::{FORMAT_VERSION, META_FORMAT_VERSION, PendingOrder};
use crate::storage::{Keyspace, Storage, StorageError, WriteBatch};
use crate::throttle::Throttle;
use crate::time::Time;

/// What a connection touched: its subscriptions and the queues where it may hold leases.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    pub(crate) consumers: Vec<ConsumerId>,
    pub(crate) queues: Vec<SlabRef>,
}

/// The broker core of one shard.
pub struct Shard<S: Storage> {
    pub(crate) storage: S,
    pub(crate) writes: WriteBatch,
    pub(crate) poisoned: bool,
    pub(crate) hooks: Box<dyn Hooks>,
    pub(crate) config: RuntimeConfig,
    pub(crate) options: ShardOptions,
    pub(crate) ids: IdGenerator,
    pub(crate) next_seq: u64,
    pub(crate) next_queue_no: u64,
    pub(crate) now: Time,
    pub(crate) queues: Slab<Queue>,
    pub(crate) by_name: HashMap<QueueId, SlabRef>,
    pub(crate) consumers: HashMap<ConsumerId, SlabRef>,
    pub(crate) connections: HashMap<ConnectionId, ConnectionState>,
    pub(crate) timers: BinaryHeap<Reverse<(Time, SlabRef)>>,
    pub(crate) wake: VecDeque<SlabRef>,
    pub(crate) scratch: Vec<SlabRef>,
    pub(crate) default_key: FairnessKey,
    pub(crate) no_headers: Arc<[(String, String)]>,
    pub(crate) no_throttle_keys: Arc<[ThrottleKey]>,
    pub(crate) cache: BodyCache,
    pub(crate) throttle: Throttle,
    pub(crate) metrics: crate::metrics::ShardMetrics,
}

impl<S: Storage> std::fmt::Debug for Shard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("queues", &self.queues.len())
            .field("now", &self.now)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl std::borrow::Borrow<str> for QueueId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for FairnessKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl<S: Storage> Shard<S> {
    /// A shard over empty `storage`. Use [`Shard::open`] for storage that may hold data.
    pub fn new(storage: S, options: ShardOptions, hooks: Box<dyn Hooks>) -> Shard<S> {
        let mut options = options;
        options.quantum = options.quantum.max(1);
        options.payload_bytes_max = options.payload_bytes_max.min(PAYLOAD_BYTES_MAX_LIMIT);
        let mut writes = WriteBatch::new();
        writes.put(
            Keyspace::Meta,
            META_FORMAT_VERSION.to_vec(),
            FORMAT_VERSION.to_be_bytes().to_vec(),
        );
        let cache = BodyCache::new(options.body_cache_bytes);
        Shard {
            storage,
            writes,
            poisoned: false,
            hooks,
            config: RuntimeConfig::new(),
            ids: IdGenerator::new(options.seed),
            options,
            next_seq: 0,
            next_queue_no: 1,
            now: Time::ZERO,
            queues: Slab::default(),
            by_name: HashMap::new(),
            consumers: HashMap::new(),
            connections: HashMap::new(),
            timers: BinaryHeap::new(),
            wake: VecDeque::new(),
            scratch: Vec::new(),
            default_key: FairnessKey::new(FairnessKey::DEFAULT),
            no_headers: Arc::from(Vec::new()),
            no_throttle_keys: Arc::from(Vec::new()),
            cache,
            throttle: Throttle::default(),
            metrics: crate::metrics::ShardMetrics::default(),
        }
    }

    /// The storage (tests clone a `MemoryStorage` from here to simulate a crash).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutably (e.g. to inject failures in tests).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The options in force.
    pub fn options(&self) -> &ShardOptions {
        &self.options
    }

    /// The body cache: budget, use, hits, storage reads and read failures. A failed read
    /// leaves its message pending (deliveries from its queue pause briefly and retry);
    /// the server logs `last_read_error`.
    pub fn body_cache(&self) -> &BodyCacheStats {
        &self.cache.stats
    }

    /// The latest `now` seen (time never goes backwards inside a shard).
    pub fn now(&self) -> Time {
        self.now
    }

    /// Applies the pending writes atomically. On failure the shard is poisoned; the replies
    /// of every operation since the last commit must then report a storage error.
    pub fn commit(&mut self) -> Result<(), StorageError> {
        if self.poisoned {
            self.writes.clear();
            return Err(StorageError::Poisoned);
        }
        if self.writes.is_empty() {
            return Ok(());
        }
        let result = self.storage.apply(&self.writes);
        self.writes.clear();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// True when writes are waiting for [`Shard::commit`].
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Takes the pending writes for the caller to apply itself.
    pub fn take_writes(&mut self) -> WriteBatch {
        std::mem::take(&mut self.writes)
    }

    /// Marks the shard poisoned after the caller failed to apply a taken batch.
    pub fn poison(&mut self) {
        self.poisoned = true;
        self.writes.clear();
    }

    /// True after a failed write.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn writable(&self) -> Result<(), Poisoned> {
        if self.poisoned { Err(Poisoned) } else { Ok(()) }
    }

    /// Records `now` (monotone) and runs every timer that is due. Every operation starts here.
    pub(crate) fn advance(&mut self, now: Time) -> Time {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        self.run_timers(now);
        now
    }

    pub(crate) fn next_order(&mut self, ready_at: Time) -> PendingOrder {
        let seq = self.next_seq;
        self.next_seq += 1;
        PendingOrder {
            ready_at_us: ready_at.as_micros(),
            seq,
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<SlabRef> {
        self.by_name.get(name).copied()
    }

    /// Arms the shard timer for `queue` at `at` unless an earlier one is armed.
    pub(crate) fn arm(&mut self, queue: SlabRef, at: Time) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.armed_at.is_some_and(|armed| armed <= at) {
            return;
        }
        q.armed_at = Some(at);
        self.timers.push(Reverse((at, queue)));
    }

    /// Re-arms a queue for its next due instant.
    pub(crate) fn rearm(&mut self, queue: SlabRef) {
        if let Some(at) = self.queues.get(queue).and_then(Queue::next_due) {
            self.arm(queue, at);
        }
    }

    /// Puts a queue on the wake list (it may be able to deliver).
    pub(crate) fn wake(&mut self, queue: SlabRef) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.read_retry_at.is_some_and(|at| at <= self.now) {
            q.read_retry_at = None;
        }
        if !q.in_wake && q.read_retry_at.is_none() && q.has_ready() && q.has_consumer_credit() {
            q.in_wake = true;
            self.wake.push_back(queue);
        }
    }

    /// The next instant the timer entry point must be called, if any.
    pub fn next_timer(&self) -> Option<Time> {
        let queues = self.timers.peek().map(|Reverse((at, _))| *at);
        match (queues, self.throttle.next_wake()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timer entry point: expires leases and releases delayed messages that are due.
    /// Returns the next instant it needs to be called.
    pub fn tick(&mut self, now: Time) -> Option<Time> {
        let now = self.advance(now);
        self.throttle.tick(now);
        self.release_throttled();
        self.next_timer()
    }

    /// Checks every internal invariant; for tests, the simulation and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (r, queue) in self.queues.iter() {
            queue.check()?;
            if self.by_name.get(queue.id.as_str()) != Some(&r) {
                return Err(format!("name index misses {}", queue.id));
            }
            if queue.next_due().is_some()
                && queue.armed_at.is_none_or(|t| Some(t) > queue.next_due())
            {
                return Err(format!(
                    "{}: timer not armed for its next due instant",
                    queue.id
                ));
            }
        }
        let (mut used, mut entries) = (0usize, 0usize);
        for (_, queue) in self.queues.iter() {
            for (_, slot) in queue.messages.iter() {
                if let Some(body) = &slot.body {
                    used += body.cost();
                    entries += 1;
                }
            }
        }
        let stats = &self.cache.stats;
        if used != stats.used_bytes || entries != stats.entries || used > stats.budget_bytes {
            return Err(format!(
                "body cache accounting drifted: {entries} bodies of {used} bytes held, {} of {} counted, budget {}",
                stats.entries, stats.used_bytes, stats.budget_bytes
            ));
        }
        if self.by_name.len() != self.queues.len() {
            return Err("name index has extra entries".to_string());
        }
        for (consumer, queue) in &self.consumers {
            let registered = self
                .queues
                .get(*queue)
                .is_some_and(|q| q.consumers.contains_key(consumer));
            if !registered {
                return Err(format!("consumer {consumer} index is stale"));
            }
        }
        Ok(())
    }
}
