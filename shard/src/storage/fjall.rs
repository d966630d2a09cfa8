//! The durable [`Storage`]: one fjall database per shard directory, one fjall keyspace per
//! [`Keyspace`] variant, atomic batches with a configurable [`Durability`], a [`SyncHandle`]
//! for group commit off the reactor thread, and fail-stop poisoning after any failed write
//! or sync.
//!
//! Guarantees, by entry point (every one applies a whole [`WriteBatch`] atomically: after a
//! crash a batch is either fully visible or not at all):
//! - [`Storage::apply`] with [`Durability::Process`]: the batch has been handed to the OS
//!   (`write(2)` of the journal) before `apply` returns, so it survives `kill -9` of the
//!   process but not a power loss or kernel crash.
//! - [`Storage::apply`] with [`Durability::Fsync`]: the journal has been written and
//!   `fdatasync`ed before `apply` returns, so the batch survives power loss.
//! - [`Storage::apply`] with [`Durability::None`]: the batch may still sit in fjall's 8 KiB
//!   in-process journal buffer when `apply` returns; a process kill can lose the tail.
//!   For benchmarks only.
//! - [`FjallStorage::apply_unsynced`]: like `Process` whatever the configured mode; pair it
//!   with [`SyncHandle::sync`], which `fdatasync`s the journal: once `sync` returns `Ok`,
//!   every batch whose `apply_unsynced` returned before `sync` was called survives power loss.
//!
//! fjall itself is never mocked: the only test hook is an injected sync failure behind
//! `#[cfg(test)]`, used to check that a failing [`SyncHandle`] poisons the storage.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fjall::{Database, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use super::{Keyspace, Storage, StorageError, Visit, WriteBatch, WriteOp};

/// Default block cache per shard database: 64 MiB.
pub const DEFAULT_CACHE_SIZE_BYTES: u64 = 64 * 1024 * 1024;

/// Default memtable size per keyspace: 8 MiB. Bounds what a restart must replay from the
/// journal for each keyspace.
pub const DEFAULT_MAX_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Default (and smallest) journal budget: 64 MiB. When the journals grow past it, fjall
/// flushes the memtables holding the oldest journal, which bounds crash-recovery replay.
pub const DEFAULT_MAX_JOURNALING_BYTES: u64 = 64 * 1024 * 1024;

/// Background flush/compaction threads per shard database (see `open` for why not 1).
pub const FJALL_WORKER_THREADS: usize = 2;

/// The largest key fjall accepts (its keys carry a `u16` length).
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// How durable a batch is when [`Storage::apply`] returns `Ok`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// No durability call per batch: the tail of the journal may still be buffered inside
    /// the process. Survives a clean shutdown only. For benchmarks.
    None,
    /// Every batch is written to the OS before `apply` returns: survives `kill -9` of the
    /// broker, not a power loss or kernel crash. The default.
    #[default]
    Process,
    /// Every batch is written and `fdatasync`ed before `apply` returns: survives power loss.
    Fsync,
}

impl Durability {
    /// The configuration spelling: `"none"`, `"process"` or `"fsync"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Process => "process",
            Durability::Fsync => "fsync",
        }
    }

    fn persist_mode(self) -> Option<PersistMode> {
        match self {
            Durability::None => None,
            Durability::Process => Some(PersistMode::Buffer),
            Durability::Fsync => Some(PersistMode::SyncData),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A durability setting that is not one of `none`, `process`, `fsync`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid storage durability {given:?}: expected one of \"none\", \"process\", \"fsync\"")]
pub struct ParseDurabilityError {
    /// The rejected text.
    pub given: String,
}

impl FromStr for Durability {
    type Err = ParseDurabilityError;

    fn from_str(text: &str) -> Result<Durability, ParseDurabilityError> {
        match text {
            "none" => Ok(Durability::None),
            "process" => Ok(Durability::Process),
            "fsync" => Ok(Durability::Fsync),
            other => Err(ParseDurabilityError {
                given: other.to_owned(),
            }),
        }
    }
}

