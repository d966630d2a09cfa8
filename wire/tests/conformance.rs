//! Conformance: the 57 golden frames of `tests/vectors/fibp-v1-vectors.json` (a copy of the
//! project's shared vectors, wire-protocol.md §20).
//!
//! For every vector: the frame decodes to exactly the listed `fields` (compared as JSON
//! values, so maps compare as maps), and encoding the decoded value gives exactly the
//! listed bytes. Because the decoded value equals `fields`, that is encoding the fields.
//! Our encoder keeps map entries in the order given, so even multi-entry maps match byte
//! for byte; the values of those frames are compared after a second decode as well (§20).
//! The continuation vector must reassemble. The test counts the vectors it checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;

use bytes::BytesMut;
use fila_wire::{
    ByteString, DeliveryMessage, ErrorCode, Frame, FrameDecoder, Opcode, Permission, Request,
    Response, decode_frame,
};
use serde_json::{Map, Value, json};

const VECTORS: &str = include_str!("vectors/fibp-v1-vectors.json");
const VECTOR_COUNT: usize = 57;

fn s(value: &ByteString) -> Value {
    Value::String(value.to_string())
}

fn map(pairs: &[(ByteString, ByteString)]) -> Value {
    // Last entry wins on duplicates, as §4 says.
    let mut object = Map::new();
    for (key, value) in pairs {
        object.insert(key.to_string(), s(value));
    }
    Value::Object(object)
}

fn code(code: ErrorCode) -> (Value, Value) {
    (json!(code.as_u8()), json!(code.name()))
}

fn with_code(error_code: ErrorCode, mut rest: Map<String, Value>) -> Value {
    let (number, name) = code(error_code);
    rest.insert("error_code".into(), number);
    rest.insert("error_code_name".into(), name);
    Value::Object(rest)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}

fn permissions(list: &[Permission]) -> Value {
    list.iter()
        .map(|p| json!({"kind": s(&p.kind), "pattern": s(&p.pattern)}))
        .collect()
}

fn request_json(request: &Request) -> Value {
    match request {
        Request::Handshake(h) => json!({
            "protocol_version": h.protocol_version,
            "api_key": h.api_key.as_ref().map(s),
        }),
        Request::Ping
        | Request::Disconnect
        | Request::CancelConsume
        | Request::ListQueues
        | Request::ListApiKeys => json!({}),
        Request::Enqueue { messages } => json!({
            "message_count": messages.len(),
            "messages": messages.iter().map(|m| json!({
                "queue": s(&m.queue),
                "headers": map(&m.headers),
                "payload": hex::encode(&m.payload),
            })).collect::<Vec<_>>(),
        }),
        Request::Consume { queue }
        | Request::DeleteQueue { queue }
        | Request::GetStats { queue } => {
            json!({ "queue": s(queue) })
        }
        Request::Ack { items } => json!({
            "item_count": items.len(),
            "items": items.iter().map(|i| json!({
                "queue": s(&i.queue), "message_id": s(&i.message_id),
            })).collect::<Vec<_>>(),
        }),
        Request::Nack { items } => json!({
            "item_count": items.len(),
            "items": items.iter().map(|i| json!({
                "queue": s(&i.queue), "message_id": s(&i.message_id), "error": s(&i.error),
            })).collect::<Vec<_>>(),
        }),
        Request::CreateQueue(c) => json!({
            "name": s(&c.name),
            "on_enqueue_script": c.on_enqueue_script.as_ref().map(s),
            "on_failure_script": c.on_failure_script.as_ref().map(s),
            "visibility_timeout_ms": c.visibility_timeout_ms,
        }),
        Request::SetConfig { key, value } => json!({ "key": s(key), "value": s(value) }),
        Request::GetConfig { key } => json!({ "key": s(key) }),
        Request::ListConfig { prefix } => json!({ "prefix": s(prefix) }),
        Request::Redrive { dlq_queue, count } => {
            json!({ "dlq_queue": s(dlq_queue), "count": count })
        }
        Request::CreateApiKey {
            name,
            expires_at_ms,
            is_superadmin,
        } => json!({
            "name": s(name), "expires_at_ms": expires_at_ms, "is_superadmin": is_superadmin,
        }),
        Request::RevokeApiKey { key_id } | Request::GetAcl { key_id } => {
            json!({ "key_id": s(key_id) })
        }
        // Extension opcode: no golden vector covers it (roundtrip tests do).
        Request::LuaTest(test) => json!({
            "queue": s(&test.queue), "hook": test.hook, "script": test.script.as_ref().map(s),
            "headers": map(&test.headers), "payload_size": test.payload_size,
            "attempts": test.attempts, "error": s(&test.error),
        }),
        Request::SetAcl {
            key_id,
            permissions: list,
        } => json!({
            "key_id": s(key_id),
            "permission_count": list.len(),
            "permissions": permissions(list),
        }),
    }
}

