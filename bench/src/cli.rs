//! The command line (clap derive): one subcommand per workload plus `all` and `compare`, and
//! the flags every workload shares. Values clap cannot check (ranges, loopback-only targets)
//! are checked in [`Common::settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::tls::TlsOptions;

/// `fila-bench`: load generator and benchmark suite for the Fila broker.
#[derive(Debug, Parser)]
#[command(name = "fila-bench", version, about)]
pub struct Cli {
    /// The workload to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Maximum sustained enqueue throughput (msg/s and MB/s), closed loop.
    Enqueue {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Payload sizes to sweep (bytes; K/KiB and M/MiB suffixes allowed).
        #[arg(long, value_delimiter = ',', default_value = "64,1KiB,64KiB", value_parser = parse_bytes)]
        payload: Vec<usize>,
    },
    /// Producers and consumers together: messages enqueued, delivered and acked per second.
    Lifecycle {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Payload sizes to sweep.
        #[arg(long, value_delimiter = ',', default_value = "64,1KiB", value_parser = parse_bytes)]
        payload: Vec<usize>,
    },
    /// Enqueue-to-delivery latency at fixed offered rates, open loop (no coordinated omission).
    Latency {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Payload sizes to sweep.
        #[arg(long, value_delimiter = ',', default_value = "1KiB", value_parser = parse_bytes)]
        payload: Vec<usize>,
        /// Offered rates in msg/s over all producers, or percentages of the lifecycle maximum
        /// measured first (`50%`).
        #[arg(long, value_delimiter = ',', default_value = "10000", value_parser = parse_rate)]
        rates: Vec<Rate>,
    },
    /// Request/reply round trip of a one-message Enqueue, one request at a time.
    Rtt {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Payload sizes to sweep.
        #[arg(long, value_delimiter = ',', default_value = "64", value_parser = parse_bytes)]
        payload: Vec<usize>,
    },
    /// Weighted fairness under backlog: delivered share per key against w/Σw.
    Fairness {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Weights of the keys (one key per weight).
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
        weights: Vec<u32>,
        /// Messages enqueued per key before consuming starts.
        #[arg(long, default_value_t = 40_000)]
        backlog: usize,
    },
    /// Throttle accuracy: configured against observed delivery rate per throttle key.
    Throttle {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Rates of the throttle keys, msg/s (one key per rate).
        #[arg(long, value_delimiter = ',', default_value = "50,200,1000")]
        rates: Vec<f64>,
        /// Token-bucket burst of every key.
        #[arg(long, default_value_t = 10.0)]
        burst: f64,
    },
    /// Enqueue throughput without and with an on_enqueue Lua hook; the per-message overhead.
    Lua {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Payload sizes to sweep.
        #[arg(long, value_delimiter = ',', default_value = "64", value_parser = parse_bytes)]
        payload: Vec<usize>,
    },
    /// Lifecycle throughput against the number of fairness keys (1000000 is slow here).
    Keys {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Fairness-key counts to sweep.
        #[arg(long, value_delimiter = ',', default_value = "10,1000,100000")]
        key_counts: Vec<usize>,
    },
    /// Lifecycle throughput against the shard count (a fresh server per count).
    Shards {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Shard counts to sweep.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        shard_counts: Vec<u32>,
    },
    /// Enqueue and consume rates and server memory with a large backlog pending.
    Depth {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Messages pre-filled before measuring.
        #[arg(long, default_value_t = 200_000)]
        depth: usize,
    },
    /// Authorized round trips without and during a flood of failed handshakes (needs --api-key).
    Storm {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
        /// Threads opening connections with a wrong API key, as fast as they can.
        #[arg(long, default_value_t = 2)]
        storm_threads: usize,
    },
    /// Every workload with its defaults; writes a JSON and a Markdown report.
    All {
        /// Shared flags.
        #[command(flatten)]
        common: Common,
    },
    /// Compares two JSON reports: ratio new/old per figure; exits non-zero on regressions.
    Compare {
        /// The baseline report.
        old: PathBuf,
        /// The report to judge.
        new: PathBuf,
        /// Relative change counted as a regression (0.1 = 10 %).
        #[arg(long, default_value_t = 0.1)]
        threshold: f64,
    },
}

/// `[storage] durability` of a server the bench starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to the OS before success (survives a broker crash).
    Process,
    /// Fsynced before success (survives power loss).
    Fsync,
    /// No promise (benchmarks only).
    None,
}

impl Durability {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Process => "process",
            Durability::Fsync => "fsync",
            Durability::None => "none",
        }
    }
}

