//! `fila-shard`: the per-core broker. A shard owns a hash partition of queues and everything
//! about them (pending messages, DRR scheduling, leases, consumers, runtime config) and is
//! driven only by method calls that take `now`: no clock reads, no threads, no I/O except
//! through the [`storage::Storage`] seam. It never depends on `fila-wire` or on a runtime.
#![warn(missing_docs)]

pub mod storage;
