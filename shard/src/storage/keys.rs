//! The key layout of a shard's storage: the only place that knows how keys are built.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `queues` | queue name (UTF-8) | queue definition record |
//! | `messages` | queue number (u64 BE) · ready-at µs (u64 BE) · sequence (u64 BE) | message index record |
//! | `bodies` | body sequence (u64 BE) | body record (headers, payload) |
//! | `leases` | same 24 bytes as the message | lease record |
//! | `config` | config key (UTF-8) | config value (UTF-8) |
//! | `meta` | a name below | u64 BE |
//!
//! Every integer is big-endian, so byte order is numeric order and a prefix scan of one queue
//! returns its messages in pending order (ready-at, then sequence). A queue number is given
//! once per queue creation and never reused, so a queue created again with an old name can
//! never see records of its predecessor.
//!
//! A message's body is written once, at enqueue, under the sequence number its first pending
//! order got (its *body sequence*, kept in the index record); retries, dead-lettering and
//! redrive rewrite only the small index record under a new key and never touch the body.
//! Sequence numbers are shard-wide and recovery resumes above every sequence it saw (index
//! keys and body sequences), so a body key is never shared by two live messages.

/// Meta key: the on-disk format version.
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Meta key: the next queue number to hand out.
pub const META_NEXT_QUEUE_NO: &[u8] = b"next_queue_no";
/// The format version this code writes and reads. Version 2 split message records into an
/// index record (`messages`) and a body record (`bodies`); version 1 data is refused.
pub const FORMAT_VERSION: u64 = 2;

/// Length of a message (and lease) key.
pub const MESSAGE_KEY_BYTES: usize = 24;

/// Where a message sits in its queue's pending order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingOrder {
    /// When the message becomes (or became) deliverable, µs since the epoch.
    pub ready_at_us: u64,
    /// Shard-wide monotonic sequence number; breaks ties and keeps FIFO.
    pub seq: u64,
}

/// The 8-byte prefix of every message and lease of one queue.
pub fn queue_prefix(queue_no: u64) -> [u8; 8] {
    queue_no.to_be_bytes()
}

/// The key of a message (and of its lease).
pub fn message_key(queue_no: u64, order: PendingOrder) -> Vec<u8> {
    let mut key = Vec::with_capacity(MESSAGE_KEY_BYTES);
    key.extend_from_slice(&queue_no.to_be_bytes());
    key.extend_from_slice(&order.ready_at_us.to_be_bytes());
    key.extend_from_slice(&order.seq.to_be_bytes());
    key
}

/// Splits a message or lease key; `None` when it is not 24 bytes.
pub fn parse_message_key(key: &[u8]) -> Option<(u64, PendingOrder)> {
    let bytes: &[u8; MESSAGE_KEY_BYTES] = key.try_into().ok()?;
    let (queue, rest) = bytes.split_first_chunk::<8>()?;
    let (ready, rest) = rest.split_first_chunk::<8>()?;
    let seq: &[u8; 8] = rest.try_into().ok()?;
    Some((
        u64::from_be_bytes(*queue),
        PendingOrder {
            ready_at_us: u64::from_be_bytes(*ready),
            seq: u64::from_be_bytes(*seq),
        },
    ))
}

/// Length of a body key.
pub const BODY_KEY_BYTES: usize = 8;

/// The key of a message body.
pub fn body_key(body_seq: u64) -> [u8; BODY_KEY_BYTES] {
    body_seq.to_be_bytes()
}

/// The key of a queue definition.
pub fn queue_key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// The key of a runtime config entry.
pub fn config_key(key: &str) -> Vec<u8> {
    key.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(ready_at_us: u64, seq: u64) -> PendingOrder {
        PendingOrder { ready_at_us, seq }
    }

    #[test]
    fn byte_order_is_pending_order() {
        let cases = [
            (1, order(0, 0)),
            (1, order(0, 1)),
            (1, order(0, 256)),
            (1, order(1, 0)),
            (1, order(255, 9)),
            (1, order(256, 1)),
            (1, order(u64::MAX, 0)),
            (2, order(0, 0)),
            (256, order(0, 0)),
        ];
        for pair in cases.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!((a.0, a.1) < (b.0, b.1));
            assert!(message_key(a.0, a.1) < message_key(b.0, b.1), "{a:?} {b:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_prefix_scopes_a_queue() {
        let key = message_key(7, order(123_456, 42));
        assert_eq!(key.len(), MESSAGE_KEY_BYTES);
        assert!(key.starts_with(&queue_prefix(7)));
        assert!(!key.starts_with(&queue_prefix(8)));
        assert_eq!(parse_message_key(&key), Some((7, order(123_456, 42))));
        assert_eq!(parse_message_key(&key[..23]), None);
    }
}
