//! `Response`: every server-to-client body (§8.2, §8.3, §9, §10, §11), encode and decode.
//!
//! The server encodes replies and the CLI, bench and tests decode them. This file owns the
//! reply layouts; the Delivery record lives in `delivery.rs`, framing in `frame.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::delivery::DeliveryMessage;
use crate::error::{DecodeError, EncodeError};
use crate::error_code::ErrorCode;
use crate::frame::encode_frame;
use crate::opcode::Opcode;
use crate::primitives::{
    Reader, STRING_BYTES_MIN, StringMap, map_len, put_bool, put_count_u16, put_count_u32, put_map,
    put_string, put_string_list, string_len, string_list_len,
};
use crate::request::Permission;

/// Extension LuaTestResult body (`0xC1`). `error_code` is Ok (the script ran and decided),
/// QueueNotFound, or LuaCompilationError (it did not compile, failed, timed out or returned
/// something else than a table; `message` says which). The decision fields of the hook that
/// did not run are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaTestResult {
    /// Outcome.
    pub error_code: ErrorCode,
    /// Why there is no decision; empty on Ok.
    pub message: ByteString,
    /// `on_enqueue`: the fairness key as the script returned it (empty = default).
    pub fairness_key: ByteString,
    /// `on_enqueue`: the weight as the script returned it (the broker clamps to 1..=10,000).
    pub weight: i64,
    /// `on_enqueue`: the throttle keys.
    pub throttle_keys: Vec<ByteString>,
    /// `on_failure`: `retry` or `dlq`.
    pub action: ByteString,
    /// `on_failure`: delay before the retry.
    pub delay_ms: u64,
}

/// HandshakeOk body (§8.2), always 14 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeOk {
    /// Always 1.
    pub negotiated_version: u16,
    /// Cluster node id; 0 outside cluster mode.
    pub node_id: u64,
    /// 16,777,216; clients read 0 as the default.
    pub max_frame_size: u32,
}

/// One result of an Enqueue batch (§9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueItemResult {
    /// Ok, or why this message was not enqueued.
    pub error_code: ErrorCode,
    /// The new message id when Ok; empty otherwise.
    pub message_id: ByteString,
}

impl EnqueueItemResult {
    const BYTES_MIN: usize = 1 + STRING_BYTES_MIN;
}

/// Per-fairness-key statistics in GetStatsResult (§10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStats {
    /// Fairness key.
    pub key: ByteString,
    /// Pending messages of this key.
    pub pending_count: u64,
    /// DRR deficit; may be negative.
    pub current_deficit: i64,
    /// The key's weight.
    pub weight: u32,
}

impl KeyStats {
    const BYTES_MIN: usize = STRING_BYTES_MIN + 8 + 8 + 4;
}

/// Per-throttle-key statistics in GetStatsResult (§10.3).
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleStats {
    /// Throttle key.
    pub key: ByteString,
    /// Tokens currently available.
    pub tokens: f64,
    /// Refill rate.
    pub rate_per_second: f64,
    /// Bucket size.
    pub burst: f64,
}

impl ThrottleStats {
    const BYTES_MIN: usize = STRING_BYTES_MIN + 3 * 8;
}

/// GetStatsResult body (§10.3).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    /// Always Ok in practice; failures are Error frames.
    pub error_code: ErrorCode,
    /// Pending plus in flight.
    pub depth: u64,
    /// Currently leased.
    pub in_flight: u64,
    /// Fairness keys with pending messages.
    pub active_fairness_keys: u64,
    /// Registered consumers of this queue.
    pub active_consumers: u32,
    /// DRR quantum.
    pub quantum: u32,
    /// Raft leader; 0 outside cluster mode.
    pub leader_node_id: u64,
    /// Raft voters; 0 outside cluster mode.
    pub replication_count: u32,
    /// One entry per active fairness key (`u16` count).
    pub per_key_stats: Vec<KeyStats>,
    /// One entry per throttle key of the broker (`u16` count).
    pub per_throttle_stats: Vec<ThrottleStats>,
    /// This server's extension, appended after the standard fields; `None` from servers that
    /// do not send it (and never encoded when `None`, so standard replies stay byte-exact).
    pub extension: Option<StatsExtension>,
}

