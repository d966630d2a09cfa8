//! A message and the stored records about it (message, lease), plus the queue definition
//! record. Encoding uses the versioned format of `record.rs`.

use std::sync::Arc;

use bytes::Bytes;

use crate::hooks::QueueScripts;
use crate::ids::{ConnectionId, FairnessKey, MessageId, ThrottleKey};
use crate::limits::{HEADERS_MAX, THROTTLE_KEYS_MAX};
use crate::record::{Reader, Writer};
use crate::time::Time;

/// A message as the shard keeps it. Shared parts are reference-counted so a delivery costs no
/// copy of headers or payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// UUID v7 given at enqueue.
    pub id: MessageId,
    /// Headers as enqueued.
    pub headers: Arc<[(String, String)]>,
    /// Payload as enqueued.
    pub payload: Bytes,
    /// Fairness key (from the hook, else `"default"`).
    pub fairness_key: FairnessKey,
    /// Weight, already clamped to 1..=10,000.
    pub weight: u32,
    /// Throttle keys (from the hook, else none).
    pub throttle_keys: Arc<[ThrottleKey]>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: Time,
}

impl Message {
    /// Encodes the message record.
    pub fn encode(&self) -> Vec<u8> {
        let headers_len: usize = self
            .headers
            .iter()
            .map(|(name, value)| 8 + name.len() + value.len())
            .sum();
        let throttle_len: usize = self
            .throttle_keys
            .iter()
            .map(|k| 4 + k.as_str().len())
            .sum();
        let capacity = 16
            + 8
            + 8
            + 4
            + self.fairness_key.as_str().len()
            + 4
            + throttle_len
            + 4
            + headers_len
            + 4
            + self.payload.len();
        let mut w = Writer::new(capacity + 16);
        w.raw(self.id.as_bytes());
        w.u64(self.enqueued_at.as_micros());
        w.u32(self.attempts);
        w.u32(self.weight);
        w.str(self.fairness_key.as_str());
        w.u32(self.throttle_keys.len() as u32);
        for key in self.throttle_keys.iter() {
            w.str(key.as_str());
        }
        w.u32(self.headers.len() as u32);
        for (name, value) in self.headers.iter() {
            w.str(name);
            w.str(value);
        }
        w.bytes(&self.payload);
        w.finish()
    }

    /// Decodes a message record.
    pub fn decode(record: &[u8]) -> Result<Message, String> {
        let mut r = Reader::new(record)?;
        let id = MessageId(uuid::Uuid::from_bytes(r.fixed::<16>()?));
        let enqueued_at = Time::from_micros(r.u64()?);
        let attempts = r.u32()?;
        let weight = r.u32()?;
        let fairness_key = FairnessKey::new(r.str()?);
        let throttle_count = r.count(THROTTLE_KEYS_MAX, "throttle key")?;
        let mut throttle_keys = Vec::with_capacity(throttle_count);
        for _ in 0..throttle_count {
            throttle_keys.push(ThrottleKey::new(r.str()?));
        }
        let header_count = r.count(HEADERS_MAX, "header")?;
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let name = r.str()?.to_string();
            let value = r.str()?.to_string();
            headers.push((name, value));
        }
        let payload = r.bytes_owned()?;
        r.end()?;
        Ok(Message {
            id,
            headers: headers.into(),
            payload,
            fairness_key,
            weight,
            throttle_keys: throttle_keys.into(),
            attempts,
            enqueued_at,
        })
    }
}

/// A stored lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// When the lease expires.
    pub deadline: Time,
    /// When it was granted.
    pub leased_at: Time,
    /// The connection that held it (informational after a restart).
    pub connection: ConnectionId,
}

impl LeaseRecord {
    /// Encodes the lease record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(24);
        w.u64(self.deadline.as_micros());
        w.u64(self.leased_at.as_micros());
        w.u64(self.connection.0);
        w.finish()
    }

    /// Decodes a lease record.
    pub fn decode(record: &[u8]) -> Result<LeaseRecord, String> {
        let mut r = Reader::new(record)?;
        let deadline = Time::from_micros(r.u64()?);
        let leased_at = Time::from_micros(r.u64()?);
        let connection = ConnectionId(r.u64()?);
        r.end()?;
        Ok(LeaseRecord {
            deadline,
            leased_at,
            connection,
        })
    }
}

/// A stored queue definition (the name is the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRecord {
    /// The queue number that prefixes its message keys.
    pub queue_no: u64,
    /// Lease length.
    pub visibility_timeout_ms: u64,
    /// Script sources.
    pub scripts: QueueScripts,
}

impl QueueRecord {
    /// Encodes the queue record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(32);
        w.u64(self.queue_no);
        w.u64(self.visibility_timeout_ms);
        w.opt_str(self.scripts.on_enqueue.as_deref());
        w.opt_str(self.scripts.on_failure.as_deref());
        w.finish()
    }

    /// Decodes a queue record.
    pub fn decode(record: &[u8]) -> Result<QueueRecord, String> {
        let mut r = Reader::new(record)?;
        let queue_no = r.u64()?;
        let visibility_timeout_ms = r.u64()?;
        let on_enqueue = r.opt_str()?.map(str::to_string);
        let on_failure = r.opt_str()?.map(str::to_string);
        r.end()?;
        Ok(QueueRecord {
            queue_no,
            visibility_timeout_ms,
            scripts: QueueScripts {
                on_enqueue,
                on_failure,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let message = Message {
            id: MessageId(uuid::Uuid::from_u128(
                0x0192_0c4e_8f3a_7b21_9c4d_5e6f_7a8b_9c0d,
            )),
            headers: vec![("a".to_string(), "1".to_string())].into(),
            payload: Bytes::from_static(b"payload"),
            fairness_key: FairnessKey::new("tenant-1"),
            weight: 7,
            throttle_keys: vec![ThrottleKey::new("api")].into(),
            attempts: 3,
            enqueued_at: Time::from_micros(1_700_000_000_123_456),
        };
        let encoded = message.encode();
        assert_eq!(Message::decode(&encoded).unwrap(), message);
        assert!(Message::decode(&encoded[..encoded.len() - 1]).is_err());
        let lease = LeaseRecord {
            deadline: Time::from_millis(9),
            leased_at: Time::from_millis(1),
            connection: ConnectionId(4),
        };
        assert_eq!(LeaseRecord::decode(&lease.encode()).unwrap(), lease);
        let queue = QueueRecord {
            queue_no: 3,
            visibility_timeout_ms: 30_000,
            scripts: QueueScripts {
                on_enqueue: Some("return {}".to_string()),
                on_failure: None,
            },
        };
        assert_eq!(QueueRecord::decode(&queue.encode()).unwrap(), queue);
    }
}
