//! One queue's in-memory state: messages, pending FIFOs per fairness key, the DRR ring, the
//! deadline-ordered lease index, delayed messages, and its consumers.
//!
//! This module changes memory only; the shard decides what to write to storage and calls
//! the hooks. Indexes link by slab references, never by strings.
//!
//! Per fairness key the pending messages that can go now form one FIFO ordered by
//! (ready-at, sequence). Delayed messages wait in a heap and join their key's FIFO when due.
//! The FIFO is split by throttle-key set ([`ReadyClasses`]) so a throttled message is passed
//! by later messages with other throttle keys (decisions.md). A key whose ready messages are
//! all throttle-blocked is parked: out of the ring, without credit, until its earliest refill
//! instant (a per-queue heap; the shard timer is armed for it) or a throttle event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::drr::{Drr, DrrKeyState, DrrKeys, KeyIdx};
use crate::hooks::QueueScripts;
use crate::ids::{ConnectionId, ConsumerId, FairnessKey, MessageId, QueueId};
use crate::message::{Body, Message};
use crate::slab::{Slab, SlabRef};
use crate::storage::keys::PendingOrder;
use crate::throttle::Throttle;
use crate::throttle::classes::ReadyClasses;
use crate::time::Time;

/// A fast hasher for message ids: their low 64 bits are counter and PRNG output, chosen by
/// the shard, never by a client, so no hash-flooding defence is needed.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, value: u128) {
        let folded = (value as u64) ^ ((value >> 64) as u64).rotate_left(29);
        self.0 = (self.0 ^ folded).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

impl std::hash::Hash for MessageIdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.0.0.as_u128());
    }
}

/// A message id as a map key with the fast hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MessageIdKey(pub MessageId);

/// The state of a message slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// In its key's FIFO.
    Ready,
    /// Waiting for its ready-at instant.
    Delayed,
    /// Leased to a connection (boxed: most messages are pending, and a slot stays small).
    Leased(Box<Lease>),
    /// Between states inside one operation.
    Detached,
}

/// A lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Holder; `None` after recovery (connections do not survive a restart).
    pub connection: Option<ConnectionId>,
    /// The subscription it was delivered through (gets the credit back).
    pub consumer: Option<ConsumerId>,
    /// Expiry.
    pub deadline: Time,
    /// Grant time.
    pub leased_at: Time,
    /// Unique number that tells this lease from earlier leases of the same slot.
    pub lease_no: u64,
}

/// A message and where it is.
#[derive(Clone, Debug)]
pub struct MsgSlot {
    /// The message.
    pub message: Message,
    /// Its fairness key's index.
    pub key: KeyIdx,
    /// Its place in pending order (also its storage key).
    pub order: PendingOrder,
    /// Its state.
    pub state: SlotState,
    /// Its body while the shard's body cache holds it (taken at delivery).
    pub body: Option<Box<Body>>,
}

/// A fairness key of this queue.
#[derive(Clone, Debug)]
pub struct KeySlot {
    /// The key.
    pub key: FairnessKey,
    /// DRR state (weight = weight of the most recently enqueued message).
    pub drr: DrrKeyState,
    /// Messages deliverable now, one FIFO per throttle-key set, each in pending order.
    pub ready: ReadyClasses,
    /// True while out of the ring because every ready message is throttle-blocked.
    pub parked: bool,
    /// True while the key is listed in the queue's `parked_event` (at most once, so a key
    /// re-parked by every enqueue behind a paused limit does not grow the list).
    pub awaits_event: bool,
    /// Delayed messages of this key.
    pub delayed: u32,
    /// Leased messages of this key.
    pub leased: u32,
    /// Deliveries since the key appeared (`fila.fairness.throughput`).
    pub delivered: u64,
}

/// A registered consumer (subscription).
#[derive(Clone, Debug)]
pub struct Consumer {
    /// Its connection.
    pub connection: ConnectionId,
    /// Credit window.
    pub window: u32,
    /// Deliveries not yet acked, nacked, expired or released.
    pub outstanding: u32,
    /// True while in the delivery ring.
    pub in_ring: bool,
}

