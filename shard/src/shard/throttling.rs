//! The shard's side of throttling: keeping the [`Throttle`] in step with runtime config,
//! the lease protocol's entry points for the server, and read-only accessors for stats
//! and metrics.

use crate::config::{THROTTLE_PREFIX, parse_throttle_value};
use crate::ids::ThrottleKey;
use crate::storage::Storage;
use crate::throttle::{ShardNo, Throttle, ThrottleView, TokenMsg};
use crate::time::Time;

use super::Shard;

impl<S: Storage> Shard<S> {
    /// Tells the shard its place among `shards` (throttle homes and leases). Every bucket
    /// restarts full. One shard (the default) uses plain local buckets.
    pub fn set_throttle_topology(&mut self, now: Time, shard: u32, shards: u32) {
        let now = self.advance(now);
        self.throttle.set_topology(now, shard, shards);
        self.release_throttled();
    }

    /// Sets the lease window in µs (tests, simulation; default 50 ms).
    pub fn set_throttle_lease_window(&mut self, window_us: u64) {
        self.throttle.set_lease_window(window_us);
    }

    /// Rebuilds every bucket (full) from the runtime config (recovery).
    pub(crate) fn sync_throttle(&mut self, now: Time) {
        let limits: Vec<_> = self
            .config
            .throttle_limits()
            .map(|(k, l)| (ThrottleKey::new(k), l))
            .collect();
        let (shard, shards) = (self.throttle.shard(), self.throttle.shards());
        self.throttle = Throttle::new(shard, shards);
        for (key, limit) in limits {
            self.throttle.set_limit(now, &key, Some(limit));
        }
    }

    /// After a SetConfig was applied: a `throttle.<key>` change reaches the bucket.
    pub(crate) fn throttle_config_changed(&mut self, now: Time, key: &str, value: &str) {
        let Some(name) = key.strip_prefix(THROTTLE_PREFIX) else {
            return;
        };
        let limit = if value.is_empty() {
            None
        } else {
            parse_throttle_value(value)
        };
        self.throttle.set_limit(now, &ThrottleKey::new(name), limit);
        self.release_throttled();
    }

    /// When tokens may have appeared by an event (grant, limit change), every parked key of
    /// every queue tries again now.
    pub(crate) fn release_throttled(&mut self) {
        if !self.throttle.take_released() {
            return;
        }
        let refs: Vec<_> = self.queues.iter().map(|(r, _)| r).collect();
        for r in refs {
            if let Some(q) = self.queues.get_mut(r) {
                q.unpark_all();
            }
            self.wake(r);
        }
    }

    /// A lease-protocol message from another shard. Then ship [`Shard::take_throttle_messages`].
    pub fn throttle_receive(&mut self, now: Time, msg: TokenMsg) {
        let now = self.advance(now);
        self.throttle.receive(now, msg);
        self.release_throttled();
    }

    /// Lease-protocol messages to ship: (destination shard, message).
    pub fn take_throttle_messages(&mut self) -> Vec<(ShardNo, TokenMsg)> {
        self.throttle.take_messages()
    }

    /// True when lease-protocol messages wait to be shipped.
    pub fn has_throttle_messages(&self) -> bool {
        self.throttle.has_messages()
    }

    /// Tokens of a configured throttle key as this shard sees them (see [`ThrottleView`]).
    pub fn throttle_tokens(&self, key: &str, now: Time) -> Option<f64> {
        self.throttle_view(key, now).map(|v| v.tokens)
    }

    /// The view of one configured throttle key (tokens, limit, hits, passes).
    pub fn throttle_view(&self, key: &str, now: Time) -> Option<ThrottleView> {
        self.throttle.view_at(&ThrottleKey::new(key), now)
    }

    /// Every configured throttle key with its view, in key order: the accessor for
    /// `fila.throttle.decisions{result=hit|pass}` (cumulative per shard) and
    /// `fila.throttle.tokens_remaining`.
    pub fn throttle_views(&self) -> Vec<(ThrottleKey, ThrottleView)> {
        self.throttle.views_at(self.now)
    }
}
