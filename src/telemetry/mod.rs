//! Operator metrics over OpenTelemetry (design §8, docs/metrics.md).
//!
//! Shards record into their own cells (`fila_shard::metrics`) and never touch the SDK. When
//! `[telemetry] otlp_endpoint` is set, one exporter thread (plain std, never a glommio
//! executor: the OTLP HTTP client is reqwest's blocking one) wakes every
//! `metrics_interval_ms`, asks every shard for a snapshot over a flume channel the shard
//! serves in a task of its own (`serve`), merges the answers (`merge`) and exports them
//! through the SDK (`pipeline`) over OTLP HTTP/protobuf. A shard that does not answer in
//! time keeps its previous snapshot; a slow or absent collector only delays this thread.
//! Without an endpoint nothing starts and the cost is the cells alone.

pub mod merge;
pub mod pipeline;
pub mod serve;

use std::thread::JoinHandle;
use std::time::Duration;

use fila_shard::metrics::MetricsSnapshot;
use opentelemetry_otlp::{Protocol, WithExportConfig};

use crate::config::TelemetrySection;
pub use pipeline::Pipeline;
pub use serve::{SnapshotRequest, serve_snapshots};

/// How long a gather waits for the shards' answers.
const GATHER_TIMEOUT: Duration = Duration::from_millis(500);
/// Upper bound on one export attempt.
const EXPORT_TIMEOUT_MAX: Duration = Duration::from_secs(5);
/// How long shutdown waits for the final export.
const SHUTDOWN_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The port collectors use for OTLP/gRPC, which this build does not speak.
const OTLP_GRPC_PORT: &str = "4317";

/// The exporter endpoint: `/v1/metrics` appended to a URL without a path; a full URL is
/// used as given.
pub fn metrics_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    let after_scheme = endpoint.find("://").map_or(0, |i| i + 3);
    let path = endpoint
        .get(after_scheme..)
        .and_then(|rest| rest.find('/').and_then(|i| rest.get(i..)))
        .unwrap_or("");
    if path.is_empty() || path == "/" {
        format!("{}/v1/metrics", endpoint.trim_end_matches('/'))
    } else {
        endpoint.to_string()
    }
}

/// The port of an endpoint URL, if it names one.
fn port_of(endpoint: &str) -> Option<&str> {
    let after_scheme = endpoint.find("://").map_or(0, |i| i + 3);
    let authority = endpoint.get(after_scheme..)?.split('/').next()?;
    let (_, port) = authority.rsplit_once(':')?;
    (!port.is_empty() && !port.ends_with(']')).then_some(port)
}

