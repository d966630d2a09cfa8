//! API keys and ACLs (wire-protocol §7.2, §11, §13), sans-IO: the key records, the in-memory
//! store every shard holds a full copy of, and the authorization decisions.
//!
//! Nothing here reads a clock, makes random bytes or hashes: callers pass `now_ms`, fresh
//! tokens and their SHA-256 digests, so every decision is deterministic and testable. The
//! server persists records in a database of their own (never the runtime config), applies
//! every change on every shard's copy, and checks permissions against the local copy only.
//!
//! Rules beyond the reference server (documented in docs/security.md): an admin whose grants
//! are not global may change the ACL only of a key that is not a superadmin, whose current
//! grants all lie inside the caller's admin patterns, and which either has grants or was
//! created by the caller — so one tenant's admin can neither strip another tenant's key nor
//! claim a fresh key another admin created. `p.*` does not cover `p.dlq` (see
//! [`Pattern::matches`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::record::{Reader, Writer};

/// Bytes of a SHA-256 digest.
pub const DIGEST_BYTES: usize = 32;
/// A token's SHA-256 digest: the only form in which tokens are stored.
pub type TokenDigest = [u8; DIGEST_BYTES];
/// Most grants one key may hold.
pub const GRANTS_MAX: usize = 1024;
/// Longest accepted key name and pattern, in bytes.
pub const TEXT_BYTES_MAX: usize = 1024;
/// What follows `<queue>.` in the name of a queue's dead-letter queue.
const DLQ_SUFFIX_NAME: &str = "dlq";

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PermKind {
    /// Enqueue.
    Produce,
    /// Consume, Ack, Nack.
    Consume,
    /// Queue and key management.
    Admin,
}

impl PermKind {
    /// Parses the wire spelling (`produce`, `consume`, `admin`).
    pub fn parse(text: &str) -> Option<PermKind> {
        match text {
            "produce" => Some(PermKind::Produce),
            "consume" => Some(PermKind::Consume),
            "admin" => Some(PermKind::Admin),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermKind::Produce => "produce",
            PermKind::Consume => "consume",
            PermKind::Admin => "admin",
        }
    }

    fn code(self) -> u8 {
        match self {
            PermKind::Produce => 0,
            PermKind::Consume => 1,
            PermKind::Admin => 2,
        }
    }

    fn from_code(code: u8) -> Option<PermKind> {
        match code {
            0 => Some(PermKind::Produce),
            1 => Some(PermKind::Consume),
            2 => Some(PermKind::Admin),
            _ => None,
        }
    }
}

/// Which queues a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every queue.
    Any,
    /// `<prefix>.*`: names starting with `<prefix>.` (held with the dot).
    Prefix(String),
    /// Exactly one name.
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `<prefix>.*` or an exact name. Refused: the empty pattern, `.*` (an empty
    /// prefix), a `*` anywhere else (`a*`, `a.*.b`, `a.*.*`), and control characters or
    /// surrounding whitespace.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let invalid = |why: &str| {
            Err(format!(
                "invalid permission pattern {text:?}: {why}; use *, <prefix>.* or an exact queue name"
            ))
        };
        if text.is_empty() {
            return Err("a permission pattern must not be empty".to_owned());
        }
        if text.len() > TEXT_BYTES_MAX {
            return Err(format!(
                "a permission pattern is {} bytes, the limit is {TEXT_BYTES_MAX}",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return invalid("control characters are not allowed");
        }
        if text.trim() != text {
            return invalid("leading or trailing whitespace is not allowed");
        }
        if text == "*" {
            return Ok(Pattern::Any);
        }
        let (body, prefix) = match text.strip_suffix(".*") {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.is_empty() || body.contains('*') {
            return invalid("* may only be the whole pattern or follow the last \".\"");
        }
        Ok(if prefix {
            Pattern::Prefix(format!("{body}."))
        } else {
            Pattern::Exact(text.to_owned())
        })
    }

    /// True when `queue` is covered. Beyond the reference server, `p.*` does not cover
    /// `p.dlq`: that is the dead-letter queue of the queue `p`, which `p.*` does not cover
    /// either (it covers `p.x.dlq`, the DLQ of `p.x`).
    pub fn matches(&self, queue: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(prefix) => queue
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest != DLQ_SUFFIX_NAME),
            Pattern::Exact(name) => queue == name,
        }
    }

    /// True when everything `other` covers is covered by `self` (§13 containment: `*`
    /// contains everything; `p.*` contains `p.x` and `p.x.*`; an exact name only itself;
    /// nothing but `*` contains `*`).
    pub fn contains(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Any, _) => true,
            (_, Pattern::Any) => false,
            (Pattern::Prefix(outer), Pattern::Prefix(inner)) => inner.starts_with(outer.as_str()),
            (Pattern::Prefix(_), Pattern::Exact(name)) => self.matches(name),
            (Pattern::Exact(outer), Pattern::Exact(name)) => outer == name,
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Prefix(prefix) => write!(f, "{prefix}*"),
            Pattern::Exact(name) => f.write_str(name),
        }
    }
}

