//! The codec's error types, one per kind of failure a caller must treat differently.
//!
//! - [`FrameError`]: the byte stream itself is broken (bad length, continuation violation).
//!   The connection must be closed without an Error frame (§2, §3).
//! - [`DecodeError`]: one body could not be decoded, or its opcode is not accepted in this
//!   direction. The server answers with Error `InvalidFrame` and the request id and keeps
//!   the connection open (§4, §5.6).
//! - [`EncodeError`]: a value cannot be written within the protocol's limits. Nothing is
//!   appended to the output buffer in that case.
//!
//! "Read more bytes" is not an error at all: [`crate::FrameDecoder::decode`] returns `Ok(None)`.

/// A fatal framing error: close the connection, send nothing (§2, §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is above 16 MiB.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLong {
        /// The `length` field as received.
        length: u32,
        /// The limit, [`crate::limits::FRAME_BYTES_MAX`].
        max: usize,
    },
    /// The length prefix is below the 6-byte header.
    #[error("frame length {length} is below the 6-byte header")]
    TooShort {
        /// The `length` field as received.
        length: u32,
    },
    /// A continuation piece would open one stream more than allowed.
    #[error("too many open continuation streams (limit {max})")]
    TooManyStreams {
        /// The limit in force.
        max: usize,
    },
    /// A piece names a request id whose open stream has another opcode.
    #[error(
        "continuation piece for request {request_id} has opcode {found:#04x}, stream has {expected:#04x}"
    )]
    OpcodeMismatch {
        /// The request id of the stream.
        request_id: u32,
        /// The opcode the stream was opened with.
        expected: u8,
        /// The opcode of the offending piece.
        found: u8,
    },
    /// Buffered continuation data would exceed the per-connection budget.
    #[error("continuation data would reach {needed} bytes, over the limit of {max}")]
    ContinuationTooLarge {
        /// Bytes that would be buffered with this piece.
        needed: usize,
        /// The limit in force.
        max: usize,
    },
}

/// A body that cannot be decoded, or an opcode that is not accepted (§4, §5.6).
///
/// The server answers every variant with Error `InvalidFrame` carrying the request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The opcode is not a client request (unknown, cluster, or server-to-client number).
    /// The body was not read.
    #[error("opcode {opcode:#04x} is not accepted")]
    OpcodeNotAccepted {
        /// The opcode byte as received.
        opcode: u8,
    },
    /// The opcode is not a server-to-client frame. The body was not read.
    #[error("opcode {opcode:#04x} is not a server reply")]
    NotAResponse {
        /// The opcode byte as received.
        opcode: u8,
    },
    /// The body ended before a field was complete.
    #[error("body truncated in {field}: needed {needed} bytes, {remaining} left")]
    Truncated {
        /// Which field was being read.
        field: &'static str,
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A `string` is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field was being read.
        field: &'static str,
        /// The validation failure.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A list count is above its named limit.
    #[error("{field} count {count} exceeds the limit of {max}")]
    CountTooLarge {
        /// Which list was being read.
        field: &'static str,
        /// The count as received.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A list count cannot fit in the bytes left, even with the smallest records.
    #[error("{field} count {count} needs at least {needed} bytes, {remaining} left")]
    CountExceedsRemaining {
        /// Which list was being read.
        field: &'static str,
        /// The count as received.
        count: usize,
        /// Smallest number of bytes that many records occupy.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
}

impl DecodeError {
    /// True when the body was not looked at because the opcode is not accepted.
    pub fn is_opcode_rejection(&self) -> bool {
        matches!(
            self,
            DecodeError::OpcodeNotAccepted { .. } | DecodeError::NotAResponse { .. }
        )
    }
}

/// A value that cannot be encoded within the protocol's limits (§4).
///
/// When an encoder returns this, the output buffer is exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame would be longer than 16 MiB.
    #[error("frame of {length} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The `length` field the frame would need.
        length: usize,
        /// The limit, [`crate::limits::FRAME_BYTES_MAX`].
        max: usize,
    },
    /// A `string` is longer than 65,535 bytes.
    #[error("{field} is {length} bytes long, over the string limit of {max}")]
    StringTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The limit, [`crate::limits::STRING_BYTES_MAX`].
        max: usize,
    },
    /// A list or map has more entries than its count field or limit allows.
    #[error("{field} has {count} entries, over the limit of {max}")]
    ListTooLong {
        /// Which list.
        field: &'static str,
        /// Its number of entries.
        count: usize,
        /// The limit.
        max: usize,
    },
}
