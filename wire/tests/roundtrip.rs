//! Property tests: every Request and Response round-trips through encode, the frame
//! decoder and decode; a valid stream (with continuation pieces) split at every byte
//! boundary yields the same frames; the Delivery builder matches `Response::Delivery`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod strategies;

use bytes::{Bytes, BytesMut};
use fila_wire::limits::FLAG_CONTINUATION;
use fila_wire::{DeliveryFrameBuilder, Frame, FrameDecoder, Request, Response};
use proptest::collection::vec;
use proptest::prelude::*;

fn decode_all(decoder: &mut FrameDecoder, buf: &mut BytesMut, frames: &mut Vec<Frame>) {
    while let Some(frame) = decoder.decode(buf).unwrap() {
        frames.push(frame);
    }
}

/// Writes `frame` as pieces cut at `cuts` (fractions of the payload), continuation flags set.
fn write_in_pieces(frame: &Frame, cuts: &[usize], out: &mut BytesMut) {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|cut| cut % (frame.payload.len() + 1))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut start = 0;
    for point in points {
        Frame {
            opcode: frame.opcode,
            flags: FLAG_CONTINUATION,
            request_id: frame.request_id,
            payload: frame.payload.slice(start..point),
        }
        .encode(out)
        .unwrap();
        start = point;
    }
    Frame {
        opcode: frame.opcode,
        flags: 0,
        request_id: frame.request_id,
        payload: frame.payload.slice(start..),
    }
    .encode(out)
    .unwrap();
}

proptest! {
    #[test]
    fn every_request_round_trips(request in strategies::request(), request_id in any::<u32>()) {
        let mut out = BytesMut::new();
        request.encode(request_id, &mut out).unwrap();
        prop_assert_eq!(out.len(), request.encoded_len());
        let frame = FrameDecoder::new().decode(&mut out).unwrap().unwrap();
        prop_assert!(out.is_empty());
        prop_assert_eq!(frame.flags, 0);
        prop_assert_eq!(frame.request_id, request_id);
        prop_assert_eq!(frame.opcode, request.opcode().as_u8());
        prop_assert_eq!(Request::decode(frame.opcode, frame.payload).unwrap(), request);
    }

    #[test]
    fn every_response_round_trips(response in strategies::response(), request_id in any::<u32>()) {
        let mut out = BytesMut::new();
        response.encode(request_id, &mut out).unwrap();
        prop_assert_eq!(out.len(), response.encoded_len());
        let frame = FrameDecoder::new().decode(&mut out).unwrap().unwrap();
        prop_assert!(out.is_empty());
        prop_assert_eq!(frame.flags, 0);
        prop_assert_eq!(frame.request_id, request_id);
        prop_assert_eq!(frame.opcode, response.opcode().as_u8());
        prop_assert_eq!(Response::decode(frame.opcode, frame.payload).unwrap(), response);
    }

    #[test]
    fn trailing_bytes_are_ignored(request in strategies::request(), extra in vec(any::<u8>(), 1..16)) {
        let mut out = BytesMut::new();
        request.encode(1, &mut out).unwrap();
        let frame = FrameDecoder::new().decode(&mut out).unwrap().unwrap();
        let mut body = BytesMut::from(&frame.payload[..]);
        body.extend_from_slice(&extra);
        prop_assert_eq!(Request::decode(frame.opcode, body.freeze()).unwrap(), request);
    }

    #[test]
    fn delivery_builder_matches_the_response_encoder(
        messages in vec(strategies::delivery_message(), 0..5),
        request_id in any::<u32>(),
    ) {
        let mut built = BytesMut::new();
        let mut builder = DeliveryFrameBuilder::new(&mut built, request_id);
        for message in &messages {
            prop_assert!(builder.fits(message));
            builder.push(message).unwrap();
        }
        prop_assert_eq!(builder.message_count() as usize, messages.len());
        let expected = Response::Delivery { messages };
        let mut encoded = BytesMut::new();
        expected.encode(request_id, &mut encoded).unwrap();
        prop_assert_eq!(&built, &encoded);
        let frame = FrameDecoder::new().decode(&mut built).unwrap().unwrap();
        prop_assert_eq!(Response::decode(frame.opcode, frame.payload).unwrap(), expected);
    }

    #[test]
    fn a_stream_split_at_every_byte_yields_the_same_frames(
        requests in vec((strategies::request(), any::<u32>(), vec(any::<usize>(), 0..3)), 1..5),
    ) {
        // Build the stream: each request as one frame, or cut into continuation pieces.
        let mut stream = BytesMut::new();
        let mut expected = Vec::new();
        for (index, (request, _, cuts)) in requests.iter().enumerate() {
            // Distinct request ids, so pieces of one body never meet another's.
            let request_id = index as u32;
            let mut single = BytesMut::new();
            request.encode(request_id, &mut single).unwrap();
            let frame = FrameDecoder::new().decode(&mut single).unwrap().unwrap();
            if cuts.is_empty() {
                frame.encode(&mut stream).unwrap();
            } else {
                write_in_pieces(&frame, cuts, &mut stream);
            }
            expected.push(frame);
        }
        let stream = stream.freeze();
        let mut whole = Vec::new();
        decode_all(&mut FrameDecoder::new(), &mut BytesMut::from(&stream[..]), &mut whole);
        prop_assert_eq!(&whole, &expected);
        for split in 0..=stream.len() {
            let mut decoder = FrameDecoder::new();
            let mut frames = Vec::new();
            let mut buf = BytesMut::from(&stream[..split]);
            decode_all(&mut decoder, &mut buf, &mut frames);
            buf.extend_from_slice(&stream[split..]);
            decode_all(&mut decoder, &mut buf, &mut frames);
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoder.open_streams(), 0);
            prop_assert_eq!(&frames, &expected, "split at {}", split);
        }
        // And one byte at a time.
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut buf = BytesMut::new();
        for byte in stream.iter() {
            buf.extend_from_slice(&[*byte]);
            decode_all(&mut decoder, &mut buf, &mut frames);
        }
        prop_assert_eq!(&frames, &expected);
        for (frame, (request, _, _)) in frames.into_iter().zip(&requests) {
            prop_assert_eq!(&Request::decode(frame.opcode, frame.payload).unwrap(), request);
        }
    }
}

#[test]
fn interleaved_pieces_of_two_streams_reassemble_separately() {
    let mut stream = BytesMut::new();
    let piece = |request_id: u32, more: bool, payload: &'static [u8]| Frame {
        opcode: 0x16,
        flags: if more { FLAG_CONTINUATION } else { 0 },
        request_id,
        payload: Bytes::from_static(payload),
    };
    for frame in [
        piece(1, true, &[0, 0, 0, 1, 0]),
        piece(2, true, &[0, 0]),
        piece(1, true, &[1, b'q', 0]),
        piece(2, false, &[0, 0]),
        piece(1, false, &[1, b'm']),
    ] {
        frame.encode(&mut stream).unwrap();
    }
    let mut frames = Vec::new();
    decode_all(&mut FrameDecoder::new(), &mut stream, &mut frames);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].request_id, 2);
    assert_eq!(
        Request::decode(0x16, frames[0].payload.clone()).unwrap(),
        Request::Ack { items: vec![] }
    );
    assert_eq!(frames[1].request_id, 1);
    assert_eq!(
        Request::decode(0x16, frames[1].payload.clone()).unwrap(),
        Request::Ack {
            items: vec![fila_wire::AckItem {
                queue: "q".into(),
                message_id: "m".into()
            }]
        }
    );
}