/// One permission.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    /// What it allows.
    pub kind: PermKind,
    /// Where.
    pub pattern: Pattern,
}

impl Grant {
    /// Parses a wire `(kind, pattern)` pair; an unknown kind or bad pattern is refused.
    pub fn parse(kind: &str, pattern: &str) -> Result<Grant, String> {
        let kind = PermKind::parse(kind).ok_or_else(|| {
            format!("unknown permission kind {kind:?}: expected produce, consume or admin")
        })?;
        Ok(Grant {
            kind,
            pattern: Pattern::parse(pattern)?,
        })
    }
}

/// A stored API key. The token itself is never kept, only its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id (UUID v4 text).
    pub id: String,
    /// The operator's label.
    pub name: String,
    /// Unix ms.
    pub created_at_ms: u64,
    /// Unix ms; 0 = never expires.
    pub expires_at_ms: u64,
    /// Passes every check.
    pub superadmin: bool,
    /// SHA-256 of the token.
    pub token_digest: TokenDigest,
    /// The ACL, in the order it was set.
    pub grants: Vec<Grant>,
    /// The key that created this one; `None` = the bootstrap key, or authentication off.
    pub created_by: Option<String>,
}

impl fmt::Debug for KeyRecord {
    /// Never prints the digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("superadmin", &self.superadmin)
            .field("grants", &self.grants)
            .field("created_by", &self.created_by)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// True when the key has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && now_ms >= self.expires_at_ms
    }

    /// The stored form (versioned; see `record.rs`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(64 + self.name.len() + 16 * self.grants.len());
        w.str(&self.id);
        w.str(&self.name);
        w.u64(self.created_at_ms);
        w.u64(self.expires_at_ms);
        w.u8(u8::from(self.superadmin));
        w.raw(&self.token_digest);
        w.u32(u32::try_from(self.grants.len()).unwrap_or(u32::MAX));
        for grant in &self.grants {
            w.u8(grant.kind.code());
            w.str(&grant.pattern.to_string());
        }
        w.opt_str(self.created_by.as_deref());
        w.finish()
    }

    /// Decodes [`KeyRecord::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<KeyRecord, String> {
        let mut r = Reader::new(bytes)?;
        let id = r.str()?.to_owned();
        let name = r.str()?.to_owned();
        let created_at_ms = r.u64()?;
        let expires_at_ms = r.u64()?;
        let superadmin = r.u8()? != 0;
        let token_digest = r.fixed::<DIGEST_BYTES>()?;
        let count = r.count(GRANTS_MAX, "grants")?;
        let mut grants = Vec::with_capacity(count);
        for _ in 0..count {
            let code = r.u8()?;
            let kind =
                PermKind::from_code(code).ok_or_else(|| format!("unknown grant kind {code}"))?;
            let pattern = Pattern::parse(r.str()?)?;
            grants.push(Grant { kind, pattern });
        }
        let created_by = r.opt_str()?.map(str::to_owned);
        r.end()?;
        Ok(KeyRecord {
            id,
            name,
            created_at_ms,
            expires_at_ms,
            superadmin,
            token_digest,
            grants,
            created_by,
        })
    }

    fn admin_patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.grants
            .iter()
            .filter(|grant| grant.kind == PermKind::Admin)
            .map(|grant| &grant.pattern)
    }
}

