//! Throttling: token buckets per throttle key, global across shards by token leases.
//!
//! [`Throttle`] is one shard's throttle state. For each configured key (`throttle.<key>` =
//! `rate,burst`) it holds either a plain [`TokenBucket`] (one shard) or, with several shards,
//! a [`ThrottleClient`] and — on the key's home shard `stable_hash(key) % N` — the
//! authoritative [`ThrottleHome`] (see `lease.rs` for the protocol). The scheduler asks
//! [`Throttle::can_pass`] before it delivers a message, [`Throttle::take`] when it does, and
//! [`Throttle::blocked`] when a message cannot go (counts hits, asks for tokens, and answers
//! the earliest instant worth retrying).
//!
//! Sans IO: messages for other shards collect in an outbox ([`Throttle::take_messages`]);
//! incoming ones go to [`Throttle::receive`]; time-driven work runs in [`Throttle::tick`],
//! due at [`Throttle::next_wake`] (a heap, so 10,000 idle buckets cost nothing per call).

pub mod bucket;
pub mod classes;
pub mod lease;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::ThrottleLimit;
use crate::ids::ThrottleKey;
use crate::time::Time;

pub use bucket::TokenBucket;
pub use lease::{LEASE_WINDOW_US, ShardNo, ThrottleClient, ThrottleHome, TokenMsg};

/// FNV-1a (64 bit): stable across releases and platforms (queue routing uses the same).
pub fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The home shard of a throttle key.
pub fn home_of(key: &str, shards: u32) -> ShardNo {
    (stable_hash(key) % u64::from(shards.max(1))) as ShardNo
}

/// FNV hasher for the key table (the hot path looks up each throttle key of a message).
#[derive(Default, Clone, Copy)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Clone, Debug)]
enum State {
    Local(TokenBucket),
    Leased {
        home: Option<Box<ThrottleHome>>,
        client: ThrottleClient,
    },
}

/// One configured throttle key on this shard.
#[derive(Clone, Debug)]
pub struct KeyThrottle {
    /// The limit in force.
    pub limit: ThrottleLimit,
    /// Times a message could not be delivered for lack of a token of this key
    /// (`fila.throttle.decisions{result=hit}`).
    pub hits: u64,
    /// Deliveries of messages carrying this key (`fila.throttle.decisions{result=pass}`).
    pub passes: u64,
    state: State,
}

/// What stats and metrics see of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleView {
    /// Tokens: the home bucket's (exact on the home shard; elsewhere as of the latest grant)
    /// plus the tokens leased to this shard.
    pub tokens: f64,
    /// Rate per second.
    pub rate_per_second: f64,
    /// Burst.
    pub burst: f64,
    /// Tokens leased out by this shard as home (0 elsewhere).
    pub leased_out: u64,
    /// Hits counted on this shard.
    pub hits: u64,
    /// Passes counted on this shard.
    pub passes: u64,
}

type Outbox = Vec<(ShardNo, TokenMsg)>;

/// The throttle state of one shard.
#[derive(Debug)]
pub struct Throttle {
    shard: ShardNo,
    shards: u32,
    window_us: u64,
    keys: HashMap<ThrottleKey, KeyThrottle, BuildHasherDefault<FnvHasher>>,
    timers: BinaryHeap<Reverse<(Time, ThrottleKey)>>,
    outbox: Outbox,
    local: Outbox,
    released: bool,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(0, 1)
    }
}

impl Throttle {
    /// The throttle of shard `shard` of `shards`.
    pub fn new(shard: ShardNo, shards: u32) -> Throttle {
        Throttle {
            shard,
            shards: shards.max(1),
            window_us: LEASE_WINDOW_US,
            keys: HashMap::default(),
            timers: BinaryHeap::new(),
            outbox: Vec::new(),
            local: Vec::new(),
            released: false,
        }
    }

    /// This shard's index.
    pub fn shard(&self) -> ShardNo {
        self.shard
    }

    /// The shard count.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Sets the lease window (µs); for tests and the simulation.
    pub fn set_lease_window(&mut self, window_us: u64) {
        self.window_us = window_us.max(1);
    }

    /// Changes the topology; every bucket restarts full.
    pub fn set_topology(&mut self, now: Time, shard: ShardNo, shards: u32) {
        self.shard = shard;
        self.shards = shards.max(1);
        let limits: Vec<_> = self
            .keys
            .iter()
            .map(|(k, t)| (k.clone(), t.limit))
            .collect();
        self.keys.clear();
        self.timers.clear();
        for (key, limit) in limits {
            self.set_limit(now, &key, Some(limit));
        }
    }