fn delivery_json(m: &DeliveryMessage) -> Value {
    json!({
        "message_id": s(&m.message_id),
        "queue": s(&m.queue),
        "headers": map(&m.headers),
        "payload": hex::encode(&m.payload),
        "fairness_key": s(&m.fairness_key),
        "weight": m.weight,
        "throttle_keys": m.throttle_keys.iter().map(s).collect::<Vec<_>>(),
        "attempt_count": m.attempt_count,
        "enqueued_at": m.enqueued_at,
        "leased_at": m.leased_at,
    })
}

fn codes_json(results: &[ErrorCode]) -> Value {
    json!({
        "result_count": results.len(),
        "results": results.iter().map(|c| with_code(*c, Map::new())).collect::<Vec<_>>(),
    })
}

fn response_json(response: &Response) -> Value {
    match response {
        Response::HandshakeOk(ok) => json!({
            "negotiated_version": ok.negotiated_version,
            "node_id": ok.node_id,
            "max_frame_size": ok.max_frame_size,
        }),
        Response::Pong => json!({}),
        Response::EnqueueResult { results } => json!({
            "result_count": results.len(),
            "results": results.iter().map(|r| with_code(
                r.error_code,
                object(json!({ "message_id": s(&r.message_id) })),
            )).collect::<Vec<_>>(),
        }),
        Response::ConsumeOk { consumer_id } => json!({ "consumer_id": s(consumer_id) }),
        Response::Delivery { messages } => json!({
            "message_count": messages.len(),
            "messages": messages.iter().map(delivery_json).collect::<Vec<_>>(),
        }),
        Response::AckResult { results } | Response::NackResult { results } => codes_json(results),
        Response::CreateQueueResult {
            error_code,
            queue_id,
        } => with_code(*error_code, object(json!({ "queue_id": s(queue_id) }))),
        Response::DeleteQueueResult { error_code }
        | Response::SetConfigResult { error_code }
        | Response::RevokeApiKeyResult { error_code }
        | Response::SetAclResult { error_code } => with_code(*error_code, Map::new()),
        Response::GetStatsResult(st) => with_code(
            st.error_code,
            object(json!({
                "depth": st.depth,
                "in_flight": st.in_flight,
                "active_fairness_keys": st.active_fairness_keys,
                "active_consumers": st.active_consumers,
                "quantum": st.quantum,
                "leader_node_id": st.leader_node_id,
                "replication_count": st.replication_count,
                "per_key_stats_count": st.per_key_stats.len(),
                "per_key_stats": st.per_key_stats.iter().map(|k| json!({
                    "key": s(&k.key),
                    "pending_count": k.pending_count,
                    "current_deficit": k.current_deficit,
                    "weight": k.weight,
                })).collect::<Vec<_>>(),
                "per_throttle_stats_count": st.per_throttle_stats.len(),
                "per_throttle_stats": st.per_throttle_stats.iter().map(|t| json!({
                    "key": s(&t.key),
                    "tokens": t.tokens,
                    "rate_per_second": t.rate_per_second,
                    "burst": t.burst,
                })).collect::<Vec<_>>(),
            })),
        ),
        Response::ListQueuesResult {
            error_code,
            cluster_node_count,
            queues,
        } => with_code(
            *error_code,
            object(json!({
                "cluster_node_count": cluster_node_count,
                "queue_count": queues.len(),
                "queues": queues.iter().map(|q| json!({
                    "name": s(&q.name),
                    "depth": q.depth,
                    "in_flight": q.in_flight,
                    "active_consumers": q.active_consumers,
                    "leader_node_id": q.leader_node_id,
                })).collect::<Vec<_>>(),
            })),
        ),
        Response::GetConfigResult { error_code, value } => {
            with_code(*error_code, object(json!({ "value": s(value) })))
        }
        Response::ListConfigResult {
            error_code,
            entries,
        } => with_code(
            *error_code,
            object(json!({
                "entry_count": entries.len(),
                "entries": entries.iter().map(|e| json!({
                    "key": s(&e.key), "value": s(&e.value),
                })).collect::<Vec<_>>(),
            })),
        ),
        Response::RedriveResult {
            error_code,
            redriven,
        } => with_code(*error_code, object(json!({ "redriven": redriven }))),
        Response::CreateApiKeyResult {
            error_code,
            key_id,
            key,
            is_superadmin,
        } => with_code(
            *error_code,
            object(json!({
                "key_id": s(key_id), "key": s(key), "is_superadmin": is_superadmin,
            })),
        ),
        Response::ListApiKeysResult { error_code, keys } => with_code(
            *error_code,
            object(json!({
                "key_count": keys.len(),
                "keys": keys.iter().map(|k| json!({
                    "key_id": s(&k.key_id),
                    "name": s(&k.name),
                    "created_at_ms": k.created_at_ms,
                    "expires_at_ms": k.expires_at_ms,
                    "is_superadmin": k.is_superadmin,
                })).collect::<Vec<_>>(),
            })),
        ),
        Response::GetAclResult {
            error_code,
            key_id,
            is_superadmin,
            permissions: list,
        } => with_code(
            *error_code,
            object(json!({
                "key_id": s(key_id),
                "is_superadmin": is_superadmin,
                "permission_count": list.len(),
                "permissions": permissions(list),
            })),
        ),
        Response::LuaTestResult(result) => with_code(
            result.error_code,
            object(json!({
                "message": s(&result.message), "fairness_key": s(&result.fairness_key),
                "weight": result.weight,
                "throttle_keys": result.throttle_keys.iter().map(s).collect::<Vec<_>>(),
                "action": s(&result.action), "delay_ms": result.delay_ms,
            })),
        ),
        Response::Error {
            code: error_code,
            message,
            metadata,
        } => with_code(
            *error_code,
            object(json!({ "message": s(message), "metadata": map(metadata) })),
        ),
    }
}

