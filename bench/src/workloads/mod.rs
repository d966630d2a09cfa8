//! The workloads and what they share: the target server, the measurement window, queue set-up
//! and tear-down, per-run tallies, and collecting per-run values into figures.
//!
//! Each workload file (`enqueue.rs`, `lifecycle.rs`, `latency.rs`, `rtt.rs`, `fairness.rs`,
//! `throttle.rs`, `lua.rs`, `keys.rs`, `shards.rs`, `depth.rs`, `storm.rs`) runs its load for
//! `--runs` runs and returns an [`Outcome`]; `suite.rs` dispatches commands and runs `all`. Producers and consumers
//! that several workloads use live in `producer.rs` and `consumer.rs`.

pub mod consumer;
pub mod depth;
pub mod enqueue;
pub mod fairness;
pub mod keys;
pub mod latency;
pub mod lifecycle;
pub mod lua;
pub mod producer;
pub mod rtt;
pub mod shards;
pub mod storm;
pub mod suite;
pub mod throttle;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fila_wire::{ByteString, EnqueueMessage};

use crate::cli::{Common, Settings};
use crate::client::{Connection, Endpoint, Security};
use crate::clock;
use crate::error::{BenchError, Result};
use crate::report::{Better, Figure};
use crate::server::{ServerProcess, ServerSpec};
use crate::tls::TlsClient;

/// Header carrying the fairness-key value (matters once queues have an `on_enqueue` hook).
pub const KEY_HEADER: &str = "fila-bench-key";

/// The server a workload talks to: one the bench started (stopped when this is dropped), or
/// one given with `--addr`.
pub struct Target {
    /// Where to connect.
    pub addr: Endpoint,
    _server: Option<ServerProcess>,
}

impl Target {
    /// Starts a server per `common`, or uses `--addr`; connections carry `--api-key` and use
    /// TLS when a TLS flag was given (only with `--addr`, see [`Common::settings`]).
    pub fn new(common: &Common) -> Result<Target> {
        if let Some(addr) = common.addr {
            let tls = common
                .tls_options()
                .map(|options| TlsClient::new(&options, addr))
                .transpose()?;
            let security = Security {
                api_key: common.api_key.clone(),
                tls,
            };
            return Ok(Target {
                addr: Endpoint::new(addr, security),
                _server: None,
            });
        }
        let spec = ServerSpec {
            binary: common.server_bin.clone(),
            shards: common.shards,
            durability: common.durability.as_str().to_owned(),
            bootstrap_apikey: common.api_key.clone(),
        };
        let server = ServerProcess::start(&spec)?;
        eprintln!(
            "fila-bench: started {} on {}{}",
            spec.binary.display(),
            server.addr,
            if spec.bootstrap_apikey.is_some() {
                " with API-key auth"
            } else {
                ""
            }
        );
        let security = Security {
            api_key: common.api_key.clone(),
            tls: None,
        };
        Ok(Target {
            addr: Endpoint::new(server.addr, security),
            _server: Some(server),
        })
    }
}

impl Target {
    /// The process id of the started server (`None` for `--addr`).
    pub fn server_pid(&self) -> Option<u32> {
        self._server.as_ref().map(ServerProcess::pid)
    }

    /// The last lines the started server wrote to stderr (empty for `--addr`).
    pub fn server_log(&self) -> String {
        self._server
            .as_ref()
            .map(ServerProcess::stderr)
            .unwrap_or_default()
    }
}

/// Figures and notes from one workload.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The figures.
    pub figures: Vec<Figure>,
    /// Warnings worth reading next to the figures.
    pub notes: Vec<String>,
}

impl Outcome {
    /// Appends another outcome.
    pub fn extend(&mut self, other: Outcome) {
        self.figures.extend(other.figures);
        self.notes.extend(other.notes);
    }
}

/// How often a progress bar is redrawn.
const PROGRESS_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// The measured interval of one run: load starts now, counting starts after the warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// First counted instant.
    pub start: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Window {
    /// A window that starts after `settings.warmup` and lasts `settings.duration`.
    pub fn after_warmup(settings: &Settings) -> Window {
        let start = clock::now() + settings.warmup;
        let window = Window {
            start,
            end: start + settings.duration,
        };
        window.show_progress();
        window
    }

    /// Draws a progress bar for the run on stderr until the window ends (indicatif draws only
    /// when stderr is a terminal, so logs and CI output stay clean).
    fn show_progress(self) {
        let total = self.end.saturating_duration_since(clock::now());
        let bar = indicatif::ProgressBar::new(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "  {msg:>9} [{bar:40}] {elapsed_precise}/{duration_precise}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let begun = clock::now();
        std::thread::spawn(move || {
            loop {
                let now = clock::now();
                if now >= self.end {
                    break;
                }
                bar.set_message(if now < self.start {
                    "warm-up"
                } else {
                    "measuring"
                });
                bar.set_position(
                    u64::try_from(now.saturating_duration_since(begun).as_millis())
                        .unwrap_or(u64::MAX),
                );
                clock::sleep(PROGRESS_TICK);
            }
            bar.finish_and_clear();
        });
    }

    /// Whether `at` is counted.
    pub fn contains(&self, at: Instant) -> bool {
        at >= self.start && at < self.end
    }

    /// Length of the counted interval in seconds.
    pub fn seconds(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }
}

/// Per-connection counts; merged over connections.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Successful items inside the window.
    pub ok: u64,
    /// Failed items (whole run).
    pub errors: u64,
    /// The first failure seen, as request and reply.
    pub first_error: Option<String>,
    /// Delivery frames received (consumers only).
    pub delivery_frames: u64,
    /// Messages in those frames.
    pub delivered: u64,
}

