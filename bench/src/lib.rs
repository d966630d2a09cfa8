//! `fila-bench`: the load generator and benchmark suite of the Fila broker (binary
//! `fila-bench`).
//!
//! It speaks Fila binary protocol v1 over blocking TCP (optionally inside rustls, with an API
//! key when `--api-key` is given) through `fila-wire` and never
//! links the server or the shard: it measures the broker from outside, like a client. One
//! thread per connection (two for a producer: a writer and a reader on a cloned socket) keeps
//! the load generator simple enough to trust.
//!
//! # Workloads
//!
//! - `enqueue`: closed-loop producers, maximum sustained msg/s and MB/s per payload size.
//! - `lifecycle`: producers and consumers together; msg/s enqueued and delivered+acked.
//! - `latency`: open-loop producers at a fixed offered rate; enqueue-to-delivery latency
//!   measured from each message's *scheduled* send time, so a stalled sender cannot hide a
//!   stall (no coordinated omission).
//! - `rtt`: one-message Enqueue round trip, one request at a time.
//! - `fairness`: weighted DRR shares under backlog (max deviation, Jain's index).
//! - `throttle`: configured against observed delivery rate per throttle key.
//! - `lua`: enqueue throughput without and with an `on_enqueue` hook.
//! - `keys`, `shards`: lifecycle throughput against fairness keys and shard count.
//! - `depth`: enqueue/consume rates and server memory with a large backlog pending.
//! - `storm`: authorized round trips without and during a flood of wrong-key handshakes
//!   (needs `--api-key`; not part of `all`).
//! - `all`: all of the above with defaults, JSON and Markdown reports, SVG charts.
//! - `compare`: ratio new/old per figure, regressions flagged.
//!
//! Every run repeats `--runs` times; a figure is the median with the min–max range.
//! `docs/benchmarks.md` is the operator's guide.
//!
//! # Map
//!
//! `cli` (flags), `client` (the wire connection, plaintext or TLS), `tls` (the TLS client set-up), `server` (starting `fila-server`), `clock`
//! (the only clock reads and waits), `schedule` (open-loop send times), `summary` (medians,
//! percentiles), `shares` (fairness and rate arithmetic), `charts` (SVG), `workloads/*` (the loads), `report` (JSON and Markdown), `compare`,
//! `machine` (CPU, memory, commit), `error`.

pub mod charts;
pub mod cli;
pub mod client;
pub mod clock;
pub mod compare;
pub mod error;
pub mod machine;
pub mod report;
pub mod schedule;
pub mod server;
pub mod shares;
pub mod summary;
pub mod tls;
pub mod workloads;

pub use error::{BenchError, Result};
pub use workloads::suite::run;
