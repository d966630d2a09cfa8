//! The API-key store: a fjall database of its own (`<data_dir>/auth`), apart from every
//! shard's queue storage and runtime config, so key records can never be read or overwritten
//! through SetConfig, ListConfig or Lua's `fila.get`.
//!
//! One keyspace `api_keys`: key id → [`KeyRecord::encode`]. Changes are rare (operators
//! managing keys), so each one is written and fsynced on its own: a revocation that was
//! acknowledged survives a crash. Reads happen once, at start; afterwards the server serves
//! every check from memory ([`crate::auth::AuthStore`]).

use std::path::{Path, PathBuf};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use crate::auth::{AuthChange, KeyRecord};

/// Worker threads of the auth database (see the shard storage for why not 1).
const WORKER_THREADS: usize = 2;

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthDbError {
    /// The database could not be opened.
    #[error("cannot open the API-key store in {path}: {source}")]
    Open {
        /// Its directory.
        path: PathBuf,
        /// The engine error.
        #[source]
        source: fjall::Error,
    },
    /// A read, write or fsync failed.
    #[error("API-key store {operation} failed: {source}")]
    Engine {
        /// What was being done.
        operation: &'static str,
        /// The engine error.
        #[source]
        source: fjall::Error,
    },
    /// A stored record does not decode.
    #[error("corrupt API-key record {key:?}: {reason}")]
    Corrupt {
        /// The key id (lossy UTF-8).
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The persistent key store. Cheap to clone; safe to use from any thread (writes are made
/// from a blocking thread, never on a shard's reactor).
#[derive(Clone)]
pub struct AuthDb {
    db: Database,
    keys: fjall::Keyspace,
}

impl std::fmt::Debug for AuthDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthDb").finish_non_exhaustive()
    }
}

impl AuthDb {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<AuthDb, AuthDbError> {
        let path = path.as_ref();
        let open = |source| AuthDbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let db = Database::builder(path)
            .worker_threads(WORKER_THREADS)
            .open()
            .map_err(open)?;
        let keys = db
            .keyspace("api_keys", KeyspaceCreateOptions::default)
            .map_err(open)?;
        Ok(AuthDb { db, keys })
    }

    /// Every stored record.
    pub fn load(&self) -> Result<Vec<KeyRecord>, AuthDbError> {
        let mut records = Vec::new();
        for entry in self.keys.iter() {
            let (key, value) = entry.into_inner().map_err(|source| AuthDbError::Engine {
                operation: "scan",
                source,
            })?;
            let record = KeyRecord::decode(&value).map_err(|reason| AuthDbError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason,
            })?;
            records.push(record);
        }
        Ok(records)
    }

    /// Writes one change and fsyncs it. Blocks for the disk.
    pub fn apply(&self, change: &AuthChange) -> Result<(), AuthDbError> {
        let engine = |operation| move |source| AuthDbError::Engine { operation, source };
        match change {
            AuthChange::Put(record) => self
                .keys
                .insert(record.id.as_bytes(), record.encode())
                .map_err(engine("write"))?,
            AuthChange::Remove(id) => self.keys.remove(id.as_bytes()).map_err(engine("delete"))?,
        }
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(engine("fsync"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::{DIGEST_BYTES, Grant};

    fn record(id: &str) -> KeyRecord {
        KeyRecord {
            id: id.to_owned(),
            name: "n".to_owned(),
            created_at_ms: 5,
            expires_at_ms: 0,
            superadmin: false,
            token_digest: [3; DIGEST_BYTES],
            grants: vec![Grant::parse("produce", "a.*").unwrap()],
            created_by: Some("creator".to_owned()),
        }
    }

    #[test]
    fn changes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = AuthDb::open(dir.path()).unwrap();
            db.apply(&AuthChange::Put(Arc::new(record("a")))).unwrap();
            db.apply(&AuthChange::Put(Arc::new(record("b")))).unwrap();
            db.apply(&AuthChange::Remove("a".to_owned())).unwrap();
        }
        let db = AuthDb::open(dir.path()).unwrap();
        assert_eq!(db.load().unwrap(), vec![record("b")]);
    }
}
