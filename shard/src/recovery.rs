//! Recovery: rebuilds a [`Shard`] from its [`Storage`]: queue definitions (hooks recompiled),
//! runtime config, every message in pending order (ready, delayed or leased), attempts, DLQ
//! contents and lease deadlines.
//!
//! Bounded memory: recovery streams each queue's small index records (`messages` keyspace)
//! and builds index entries only; it never reads the `bodies` keyspace, so payloads and
//! headers stay on disk until delivery (the body cache starts empty). Fairness keys and
//! throttle-key lists are shared, not allocated per message.
//!
//! Connections do not survive a restart, so a recovered lease has no holder: nobody can ack
//! it, and it expires at its stored deadline as a failed attempt. DRR state starts fresh; keys
//! join the ring in the order of their first deliverable message. A key's weight is the weight
//! of its most recently enqueued surviving message.

use std::collections::HashMap;
use std::sync::Arc;

use crate::command::ShardOptions;
use crate::error::RecoveryError;
use crate::hooks::{HookContext, Hooks};
use crate::ids::{QueueId, ThrottleKey};
use crate::message::{LeaseRecord, Message, QueueRecord};
use crate::shard::Shard;
use crate::storage::keys::{
    FORMAT_VERSION, META_FORMAT_VERSION, META_NEXT_QUEUE_NO, PendingOrder, parse_message_key,
    queue_prefix,
};
use crate::storage::{HexKey, Keyspace, Storage, StorageError};
use crate::time::Time;

/// Something recovery skipped or could not restore fully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryWarning {
    /// Where.
    pub keyspace: Keyspace,
    /// The key, hex-encoded.
    pub key: HexKey,
    /// What happened.
    pub reason: String,
}

impl std::fmt::Display for RecoveryWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}: {}", self.keyspace, self.key, self.reason)
    }
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Queues restored.
    pub queues: usize,
    /// Messages restored.
    pub messages: usize,
    /// Leases restored.
    pub leases: usize,
    /// Skipped records and other problems.
    pub warnings: Vec<RecoveryWarning>,
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn scan<S: Storage>(
    storage: &S,
    keyspace: Keyspace,
    prefix: &[u8],
) -> Result<Entries, StorageError> {
    let mut entries = Vec::new();
    storage.scan_prefix(keyspace, prefix, &mut |key, value| {
        entries.push((key.to_vec(), value.to_vec()));
        Ok(true)
    })?;
    Ok(entries)
}

struct Problems<'a> {
    skip_corrupt: bool,
    report: &'a mut RecoveryReport,
}

impl Problems<'_> {
    /// A corrupt record: an error, or a warning when `skip_corrupt` is set.
    fn corrupt(
        &mut self,
        keyspace: Keyspace,
        key: &[u8],
        reason: String,
    ) -> Result<(), RecoveryError> {
        if self.skip_corrupt {
            self.report.warnings.push(RecoveryWarning {
                keyspace,
                key: HexKey(key.to_vec()),
                reason,
            });
            Ok(())
        } else {
            Err(RecoveryError::Storage(StorageError::Corrupt {
                keyspace,
                key: HexKey(key.to_vec()),
                reason,
            }))
        }
    }

    fn warn(&mut self, keyspace: Keyspace, key: &[u8], reason: String) {
        self.report.warnings.push(RecoveryWarning {
            keyspace,
            key: HexKey(key.to_vec()),
            reason,
        });
    }
}

fn read_u64(bytes: &[u8]) -> Result<u64, String> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))?;
    Ok(u64::from_be_bytes(array))
}

