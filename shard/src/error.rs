//! Error enums, one per operation, holding only what that operation can produce.
//! The server maps them to wire error codes in one place.

use crate::config::InvalidConfig;
use crate::hooks::HookCompileError;
use crate::ids::QueueId;
use crate::storage::StorageError;

/// A storage write failed earlier; the shard refuses writes until it is restarted
/// (wire code `StorageError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage failed earlier; this shard refuses writes until the broker restarts")]
pub struct Poisoned;

/// CreateQueue failures.
#[derive(Debug, thiserror::Error)]
pub enum CreateQueueError {
    /// Empty, too long, or no room for the `.dlq` suffix.
    #[error("invalid queue name: {reason}")]
    InvalidName {
        /// Why.
        reason: String,
    },
    /// A visibility timeout above the limit.
    #[error("visibility timeout {requested_ms} ms exceeds the limit of {max_ms} ms")]
    VisibilityTimeoutTooLong {
        /// Requested.
        requested_ms: u64,
        /// Limit.
        max_ms: u64,
    },
    /// The name is taken.
    #[error("queue {0} already exists")]
    AlreadyExists(QueueId),
    /// A script did not compile.
    #[error("hook script failed to compile: {0}")]
    HookCompile(#[from] HookCompileError),
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// DeleteQueue failures.
#[derive(Debug, thiserror::Error)]
pub enum DeleteQueueError {
    /// No such queue.
    #[error("queue not found")]
    QueueNotFound,
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// Per-item Enqueue failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// No such queue.
    #[error("queue not found")]
    QueueNotFound,
    /// Payload above the shard's cap.
    #[error("payload is {size} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// Size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Too many headers.
    #[error("message has {count} headers, the limit is {max}")]
    TooManyHeaders {
        /// Count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Headers too large in total.
    #[error("headers take {bytes} bytes, the limit is {max}")]
    HeadersTooLarge {
        /// Size.
        bytes: usize,
        /// Limit.
        max: usize,
    },
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// Consume (register consumer) failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// No such queue.
    #[error("queue not found")]
    QueueNotFound,
}

/// Per-item Ack failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No current lease for that message held by this connection in that queue.
    #[error("message not found")]
    MessageNotFound,
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// Per-item Nack failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NackError {
    /// No current lease for that message held by this connection in that queue.
    #[error("message not found")]
    MessageNotFound,
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// Redrive failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedriveError {
    /// The name does not end in `.dlq`.
    #[error("{0} is not a dead-letter queue")]
    NotADlq(QueueId),
    /// No such dead-letter queue.
    #[error("queue not found")]
    QueueNotFound,
    /// The parent queue is gone.
    #[error("parent queue {0} not found")]
    ParentQueueNotFound(QueueId),
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// GetStats failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// No such queue.
    #[error("queue not found")]
    QueueNotFound,
}

/// SetConfig failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Refused value (wire `InvalidConfigValue`); nothing stored.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
    /// Storage is poisoned.
    #[error(transparent)]
    Storage(#[from] Poisoned),
}

/// Recovery failures.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Reading storage failed, or a record is corrupt (and `skip_corrupt` is off).
    #[error("recovery failed: {0}")]
    Storage(#[from] StorageError),
    /// The data was written by an unknown format version.
    #[error("storage format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Found.
        found: u64,
        /// Supported.
        supported: u64,
    },
}
