//! The data directory: created on first start, locked for the life of the process
//! (`<data_dir>/fila.lock`) so that two brokers never share it, and the shard count recorded in
//! `<data_dir>/meta.toml` and enforced (queues live on `hash % shards`, so the count is part of
//! the data). Each shard owns `<data_dir>/shard-<i>/`. What is stored inside is not this
//! module's business.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "fila.lock";
/// Name of the metadata file inside the data directory.
pub const META_FILE: &str = "meta.toml";
/// Layout version written to the metadata file.
const FORMAT_VERSION: u32 = 1;

/// An open, locked data directory. The lock is released when this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    shard_count: NonZeroUsize,
    created: bool,
    _lock: File,
}

/// How the shard count was chosen, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardCountOrigin {
    /// Set by flag, environment or file, and matching any recorded count.
    Explicit,
    /// Adopted from `meta.toml`.
    Recorded,
    /// First start without an explicit count: the default.
    Default,
}

/// What the data directory records about itself.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format_version: u32,
    shards: usize,
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Creating, reading or writing inside the directory failed.
    #[error("data directory {}: cannot {action}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "data directory {} is in use by another fila-server{holder} (lock file {}); \
         stop that server or choose another --data-dir",
        dir.display(), lock.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// ` (pid N)` when the lock file names its holder, else empty.
        holder: String,
    },
    /// `meta.toml` exists but cannot be understood.
    #[error("data directory {}: {} is damaged or from a newer version: {message}", dir.display(), META_FILE)]
    BadMeta {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Shard directories exist but no `meta.toml` says how many shards wrote them.
    #[error(
        "data directory {} contains shard directories but no {META_FILE}; \
         it was not written by this fila-server (or {META_FILE} was deleted), refusing to guess \
         the shard count",
        dir.display()
    )]
    MissingMeta {
        /// The data directory.
        dir: PathBuf,
    },
    /// The explicit shard count differs from the recorded one.
    #[error(
        "data directory {} was created with {recorded} shards, but {requested} were requested; \
         queues are placed by hash modulo the shard count, so the count cannot change in place. \
         To keep this data, start with --shards {recorded} (or remove the shards setting: \
         the recorded count is adopted). To run {requested} shards, start a new broker on an \
         empty data directory and move the queues over (drain the old broker with consumers \
         and re-enqueue into the new one)",
        dir.display()
    )]
    ShardCountMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The count in `meta.toml`.
        recorded: usize,
        /// The count asked for.
        requested: usize,
    },
}

impl DataDir {
    /// Creates (if needed) and locks `path`, then settles the shard count: the explicit
    /// `requested` count must match a recorded one; without one, the recorded count is adopted,
    /// or on first start `default` is used. The count is recorded on first start.
    pub fn open(
        path: &Path,
        requested: Option<NonZeroUsize>,
        default: NonZeroUsize,
    ) -> Result<(DataDir, ShardCountOrigin), DataDirError> {
        let io = |path: &Path, action| {
            let path = path.to_path_buf();
            move |source| DataDirError::Io {
                path,
                action,
                source,
            }
        };
        std::fs::create_dir_all(path).map_err(io(path, "create the directory"))?;
        let lock = lock(path)?;
        let recorded = read_meta(path)?;
        let (count, origin) = match (recorded, requested) {
            (Some(recorded), Some(requested)) if recorded != requested => {
                return Err(DataDirError::ShardCountMismatch {
                    dir: path.to_path_buf(),
                    recorded: recorded.get(),
                    requested: requested.get(),
                });
            }
            (Some(recorded), Some(_)) => (recorded, ShardCountOrigin::Explicit),
            (Some(recorded), None) => (recorded, ShardCountOrigin::Recorded),
            (None, Some(requested)) => (requested, ShardCountOrigin::Explicit),
            (None, None) => (default, ShardCountOrigin::Default),
        };
        let created = recorded.is_none();
        if created {
            if has_shard_dirs(path).map_err(io(path, "list the directory"))? {
                return Err(DataDirError::MissingMeta {
                    dir: path.to_path_buf(),
                });
            }
            write_meta(path, count)?;
        }
        let dir = DataDir {
            path: path.to_path_buf(),
            shard_count: count,
            created,
            _lock: lock,
        };
        for shard in 0..count.get() {
            let shard_dir = dir.shard_dir(shard);
            std::fs::create_dir_all(&shard_dir)
                .map_err(io(&shard_dir, "create a shard directory"))?;
        }
        Ok((dir, origin))
    }

    /// The shard count a start on `path` would use, without creating, locking or recording
    /// anything: `requested` if given, else the recorded count, else `default`. For checks
    /// that must pass before the directory is touched (a failed start leaves nothing behind).
    pub fn planned_count(
        path: &Path,
        requested: Option<NonZeroUsize>,
        default: NonZeroUsize,
    ) -> Result<NonZeroUsize, DataDirError> {
        if let Some(requested) = requested {
            return Ok(requested);
        }
        Ok(read_meta(path)?.unwrap_or(default))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settled shard count.
    pub fn shard_count(&self) -> NonZeroUsize {
        self.shard_count
    }

    /// True when this start created the directory's metadata (first start).
    pub fn created(&self) -> bool {
        self.created
    }

    /// `<data_dir>/shard-<i>/`: the directory shard `shard` owns.
    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.path.join(format!("shard-{shard}"))
    }
}

