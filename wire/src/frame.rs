//! The frame layer (§2): the length-prefixed header, a streaming decoder over a growing
//! `BytesMut`, and the helpers every encoder uses to write one frame.
//!
//! This file owns framing only. Reassembly of continuation pieces lives in
//! `continuation.rs`; body layouts live in `request.rs`, `response.rs` and `delivery.rs`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::continuation::{ContinuationLimits, Reassembler};
use crate::error::{EncodeError, FrameError};
use crate::limits::{
    FLAG_CONTINUATION, FRAME_BYTES_MAX, FRAME_BYTES_MIN, FRAME_HEADER_BYTES, FRAME_PREFIX_BYTES,
};
use crate::opcode::Opcode;

/// One frame as received, or one reassembled logical request.
///
/// `opcode` stays a raw byte: whether it is acceptable is the body decoder's decision
/// ([`crate::Request::decode`] / [`crate::Response::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The opcode byte.
    pub opcode: u8,
    /// The flags byte; after reassembly, the flags of the last piece (bit 0 clear).
    pub flags: u8,
    /// The request id chosen by the client.
    pub request_id: u32,
    /// The body, a zero-copy slice of the read buffer for unfragmented frames.
    pub payload: Bytes,
}

impl Frame {
    /// True when flag bit 0 (CONTINUATION) is set: more pieces of this body follow.
    #[inline]
    pub fn is_continuation(&self) -> bool {
        self.flags & FLAG_CONTINUATION != 0
    }

    /// The opcode, if this protocol assigns its number.
    #[inline]
    pub fn known_opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }

    /// Bytes this frame occupies on the wire, length prefix included.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        FRAME_PREFIX_BYTES + FRAME_HEADER_BYTES + self.payload.len()
    }

    /// Writes this frame exactly as given, flags included.
    ///
    /// This is the raw writer (for tests and tools that need to send continuation pieces);
    /// the typed encoders never set the continuation flag.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let length = FRAME_HEADER_BYTES + self.payload.len();
        if length > FRAME_BYTES_MAX {
            return Err(EncodeError::FrameTooLarge {
                length,
                max: FRAME_BYTES_MAX,
            });
        }
        out.reserve(FRAME_PREFIX_BYTES + length);
        out.put_u32(length as u32);
        out.put_u8(self.opcode);
        out.put_u8(self.flags);
        out.put_u32(self.request_id);
        out.put_slice(&self.payload);
        Ok(())
    }
}

/// Reads one physical frame from the front of `buf`, without reassembly.
///
/// Returns `Ok(None)` when more bytes are needed; `buf` is then untouched. The length prefix
/// is checked as soon as its 4 bytes are present, before the body arrives. The decoder never
/// grows `buf` itself: reserving the announced length up front would let 4 bytes from a peer
/// pin 16 MiB, so the reader grows the buffer as data actually arrives. Use this function
/// directly for the Handshake frame, which is never reassembled (§3, §7.1).
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    let Some(prefix) = buf.first_chunk::<FRAME_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(*prefix);
    let length_bytes = usize::try_from(length).unwrap_or(usize::MAX);
    if length_bytes > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong {
            length,
            max: FRAME_BYTES_MAX,
        });
    }
    if length_bytes < FRAME_BYTES_MIN {
        return Err(FrameError::TooShort { length });
    }
    let total = FRAME_PREFIX_BYTES + length_bytes;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(FRAME_PREFIX_BYTES);
    let opcode = frame.get_u8();
    let flags = frame.get_u8();
    let request_id = frame.get_u32();
    Ok(Some(Frame {
        opcode,
        flags,
        request_id,
        payload: frame.freeze(),
    }))
}

/// Streaming decoder for one connection: frames out, continuation pieces reassembled.
///
/// Feed it the connection's read buffer after every read. Each call returns at most one
/// complete logical frame; call again until it returns `Ok(None)` ("read more"). Any
/// `Err` is fatal for the connection (close it, send nothing).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    reassembler: Reassembler,
}

