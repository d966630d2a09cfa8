//! proptest strategies for every request and response value, shared by the property tests.
#![allow(dead_code)]

use bytes::Bytes;
use fila_wire::{
    AckItem, ApiKeyInfo, ByteString, ConfigEntry, CreateQueue, DeliveryMessage, EnqueueItemResult,
    EnqueueMessage, ErrorCode, Handshake, HandshakeOk, KeyStats, NackItem, Permission, QueueStats,
    QueueSummary, Request, Response, StringMap, ThrottleStats,
};
use proptest::collection::vec;
use proptest::prelude::*;

pub fn text() -> impl Strategy<Value = ByteString> {
    prop_oneof![
        3 => "[a-z0-9.\\-]{0,12}",
        1 => "\\PC{0,8}",
    ]
    .prop_map(ByteString::from)
}

pub fn optional_text() -> impl Strategy<Value = Option<ByteString>> {
    proptest::option::of(text())
}

pub fn string_map() -> impl Strategy<Value = StringMap> {
    vec((text(), text()), 0..4)
}

pub fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

pub fn number() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is not equal to itself", |value| !value.is_nan())
}

pub fn permission() -> impl Strategy<Value = Permission> {
    (text(), text()).prop_map(|(kind, pattern)| Permission { kind, pattern })
}

pub fn delivery_message() -> impl Strategy<Value = DeliveryMessage> {
    (
        (text(), text(), string_map(), payload(), text()),
        (
            any::<u32>(),
            vec(text(), 0..3),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (message_id, queue, headers, payload, fairness_key),
                (weight, throttle_keys, attempt_count, enqueued_at, leased_at),
            )| DeliveryMessage {
                message_id,
                queue,
                headers,
                payload,
                fairness_key,
                weight,
                throttle_keys,
                attempt_count,
                enqueued_at,
                leased_at,
            },
        )
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), optional_text()).prop_map(|(protocol_version, api_key)| {
            Request::Handshake(Handshake {
                protocol_version,
                api_key,
            })
        }),
        Just(Request::Ping),
        Just(Request::Disconnect),
        vec(
            (text(), string_map(), payload()).prop_map(|(queue, headers, payload)| {
                EnqueueMessage {
                    queue,
                    headers,
                    payload,
                }
            }),
            0..4
        )
        .prop_map(|messages| Request::Enqueue { messages }),
        text().prop_map(|queue| Request::Consume { queue }),
        Just(Request::CancelConsume),
        vec(
            (text(), text()).prop_map(|(queue, message_id)| AckItem { queue, message_id }),
            0..4
        )
        .prop_map(|items| Request::Ack { items }),
        vec(
            (text(), text(), text()).prop_map(|(queue, message_id, error)| NackItem {
                queue,
                message_id,
                error
            }),
            0..4
        )
        .prop_map(|items| Request::Nack { items }),
        (text(), optional_text(), optional_text(), any::<u64>()).prop_map(
            |(name, on_enqueue_script, on_failure_script, visibility_timeout_ms)| {
                Request::CreateQueue(CreateQueue {
                    name,
                    on_enqueue_script,
                    on_failure_script,
                    visibility_timeout_ms,
                })
            }
        ),
        text().prop_map(|queue| Request::DeleteQueue { queue }),
        text().prop_map(|queue| Request::GetStats { queue }),
        Just(Request::ListQueues),
        (text(), text()).prop_map(|(key, value)| Request::SetConfig { key, value }),
        text().prop_map(|key| Request::GetConfig { key }),
        text().prop_map(|prefix| Request::ListConfig { prefix }),
        (text(), any::<u64>()).prop_map(|(dlq_queue, count)| Request::Redrive { dlq_queue, count }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(name, expires_at_ms, is_superadmin)| {
            Request::CreateApiKey {
                name,
                expires_at_ms,
                is_superadmin,
            }
        }),
        text().prop_map(|key_id| Request::RevokeApiKey { key_id }),
        Just(Request::ListApiKeys),
        (text(), vec(permission(), 0..4)).prop_map(|(key_id, permissions)| Request::SetAcl {
            key_id,
            permissions
        }),
        text().prop_map(|key_id| Request::GetAcl { key_id }),
        (
            text(),
            0_u8..2,
            proptest::option::of(text()),
            string_map(),
            any::<u32>(),
            any::<u32>(),
            text()
        )
            .prop_map(
                |(queue, hook, script, headers, payload_size, attempts, error)| {
                    Request::LuaTest(fila_wire::LuaTest {
                        queue,
                        hook,
                        script,
                        headers,
                        payload_size,
                        attempts,
                        error,
                    })
                }
            ),
    ]
}