/// Takes the exclusive lock and writes our pid into the lock file for the next one to name.
fn lock(dir: &Path) -> Result<File, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let io = |action| {
        let path = path.clone();
        move |source| DataDirError::Io {
            path,
            action,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // The pid is a courtesy for the message; an unreadable file just omits it.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(DataDirError::Locked {
                dir: dir.to_path_buf(),
                lock: path,
                holder,
            });
        }
        Err(TryLockError::Error(source)) => return Err(io("lock the lock file")(source)),
    }
    file.set_len(0).map_err(io("write the lock file"))?;
    writeln!(file, "{}", std::process::id()).map_err(io("write the lock file"))?;
    Ok(file)
}

fn read_meta(dir: &Path) -> Result<Option<NonZeroUsize>, DataDirError> {
    let path = dir.join(META_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DataDirError::Io {
                path,
                action: "read the metadata",
                source,
            });
        }
    };
    let bad = |message: String| DataDirError::BadMeta {
        dir: dir.to_path_buf(),
        message,
    };
    let meta: Meta = toml::from_str(&text).map_err(|error| bad(error.message().to_owned()))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "format_version {} is not supported",
            meta.format_version
        )));
    }
    NonZeroUsize::new(meta.shards)
        .map(Some)
        .ok_or_else(|| bad("shards = 0".to_owned()))
}

/// Writes `meta.toml` atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_meta(dir: &Path, shards: NonZeroUsize) -> Result<(), DataDirError> {
    let path = dir.join(META_FILE);
    let temporary = dir.join(format!("{META_FILE}.tmp"));
    let io = |action| {
        let path = path.clone();
        move |source| DataDirError::Io {
            path,
            action,
            source,
        }
    };
    let text = format!(
        "# Written by fila-server on first start. Do not edit: queues are placed by hash modulo\n\
         # the shard count, so changing it would hide data.\n\
         format_version = {FORMAT_VERSION}\nshards = {shards}\n"
    );
    let mut file = File::create(&temporary).map_err(io("write the metadata"))?;
    file.write_all(text.as_bytes())
        .map_err(io("write the metadata"))?;
    file.sync_all().map_err(io("sync the metadata"))?;
    std::fs::rename(&temporary, &path).map_err(io("rename the metadata into place"))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io("sync the data directory"))
}

fn has_shard_dirs(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().to_string_lossy().starts_with("shard-") {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: usize) -> NonZeroUsize {
        NonZeroUsize::new(value).unwrap()
    }

    #[test]
    fn first_start_records_the_count_and_later_starts_adopt_it() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("data");
        let (dir, origin) = DataDir::open(&path, None, n(3)).unwrap();
        assert_eq!(
            (dir.shard_count(), origin, dir.created()),
            (n(3), ShardCountOrigin::Default, true)
        );
        assert_eq!(dir.shard_dir(2), path.join("shard-2"));
        assert!(path.join("shard-2").is_dir());
        drop(dir);
        let (dir, origin) = DataDir::open(&path, None, n(8)).unwrap();
        assert_eq!(
            (dir.shard_count(), origin, dir.created()),
            (n(3), ShardCountOrigin::Recorded, false)
        );
        drop(dir);
        let (dir, origin) = DataDir::open(&path, Some(n(3)), n(8)).unwrap();
        assert_eq!(
            (dir.shard_count(), origin),
            (n(3), ShardCountOrigin::Explicit)
        );
    }

    #[test]
    fn explicit_different_count_is_refused_with_migration_advice() {
        let temp = tempfile::tempdir().unwrap();
        drop(DataDir::open(temp.path(), Some(n(2)), n(1)).unwrap());
        let message = DataDir::open(temp.path(), Some(n(4)), n(1))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("was created with 2 shards, but 4 were requested"),
            "{message}"
        );
        assert!(message.contains("start with --shards 2"), "{message}");
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let temp = tempfile::tempdir().unwrap();
        let (held, _) = DataDir::open(temp.path(), None, n(1)).unwrap();
        let error = DataDir::open(temp.path(), None, n(1)).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, DataDirError::Locked { .. }), "{message}");
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        assert!(
            message.contains(&temp.path().display().to_string()),
            "{message}"
        );
        drop(held);
        assert!(DataDir::open(temp.path(), None, n(1)).is_ok());
    }

    #[test]
    fn shard_dirs_without_meta_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("shard-0")).unwrap();
        let error = DataDir::open(temp.path(), None, n(1)).unwrap_err();
        assert!(matches!(error, DataDirError::MissingMeta { .. }), "{error}");
    }

    #[test]
    fn damaged_meta_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(
            temp.path().join(META_FILE),
            "format_version = 9\nshards = 2\n",
        )
        .unwrap();
        let message = DataDir::open(temp.path(), None, n(1))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("format_version 9 is not supported"),
            "{message}"
        );
    }
}
