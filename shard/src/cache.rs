//! The body cache: a byte budget for message bodies held in memory, and the point read that
//! loads a body from storage when it is not held.
//!
//! Bodies live in the message slots themselves (`MsgSlot::body`); this type only accounts
//! for them. Admission happens at enqueue, while the budget has room, so the cache holds the
//! oldest undelivered bodies of each key: the hot head that will be delivered next. A body
//! leaves the cache when it is delivered (the delivery owns it), acked, or its queue is
//! deleted; a later delivery of the same message (after a nack or expiry) reads storage.

use std::sync::Arc;

use crate::command::BodyCacheStats;
use crate::message::Body;
use crate::storage::keys::body_key;
use crate::storage::{Keyspace, Storage};

/// How long deliveries from a queue pause after a failed body read, in ms.
pub const BODY_READ_RETRY_MS: u64 = 100;

/// Accounting of the bodies held in memory.
#[derive(Debug, Default)]
pub struct BodyCache {
    pub(crate) stats: BodyCacheStats,
}

impl BodyCache {
    /// An empty cache with a budget.
    pub fn new(budget_bytes: usize) -> BodyCache {
        BodyCache {
            stats: BodyCacheStats {
                budget_bytes,
                ..BodyCacheStats::default()
            },
        }
    }

    /// Keeps `body` if it fits the budget.
    pub fn admit(&mut self, body: Body) -> Option<Box<Body>> {
        let cost = body.cost();
        let room = self
            .stats
            .budget_bytes
            .saturating_sub(self.stats.used_bytes);
        if cost > room {
            return None;
        }
        self.stats.used_bytes += cost;
        self.stats.entries += 1;
        Some(Box::new(body))
    }

    /// A held body leaves the cache (delivered, acked, deleted).
    pub fn release(&mut self, body: &Body) {
        self.stats.used_bytes = self.stats.used_bytes.saturating_sub(body.cost());
        self.stats.entries = self.stats.entries.saturating_sub(1);
    }

    /// A delivery was served from the cache.
    pub fn hit(&mut self, body: Box<Body>) -> Body {
        self.release(&body);
        self.stats.hits += 1;
        *body
    }

    /// Reads a body from storage, counting the read and any failure.
    pub fn load<S: Storage>(
        &mut self,
        storage: &S,
        body_seq: u64,
        no_headers: &Arc<[(String, String)]>,
    ) -> Result<Body, String> {
        self.stats.reads += 1;
        let result = match storage.get(Keyspace::Bodies, &body_key(body_seq)) {
            Ok(Some(record)) => {
                Body::decode(record, no_headers).map_err(|reason| format!("corrupt body: {reason}"))
            }
            Ok(None) => Err("body record missing".to_string()),
            Err(err) => Err(err.to_string()),
        };
        if result.is_err() {
            self.stats.read_errors += 1;
        }
        result
    }

    /// Records the context of a failed read for the server's log.
    pub fn report(&mut self, what: String) {
        self.stats.last_read_error = Some(what);
    }
}