/// True when some map in `fields` has two or more entries (§20: compare values there).
fn has_multi_entry_map(value: &Value, key: Option<&str>) -> bool {
    match value {
        Value::Object(o) => {
            (matches!(key, Some("headers" | "metadata")) && o.len() >= 2)
                || o.iter().any(|(k, v)| has_multi_entry_map(v, Some(k)))
        }
        Value::Array(a) => a.iter().any(|v| has_multi_entry_map(v, None)),
        _ => false,
    }
}

enum Decoded {
    Request(Request),
    Response(Response),
}

impl Decoded {
    fn json(&self) -> Value {
        match self {
            Decoded::Request(r) => request_json(r),
            Decoded::Response(r) => response_json(r),
        }
    }

    fn encode(&self, request_id: u32) -> BytesMut {
        let mut out = BytesMut::new();
        match self {
            Decoded::Request(r) => {
                r.encode(request_id, &mut out).unwrap();
                assert_eq!(out.len(), r.encoded_len());
            }
            Decoded::Response(r) => {
                r.encode(request_id, &mut out).unwrap();
                assert_eq!(out.len(), r.encoded_len());
            }
        }
        out
    }
}

fn decode_body(direction: &str, frame: &Frame) -> Decoded {
    match direction {
        "client_to_server" => {
            // The other direction must refuse this opcode without reading the body.
            let wrong = Response::decode(frame.opcode, frame.payload.clone()).unwrap_err();
            assert!(wrong.is_opcode_rejection());
            Decoded::Request(Request::decode(frame.opcode, frame.payload.clone()).unwrap())
        }
        "server_to_client" => {
            let wrong = Request::decode(frame.opcode, frame.payload.clone()).unwrap_err();
            assert!(wrong.is_opcode_rejection());
            Decoded::Response(Response::decode(frame.opcode, frame.payload.clone()).unwrap())
        }
        other => panic!("unknown direction {other}"),
    }
}

