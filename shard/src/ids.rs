//! Typed identifiers: queue names, message and consumer ids (UUID v7), fairness and throttle
//! keys, connection ids; and the deterministic id generator.
//!
//! Ids are built from `now`, a per-shard seeded PRNG (splitmix64) and a monotonic counter, so
//! the core never asks the OS for randomness and a simulation replays exactly from its seed.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use crate::limits::DLQ_SUFFIX;
use crate::time::Time;

/// A queue's name. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(Arc<str>);

impl QueueId {
    /// A queue id from its name.
    pub fn new(name: &str) -> QueueId {
        QueueId(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the name ends in `.dlq`.
    pub fn is_dlq(&self) -> bool {
        self.0.ends_with(DLQ_SUFFIX)
    }

    /// The name of this queue's automatic dead-letter queue.
    pub fn dlq_name(&self) -> String {
        format!("{}{DLQ_SUFFIX}", self.0)
    }

    /// For a dead-letter queue, the name of its parent.
    pub fn parent_name(&self) -> Option<&str> {
        self.0.strip_suffix(DLQ_SUFFIX)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A fairness key: the unit DRR schedules between. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FairnessKey(Arc<str>);

impl FairnessKey {
    /// The key used when no hook assigns one.
    pub const DEFAULT: &'static str = "default";

    /// A key from its text.
    pub fn new(key: &str) -> FairnessKey {
        FairnessKey(Arc::from(key))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FairnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FairnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A throttle key: names a token bucket configured with `throttle.<key>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThrottleKey(Arc<str>);

impl ThrottleKey {
    /// A key from its text.
    pub fn new(key: &str) -> ThrottleKey {
        ThrottleKey(Arc::from(key))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id: UUID v7, shown as lowercase hyphenated text on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub Uuid);

impl MessageId {
    /// Parses the forms the wire accepts (hyphenated, simple, braced, urn).
    /// `None` for anything else (the caller answers MessageNotFound).
    pub fn parse(text: &str) -> Option<MessageId> {
        Uuid::try_parse(text).ok().map(MessageId)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A consumer (subscription) id: UUID v7.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub Uuid);

impl fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A client connection, chosen by the server. Leases belong to connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Deterministic UUID v7 source: `now` in the timestamp, then a 32-bit counter (so ids of one
/// shard are unique and ordered within a millisecond), then 42 bits of splitmix64 output (so
/// shards with different seeds do not collide).
#[derive(Clone, Debug)]
pub struct IdGenerator {
    state: u64,
    counter: u32,
}

impl IdGenerator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> IdGenerator {
        IdGenerator {
            state: seed,
            counter: 0,
        }
    }

    /// The next splitmix64 value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next UUID v7 for `now`.
    pub fn next_uuid(&mut self, now: Time) -> Uuid {
        self.counter = self.counter.wrapping_add(1);
        let random = self.next_u64().to_be_bytes();
        let counter = self.counter.to_be_bytes();
        let bytes = [
            counter[0], counter[1], counter[2], counter[3], random[0], random[1], random[2],
            random[3], random[4], random[5],
        ];
        uuid::Builder::from_unix_timestamp_millis(now.as_millis(), &bytes).into_uuid()
    }

    /// The next message id.
    pub fn message_id(&mut self, now: Time) -> MessageId {
        MessageId(self.next_uuid(now))
    }

    /// The next consumer id.
    pub fn consumer_id(&mut self, now: Time) -> ConsumerId {
        ConsumerId(self.next_uuid(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_replayable() {
        let mut a = IdGenerator::new(7);
        let mut b = IdGenerator::new(7);
        let now = Time::from_millis(1_700_000_000_000);
        let first = a.message_id(now);
        assert_eq!(first, b.message_id(now));
        assert_eq!(first.0.get_version_num(), 7);
        let second = a.message_id(now);
        assert_ne!(first, second);
        assert!(
            first < second,
            "ids of one shard are ordered within a millisecond"
        );
        let text = first.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(MessageId::parse(&text), Some(first));
        assert_eq!(MessageId::parse(&text.to_uppercase()), Some(first));
        assert_eq!(MessageId::parse("nope"), None);
    }

    #[test]
    fn dlq_names() {
        let q = QueueId::new("orders");
        assert!(!q.is_dlq());
        assert_eq!(q.dlq_name(), "orders.dlq");
        let d = QueueId::new("orders.dlq");
        assert!(d.is_dlq());
        assert_eq!(d.parent_name(), Some("orders"));
    }
}