/// Who sent a request, fixed at handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The configured bootstrap key: a superadmin that is never stored.
    Bootstrap,
    /// A stored key, by id (looked up on every request, so revocation is immediate).
    Key(String),
}

/// What a request needs (§13), computed by the shell from the decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Nothing (Ping, CancelConsume, Disconnect).
    Open,
    /// `produce` on the queue.
    Produce(&'a str),
    /// `consume` on the queue.
    Consume(&'a str),
    /// CreateQueue / DeleteQueue: at least one admin grant and one matching the name.
    ManageQueue(&'a str),
    /// Operations on every queue or on keys: an admin grant with the literal pattern `*`.
    GlobalAdmin,
    /// CreateApiKey: at least one admin grant; a superadmin key needs a superadmin caller.
    CreateKey {
        /// The new key is a superadmin.
        superadmin: bool,
    },
}

/// Why a request is refused (the message is sent with `Forbidden`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller's key was revoked after the handshake.
    #[error("the API key of this connection has been revoked")]
    Revoked,
    /// No grant of the kind matches the queue.
    #[error("this API key has no {kind} permission on queue {queue:?}")]
    Queue {
        /// The kind needed.
        kind: &'static str,
        /// The queue.
        queue: String,
    },
    /// Global admin needed.
    #[error("this operation needs an admin permission on \"*\"")]
    GlobalAdmin,
    /// No admin grant at all.
    #[error("this operation needs an admin permission")]
    NoAdmin,
    /// Creating a superadmin key needs a superadmin.
    #[error("only a superadmin can create a superadmin key")]
    SuperadminOnly,
    /// SetAcl outside the caller's admin patterns.
    #[error("pattern {pattern:?} is outside this API key's admin patterns")]
    Delegation {
        /// The requested pattern.
        pattern: String,
    },
    /// SetAcl on a key this admin does not control.
    #[error(
        "API key {key_id:?} is not managed by this API key (a superadmin, a key with permissions outside this key's admin patterns, or a key without permissions created by another key)"
    )]
    ForeignKey {
        /// The target key.
        key_id: String,
    },
}

/// A change to the store, applied on every shard in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthChange {
    /// Insert or replace a record.
    Put(Arc<KeyRecord>),
    /// Remove a key.
    Remove(String),
}

/// Every stored key, indexed by id and by token digest (both O(1)).
#[derive(Clone, Debug, Default)]
pub struct AuthStore {
    by_id: HashMap<String, Arc<KeyRecord>>,
    by_digest: HashMap<TokenDigest, String>,
}

