//! `Request`: every client-to-server body (§8.1, §9, §10, §11), decode and encode.
//!
//! The server decodes requests and the CLI, bench and tests encode them. This file owns the
//! request layouts only; replies are in `response.rs`, framing in `frame.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::frame::encode_frame;
use crate::opcode::Opcode;
use crate::primitives::{
    BYTES_BYTES_MIN, Reader, SHORT_LIST_BYTES_MIN, STRING_BYTES_MIN, StringMap, bytes_len, map_len,
    optional_string_len, put_bool, put_bytes, put_count_u16, put_count_u32, put_map,
    put_optional_string, put_string, string_len,
};

/// Handshake body (§8.1): the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Must be 1; the server rejects anything else with UnsupportedVersion.
    pub protocol_version: u16,
    /// The API key token, absent when the client has none.
    pub api_key: Option<ByteString>,
}

/// One message of an Enqueue batch (§9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueMessage {
    /// Target queue; one batch may span queues.
    pub queue: ByteString,
    /// Free-form headers, visible to the `on_enqueue` hook.
    pub headers: StringMap,
    /// Opaque payload, a zero-copy slice of the request body when decoded.
    pub payload: Bytes,
}

impl EnqueueMessage {
    /// Smallest encoded record: empty queue, no headers, empty payload.
    const BYTES_MIN: usize = STRING_BYTES_MIN + SHORT_LIST_BYTES_MIN + BYTES_BYTES_MIN;

    /// Bytes this record occupies inside an Enqueue body.
    pub fn encoded_len(&self) -> usize {
        string_len(&self.queue) + map_len(&self.headers) + bytes_len(&self.payload)
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(EnqueueMessage {
            queue: reader.string("enqueue.queue")?,
            headers: reader.map("enqueue.headers")?,
            payload: reader.bytes("enqueue.payload")?,
        })
    }

    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_string(out, "enqueue.queue", &self.queue)?;
        put_map(out, "enqueue.headers", &self.headers)?;
        put_bytes(out, &self.payload)
    }
}

/// One item of an Ack batch (§9.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// Queue the message was delivered from.
    pub queue: ByteString,
    /// Message id from the Delivery.
    pub message_id: ByteString,
}

impl AckItem {
    const BYTES_MIN: usize = 2 * STRING_BYTES_MIN;

    fn encoded_len(&self) -> usize {
        string_len(&self.queue) + string_len(&self.message_id)
    }
}

/// One item of a Nack batch (§9.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackItem {
    /// Queue the message was delivered from.
    pub queue: ByteString,
    /// Message id from the Delivery.
    pub message_id: ByteString,
    /// Failure description, handed to the `on_failure` hook.
    pub error: ByteString,
}

impl NackItem {
    const BYTES_MIN: usize = 3 * STRING_BYTES_MIN;

    fn encoded_len(&self) -> usize {
        string_len(&self.queue) + string_len(&self.message_id) + string_len(&self.error)
    }
}

/// CreateQueue body (§10.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateQueue {
    /// Queue name.
    pub name: ByteString,
    /// Lua source of the `on_enqueue` hook.
    pub on_enqueue_script: Option<ByteString>,
    /// Lua source of the `on_failure` hook.
    pub on_failure_script: Option<ByteString>,
    /// Lease length in milliseconds; 0 means the server default.
    pub visibility_timeout_ms: u64,
}

/// Extension `LuaTest` (0xC0): run a hook once against a described message and report the
/// decision, without enqueueing anything. The script is the given source, or, when `script`
/// is absent, the named queue's own hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaTest {
    /// The queue (`msg.queue`; and whose script runs when `script` is absent).
    pub queue: ByteString,
    /// Which hook: 0 = `on_enqueue`, 1 = `on_failure`.
    pub hook: u8,
    /// Lua source to run instead of the queue's own hook.
    pub script: Option<ByteString>,
    /// `msg.headers`.
    pub headers: StringMap,
    /// `msg.payload_size` (on_enqueue).
    pub payload_size: u32,
    /// `msg.attempts` (on_failure).
    pub attempts: u32,
    /// `msg.error` (on_failure).
    pub error: ByteString,
}