/// Fields this server appends to GetStatsResult (extension policy: trailing fields, ignored by
/// decoders that do not know them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsExtension {
    /// The queue's shard refuses writes after a storage failure (restart needed).
    pub storage_poisoned: bool,
    /// The queue's hooks did not compile at recovery (they are bypassed); empty = compiled.
    pub hook_compile_error: ByteString,
    /// The queue's circuit breaker is open (hooks bypassed until the cooldown ends).
    pub hook_breaker_open: bool,
    /// Hook runs so far on the owning shard.
    pub hook_runs: u64,
    /// Failed hook runs so far.
    pub hook_errors: u64,
    /// Breaker trips so far.
    pub hook_breaker_trips: u64,
}

impl StatsExtension {
    /// Layout version written first, so the extension can grow.
    const VERSION: u8 = 1;

    fn encoded_len(&self) -> usize {
        1 + 1 + string_len(&self.hook_compile_error) + 1 + 8 * 3
    }
}

/// One queue in ListQueuesResult (§10.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    /// Queue name.
    pub name: ByteString,
    /// Pending plus in flight.
    pub depth: u64,
    /// Currently leased.
    pub in_flight: u64,
    /// Registered consumers.
    pub active_consumers: u32,
    /// Raft leader; 0 outside cluster mode.
    pub leader_node_id: u64,
}

impl QueueSummary {
    const BYTES_MIN: usize = STRING_BYTES_MIN + 8 + 8 + 4 + 8;
}

/// One entry in ListConfigResult (§10.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Configuration key.
    pub key: ByteString,
    /// Its value.
    pub value: ByteString,
}

/// One key in ListApiKeysResult (§11.3); tokens are never listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Key id (UUID text).
    pub key_id: ByteString,
    /// Label.
    pub name: ByteString,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds; 0 never expires.
    pub expires_at_ms: u64,
    /// Whether the key bypasses permission checks.
    pub is_superadmin: bool,
}

impl ApiKeyInfo {
    const BYTES_MIN: usize = 2 * STRING_BYTES_MIN + 8 + 8 + 1;
}