fn queue_stats() -> impl Strategy<Value = QueueStats> {
    (
        (
            error_code(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        ),
        (any::<u32>(), any::<u64>(), any::<u32>()),
        vec(
            (text(), any::<u64>(), any::<i64>(), any::<u32>()).prop_map(
                |(key, pending_count, current_deficit, weight)| KeyStats {
                    key,
                    pending_count,
                    current_deficit,
                    weight,
                },
            ),
            0..3,
        ),
        vec(
            (text(), number(), number(), number()).prop_map(
                |(key, tokens, rate_per_second, burst)| ThrottleStats {
                    key,
                    tokens,
                    rate_per_second,
                    burst,
                },
            ),
            0..3,
        ),
        proptest::option::of(
            (
                any::<bool>(),
                text(),
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            )
                .prop_map(
                    |(
                        storage_poisoned,
                        hook_compile_error,
                        hook_breaker_open,
                        hook_runs,
                        hook_errors,
                        hook_breaker_trips,
                    )| fila_wire::StatsExtension {
                        storage_poisoned,
                        hook_compile_error,
                        hook_breaker_open,
                        hook_runs,
                        hook_errors,
                        hook_breaker_trips,
                    },
                ),
        ),
    )
        .prop_map(
            |(
                (error_code, depth, in_flight, active_fairness_keys, active_consumers),
                (quantum, leader_node_id, replication_count),
                per_key_stats,
                per_throttle_stats,
                extension,
            )| QueueStats {
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
            },
        )
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u16>(), any::<u64>(), any::<u32>()).prop_map(
            |(negotiated_version, node_id, max_frame_size)| Response::HandshakeOk(HandshakeOk {
                negotiated_version,
                node_id,
                max_frame_size
            })
        ),
        Just(Response::Pong),
        vec(
            (error_code(), text()).prop_map(|(error_code, message_id)| EnqueueItemResult {
                error_code,
                message_id
            }),
            0..4
        )
        .prop_map(|results| Response::EnqueueResult { results }),
        text().prop_map(|consumer_id| Response::ConsumeOk { consumer_id }),
        vec(delivery_message(), 0..3).prop_map(|messages| Response::Delivery { messages }),
        vec(error_code(), 0..6).prop_map(|results| Response::AckResult { results }),
        vec(error_code(), 0..6).prop_map(|results| Response::NackResult { results }),
        (error_code(), text()).prop_map(|(error_code, queue_id)| Response::CreateQueueResult {
            error_code,
            queue_id
        }),
        error_code().prop_map(|error_code| Response::DeleteQueueResult { error_code }),
        queue_stats().prop_map(Response::GetStatsResult),
        (
            error_code(),
            any::<u32>(),
            vec(
                (
                    text(),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u32>(),
                    any::<u64>()
                )
                    .prop_map(
                        |(name, depth, in_flight, active_consumers, leader_node_id)| QueueSummary {
                            name,
                            depth,
                            in_flight,
                            active_consumers,
                            leader_node_id,
                        }
                    ),
                0..3
            )
        )
            .prop_map(|(error_code, cluster_node_count, queues)| {
                Response::ListQueuesResult {
                    error_code,
                    cluster_node_count,
                    queues,
                }
            }),
        error_code().prop_map(|error_code| Response::SetConfigResult { error_code }),
        (error_code(), text())
            .prop_map(|(error_code, value)| Response::GetConfigResult { error_code, value }),
        (
            error_code(),
            vec(
                (text(), text()).prop_map(|(key, value)| ConfigEntry { key, value }),
                0..4
            )
        )
            .prop_map(|(error_code, entries)| Response::ListConfigResult {
                error_code,
                entries
            }),
        (error_code(), any::<u64>()).prop_map(|(error_code, redriven)| {
            Response::RedriveResult {
                error_code,
                redriven,
            }
        }),
        (error_code(), text(), text(), any::<bool>()).prop_map(
            |(error_code, key_id, key, is_superadmin)| Response::CreateApiKeyResult {
                error_code,
                key_id,
                key,
                is_superadmin,
            }
        ),
        error_code().prop_map(|error_code| Response::RevokeApiKeyResult { error_code }),
        (
            error_code(),
            vec(
                (text(), text(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                    |(key_id, name, created_at_ms, expires_at_ms, is_superadmin)| ApiKeyInfo {
                        key_id,
                        name,
                        created_at_ms,
                        expires_at_ms,
                        is_superadmin,
                    }
                ),
                0..3
            )
        )
            .prop_map(|(error_code, keys)| Response::ListApiKeysResult { error_code, keys }),
        error_code().prop_map(|error_code| Response::SetAclResult { error_code }),
        (error_code(), text(), any::<bool>(), vec(permission(), 0..4)).prop_map(
            |(error_code, key_id, is_superadmin, permissions)| Response::GetAclResult {
                error_code,
                key_id,
                is_superadmin,
                permissions,
            }
        ),
        (
            error_code(),
            text(),
            text(),
            any::<i64>(),
            vec(text(), 0..3),
            text(),
            any::<u64>()
        )
            .prop_map(
                |(error_code, message, fairness_key, weight, throttle_keys, action, delay_ms)| {
                    Response::LuaTestResult(fila_wire::LuaTestResult {
                        error_code,
                        message,
                        fairness_key,
                        weight,
                        throttle_keys,
                        action,
                        delay_ms,
                    })
                }
            ),
        (error_code(), text(), string_map()).prop_map(|(code, message, metadata)| {
            Response::Error {
                code,
                message,
                metadata,
            }
        }),
    ]
}