/// Lifetime counters of one queue (for metrics and `fila top`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages enqueued.
    pub enqueued: u64,
    /// Deliveries (leases granted).
    pub leased: u64,
    /// Acks.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Lease expiries.
    pub expired: u64,
    /// Leases released by closed connections.
    pub released: u64,
    /// Messages moved out to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages redriven into this queue.
    pub redriven: u64,
    /// Body reads that failed at delivery or in the failure path (the message stayed put).
    pub body_read_errors: u64,
}

impl DrrKeys for Slab<KeySlot> {
    fn drr_state(&mut self, key: KeyIdx) -> Option<&mut DrrKeyState> {
        self.get_idx_mut(key).map(|slot| &mut slot.drr)
    }
}

/// The queue.
#[derive(Debug)]
pub struct Queue {
    /// Name.
    pub id: QueueId,
    /// Storage prefix number.
    pub no: u64,
    /// Lease length.
    pub visibility_timeout_ms: u64,
    /// Script sources.
    pub scripts: QueueScripts,
    /// `<name>.dlq` for a queue that has one.
    pub dlq_name: Option<QueueId>,
    /// Messages.
    pub messages: Slab<MsgSlot>,
    by_id: HashMap<MessageIdKey, SlabRef, BuildHasherDefault<IdHasher>>,
    /// Fairness keys.
    pub keys: Slab<KeySlot>,
    key_index: HashMap<FairnessKey, KeyIdx>,
    /// The DRR ring.
    pub drr: Drr,
    /// Throttle-parked keys by the instant they may retry (entries may be stale).
    parked_at: BinaryHeap<Reverse<(Time, KeyIdx)>>,
    /// Throttle-parked keys waiting for an event (a grant, a limit change).
    parked_event: Vec<KeyIdx>,
    /// Leases in deadline order (entries of ended leases are skipped lazily).
    leases: VecDeque<(Time, u64, SlabRef)>,
    leased_count: usize,
    stale_leases: usize,
    delayed: BinaryHeap<Reverse<(PendingOrder, SlabRef)>>,
    delayed_count: usize,
    /// Consumers.
    pub consumers: HashMap<ConsumerId, Consumer>,
    ring: VecDeque<ConsumerId>,
    /// Earliest instant a shard timer is armed for this queue.
    pub armed_at: Option<Time>,
    /// True while in the shard's wake list.
    pub in_wake: bool,
    /// Counters.
    pub counters: QueueCounters,
    /// Metric cells not counted elsewhere (Lua, delivery latency).
    pub metrics: crate::metrics::QueueMetrics,
    /// After a failed body read, deliveries from this queue pause until this instant.
    pub read_retry_at: Option<Time>,
    next_lease_no: u64,
}

impl Queue {
    /// An empty queue.
    pub fn new(
        id: QueueId,
        no: u64,
        visibility_timeout_ms: u64,
        scripts: QueueScripts,
        dlq_name: Option<QueueId>,
    ) -> Queue {
        Queue {
            id,
            no,
            visibility_timeout_ms,
            scripts,
            dlq_name,
            messages: Slab::default(),
            by_id: HashMap::default(),
            keys: Slab::default(),
            key_index: HashMap::new(),
            drr: Drr::new(),
            parked_at: BinaryHeap::new(),
            parked_event: Vec::new(),
            leases: VecDeque::new(),
            leased_count: 0,
            stale_leases: 0,
            delayed: BinaryHeap::new(),
            delayed_count: 0,
            consumers: HashMap::new(),
            ring: VecDeque::new(),
            armed_at: None,
            in_wake: false,
            counters: QueueCounters::default(),
            metrics: crate::metrics::QueueMetrics::default(),
            read_retry_at: None,
            next_lease_no: 0,
        }
    }

    /// Messages that are pending (ready or delayed).
    pub fn pending(&self) -> usize {
        self.messages.len() - self.leased_count
    }

    /// Messages waiting for a delay.
    pub fn delayed(&self) -> usize {
        self.delayed_count
    }