/// Every frame a server may send (§5). Exhaustive: one variant per server opcode.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `0x02` (§8.2).
    HandshakeOk(HandshakeOk),
    /// `0x04`; empty body.
    Pong,
    /// `0x11` (§9.1): one result per message, in request order.
    EnqueueResult {
        /// The results.
        results: Vec<EnqueueItemResult>,
    },
    /// `0x13` (§9.2).
    ConsumeOk {
        /// Server-assigned consumer id (informational).
        consumer_id: ByteString,
    },
    /// `0x14` (§9.3). To batch under the frame limit, see [`crate::DeliveryFrameBuilder`].
    Delivery {
        /// The messages.
        messages: Vec<DeliveryMessage>,
    },
    /// `0x17` (§9.5): one code per item, in order.
    AckResult {
        /// The codes.
        results: Vec<ErrorCode>,
    },
    /// `0x19` (§9.6): one code per item, in order.
    NackResult {
        /// The codes.
        results: Vec<ErrorCode>,
    },
    /// `0xFC` (§10.1).
    CreateQueueResult {
        /// Outcome.
        error_code: ErrorCode,
        /// Name on success and on QueueAlreadyExists, compiler message on LuaCompilationError.
        queue_id: ByteString,
    },
    /// `0xFA` (§10.2).
    DeleteQueueResult {
        /// Outcome.
        error_code: ErrorCode,
    },
    /// `0xF8` (§10.3).
    GetStatsResult(QueueStats),
    /// `0xF6` (§10.4).
    ListQueuesResult {
        /// Outcome.
        error_code: ErrorCode,
        /// 0 outside cluster mode.
        cluster_node_count: u32,
        /// The queues (`u16` count).
        queues: Vec<QueueSummary>,
    },
    /// `0xF4` (§10.5).
    SetConfigResult {
        /// Outcome.
        error_code: ErrorCode,
    },
    /// `0xF2` (§10.6).
    GetConfigResult {
        /// Outcome.
        error_code: ErrorCode,
        /// Empty when the key is not set.
        value: ByteString,
    },
    /// `0xF0` (§10.7).
    ListConfigResult {
        /// Outcome.
        error_code: ErrorCode,
        /// Entries in key order (`u16` count).
        entries: Vec<ConfigEntry>,
    },
    /// `0xEE` (§10.8).
    RedriveResult {
        /// Outcome.
        error_code: ErrorCode,
        /// Messages moved.
        redriven: u64,
    },
    /// `0xEC` (§11.1).
    CreateApiKeyResult {
        /// Outcome.
        error_code: ErrorCode,
        /// New key id.
        key_id: ByteString,
        /// The token; returned only here.
        key: ByteString,
        /// Echo of the request.
        is_superadmin: bool,
    },
    /// `0xEA` (§11.2).
    RevokeApiKeyResult {
        /// Outcome.
        error_code: ErrorCode,
    },
    /// `0xE8` (§11.3).
    ListApiKeysResult {
        /// Outcome.
        error_code: ErrorCode,
        /// The keys (`u16` count).
        keys: Vec<ApiKeyInfo>,
    },
    /// `0xE6` (§11.4).
    SetAclResult {
        /// Outcome.
        error_code: ErrorCode,
    },
    /// `0xE4` (§11.5).
    GetAclResult {
        /// Outcome.
        error_code: ErrorCode,
        /// Echo of the request.
        key_id: ByteString,
        /// False on ApiKeyNotFound.
        is_superadmin: bool,
        /// The grants (`u16` count).
        permissions: Vec<Permission>,
    },
    /// Extension `0xC1`: the result of a LuaTest dry run.
    LuaTestResult(LuaTestResult),
    /// `0xFE` (§8.3): a whole-request failure.
    Error {
        /// The code (§6).
        code: ErrorCode,
        /// Human-readable text; may be empty.
        message: ByteString,
        /// Machine-readable extras such as `max_version` or `leader_addr`.
        metadata: StringMap,
    },
}

fn list<T>(
    reader: &mut Reader<'_>,
    count: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(item(reader)?);
    }
    Ok(items)
}

impl Response {
    /// An Error frame body with no metadata, e.g. `Response::error(ErrorCode::InvalidFrame, "…")`.
    pub fn error(code: ErrorCode, message: impl Into<ByteString>) -> Response {
        Response::Error {
            code,
            message: message.into(),
            metadata: Vec::new(),
        }
    }

