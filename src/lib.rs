//! The `fila` package: server bootstrap (`fila-server`), connection handling, routing between
//! shards, configuration, and the `fila` CLI. The broker logic itself lives in `fila-shard` and
//! the protocol in `fila-wire`; this crate is the runtime shell around them.

pub mod config;
pub mod data_dir;
pub mod rt;