    /// Number of configured keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True without configured keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn fresh_state(&self, key: &ThrottleKey, limit: ThrottleLimit, now: Time) -> State {
        if self.shards <= 1 {
            return State::Local(TokenBucket::new(limit.rate_per_second, limit.burst, now));
        }
        let home_no = home_of(key.as_str(), self.shards);
        let home = (home_no == self.shard).then(|| {
            Box::new(ThrottleHome::new(
                key.clone(),
                limit.rate_per_second,
                limit.burst,
                now,
                self.window_us,
            ))
        });
        State::Leased {
            home,
            client: ThrottleClient::new(
                key.clone(),
                self.shard,
                home_no,
                limit.burst,
                self.window_us,
            ),
        }
    }

    /// Sets (`Some`) or removes (`None`) the limit of `key`. A new bucket starts full; a
    /// change keeps the tokens, clamped to the new burst.
    pub fn set_limit(&mut self, now: Time, key: &ThrottleKey, limit: Option<ThrottleLimit>) {
        self.released = true;
        let Some(limit) = limit else {
            self.keys.remove(key);
            return;
        };
        let mut out = std::mem::take(&mut self.local);
        match self.keys.get_mut(key) {
            Some(entry) => {
                entry.limit = limit;
                match &mut entry.state {
                    State::Local(bucket) => {
                        bucket.set_limit(now, limit.rate_per_second, limit.burst)
                    }
                    State::Leased { home, client } => {
                        client.set_burst(limit.burst);
                        if let Some(home) = home {
                            home.set_limit(now, limit.rate_per_second, limit.burst, &mut out);
                        }
                    }
                }
            }
            None => {
                let state = self.fresh_state(key, limit, now);
                self.keys.insert(
                    key.clone(),
                    KeyThrottle {
                        limit,
                        hits: 0,
                        passes: 0,
                        state,
                    },
                );
            }
        }
        self.local = out;
        self.flush(now);
        self.schedule(now, key);
    }

    /// True when every configured key among `keys` has a token at `now` (unconfigured keys
    /// always pass).
    #[inline]
    pub fn can_pass(&mut self, keys: &[ThrottleKey], now: Time) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        for key in keys {
            let Some(entry) = self.keys.get_mut(key) else {
                continue;
            };
            let ok = match &mut entry.state {
                State::Local(bucket) => bucket.has(now, 1.0),
                State::Leased { client, .. } => client.tokens(now) > 0,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Takes one token of every configured key among `keys` (the delivery happens) and
    /// counts the passes. Call only after [`Throttle::can_pass`] said yes.
    pub fn take(&mut self, keys: &[ThrottleKey], now: Time) {
        if self.keys.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut self.local);
        let mut touched = false;
        for key in keys {
            let Some(entry) = self.keys.get_mut(key) else {
                continue;
            };
            entry.passes += 1;
            match &mut entry.state {
                State::Local(bucket) => {
                    bucket.try_take(now, 1.0);
                }
                State::Leased { client, .. } => {
                    client.try_take(now, &mut out);
                    touched = true;
                }
            }
        }
        self.local = out;
        if touched {
            self.flush(now);
        }
    }

    /// A message carrying `keys` could not go: counts a hit for each configured key without
    /// a token, asks the homes of leased keys for tokens, and answers when to retry
    /// (`None`: only after an event — a grant, a limit change — or never at this limit).
    pub fn blocked(&mut self, keys: &[ThrottleKey], now: Time) -> Option<Time> {
        let mut out = std::mem::take(&mut self.local);
        let mut at = Some(now);
        let mut touched: Vec<ThrottleKey> = Vec::new();
        for key in keys {
            let Some(entry) = self.keys.get_mut(key) else {
                continue;
            };
            match &mut entry.state {
                State::Local(bucket) => {
                    if !bucket.has(now, 1.0) {
                        entry.hits += 1;
                        at = match (at, bucket.available_at(now, 1.0)) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                }
                State::Leased { client, .. } => {
                    if client.tokens(now) == 0 {
                        entry.hits += 1;
                        client.on_blocked(now, &mut out);
                        touched.push(key.clone());
                        at = None;
                    }
                }
            }
        }
        self.local = out;
        if !touched.is_empty() {
            self.flush(now);
            for key in &touched {
                self.schedule(now, key);
            }
        }
        at
    }

    /// A protocol message from another shard (or this one).
    pub fn receive(&mut self, now: Time, msg: TokenMsg) {
        self.local.push((self.shard, msg));
        self.flush(now);
    }

    /// Handles messages addressed to this shard; the rest go to the outbox.
    fn flush(&mut self, now: Time) {
        let mut guard = 0;
        while !self.local.is_empty() && guard < 1_000 {
            guard += 1;
            let batch = std::mem::take(&mut self.local);
            let mut out = Vec::new();
            for (to, msg) in batch {
                if to != self.shard {
                    self.outbox.push((to, msg));
                    continue;
                }
                let key = match &msg {
                    TokenMsg::Request { key, .. }
                    | TokenMsg::Grant { key, .. }
                    | TokenMsg::Return { key, .. } => key.clone(),
                };
                self.handle(now, msg, &mut out);
                self.schedule(now, &key);
            }
            self.local = out;
        }
    }

    fn handle(&mut self, now: Time, msg: TokenMsg, out: &mut Outbox) {
        match msg {
            TokenMsg::Request { key, shard, want } => {
                let home = match self.keys.get_mut(&key) {
                    Some(KeyThrottle {
                        state:
                            State::Leased {
                                home: Some(home), ..
                            },
                        ..
                    }) => home,
                    _ => {
                        // Not (or no longer) limited here: an empty grant ends the request.
                        out.push((
                            shard,
                            TokenMsg::Grant {
                                key,
                                lease: 0,
                                tokens: 0,
                                expires_at: now,
                                home_tokens: 0.0,
                            },
                        ));
                        return;
                    }
                };
                home.on_request(now, shard, want, out);
            }
            TokenMsg::Return {
                key,
                shard,
                lease,
                tokens,
            } => {
                if let Some(KeyThrottle {
                    state:
                        State::Leased {
                            home: Some(home), ..
                        },
                    ..
                }) = self.keys.get_mut(&key)
                {
                    home.on_return(now, shard, lease, tokens, out);
                }
            }
            TokenMsg::Grant {
                key,
                lease,
                tokens,
                expires_at,
                home_tokens,
            } => match self.keys.get_mut(&key) {
                Some(KeyThrottle {
                    state: State::Leased { client, .. },
                    ..
                }) => {
                    if client.on_grant(now, lease, tokens, expires_at, home_tokens, out) {
                        self.released = true;
                    }
                }
                _ => {
                    // No longer limited here: give the tokens back at once.
                    if tokens > 0 {
                        out.push((
                            home_of(key.as_str(), self.shards),
                            TokenMsg::Return {
                                key,
                                shard: self.shard,
                                lease,
                                tokens,
                            },
                        ));
                    }
                }
            },
        }
    }

    fn schedule(&mut self, now: Time, key: &ThrottleKey) {
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let State::Leased { home, client } = &mut entry.state else {
            return;
        };
        let a = home.as_mut().and_then(|h| h.next_wake(now));
        let b = client.next_wake();
        let at = match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.timers.push(Reverse((at, key.clone())));
        }
    }

    /// Time-driven work: returns expired leases, retries unanswered requests, ends overdue
    /// leases at homes and serves waiting requests whose tokens refilled.
    pub fn tick(&mut self, now: Time) {
        let mut due: Vec<ThrottleKey> = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.timers.pop()
                && !due.contains(&key)
            {
                due.push(key);
            }
        }
        if due.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut self.local);
        for key in &due {
            let Some(entry) = self.keys.get_mut(key) else {
                continue;
            };
            if let State::Leased { home, client } = &mut entry.state {
                client.tick(now, &mut out);
                if client.retry_due(now) {
                    client.on_blocked(now, &mut out);
                }
                if let Some(home) = home {
                    home.tick(now, &mut out);
                }
            }
        }
        self.local = out;
        self.flush(now);
        for key in &due {
            self.schedule(now, key);
        }
    }

    /// The next instant [`Throttle::tick`] has work (entries may be spurious).
    pub fn next_wake(&self) -> Option<Time> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Messages for other shards, to ship over the mesh.
    pub fn take_messages(&mut self) -> Vec<(ShardNo, TokenMsg)> {
        std::mem::take(&mut self.outbox)
    }

    /// True when messages wait in the outbox.
    pub fn has_messages(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// True (once) when tokens may have appeared by an event rather than by refill over
    /// time: parked keys should try again now.
    pub fn take_released(&mut self) -> bool {
        std::mem::take(&mut self.released)
    }

    /// The configured key `key`, if any.
    pub fn key(&self, key: &str) -> Option<&KeyThrottle> {
        self.keys.get(&ThrottleKey::new(key))
    }

    /// The view of one key at `now` (stats, metrics); read-only.
    pub fn view_at(&self, key: &ThrottleKey, now: Time) -> Option<ThrottleView> {
        let entry = self.keys.get(key)?;
        let (tokens, leased_out) = match &entry.state {
            State::Local(bucket) => (bucket.tokens_at(now), 0),
            State::Leased { home, client } => {
                let own = f64::from(client.tokens(now));
                match home {
                    Some(home) => (home.tokens_at(now) + own, home.outstanding()),
                    None => (client.home_tokens + own, 0),
                }
            }
        };
        Some(ThrottleView {
            tokens: tokens.min(entry.limit.burst),
            rate_per_second: entry.limit.rate_per_second,
            burst: entry.limit.burst,
            leased_out,
            hits: entry.hits,
            passes: entry.passes,
        })
    }

    /// True when this shard holds the authoritative bucket of `key`.
    pub fn is_home(&self, key: &str) -> bool {
        home_of(key, self.shards) == self.shard
    }

    /// Every configured key with its view at `now`, in key order (metrics export).
    pub fn views_at(&self, now: Time) -> Vec<(ThrottleKey, ThrottleView)> {
        let mut keys: Vec<&ThrottleKey> = self.keys.keys().collect();
        keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        keys.into_iter()
            .filter_map(|k| self.view_at(k, now).map(|v| (k.clone(), v)))
            .collect()
    }
}