impl Tally {
    /// Records `count` failed items, keeping the first description.
    pub fn fail(&mut self, count: u64, what: impl FnOnce() -> String) {
        self.errors += count;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    /// Adds another connection's tally.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.delivery_frames += other.delivery_frames;
        self.delivered += other.delivered;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Messages per Delivery frame (0 when none arrived).
    pub fn messages_per_delivery(&self) -> f64 {
        if self.delivery_frames == 0 {
            return 0.0;
        }
        self.delivered as f64 / self.delivery_frames as f64
    }

    /// A note when anything failed.
    pub fn note(&self, label: &str) -> Option<String> {
        let first = self.first_error.as_deref().unwrap_or("");
        (self.errors > 0).then(|| format!("{label}: {} failed items; first: {first}", self.errors))
    }
}

/// Queue names of a run: the same names every run, so shard placement is the same.
pub fn queue_names(queues: usize) -> Vec<String> {
    (0..queues).map(|i| format!("fila-bench-{i}")).collect()
}

/// Creates the queues (starting them empty: a leftover queue is deleted first).
pub fn create_queues(addr: Endpoint, names: &[String]) -> Result<()> {
    create_queues_with(addr, names, None)
}

/// Creates the queues with an optional `on_enqueue` hook (a leftover queue is deleted first).
pub fn create_queues_with(addr: Endpoint, names: &[String], hook: Option<&str>) -> Result<()> {
    let mut connection = Connection::open(addr)?;
    for name in names {
        connection.delete_queue(name)?;
        connection.create_queue_with(name, hook)?;
    }
    Ok(())
}

/// Messages pending (GetStats depth) summed over the queues.
pub fn pending(addr: Endpoint, names: &[String]) -> Result<u64> {
    let mut connection = Connection::open(addr)?;
    let mut total = 0;
    for name in names {
        let request = fila_wire::Request::GetStats {
            queue: name.as_str().into(),
        };
        match connection.call(&request, "GetStats")? {
            fila_wire::Response::GetStatsResult(stats)
                if stats.error_code == fila_wire::ErrorCode::Ok =>
            {
                total += stats.depth;
            }
            other => return Err(crate::client::unexpected("GetStats", &other)),
        }
    }
    Ok(total)
}

/// An `on_enqueue` hook that takes the fairness key from the [`KEY_HEADER`] header.
pub const KEY_HOOK: &str =
    "function on_enqueue(msg) return { fairness_key = msg.headers[\"fila-bench-key\"] } end";

/// Settings for a workload that `all` runs briefly: one run, at most 5 s after at most 1 s.
pub fn brief(settings: &Settings) -> Settings {
    Settings {
        runs: 1,
        duration: settings.duration.min(Duration::from_secs(5)),
        warmup: settings.warmup.min(Duration::from_secs(1)),
        ..*settings
    }
}

/// Deletes the queues and their messages.
pub fn delete_queues(addr: Endpoint, names: &[String]) -> Result<()> {
    let mut connection = Connection::open(addr)?;
    for name in names {
        connection.delete_queue(name)?;
    }
    Ok(())
}

/// A batch of `batch` messages spread round-robin over `queues` (starting at `offset`), with
/// `keys` fairness-key values cycling in a header, each carrying `payload`.
pub fn batch_messages(
    queues: &[String],
    offset: usize,
    batch: usize,
    keys: usize,
    payload: &Bytes,
) -> Vec<EnqueueMessage> {
    let queue_count = queues.len().max(1);
    (0..batch)
        .map(|i| {
            let queue = queues
                .get((offset + i) % queue_count)
                .map_or_else(ByteString::new, |name| ByteString::from(name.as_str()));
            EnqueueMessage {
                queue,
                headers: vec![(
                    KEY_HEADER.into(),
                    format!("k{}", (offset + i) % keys.max(1)).into(),
                )],
                payload: payload.clone(),
            }
        })
        .collect()
}

/// A payload of `bytes` bytes.
pub fn payload(bytes: usize) -> Bytes {
    Bytes::from(vec![b'x'; bytes])
}

/// Joins a worker thread, turning a panic into an error.
pub fn join<T>(handle: JoinHandle<Result<T>>, role: &'static str) -> Result<T> {
    handle
        .join()
        .map_err(|_| BenchError::ThreadPanicked { role })?
}

/// Per-run values of several metrics of one workload, turned into figures at the end.
#[derive(Debug)]
pub struct Series {
    workload: String,
    metrics: Vec<(String, Better, Vec<f64>)>,
}

impl Series {
    /// An empty series for `workload`.
    pub fn new(workload: impl Into<String>) -> Series {
        Series {
            workload: workload.into(),
            metrics: Vec::new(),
        }
    }

    /// The workload label.
    pub fn workload(&self) -> &str {
        &self.workload
    }

    /// Adds one run's value of `metric`.
    pub fn push(&mut self, metric: &str, better: Better, value: f64) {
        match self.metrics.iter_mut().find(|(name, _, _)| name == metric) {
            Some((_, _, values)) => values.push(value),
            None => self.metrics.push((metric.to_owned(), better, vec![value])),
        }
    }

    /// The figures, in first-pushed order.
    pub fn figures(self) -> Vec<Figure> {
        let workload = self.workload;
        self.metrics
            .into_iter()
            .filter_map(|(metric, better, runs)| {
                Figure::from_runs(&workload, &metric, better, runs)
            })
            .collect()
    }
}

/// Prints one run's progress line to stderr.
pub fn progress(workload: &str, run: usize, runs: usize, text: &str) {
    eprintln!("fila-bench: {workload} run {}/{runs}: {text}", run + 1);
}

/// Short pause between runs so the server finishes deleting queues.
pub const BETWEEN_RUNS: Duration = Duration::from_millis(200);