/// Checks one single-frame vector; returns its opcode.
fn check_single(vector: &Value) -> u8 {
    let name = vector["name"].as_str().unwrap();
    let bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "{name}: trailing bytes");
    assert_eq!(
        u64::from(frame.opcode),
        vector["opcode"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        u64::from(frame.flags),
        vector["flags"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        u64::from(frame.request_id),
        vector["request_id"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        frame.payload.len() as u64,
        vector["payload_length"].as_u64().unwrap(),
        "{name}"
    );
    let opcode = Opcode::from_u8(frame.opcode).unwrap();
    assert_eq!(
        opcode.name(),
        vector["opcode_name"].as_str().unwrap(),
        "{name}"
    );

    let decoded = decode_body(vector["direction"].as_str().unwrap(), &frame);
    assert_eq!(
        decoded.json(),
        vector["fields"],
        "{name}: decoded fields differ"
    );

    let encoded = decoded.encode(frame.request_id);
    assert_eq!(
        hex::encode(&encoded),
        vector["hex"].as_str().unwrap(),
        "{name}: encoding differs"
    );
    if has_multi_entry_map(&vector["fields"], None) {
        let mut again = encoded.clone();
        let frame = FrameDecoder::new().decode(&mut again).unwrap().unwrap();
        let redecoded = decode_body(vector["direction"].as_str().unwrap(), &frame);
        assert_eq!(
            redecoded.json(),
            vector["fields"],
            "{name}: re-decoded values differ"
        );
    }
    frame.opcode
}

/// Checks the continuation vector: pieces reassemble into the listed body.
fn check_continuation(vector: &Value) -> u8 {
    let name = vector["name"].as_str().unwrap();
    let pieces = vector["frames"].as_array().unwrap();
    let flags = vector["flags"].as_array().unwrap();
    assert_eq!(pieces.len(), flags.len(), "{name}");
    assert!(pieces.len() >= 2, "{name}: not a multi-frame vector");
    // Each piece on its own: the listed flags.
    for (piece, flag) in pieces.iter().zip(flags) {
        let text = piece.as_str().or_else(|| piece["hex"].as_str()).unwrap();
        let mut buf = BytesMut::from(&hex::decode(text).unwrap()[..]);
        let raw = decode_frame(&mut buf).unwrap().unwrap();
        assert_eq!(u64::from(raw.flags), flag.as_u64().unwrap(), "{name}");
        assert!(buf.is_empty());
    }
    // The concatenation through the reassembling decoder: one logical frame.
    let mut buf = BytesMut::from(&hex::decode(vector["hex"].as_str().unwrap()).unwrap()[..]);
    let mut decoder = FrameDecoder::new();
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
    assert_eq!(decoder.open_streams(), 0);
    assert_eq!(decoder.buffered_bytes(), 0);
    assert!(!frame.is_continuation());
    assert_eq!(u64::from(frame.opcode), vector["opcode"].as_u64().unwrap());
    assert_eq!(
        u64::from(frame.request_id),
        vector["request_id"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(&frame.payload),
        vector["reassembled_payload_hex"].as_str().unwrap(),
        "{name}"
    );
    let decoded = decode_body(vector["direction"].as_str().unwrap(), &frame);
    assert_eq!(decoded.json(), vector["fields"], "{name}");
    // We never fragment: the same body goes out as one frame with flags 0.
    let encoded = decoded.encode(frame.request_id);
    assert_eq!(encoded[5], 0);
    assert_eq!(&encoded[10..], &frame.payload[..]);
    frame.opcode
}

#[test]
fn every_vector_decodes_to_its_fields_and_encodes_to_its_bytes() {
    let document: Value = serde_json::from_str(VECTORS).unwrap();
    let vectors = document["vectors"].as_array().unwrap();
    let mut checked = 0;
    let mut names = BTreeSet::new();
    let mut opcodes = BTreeSet::new();
    let mut continuation = 0;
    for vector in vectors {
        assert!(names.insert(vector["name"].as_str().unwrap().to_owned()));
        let opcode = if vector.get("frames").is_some() {
            continuation += 1;
            check_continuation(vector)
        } else {
            check_single(vector)
        };
        opcodes.insert(opcode);
        checked += 1;
    }
    assert_eq!(checked, VECTOR_COUNT, "every vector must be checked");
    assert_eq!(continuation, 1, "the continuation vector must be present");
    // Every opcode of the specification; this server's extensions (0xC0–0xCF) have no
    // golden vectors and are covered by the roundtrip tests.
    let every: BTreeSet<u8> = Opcode::ALL
        .iter()
        .map(|op| op.as_u8())
        .filter(|byte| !Opcode::is_extension_range(*byte))
        .collect();
    assert_eq!(opcodes, every, "the vectors cover every opcode");
}

#[test]
fn hex_mismatch_is_detected() {
    // Guard against a checker that cannot fail: a one-byte change in a body must change
    // either the decode or the re-encoding.
    let document: Value = serde_json::from_str(VECTORS).unwrap();
    let vector = &document["vectors"][1];
    let mut bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
    let decoded = decode_body("client_to_server", &frame);
    assert_ne!(decoded.json(), vector["fields"]);
}
