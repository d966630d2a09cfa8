//! The owned values that go in and out of a [`crate::Shard`]: requests, deliveries, stats.
//! No references and no wire types, so they can cross cores.

use std::sync::Arc;

use bytes::Bytes;

use crate::hooks::QueueScripts;
use crate::ids::{ConnectionId, ConsumerId, FairnessKey, MessageId, QueueId, ThrottleKey};
use crate::limits::{PAYLOAD_BYTES_MAX_DEFAULT, QUANTUM_DEFAULT};
use crate::queue::QueueCounters;
use crate::storage::keys::PendingOrder;
use crate::time::Time;

/// Settings of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardOptions {
    /// Seed of the id generator (the server passes fresh randomness; tests a constant).
    pub seed: u64,
    /// DRR quantum (`[scheduler] quantum`), > 0.
    pub quantum: u32,
    /// Payload cap per message (default 4 MiB).
    pub payload_bytes_max: usize,
    /// At recovery, skip records that fail to decode (reported as warnings) instead of
    /// failing.
    pub skip_corrupt: bool,
    /// Byte budget of the body cache: bodies (headers and payload) of newly enqueued
    /// messages are kept in memory while they fit, so a delivery right after enqueue needs
    /// no storage read; any other body is read from storage when it is delivered.
    /// 0 disables the cache. Default 64 MiB.
    pub body_cache_bytes: usize,
}

/// Default [`ShardOptions::body_cache_bytes`]: 64 MiB.
pub const BODY_CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// What the body cache holds and did (since the shard was opened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyCacheStats {
    /// The budget in bytes.
    pub budget_bytes: usize,
    /// Bytes charged for the bodies held now (never above the budget).
    pub used_bytes: usize,
    /// Bodies held now.
    pub entries: usize,
    /// Deliveries served from the cache.
    pub hits: u64,
    /// Body reads from storage (deliveries of uncached bodies, failure-path header reads).
    pub reads: u64,
    /// Body reads that failed; the message stayed where it was.
    pub read_errors: u64,
    /// The latest failed read, for the server to log.
    pub last_read_error: Option<String>,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            seed: 0,
            quantum: QUANTUM_DEFAULT,
            payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
            skip_corrupt: false,
            body_cache_bytes: BODY_CACHE_BYTES_DEFAULT,
        }
    }
}

/// CreateQueue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSpec {
    /// Name.
    pub name: String,
    /// Hook scripts.
    pub scripts: QueueScripts,
    /// Lease length; 0 = 30,000 ms.
    pub visibility_timeout_ms: u64,
}

impl QueueSpec {
    /// A queue without scripts and with the default visibility timeout.
    pub fn named(name: &str) -> QueueSpec {
        QueueSpec {
            name: name.to_string(),
            ..QueueSpec::default()
        }
    }
}

/// What DeleteQueue removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedQueue {
    /// The queues removed (the queue and its automatic DLQ).
    pub queues: Vec<QueueId>,
    /// Subscriptions that ended because their queue is gone; the server ends them.
    pub dropped_consumers: Vec<(ConsumerId, ConnectionId)>,
}

/// One message of an Enqueue batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueItem {
    /// Target queue.
    pub queue: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Payload.
    pub payload: Bytes,
}

/// One Ack item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckItem {
    /// Queue the message was delivered from.
    pub queue: String,
    /// Message id.
    pub id: MessageId,
}

/// One Nack item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackItem {
    /// Queue the message was delivered from.
    pub queue: String,
    /// Message id.
    pub id: MessageId,
    /// Failure description for `on_failure`.
    pub error: String,
}

/// A message handed to a consumer (it is now leased to the consumer's connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The subscription it goes to.
    pub consumer: ConsumerId,
    /// The connection that holds the lease.
    pub connection: ConnectionId,
    /// Queue.
    pub queue: QueueId,
    /// Message id.
    pub message_id: MessageId,
    /// Headers.
    pub headers: Arc<[(String, String)]>,
    /// Payload.
    pub payload: Bytes,
    /// Fairness key.
    pub fairness_key: FairnessKey,
    /// Weight.
    pub weight: u32,
    /// Throttle keys.
    pub throttle_keys: Arc<[ThrottleKey]>,
    /// Failed attempts so far (0 on first delivery).
    pub attempts: u32,
    /// Enqueue time, Unix ms.
    pub enqueued_at_ms: u64,
    /// Lease time, Unix ms.
    pub leased_at_ms: u64,
}

/// Per fairness key stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStats {
    /// Key.
    pub key: FairnessKey,
    /// Pending messages (ready and delayed).
    pub pending: u64,
    /// DRR deficit.
    pub deficit: i64,
    /// Weight.
    pub weight: u32,
}

/// Per throttle key stats.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleStats {
    /// Throttle key.
    pub key: String,
    /// Tokens available as the owner shard sees them (see `throttle::ThrottleView`).
    pub tokens: f64,
    /// Rate.
    pub rate_per_second: f64,
    /// Burst.
    pub burst: f64,
}

/// GetStats of one queue (every field of wire §10.3, plus extras).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    /// Queue.
    pub queue: QueueId,
    /// Pending (including delayed) plus in flight.
    pub depth: u64,
    /// Leased.
    pub in_flight: u64,
    /// Pending (ready and delayed).
    pub pending: u64,
    /// Delayed (part of pending).
    pub delayed: u64,
    /// Keys in the DRR ring.
    pub active_fairness_keys: u64,
    /// Registered consumers.
    pub active_consumers: u32,
    /// DRR quantum.
    pub quantum: u32,
    /// Always 0 (no cluster).
    pub leader_node_id: u64,
    /// Always 0 (no cluster).
    pub replication_count: u32,
    /// Active keys in ring order, at most [`crate::limits::STATS_KEYS_MAX`].
    pub per_key: Vec<KeyStats>,
    /// Every configured throttle key of the broker.
    pub per_throttle: Vec<ThrottleStats>,
    /// Lease length.
    pub visibility_timeout_ms: u64,
    /// Lifetime counters.
    pub counters: QueueCounters,
    /// DRR rounds started.
    pub drr_rounds: u64,
    /// DRR key visits.
    pub drr_keys_processed: u64,
    /// True when this shard's storage failed and it refuses writes.
    pub storage_poisoned: bool,
}

/// One ListQueues row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSummary {
    /// Name.
    pub name: QueueId,
    /// Pending plus in flight.
    pub depth: u64,
    /// Leased.
    pub in_flight: u64,
    /// Registered consumers.
    pub active_consumers: u32,
    /// Always 0 (no cluster).
    pub leader_node_id: u64,
}

/// Where a message is (inspection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Deliverable now.
    Ready,
    /// Waiting for its ready-at instant.
    Delayed,
    /// Leased.
    Leased {
        /// Expiry.
        deadline: Time,
        /// Holder (`None` after a restart).
        connection: Option<ConnectionId>,
    },
}

/// One message as inspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// Id.
    pub id: MessageId,
    /// State.
    pub state: MessageState,
    /// Attempts.
    pub attempts: u32,
    /// Fairness key.
    pub fairness_key: FairnessKey,
    /// Pending order (also the storage key).
    pub order: PendingOrder,
    /// Enqueue time.
    pub enqueued_at: Time,
}

/// A queue's messages and per-key FIFOs, for inspection and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDump {
    /// Every message, in pending order.
    pub messages: Vec<MessageView>,
    /// Each key's deliverable messages in FIFO order, keys sorted by name.
    pub fifos: Vec<(FairnessKey, Vec<MessageId>)>,
}
