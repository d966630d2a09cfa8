//! The token-lease protocol between a throttle key's home shard and the other shards, sans IO.
//!
//! The home ([`ThrottleHome`]) holds the authoritative [`TokenBucket`]. A shard that needs
//! tokens (its [`ThrottleClient`]) sends [`TokenMsg::Request`] with the number it wants
//! (sized to its recent use); the home answers [`TokenMsg::Grant`] with whole tokens, at most
//! a fair share of the burst among recently requesting shards, valid until `expires_at` (one
//! lease window). Granted tokens are *reserved*: they count against the burst until they come
//! back, so the tokens of the whole system (bucket plus leases) never exceed the burst and
//! the admitted count over any interval `T` is at most `burst + rate × T`. A client returns a
//! lease ([`TokenMsg::Return`], with its unused tokens) as soon as it is used up or at expiry;
//! a lease whose return never arrives ends at the home `expires_at + grace` (its tokens
//! counted as used, the safe direction). A request the home cannot serve waits at the home
//! until its refill instant. The home shard is a client of itself without messages.
//!
//! Every message names its lease, so delays and reordering cannot confuse the bookkeeping.

use std::collections::VecDeque;

use crate::ids::ThrottleKey;
use crate::time::Time;

use super::bucket::{EPSILON, TokenBucket};

/// A shard's index.
pub type ShardNo = u32;

/// Default lease window (µs).
pub const LEASE_WINDOW_US: u64 = 50_000;
/// Extra time the home waits for a return after a lease expired (µs).
pub const LEASE_GRACE_US: u64 = 20_000;

/// A protocol message; the caller ships it to the named shard.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenMsg {
    /// Client → home: `shard` wants `want` tokens of `key`.
    Request {
        /// Throttle key.
        key: ThrottleKey,
        /// The requesting shard.
        shard: ShardNo,
        /// Tokens wanted.
        want: u32,
    },
    /// Home → client: a lease of `tokens` valid until `expires_at`.
    Grant {
        /// Throttle key.
        key: ThrottleKey,
        /// Lease number (per home and key).
        lease: u64,
        /// Whole tokens granted (may be 0 when the key's limit went away).
        tokens: u32,
        /// The client must not spend them at or after this instant.
        expires_at: Time,
        /// The home bucket's tokens after the grant (for stats on other shards).
        home_tokens: f64,
    },
    /// Client → home: the lease is over; `tokens` of it were not used.
    Return {
        /// Throttle key.
        key: ThrottleKey,
        /// The returning shard.
        shard: ShardNo,
        /// Lease number.
        lease: u64,
        /// Unused tokens.
        tokens: u32,
    },
}

#[derive(Clone, Debug)]
struct HomeLease {
    shard: ShardNo,
    id: u64,
    granted: u32,
    expires_at: Time,
}

/// The authoritative bucket of one key at its home shard.
#[derive(Clone, Debug)]
pub struct ThrottleHome {
    key: ThrottleKey,
    bucket: TokenBucket,
    leases: Vec<HomeLease>,
    waiting: VecDeque<(ShardNo, u32)>,
    recent: Vec<(ShardNo, Time)>,
    next_lease: u64,
    window_us: u64,
    /// Grants sent.
    pub grants: u64,
    /// Leases that ended without a return.
    pub lost_leases: u64,
}