/// The running exporter thread.
#[derive(Debug)]
pub struct Telemetry {
    stop: flume::Sender<()>,
    done: flume::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// What `start` needs from the server: the endpoint config and one request sender per shard.
#[derive(Debug)]
pub struct Shards {
    /// Where to send each shard's snapshot requests.
    pub requests: Vec<flume::Sender<SnapshotRequest>>,
}

/// The request channels for `shards` shards: senders for the exporter, receivers for the
/// shards (`None` each when telemetry is off).
pub fn channels(
    config: &TelemetrySection,
    shards: usize,
) -> (Shards, Vec<Option<flume::Receiver<SnapshotRequest>>>) {
    if !enabled(config) {
        return (
            Shards {
                requests: Vec::new(),
            },
            (0..shards).map(|_| None).collect(),
        );
    }
    let (senders, receivers) = (0..shards)
        .map(|_| {
            let (tx, rx) = flume::bounded(4);
            (tx, Some(rx))
        })
        .unzip();
    (Shards { requests: senders }, receivers)
}

/// True when an endpoint is configured.
pub fn enabled(config: &TelemetrySection) -> bool {
    config
        .otlp_endpoint
        .as_deref()
        .is_some_and(|e| !e.trim().is_empty())
}

/// Starts the exporter thread when an endpoint is configured.
pub fn start(config: &TelemetrySection, shards: Shards) -> Result<Option<Telemetry>, String> {
    let Some(endpoint) = config
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    else {
        return Ok(None);
    };
    let url = metrics_url(endpoint);
    if port_of(endpoint.trim()) == Some(OTLP_GRPC_PORT) {
        tracing::warn!(
            endpoint = %endpoint,
            "telemetry.otlp_endpoint uses port 4317 (OTLP/gRPC), but this build exports OTLP over HTTP/protobuf only; exporting to {url} anyway — point it at the collector's OTLP/HTTP port (usually 4318)"
        );
    }
    let interval = Duration::from_millis(config.metrics_interval_ms.get());
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(interval.clamp(Duration::from_millis(100), EXPORT_TIMEOUT_MAX))
        .with_temporality(pipeline::TEMPORALITY)
        .build()
        .map_err(|error| format!("cannot build the OTLP metrics exporter for {url}: {error}"))?;
    let max_key_series =
        usize::try_from(config.max_fairness_key_series.get()).unwrap_or(usize::MAX);
    let pipeline = Pipeline::new(exporter, &config.service_name, max_key_series);
    let (stop, stopped) = flume::bounded(1);
    let (finished, done) = flume::bounded(1);
    let thread = std::thread::Builder::new()
        .name("fila-telemetry".to_string())
        .spawn(move || {
            run(
                pipeline,
                &shards.requests,
                &stopped,
                interval,
                max_key_series,
            );
            let _ = finished.send(());
        })
        .map_err(|error| format!("cannot start the telemetry thread: {error}"))?;
    tracing::info!(url = %url, interval_ms = interval.as_millis() as u64, "exporting metrics over OTLP/HTTP");
    Ok(Some(Telemetry {
        stop,
        done,
        thread: Some(thread),
    }))
}

impl Telemetry {
    /// Exports a last time (while the shards still answer) and stops; waits at most
    /// [`SHUTDOWN_FLUSH_WAIT`] for an unresponsive collector.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(());
        if self.done.recv_timeout(SHUTDOWN_FLUSH_WAIT).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        } else {
            tracing::warn!("metrics: the final export did not finish in time; skipped");
        }
    }
}

/// The exporter loop: gather, merge, export, every interval, until `stop`.
fn run(
    mut pipeline: Pipeline,
    shards: &[flume::Sender<SnapshotRequest>],
    stop: &flume::Receiver<()>,
    interval: Duration,
    max_key_series: usize,
) {
    let mut last: Vec<Option<MetricsSnapshot>> = vec![None; shards.len()];
    let mut failures: u64 = 0;
    loop {
        let stopping = !matches!(
            stop.recv_timeout(interval),
            Err(flume::RecvTimeoutError::Timeout)
        );
        gather(shards, &mut last, max_key_series);
        let snapshots: Vec<MetricsSnapshot> = last.iter().flatten().cloned().collect();
        pipeline.update(&snapshots);
        let result = if stopping {
            pipeline.shutdown()
        } else {
            pipeline.flush()
        };
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "metrics export recovered");
                }
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                // Logged at 1, 2, 4, 8, ... consecutive failures: a collector that stays
                // away costs a log line per doubling, not one per interval.
                if failures.is_power_of_two() {
                    tracing::warn!(consecutive_failures = failures, %error, "metrics export failed; retrying every interval");
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Asks every shard for a snapshot; a shard that does not answer within
/// [`GATHER_TIMEOUT`] keeps its previous one.
fn gather(
    shards: &[flume::Sender<SnapshotRequest>],
    last: &mut [Option<MetricsSnapshot>],
    max_key_series: usize,
) {
    let (reply, answers) = flume::bounded(shards.len().max(1));
    for (index, shard) in shards.iter().enumerate() {
        // try_send: a shard whose request queue is full is busy; never wait on it.
        let _ = shard.try_send(SnapshotRequest {
            shard: index,
            max_key_series,
            reply: reply.clone(),
        });
    }
    drop(reply);
    for _ in 0..shards.len() {
        match answers.recv_timeout(GATHER_TIMEOUT) {
            Ok((index, snapshot)) => {
                if let Some(slot) = last.get_mut(index) {
                    *slot = Some(snapshot);
                }
            }
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_without_path_gets_v1_metrics() {
        assert_eq!(metrics_url("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/custom"), "http://c:4318/custom");
        assert_eq!(port_of("http://c:4317"), Some("4317"));
        assert_eq!(port_of("http://c:4317/x"), Some("4317"));
        assert_eq!(port_of("http://c/x"), None);
    }
}
