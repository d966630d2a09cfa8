//! `ServerError`: why `fila-server` could not start or did not stop cleanly. Each variant keeps
//! its source; `fila-server` prints the chain. Never sent on the wire.

use crate::config::ConfigError;
use crate::data_dir::DataDirError;
use crate::rt::{BindError, ExecutorError, PreflightError};
use crate::tls::TlsError;

/// A start-up or shutdown failure of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid or asks for something unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host cannot run the server as configured.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The listen address cannot be used.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A shard executor could not start or stopped abnormally.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// The `[tls]` certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The metrics exporter could not start.
    #[error("{0}")]
    Telemetry(String),
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM/SIGHUP handlers")]
    Signals(#[source] std::io::Error),
    /// A shard's database could not be opened or recovered.
    #[error("{message}")]
    Storage {
        /// The shard.
        shard: usize,
        /// What failed, with the path and the cause.
        message: String,
    },
    /// The API-key store could not be opened or read.
    #[error("{0}")]
    Auth(String),
    /// A shard ended while the server was running.
    #[error("shard {shard} stopped unexpectedly; shutting down the server")]
    ShardStopped {
        /// The shard.
        shard: usize,
    },
    /// Shards did not finish within the shutdown deadline.
    #[error("{running} shard(s) did not stop within {seconds} s of the shutdown signal")]
    ShutdownTimedOut {
        /// Shards still running.
        running: usize,
        /// The deadline.
        seconds: u64,
    },
    /// A second termination signal arrived during shutdown.
    #[error("received {signal} again during shutdown; exiting without waiting")]
    ShutdownInterrupted {
        /// The signal name.
        signal: &'static str,
    },
}