    /// The opcode this response is sent with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Response::HandshakeOk(_) => Opcode::HandshakeOk,
            Response::Pong => Opcode::Pong,
            Response::EnqueueResult { .. } => Opcode::EnqueueResult,
            Response::ConsumeOk { .. } => Opcode::ConsumeOk,
            Response::Delivery { .. } => Opcode::Delivery,
            Response::AckResult { .. } => Opcode::AckResult,
            Response::NackResult { .. } => Opcode::NackResult,
            Response::CreateQueueResult { .. } => Opcode::CreateQueueResult,
            Response::DeleteQueueResult { .. } => Opcode::DeleteQueueResult,
            Response::GetStatsResult(_) => Opcode::GetStatsResult,
            Response::ListQueuesResult { .. } => Opcode::ListQueuesResult,
            Response::SetConfigResult { .. } => Opcode::SetConfigResult,
            Response::GetConfigResult { .. } => Opcode::GetConfigResult,
            Response::ListConfigResult { .. } => Opcode::ListConfigResult,
            Response::RedriveResult { .. } => Opcode::RedriveResult,
            Response::CreateApiKeyResult { .. } => Opcode::CreateApiKeyResult,
            Response::RevokeApiKeyResult { .. } => Opcode::RevokeApiKeyResult,
            Response::ListApiKeysResult { .. } => Opcode::ListApiKeysResult,
            Response::SetAclResult { .. } => Opcode::SetAclResult,
            Response::GetAclResult { .. } => Opcode::GetAclResult,
            Response::LuaTestResult(_) => Opcode::LuaTestResult,
            Response::Error { .. } => Opcode::Error,
        }
    }

    /// Decodes a reply body.
    ///
    /// An opcode that is not server-to-client gives [`DecodeError::NotAResponse`] without
    /// reading the body. Unknown error-code bytes become `InternalError`; bytes after the
    /// last field are ignored (§4).
    pub fn decode(opcode: u8, payload: Bytes) -> Result<Response, DecodeError> {
        let not_a_response = DecodeError::NotAResponse { opcode };
        let opcode = Opcode::from_u8(opcode).ok_or(not_a_response.clone())?;
        let mut reader = Reader::new(&payload);
        let r = &mut reader;
        Ok(match opcode {
            Opcode::HandshakeOk => Response::HandshakeOk(HandshakeOk {
                negotiated_version: r.u16("handshake_ok.negotiated_version")?,
                node_id: r.u64("handshake_ok.node_id")?,
                max_frame_size: r.u32("handshake_ok.max_frame_size")?,
            }),
            Opcode::Pong => Response::Pong,
            Opcode::EnqueueResult => {
                let count =
                    r.count_u32("enqueue_result.result_count", EnqueueItemResult::BYTES_MIN)?;
                let results = list(r, count, |r| {
                    Ok(EnqueueItemResult {
                        error_code: r.error_code("enqueue_result.error_code")?,
                        message_id: r.string("enqueue_result.message_id")?,
                    })
                })?;
                Response::EnqueueResult { results }
            }
            Opcode::ConsumeOk => Response::ConsumeOk {
                consumer_id: r.string("consume_ok.consumer_id")?,
            },
            Opcode::Delivery => {
                let count = r.count_u32("delivery.message_count", DeliveryMessage::BYTES_MIN)?;
                let messages = list(r, count, DeliveryMessage::decode)?;
                Response::Delivery { messages }
            }
            Opcode::AckResult => Response::AckResult {
                results: decode_codes(r, "ack_result.result_count")?,
            },
            Opcode::NackResult => Response::NackResult {
                results: decode_codes(r, "nack_result.result_count")?,
            },
            Opcode::CreateQueueResult => Response::CreateQueueResult {
                error_code: r.error_code("create_queue_result.error_code")?,
                queue_id: r.string("create_queue_result.queue_id")?,
            },
            Opcode::DeleteQueueResult => Response::DeleteQueueResult {
                error_code: r.error_code("delete_queue_result.error_code")?,
            },
            Opcode::GetStatsResult => Response::GetStatsResult(decode_stats(r)?),
            Opcode::ListQueuesResult => {
                let error_code = r.error_code("list_queues_result.error_code")?;
                let cluster_node_count = r.u32("list_queues_result.cluster_node_count")?;
                let count =
                    r.count_u16("list_queues_result.queue_count", QueueSummary::BYTES_MIN)?;
                let queues = list(r, count, |r| {
                    Ok(QueueSummary {
                        name: r.string("queue.name")?,
                        depth: r.u64("queue.depth")?,
                        in_flight: r.u64("queue.in_flight")?,
                        active_consumers: r.u32("queue.active_consumers")?,
                        leader_node_id: r.u64("queue.leader_node_id")?,
                    })
                })?;
                Response::ListQueuesResult {
                    error_code,
                    cluster_node_count,
                    queues,
                }
            }
            Opcode::SetConfigResult => Response::SetConfigResult {
                error_code: r.error_code("set_config_result.error_code")?,
            },
            Opcode::GetConfigResult => Response::GetConfigResult {
                error_code: r.error_code("get_config_result.error_code")?,
                value: r.string("get_config_result.value")?,
            },
            Opcode::ListConfigResult => {
                let error_code = r.error_code("list_config_result.error_code")?;
                let count = r.count_u16("list_config_result.entry_count", 2 * STRING_BYTES_MIN)?;
                let entries = list(r, count, |r| {
                    Ok(ConfigEntry {
                        key: r.string("config.key")?,
                        value: r.string("config.value")?,
                    })
                })?;
                Response::ListConfigResult {
                    error_code,
                    entries,
                }
            }
            Opcode::RedriveResult => Response::RedriveResult {
                error_code: r.error_code("redrive_result.error_code")?,
                redriven: r.u64("redrive_result.redriven")?,
            },
            Opcode::CreateApiKeyResult => Response::CreateApiKeyResult {
                error_code: r.error_code("create_api_key_result.error_code")?,
                key_id: r.string("create_api_key_result.key_id")?,
                key: r.string("create_api_key_result.key")?,
                is_superadmin: r.bool("create_api_key_result.is_superadmin")?,
            },
            Opcode::RevokeApiKeyResult => Response::RevokeApiKeyResult {
                error_code: r.error_code("revoke_api_key_result.error_code")?,
            },
            Opcode::ListApiKeysResult => {
                let error_code = r.error_code("list_api_keys_result.error_code")?;
                let count = r.count_u16("list_api_keys_result.key_count", ApiKeyInfo::BYTES_MIN)?;
                let keys = list(r, count, |r| {
                    Ok(ApiKeyInfo {
                        key_id: r.string("api_key.key_id")?,
                        name: r.string("api_key.name")?,
                        created_at_ms: r.u64("api_key.created_at_ms")?,
                        expires_at_ms: r.u64("api_key.expires_at_ms")?,
                        is_superadmin: r.bool("api_key.is_superadmin")?,
                    })
                })?;
                Response::ListApiKeysResult { error_code, keys }
            }
            Opcode::SetAclResult => Response::SetAclResult {
                error_code: r.error_code("set_acl_result.error_code")?,
            },
            Opcode::GetAclResult => {
                let error_code = r.error_code("get_acl_result.error_code")?;
                let key_id = r.string("get_acl_result.key_id")?;
                let is_superadmin = r.bool("get_acl_result.is_superadmin")?;
                let count =
                    r.count_u16("get_acl_result.permission_count", Permission::BYTES_MIN)?;
                let permissions = list(r, count, Permission::decode)?;
                Response::GetAclResult {
                    error_code,
                    key_id,
                    is_superadmin,
                    permissions,
                }
            }
            Opcode::LuaTestResult => Response::LuaTestResult(LuaTestResult {
                error_code: r.error_code("lua_test_result.error_code")?,
                message: r.string("lua_test_result.message")?,
                fairness_key: r.string("lua_test_result.fairness_key")?,
                weight: r.i64("lua_test_result.weight")?,
                throttle_keys: r.string_list("lua_test_result.throttle_keys")?,
                action: r.string("lua_test_result.action")?,
                delay_ms: r.u64("lua_test_result.delay_ms")?,
            }),
            Opcode::Error => Response::Error {
                code: r.error_code("error.error_code")?,
                message: r.string("error.message")?,
                metadata: r.map("error.metadata")?,
            },
            Opcode::Handshake
            | Opcode::Ping
            | Opcode::Disconnect
            | Opcode::Enqueue
            | Opcode::Consume
            | Opcode::CancelConsume
            | Opcode::Ack
            | Opcode::Nack
            | Opcode::CreateQueue
            | Opcode::DeleteQueue
            | Opcode::GetStats
            | Opcode::ListQueues
            | Opcode::SetConfig
            | Opcode::GetConfig
            | Opcode::ListConfig
            | Opcode::Redrive
            | Opcode::CreateApiKey
            | Opcode::RevokeApiKey
            | Opcode::ListApiKeys
            | Opcode::SetAcl
            | Opcode::GetAcl
            | Opcode::LuaTest => return Err(not_a_response),
        })
    }

    /// Bytes of this response's body (without the 10-byte frame header and prefix).
    pub fn body_len(&self) -> usize {
        match self {
            Response::HandshakeOk(_) => 14,
            Response::Pong => 0,
            Response::EnqueueResult { results } => {
                4 + results
                    .iter()
                    .map(|result| 1 + string_len(&result.message_id))
                    .sum::<usize>()
            }
            Response::ConsumeOk { consumer_id } => string_len(consumer_id),
            Response::Delivery { messages } => {
                4 + messages
                    .iter()
                    .map(DeliveryMessage::encoded_len)
                    .sum::<usize>()
            }
            Response::AckResult { results } | Response::NackResult { results } => 4 + results.len(),
            Response::CreateQueueResult { queue_id, .. } => 1 + string_len(queue_id),
            Response::DeleteQueueResult { .. }
            | Response::SetConfigResult { .. }
            | Response::RevokeApiKeyResult { .. }
            | Response::SetAclResult { .. } => 1,
            Response::GetStatsResult(stats) => {
                1 + 8 * 3
                    + 4 * 2
                    + 8
                    + 4
                    + 2
                    + stats
                        .per_key_stats
                        .iter()
                        .map(|key| string_len(&key.key) + 20)
                        .sum::<usize>()
                    + 2
                    + stats
                        .per_throttle_stats
                        .iter()
                        .map(|throttle| string_len(&throttle.key) + 24)
                        .sum::<usize>()
                    + stats
                        .extension
                        .as_ref()
                        .map_or(0, StatsExtension::encoded_len)
            }
            Response::ListQueuesResult { queues, .. } => {
                1 + 4
                    + 2
                    + queues
                        .iter()
                        .map(|queue| string_len(&queue.name) + 28)
                        .sum::<usize>()
            }
            Response::GetConfigResult { value, .. } => 1 + string_len(value),
            Response::ListConfigResult { entries, .. } => {
                1 + 2
                    + entries
                        .iter()
                        .map(|entry| string_len(&entry.key) + string_len(&entry.value))
                        .sum::<usize>()
            }
            Response::RedriveResult { .. } => 1 + 8,
            Response::CreateApiKeyResult { key_id, key, .. } => {
                1 + string_len(key_id) + string_len(key) + 1
            }
            Response::ListApiKeysResult { keys, .. } => {
                1 + 2
                    + keys
                        .iter()
                        .map(|key| string_len(&key.key_id) + string_len(&key.name) + 17)
                        .sum::<usize>()
            }
            Response::GetAclResult {
                key_id,
                permissions,
                ..
            } => {
                1 + string_len(key_id)
                    + 1
                    + 2
                    + permissions
                        .iter()
                        .map(Permission::encoded_len)
                        .sum::<usize>()
            }
            Response::LuaTestResult(result) => {
                1 + string_len(&result.message)
                    + string_len(&result.fairness_key)
                    + 8
                    + string_list_len(&result.throttle_keys)
                    + string_len(&result.action)
                    + 8
            }
            Response::Error {
                message, metadata, ..
            } => 1 + string_len(message) + map_len(metadata),
        }
    }

    /// Bytes of the whole frame this response encodes to, length prefix included.
    pub fn encoded_len(&self) -> usize {
        crate::limits::FRAME_PREFIX_BYTES + crate::limits::FRAME_HEADER_BYTES + self.body_len()
    }

    /// Appends this response as one frame (flags 0, never continuation pieces).
    ///
    /// Errors when a string, a list or the frame exceeds its limit; `out` is then unchanged.
    pub fn encode(&self, request_id: u32, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(out, self.opcode(), request_id, self.body_len(), |out| {
            self.encode_body(out)
        })
    }

    fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Response::HandshakeOk(ok) => {
                out.put_u16(ok.negotiated_version);
                out.put_u64(ok.node_id);
                out.put_u32(ok.max_frame_size);
            }
            Response::Pong => {}
            Response::EnqueueResult { results } => {
                put_count_u32(out, "enqueue_result.result_count", results.len())?;
                for result in results {
                    out.put_u8(result.error_code.as_u8());
                    put_string(out, "enqueue_result.message_id", &result.message_id)?;
                }
            }
            Response::ConsumeOk { consumer_id } => {
                put_string(out, "consume_ok.consumer_id", consumer_id)?;
            }
            Response::Delivery { messages } => {
                put_count_u32(out, "delivery.message_count", messages.len())?;
                for message in messages {
                    message.encode(out)?;
                }
            }
            Response::AckResult { results } | Response::NackResult { results } => {
                put_count_u32(out, "result_count", results.len())?;
                for code in results {
                    out.put_u8(code.as_u8());
                }
            }
            Response::CreateQueueResult {
                error_code,
                queue_id,
            } => {
                out.put_u8(error_code.as_u8());
                put_string(out, "create_queue_result.queue_id", queue_id)?;
            }
            Response::DeleteQueueResult { error_code }
            | Response::SetConfigResult { error_code }
            | Response::RevokeApiKeyResult { error_code }
            | Response::SetAclResult { error_code } => out.put_u8(error_code.as_u8()),
            Response::GetStatsResult(stats) => encode_stats(out, stats)?,
            Response::ListQueuesResult {
                error_code,
                cluster_node_count,
                queues,
            } => {
                out.put_u8(error_code.as_u8());
                out.put_u32(*cluster_node_count);
                put_count_u16(out, "list_queues_result.queue_count", queues.len())?;
                for queue in queues {
                    put_string(out, "queue.name", &queue.name)?;
                    out.put_u64(queue.depth);
                    out.put_u64(queue.in_flight);
                    out.put_u32(queue.active_consumers);
                    out.put_u64(queue.leader_node_id);
                }
            }
            Response::GetConfigResult { error_code, value } => {
                out.put_u8(error_code.as_u8());
                put_string(out, "get_config_result.value", value)?;
            }
            Response::ListConfigResult {
                error_code,
                entries,
            } => {
                out.put_u8(error_code.as_u8());
                put_count_u16(out, "list_config_result.entry_count", entries.len())?;
                for entry in entries {
                    put_string(out, "config.key", &entry.key)?;
                    put_string(out, "config.value", &entry.value)?;
                }
            }
            Response::RedriveResult {
                error_code,
                redriven,
            } => {
                out.put_u8(error_code.as_u8());
                out.put_u64(*redriven);
            }
            Response::CreateApiKeyResult {
                error_code,
                key_id,
                key,
                is_superadmin,
            } => {
                out.put_u8(error_code.as_u8());
                put_string(out, "create_api_key_result.key_id", key_id)?;
                put_string(out, "create_api_key_result.key", key)?;
                put_bool(out, *is_superadmin);
            }
            Response::ListApiKeysResult { error_code, keys } => {
                out.put_u8(error_code.as_u8());
                put_count_u16(out, "list_api_keys_result.key_count", keys.len())?;
                for key in keys {
                    put_string(out, "api_key.key_id", &key.key_id)?;
                    put_string(out, "api_key.name", &key.name)?;
                    out.put_u64(key.created_at_ms);
                    out.put_u64(key.expires_at_ms);
                    put_bool(out, key.is_superadmin);
                }
            }
            Response::GetAclResult {
                error_code,
                key_id,
                is_superadmin,
                permissions,
            } => {
                out.put_u8(error_code.as_u8());
                put_string(out, "get_acl_result.key_id", key_id)?;
                put_bool(out, *is_superadmin);
                put_count_u16(out, "get_acl_result.permission_count", permissions.len())?;
                for permission in permissions {
                    permission.encode(out)?;
                }
            }
            Response::LuaTestResult(result) => {
                out.put_u8(result.error_code.as_u8());
                put_string(out, "lua_test_result.message", &result.message)?;
                put_string(out, "lua_test_result.fairness_key", &result.fairness_key)?;
                out.put_i64(result.weight);
                put_string_list(out, "lua_test_result.throttle_keys", &result.throttle_keys)?;
                put_string(out, "lua_test_result.action", &result.action)?;
                out.put_u64(result.delay_ms);
            }
            Response::Error {
                code,
                message,
                metadata,
            } => {
                out.put_u8(code.as_u8());
                put_string(out, "error.message", message)?;
                put_map(out, "error.metadata", metadata)?;
            }
        }
        Ok(())
    }
}