/// One ACL grant (§11.4, §11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// `produce`, `consume` or `admin` (other kinds decode fine; the server rejects them).
    pub kind: ByteString,
    /// `*`, an exact queue name, or `<prefix>.*`.
    pub pattern: ByteString,
}

impl Permission {
    pub(crate) const BYTES_MIN: usize = 2 * STRING_BYTES_MIN;

    pub(crate) fn encoded_len(&self) -> usize {
        string_len(&self.kind) + string_len(&self.pattern)
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Permission {
            kind: reader.string("permission.kind")?,
            pattern: reader.string("permission.pattern")?,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_string(out, "permission.kind", &self.kind)?;
        put_string(out, "permission.pattern", &self.pattern)
    }
}

/// Every request a client may send (§5). Exhaustive: one variant per client opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `0x01` (§8.1).
    Handshake(Handshake),
    /// `0x03`; the body is ignored.
    Ping,
    /// `0x05`; the body is ignored.
    Disconnect,
    /// `0x10` (§9.1).
    Enqueue {
        /// The batch, in order.
        messages: Vec<EnqueueMessage>,
    },
    /// `0x12` (§9.2).
    Consume {
        /// Queue to receive from.
        queue: ByteString,
    },
    /// `0x15`; the body is ignored; the request id names the subscription.
    CancelConsume,
    /// `0x16` (§9.5).
    Ack {
        /// The batch, in order.
        items: Vec<AckItem>,
    },
    /// `0x18` (§9.6).
    Nack {
        /// The batch, in order.
        items: Vec<NackItem>,
    },
    /// `0xFD` (§10.1).
    CreateQueue(CreateQueue),
    /// `0xFB` (§10.2).
    DeleteQueue {
        /// Queue to delete.
        queue: ByteString,
    },
    /// `0xF9` (§10.3).
    GetStats {
        /// Queue to inspect.
        queue: ByteString,
    },
    /// `0xF7`; the body is ignored.
    ListQueues,
    /// `0xF5` (§10.5).
    SetConfig {
        /// Configuration key.
        key: ByteString,
        /// New value; empty deletes the key.
        value: ByteString,
    },
    /// `0xF3` (§10.6).
    GetConfig {
        /// Configuration key.
        key: ByteString,
    },
    /// `0xF1` (§10.7).
    ListConfig {
        /// Key prefix; empty lists everything.
        prefix: ByteString,
    },
    /// `0xEF` (§10.8).
    Redrive {
        /// Dead-letter queue to drain; must end in `.dlq`.
        dlq_queue: ByteString,
        /// Most messages to move; 0 means all.
        count: u64,
    },
    /// `0xED` (§11.1).
    CreateApiKey {
        /// Label.
        name: ByteString,
        /// Unix milliseconds; 0 never expires.
        expires_at_ms: u64,
        /// Whether the key bypasses every permission check.
        is_superadmin: bool,
    },
    /// `0xEB` (§11.2).
    RevokeApiKey {
        /// Key id to revoke.
        key_id: ByteString,
    },
    /// `0xE9`; the body is ignored.
    ListApiKeys,
    /// `0xE7` (§11.4).
    SetAcl {
        /// Key whose permissions are replaced.
        key_id: ByteString,
        /// The whole new list.
        permissions: Vec<Permission>,
    },
    /// `0xE5` (§11.5).
    GetAcl {
        /// Key to read.
        key_id: ByteString,
    },
    /// Extension `0xC0`: dry-run a Lua hook.
    LuaTest(LuaTest),
}