/// Flags every workload shares.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Target a running server at this address (127.0.0.1 only) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// The server binary to start when no --addr is given.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/release/fila-server"
    )]
    pub server_bin: PathBuf,
    /// Shards of a started server.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// Durability of a started server.
    #[arg(long, value_enum, default_value_t = Durability::Process)]
    pub durability: Durability,
    /// Producer connections (and as many consumer connections); default per workload.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Requests in flight per producer connection (closed-loop workloads); default per workload.
    #[arg(long)]
    pub window: Option<usize>,
    /// Messages per Enqueue (the most per Enqueue for the open-loop sender); default per workload.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Runs per figure; the report gives the median with min–max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Queues the load is spread over (round-robin within each batch).
    #[arg(long, default_value_t = 4)]
    pub queues: usize,
    /// Distinct fairness-key header values (header `fila-bench-key`).
    #[arg(long, default_value_t = 1)]
    pub keys: usize,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// API key sent in every Handshake. A server the bench starts gets it as its bootstrap
    /// key (FILA_BOOTSTRAP_APIKEY), so auth is on for the run. Never written to reports.
    #[arg(long, value_name = "KEY")]
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Connect with TLS, trusting the system's CA certificates (needs --addr: the bench does
    /// not start a TLS server).
    #[arg(long)]
    pub tls: bool,
    /// Trust only the CA certificate(s) in this PEM file (implies --tls).
    #[arg(long, value_name = "PATH")]
    pub tls_ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS, with --tls-key (implies --tls).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the server certificate must carry (default: the IP address of --addr, which
    /// then needs an IP SAN).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl Common {
    /// The TLS options when any TLS flag was given.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        let wants = self.tls
            || self.tls_ca_cert.is_some()
            || self.tls_cert.is_some()
            || self.tls_server_name.is_some();
        wants.then(|| TlsOptions {
            ca_cert: self.tls_ca_cert.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
            server_name: self.tls_server_name.clone(),
        })
    }
}

/// A workload's defaults for the flags that differ between workloads.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `--connections`.
    pub connections: usize,
    /// `--window`.
    pub window: usize,
    /// `--batch`.
    pub batch: usize,
}

/// The checked, resolved settings of one workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Producer connections.
    pub connections: usize,
    /// Requests in flight per producer connection.
    pub window: usize,
    /// Messages per Enqueue.
    pub batch: usize,
    /// Measured time per run.
    #[serde(rename = "duration_s", serialize_with = "as_seconds")]
    pub duration: Duration,
    /// Load before measuring.
    #[serde(rename = "warmup_s", serialize_with = "as_seconds")]
    pub warmup: Duration,
    /// Runs per figure.
    pub runs: usize,
    /// Queues.
    pub queues: usize,
    /// Fairness-key values.
    pub keys: usize,
}

fn as_seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Most connections of one kind a workload opens (one thread or two each).
const CONNECTIONS_MAX: usize = 256;
/// Longest run, so that every run ends by itself in reasonable time.
const SECONDS_MAX: f64 = 3_600.0;

impl Common {
    /// Resolves workload defaults and checks every range.
    pub fn settings(&self, defaults: Defaults) -> Result<Settings> {
        if let Some(addr) = self.addr.filter(|addr| !addr.ip().is_loopback()) {
            return Err(invalid(format!(
                "--addr {addr}: the bench only sends traffic to the loopback interface"
            )));
        }
        if self.addr.is_none() && self.tls_options().is_some() {
            return Err(invalid(
                "--tls needs --addr of a server started with [tls]: the bench starts servers in plaintext only"
                    .to_owned(),
            ));
        }
        let connections = self.connections.unwrap_or(defaults.connections);
        let settings = Settings {
            connections,
            window: self.window.unwrap_or(defaults.window),
            batch: self.batch.unwrap_or(defaults.batch),
            duration: seconds("--duration", self.duration, false)?,
            warmup: seconds("--warmup", self.warmup, true)?,
            runs: self.runs,
            queues: self.queues,
            keys: self.keys,
        };
        let counts = [
            ("--connections", settings.connections, CONNECTIONS_MAX),
            ("--window", settings.window, 4_096),
            ("--batch", settings.batch, 100_000),
            ("--runs", settings.runs, 100),
            ("--queues", settings.queues, CONNECTIONS_MAX),
            ("--keys", settings.keys, 1_000_000),
        ];
        for (flag, value, max) in counts {
            if value == 0 || value > max {
                return Err(invalid(format!("{flag} {value}: must be 1..={max}")));
            }
        }
        if self.shards == 0 || self.shards > 1_024 {
            return Err(invalid(format!(
                "--shards {}: must be 1..=1024",
                self.shards
            )));
        }
        Ok(settings)
    }
}

