//! `fila-shard`: the per-core broker. A shard owns a hash partition of queues and everything
//! about them (pending messages, DRR scheduling, leases, consumers, runtime config) and is
//! driven only by method calls that take `now`: no clock reads, no threads, no I/O except
//! through the [`storage::Storage`] seam. It never depends on `fila-wire` or on a runtime.
//!
//! Layout, in the order a message flows: [`ids`] and [`time`] (typed values), [`command`]
//! (owned requests and replies), [`Shard`] (`shard.rs` with `shard/flow.rs`,
//! `shard/admin.rs` and `shard/throttling.rs`), `queue.rs` (one queue's indexes), [`drr`] (the
//! scheduler), [`throttle`] (token buckets, ready classes, the token-lease protocol),
//! [`hooks`] (the script seam) and [`lua`] (its Lua host), [`config`] (runtime config),
//! [`metrics`] (metric cells and snapshots), `message.rs` and `record.rs` (stored records),
//! [`storage`] (the seam and its key layout), `recovery.rs`, and [`auth`] (API keys, ACLs and
//! the authorization table, kept by the server outside the queue storage).
//!
//! Memory is bounded by the index, not the payloads: a message in memory is its index entry
//! (id, pending order, fairness key index, weight, shared throttle keys, attempts, enqueue
//! time, body sequence; about 110 bytes plus its id-map and FIFO entries). Headers and
//! payload are stored once in the `bodies` keyspace and read at delivery (`cache.rs`), except
//! for bodies the byte-budgeted body cache holds (new messages, while it has room).
//! Recovery reads index records only. See `storage::keys` for the layout.
#![warn(missing_docs)]

pub mod auth;
mod cache;
pub mod command;
pub mod config;
pub mod drr;
pub mod error;
pub mod hooks;
pub mod ids;
pub mod limits;
pub mod lua;
mod message;
pub mod metrics;
mod queue;
mod record;
mod recovery;
mod shard;
mod slab;
pub mod storage;
pub mod throttle;
pub mod time;

pub use command::{
    AckItem, BODY_CACHE_BYTES_DEFAULT, BodyCacheStats, DeletedQueue, Delivery, EnqueueItem,
    KeyStats, MessageState, MessageView, NackItem, QueueDump, QueueSpec, QueueStats, QueueSummary,
    ShardOptions, ThrottleStats,
};
pub use error::{
    AckError, ConfigError, ConsumeError, CreateQueueError, DeleteQueueError, EnqueueError,
    NackError, Poisoned, RecoveryError, RedriveError, StatsError,
};
pub use hooks::{
    EnqueueDecision, EnqueueInput, FailureDecision, FailureInput, HookCompileError, HookContext,
    HookRun, HookStats, Hooks, NoHooks, QueueScripts,
};
pub use ids::{ConnectionId, ConsumerId, FairnessKey, MessageId, QueueId, ThrottleKey};
pub use lua::{LuaHooks, LuaLimits};
pub use metrics::{MetricsSnapshot, QueueSnapshot, ShardMetrics};
pub use queue::QueueCounters;
pub use recovery::{RecoveryReport, RecoveryWarning};
pub use shard::Shard;
pub use shard::flow::{DISCONNECTED_ERROR, EXPIRED_ERROR, clamp_weight};
pub use time::Time;
