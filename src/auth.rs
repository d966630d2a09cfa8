//! API-key authentication and per-request authorization in the server (wire-protocol §7.1,
//! §7.2, §11, §13): the shell around `fila_shard::auth`.
//!
//! - Every shard holds a full copy of the key store ([`ShardAuth`]), so the handshake (one
//!   SHA-256 and one hash-map lookup) and the permission check of every request read only
//!   shard-local memory, never storage and never another shard.
//! - Changes (CreateApiKey, RevokeApiKey, SetAcl) run one at a time on the home shard
//!   ([`HOME_SHARD`]): it writes and fsyncs the record in the API-key database (its own
//!   fjall database under `<data_dir>/auth`, on a blocking thread), then applies the change on
//!   every shard's copy and answers only when all have it. A revoked key or a narrowed ACL is
//!   therefore refused on any open connection from its next request on.
//! - The bootstrap key (configuration) is a superadmin that is never stored; only its digest
//!   is kept in memory.
//!
//! Translating a decoded wire request into the permission it needs also lives here, in one
//! place ([`action_of`]).

use std::cell::RefCell;
use std::sync::Arc;

use fila_shard::auth::{
    Action, AuthChange, AuthStore, Caller, DIGEST_BYTES, Denied, Grant, KeyRecord, TokenDigest,
};
use fila_shard::storage::auth_db::AuthDb;
use fila_wire::Request;
use ring::rand::SecureRandom;

use crate::config::AuthConfig;

/// The shard that serializes and persists key changes.
pub const HOME_SHARD: usize = 0;
/// Handshake keys longer than this are refused without being hashed.
pub const API_KEY_BYTES_MAX: usize = 4096;
/// Random bytes in a generated token (printed as twice as many lowercase hex digits).
const TOKEN_BYTES: usize = 16;

/// SHA-256 of a token.
pub fn digest(token: &[u8]) -> TokenDigest {
    let hash = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0_u8; DIGEST_BYTES];
    out.copy_from_slice(hash.as_ref());
    out
}

/// A fresh token from the operating system's CSPRNG: 32 lowercase hex digits.
pub fn new_token() -> Result<String, AuthFailure> {
    let mut bytes = [0_u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthFailure::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A key-management request, executed on the home shard.
#[derive(Debug, Clone)]
pub enum AuthMutation {
    /// CreateApiKey.
    Create {
        /// Label.
        name: String,
        /// Unix ms; 0 = never.
        expires_at_ms: u64,
        /// Superadmin key.
        superadmin: bool,
        /// Creation time, Unix ms.
        now_ms: u64,
        /// The creating key (`None` = bootstrap key, or authentication off).
        created_by: Option<String>,
    },
    /// RevokeApiKey.
    Revoke {
        /// Key id.
        key_id: String,
    },
    /// SetAcl (replaces the whole list).
    SetAcl {
        /// Key id.
        key_id: String,
        /// The new grants.
        grants: Vec<Grant>,
    },
}

/// The result of an [`AuthMutation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply {
    /// The key was created; the token is shown only here.
    Created {
        /// New key id.
        key_id: String,
        /// The token.
        token: String,
        /// Echo.
        superadmin: bool,
    },
    /// Revoked or ACL set.
    Done,
    /// No key with that id.
    NotFound,
}

/// Why a key change failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthFailure {
    /// The operating system's random generator failed.
    #[error("the random number generator failed; no key was created")]
    Random,
    /// The API-key database failed.
    #[error("the API-key store failed: {0}")]
    Storage(String),
    /// The home shard is not running (shutdown).
    #[error("the server is shutting down")]
    Stopped,
    /// ListApiKeys can carry at most this many keys (a u16 count), so no more are created.
    #[error(
        "the server already holds {KEYS_MAX} API keys, the most it keeps; revoke unused keys first"
    )]
    TooManyKeys,
}

/// The most API keys the server keeps: ListApiKeys counts them in a u16, and a list that
/// silently omitted keys would hide them from the operator.
pub const KEYS_MAX: usize = u16::MAX as usize;

/// Why a handshake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    /// No key in the handshake.
    #[error("this server requires an API key")]
    Missing,
    /// Unknown, revoked or expired key (not told apart, so a guesser learns nothing).
    #[error("invalid or expired API key")]
    Invalid,
}

/// One shard's view of authentication: whether it is on, the bootstrap digest, its copy of
/// the key store, and (on the home shard) the database.
pub struct ShardAuth {
    enabled: bool,
    bootstrap: Option<TokenDigest>,
    store: RefCell<AuthStore>,
    home: Option<Home>,
    refusals: RefusalLog,
}

/// How often, at most, a shard logs a summary of refused handshakes.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;

/// Refused handshakes of one shard, summarized in one WARN line per interval (a flood of bad
/// keys must neither fill the log nor go unnoticed).
#[derive(Debug, Default)]
struct RefusalLog {
    /// Refusals since the last summary.
    count: std::cell::Cell<u64>,
    /// When the last summary was logged (Unix ms; 0 = never).
    logged_at_ms: std::cell::Cell<u64>,
}

