//! Named limits of the protocol and of this codec (style rule 9: a limit on everything).
//!
//! This file owns every numeric bound the codec enforces; it does not own server-side
//! policy limits (payload cap, credit window), which live with the server.

/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Bytes of the fixed header after the length prefix: opcode, flags, request id.
pub const FRAME_HEADER_BYTES: usize = 6;

/// Largest allowed value of the `length` field (header + payload), 16 MiB (§2).
///
/// A frame on the wire is at most `FRAME_PREFIX_BYTES + FRAME_BYTES_MAX` bytes long.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Smallest allowed value of the `length` field: a header with an empty payload.
pub const FRAME_BYTES_MIN: usize = FRAME_HEADER_BYTES;

/// Largest payload one frame can carry: 16,777,210 bytes.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_HEADER_BYTES;

/// Largest `u32` list count a decoder accepts (Enqueue, Delivery, Ack, Nack and their results).
///
/// The encoder refuses longer lists too, so that everything it writes can be read back.
pub const LIST_ITEMS_MAX: usize = 1_000_000;

/// Largest `u16` list count (admin and ACL lists, maps, `string[]`); the field cannot hold more.
pub const SHORT_LIST_ITEMS_MAX: usize = u16::MAX as usize;

/// Longest `string` in bytes; its length prefix is a `u16`.
pub const STRING_BYTES_MAX: usize = u16::MAX as usize;

/// Most continuation streams open at once on one connection (decisions.md); one more is fatal.
pub const CONTINUATION_STREAMS_MAX: usize = 64;

/// Most continuation data buffered at once on one connection, 64 MiB (decisions.md).
///
/// A stream's bytes count from its first piece up to and including its last one.
pub const CONTINUATION_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The only protocol version this codec speaks (§7.1).
pub const PROTOCOL_VERSION: u16 = 1;

/// Frame flag bit 0: more pieces of this body follow (§3).
pub const FLAG_CONTINUATION: u8 = 0x01;

const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX == 16_777_210);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(CONTINUATION_BYTES_MAX >= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(LIST_ITEMS_MAX <= u32::MAX as usize);