fn decode_codes(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<Vec<ErrorCode>, DecodeError> {
    let count = reader.count_u32(field, 1)?;
    list(reader, count, |r| r.error_code(field))
}

fn decode_stats(r: &mut Reader<'_>) -> Result<QueueStats, DecodeError> {
    let error_code = r.error_code("stats.error_code")?;
    let depth = r.u64("stats.depth")?;
    let in_flight = r.u64("stats.in_flight")?;
    let active_fairness_keys = r.u64("stats.active_fairness_keys")?;
    let active_consumers = r.u32("stats.active_consumers")?;
    let quantum = r.u32("stats.quantum")?;
    let leader_node_id = r.u64("stats.leader_node_id")?;
    let replication_count = r.u32("stats.replication_count")?;
    let count = r.count_u16("stats.per_key_stats_count", KeyStats::BYTES_MIN)?;
    let per_key_stats = list(r, count, |r| {
        Ok(KeyStats {
            key: r.string("key_stats.key")?,
            pending_count: r.u64("key_stats.pending_count")?,
            current_deficit: r.i64("key_stats.current_deficit")?,
            weight: r.u32("key_stats.weight")?,
        })
    })?;
    let count = r.count_u16("stats.per_throttle_stats_count", ThrottleStats::BYTES_MIN)?;
    let per_throttle_stats = list(r, count, |r| {
        Ok(ThrottleStats {
            key: r.string("throttle_stats.key")?,
            tokens: r.f64("throttle_stats.tokens")?,
            rate_per_second: r.f64("throttle_stats.rate_per_second")?,
            burst: r.f64("throttle_stats.burst")?,
        })
    })?;
    // The extension is read only when present and of a version this codec knows; anything else
    // after the standard fields is ignored, as trailing bytes always are.
    let extension = if r.remaining() > 0 && r.u8("stats_ext.version")? == StatsExtension::VERSION {
        Some(StatsExtension {
            storage_poisoned: r.bool("stats_ext.storage_poisoned")?,
            hook_compile_error: r.string("stats_ext.hook_compile_error")?,
            hook_breaker_open: r.bool("stats_ext.hook_breaker_open")?,
            hook_runs: r.u64("stats_ext.hook_runs")?,
            hook_errors: r.u64("stats_ext.hook_errors")?,
            hook_breaker_trips: r.u64("stats_ext.hook_breaker_trips")?,
        })
    } else {
        None
    };
    Ok(QueueStats {
        error_code,
        depth,
        in_flight,
        active_fairness_keys,
        active_consumers,
        quantum,
        leader_node_id,
        replication_count,
        per_key_stats,
        per_throttle_stats,
        extension,
    })
}

fn encode_stats(out: &mut BytesMut, stats: &QueueStats) -> Result<(), EncodeError> {
    out.put_u8(stats.error_code.as_u8());
    out.put_u64(stats.depth);
    out.put_u64(stats.in_flight);
    out.put_u64(stats.active_fairness_keys);
    out.put_u32(stats.active_consumers);
    out.put_u32(stats.quantum);
    out.put_u64(stats.leader_node_id);
    out.put_u32(stats.replication_count);
    put_count_u16(out, "stats.per_key_stats_count", stats.per_key_stats.len())?;
    for key in &stats.per_key_stats {
        put_string(out, "key_stats.key", &key.key)?;
        out.put_u64(key.pending_count);
        out.put_i64(key.current_deficit);
        out.put_u32(key.weight);
    }
    put_count_u16(
        out,
        "stats.per_throttle_stats_count",
        stats.per_throttle_stats.len(),
    )?;
    for throttle in &stats.per_throttle_stats {
        put_string(out, "throttle_stats.key", &throttle.key)?;
        out.put_f64(throttle.tokens);
        out.put_f64(throttle.rate_per_second);
        out.put_f64(throttle.burst);
    }
    if let Some(ext) = &stats.extension {
        out.put_u8(StatsExtension::VERSION);
        put_bool(out, ext.storage_poisoned);
        put_string(out, "stats_ext.hook_compile_error", &ext.hook_compile_error)?;
        put_bool(out, ext.hook_breaker_open);
        out.put_u64(ext.hook_runs);
        out.put_u64(ext.hook_errors);
        out.put_u64(ext.hook_breaker_trips);
    }
    Ok(())
}