impl<S: Storage> Shard<S> {
    /// Opens a shard over `storage`, rebuilding everything it holds (an empty storage gives an
    /// empty shard). Leases already expired at `now` go through the failure path at once; the
    /// writes this produces are pending until the next [`Shard::commit`].
    pub fn open(
        storage: S,
        options: ShardOptions,
        hooks: Box<dyn Hooks>,
        now: Time,
    ) -> Result<(Shard<S>, RecoveryReport), RecoveryError> {
        let mut shard = Shard::new(storage, options, hooks);
        let mut report = RecoveryReport::default();
        let mut problems = Problems {
            skip_corrupt: shard.options.skip_corrupt,
            report: &mut report,
        };
        shard.now = now;
        if let Some(version) = shard.storage.get(Keyspace::Meta, META_FORMAT_VERSION)? {
            match read_u64(&version) {
                Ok(FORMAT_VERSION) => shard.writes.clear(),
                Ok(found) => {
                    return Err(RecoveryError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Err(reason) => {
                    return Err(RecoveryError::Storage(StorageError::Corrupt {
                        keyspace: Keyspace::Meta,
                        key: HexKey(META_FORMAT_VERSION.to_vec()),
                        reason,
                    }));
                }
            }
        }
        if let Some(bytes) = shard.storage.get(Keyspace::Meta, META_NEXT_QUEUE_NO)? {
            match read_u64(&bytes) {
                Ok(next) => shard.next_queue_no = next,
                Err(reason) => problems.corrupt(Keyspace::Meta, META_NEXT_QUEUE_NO, reason)?,
            }
        }
        for (key, value) in scan(&shard.storage, Keyspace::Config, b"")? {
            match (String::from_utf8(key.clone()), String::from_utf8(value)) {
                (Ok(k), Ok(v)) => shard.config.apply(&k, &v),
                _ => problems.corrupt(Keyspace::Config, &key, "not UTF-8".to_string())?,
            }
        }
        let mut queues = Vec::new();
        for (key, value) in scan(&shard.storage, Keyspace::Queues, b"")? {
            let name = match std::str::from_utf8(&key) {
                Ok(name) => name.to_string(),
                Err(_) => {
                    problems.corrupt(
                        Keyspace::Queues,
                        &key,
                        "queue name is not UTF-8".to_string(),
                    )?;
                    continue;
                }
            };
            match QueueRecord::decode(&value) {
                Ok(record) => queues.push((name, record)),
                Err(reason) => problems.corrupt(Keyspace::Queues, &key, reason)?,
            }
        }
        let mut max_seq = None;
        for (name, record) in queues {
            let id = QueueId::new(&name);
            shard.next_queue_no = shard.next_queue_no.max(record.queue_no + 1);
            if let Err(err) = shard.hooks.compile(
                HookContext {
                    config: &shard.config,
                },
                &id,
                &record.scripts,
            ) {
                problems.warn(
                    Keyspace::Queues,
                    name.as_bytes(),
                    format!("hook scripts failed to compile, queue runs without them: {err}"),
                );
            }
            let queue_no = record.queue_no;
            let queue_ref = shard.install_queue(id, record);
            report_queue(
                &mut shard,
                &mut problems,
                queue_ref,
                queue_no,
                now,
                &mut max_seq,
            )?;
            problems.report.queues += 1;
        }
        if let Some(seq) = max_seq {
            shard.next_seq = seq + 1;
        }
        // Buckets start full from the recovered runtime config (design §5).
        shard.sync_throttle(now);
        shard.advance(now);
        Ok((shard, report))
    }
}

/// Shares one `Arc` per distinct throttle-key list while recovery decodes records, so a
/// million messages with the same throttle keys hold one list, not a million.
struct ThrottleInterner {
    none: Arc<[ThrottleKey]>,
    last: Option<(Vec<String>, Arc<[ThrottleKey]>)>,
    known: HashMap<Vec<String>, Arc<[ThrottleKey]>>,
}

impl ThrottleInterner {
    fn intern(&mut self, keys: &[&str]) -> Arc<[ThrottleKey]> {
        if keys.is_empty() {
            return self.none.clone();
        }
        if let Some((text, shared)) = &self.last
            && text.len() == keys.len()
            && text.iter().zip(keys).all(|(a, b)| a == b)
        {
            return shared.clone();
        }
        let text: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        let shared = self
            .known
            .entry(text.clone())
            .or_insert_with(|| keys.iter().map(|k| ThrottleKey::new(k)).collect())
            .clone();
        self.last = Some((text, shared.clone()));
        shared
    }
}

/// Restores one queue's leases and messages. Streams the queue's index records (no payload
/// or header is read: bodies stay in storage until delivery).
fn report_queue<S: Storage>(
    shard: &mut Shard<S>,
    problems: &mut Problems<'_>,
    queue_ref: crate::slab::SlabRef,
    queue_no: u64,
    now: Time,
    max_seq: &mut Option<u64>,
) -> Result<(), RecoveryError> {
    let prefix = queue_prefix(queue_no);
    let mut leases: HashMap<PendingOrder, (Vec<u8>, LeaseRecord)> = HashMap::new();
    for (key, value) in scan(&shard.storage, Keyspace::Leases, &prefix)? {
        let Some((_, order)) = parse_message_key(&key) else {
            problems.corrupt(Keyspace::Leases, &key, "bad lease key".to_string())?;
            continue;
        };
        match LeaseRecord::decode(&value) {
            Ok(lease) => {
                leases.insert(order, (key, lease));
            }
            Err(reason) => problems.corrupt(Keyspace::Leases, &key, reason)?,
        }
    }
    let mut interner = ThrottleInterner {
        none: shard.no_throttle_keys.clone(),
        last: None,
        known: HashMap::new(),
    };
    let storage = &shard.storage;
    let Some(q) = shard.queues.get_mut(queue_ref) else {
        return Ok(());
    };
    let mut newest: HashMap<u32, (Time, u32)> = HashMap::new();
    let mut failed: Option<RecoveryError> = None;
    let mut seen_max = *max_seq;
    let mut restored = (0usize, 0usize);
    storage.scan_prefix(Keyspace::Messages, &prefix, &mut |key, value| {
        let mut check = |problem: Result<(), RecoveryError>| match problem {
            Ok(()) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        };
        let Some((_, order)) = parse_message_key(key) else {
            return Ok(check(problems.corrupt(
                Keyspace::Messages,
                key,
                "bad message key".to_string(),
            )));
        };
        let record = match Message::decode(value, &mut |keys| interner.intern(keys)) {
            Ok(record) => record,
            Err(reason) => return Ok(check(problems.corrupt(Keyspace::Messages, key, reason))),
        };
        let message = record.message;
        let top = order.seq.max(message.body_seq);
        seen_max = Some(seen_max.map_or(top, |m: u64| m.max(top)));
        let weight = message.weight;
        let enqueued_at = message.enqueued_at;
        let key_idx = q.key_for_recovered(record.fairness_key, weight);
        let entry = newest.entry(key_idx).or_insert((enqueued_at, weight));
        if enqueued_at >= entry.0 {
            *entry = (enqueued_at, weight);
        }
        match leases.remove(&order) {
            Some((_, lease)) => {
                let r = q.insert_detached(message, None, key_idx, order);
                q.restore_lease(r, lease.deadline, lease.leased_at);
                restored.1 += 1;
            }
            None => {
                q.insert(message, None, key_idx, order, now);
            }
        }
        restored.0 += 1;
        Ok(true)
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    *max_seq = seen_max;
    problems.report.messages += restored.0;
    problems.report.leases += restored.1;
    for (key_idx, (_, weight)) in newest {
        if let Some(k) = q.keys.get_idx_mut(key_idx) {
            k.drr.weight = weight;
        }
    }
    q.sort_leases();
    let mut orphans: Vec<_> = leases.into_values().map(|(key, _)| key).collect();
    orphans.sort();
    for key in orphans {
        problems.warn(
            Keyspace::Leases,
            &key,
            "lease without a message; removed".to_string(),
        );
        shard.writes.delete(Keyspace::Leases, key);
    }
    shard.rearm(queue_ref);
    Ok(())
}
