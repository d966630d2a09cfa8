//! The message flow of a shard: enqueue, consumers and credit, deliveries, ack, nack, the
//! failure path (nack, expiry, disconnect), and the timers that drive expiry and delays.

use std::sync::Arc;

use crate::cache::BODY_READ_RETRY_MS;
use crate::command::{AckItem, Delivery, EnqueueItem, NackItem};
use crate::error::{AckError, ConsumeError, EnqueueError, NackError};
use crate::hooks::{EnqueueInput, FailureDecision, FailureInput, HookContext};
use crate::ids::{ConnectionId, ConsumerId, FairnessKey, MessageId, ThrottleKey};
use crate::limits::{
    CREDIT_WINDOW_MAX, HEADER_BYTES_MAX, HEADERS_MAX, KEY_BYTES_MAX, RETRY_DELAY_MS_MAX,
    THROTTLE_KEYS_MAX, WEIGHT_MAX, WEIGHT_MIN,
};
use crate::message::{Body, LeaseRecord, Message};
use crate::metrics::Hook;
use crate::queue::SlotState;
use crate::slab::SlabRef;
use crate::storage::keys::{body_key, message_key};
use crate::storage::{Keyspace, Storage};
use crate::time::Time;

use super::Shard;

/// Error text of a failed attempt caused by lease expiry.
pub const EXPIRED_ERROR: &str = "visibility timeout expired";
/// Error text of a failed attempt caused by the connection closing.
pub const DISCONNECTED_ERROR: &str = "consumer disconnected";

/// Clamps a hook's weight to 1..=10,000.
pub fn clamp_weight(weight: i64) -> u32 {
    weight.clamp(i64::from(WEIGHT_MIN), i64::from(WEIGHT_MAX)) as u32
}

/// Truncates a key to [`KEY_BYTES_MAX`] at a character boundary.
fn bounded_key(key: &str) -> &str {
    if key.len() <= KEY_BYTES_MAX {
        return key;
    }
    let mut end = KEY_BYTES_MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key.get(..end).unwrap_or("")
}