impl RefusalLog {
    /// Counts one refusal at `now_ms`; returns the count to log when a summary is due.
    fn note(&self, now_ms: u64) -> Option<u64> {
        let count = self.count.get() + 1;
        self.count.set(count);
        let last = self.logged_at_ms.get();
        if last != 0 && now_ms < last.saturating_add(REFUSAL_LOG_INTERVAL_MS) {
            return None;
        }
        self.logged_at_ms.set(now_ms.max(1));
        self.count.set(0);
        Some(count)
    }
}

/// What only the home shard has.
struct Home {
    db: AuthDb,
    /// One change at a time: a change is validated, persisted and broadcast before the next.
    lock: glommio::sync::Semaphore,
}

impl std::fmt::Debug for ShardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardAuth")
            .field("enabled", &self.enabled)
            .field("keys", &self.store.borrow().len())
            .field("home", &self.home.is_some())
            .finish()
    }
}

impl ShardAuth {
    /// The view of one shard: `db` is given to the home shard only.
    pub fn new(config: &AuthConfig, store: AuthStore, db: Option<AuthDb>) -> ShardAuth {
        ShardAuth {
            enabled: config.enabled(),
            bootstrap: config
                .bootstrap_apikey
                .as_deref()
                .map(|key| digest(key.as_bytes())),
            store: RefCell::new(store),
            home: db.map(|db| Home {
                db,
                lock: glommio::sync::Semaphore::new(1),
            }),
            refusals: RefusalLog::default(),
        }
    }

    /// Records a refused handshake from `peer`; the first refusal, and then at most one per
    /// [`REFUSAL_LOG_INTERVAL_MS`], logs a WARN line with the count since the previous one.
    pub fn note_refusal(&self, now_ms: u64, peer: std::net::SocketAddr, why: Unauthorized) {
        if let Some(count) = self.refusals.note(now_ms) {
            tracing::warn!(
                refused = count,
                last_peer = %peer,
                reason = %why,
                "refused API-key handshakes since the previous report (at most one report per minute per shard)"
            );
        }
    }

    /// True when connections must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller a handshake names: `Ok(None)` when authentication is off (the key is
    /// ignored, whatever it holds).
    pub fn authenticate(
        &self,
        api_key: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Caller>, Unauthorized> {
        if !self.enabled {
            return Ok(None);
        }
        let key = api_key.ok_or(Unauthorized::Missing)?;
        if key.is_empty() || key.len() > API_KEY_BYTES_MAX {
            return Err(Unauthorized::Invalid);
        }
        self.store
            .borrow()
            .authenticate(&digest(key.as_bytes()), self.bootstrap.as_ref(), now_ms)
            .map(Some)
            .ok_or(Unauthorized::Invalid)
    }

    /// Checks `request` for `caller` (§13) against this shard's copy. SetAcl's grants must
    /// already be parsed (`set_acl`), so it is checked with [`ShardAuth::authorize_set_acl`].
    pub fn authorize(&self, caller: &Caller, request: &Request) -> Result<(), Denied> {
        let store = self.store.borrow();
        match request {
            Request::Enqueue { messages } => each_queue(
                &store,
                caller,
                messages.iter().map(|message| &*message.queue),
                Action::Produce,
            ),
            Request::Ack { items } => each_queue(
                &store,
                caller,
                items.iter().map(|item| &*item.queue),
                Action::Consume,
            ),
            Request::Nack { items } => each_queue(
                &store,
                caller,
                items.iter().map(|item| &*item.queue),
                Action::Consume,
            ),
            other => store.authorize(caller, action_of(other)),
        }
    }

    /// Checks a SetAcl of `grants` on `key_id`.
    pub fn authorize_set_acl(
        &self,
        caller: &Caller,
        key_id: &str,
        grants: &[Grant],
    ) -> Result<(), Denied> {
        self.store
            .borrow()
            .authorize_set_acl(caller, key_id, grants)
    }

    /// True when `caller` may consume from `queue` now (deliveries are checked with this).
    pub fn may_consume(&self, caller: &Caller, queue: &str) -> bool {
        self.store
            .borrow()
            .authorize(caller, Action::Consume(queue))
            .is_ok()
    }

    /// True when `caller` is the bootstrap key or a key that still exists.
    pub fn is_live(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Bootstrap => true,
            Caller::Key(id) => self.store.borrow().get(id).is_some(),
        }
    }

    /// Every key (ListApiKeys).
    pub fn list(&self) -> Vec<Arc<KeyRecord>> {
        self.store.borrow().list()
    }

    /// One key (GetAcl).
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyRecord>> {
        self.store.borrow().get(key_id).cloned()
    }

    /// Applies a change made by the home shard to this shard's copy.
    pub fn apply(&self, change: &AuthChange) {
        self.store.borrow_mut().apply(change);
    }

