//! A message's in-memory index entry and the stored records about it (index record, body
//! record, lease), plus the queue definition record. Encoding uses the versioned format of
//! `record.rs`.

use std::sync::Arc;

use bytes::Bytes;

use crate::hooks::QueueScripts;
use crate::ids::{ConnectionId, FairnessKey, MessageId, ThrottleKey};
use crate::limits::{HEADERS_MAX, THROTTLE_KEYS_MAX};
use crate::record::{Reader, Writer};
use crate::time::Time;

/// A message as the shard keeps it in memory: its index entry. Headers and payload (the
/// *body*) live in the `bodies` keyspace under [`Message::body_seq`] and are read at delivery
/// time unless the shard's body cache holds them. The fairness key is the slot's key index
/// (one shared string per key, not per message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// UUID v7 given at enqueue.
    pub id: MessageId,
    /// The key of its body record (the sequence its first pending order got).
    pub body_seq: u64,
    /// Throttle keys (from the hook, else none; shared when empty).
    pub throttle_keys: Arc<[ThrottleKey]>,
    /// When it was enqueued.
    pub enqueued_at: Time,
    /// Weight, already clamped to 1..=10,000.
    pub weight: u32,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Number of headers (0: the failure path needs no body read for the hook).
    pub header_count: u32,
}

/// A decoded index record: the message and its fairness key text.
pub struct IndexRecord<'a> {
    /// The message.
    pub message: Message,
    /// Its fairness key.
    pub fairness_key: &'a str,
}

impl Message {
    /// Encodes the index record (everything but headers and payload).
    pub fn encode(&self, fairness_key: &FairnessKey) -> Vec<u8> {
        let throttle_len: usize = self
            .throttle_keys
            .iter()
            .map(|k| 4 + k.as_str().len())
            .sum();
        let capacity = 16 + 8 + 4 + 4 + 8 + 4 + 4 + 4 + fairness_key.as_str().len() + 4;
        let mut w = Writer::new(capacity + throttle_len);
        w.raw(self.id.as_bytes());
        w.u64(self.enqueued_at.as_micros());
        w.u32(self.attempts);
        w.u32(self.weight);
        w.u64(self.body_seq);
        w.u32(self.payload_len);
        w.u32(self.header_count);
        w.str(fairness_key.as_str());
        w.u32(self.throttle_keys.len() as u32);
        for key in self.throttle_keys.iter() {
            w.str(key.as_str());
        }
        w.finish()
    }

    /// Decodes an index record. `throttle` turns the stored throttle keys into the shared
    /// list (so recovery can intern them; it is called with an empty slice for none).
    pub fn decode<'a>(
        record: &'a [u8],
        throttle: &mut dyn FnMut(&[&str]) -> Arc<[ThrottleKey]>,
    ) -> Result<IndexRecord<'a>, String> {
        let mut r = Reader::new(record)?;
        let id = MessageId(uuid::Uuid::from_bytes(r.fixed::<16>()?));
        let enqueued_at = Time::from_micros(r.u64()?);
        let attempts = r.u32()?;
        let weight = r.u32()?;
        let body_seq = r.u64()?;
        let payload_len = r.u32()?;
        let header_count = r.u32()?;
        if header_count as usize > HEADERS_MAX {
            return Err(format!("header count {header_count} exceeds {HEADERS_MAX}"));
        }
        let fairness_key = r.str()?;
        let throttle_count = r.count(THROTTLE_KEYS_MAX, "throttle key")?;
        let throttle_keys = if throttle_count == 0 {
            throttle(&[])
        } else {
            let mut keys = Vec::with_capacity(throttle_count);
            for _ in 0..throttle_count {
                keys.push(r.str()?);
            }
            throttle(&keys)
        };
        r.end()?;
        Ok(IndexRecord {
            message: Message {
                id,
                body_seq,
                throttle_keys,
                enqueued_at,
                weight,
                attempts,
                payload_len,
                header_count,
            },
            fairness_key,
        })
    }
}

/// A message body: headers and payload, shared so a delivery copies neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// Headers as enqueued.
    pub headers: Arc<[(String, String)]>,
    /// Payload as enqueued.
    pub payload: Bytes,
}

/// Bytes a cached body is charged for besides headers and payload (allocation overhead).
pub const BODY_OVERHEAD_BYTES: usize = 64;

impl Body {
    /// What the body cache charges for this body.
    pub fn cost(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| 48 + name.len() + value.len())
            .sum();
        BODY_OVERHEAD_BYTES + headers + self.payload.len()
    }

    /// Encodes a body record.
    pub fn encode(headers: &[(String, String)], payload: &[u8]) -> Vec<u8> {
        let headers_len: usize = headers
            .iter()
            .map(|(name, value)| 8 + name.len() + value.len())
            .sum();
        let mut w = Writer::new(4 + headers_len + 4 + payload.len());
        w.u32(headers.len() as u32);
        for (name, value) in headers {
            w.str(name);
            w.str(value);
        }
        w.bytes(payload);
        w.finish()
    }

    /// Decodes a body record; the payload shares the record's buffer (no copy).
    /// `no_headers` is the shared empty header list.
    pub fn decode(record: Vec<u8>, no_headers: &Arc<[(String, String)]>) -> Result<Body, String> {
        let record = Bytes::from(record);
        let mut r = Reader::new(&record)?;
        let header_count = r.count(HEADERS_MAX, "header")?;
        let headers = if header_count == 0 {
            no_headers.clone()
        } else {
            let mut headers = Vec::with_capacity(header_count);
            for _ in 0..header_count {
                let name = r.str()?.to_string();
                let value = r.str()?.to_string();
                headers.push((name, value));
            }
            headers.into()
        };
        let payload = r.bytes()?;
        r.end()?;
        let payload = record.slice_ref(payload);
        Ok(Body { headers, payload })
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
            body_seq: 77,
            throttle_keys: vec![ThrottleKey::new("api")].into(),
            enqueued_at: Time::from_micros(1_700_000_000_123_456),
            weight: 7,
            attempts: 3,
            payload_len: 7,
            header_count: 1,
        };
        let key = FairnessKey::new("tenant-1");
        let encoded = message.encode(&key);
        let mut intern = |keys: &[&str]| -> Arc<[ThrottleKey]> {
            keys.iter().map(|k| ThrottleKey::new(k)).collect()
        };
        let decoded = Message::decode(&encoded, &mut intern).unwrap();
        assert_eq!(decoded.message, message);
        assert_eq!(decoded.fairness_key, "tenant-1");
        assert!(Message::decode(&encoded[..encoded.len() - 1], &mut intern).is_err());
        let no_headers: Arc<[(String, String)]> = Arc::from(Vec::new());
        let headers = vec![("a".to_string(), "1".to_string())];
        let body = Body::decode(Body::encode(&headers, b"payload"), &no_headers).unwrap();
        assert_eq!(&body.headers[..], &headers[..]);
        assert_eq!(body.payload, Bytes::from_static(b"payload"));
        let bare = Body::decode(Body::encode(&[], b""), &no_headers).unwrap();
        assert!(Arc::ptr_eq(&bare.headers, &no_headers));
        let mut cut = Body::encode(&headers, b"payload");
        cut.pop();
        assert!(Body::decode(cut, &no_headers).is_err());
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
