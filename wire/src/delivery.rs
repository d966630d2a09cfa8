//! Delivery bodies (§9.3): the message record, and a builder that packs several ready
//! messages into one Delivery frame while keeping it within 16 MiB.
//!
//! This file owns the Delivery record layout and batching; the `Response::Delivery`
//! variant reuses both. Which messages go into a frame is the server's decision.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::frame::{begin_frame, patch_u32};
use crate::limits::{FRAME_BYTES_MAX, FRAME_PREFIX_BYTES, LIST_ITEMS_MAX};
use crate::opcode::Opcode;
use crate::primitives::{
    BYTES_BYTES_MIN, Reader, SHORT_LIST_BYTES_MIN, STRING_BYTES_MIN, StringMap, bytes_len, map_len,
    put_bytes, put_map, put_string, put_string_list, string_len, string_list_len,
};

/// One message inside a Delivery frame (§9.3). Every field is always on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMessage {
    /// UUID text; the id to ack or nack.
    pub message_id: ByteString,
    /// The queue the message is in.
    pub queue: ByteString,
    /// Headers as enqueued.
    pub headers: StringMap,
    /// Payload as enqueued; never copied until it is written into a frame.
    pub payload: Bytes,
    /// Fairness key from the hook, else `"default"`.
    pub fairness_key: ByteString,
    /// Weight from the hook, else 1.
    pub weight: u32,
    /// Throttle keys from the hook, else empty.
    pub throttle_keys: Vec<ByteString>,
    /// 0 on first delivery, +1 per failed attempt.
    pub attempt_count: u32,
    /// Unix milliseconds of the enqueue (0 from the reference server).
    pub enqueued_at: u64,
    /// Unix milliseconds of this lease (0 from the reference server).
    pub leased_at: u64,
}

impl DeliveryMessage {
    /// Smallest encoded record: all strings and lists empty.
    pub(crate) const BYTES_MIN: usize =
        3 * STRING_BYTES_MIN + 2 * SHORT_LIST_BYTES_MIN + BYTES_BYTES_MIN + 4 + 4 + 8 + 8;

    /// Bytes this record occupies inside a Delivery body.
    pub fn encoded_len(&self) -> usize {
        string_len(&self.message_id)
            + string_len(&self.queue)
            + map_len(&self.headers)
            + bytes_len(&self.payload)
            + string_len(&self.fairness_key)
            + 4
            + string_list_len(&self.throttle_keys)
            + 4
            + 8
            + 8
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeliveryMessage {
            message_id: reader.string("delivery.message_id")?,
            queue: reader.string("delivery.queue")?,
            headers: reader.map("delivery.headers")?,
            payload: reader.bytes("delivery.payload")?,
            fairness_key: reader.string("delivery.fairness_key")?,
            weight: reader.u32("delivery.weight")?,
            throttle_keys: reader.string_list("delivery.throttle_keys")?,
            attempt_count: reader.u32("delivery.attempt_count")?,
            enqueued_at: reader.u64("delivery.enqueued_at")?,
            leased_at: reader.u64("delivery.leased_at")?,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        put_string(out, "delivery.message_id", &self.message_id)?;
        put_string(out, "delivery.queue", &self.queue)?;
        put_map(out, "delivery.headers", &self.headers)?;
        put_bytes(out, &self.payload)?;
        put_string(out, "delivery.fairness_key", &self.fairness_key)?;
        out.put_u32(self.weight);
        put_string_list(out, "delivery.throttle_keys", &self.throttle_keys)?;
        out.put_u32(self.attempt_count);
        out.put_u64(self.enqueued_at);
        out.put_u64(self.leased_at);
        Ok(())
    }
}

/// Bytes of a Delivery frame holding no message: prefix, header and the `u32` count.
pub const DELIVERY_FRAME_BYTES_EMPTY: usize =
    FRAME_PREFIX_BYTES + crate::limits::FRAME_HEADER_BYTES + 4;

/// Largest message record that fits a Delivery frame on its own.
///
/// The server can use this to refuse, at enqueue time, messages it could never deliver.
pub const DELIVERY_MESSAGE_BYTES_MAX: usize =
    FRAME_BYTES_MAX - (DELIVERY_FRAME_BYTES_EMPTY - FRAME_PREFIX_BYTES);

/// Appends messages to one Delivery frame in `out`, keeping it within 16 MiB.
///
/// The frame in `out` is complete and valid after [`DeliveryFrameBuilder::new`] and after
/// every successful [`DeliveryFrameBuilder::push`]: the length and count are patched each
/// time, so there is no finish step to forget. A push that would overflow the frame leaves
/// `out` unchanged and returns [`EncodeError::FrameTooLarge`]; write the frame and start a
/// new one. A frame with zero messages is valid but pointless; check [`Self::message_count`].
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use fila_wire::{DeliveryFrameBuilder, DeliveryMessage};
///
/// let message = DeliveryMessage {
///     message_id: "01920c4e-8f3a-7b21-9c4d-5e6f7a8b9c0d".into(),
///     queue: "orders".into(),
///     headers: vec![],
///     payload: Bytes::from_static(b"hello"),
///     fairness_key: "default".into(),
///     weight: 1,
///     throttle_keys: vec![],
///     attempt_count: 0,
///     enqueued_at: 0,
///     leased_at: 0,
/// };
/// let mut out = BytesMut::new();
/// let mut frame = DeliveryFrameBuilder::new(&mut out, 10);
/// assert!(frame.fits(&message));
/// frame.push(&message).unwrap();
/// assert_eq!(frame.message_count(), 1);
/// ```
#[derive(Debug)]
pub struct DeliveryFrameBuilder<'a> {
    out: &'a mut BytesMut,
    start: usize,
    message_count: u32,
}

