//! The storage seam: every state change a shard makes goes through [`Storage`].
//!
//! The shard core decides *what* to store (keys and values, see the key layout module);
//! an implementation decides only *how*: [`memory::MemoryStorage`] for tests and simulation,
//! a fjall database per shard for the server. Implementations know nothing about queues.
//!
//! Contract:
//! - [`Storage::apply`] applies a whole [`WriteBatch`] atomically: after a crash either every
//!   operation of the batch is visible or none is.
//! - Scans return entries in ascending byte order of their keys.
//! - After a failed `apply` an implementation may poison itself and refuse further writes
//!   ([`StorageError::Poisoned`]); the shard surfaces that to clients as `StorageError`.

pub mod auth_db;
pub mod fjall;
pub mod keys;
pub mod memory;

use std::fmt;

/// The fixed set of keyspaces a shard writes to. Each maps to one fjall keyspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    /// Queue definitions (name → config and hook scripts).
    Queues,
    /// Message index records (queue, ordering key → the message without headers and
    /// payload). Small, so recovery scans only these.
    Messages,
    /// Message bodies (body sequence → headers and payload), read at delivery time.
    Bodies,
    /// Lease records (queue, message → deadline, holder).
    Leases,
    /// Runtime configuration (key → value).
    Config,
    /// Shard metadata (format version, counters, cursors).
    Meta,
}

impl Keyspace {
    /// Every keyspace, in a stable order.
    pub const ALL: [Keyspace; 6] = [
        Keyspace::Queues,
        Keyspace::Messages,
        Keyspace::Bodies,
        Keyspace::Leases,
        Keyspace::Config,
        Keyspace::Meta,
    ];

    /// The keyspace's on-disk name. Stable across releases.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Queues => "queues",
            Keyspace::Messages => "messages",
            Keyspace::Bodies => "bodies",
            Keyspace::Leases => "leases",
            Keyspace::Config => "config",
            Keyspace::Meta => "meta",
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or overwrite `key` with `value`.
    Put {
        /// Target keyspace.
        keyspace: Keyspace,
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op when it is absent).
    Delete {
        /// Target keyspace.
        keyspace: Keyspace,
        /// Key bytes.
        key: Vec<u8>,
    },
}

/// An ordered list of writes applied atomically by [`Storage::apply`].
/// Later operations on the same key win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Appends a put.
    pub fn put(&mut self, keyspace: Keyspace, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put {
            keyspace,
            key,
            value,
        });
    }

    /// Appends a delete.
    pub fn delete(&mut self, keyspace: Keyspace, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete { keyspace, key });
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The operations in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Removes every operation, keeping the allocation.
    pub fn clear(&mut self) {
        self.ops.clear();
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend reported an I/O or engine failure.
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An earlier write or sync failed; the store refuses writes until restarted.
    #[error("storage is poisoned after an earlier failed write; restart the broker")]
    Poisoned,
    /// A stored record could not be decoded.
    #[error("corrupt record in keyspace {keyspace:?} at key {key}: {reason}")]
    Corrupt {
        /// Where the record lives.
        keyspace: Keyspace,
        /// The key, hex-encoded for the log.
        key: HexKey,
        /// What was wrong with it.
        reason: String,
    },
}

/// A key printed as hex in error messages and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct HexKey(pub Vec<u8>);

impl fmt::Display for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A visitor for scans: return `Ok(true)` to continue, `Ok(false)` to stop early.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StorageError> + 'a;

/// The storage seam between the shard core and a persistent (or in-memory) store.
pub trait Storage {
    /// Applies every operation of `batch` atomically, as durable as the implementation's
    /// durability mode promises once this returns `Ok`.
    fn apply(&mut self, batch: &WriteBatch) -> Result<(), StorageError>;

    /// Reads one value (a point read: the shard uses it for message bodies at delivery).
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Visits every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(
        &self,
        keyspace: Keyspace,
        prefix: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError>;

    /// Visits every entry with `start <= key < end`, in ascending key order.
    /// Used with cursors kept in memory so scans never walk over deleted records.
    fn scan_range(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError>;
}