impl AuthStore {
    /// A store holding `records`.
    pub fn from_records(records: impl IntoIterator<Item = KeyRecord>) -> AuthStore {
        let mut store = AuthStore::default();
        for record in records {
            store.apply(&AuthChange::Put(Arc::new(record)));
        }
        store
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &AuthChange) {
        match change {
            AuthChange::Put(record) => {
                if let Some(old) = self.by_id.insert(record.id.clone(), Arc::clone(record)) {
                    self.by_digest.remove(&old.token_digest);
                }
                self.by_digest
                    .insert(record.token_digest, record.id.clone());
            }
            AuthChange::Remove(id) => {
                if let Some(old) = self.by_id.remove(id) {
                    self.by_digest.remove(&old.token_digest);
                }
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<KeyRecord>> {
        self.by_id.get(id)
    }

    /// Every key, oldest first (then by id).
    pub fn list(&self) -> Vec<Arc<KeyRecord>> {
        let mut keys: Vec<_> = self.by_id.values().cloned().collect();
        keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        keys
    }

    /// The caller a handshake token names: the bootstrap key, or a stored key that has not
    /// expired at `now_ms`. `None` = Unauthorized.
    pub fn authenticate(
        &self,
        digest: &TokenDigest,
        bootstrap: Option<&TokenDigest>,
        now_ms: u64,
    ) -> Option<Caller> {
        if bootstrap.is_some_and(|b| b == digest) {
            return Some(Caller::Bootstrap);
        }
        let id = self.by_digest.get(digest)?;
        let record = self.by_id.get(id)?;
        (!record.expired(now_ms)).then(|| Caller::Key(record.id.clone()))
    }

    /// The record of a caller; `Ok(None)` for the bootstrap key.
    fn record_of(&self, caller: &Caller) -> Result<Option<&KeyRecord>, Denied> {
        match caller {
            Caller::Bootstrap => Ok(None),
            Caller::Key(id) => self
                .by_id
                .get(id)
                .map(|record| Some(record.as_ref()))
                .ok_or(Denied::Revoked),
        }
    }

    /// True when `caller` is the bootstrap key or a live superadmin key.
    pub fn is_superadmin(&self, caller: &Caller) -> bool {
        match self.record_of(caller) {
            Ok(None) => true,
            Ok(Some(record)) => record.superadmin,
            Err(_) => false,
        }
    }

    /// Decides one request (§13).
    pub fn authorize(&self, caller: &Caller, action: Action<'_>) -> Result<(), Denied> {
        if action == Action::Open {
            return Ok(());
        }
        let Some(record) = self.record_of(caller)? else {
            return Ok(());
        };
        if record.superadmin {
            return Ok(());
        }
        let has = |kind: PermKind, queue: &str| {
            record
                .grants
                .iter()
                .any(|grant| grant.kind == kind && grant.pattern.matches(queue))
        };
        let queue_denied = |kind: PermKind, queue: &str| Denied::Queue {
            kind: kind.as_str(),
            queue: queue.to_owned(),
        };
        match action {
            Action::Open => Ok(()),
            Action::Produce(queue) => has(PermKind::Produce, queue)
                .then_some(())
                .ok_or_else(|| queue_denied(PermKind::Produce, queue)),
            Action::Consume(queue) => has(PermKind::Consume, queue)
                .then_some(())
                .ok_or_else(|| queue_denied(PermKind::Consume, queue)),
            Action::ManageQueue(queue) => {
                if record.admin_patterns().next().is_none() {
                    return Err(Denied::NoAdmin);
                }
                has(PermKind::Admin, queue)
                    .then_some(())
                    .ok_or_else(|| queue_denied(PermKind::Admin, queue))
            }
            Action::GlobalAdmin => record
                .admin_patterns()
                .any(|pattern| *pattern == Pattern::Any)
                .then_some(())
                .ok_or(Denied::GlobalAdmin),
            Action::CreateKey { superadmin } => {
                if superadmin {
                    return Err(Denied::SuperadminOnly);
                }
                if record.admin_patterns().next().is_none() {
                    return Err(Denied::NoAdmin);
                }
                Ok(())
            }
        }
    }

    /// Decides a SetAcl of `grants` on `target` (§13 delegation, plus the foreign-key rule of
    /// the module doc). A target that does not exist is not refused here: the caller answers
    /// ApiKeyNotFound.
    pub fn authorize_set_acl(
        &self,
        caller: &Caller,
        target: &str,
        grants: &[Grant],
    ) -> Result<(), Denied> {
        let Some(record) = self.record_of(caller)? else {
            return Ok(());
        };
        if record.superadmin {
            return Ok(());
        }
        let admin: Vec<&Pattern> = record.admin_patterns().collect();
        if admin.is_empty() {
            return Err(Denied::NoAdmin);
        }
        let inside = |pattern: &Pattern| admin.iter().any(|outer| outer.contains(pattern));
        for grant in grants {
            if !inside(&grant.pattern) {
                return Err(Denied::Delegation {
                    pattern: grant.pattern.to_string(),
                });
            }
        }
        let own = |existing: &KeyRecord| match caller {
            Caller::Key(id) => existing.created_by.as_deref() == Some(id.as_str()),
            Caller::Bootstrap => false,
        };
        if !admin.contains(&&Pattern::Any)
            && let Some(existing) = self.by_id.get(target)
            && (existing.superadmin
                || !existing.grants.iter().all(|g| inside(&g.pattern))
                || (existing.grants.is_empty() && !own(existing)))
        {
            return Err(Denied::ForeignKey {
                key_id: target.to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
