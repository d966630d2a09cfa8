//! `fila-wire`: the Fila binary protocol v1 (frames, bodies, opcodes, error codes).
//!
//! This crate never does I/O and never depends on `fila-shard`: it turns bytes into
//! values and values into bytes, nothing else.
#![warn(missing_docs)]