/// Settings for [`FjallStorage::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FjallOptions {
    /// What [`Storage::apply`] guarantees when it returns.
    pub durability: Durability,
    /// Block cache size of this shard's database, in bytes.
    pub cache_size_bytes: u64,
    /// Memtable size of each keyspace, in bytes. Applies when a keyspace is created; an
    /// existing database keeps the size it was created with.
    pub max_memtable_bytes: u64,
    /// Journal budget, in bytes; values below 64 MiB (fjall's minimum) are raised to it.
    pub max_journaling_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> FjallOptions {
        FjallOptions {
            durability: Durability::Process,
            cache_size_bytes: DEFAULT_CACHE_SIZE_BYTES,
            max_memtable_bytes: DEFAULT_MAX_MEMTABLE_BYTES,
            max_journaling_bytes: DEFAULT_MAX_JOURNALING_BYTES,
        }
    }
}

/// Why the fjall storage failed. Carried inside [`StorageError::Backend`]; callers that
/// need the detail can `downcast_ref::<FjallError>()` the source.
#[derive(Debug, thiserror::Error)]
pub enum FjallError {
    /// The data path exists but is not a directory.
    #[error("data path {path} is not a directory")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// The data directory could not be created or inspected.
    #[error("cannot create or access data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another handle in this process) holds the database lock.
    #[error(
        "data directory {path} is locked by another open database (is another broker running on it?)"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// Opening or recovering the database failed (unwritable or read-only directory,
    /// corrupt files, incompatible format, ...).
    #[error("cannot open the database in {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The engine error.
        #[source]
        source: fjall::Error,
    },
    /// A key is empty or longer than [`MAX_KEY_BYTES`]; the batch was rejected before
    /// anything was written (the storage is not poisoned).
    #[error("invalid key of {len} bytes in keyspace {keyspace:?}: keys must be 1..={max} bytes")]
    InvalidKey {
        /// Target keyspace.
        keyspace: Keyspace,
        /// The key's length.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// A value does not fit fjall's `u32` length; the batch was rejected before anything
    /// was written.
    #[error("value of {len} bytes in keyspace {keyspace:?} is too large (max 4 GiB)")]
    ValueTooLarge {
        /// Target keyspace.
        keyspace: Keyspace,
        /// The value's length.
        len: usize,
    },
    /// An engine operation failed (I/O error such as a full disk, ...).
    #[error("{operation} failed: {source}")]
    Engine {
        /// What was being done.
        operation: &'static str,
        /// The engine error.
        #[source]
        source: fjall::Error,
    },
    /// A sync failure injected by a unit test.
    #[cfg(test)]
    #[error("injected sync failure")]
    Injected,
}

impl From<FjallError> for StorageError {
    fn from(error: FjallError) -> StorageError {
        StorageError::Backend(Box::new(error))
    }
}

/// State shared between a [`FjallStorage`] and its [`SyncHandle`]s.
#[derive(Debug, Default)]
struct Shared {
    poisoned: AtomicBool,
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

impl Shared {
    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    /// Maps an engine error of a write or sync and poisons: after a failed write the
    /// journal's state is unknown, so every later write is refused.
    fn write_failed(&self, operation: &'static str, error: fjall::Error) -> StorageError {
        self.poison();
        match error {
            fjall::Error::Poisoned => StorageError::Poisoned,
            source => FjallError::Engine { operation, source }.into(),
        }
    }
}

/// A cheap, thread-safe handle that makes every batch written so far durable on disk.
///
/// Intended for group commit: the reactor calls [`FjallStorage::apply_unsynced`] for a group,
/// then runs [`SyncHandle::sync`] on a blocking thread and releases the group's replies when
/// it returns `Ok`.
///
/// Guarantee: when `sync` returns `Ok`, every batch whose `apply_unsynced` (or `apply`)
/// returned before `sync` was called survives power loss. When it fails, the storage is
/// poisoned: every later `apply`/`apply_unsynced`/`sync` fails with
/// [`StorageError::Poisoned`], and the batches of the unsynced group must not be acknowledged.
///
/// The sync holds fjall's journal lock while it waits for the disk, so an `apply_unsynced`
/// issued during a sync waits for it: accumulate the next group in memory meanwhile and
/// write it when the sync returns.
#[derive(Clone)]
pub struct SyncHandle {
    db: Database,
    shared: Arc<Shared>,
}

impl fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncHandle")
            .field("poisoned", &self.shared.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl SyncHandle {
    /// `fdatasync`s the journal. Blocks for the disk: never call it on a reactor thread.
    pub fn sync(&self) -> Result<(), StorageError> {
        if self.shared.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        #[cfg(test)]
        if self.shared.fail_next_sync.swap(false, Ordering::AcqRel) {
            self.shared.poison();
            return Err(FjallError::Injected.into());
        }
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|error| self.shared.write_failed("journal sync", error))
    }

    /// True after a failed write or sync.
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }
}