    /// Messages leased.
    pub fn in_flight(&self) -> usize {
        self.leased_count
    }

    /// Pending plus in flight.
    pub fn depth(&self) -> usize {
        self.messages.len()
    }

    /// The slot of a message id.
    pub fn find(&self, id: MessageId) -> Option<SlabRef> {
        self.by_id.get(&MessageIdKey(id)).copied()
    }

    /// The index of `key`, created with `weight` if new; a known key takes the new weight.
    pub fn key_for(
        &mut self,
        key: &str,
        make: impl FnOnce() -> FairnessKey,
        weight: u32,
    ) -> KeyIdx {
        if let Some(idx) = self.key_index.get(key).copied()
            && let Some(slot) = self.keys.get_idx_mut(idx)
        {
            slot.drr.weight = weight;
            return idx;
        }
        let key = make();
        let r = self.keys.insert(KeySlot {
            key: key.clone(),
            drr: DrrKeyState::new(weight),
            ready: ReadyClasses::default(),
            parked: false,
            awaits_event: false,
            delayed: 0,
            leased: 0,
            delivered: 0,
        });
        self.key_index.insert(key, r.idx);
        r.idx
    }

    /// The key of an existing message being moved in (DLQ, redrive) without changing the
    /// key's weight when it already exists.
    pub fn key_for_moved(&mut self, key: &FairnessKey, weight: u32) -> KeyIdx {
        if let Some(idx) = self.key_index.get(key.as_str()).copied()
            && self.keys.get_idx(idx).is_some()
        {
            return idx;
        }
        self.key_for(key.as_str(), || key.clone(), weight)
    }

    /// The key of a recovered message: found by text (no allocation for a known key);
    /// a known key keeps its weight (recovery sets weights at the end).
    pub fn key_for_recovered(&mut self, key: &str, weight: u32) -> KeyIdx {
        if let Some(idx) = self.key_index.get(key).copied()
            && self.keys.get_idx(idx).is_some()
        {
            return idx;
        }
        self.key_for(key, || FairnessKey::new(key), weight)
    }

    /// The index record of a message as stored (with its fairness key).
    pub fn index_record(&self, r: SlabRef) -> Option<Vec<u8>> {
        let slot = self.messages.get(r)?;
        let key = &self.keys.get_idx(slot.key)?.key;
        Some(slot.message.encode(key))
    }

    /// Stores a message with its pending order; ready now or delayed.
    pub fn insert(
        &mut self,
        message: Message,
        body: Option<Box<Body>>,
        key: KeyIdx,
        order: PendingOrder,
        now: Time,
    ) -> SlabRef {
        let r = self.insert_detached(message, body, key, order);
        self.place(r, order, now);
        r
    }

    /// Stores a message without placing it (recovery places or leases it next).
    pub fn insert_detached(
        &mut self,
        message: Message,
        body: Option<Box<Body>>,
        key: KeyIdx,
        order: PendingOrder,
    ) -> SlabRef {
        let id = message.id;
        let r = self.messages.insert(MsgSlot {
            message,
            key,
            order,
            state: SlotState::Detached,
            body,
        });
        self.by_id.insert(MessageIdKey(id), r);
        r
    }

    /// Puts a detached slot back into pending with a new order.
    pub fn place(&mut self, r: SlabRef, order: PendingOrder, now: Time) {
        let Some(slot) = self.messages.get_mut(r) else {
            return;
        };
        debug_assert_eq!(slot.state, SlotState::Detached);
        slot.order = order;
        let key = slot.key;
        if order.ready_at_us <= now.as_micros() {
            slot.state = SlotState::Ready;
            // Delayed messages already due go first, so every FIFO stays in pending order
            // even when this queue's own timer has not run yet at `now` (a dead-letter
            // arriving from another queue's expiry, for instance).
            self.promote_due(now);
            self.push_ready(key, r);
        } else {
            slot.state = SlotState::Delayed;
            self.delayed.push(Reverse((order, r)));
            self.delayed_count += 1;
            if let Some(k) = self.keys.get_idx_mut(key) {
                k.delayed += 1;
            }
        }
    }

