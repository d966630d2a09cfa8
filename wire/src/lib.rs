//! `fila-wire`: the Fila binary protocol v1 (frames, bodies, opcodes, error codes).
//!
//! This crate never does I/O and never depends on `fila-shard`: it turns bytes into
//! values and values into bytes, nothing else. `wire/PROTOCOL.md` describes the protocol
//! exactly as this codec implements it.
//!
//! # Layers
//!
//! - [`FrameDecoder`] takes frames off a connection's growing read buffer and reassembles
//!   continuation pieces. `Ok(None)` means "read more"; any [`FrameError`] is fatal for the
//!   connection (close it without an Error frame).
//! - [`Request::decode`] / [`Response::decode`] turn one body into a value. A
//!   [`DecodeError`] is answered with Error `InvalidFrame` and the request id; the
//!   connection stays open. An opcode that is not accepted in that direction is its own
//!   variant ([`DecodeError::OpcodeNotAccepted`] / [`DecodeError::NotAResponse`]) and the body
//!   is not read.
//! - [`Request::encode`] / [`Response::encode`] append exactly one frame (never continuation
//!   pieces, never more than 16 MiB) or return an [`EncodeError`] and leave the buffer as it
//!   was. [`DeliveryFrameBuilder`] packs several messages into one Delivery frame.
//!
//! Strings are [`ByteString`]s and payloads are [`bytes::Bytes`]: both are zero-copy slices of
//! the frame they were decoded from. A value kept for long keeps that whole frame alive; copy
//! it (`ByteString::from(&*s)`, `Bytes::copy_from_slice`) before storing it for long.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use fila_wire::{EnqueueMessage, ErrorCode, FrameDecoder, Request, Response};
//!
//! // Client: encode an Enqueue of one message.
//! let request = Request::Enqueue {
//!     messages: vec![EnqueueMessage {
//!         queue: "q".into(),
//!         headers: vec![],
//!         payload: Bytes::from_static(b"abc"),
//!     }],
//! };
//! let mut wire = BytesMut::new();
//! request.encode(2, &mut wire).unwrap();
//! assert_eq!(wire.len(), request.encoded_len());
//!
//! // Server: take the frame off the read buffer and decode its body.
//! let mut decoder = FrameDecoder::new();
//! let frame = decoder.decode(&mut wire).unwrap().expect("a whole frame");
//! assert_eq!(frame.request_id, 2);
//! assert_eq!(Request::decode(frame.opcode, frame.payload).unwrap(), request);
//! assert_eq!(decoder.decode(&mut wire).unwrap(), None); // read more
//!
//! // Server: a body that cannot be decoded is answered with InvalidFrame.
//! let error = Request::decode(0x10, Bytes::from_static(&[0, 0, 0, 9])).unwrap_err();
//! let reply = Response::Error {
//!     code: ErrorCode::InvalidFrame,
//!     message: error.to_string().into(),
//!     metadata: vec![],
//! };
//! let mut out = BytesMut::new();
//! reply.encode(frame.request_id, &mut out).unwrap();
//! ```
#![warn(missing_docs)]

mod continuation;
mod delivery;
mod error;
mod error_code;
mod frame;
pub mod limits;
mod opcode;
mod primitives;
mod request;
mod response;

pub use bytestring::ByteString;
pub use continuation::ContinuationLimits;
pub use delivery::{
    DELIVERY_FRAME_BYTES_EMPTY, DELIVERY_MESSAGE_BYTES_MAX, DeliveryFrameBuilder, DeliveryMessage,
};
pub use error::{DecodeError, EncodeError, FrameError};
pub use error_code::ErrorCode;
pub use frame::{Frame, FrameDecoder, decode_frame};
pub use opcode::{Direction, Opcode};
pub use primitives::{StringMap, map_last_wins};
pub use request::{
    AckItem, CreateQueue, EnqueueMessage, Handshake, LuaTest, NackItem, Permission, Request,
};
pub use response::{
    ApiKeyInfo, ConfigEntry, EnqueueItemResult, HandshakeOk, KeyStats, LuaTestResult, QueueStats,
    QueueSummary, Response, StatsExtension, ThrottleStats,
};
