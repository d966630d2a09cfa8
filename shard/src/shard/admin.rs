//! Admin operations of a shard: create and delete queues, redrive, stats, queue listing,
//! runtime config, and inspection.

use crate::command::{
    DeletedQueue, KeyStats, MessageState, MessageView, QueueDump, QueueSpec, QueueStats,
    QueueSummary, ThrottleStats,
};
use crate::config::{self};
use crate::error::{ConfigError, CreateQueueError, DeleteQueueError, RedriveError, StatsError};
use crate::hooks::HookContext;
use crate::ids::QueueId;
use crate::limits::{
    DLQ_SUFFIX, QUEUE_NAME_BYTES_MAX, STATS_KEYS_MAX, VISIBILITY_TIMEOUT_MS_DEFAULT,
    VISIBILITY_TIMEOUT_MS_MAX,
};
use crate::message::QueueRecord;
use crate::queue::{Queue, SlotState};
use crate::storage::keys::{META_NEXT_QUEUE_NO, body_key, config_key, message_key, queue_key};
use crate::storage::{Keyspace, Storage};
use crate::time::Time;

use super::Shard;

fn check_name(name: &str) -> Result<(), CreateQueueError> {
    let invalid = |reason: &str| CreateQueueError::InvalidName {
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == DLQ_SUFFIX {
        return Err(invalid(
            "a dead-letter queue needs a parent name before .dlq",
        ));
    }
    let room = if name.ends_with(DLQ_SUFFIX) {
        0
    } else {
        DLQ_SUFFIX.len()
    };
    if name.len() + room > QUEUE_NAME_BYTES_MAX {
        return Err(invalid(&format!(
            "the name is {} bytes; with its .dlq suffix it must fit {QUEUE_NAME_BYTES_MAX}",
            name.len()
        )));
    }
    Ok(())
}

impl<S: Storage> Shard<S> {
    /// Creates a queue and, unless its name ends in `.dlq`, its dead-letter queue
    /// `<name>.dlq` (if absent). Scripts are compiled by the hooks first.
    pub fn create_queue(&mut self, now: Time, spec: QueueSpec) -> Result<(), CreateQueueError> {
        self.advance(now);
        check_name(&spec.name)?;
        let id = QueueId::new(&spec.name);
        if self.by_name.contains_key(spec.name.as_str()) {
            return Err(CreateQueueError::AlreadyExists(id));
        }
        let visibility_timeout_ms = match spec.visibility_timeout_ms {
            0 => VISIBILITY_TIMEOUT_MS_DEFAULT,
            ms if ms > VISIBILITY_TIMEOUT_MS_MAX => {
                return Err(CreateQueueError::VisibilityTimeoutTooLong {
                    requested_ms: ms,
                    max_ms: VISIBILITY_TIMEOUT_MS_MAX,
                });
            }
            ms => ms,
        };
        self.writable()?;
        if let Err(err) = self.hooks.compile(
            HookContext {
                config: &self.config,
            },
            &id,
            &spec.scripts,
        ) {
            self.hooks.forget(&id);
            return Err(err.into());
        }
        let dlq = (!id.is_dlq()).then(|| QueueId::new(&id.dlq_name()));
        self.add_queue(
            QueueRecord {
                queue_no: 0,
                visibility_timeout_ms,
                scripts: spec.scripts,
            },
            id,
        );
        if let Some(dlq) = dlq
            && !self.by_name.contains_key(dlq.as_str())
        {
            self.add_queue(
                QueueRecord {
                    queue_no: 0,
                    visibility_timeout_ms,
                    scripts: Default::default(),
                },
                dlq,
            );
        }
        Ok(())
    }

    /// Adds a queue with a fresh number and writes its definition.
    fn add_queue(&mut self, mut record: QueueRecord, id: QueueId) {
        record.queue_no = self.next_queue_no;
        self.next_queue_no += 1;
        self.writes.put(
            Keyspace::Meta,
            META_NEXT_QUEUE_NO.to_vec(),
            self.next_queue_no.to_be_bytes().to_vec(),
        );
        self.writes
            .put(Keyspace::Queues, queue_key(id.as_str()), record.encode());
        self.install_queue(id, record);
    }

    /// Puts a queue into the in-memory tables (creation and recovery).
    pub(crate) fn install_queue(
        &mut self,
        id: QueueId,
        record: QueueRecord,
    ) -> crate::slab::SlabRef {
        let dlq_name = (!id.is_dlq()).then(|| QueueId::new(&id.dlq_name()));
        let queue = Queue::new(
            id.clone(),
            record.queue_no,
            record.visibility_timeout_ms,
            record.scripts,
            dlq_name,
        );
        let r = self.queues.insert(queue);
        self.by_name.insert(id, r);
        r
    }

    /// Deletes a queue with its messages and leases, and its automatic `<name>.dlq`.
    /// Its subscriptions end; they are returned so the server can tell their connections.
    pub fn delete_queue(
        &mut self,
        now: Time,
        name: &str,
    ) -> Result<DeletedQueue, DeleteQueueError> {
        self.advance(now);
        let queue_ref = self.lookup(name).ok_or(DeleteQueueError::QueueNotFound)?;
        self.writable()?;
        let mut deleted = DeletedQueue::default();
        let dlq_ref = self
            .queues
            .get(queue_ref)
            .and_then(|q| q.dlq_name.as_ref())
            .and_then(|dlq| self.lookup(dlq.as_str()));
        for r in [Some(queue_ref), dlq_ref].into_iter().flatten() {
            let Some(q) = self.queues.remove(r) else {
                continue;
            };
            for (_, slot) in q.messages.iter() {
                let key = message_key(q.no, slot.order);
                if matches!(slot.state, SlotState::Leased(_)) {
                    self.writes.delete(Keyspace::Leases, key.clone());
                }
                self.writes.delete(Keyspace::Messages, key);
                self.writes
                    .delete(Keyspace::Bodies, body_key(slot.message.body_seq).to_vec());
                if let Some(body) = &slot.body {
                    self.cache.release(body);
                }
            }
            self.writes
                .delete(Keyspace::Queues, queue_key(q.id.as_str()));
            for (consumer, c) in &q.consumers {
                self.consumers.remove(consumer);
                if let Some(state) = self.connections.get_mut(&c.connection) {
                    state.consumers.retain(|x| x != consumer);
                }
                deleted.dropped_consumers.push((*consumer, c.connection));
            }
            self.hooks.forget(&q.id);
            self.by_name.remove(q.id.as_str());
            deleted.queues.push(q.id);
        }
        deleted.dropped_consumers.sort();
        Ok(deleted)
    }

    /// Moves up to `count` (0 = all) pending messages of dead-letter queue `dlq` back to its
    /// parent, oldest first (DLQ arrival order), attempts reset to 0; leased ones are skipped.
    /// Id, headers, payload, fairness key, weight and throttle keys are kept.
    pub fn redrive(&mut self, now: Time, dlq: &str, count: u64) -> Result<u64, RedriveError> {
        let now = self.advance(now);
        let dlq_id = QueueId::new(dlq);
        let Some(parent) = dlq_id.parent_name() else {
            return Err(RedriveError::NotADlq(dlq_id));
        };
        let dlq_ref = self.lookup(dlq).ok_or(RedriveError::QueueNotFound)?;
        let parent_ref = self
            .lookup(parent)
            .ok_or_else(|| RedriveError::ParentQueueNotFound(QueueId::new(parent)))?;
        self.writable()?;
        let Some(q) = self.queues.get_mut(dlq_ref) else {
            return Err(RedriveError::QueueNotFound);
        };
        let mut selected: Vec<_> = q
            .messages
            .iter()
            .filter(|(_, s)| matches!(s.state, SlotState::Ready | SlotState::Delayed))
            .map(|(r, s)| (s.order, r))
            .collect();
        selected.sort_unstable();
        if count > 0 {
            selected.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        }
        let refs: Vec<_> = selected.iter().map(|(_, r)| *r).collect();
        q.detach_pending(&refs);
        // Fairness keys first: removing a detached message may free its key slot while
        // other detached messages of the same key are still to be moved.
        let keys: Vec<_> = refs.iter().map(|r| q.key_of(*r).cloned()).collect();
        let mut moved = Vec::with_capacity(refs.len());
        for (r, key) in refs.iter().zip(keys) {
            let Some(key) = key else {
                continue;
            };
            if let Some(slot) = q.remove(*r) {
                self.writes
                    .delete(Keyspace::Messages, message_key(q.no, slot.order));
                moved.push((slot.message, key, slot.body));
            }
        }
        let n = moved.len() as u64;
        for (mut message, key, body) in moved {
            message.attempts = 0;
            self.insert_moved(now, parent_ref, message, &key, body);
        }
        if let Some(p) = self.queues.get_mut(parent_ref) {
            p.counters.redriven += n;
        }
        self.rearm(dlq_ref);
        Ok(n)
    }

    /// GetStats of one queue.
    pub fn stats(&self, queue: &str) -> Result<QueueStats, StatsError> {
        let now = self.now;
        let q = self
            .lookup(queue)
            .and_then(|r| self.queues.get(r))
            .ok_or(StatsError::QueueNotFound)?;
        let per_key = q
            .drr
            .ring()
            .take(STATS_KEYS_MAX)
            .filter_map(|idx| q.keys.get_idx(idx))
            .map(|k| KeyStats {
                key: k.key.clone(),
                pending: (k.ready.len() as u64) + u64::from(k.delayed),
                deficit: k.drr.deficit,
                weight: k.drr.weight,
            })
            .collect();
        let per_throttle = self
            .config
            .throttle_limits()
            .map(|(key, limit)| ThrottleStats {
                key: key.to_string(),
                tokens: self.throttle_tokens(key, now).unwrap_or(limit.burst),
                rate_per_second: limit.rate_per_second,
                burst: limit.burst,
            })
            .collect();
        Ok(QueueStats {
            queue: q.id.clone(),
            depth: q.depth() as u64,
            in_flight: q.in_flight() as u64,
            pending: q.pending() as u64,
            delayed: q.delayed() as u64,
            active_fairness_keys: q.drr.active_keys() as u64,
            active_consumers: q.consumers.len() as u32,
            quantum: self.options.quantum,
            leader_node_id: 0,
            replication_count: 0,
            per_key,
            per_throttle,
            visibility_timeout_ms: q.visibility_timeout_ms,
            counters: q.counters,
            drr_rounds: q.drr.rounds_started,
            drr_keys_processed: q.drr.keys_processed,
            storage_poisoned: self.poisoned,
        })
    }

    /// ListQueues: every queue of this shard (dead-letter queues included), by name.
    pub fn list_queues(&self) -> Vec<QueueSummary> {
        let mut rows: Vec<QueueSummary> = self
            .queues
            .iter()
            .map(|(_, q)| QueueSummary {
                name: q.id.clone(),
                depth: q.depth() as u64,
                in_flight: q.in_flight() as u64,
                active_consumers: q.consumers.len() as u32,
                leader_node_id: 0,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// SetConfig: validates (`throttle.<key>` as compat.md says), then stores; an empty value
    /// deletes. A refused value stores nothing.
    pub fn set_config(&mut self, now: Time, key: &str, value: &str) -> Result<(), ConfigError> {
        self.advance(now);
        config::validate(key, value)?;
        self.writable()?;
        if value.is_empty() {
            self.writes.delete(Keyspace::Config, config_key(key));
        } else {
            self.writes
                .put(Keyspace::Config, config_key(key), value.as_bytes().to_vec());
        }
        self.config.apply(key, value);
        self.throttle_config_changed(now, key, value);
        Ok(())
    }

    /// GetConfig: the value, `None` when not set (the wire answers an empty string).
    pub fn get_config(&self, key: &str) -> Option<&str> {
        self.config.get(key)
    }

    /// ListConfig: entries whose key starts with `prefix`, in key order (at most 10,000).
    pub fn list_config(&self, prefix: &str) -> Vec<(String, String)> {
        self.config.list(prefix)
    }

    /// The shard's runtime config (what hooks read).
    pub fn config(&self) -> &config::RuntimeConfig {
        &self.config
    }

    /// Every message of a queue and each key's FIFO (inspection, tests, simulation).
    pub fn inspect_queue(&self, queue: &str) -> Option<QueueDump> {
        let q = self.lookup(queue).and_then(|r| self.queues.get(r))?;
        let mut messages: Vec<MessageView> = q
            .messages
            .iter()
            .map(|(_, s)| MessageView {
                id: s.message.id,
                state: match &s.state {
                    SlotState::Leased(lease) => MessageState::Leased {
                        deadline: lease.deadline,
                        connection: lease.connection,
                    },
                    SlotState::Delayed => MessageState::Delayed,
                    SlotState::Ready | SlotState::Detached => MessageState::Ready,
                },
                attempts: s.message.attempts,
                fairness_key: q
                    .keys
                    .get_idx(s.key)
                    .map_or_else(|| self.default_key.clone(), |k| k.key.clone()),
                order: s.order,
                enqueued_at: s.message.enqueued_at,
            })
            .collect();
        messages.sort_by_key(|m| m.order);
        let mut fifos: Vec<_> = q
            .keys
            .iter()
            .filter(|(_, k)| !k.ready.is_empty())
            .map(|(_, k)| {
                let ids = k
                    .ready
                    .iter_ordered()
                    .into_iter()
                    .filter_map(|r| q.messages.get(r).map(|s| s.message.id))
                    .collect();
                (k.key.clone(), ids)
            })
            .collect();
        fifos.sort_by(|a, b| a.0.cmp(&b.0));
        Some(QueueDump { messages, fifos })
    }

    /// A queue's script sources (for the script host, e.g. to recompile).
    pub fn queue_scripts(&self, queue: &str) -> Option<&crate::hooks::QueueScripts> {
        self.lookup(queue)
            .and_then(|r| self.queues.get(r))
            .map(|q| &q.scripts)
    }

    /// Names of every queue of this shard.
    pub fn queue_names(&self) -> Vec<QueueId> {
        let mut names: Vec<_> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}