    fn push_ready(&mut self, key: KeyIdx, r: SlabRef) {
        let Some(slot) = self.messages.get(r) else {
            return;
        };
        if let Some(k) = self.keys.get_idx_mut(key) {
            k.ready
                .push_back(&slot.message.throttle_keys, slot.order, r);
            // A parked key retries at once: the new message may carry other throttle keys.
            k.parked = false;
            self.drr.activate(key, &mut k.drr);
        }
    }

    /// Earliest instant a throttle-parked key may retry.
    pub fn next_unpark(&self) -> Option<Time> {
        self.parked_at.peek().map(|Reverse((at, _))| *at)
    }

    fn unpark(&mut self, key: KeyIdx) {
        if let Some(k) = self.keys.get_idx_mut(key)
            && k.parked
        {
            k.parked = false;
            if !k.ready.is_empty() {
                self.drr.activate(key, &mut k.drr);
            }
        }
    }

    /// Puts the keys whose retry instant has come back into the ring.
    pub fn unpark_due(&mut self, now: Time) {
        while let Some(Reverse((at, key))) = self.parked_at.peek().copied() {
            if at > now {
                break;
            }
            self.parked_at.pop();
            self.unpark(key);
        }
    }

    /// Puts every parked key back into the ring (tokens may have appeared by an event).
    pub fn unpark_all(&mut self) {
        let keys: Vec<KeyIdx> = std::mem::take(&mut self.parked_event)
            .into_iter()
            .chain(
                std::mem::take(&mut self.parked_at)
                    .into_iter()
                    .map(|Reverse((_, k))| k),
            )
            .collect();
        for key in keys {
            if let Some(k) = self.keys.get_idx_mut(key) {
                k.awaits_event = false;
            }
            self.unpark(key);
        }
    }

    /// Earliest ready-at of a delayed message.
    pub fn next_delayed(&self) -> Option<Time> {
        self.delayed
            .peek()
            .map(|Reverse((order, _))| Time::from_micros(order.ready_at_us))
    }

    /// Earliest lease deadline (possibly of an ended lease: a spurious wake-up is harmless).
    pub fn next_deadline(&self) -> Option<Time> {
        self.leases.front().map(|(deadline, _, _)| *deadline)
    }