impl<S: Storage> Shard<S> {
    /// Enqueues a batch; one result per item, in order. Items are independent: a missing
    /// queue fails only its own item. The writes of the successful items go to the pending
    /// batch (if that commit fails, they must all be answered with a storage error).
    pub fn enqueue(
        &mut self,
        now: Time,
        items: Vec<EnqueueItem>,
    ) -> Vec<Result<MessageId, EnqueueError>> {
        let now = self.advance(now);
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(self.enqueue_one(now, item));
        }
        results
    }

    fn enqueue_one(&mut self, now: Time, item: EnqueueItem) -> Result<MessageId, EnqueueError> {
        self.writable()?;
        let queue_ref = self
            .lookup(&item.queue)
            .ok_or(EnqueueError::QueueNotFound)?;
        if item.headers.len() > HEADERS_MAX {
            return Err(EnqueueError::TooManyHeaders {
                count: item.headers.len(),
                max: HEADERS_MAX,
            });
        }
        let header_bytes: usize = item.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if header_bytes > HEADER_BYTES_MAX {
            return Err(EnqueueError::HeadersTooLarge {
                bytes: header_bytes,
                max: HEADER_BYTES_MAX,
            });
        }
        if item.payload.len() > self.options.payload_bytes_max {
            return Err(EnqueueError::PayloadTooLarge {
                size: item.payload.len(),
                max: self.options.payload_bytes_max,
            });
        }
        let id = self.ids.message_id(now);
        let order = self.next_order(now);
        let Some(queue) = self.queues.get_mut(queue_ref) else {
            return Err(EnqueueError::QueueNotFound);
        };
        let decision = self.hooks.on_enqueue(
            HookContext {
                config: &self.config,
            },
            &EnqueueInput {
                queue: &queue.id,
                headers: &item.headers,
                payload_size: item.payload.len(),
            },
        );
        queue
            .metrics
            .record_hook(Hook::OnEnqueue, self.hooks.last_run());
        let weight = clamp_weight(decision.weight);
        let key_text = decision
            .fairness_key
            .as_deref()
            .map_or(FairnessKey::DEFAULT, bounded_key);
        let default_key = &self.default_key;
        let key_idx = queue.key_for(
            key_text,
            || {
                if key_text == FairnessKey::DEFAULT {
                    default_key.clone()
                } else {
                    FairnessKey::new(key_text)
                }
            },
            weight,
        );
        let throttle_keys: Arc<[ThrottleKey]> = if decision.throttle_keys.is_empty() {
            self.no_throttle_keys.clone()
        } else {
            decision
                .throttle_keys
                .iter()
                .take(THROTTLE_KEYS_MAX)
                .map(|k| ThrottleKey::new(bounded_key(k)))
                .collect()
        };
        let message = Message {
            id,
            body_seq: order.seq,
            throttle_keys,
            enqueued_at: now,
            weight,
            attempts: 0,
            payload_len: u32::try_from(item.payload.len()).unwrap_or(u32::MAX),
            header_count: item.headers.len() as u32,
        };
        let record = match queue.keys.get_idx(key_idx) {
            Some(k) => message.encode(&k.key),
            None => message.encode(default_key),
        };
        self.writes
            .put(Keyspace::Messages, message_key(queue.no, order), record);
        self.writes.put(
            Keyspace::Bodies,
            body_key(order.seq).to_vec(),
            Body::encode(&item.headers, &item.payload),
        );
        let headers: Arc<[(String, String)]> = if item.headers.is_empty() {
            self.no_headers.clone()
        } else {
            item.headers.into()
        };
        let body = self.cache.admit(Body {
            headers,
            payload: item.payload,
        });
        queue.insert(message, body, key_idx, order, now);
        queue.counters.enqueued += 1;
        self.wake(queue_ref);
        Ok(id)
    }

    /// Registers a consumer (subscription) of `queue` on `connection` with a credit window
    /// (unacked deliveries it may hold; clamped to 1..=[`CREDIT_WINDOW_MAX`]).
    pub fn register_consumer(
        &mut self,
        now: Time,
        queue: &str,
        connection: ConnectionId,
        credit_window: u32,
    ) -> Result<ConsumerId, ConsumeError> {
        let now = self.advance(now);
        let queue_ref = self.lookup(queue).ok_or(ConsumeError::QueueNotFound)?;
        let id = self.ids.consumer_id(now);
        let Some(q) = self.queues.get_mut(queue_ref) else {
            return Err(ConsumeError::QueueNotFound);
        };
        q.add_consumer(id, connection, credit_window.clamp(1, CREDIT_WINDOW_MAX));
        self.consumers.insert(id, queue_ref);
        let state = self.connections.entry(connection).or_default();
        state.consumers.push(id);
        if !state.queues.contains(&queue_ref) {
            state.queues.push(queue_ref);
        }
        self.wake(queue_ref);
        Ok(id)
    }

    /// CancelConsume: stops new deliveries to `consumer`. Its leases stay valid (ackable on
    /// the same connection) until acked, nacked, expired or the connection closes.
    /// Returns false when the consumer was unknown.
    pub fn unregister_consumer(&mut self, now: Time, consumer: ConsumerId) -> bool {
        self.advance(now);
        let Some(queue_ref) = self.consumers.remove(&consumer) else {
            return false;
        };
        let Some(q) = self.queues.get_mut(queue_ref) else {
            return false;
        };
        let connection = q.consumers.get(&consumer).map(|c| c.connection);
        q.remove_consumer(consumer);
        if let Some(state) = connection.and_then(|c| self.connections.get_mut(&c)) {
            state.consumers.retain(|c| *c != consumer);
        }
        true
    }

    /// The connection closed: unregisters its consumers and releases all its leases at once,
    /// each a failed attempt ("consumer disconnected"). Returns the number of leases released.
    pub fn release_connection(&mut self, now: Time, connection: ConnectionId) -> usize {
        let now = self.advance(now);
        let Some(state) = self.connections.remove(&connection) else {
            return 0;
        };
        for consumer in &state.consumers {
            if let Some(queue_ref) = self.consumers.remove(consumer)
                && let Some(q) = self.queues.get_mut(queue_ref)
            {
                q.remove_consumer(*consumer);
            }
        }
        let mut released = 0;
        for queue_ref in state.queues {
            let Some(q) = self.queues.get(queue_ref) else {
                continue;
            };
            for slot in q.leases_of(connection) {
                if let Some(q) = self.queues.get_mut(queue_ref) {
                    q.counters.released += 1;
                }
                self.fail_leased(now, queue_ref, slot, DISCONNECTED_ERROR);
                released += 1;
            }
        }
        released
    }

    /// Hands out ready messages to consumers with credit, round-robin among a queue's
    /// consumers and DRR among its fairness keys; at most `limit` deliveries per call.
    pub fn poll_deliveries(&mut self, now: Time, limit: usize, out: &mut Vec<Delivery>) -> usize {
        let now = self.advance(now);
        if self.poisoned {
            return 0;
        }
        let mut delivered = 0;
        while delivered < limit {
            let Some(queue_ref) = self.wake.pop_front() else {
                break;
            };
            if let Some(q) = self.queues.get_mut(queue_ref) {
                q.in_wake = false;
            }
            delivered += self.deliver_from(now, queue_ref, None, limit - delivered, out);
            self.wake(queue_ref);
        }
        delivered
    }

    /// Deliveries for one consumer only, at most `max` (and its credit).
    pub fn next_deliveries(
        &mut self,
        now: Time,
        consumer: ConsumerId,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let now = self.advance(now);
        if self.poisoned {
            return 0;
        }
        let Some(queue_ref) = self.consumers.get(&consumer).copied() else {
            return 0;
        };
        self.deliver_from(now, queue_ref, Some(consumer), max, out)
    }

    fn deliver_from(
        &mut self,
        now: Time,
        queue_ref: SlabRef,
        only: Option<ConsumerId>,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let quantum = self.options.quantum;
        let Some(q) = self.queues.get_mut(queue_ref) else {
            return 0;
        };
        if q.read_retry_at.is_some_and(|at| at > now) {
            return 0;
        }
        let mut delivered = 0;
        let mut retry_at = None;
        while delivered < max {
            let (consumer, connection) = match only {
                Some(id) => match (q.credit_of(id), q.consumers.get(&id)) {
                    (Some(credit), Some(c)) if credit > 0 => (id, c.connection),
                    _ => break,
                },
                None => match q.front_consumer() {
                    Some(front) => front,
                    None => break,
                },
            };
            // The body first: if it cannot be read, nothing has changed yet and the message
            // stays at the head of its key's FIFO.
            let Some(next) = q.peek_next(quantum, now, &mut self.throttle) else {
                break;
            };
            let Some(slot) = q.messages.get_mut(next) else {
                break;
            };
            let body = match slot.body.take() {
                Some(body) => self.cache.hit(body),
                None => {
                    match self
                        .cache
                        .load(&self.storage, slot.message.body_seq, &self.no_headers)
                    {
                        Ok(body) => body,
                        Err(reason) => {
                            let id = slot.message.id;
                            q.counters.body_read_errors += 1;
                            self.cache.report(format!(
                            "queue {}: body of message {id} could not be read ({reason}); it stays pending, deliveries retry in {BODY_READ_RETRY_MS} ms",
                            q.id
                        ));
                            let at = now.plus_millis(BODY_READ_RETRY_MS);
                            q.read_retry_at = Some(at);
                            retry_at = Some(at);
                            break;
                        }
                    }
                }
            };
            let Some(slot_ref) = q.take_and_lease(quantum, now, connection, consumer, next) else {
                break;
            };
            debug_assert_eq!(slot_ref, next);
            if only.is_some() {
                q.charge_consumer(consumer, true);
            } else {
                q.charge_front_consumer();
            }
            let Some(slot) = q.messages.get(slot_ref) else {
                break;
            };
            let SlotState::Leased(lease) = &slot.state else {
                break;
            };
            let record = LeaseRecord {
                deadline: lease.deadline,
                leased_at: now,
                connection,
            };
            self.writes.put(
                Keyspace::Leases,
                message_key(q.no, slot.order),
                record.encode(),
            );
            let m = &slot.message;
            self.throttle.take(&m.throttle_keys, now);
            let fairness_key = match q.keys.get_idx(slot.key) {
                Some(k) => k.key.clone(),
                None => self.default_key.clone(),
            };
            out.push(Delivery {
                consumer,
                connection,
                queue: q.id.clone(),
                message_id: m.id,
                headers: body.headers,
                payload: body.payload,
                fairness_key,
                weight: m.weight,
                throttle_keys: m.throttle_keys.clone(),
                attempts: m.attempts,
                enqueued_at_ms: m.enqueued_at.as_millis(),
                leased_at_ms: now.as_millis(),
            });
            q.counters.leased += 1;
            q.record_delivery(slot_ref, now);
            delivered += 1;
        }
        if let Some(at) = retry_at {
            self.arm(queue_ref, at);
        }
        // Throttle-parked keys need the timer at their refill instant.
        self.rearm(queue_ref);
        if self.queues.get(queue_ref).is_none() {
            return delivered;
        }
        if delivered > 0
            && let Some(connection) = out.last().map(|d| d.connection)
        {
            let state = self.connections.entry(connection).or_default();
            if !state.queues.contains(&queue_ref) {
                state.queues.push(queue_ref);
            }
        }
        delivered
    }

    /// Checks that `connection` holds the current lease of `id` in `queue`.
    fn held_lease(
        &self,
        queue: &str,
        id: MessageId,
        connection: ConnectionId,
    ) -> Option<(SlabRef, SlabRef)> {
        let queue_ref = self.lookup(queue)?;
        let q = self.queues.get(queue_ref)?;
        let slot = q.find(id)?;
        let lease = q.lease_of(slot)?;
        (lease.connection == Some(connection)).then_some((queue_ref, slot))
    }

    /// Acks a batch from `connection`; one result per item. Only the connection holding the
    /// current lease may ack; anything else is `MessageNotFound` and changes nothing.
    pub fn ack(
        &mut self,
        now: Time,
        connection: ConnectionId,
        items: &[AckItem],
    ) -> Vec<Result<(), AckError>> {
        self.advance(now);
        items
            .iter()
            .map(|item| {
                self.writable()?;
                let (queue_ref, slot) = self
                    .held_lease(&item.queue, item.id, connection)
                    .ok_or(AckError::MessageNotFound)?;
                self.complete(queue_ref, slot);
                Ok(())
            })
            .collect()
    }

    fn complete(&mut self, queue_ref: SlabRef, slot: SlabRef) {
        let Some(q) = self.queues.get_mut(queue_ref) else {
            return;
        };
        let Some(lease) = q.end_lease(slot) else {
            return;
        };
        q.return_credit(lease.consumer);
        if let Some(removed) = q.remove(slot) {
            let key = message_key(q.no, removed.order);
            self.writes.delete(Keyspace::Leases, key.clone());
            self.writes.delete(Keyspace::Messages, key);
            self.writes.delete(
                Keyspace::Bodies,
                body_key(removed.message.body_seq).to_vec(),
            );
            if let Some(body) = &removed.body {
                self.cache.release(body);
            }
        }
        q.counters.acked += 1;
        self.wake(queue_ref);
    }

    /// Nacks a batch from `connection`; one result per item. Same lease rule as ack; a
    /// successful nack is a failed attempt through `on_failure`.
    pub fn nack(
        &mut self,
        now: Time,
        connection: ConnectionId,
        items: &[NackItem],
    ) -> Vec<Result<(), NackError>> {
        let now = self.advance(now);
        items
            .iter()
            .map(|item| {
                self.writable()?;
                let (queue_ref, slot) = self
                    .held_lease(&item.queue, item.id, connection)
                    .ok_or(NackError::MessageNotFound)?;
                if let Some(q) = self.queues.get_mut(queue_ref) {
                    q.counters.nacked += 1;
                }
                self.fail_leased(now, queue_ref, slot, &item.error);
                Ok(())
            })
            .collect()
    }

    /// The failure path of a leased message (nack, expiry, disconnect): attempts + 1, then
    /// `on_failure` decides retry (with delay) or dead-letter (retry when no DLQ exists).
    pub(crate) fn fail_leased(
        &mut self,
        now: Time,
        queue_ref: SlabRef,
        slot: SlabRef,
        error: &str,
    ) {
        let Some(q) = self.queues.get_mut(queue_ref) else {
            return;
        };
        let Some(lease) = q.end_lease(slot) else {
            return;
        };
        q.return_credit(lease.consumer);
        let Some(s) = q.messages.get_mut(slot) else {
            return;
        };
        let old_key = message_key(q.no, s.order);
        self.writes.delete(Keyspace::Leases, old_key.clone());
        s.message.attempts = s.message.attempts.saturating_add(1);
        // The hook sees the headers: held in the cache, or read with the body. If that read
        // fails the hook is skipped and the message is retried at once (the no-hook rule);
        // the failure is counted and reported, never a loss.
        let headers = if s.message.header_count == 0 {
            Some(self.no_headers.clone())
        } else if let Some(body) = &s.body {
            Some(body.headers.clone())
        } else {
            match self
                .cache
                .load(&self.storage, s.message.body_seq, &self.no_headers)
            {
                Ok(body) => Some(body.headers),
                Err(reason) => {
                    q.counters.body_read_errors += 1;
                    self.cache.report(format!(
                        "queue {}: headers of message {} could not be read ({reason}); on_failure skipped, retried at once",
                        q.id, s.message.id
                    ));
                    None
                }
            }
        };
        let headers_read = headers.is_some();
        let decision = match headers {
            Some(headers) => self.hooks.on_failure(
                HookContext {
                    config: &self.config,
                },
                &FailureInput {
                    queue: &q.id,
                    id: s.message.id,
                    headers: &headers,
                    attempts: s.message.attempts,
                    error,
                },
            ),
            None => FailureDecision::Retry { delay_ms: 0 },
        };
        let ran = if headers_read {
            self.hooks.last_run()
        } else {
            None
        };
        q.metrics.record_hook(Hook::OnFailure, ran);
        let dlq_ref = match decision {
            FailureDecision::DeadLetter => q
                .dlq_name
                .as_ref()
                .and_then(|name| self.by_name.get(name.as_str()).copied()),
            FailureDecision::Retry { .. } => None,
        };
        self.writes.delete(Keyspace::Messages, old_key);
        match (dlq_ref, decision) {
            (Some(dlq_ref), _) => {
                let Some((removed, key)) = self.queues.get_mut(queue_ref).and_then(|q| {
                    q.counters.dead_lettered += 1;
                    let key = q.key_of(slot).cloned()?;
                    Some((q.remove(slot)?, key))
                }) else {
                    return;
                };
                self.insert_moved(now, dlq_ref, removed.message, &key, removed.body);
            }
            (None, decision) => {
                let delay_ms = match decision {
                    FailureDecision::Retry { delay_ms } => delay_ms.min(RETRY_DELAY_MS_MAX),
                    FailureDecision::DeadLetter => 0,
                };
                let order = self.next_order(now.plus_millis(delay_ms));
                let Some(q) = self.queues.get_mut(queue_ref) else {
                    return;
                };
                q.place(slot, order, now);
                if let Some(record) = q.index_record(slot) {
                    self.writes
                        .put(Keyspace::Messages, message_key(q.no, order), record);
                }
                if delay_ms > 0 {
                    self.arm(queue_ref, Time::from_micros(order.ready_at_us));
                }
            }
        }
        self.wake(queue_ref);
    }

    /// Inserts a message taken from another queue (dead-letter, redrive) as ready now.
    /// Its body record stays where it is (keyed by body sequence); only the index record
    /// moves. A cached body moves with it.
    pub(crate) fn insert_moved(
        &mut self,
        now: Time,
        target: SlabRef,
        message: Message,
        fairness_key: &FairnessKey,
        body: Option<Box<Body>>,
    ) {
        let order = self.next_order(now);
        let Some(t) = self.queues.get_mut(target) else {
            if let Some(body) = &body {
                self.cache.release(body);
            }
            return;
        };
        let key = t.key_for_moved(fairness_key, message.weight);
        self.writes.put(
            Keyspace::Messages,
            message_key(t.no, order),
            message.encode(fairness_key),
        );
        t.insert(message, body, key, order, now);
        self.wake(target);
    }

    /// Runs every queue timer due at `now`: delayed messages become ready, expired leases go
    /// through the failure path ("visibility timeout expired").
    pub(crate) fn run_timers(&mut self, now: Time) {
        while let Some(std::cmp::Reverse((at, queue_ref))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let mut expired = std::mem::take(&mut self.scratch);
            expired.clear();
            let Some(q) = self.queues.get_mut(queue_ref) else {
                self.scratch = expired;
                continue;
            };
            if q.armed_at.is_some_and(|armed| armed <= now) {
                q.armed_at = None;
            }
            q.promote_due(now);
            q.unpark_due(now);
            q.due_leases(now, &mut expired);
            q.counters.expired += expired.len() as u64;
            for slot in expired.drain(..) {
                self.fail_leased(now, queue_ref, slot, EXPIRED_ERROR);
            }
            self.scratch = expired;
            self.rearm(queue_ref);
            self.wake(queue_ref);
        }
    }
}