impl FrameDecoder {
    /// A decoder with the default continuation limits (64 streams, 64 MiB).
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// A decoder with explicit continuation limits.
    pub fn with_limits(limits: ContinuationLimits) -> Self {
        FrameDecoder {
            reassembler: Reassembler::new(limits),
        }
    }

    /// Takes the next complete logical frame off the front of `buf`.
    ///
    /// Continuation pieces are consumed and buffered until their stream completes; plain
    /// frames of other request ids pass straight through in between (§3).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        while let Some(piece) = decode_frame(buf)? {
            if let Some(frame) = self.reassembler.push(piece)? {
                return Ok(Some(frame));
            }
        }
        Ok(None)
    }

    /// Continuation streams currently open.
    pub fn open_streams(&self) -> usize {
        self.reassembler.open_streams()
    }

    /// Continuation bytes currently buffered (for a server-wide budget).
    pub fn buffered_bytes(&self) -> usize {
        self.reassembler.buffered_bytes()
    }
}

/// Writes a frame header with a placeholder length; returns where the frame starts.
#[inline]
pub(crate) fn begin_frame(out: &mut BytesMut, opcode: Opcode, request_id: u32) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(opcode.as_u8());
    out.put_u8(0);
    out.put_u32(request_id);
    start
}

/// Patches the length of the frame that starts at `start`, or undoes it if it is too long.
#[inline]
pub(crate) fn finish_frame(out: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
    let length = out.len() - start - FRAME_PREFIX_BYTES;
    if length > FRAME_BYTES_MAX {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            length,
            max: FRAME_BYTES_MAX,
        });
    }
    patch_u32(out, start, length as u32);
    Ok(())
}

/// Overwrites four bytes at `at` with `value` (big-endian). `at + 4` must be within `out`.
#[inline]
pub(crate) fn patch_u32(out: &mut BytesMut, at: usize, value: u32) {
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes one whole frame: header, then `body`, then the patched length.
///
/// On any error the output is truncated back to where it was.
#[inline]
pub(crate) fn encode_frame(
    out: &mut BytesMut,
    opcode: Opcode,
    request_id: u32,
    body_len: usize,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let length = FRAME_HEADER_BYTES + body_len;
    if length > FRAME_BYTES_MAX {
        return Err(EncodeError::FrameTooLarge {
            length,
            max: FRAME_BYTES_MAX,
        });
    }
    out.reserve(FRAME_PREFIX_BYTES + length);
    let start = begin_frame(out, opcode, request_id);
    if let Err(error) = body(out) {
        out.truncate(start);
        return Err(error);
    }
    finish_frame(out, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_until_the_whole_frame_is_present() {
        let bytes = [0, 0, 0, 7, 0x03, 0, 0, 0, 0, 42, 0xaa];
        let mut decoder = FrameDecoder::new();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.opcode, 0x03);
        assert_eq!(frame.request_id, 42);
        assert_eq!(&frame.payload[..], &[0xaa]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_fatal_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&[0x01, 0x00, 0x00, 0x01][..]);
        assert_eq!(
            decode_frame(&mut buf),
            Err(FrameError::TooLong {
                length: 16_777_217,
                max: FRAME_BYTES_MAX
            })
        );
        // Exactly 16 MiB is allowed: it waits for the body.
        let mut buf = BytesMut::from(&[0x01, 0x00, 0x00, 0x00][..]);
        assert_eq!(decode_frame(&mut buf), Ok(None));
    }

    #[test]
    fn undersized_length_is_fatal() {
        for length in 0..6u8 {
            let mut buf = BytesMut::from(&[0, 0, 0, length][..]);
            assert_eq!(
                decode_frame(&mut buf),
                Err(FrameError::TooShort {
                    length: u32::from(length)
                })
            );
        }
    }

    #[test]
    fn raw_frame_encode_round_trips_with_flags() {
        let frame = Frame {
            opcode: 0x10,
            flags: 0x01,
            request_id: 20,
            payload: Bytes::from_static(b"abc"),
        };
        let mut out = BytesMut::new();
        frame.encode(&mut out).unwrap();
        assert_eq!(out.len(), frame.encoded_len());
        assert_eq!(decode_frame(&mut out).unwrap(), Some(frame));
    }
}
