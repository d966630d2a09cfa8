//! Reassembly of continuation pieces into one body (§3), with the per-connection limits of
//! decisions.md: at most 64 open streams and 64 MiB of buffered continuation data.
//!
//! This file owns the stream table of one connection. It does not read bytes off the wire
//! (`frame.rs` does) and does not decode bodies. Every violation is a [`FrameError`]:
//! fatal, close the connection without an Error frame.

use bytes::BytesMut;

use crate::error::FrameError;
use crate::frame::Frame;
use crate::limits::{CONTINUATION_BYTES_MAX, CONTINUATION_STREAMS_MAX};

/// Limits on continuation state for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuationLimits {
    /// Most streams open at once; opening one more is fatal.
    pub streams_max: usize,
    /// Most bytes buffered across all open streams, each stream counted up to and
    /// including its last piece; more is fatal.
    pub buffered_bytes_max: usize,
}

impl Default for ContinuationLimits {
    fn default() -> Self {
        ContinuationLimits {
            streams_max: CONTINUATION_STREAMS_MAX,
            buffered_bytes_max: CONTINUATION_BYTES_MAX,
        }
    }
}

/// One body being reassembled.
#[derive(Debug)]
struct OpenStream {
    request_id: u32,
    opcode: u8,
    body: BytesMut,
}

/// The open streams of one connection, keyed by request id.
///
/// A plain vector: with at most 64 entries a linear scan beats hashing, and the common case
/// (no open stream) is a length check.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    streams: Vec<OpenStream>,
    buffered_bytes: usize,
    limits: ContinuationLimits,
}

impl Reassembler {
    /// An empty table with the given limits.
    pub(crate) fn new(limits: ContinuationLimits) -> Self {
        Reassembler {
            streams: Vec::new(),
            buffered_bytes: 0,
            limits,
        }
    }

    /// Streams currently open.
    pub(crate) fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes currently buffered.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Takes one physical frame; returns a complete logical frame when one is ready.
    pub(crate) fn push(&mut self, piece: Frame) -> Result<Option<Frame>, FrameError> {
        if self.streams.is_empty() && !piece.is_continuation() {
            return Ok(Some(piece));
        }
        let position = self
            .streams
            .iter()
            .position(|stream| stream.request_id == piece.request_id);
        match position {
            None if !piece.is_continuation() => Ok(Some(piece)),
            None => self.open(piece).map(|()| None),
            Some(index) => self.append(index, piece),
        }
    }

    fn reserve_bytes(&mut self, bytes: usize) -> Result<(), FrameError> {
        let needed = self.buffered_bytes.saturating_add(bytes);
        if needed > self.limits.buffered_bytes_max {
            return Err(FrameError::ContinuationTooLarge {
                needed,
                max: self.limits.buffered_bytes_max,
            });
        }
        self.buffered_bytes = needed;
        Ok(())
    }

    fn open(&mut self, piece: Frame) -> Result<(), FrameError> {
        if self.streams.len() >= self.limits.streams_max {
            return Err(FrameError::TooManyStreams {
                max: self.limits.streams_max,
            });
        }
        self.reserve_bytes(piece.payload.len())?;
        self.streams.push(OpenStream {
            request_id: piece.request_id,
            opcode: piece.opcode,
            body: BytesMut::from(&piece.payload[..]),
        });
        Ok(())
    }

    fn append(&mut self, index: usize, piece: Frame) -> Result<Option<Frame>, FrameError> {
        let expected = self
            .streams
            .get(index)
            .map(|stream| stream.opcode)
            .unwrap_or(piece.opcode);
        if expected != piece.opcode {
            return Err(FrameError::OpcodeMismatch {
                request_id: piece.request_id,
                expected,
                found: piece.opcode,
            });
        }
        self.reserve_bytes(piece.payload.len())?;
        if piece.is_continuation() {
            if let Some(stream) = self.streams.get_mut(index) {
                stream.body.extend_from_slice(&piece.payload);
            }
            return Ok(None);
        }
        let mut stream = self.streams.swap_remove(index);
        stream.body.extend_from_slice(&piece.payload);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(stream.body.len());
        Ok(Some(Frame {
            opcode: piece.opcode,
            flags: piece.flags,
            request_id: piece.request_id,
            payload: stream.body.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::limits::FLAG_CONTINUATION;

    fn piece(request_id: u32, opcode: u8, more: bool, payload: &'static [u8]) -> Frame {
        Frame {
            opcode,
            flags: if more { FLAG_CONTINUATION } else { 0 },
            request_id,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn pieces_concatenate_and_plain_frames_pass_between() {
        let mut table = Reassembler::default();
        assert_eq!(table.push(piece(7, 0x10, true, b"ab")), Ok(None));
        let plain = piece(8, 0x03, false, b"");
        assert_eq!(table.push(plain.clone()), Ok(Some(plain)));
        assert_eq!(table.push(piece(9, 0x16, true, b"x")), Ok(None));
        assert_eq!(table.push(piece(7, 0x10, true, b"cd")), Ok(None));
        assert_eq!(table.buffered_bytes(), 5);
        let done = table.push(piece(7, 0x10, false, b"e")).unwrap().unwrap();
        assert_eq!(&done.payload[..], b"abcde");
        assert_eq!(done.flags & FLAG_CONTINUATION, 0);
        assert_eq!(table.open_streams(), 1);
        assert_eq!(table.buffered_bytes(), 1);
    }

    #[test]
    fn opcode_change_inside_a_stream_is_fatal() {
        let mut table = Reassembler::default();
        table.push(piece(1, 0x10, true, b"a")).unwrap();
        assert_eq!(
            table.push(piece(1, 0x16, false, b"b")),
            Err(FrameError::OpcodeMismatch {
                request_id: 1,
                expected: 0x10,
                found: 0x16
            })
        );
    }

    #[test]
    fn the_sixty_fifth_stream_is_fatal() {
        let mut table = Reassembler::default();
        for request_id in 0..64 {
            assert_eq!(table.push(piece(request_id, 0x10, true, b"")), Ok(None));
        }
        assert_eq!(
            table.push(piece(64, 0x10, true, b"")),
            Err(FrameError::TooManyStreams { max: 64 })
        );
        // A piece for an open stream is still fine at the limit.
        assert_eq!(table.push(piece(3, 0x10, true, b"z")), Ok(None));
    }

    #[test]
    fn buffered_bytes_over_the_budget_is_fatal() {
        let mut table = Reassembler::new(ContinuationLimits {
            streams_max: 4,
            buffered_bytes_max: 5,
        });
        table.push(piece(1, 0x10, true, b"abc")).unwrap();
        table.push(piece(2, 0x10, true, b"de")).unwrap();
        assert_eq!(
            table.push(piece(1, 0x10, false, b"f")),
            Err(FrameError::ContinuationTooLarge { needed: 6, max: 5 })
        );
    }
}