    /// The earliest instant this queue needs a timer.
    pub fn next_due(&self) -> Option<Time> {
        [
            self.next_delayed(),
            self.next_deadline(),
            self.next_unpark(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves delayed messages that are due into their keys' FIFOs, in pending order.
    /// Returns how many became ready.
    pub fn promote_due(&mut self, now: Time) -> usize {
        let mut promoted = 0;
        while let Some(Reverse((order, r))) = self.delayed.peek().copied() {
            if order.ready_at_us > now.as_micros() {
                break;
            }
            self.delayed.pop();
            let Some(slot) = self.messages.get_mut(r) else {
                continue;
            };
            if slot.state != SlotState::Delayed || slot.order != order {
                continue;
            }
            slot.state = SlotState::Ready;
            let key = slot.key;
            self.delayed_count -= 1;
            if let Some(k) = self.keys.get_idx_mut(key) {
                k.delayed -= 1;
            }
            self.push_ready(key, r);
            promoted += 1;
        }
        promoted
    }

    /// True when DRR has a key with a deliverable message.
    pub fn has_ready(&self) -> bool {
        self.drr.active_keys() > 0
    }

    /// The message [`Queue::take_and_lease`] would take next, without taking it (DRR's pick
    /// is idempotent until the key is charged).
    ///
    /// The key's next message is the oldest head among its throttle classes whose keys all
    /// have a token; blocked heads older than it count a hit. A key with no such head is
    /// parked until its earliest refill instant (or a throttle event) and the next key is
    /// tried. Tokens are not taken here.
    pub fn peek_next(
        &mut self,
        quantum: u32,
        now: Time,
        throttle: &mut Throttle,
    ) -> Option<SlabRef> {
        loop {
            let key = self.drr.pick(&mut self.keys, quantum)?;
            let k = self.keys.get_idx_mut(key)?;
            let classes = k.ready.classes();
            if let [only] = classes
                && (only.keys.is_empty() || throttle.is_empty())
            {
                return only.fifo.front().map(|(_, r)| *r);
            }
            let mut best: Option<(PendingOrder, SlabRef)> = None;
            for class in classes {
                let Some(&(order, r)) = class.fifo.front() else {
                    continue;
                };
                if best.is_some_and(|(b, _)| b < order) {
                    continue;
                }
                if throttle.can_pass(&class.keys, now) {
                    best = Some((order, r));
                }
            }
            let mut retry: Option<Time> = None;
            let mut event = false;
            for class in classes {
                let Some(&(order, _)) = class.fifo.front() else {
                    continue;
                };
                if best.is_some_and(|(b, _)| b <= order) {
                    continue;
                }
                // Older than the pick (or nothing can go): the scheduler tried and was refused.
                match throttle.blocked(&class.keys, now) {
                    Some(at) => retry = Some(retry.map_or(at, |r| r.min(at))),
                    None => event = true,
                }
            }
            if let Some((_, r)) = best {
                return Some(r);
            }
            self.drr.park_head(key, &mut k.drr);
            k.parked = true;
            match retry {
                Some(at) if at > now => self.parked_at.push(Reverse((at, key))),
                Some(_) => self.parked_at.push(Reverse((now.plus_micros(1), key))),
                None => {}
            }
            if event && !k.awaits_event {
                k.awaits_event = true;
                self.parked_event.push(key);
            }
        }
    }

    /// The fairness key of a slot.
    pub fn key_of(&self, r: SlabRef) -> Option<&FairnessKey> {
        let slot = self.messages.get(r)?;
        self.keys.get_idx(slot.key).map(|k| &k.key)
    }

    /// Takes the next message by DRR and leases it. Returns the slot.
    pub fn take_and_lease(
        &mut self,
        quantum: u32,
        now: Time,
        connection: ConnectionId,
        consumer: ConsumerId,
        r: SlabRef,
    ) -> Option<SlabRef> {
        let key = self.drr.pick(&mut self.keys, quantum)?;
        let k = self.keys.get_idx_mut(key)?;
        if !k.ready.take_head(r) {
            return None;
        }
        let still_ready = !k.ready.is_empty();
        k.leased += 1;
        self.drr.charge(key, &mut k.drr, still_ready);
        let deadline = {
            let fresh = now.plus_millis(self.visibility_timeout_ms);
            // Deadlines stay monotone per queue even if the clock regressed across a restart.
            self.leases
                .back()
                .map_or(fresh, |(last, _, _)| fresh.max(*last))
        };
        let lease_no = self.next_lease_no;
        self.next_lease_no += 1;
        let slot = self.messages.get_mut(r)?;
        debug_assert_eq!(slot.state, SlotState::Ready);
        slot.state = SlotState::Leased(Box::new(Lease {
            connection: Some(connection),
            consumer: Some(consumer),
            deadline,
            leased_at: now,
            lease_no,
        }));
        self.leases.push_back((deadline, lease_no, r));
        self.leased_count += 1;
        Some(r)
    }

    /// Restores a lease at recovery (slot must be detached; no holder).
    pub fn restore_lease(&mut self, r: SlabRef, deadline: Time, leased_at: Time) {
        let lease_no = self.next_lease_no;
        self.next_lease_no += 1;
        let Some(slot) = self.messages.get_mut(r) else {
            return;
        };
        slot.state = SlotState::Leased(Box::new(Lease {
            connection: None,
            consumer: None,
            deadline,
            leased_at,
            lease_no,
        }));
        let key = slot.key;
        if let Some(k) = self.keys.get_idx_mut(key) {
            k.leased += 1;
        }
        self.leases.push_back((deadline, lease_no, r));
        self.leased_count += 1;
    }

    /// Sorts the lease index after recovery restored leases in storage order.
    pub fn sort_leases(&mut self) {
        self.leases.make_contiguous().sort();
    }

    /// The current lease of `r`, if leased.
    pub fn lease_of(&self, r: SlabRef) -> Option<&Lease> {
        match &self.messages.get(r)?.state {
            SlotState::Leased(lease) => Some(lease.as_ref()),
            _ => None,
        }
    }

    /// Ends the lease of `r` (slot becomes detached). Returns the lease.
    pub fn end_lease(&mut self, r: SlabRef) -> Option<Lease> {
        let slot = self.messages.get_mut(r)?;
        let SlotState::Leased(lease) = std::mem::replace(&mut slot.state, SlotState::Detached)
        else {
            return None;
        };
        let key = slot.key;
        if let Some(k) = self.keys.get_idx_mut(key) {
            k.leased -= 1;
        }
        self.leased_count -= 1;
        self.stale_leases += 1;
        self.compact_leases();
        Some(*lease)
    }

    fn compact_leases(&mut self) {
        // Drop ended entries at the front at once; compact the rest when they dominate.
        while let Some((_, lease_no, r)) = self.leases.front().copied() {
            if self.is_live_lease(lease_no, r) {
                break;
            }
            self.leases.pop_front();
            self.stale_leases = self.stale_leases.saturating_sub(1);
        }
        if self.stale_leases > 64 && self.stale_leases > self.leased_count {
            let messages = &self.messages;
            self.leases.retain(|(_, lease_no, r)| {
                matches!(messages.get(*r), Some(MsgSlot { state: SlotState::Leased(l), .. }) if l.lease_no == *lease_no)
            });
            self.stale_leases = 0;
        }
    }

    fn is_live_lease(&self, lease_no: u64, r: SlabRef) -> bool {
        matches!(self.lease_of(r), Some(lease) if lease.lease_no == lease_no)
    }

    /// Slots whose lease deadline is at or before `now`, earliest first (still leased).
    pub fn due_leases(&mut self, now: Time, out: &mut Vec<SlabRef>) {
        while let Some((deadline, lease_no, r)) = self.leases.front().copied() {
            if deadline > now {
                break;
            }
            self.leases.pop_front();
            if self.is_live_lease(lease_no, r) {
                out.push(r);
            } else {
                self.stale_leases = self.stale_leases.saturating_sub(1);
            }
        }
    }

    /// Live leases held by `connection`, in deadline order.
    pub fn leases_of(&self, connection: ConnectionId) -> Vec<SlabRef> {
        self.leases
            .iter()
            .filter(|(_, lease_no, r)| {
                matches!(self.lease_of(*r), Some(l) if l.lease_no == *lease_no && l.connection == Some(connection))
            })
            .map(|(_, _, r)| *r)
            .collect()
    }

    /// Removes a detached message for good (ack, dead-letter, delete). Frees its key when the
    /// key has nothing left.
    pub fn remove(&mut self, r: SlabRef) -> Option<MsgSlot> {
        let slot = self.messages.remove(r)?;
        debug_assert_eq!(slot.state, SlotState::Detached);
        self.by_id.remove(&MessageIdKey(slot.message.id));
        self.release_key_if_unused(slot.key);
        Some(slot)
    }

    fn release_key_if_unused(&mut self, key: KeyIdx) {
        let unused = self.keys.get_idx(key).is_some_and(|k| {
            k.ready.is_empty() && k.delayed == 0 && k.leased == 0 && !k.drr.in_ring
        });
        if unused && let Some(k) = self.keys.remove_idx(key) {
            self.key_index.remove(&k.key);
        }
    }

    /// Detaches pending (not leased) messages selected by `pick` from this queue: they leave
    /// their FIFOs and the delayed set. Admin path (redrive): O(pending).
    pub fn detach_pending(&mut self, selected: &[SlabRef]) {
        let mut touched: Vec<KeyIdx> = Vec::new();
        for r in selected {
            let Some(slot) = self.messages.get_mut(*r) else {
                continue;
            };
            match slot.state {
                SlotState::Ready => touched.push(slot.key),
                SlotState::Delayed => {
                    self.delayed_count -= 1;
                    if let Some(k) = self.keys.get_idx_mut(slot.key) {
                        k.delayed -= 1;
                    }
                }
                _ => continue,
            }
            slot.state = SlotState::Detached;
        }
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            let Some(k) = self.keys.get_idx_mut(key) else {
                continue;
            };
            let messages = &self.messages;
            k.ready.retain(
                |r| matches!(messages.get(r), Some(slot) if slot.state == SlotState::Ready),
            );
            if k.ready.is_empty() {
                self.drr.remove(key, &mut k.drr);
                k.parked = false;
            }
        }
    }

    /// Registers a consumer.
    pub fn add_consumer(&mut self, id: ConsumerId, connection: ConnectionId, window: u32) {
        self.consumers.insert(
            id,
            Consumer {
                connection,
                window,
                outstanding: 0,
                in_ring: true,
            },
        );
        self.ring.push_back(id);
    }

    /// Unregisters a consumer (its leases stay).
    pub fn remove_consumer(&mut self, id: ConsumerId) -> bool {
        let removed = self.consumers.remove(&id).is_some();
        if removed {
            self.ring.retain(|c| *c != id);
        }
        removed
    }

    /// Gives one credit back to `consumer` (if still registered).
    pub fn return_credit(&mut self, consumer: Option<ConsumerId>) {
        let Some(id) = consumer else { return };
        let Some(c) = self.consumers.get_mut(&id) else {
            return;
        };
        c.outstanding = c.outstanding.saturating_sub(1);
        if !c.in_ring && c.outstanding < c.window {
            c.in_ring = true;
            self.ring.push_back(id);
        }
    }

    /// The consumer that gets the next delivery (round-robin among those with credit).
    pub fn front_consumer(&self) -> Option<(ConsumerId, ConnectionId)> {
        let id = *self.ring.front()?;
        let c = self.consumers.get(&id)?;
        Some((id, c.connection))
    }

    /// Charges the front consumer one delivery and rotates the ring.
    pub fn charge_front_consumer(&mut self) {
        let Some(id) = self.ring.pop_front() else {
            return;
        };
        self.charge_consumer(id, false);
    }

    /// Charges `id` one delivery. `in_ring_elsewhere` is false when the caller already took it
    /// off the ring front.
    pub fn charge_consumer(&mut self, id: ConsumerId, in_ring_elsewhere: bool) {
        let Some(c) = self.consumers.get_mut(&id) else {
            return;
        };
        c.outstanding += 1;
        let has_credit = c.outstanding < c.window;
        if in_ring_elsewhere {
            if !has_credit {
                c.in_ring = false;
                self.ring.retain(|x| *x != id);
            }
        } else if has_credit {
            self.ring.push_back(id);
        } else {
            c.in_ring = false;
        }
    }

    /// Remaining credit of a consumer.
    pub fn credit_of(&self, id: ConsumerId) -> Option<u32> {
        self.consumers
            .get(&id)
            .map(|c| c.window.saturating_sub(c.outstanding))
    }

    /// True when some consumer has credit.
    pub fn has_consumer_credit(&self) -> bool {
        !self.ring.is_empty()
    }

    /// Checks the internal invariants (tests and the simulation).
    pub fn check(&self) -> Result<(), String> {
        let mut listed = std::collections::HashSet::new();
        for &key in &self.parked_event {
            let live = self.keys.get_idx(key).is_some_and(|k| k.awaits_event);
            if live && !listed.insert(key) {
                return Err(format!(
                    "{}: a key waits for a throttle event twice",
                    self.id
                ));
            }
        }
        let mut ready = 0usize;
        let mut delayed = 0usize;
        let mut leased = 0usize;
        for (r, slot) in self.messages.iter() {
            if self.by_id.get(&MessageIdKey(slot.message.id)) != Some(&r) {
                return Err(format!("{}: id index misses {}", self.id, slot.message.id));
            }
            match &slot.state {
                SlotState::Ready => ready += 1,
                SlotState::Delayed => delayed += 1,
                SlotState::Leased(lease) => {
                    leased += 1;
                    let entries = self
                        .leases
                        .iter()
                        .filter(|(d, no, x)| {
                            *x == r && *no == lease.lease_no && *d == lease.deadline
                        })
                        .count();
                    if entries != 1 {
                        return Err(format!(
                            "{}: message {} has {entries} lease index entries",
                            self.id, slot.message.id
                        ));
                    }
                }
                SlotState::Detached => {
                    return Err(format!(
                        "{}: message {} left detached",
                        self.id, slot.message.id
                    ));
                }
            }
            if self.keys.get_idx(slot.key).is_none() {
                return Err(format!(
                    "{}: message {} has no key",
                    self.id, slot.message.id
                ));
            }
        }
        if self.by_id.len() != self.messages.len() {
            return Err(format!("{}: id index has extra entries", self.id));
        }
        if leased != self.leased_count || delayed != self.delayed_count {
            return Err(format!("{}: counts drifted", self.id));
        }
        let mut in_fifos = 0usize;
        let mut seen = std::collections::HashSet::new();
        for (kr, k) in self.keys.iter() {
            let mut counted = 0usize;
            for class in k.ready.classes() {
                let mut last: Option<PendingOrder> = None;
                if class.fifo.is_empty() {
                    return Err(format!("{}: key {:?} keeps an empty class", self.id, k.key));
                }
                for (order, r) in &class.fifo {
                    if !seen.insert(*r) {
                        return Err(format!("{}: a message is twice in pending", self.id));
                    }
                    let slot = self.messages.get(*r).ok_or_else(|| {
                        format!("{}: FIFO of {:?} holds a stale slot", self.id, k.key)
                    })?;
                    if slot.state != SlotState::Ready || slot.key != kr.idx {
                        return Err(format!(
                            "{}: FIFO of {:?} holds a non-ready message",
                            self.id, k.key
                        ));
                    }
                    if slot.order != *order || slot.message.throttle_keys[..] != class.keys[..] {
                        return Err(format!(
                            "{}: FIFO of {:?} holds a message in the wrong class",
                            self.id, k.key
                        ));
                    }
                    if last.is_some_and(|l| l >= slot.order) {
                        return Err(format!("{}: FIFO of {:?} out of order", self.id, k.key));
                    }
                    last = Some(slot.order);
                    counted += 1;
                }
            }
            if counted != k.ready.len() {
                return Err(format!("{}: key {:?} class count drifted", self.id, k.key));
            }
            in_fifos += k.ready.len();
            if k.drr.in_ring && k.parked {
                return Err(format!(
                    "{}: key {:?} parked and in the ring",
                    self.id, k.key
                ));
            }
            if (k.drr.in_ring || k.parked) == k.ready.is_empty() {
                return Err(format!(
                    "{}: key {:?} ring membership wrong",
                    self.id, k.key
                ));
            }
            if k.ready.is_empty() && k.delayed == 0 && k.leased == 0 {
                return Err(format!("{}: key {:?} kept while unused", self.id, k.key));
            }
            if self.key_index.get(k.key.as_str()) != Some(&kr.idx) {
                return Err(format!("{}: key index misses {:?}", self.id, k.key));
            }
        }
        if in_fifos != ready {
            return Err(format!(
                "{}: {ready} ready messages but {in_fifos} in FIFOs",
                self.id
            ));
        }
        let ring: Vec<KeyIdx> = self.drr.ring().collect();
        let mut ring_sorted = ring.clone();
        ring_sorted.sort_unstable();
        ring_sorted.dedup();
        if ring_sorted.len() != ring.len() {
            return Err(format!("{}: a key is twice in the ring", self.id));
        }
        let mut last_deadline = Time::ZERO;
        for (deadline, _, _) in &self.leases {
            if *deadline < last_deadline {
                return Err(format!("{}: lease index out of deadline order", self.id));
            }
            last_deadline = *deadline;
        }
        Ok(())
    }
}