impl<'a> DeliveryFrameBuilder<'a> {
    /// Starts a Delivery frame for the subscription `request_id` at the end of `out`.
    pub fn new(out: &'a mut BytesMut, request_id: u32) -> Self {
        out.reserve(DELIVERY_FRAME_BYTES_EMPTY);
        let start = begin_frame(out, Opcode::Delivery, request_id);
        out.put_u32(0);
        let mut builder = DeliveryFrameBuilder {
            out,
            start,
            message_count: 0,
        };
        builder.patch();
        builder
    }

    /// Messages in the frame so far.
    pub fn message_count(&self) -> u32 {
        self.message_count
    }

    /// Bytes of the frame so far, length prefix included.
    pub fn frame_len(&self) -> usize {
        self.out.len() - self.start
    }

    /// True when `message` can be pushed without exceeding the frame or count limit.
    pub fn fits(&self, message: &DeliveryMessage) -> bool {
        self.fits_len(message.encoded_len())
    }

    fn fits_len(&self, record_len: usize) -> bool {
        let length = self.frame_len() - FRAME_PREFIX_BYTES + record_len;
        length <= FRAME_BYTES_MAX && (self.message_count as usize) < LIST_ITEMS_MAX
    }

    /// Appends one message, or leaves the frame unchanged and returns an error when it
    /// does not fit ([`EncodeError::FrameTooLarge`], [`EncodeError::ListTooLong`]) or a
    /// string is too long.
    pub fn push(&mut self, message: &DeliveryMessage) -> Result<(), EncodeError> {
        let record_len = message.encoded_len();
        if !self.fits_len(record_len) {
            if self.message_count as usize >= LIST_ITEMS_MAX {
                return Err(EncodeError::ListTooLong {
                    field: "delivery.message_count",
                    count: LIST_ITEMS_MAX + 1,
                    max: LIST_ITEMS_MAX,
                });
            }
            return Err(EncodeError::FrameTooLarge {
                length: self.frame_len() - FRAME_PREFIX_BYTES + record_len,
                max: FRAME_BYTES_MAX,
            });
        }
        let before = self.out.len();
        self.out.reserve(record_len);
        if let Err(error) = message.encode(self.out) {
            self.out.truncate(before);
            return Err(error);
        }
        self.message_count += 1;
        self.patch();
        Ok(())
    }

    fn patch(&mut self) {
        let length = self.frame_len() - FRAME_PREFIX_BYTES;
        patch_u32(self.out, self.start, length as u32);
        patch_u32(
            self.out,
            self.start + DELIVERY_FRAME_BYTES_EMPTY - 4,
            self.message_count,
        );
    }
}