impl ThrottleHome {
    /// A home with a full bucket.
    pub fn new(key: ThrottleKey, rate: f64, burst: f64, now: Time, window_us: u64) -> Self {
        ThrottleHome {
            key,
            bucket: TokenBucket::new(rate, burst, now),
            leases: Vec::new(),
            waiting: VecDeque::new(),
            recent: Vec::new(),
            next_lease: 1,
            window_us: window_us.max(1),
            grants: 0,
            lost_leases: 0,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &TokenBucket {
        &self.bucket
    }

    /// Tokens in the home bucket at `now`.
    pub fn tokens(&mut self, now: Time) -> f64 {
        self.bucket.tokens(now)
    }

    /// Tokens in the home bucket at `now`, without changing it.
    pub fn tokens_at(&self, now: Time) -> f64 {
        self.bucket.tokens_at(now)
    }

    /// Tokens currently leased out (granted, not yet returned).
    pub fn outstanding(&self) -> u64 {
        self.leases.iter().map(|l| u64::from(l.granted)).sum()
    }

    /// Changes the limit (clamps, never adds). Leases keep running to their expiry.
    pub fn set_limit(
        &mut self,
        now: Time,
        rate: f64,
        burst: f64,
        out: &mut Vec<(ShardNo, TokenMsg)>,
    ) {
        self.bucket.set_limit(now, rate, burst);
        self.serve(now, out);
    }

    /// A request arrived.
    pub fn on_request(
        &mut self,
        now: Time,
        shard: ShardNo,
        want: u32,
        out: &mut Vec<(ShardNo, TokenMsg)>,
    ) {
        self.touch(now, shard);
        match self.waiting.iter_mut().find(|(s, _)| *s == shard) {
            Some(entry) => entry.1 = want.max(1),
            None => self.waiting.push_back((shard, want.max(1))),
        }
        self.serve(now, out);
    }

    /// A return arrived.
    pub fn on_return(
        &mut self,
        now: Time,
        shard: ShardNo,
        lease: u64,
        tokens: u32,
        out: &mut Vec<(ShardNo, TokenMsg)>,
    ) {
        if let Some(pos) = self
            .leases
            .iter()
            .position(|l| l.shard == shard && l.id == lease)
        {
            let l = self.leases.swap_remove(pos);
            self.bucket
                .release(now, f64::from(l.granted), f64::from(tokens.min(l.granted)));
        }
        self.serve(now, out);
    }

    /// Ends overdue leases and serves waiting requests whose tokens have refilled.
    pub fn tick(&mut self, now: Time, out: &mut Vec<(ShardNo, TokenMsg)>) {
        let mut i = 0;
        while let Some(l) = self.leases.get(i) {
            if l.expires_at.plus_micros(LEASE_GRACE_US) <= now {
                let l = self.leases.swap_remove(i);
                self.bucket.release(now, f64::from(l.granted), 0.0);
                self.lost_leases += 1;
            } else {
                i += 1;
            }
        }
        self.serve(now, out);
    }

    /// The next instant [`ThrottleHome::tick`] has work.
    pub fn next_wake(&mut self, now: Time) -> Option<Time> {
        let expiry = self
            .leases
            .iter()
            .map(|l| l.expires_at.plus_micros(LEASE_GRACE_US))
            .min();
        let refill = if self.waiting.is_empty() {
            None
        } else {
            self.bucket.available_at(now, 1.0)
        };
        match (expiry, refill) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn touch(&mut self, now: Time, shard: ShardNo) {
        let horizon = self.window_us.saturating_mul(2);
        self.recent
            .retain(|(_, at)| now.micros_since(*at) < horizon);
        match self.recent.iter_mut().find(|(s, _)| *s == shard) {
            Some(entry) => entry.1 = now,
            None => self.recent.push((shard, now)),
        }
    }

    fn serve(&mut self, now: Time, out: &mut Vec<(ShardNo, TokenMsg)>) {
        let active = self.recent.len().max(self.waiting.len()).max(1) as f64;
        let share = ((self.bucket.burst() / active + EPSILON).floor() as u32).max(1);
        while let Some((shard, want)) = self.waiting.front().copied() {
            if !self.bucket.has(now, 1.0) {
                break;
            }
            let granted = self.bucket.take_whole(now, want.min(share));
            if granted == 0 {
                break;
            }
            self.waiting.pop_front();
            self.bucket.reserve(f64::from(granted));
            let id = self.next_lease;
            self.next_lease += 1;
            let expires_at = now.plus_micros(self.window_us);
            self.leases.push(HomeLease {
                shard,
                id,
                granted,
                expires_at,
            });
            self.grants += 1;
            out.push((
                shard,
                TokenMsg::Grant {
                    key: self.key.clone(),
                    lease: id,
                    tokens: granted,
                    expires_at,
                    home_tokens: self.bucket.tokens_stale(),
                },
            ));
        }
    }
}

#[derive(Clone, Debug)]
struct ClientLease {
    id: u64,
    tokens: u32,
    granted: u32,
    expires_at: Time,
}

/// One shard's side of one key: spends leased tokens, asks for more, returns the rest.
#[derive(Clone, Debug)]
pub struct ThrottleClient {
    key: ThrottleKey,
    shard: ShardNo,
    home: ShardNo,
    lease: Option<ClientLease>,
    requested_at: Option<Time>,
    want: u32,
    burst: u32,
    window_us: u64,
    /// The home's bucket as last reported (stats).
    pub home_tokens: f64,
}

impl ThrottleClient {
    /// A client of `home` for `key`, without tokens yet.
    pub fn new(
        key: ThrottleKey,
        shard: ShardNo,
        home: ShardNo,
        burst: f64,
        window_us: u64,
    ) -> Self {
        ThrottleClient {
            key,
            shard,
            home,
            lease: None,
            requested_at: None,
            want: 1,
            burst: whole(burst),
            window_us: window_us.max(1),
            home_tokens: burst,
        }
    }

    /// The home shard.
    pub fn home(&self) -> ShardNo {
        self.home
    }

    /// Leased tokens usable at `now`.
    pub fn tokens(&self, now: Time) -> u32 {
        match &self.lease {
            Some(l) if now < l.expires_at => l.tokens,
            _ => 0,
        }
    }

    /// True while a request is unanswered.
    pub fn requesting(&self) -> bool {
        self.requested_at.is_some()
    }

    /// A new burst: leased tokens are clamped to it.
    pub fn set_burst(&mut self, burst: f64) {
        self.burst = whole(burst);
        if let Some(l) = &mut self.lease {
            l.tokens = l.tokens.min(self.burst);
        }
    }

    /// Spends one token if the lease has one.
    pub fn try_take(&mut self, now: Time, out: &mut Vec<(ShardNo, TokenMsg)>) -> bool {
        if self.tokens(now) == 0 {
            return false;
        }
        if let Some(l) = &mut self.lease {
            l.tokens -= 1;
            if l.tokens == 0 {
                self.finish_lease(out);
            }
        }
        true
    }

    /// The scheduler wanted a token and had none: ask the home (once per window).
    pub fn on_blocked(&mut self, now: Time, out: &mut Vec<(ShardNo, TokenMsg)>) {
        if self
            .lease
            .as_ref()
            .is_some_and(|l| now >= l.expires_at || l.tokens == 0)
        {
            self.finish_lease(out);
        }
        let due = self
            .requested_at
            .is_none_or(|at| now.micros_since(at) >= self.window_us);
        if due && self.lease.is_none() {
            self.requested_at = Some(now);
            out.push((
                self.home,
                TokenMsg::Request {
                    key: self.key.clone(),
                    shard: self.shard,
                    want: self.want.clamp(1, self.burst.max(1)),
                },
            ));
        }
    }

    /// A grant arrived. Returns true when it brought tokens.
    pub fn on_grant(
        &mut self,
        now: Time,
        lease: u64,
        tokens: u32,
        expires_at: Time,
        home_tokens: f64,
        out: &mut Vec<(ShardNo, TokenMsg)>,
    ) -> bool {
        self.finish_lease(out);
        self.requested_at = None;
        self.home_tokens = home_tokens;
        let tokens = tokens.min(self.burst);
        self.lease = Some(ClientLease {
            id: lease,
            tokens,
            granted: tokens,
            expires_at,
        });
        if tokens == 0 || now >= expires_at {
            self.finish_lease(out);
            return false;
        }
        true
    }

    /// Returns an expired lease.
    pub fn tick(&mut self, now: Time, out: &mut Vec<(ShardNo, TokenMsg)>) {
        if self.lease.as_ref().is_some_and(|l| now >= l.expires_at) {
            self.finish_lease(out);
        }
    }

    /// The next instant [`ThrottleClient::tick`] or a retry of the request is due.
    pub fn next_wake(&self) -> Option<Time> {
        let expiry = self.lease.as_ref().map(|l| l.expires_at);
        let retry = self.requested_at.map(|at| at.plus_micros(self.window_us));
        match (expiry, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when a request is due to be retried at `now`.
    pub fn retry_due(&self, now: Time) -> bool {
        self.requested_at
            .is_some_and(|at| now.micros_since(at) >= self.window_us)
    }

    /// Returns the current lease (its unused tokens go back).
    pub fn finish_lease(&mut self, out: &mut Vec<(ShardNo, TokenMsg)>) {
        let Some(l) = self.lease.take() else {
            return;
        };
        let used = l.granted - l.tokens;
        // Demand estimate for the next request: what this lease served, doubled when it
        // was used up, so a busy shard asks for more and an idle one for less.
        self.want = if l.tokens == 0 {
            used.saturating_mul(2)
        } else {
            used
        }
        .clamp(1, self.burst.max(1));
        out.push((
            self.home,
            TokenMsg::Return {
                key: self.key.clone(),
                shard: self.shard,
                lease: l.id,
                tokens: l.tokens,
            },
        ));
    }
}

fn whole(burst: f64) -> u32 {
    if burst.is_finite() && burst > 0.0 {
        (burst + EPSILON).floor().min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}
