//! An in-memory [`Storage`] for tests and the deterministic simulation.
//!
//! It is a real implementation of the contract (atomic batches, ordered scans), so a shard
//! recovered from a clone of it is exactly a shard recovered after a crash that lost nothing
//! committed. A crash that loses uncommitted writes is simulated by dropping the shard before
//! its pending batch is applied.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Keyspace, Storage, StorageError, Visit, WriteBatch, WriteOp};

/// Ordered maps, one per keyspace. `Clone` gives a crash-consistent copy.
///
/// Reads are counted per keyspace ([`MemoryStorage::reads`]) so tests can check what a code
/// path reads (recovery must not read message bodies), and point reads can be made to fail
/// ([`MemoryStorage::fail_gets`]) to test the read-failure path.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    keyspaces: BTreeMap<Keyspace, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// When set, the next `apply` fails (and poisons), to test the failure path.
    fail_next_apply: bool,
    poisoned: bool,
    /// Point reads of this keyspace fail while `failing_gets` is above zero.
    failing_keyspace: Option<Keyspace>,
    failing_gets: Cell<u64>,
    reads: Cell<[u64; Keyspace::ALL.len()]>,
}

/// Index of a keyspace in the read counters.
fn slot(keyspace: Keyspace) -> usize {
    Keyspace::ALL
        .iter()
        .position(|k| *k == keyspace)
        .unwrap_or(0)
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Makes the next [`Storage::apply`] fail, after which the store stays poisoned.
    pub fn fail_next_apply(&mut self) {
        self.fail_next_apply = true;
    }

    /// Number of entries in one keyspace.
    pub fn len(&self, keyspace: Keyspace) -> usize {
        self.keyspaces.get(&keyspace).map_or(0, BTreeMap::len)
    }

    /// Makes the next `count` point reads ([`Storage::get`]) of `keyspace` fail with a
    /// backend error (`u64::MAX`: until [`MemoryStorage::heal_gets`]).
    pub fn fail_gets(&mut self, keyspace: Keyspace, count: u64) {
        self.failing_keyspace = Some(keyspace);
        self.failing_gets.set(count);
    }

    /// Stops injected read failures.
    pub fn heal_gets(&mut self) {
        self.failing_keyspace = None;
        self.failing_gets.set(0);
    }

    /// Records read from `keyspace` since creation (or the last [`MemoryStorage::reset_reads`]):
    /// one per point read and one per entry a scan visited.
    pub fn reads(&self, keyspace: Keyspace) -> u64 {
        self.reads.get().get(slot(keyspace)).copied().unwrap_or(0)
    }

    /// Sets every read counter to zero.
    pub fn reset_reads(&self) {
        self.reads.set([0; Keyspace::ALL.len()]);
    }

    fn count_read(&self, keyspace: Keyspace) {
        let mut reads = self.reads.get();
        if let Some(n) = reads.get_mut(slot(keyspace)) {
            *n += 1;
        }
        self.reads.set(reads);
    }

    /// True when every keyspace is empty.
    pub fn is_empty(&self) -> bool {
        self.keyspaces.values().all(BTreeMap::is_empty)
    }
}

impl Storage for MemoryStorage {
    fn apply(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if self.fail_next_apply {
            self.fail_next_apply = false;
            self.poisoned = true;
            return Err(StorageError::Backend("injected write failure".into()));
        }
        for op in batch.ops() {
            match op {
                WriteOp::Put {
                    keyspace,
                    key,
                    value,
                } => {
                    self.keyspaces
                        .entry(*keyspace)
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                WriteOp::Delete { keyspace, key } => {
                    if let Some(map) = self.keyspaces.get_mut(keyspace) {
                        map.remove(key);
                    }
                }
            }
        }
        Ok(())
    }

    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.count_read(keyspace);
        if self.failing_keyspace == Some(keyspace) && self.failing_gets.get() > 0 {
            self.failing_gets
                .set(self.failing_gets.get().saturating_sub(1));
            return Err(StorageError::Backend("injected read failure".into()));
        }
        Ok(self
            .keyspaces
            .get(&keyspace)
            .and_then(|map| map.get(key).cloned()))
    }

    fn scan_prefix(
        &self,
        keyspace: Keyspace,
        prefix: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError> {
        let Some(map) = self.keyspaces.get(&keyspace) else {
            return Ok(());
        };
        let range = map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded));
        for (key, value) in range {
            if !key.starts_with(prefix) {
                break;
            }
            self.count_read(keyspace);
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }

    fn scan_range(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: &[u8],
        visit: &mut Visit<'_>,
    ) -> Result<(), StorageError> {
        let Some(map) = self.keyspaces.get(&keyspace) else {
            return Ok(());
        };
        if start >= end {
            return Ok(());
        }
        let range = map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
        for (key, value) in range {
            self.count_read(keyspace);
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_ordered_and_bounded() {
        let mut store = MemoryStorage::new();
        let mut batch = WriteBatch::new();
        for key in [
            b"b2".to_vec(),
            b"a1".to_vec(),
            b"b1".to_vec(),
            b"c1".to_vec(),
        ] {
            batch.put(Keyspace::Messages, key, vec![1]);
        }
        store.apply(&batch).unwrap();
        let mut seen = Vec::new();
        store
            .scan_prefix(Keyspace::Messages, b"b", &mut |k, _| {
                seen.push(k.to_vec());
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, vec![b"b1".to_vec(), b"b2".to_vec()]);
        seen.clear();
        store
            .scan_range(Keyspace::Messages, b"a1", b"b2", &mut |k, _| {
                seen.push(k.to_vec());
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, vec![b"a1".to_vec(), b"b1".to_vec()]);
    }

    #[test]
    fn a_failed_apply_poisons_and_changes_nothing() {
        let mut store = MemoryStorage::new();
        store.fail_next_apply();
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Config, b"k".to_vec(), b"v".to_vec());
        assert!(store.apply(&batch).is_err());
        assert!(store.is_empty());
        assert!(matches!(store.apply(&batch), Err(StorageError::Poisoned)));
    }
}