fn seconds(flag: &str, value: f64, zero_ok: bool) -> Result<Duration> {
    let in_range =
        value.is_finite() && value <= SECONDS_MAX && (value > 0.0 || zero_ok && value == 0.0);
    if !in_range {
        let low = if zero_ok { "0" } else { "more than 0" };
        return Err(invalid(format!(
            "{flag} {value}: must be {low} and at most {SECONDS_MAX} s"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

fn invalid(message: String) -> BenchError {
    BenchError::InvalidArgument(message)
}

/// An offered rate: absolute, or a share of a measured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Rate {
    /// Messages per second over all producers.
    PerSecond(f64),
    /// Percent of the lifecycle maximum.
    PercentOfMax(f64),
}

/// Parses `10000`, `2.5e4` or `50%`.
pub fn parse_rate(text: &str) -> std::result::Result<Rate, String> {
    let text = text.trim();
    let (number, percent) = match text.strip_suffix('%') {
        Some(number) => (number, true),
        None => (text, false),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (e.g. 10000 or 50%)"))?;
    let max = if percent { 1_000.0 } else { 100_000_000.0 };
    if !(value.is_finite() && value > 0.0 && value <= max) {
        return Err(format!("{text:?}: must be more than 0 and at most {max}"));
    }
    Ok(if percent {
        Rate::PercentOfMax(value)
    } else {
        Rate::PerSecond(value)
    })
}

/// Parses a byte count: `64`, `1KiB`, `1k`, `64KiB`, `1MiB`, `4M`.
pub fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64, 1KiB, 64KiB)"))?;
    let unit = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    let bytes = number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes > 4 * 1024 * 1024 {
        return Err(format!(
            "{text:?}: payloads above 4 MiB are over the server's cap"
        ));
    }
    Ok(bytes)
}

/// A size for people: `64 B`, `1 KiB`, `64 KiB`, `1.5 KiB`.
pub fn format_bytes(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        let cases = [
            ("64", 64),
            ("1KiB", 1024),
            ("1k", 1024),
            ("64KiB", 65_536),
            ("2 MiB", 2 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "x", "12q", "5MiB", "99999999999999999999"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(format_bytes(64), "64 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(65_536), "64 KiB");
        assert_eq!(format_bytes(1500), "1500 B");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10000"), Ok(Rate::PerSecond(10_000.0)));
        assert_eq!(parse_rate("50%"), Ok(Rate::PercentOfMax(50.0)));
        for bad in ["0", "-5", "abc", "%", "nan", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let cli = Cli::parse_from(["fila-bench", "enqueue", "--duration", "1"]);
        let Command::Enqueue { common, payload } = cli.command else {
            panic!("not enqueue");
        };
        assert_eq!(payload, [64, 1024, 65_536]);
        let defaults = Defaults {
            connections: 3,
            window: 2,
            batch: 10,
        };
        let settings = common.settings(defaults).unwrap();
        assert_eq!(
            (settings.connections, settings.window, settings.batch),
            (3, 2, 10)
        );
        let check_err = |args: &[&str]| {
            let mut all = vec!["fila-bench", "rtt"];
            all.extend_from_slice(args);
            let Command::Rtt { common, .. } = Cli::parse_from(all).command else {
                panic!("not rtt");
            };
            assert!(common.settings(defaults).is_err(), "{args:?}");
        };
        check_err(&["--duration", "0"]);
        check_err(&["--warmup=-1"]);
        check_err(&["--connections", "0"]);
        check_err(&["--runs", "0"]);
        check_err(&["--addr", "10.0.0.1:5555"]);
        check_err(&["--tls"]);
        check_err(&["--tls-ca-cert", "ca.pem"]);
    }

    #[test]
    fn security_flags_parse() {
        let cli = Cli::parse_from([
            "fila-bench",
            "rtt",
            "--addr",
            "127.0.0.1:5555",
            "--api-key",
            "k",
            "--tls-ca-cert",
            "ca.pem",
            "--tls-server-name",
            "localhost",
        ]);
        let Command::Rtt { common, .. } = cli.command else {
            panic!("not rtt");
        };
        assert_eq!(common.api_key.as_deref(), Some("k"));
        let options = common.tls_options().unwrap();
        assert_eq!(options.ca_cert, Some(PathBuf::from("ca.pem")));
        assert_eq!(options.server_name.as_deref(), Some("localhost"));
        assert!(
            common
                .settings(Defaults {
                    connections: 1,
                    window: 1,
                    batch: 1
                })
                .is_ok()
        );
        // The key never reaches a report.
        let json = serde_json::to_string(&common).unwrap();
        assert!(!json.contains("api_key"), "{json}");
        // --tls-cert and --tls-key come together.
        assert!(Cli::try_parse_from(["fila-bench", "rtt", "--tls-cert", "c.pem"]).is_err());
        let Command::Rtt { common, .. } = Cli::parse_from(["fila-bench", "rtt"]).command else {
            panic!("not rtt");
        };
        assert_eq!(common.tls_options(), None);
    }
}
