//! The sections of `fila.toml` as typed values, with every default in one place.
//! Parsing rules (unknown keys, ranges, names) live in the types; precedence lives in `config`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::bounded::Bounded;

/// The whole file. Absent sections take their defaults; `tls`, `auth` and `cluster` are
/// optional because their presence means something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: listener, shards, connection limits.
    #[serde(default)]
    pub server: ServerSection,
    /// `[scheduler]`: DRR and shard inboxes.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// `[lua]`: hook limits and the circuit breaker.
    #[serde(default)]
    pub lua: LuaSection,
    /// `[telemetry]`: OTLP metrics export.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// `[storage]`: durability and cache.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[tls]`: present = TLS on the client port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// `[auth]`: API-key authentication (on when a bootstrap key is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSection>,
    /// `[cluster]`: any keys, accepted and ignored with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<toml::Table>,
}

/// Number of shards (executor threads); an upper bound keeps the mesh (N² senders) sane.
pub type ShardCount = Bounded<1, 1024>;
/// A positive count or size.
pub type Positive = Bounded<1, { u64::MAX }>;
/// Largest message payload accepted at enqueue. The cap keeps one message, its headers and the
/// Delivery framing inside one 16 MiB protocol frame.
pub type PayloadBytes = Bounded<1, { 15 * 1024 * 1024 }>;
/// Busy-poll time before an idle executor sleeps, in microseconds (0 = off).
pub type SpinMicros = Bounded<0, 100_000>;
/// Any non-negative integer.
pub type Count = Bounded<0, { u64::MAX }>;

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// TCP address of the binary protocol; every shard listens on it (SO_REUSEPORT).
    pub listen_addr: ListenAddr,
    /// Shard count; `None` = the count recorded in the data dir, else the usable CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardCount>,
    /// Pin shard `i` to the `i`-th CPU the process may run on.
    pub pin_cores: bool,
    /// Open connections allowed across all shards; extra connections are closed at accept.
    pub max_connections: Positive,
    /// Unacked deliveries a subscription may hold (its credit window).
    pub credit_window: Positive,
    /// A new connection must complete its handshake within this time.
    pub handshake_timeout_ms: Positive,
    /// A frame that has started arriving must complete within this time.
    pub frame_timeout_ms: Positive,
    /// Largest payload of one message; larger ones get a per-item error at enqueue.
    pub max_payload_bytes: PayloadBytes,
    /// Busy-poll before parking an idle executor (lower cross-shard latency, more CPU).
    pub spin_before_park_us: SpinMicros,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen_addr: ListenAddr::default(),
            shards: None,
            pin_cores: true,
            max_connections: Positive::constant(10_000),
            credit_window: Positive::constant(256),
            handshake_timeout_ms: Positive::constant(10_000),
            frame_timeout_ms: Positive::constant(30_000),
            max_payload_bytes: PayloadBytes::constant(4 * 1024 * 1024),
            spin_before_park_us: SpinMicros::constant(0),
        }
    }
}

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSection {
    /// DRR quantum: deliveries granted to a fairness key per visit, times its weight.
    pub quantum: Positive,
    /// Bound of each shard's inbox (messages from other shards).
    pub command_channel_capacity: Positive,
    /// Accepted for compatibility; never limits timer precision.
    pub idle_timeout_ms: Count,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            quantum: Positive::constant(1000),
            command_channel_capacity: Positive::constant(10_000),
            idle_timeout_ms: Count::constant(100),
        }
    }
}

/// `[lua]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LuaSection {
    /// Time budget of one hook call.
    pub default_timeout_ms: Positive,
    /// Memory budget of one hook call.
    pub default_memory_limit_bytes: Positive,
    /// Consecutive hook failures that trip a queue's circuit breaker.
    pub circuit_breaker_threshold: Positive,
    /// How long a tripped breaker bypasses the hooks.
    pub circuit_breaker_cooldown_ms: Count,
}

impl Default for LuaSection {
    fn default() -> Self {
        Self {
            default_timeout_ms: Positive::constant(10),
            default_memory_limit_bytes: Positive::constant(1_048_576),
            circuit_breaker_threshold: Positive::constant(3),
            circuit_breaker_cooldown_ms: Count::constant(10_000),
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// OTLP collector URL; `None` or empty = no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry resource `service.name`.
    pub service_name: String,
    /// Export interval.
    pub metrics_interval_ms: Positive,
    /// Fairness-key series kept per queue; the rest fold into `fairness_key="_other"`.
    pub max_fairness_key_series: Positive,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "fila".to_owned(),
            metrics_interval_ms: Positive::constant(10_000),
            max_fairness_key_series: Positive::constant(1000),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// What a producer's success promises.
    pub durability: Durability,
    /// Block cache of all shards together (each shard gets an equal part).
    pub cache_bytes: Positive,
    /// At start-up, skip (and log) records that cannot be decoded instead of refusing to
    /// start. For recovering a damaged data directory; off by default.
    pub skip_corrupt: bool,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            durability: Durability::Process,
            cache_bytes: Positive::constant(64 * 1024 * 1024),
            skip_corrupt: false,
        }
    }
}

/// `[storage] durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to the OS before success: survives `kill -9` of the broker.
    Process,
    /// Group-committed fsync before success: survives power loss.
    Fsync,
    /// Nothing promised; for benchmarks only.
    None,
}

impl Durability {
    /// The name used in `fila.toml` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Process => "process",
            Durability::Fsync => "fsync",
            Durability::None => "none",
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Server certificate chain (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Server private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA for client certificates; present = mTLS required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// The bootstrap superadmin API key (never stored; `FILA_BOOTSTRAP_APIKEY` wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_apikey: Option<String>,
    /// Refuse to start without a bootstrap key (like `fila-server --require-auth`).
    pub required: bool,
}

/// A listen address: `IP:PORT`, or `HOST:PORT` resolved once at load (IPv4 preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListenAddr(pub SocketAddr);

impl Default for ListenAddr {
    fn default() -> Self {
        Self(SocketAddr::from(([0, 0, 0, 0], 5555)))
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        ListenAddr::parse(&text)
    }
}

impl From<ListenAddr> for String {
    fn from(addr: ListenAddr) -> String {
        addr.0.to_string()
    }
}

impl ListenAddr {
    /// Parses `IP:PORT` or resolves `HOST:PORT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        let expected = "expected IP:PORT or HOST:PORT, e.g. 0.0.0.0:5555";
        let resolved: Vec<SocketAddr> = match text.to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(error) => {
                return Err(format!(
                    "`{text}` is not a usable address ({error}); {expected}"
                ));
            }
        };
        resolved
            .iter()
            .find(|addr| addr.is_ipv4())
            .or_else(|| resolved.first())
            .map(|addr| Self(*addr))
            .ok_or_else(|| format!("`{text}` resolves to no address; {expected}"))
    }
}