/// A shard's durable store: one fjall [`Database`] in its own directory.
pub struct FjallStorage {
    db: Database,
    queues: fjall::Keyspace,
    messages: fjall::Keyspace,
    bodies: fjall::Keyspace,
    leases: fjall::Keyspace,
    config: fjall::Keyspace,
    meta: fjall::Keyspace,
    durability: Durability,
    shared: Arc<Shared>,
    path: PathBuf,
}

impl fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStorage")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .field("poisoned", &self.shared.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl FjallStorage {
    /// Opens (creating it if needed) the database in `path`, which is one shard's directory
    /// (`<data_dir>/shard-<i>`). Missing parent directories are created.
    ///
    /// Fails with a [`StorageError::Backend`] holding a [`FjallError`] when the path is not
    /// a directory, cannot be created, is not writable, or is locked by another open
    /// database (fjall retries the lock for a few hundred milliseconds first).
    pub fn open(
        path: impl AsRef<Path>,
        options: FjallOptions,
    ) -> Result<FjallStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_dir() => return Err(FjallError::NotADirectory { path }.into()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&path).map_err(|source| FjallError::Directory {
                    path: path.clone(),
                    source,
                })?;
            }
            Err(source) => return Err(FjallError::Directory { path, source }.into()),
        }
        let db = Database::builder(&path)
            // Two workers, not one: fjall 3.1's worker that rotates a memtable does a blocking
            // send into the worker queue (capacity 1,000) that writers fill with rotation
            // requests under load; with a single worker nothing drains it and flushes stop for
            // good (seen under benchmark load; writes then stall once 4 memtables are sealed).
            .worker_threads(FJALL_WORKER_THREADS)
            .cache_size(options.cache_size_bytes)
            .max_journaling_size(
                options
                    .max_journaling_bytes
                    .max(DEFAULT_MAX_JOURNALING_BYTES),
            )
            .open()
            .map_err(|source| open_error(&path, source))?;
        let keyspace = |ks: Keyspace| {
            db.keyspace(ks.name(), || {
                KeyspaceCreateOptions::default().max_memtable_size(options.max_memtable_bytes)
            })
            .map_err(|source| open_error(&path, source))
        };
        Ok(FjallStorage {
            queues: keyspace(Keyspace::Queues)?,
            messages: keyspace(Keyspace::Messages)?,
            bodies: keyspace(Keyspace::Bodies)?,
            leases: keyspace(Keyspace::Leases)?,
            config: keyspace(Keyspace::Config)?,
            meta: keyspace(Keyspace::Meta)?,
            db,
            durability: options.durability,
            shared: Arc::new(Shared::default()),
            path,
        })
    }

    /// The durability mode [`Storage::apply`] honours.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True after a failed write or sync; every later write fails with
    /// [`StorageError::Poisoned`] until the broker restarts.
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// A handle for [`SyncHandle::sync`] on another thread. Shares the poison flag.
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            db: self.db.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Writes `batch` atomically with OS-buffer durability (as [`Durability::Process`])
    /// whatever the configured mode: when it returns `Ok` the batch is visible to reads and
    /// survives `kill -9`; it survives power loss once a [`SyncHandle::sync`] started after
    /// this call returned `Ok`.
    pub fn apply_unsynced(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.commit(batch, Some(PersistMode::Buffer))
    }

    /// Bytes held in memtables (active and sealed) across the database. Writes stall
    /// (fjall sleeps the caller) when flushes fall behind; watch this and
    /// [`FjallStorage::outstanding_flushes`] to shed load before that.
    pub fn write_buffer_size(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// Memtable flushes queued but not finished.
    pub fn outstanding_flushes(&self) -> usize {
        self.db.outstanding_flushes()
    }

    /// Bytes on disk (journals and tables).
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        self.db.disk_space().map_err(|source| {
            FjallError::Engine {
                operation: "disk space query",
                source,
            }
            .into()
        })
    }

    fn keyspace(&self, keyspace: Keyspace) -> &fjall::Keyspace {
        match keyspace {
            Keyspace::Queues => &self.queues,
            Keyspace::Messages => &self.messages,
            Keyspace::Bodies => &self.bodies,
            Keyspace::Leases => &self.leases,
            Keyspace::Config => &self.config,
            Keyspace::Meta => &self.meta,
        }
    }

    fn commit(
        &mut self,
        batch: &WriteBatch,
        mode: Option<PersistMode>,
    ) -> Result<(), StorageError> {
        if self.shared.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        validate(batch)?;
        if batch.is_empty() {
            return Ok(());
        }
        // `with_capacity` starts with no durability (unlike `db.batch()`), so the mode is
        // always set explicitly here.
        let mut fjall_batch =
            OwnedWriteBatch::with_capacity(self.db.clone(), batch.len()).durability(mode);
        for op in batch.ops() {
            match op {
                WriteOp::Put {
                    keyspace,
                    key,
                    value,
                } => fjall_batch.insert(self.keyspace(*keyspace), key.as_slice(), value.as_slice()),
                WriteOp::Delete { keyspace, key } => {
                    fjall_batch.remove(self.keyspace(*keyspace), key.as_slice());
                }
            }
        }
        fjall_batch
            .commit()
            .map_err(|error| self.shared.write_failed("batch commit", error))
    }

    fn scan(
        &self,
        iter: fjall::Iter,
        visit: &mut Visit<'_>,
        operation: &'static str,
    ) -> Result<(), StorageError> {
        for guard in iter {
            let (key, value) = guard
                .into_inner()
                .map_err(|source| read_error(operation, source))?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

impl Storage for FjallStorage {
    fn apply(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.commit(batch, self.durability.persist_mode())
    }

    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Ok(None);
        }
        self.keyspace(keyspace)
            .get(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|source| read_error("point read", source))
    }

    fn scan_prefix(
        &self,
        keyspace: Keyspace,
        prefix: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError> {
        self.scan(self.keyspace(keyspace).prefix(prefix), visit, "prefix scan")
    }

    fn scan_range(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError> {
        if start >= end {
            return Ok(());
        }
        self.scan(
            self.keyspace(keyspace).range(start..end),
            visit,
            "range scan",
        )
    }
}

/// Rejects what fjall would panic on, before anything is written.
fn validate(batch: &WriteBatch) -> Result<(), FjallError> {
    for op in batch.ops() {
        let (keyspace, key, value_len) = match op {
            WriteOp::Put {
                keyspace,
                key,
                value,
            } => (*keyspace, key, value.len()),
            WriteOp::Delete { keyspace, key } => (*keyspace, key, 0),
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(FjallError::InvalidKey {
                keyspace,
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        if u32::try_from(value_len).is_err() {
            return Err(FjallError::ValueTooLarge {
                keyspace,
                len: value_len,
            });
        }
    }
    Ok(())
}

fn open_error(path: &Path, source: fjall::Error) -> StorageError {
    let path = path.to_path_buf();
    match source {
        fjall::Error::Locked => FjallError::Locked { path },
        source => FjallError::Open { path, source },
    }
    .into()
}

fn read_error(operation: &'static str, source: fjall::Error) -> StorageError {
    FjallError::Engine { operation, source }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_put(key: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Meta, key.to_vec(), b"v".to_vec());
        batch
    }

    #[test]
    fn a_failed_sync_poisons_the_storage() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FjallStorage::open(dir.path(), FjallOptions::default()).unwrap();
        let handle = store.sync_handle();
        store.apply_unsynced(&one_put(b"a")).unwrap();
        handle.sync().unwrap();
        handle.shared.fail_next_sync.store(true, Ordering::Release);
        let error = handle.sync().unwrap_err();
        assert!(matches!(error, StorageError::Backend(_)), "{error:?}");
        assert!(store.is_poisoned());
        assert!(handle.is_poisoned());
        assert!(matches!(
            store.apply(&one_put(b"b")),
            Err(StorageError::Poisoned)
        ));
        assert!(matches!(
            store.apply_unsynced(&one_put(b"b")),
            Err(StorageError::Poisoned)
        ));
        assert!(matches!(handle.sync(), Err(StorageError::Poisoned)));
        // Reads still work and nothing was damaged.
        assert_eq!(
            store.get(Keyspace::Meta, b"a").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(store.get(Keyspace::Meta, b"b").unwrap(), None);
    }

    #[test]
    fn durability_parses_and_displays() {
        for mode in [Durability::None, Durability::Process, Durability::Fsync] {
            assert_eq!(mode.as_str().parse::<Durability>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        let error = "Fsync".parse::<Durability>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid storage durability \"Fsync\": expected one of \"none\", \"process\", \"fsync\""
        );
        assert_eq!(Durability::default(), Durability::Process);
    }
}