    /// Waits for the home shard's turn: changes are validated, persisted and broadcast one
    /// at a time, so every shard applies them in the same order. Home shard only.
    pub async fn turn(&self) -> Result<glommio::sync::Permit<'_>, AuthFailure> {
        let Some(home) = &self.home else {
            return Err(AuthFailure::Stopped);
        };
        home.lock
            .acquire_permit(1)
            .await
            .map_err(|_| AuthFailure::Stopped)
    }

    /// Validates `mutation`, persists it and applies it here; the caller holds a
    /// [`ShardAuth::turn`] and broadcasts the returned change to the other shards before
    /// answering. Home shard only.
    pub async fn mutate(
        &self,
        mutation: AuthMutation,
    ) -> Result<(AuthReply, Option<AuthChange>), AuthFailure> {
        let Some(home) = &self.home else {
            return Err(AuthFailure::Stopped);
        };
        let (reply, change) = match mutation {
            AuthMutation::Create {
                name,
                expires_at_ms,
                superadmin,
                now_ms,
                created_by,
            } => {
                if self.store.borrow().len() >= KEYS_MAX {
                    return Err(AuthFailure::TooManyKeys);
                }
                let token = new_token()?;
                let record = KeyRecord {
                    id: uuid::Uuid::new_v4().to_string(),
                    name,
                    created_at_ms: now_ms,
                    expires_at_ms,
                    superadmin,
                    token_digest: digest(token.as_bytes()),
                    grants: Vec::new(),
                    created_by,
                };
                let reply = AuthReply::Created {
                    key_id: record.id.clone(),
                    token,
                    superadmin,
                };
                (reply, AuthChange::Put(Arc::new(record)))
            }
            AuthMutation::Revoke { key_id } => {
                if self.store.borrow().get(&key_id).is_none() {
                    return Ok((AuthReply::NotFound, None));
                }
                (AuthReply::Done, AuthChange::Remove(key_id))
            }
            AuthMutation::SetAcl { key_id, grants } => {
                let Some(existing) = self.store.borrow().get(&key_id).cloned() else {
                    return Ok((AuthReply::NotFound, None));
                };
                let mut record = KeyRecord::clone(&existing);
                // Already free of duplicates (the session drops them while parsing).
                record.grants = grants;
                (AuthReply::Done, AuthChange::Put(Arc::new(record)))
            }
        };
        let db = home.db.clone();
        let stored = change.clone();
        crate::rt::spawn_blocking(move || db.apply(&stored))
            .await
            .map_err(|error| AuthFailure::Storage(error.to_string()))?;
        self.apply(&change);
        Ok((reply, Some(change)))
    }
}

/// Checks `action` on every queue of a batch, once per run of items on the same queue.
fn each_queue<'a>(
    store: &AuthStore,
    caller: &Caller,
    queues: impl Iterator<Item = &'a str>,
    action: fn(&'a str) -> Action<'a>,
) -> Result<(), Denied> {
    let mut last: Option<&str> = None;
    for queue in queues {
        if last != Some(queue) {
            store.authorize(caller, action(queue))?;
            last = Some(queue);
        }
    }
    Ok(())
}

/// The permission a request needs (§13). Batches (Enqueue, Ack, Nack) need one per item
/// queue and are checked by [`ShardAuth::authorize`]; SetAcl is checked against its parsed
/// grants; this answers for everything else.
pub fn action_of(request: &Request) -> Action<'_> {
    match request {
        Request::Handshake(_)
        | Request::Ping
        | Request::Disconnect
        | Request::CancelConsume
        | Request::Enqueue { .. }
        | Request::Ack { .. }
        | Request::Nack { .. } => Action::Open,
        Request::Consume { queue } => Action::Consume(queue),
        Request::CreateQueue(create) => Action::ManageQueue(&create.name),
        Request::DeleteQueue { queue } => Action::ManageQueue(queue),
        // A dry run reads the queue's hooks and runs code against its config: queue admin.
        Request::LuaTest(test) => Action::ManageQueue(&test.queue),
        Request::GetStats { .. }
        | Request::ListQueues
        | Request::SetConfig { .. }
        | Request::GetConfig { .. }
        | Request::ListConfig { .. }
        | Request::Redrive { .. }
        | Request::RevokeApiKey { .. }
        | Request::ListApiKeys
        | Request::GetAcl { .. } => Action::GlobalAdmin,
        Request::CreateApiKey { is_superadmin, .. } => Action::CreateKey {
            superadmin: *is_superadmin,
        },
        // Checked with its grants by `authorize_set_acl`; at least this much is needed.
        Request::SetAcl { .. } => Action::CreateKey { superadmin: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_summarized_once_per_interval() {
        let log = RefusalLog::default();
        assert_eq!(
            log.note(1_000),
            Some(1),
            "the first refusal is reported at once"
        );
        assert_eq!(log.note(2_000), None);
        assert_eq!(log.note(30_000), None);
        assert_eq!(log.note(1_000 + REFUSAL_LOG_INTERVAL_MS), Some(3));
        assert_eq!(log.note(1_001 + REFUSAL_LOG_INTERVAL_MS), None);
    }

    #[test]
    fn digest_is_sha256() {
        let hex: String = digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tokens_are_32_lowercase_hex_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
