//! Named limits of the shard core (units last). Every input that can grow is bounded here.

/// Longest queue name in bytes (the wire's string limit). A queue that gets an automatic
/// dead-letter queue must leave room for the `.dlq` suffix.
pub const QUEUE_NAME_BYTES_MAX: usize = 65_535;

/// Suffix that marks a dead-letter queue.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Most headers one message may carry.
pub const HEADERS_MAX: usize = 1_024;

/// Most bytes of header names and values together in one message.
pub const HEADER_BYTES_MAX: usize = 1024 * 1024;

/// Default payload cap per message: 4 MiB (decisions.md). Configurable per shard through
/// [`crate::ShardOptions::payload_bytes_max`] up to [`PAYLOAD_BYTES_MAX_LIMIT`].
pub const PAYLOAD_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Highest configurable payload cap: what still fits one 16 MiB Delivery frame together with
/// the largest allowed headers and some room for the other fields.
pub const PAYLOAD_BYTES_MAX_LIMIT: usize = 16 * 1024 * 1024 - HEADER_BYTES_MAX - 64 * 1024;

/// Most throttle keys one message may carry (more from a hook are dropped).
pub const THROTTLE_KEYS_MAX: usize = 64;

/// Longest fairness or throttle key in bytes (longer keys from a hook are truncated at a
/// character boundary).
pub const KEY_BYTES_MAX: usize = 1_024;

/// Weights are clamped to `WEIGHT_MIN..=WEIGHT_MAX` (decisions.md).
pub const WEIGHT_MIN: u32 = 1;
/// See [`WEIGHT_MIN`].
pub const WEIGHT_MAX: u32 = 10_000;

/// Default visibility timeout when a queue is created with 0.
pub const VISIBILITY_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Longest visibility timeout: one week.
pub const VISIBILITY_TIMEOUT_MS_MAX: u64 = 7 * 24 * 3_600 * 1_000;

/// Longest retry delay a failure hook may ask for: 30 days (longer requests are clamped).
pub const RETRY_DELAY_MS_MAX: u64 = 30 * 24 * 3_600 * 1_000;

/// Default DRR quantum (`[scheduler] quantum`).
pub const QUANTUM_DEFAULT: u32 = 1_000;

/// Most per-key entries returned in one stats answer (the wire count is a u16).
pub const STATS_KEYS_MAX: usize = u16::MAX as usize;

/// Most entries returned by one config listing.
pub const CONFIG_LIST_ENTRIES_MAX: usize = 10_000;

/// Longest runtime-config key in bytes.
pub const CONFIG_KEY_BYTES_MAX: usize = 65_535;

/// Longest runtime-config value in bytes.
pub const CONFIG_VALUE_BYTES_MAX: usize = 65_535;

/// Largest consumer credit window (unacked deliveries one subscription may hold).
pub const CREDIT_WINDOW_MAX: u32 = 1_000_000;

const _: () = assert!(PAYLOAD_BYTES_MAX_DEFAULT <= PAYLOAD_BYTES_MAX_LIMIT);
const _: () = assert!(WEIGHT_MIN >= 1 && WEIGHT_MIN <= WEIGHT_MAX);
// quantum × weight must fit the i64 deficit with room to spare.
const _: () = assert!((u32::MAX as u64) * (WEIGHT_MAX as u64) < (i64::MAX as u64) / 2);