impl Request {
    /// The opcode this request is sent with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Handshake(_) => Opcode::Handshake,
            Request::Ping => Opcode::Ping,
            Request::Disconnect => Opcode::Disconnect,
            Request::Enqueue { .. } => Opcode::Enqueue,
            Request::Consume { .. } => Opcode::Consume,
            Request::CancelConsume => Opcode::CancelConsume,
            Request::Ack { .. } => Opcode::Ack,
            Request::Nack { .. } => Opcode::Nack,
            Request::CreateQueue(_) => Opcode::CreateQueue,
            Request::DeleteQueue { .. } => Opcode::DeleteQueue,
            Request::GetStats { .. } => Opcode::GetStats,
            Request::ListQueues => Opcode::ListQueues,
            Request::SetConfig { .. } => Opcode::SetConfig,
            Request::GetConfig { .. } => Opcode::GetConfig,
            Request::ListConfig { .. } => Opcode::ListConfig,
            Request::Redrive { .. } => Opcode::Redrive,
            Request::CreateApiKey { .. } => Opcode::CreateApiKey,
            Request::RevokeApiKey { .. } => Opcode::RevokeApiKey,
            Request::ListApiKeys => Opcode::ListApiKeys,
            Request::SetAcl { .. } => Opcode::SetAcl,
            Request::GetAcl { .. } => Opcode::GetAcl,
            Request::LuaTest(_) => Opcode::LuaTest,
        }
    }

    /// Decodes a request body.
    ///
    /// An opcode that is not a client request (unassigned, cluster, or server-to-client)
    /// gives [`DecodeError::OpcodeNotAccepted`] without reading the body. Bytes after the
    /// last field are ignored (§4). Handshake is decoded like any other body; refusing a
    /// second Handshake is the server's decision.
    pub fn decode(opcode: u8, payload: Bytes) -> Result<Request, DecodeError> {
        let not_accepted = DecodeError::OpcodeNotAccepted { opcode };
        let opcode = Opcode::from_u8(opcode).ok_or(not_accepted.clone())?;
        let mut reader = Reader::new(&payload);
        let r = &mut reader;
        Ok(match opcode {
            Opcode::Handshake => Request::Handshake(Handshake {
                protocol_version: r.u16("handshake.protocol_version")?,
                api_key: r.optional_string("handshake.api_key")?,
            }),
            Opcode::Ping => Request::Ping,
            Opcode::Disconnect => Request::Disconnect,
            Opcode::Enqueue => {
                let count = r.count_u32("enqueue.message_count", EnqueueMessage::BYTES_MIN)?;
                let mut messages = Vec::with_capacity(count);
                for _ in 0..count {
                    messages.push(EnqueueMessage::decode(r)?);
                }
                Request::Enqueue { messages }
            }
            Opcode::Consume => Request::Consume {
                queue: r.string("consume.queue")?,
            },
            Opcode::CancelConsume => Request::CancelConsume,
            Opcode::Ack => {
                let count = r.count_u32("ack.item_count", AckItem::BYTES_MIN)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(AckItem {
                        queue: r.string("ack.queue")?,
                        message_id: r.string("ack.message_id")?,
                    });
                }
                Request::Ack { items }
            }
            Opcode::Nack => {
                let count = r.count_u32("nack.item_count", NackItem::BYTES_MIN)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(NackItem {
                        queue: r.string("nack.queue")?,
                        message_id: r.string("nack.message_id")?,
                        error: r.string("nack.error")?,
                    });
                }
                Request::Nack { items }
            }
            Opcode::CreateQueue => Request::CreateQueue(CreateQueue {
                name: r.string("create_queue.name")?,
                on_enqueue_script: r.optional_string("create_queue.on_enqueue_script")?,
                on_failure_script: r.optional_string("create_queue.on_failure_script")?,
                visibility_timeout_ms: r.u64("create_queue.visibility_timeout_ms")?,
            }),
            Opcode::DeleteQueue => Request::DeleteQueue {
                queue: r.string("delete_queue.queue")?,
            },
            Opcode::GetStats => Request::GetStats {
                queue: r.string("get_stats.queue")?,
            },
            Opcode::ListQueues => Request::ListQueues,
            Opcode::SetConfig => Request::SetConfig {
                key: r.string("set_config.key")?,
                value: r.string("set_config.value")?,
            },
            Opcode::GetConfig => Request::GetConfig {
                key: r.string("get_config.key")?,
            },
            Opcode::ListConfig => Request::ListConfig {
                prefix: r.string("list_config.prefix")?,
            },
            Opcode::Redrive => Request::Redrive {
                dlq_queue: r.string("redrive.dlq_queue")?,
                count: r.u64("redrive.count")?,
            },
            Opcode::CreateApiKey => Request::CreateApiKey {
                name: r.string("create_api_key.name")?,
                expires_at_ms: r.u64("create_api_key.expires_at_ms")?,
                is_superadmin: r.bool("create_api_key.is_superadmin")?,
            },
            Opcode::RevokeApiKey => Request::RevokeApiKey {
                key_id: r.string("revoke_api_key.key_id")?,
            },
            Opcode::ListApiKeys => Request::ListApiKeys,
            Opcode::SetAcl => {
                let key_id = r.string("set_acl.key_id")?;
                let count = r.count_u16("set_acl.permission_count", Permission::BYTES_MIN)?;
                let mut permissions = Vec::with_capacity(count);
                for _ in 0..count {
                    permissions.push(Permission::decode(r)?);
                }
                Request::SetAcl {
                    key_id,
                    permissions,
                }
            }
            Opcode::GetAcl => Request::GetAcl {
                key_id: r.string("get_acl.key_id")?,
            },
            Opcode::LuaTest => Request::LuaTest(LuaTest {
                queue: r.string("lua_test.queue")?,
                hook: r.u8("lua_test.hook")?,
                script: r.optional_string("lua_test.script")?,
                headers: r.map("lua_test.headers")?,
                payload_size: r.u32("lua_test.payload_size")?,
                attempts: r.u32("lua_test.attempts")?,
                error: r.string("lua_test.error")?,
            }),
            Opcode::HandshakeOk
            | Opcode::Pong
            | Opcode::EnqueueResult
            | Opcode::ConsumeOk
            | Opcode::Delivery
            | Opcode::AckResult
            | Opcode::NackResult
            | Opcode::CreateQueueResult
            | Opcode::DeleteQueueResult
            | Opcode::GetStatsResult
            | Opcode::ListQueuesResult
            | Opcode::SetConfigResult
            | Opcode::GetConfigResult
            | Opcode::ListConfigResult
            | Opcode::RedriveResult
            | Opcode::CreateApiKeyResult
            | Opcode::RevokeApiKeyResult
            | Opcode::ListApiKeysResult
            | Opcode::SetAclResult
            | Opcode::GetAclResult
            | Opcode::LuaTestResult
            | Opcode::Error => return Err(not_accepted),
        })
    }

    /// Bytes of this request's body (without the 10-byte frame header and prefix).
    pub fn body_len(&self) -> usize {
        match self {
            Request::Handshake(handshake) => 2 + optional_string_len(handshake.api_key.as_ref()),
            Request::Ping | Request::Disconnect | Request::CancelConsume => 0,
            Request::ListQueues | Request::ListApiKeys => 0,
            Request::Enqueue { messages } => {
                4 + messages
                    .iter()
                    .map(EnqueueMessage::encoded_len)
                    .sum::<usize>()
            }
            Request::Ack { items } => 4 + items.iter().map(AckItem::encoded_len).sum::<usize>(),
            Request::Nack { items } => 4 + items.iter().map(NackItem::encoded_len).sum::<usize>(),
            Request::Consume { queue }
            | Request::DeleteQueue { queue }
            | Request::GetStats { queue } => string_len(queue),
            Request::CreateQueue(create) => {
                string_len(&create.name)
                    + optional_string_len(create.on_enqueue_script.as_ref())
                    + optional_string_len(create.on_failure_script.as_ref())
                    + 8
            }
            Request::SetConfig { key, value } => string_len(key) + string_len(value),
            Request::GetConfig { key } => string_len(key),
            Request::ListConfig { prefix } => string_len(prefix),
            Request::Redrive { dlq_queue, .. } => string_len(dlq_queue) + 8,
            Request::CreateApiKey { name, .. } => string_len(name) + 8 + 1,
            Request::RevokeApiKey { key_id } | Request::GetAcl { key_id } => string_len(key_id),
            Request::SetAcl {
                key_id,
                permissions,
            } => {
                string_len(key_id)
                    + 2
                    + permissions
                        .iter()
                        .map(Permission::encoded_len)
                        .sum::<usize>()
            }
            Request::LuaTest(test) => {
                string_len(&test.queue)
                    + 1
                    + optional_string_len(test.script.as_ref())
                    + map_len(&test.headers)
                    + 4
                    + 4
                    + string_len(&test.error)
            }
        }
    }

    /// Bytes of the whole frame this request encodes to, length prefix included.
    pub fn encoded_len(&self) -> usize {
        crate::limits::FRAME_PREFIX_BYTES + crate::limits::FRAME_HEADER_BYTES + self.body_len()
    }

    /// Appends this request as one frame (flags 0, never continuation pieces).
    ///
    /// Errors when a string, a list or the frame exceeds its limit; `out` is then unchanged.
    pub fn encode(&self, request_id: u32, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(out, self.opcode(), request_id, self.body_len(), |out| {
            self.encode_body(out)
        })
    }

    fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Request::Handshake(handshake) => {
                out.put_u16(handshake.protocol_version);
                put_optional_string(out, "handshake.api_key", handshake.api_key.as_ref())
            }
            Request::Ping
            | Request::Disconnect
            | Request::CancelConsume
            | Request::ListQueues
            | Request::ListApiKeys => Ok(()),
            Request::Enqueue { messages } => {
                put_count_u32(out, "enqueue.message_count", messages.len())?;
                messages.iter().try_for_each(|message| message.encode(out))
            }
            Request::Consume { queue } => put_string(out, "consume.queue", queue),
            Request::Ack { items } => {
                put_count_u32(out, "ack.item_count", items.len())?;
                items.iter().try_for_each(|item| {
                    put_string(out, "ack.queue", &item.queue)?;
                    put_string(out, "ack.message_id", &item.message_id)
                })
            }
            Request::Nack { items } => {
                put_count_u32(out, "nack.item_count", items.len())?;
                items.iter().try_for_each(|item| {
                    put_string(out, "nack.queue", &item.queue)?;
                    put_string(out, "nack.message_id", &item.message_id)?;
                    put_string(out, "nack.error", &item.error)
                })
            }
            Request::CreateQueue(create) => {
                put_string(out, "create_queue.name", &create.name)?;
                put_optional_string(
                    out,
                    "create_queue.on_enqueue_script",
                    create.on_enqueue_script.as_ref(),
                )?;
                put_optional_string(
                    out,
                    "create_queue.on_failure_script",
                    create.on_failure_script.as_ref(),
                )?;
                out.put_u64(create.visibility_timeout_ms);
                Ok(())
            }
            Request::DeleteQueue { queue } => put_string(out, "delete_queue.queue", queue),
            Request::GetStats { queue } => put_string(out, "get_stats.queue", queue),
            Request::SetConfig { key, value } => {
                put_string(out, "set_config.key", key)?;
                put_string(out, "set_config.value", value)
            }
            Request::GetConfig { key } => put_string(out, "get_config.key", key),
            Request::ListConfig { prefix } => put_string(out, "list_config.prefix", prefix),
            Request::Redrive { dlq_queue, count } => {
                put_string(out, "redrive.dlq_queue", dlq_queue)?;
                out.put_u64(*count);
                Ok(())
            }
            Request::CreateApiKey {
                name,
                expires_at_ms,
                is_superadmin,
            } => {
                put_string(out, "create_api_key.name", name)?;
                out.put_u64(*expires_at_ms);
                put_bool(out, *is_superadmin);
                Ok(())
            }
            Request::RevokeApiKey { key_id } => put_string(out, "revoke_api_key.key_id", key_id),
            Request::SetAcl {
                key_id,
                permissions,
            } => {
                put_string(out, "set_acl.key_id", key_id)?;
                put_count_u16(out, "set_acl.permission_count", permissions.len())?;
                permissions
                    .iter()
                    .try_for_each(|permission| permission.encode(out))
            }
            Request::GetAcl { key_id } => put_string(out, "get_acl.key_id", key_id),
            Request::LuaTest(test) => {
                put_string(out, "lua_test.queue", &test.queue)?;
                out.put_u8(test.hook);
                put_optional_string(out, "lua_test.script", test.script.as_ref())?;
                put_map(out, "lua_test.headers", &test.headers)?;
                out.put_u32(test.payload_size);
                out.put_u32(test.attempts);
                put_string(out, "lua_test.error", &test.error)
            }
        }
    }
}
