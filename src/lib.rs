//! The `fila` package: server bootstrap (`fila-server`), connection handling, routing between
//! shards, configuration, and the `fila` CLI. The broker logic itself lives in `fila-shard` and
//! the protocol in `fila-wire`; this crate is the runtime shell around them.
//!
//! Map: `config` (fila.toml, env, flags) → `server` (boot and lifetime) → `rt` (glommio:
//! executors, mesh, bind, shutdown, preflight, the plain-or-TLS stream) → `listener` (accept
//! loop, connection cap, TLS handshake) → `connection` (the handler seam) → `session` (one
//! protocol connection) → `broker` (one shard's core, its tasks, and `routing` between
//! shards). `auth` holds API keys and permission checks; `tls` loads and reloads the
//! certificates of the client port; `telemetry` exports metrics; `cli` is the `fila` CLI;
//! `logging` and `error` serve the binaries. `data_dir` owns the on-disk directory and its
//! lock.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod connection;
pub mod data_dir;
pub mod error;
pub mod listener;
pub mod logging;
pub mod routing;
pub mod rt;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
