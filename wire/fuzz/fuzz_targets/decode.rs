//! Fuzz target: arbitrary bytes through the frame decoder (with continuation reassembly)
//! and every body decoder, in both directions.
//!
//! Checks, beyond "never panics": every body that decodes re-encodes within limits, and
//! decoding that encoding gives the same value (requests) or the same bytes (responses,
//! whose `f64` fields make value equality unusable for NaN).
#![no_main]

use bytes::{Bytes, BytesMut};
use fila_wire::{FrameDecoder, Request, Response};
use libfuzzer_sys::fuzz_target;

fn check_request(opcode: u8, payload: Bytes) {
    let Ok(request) = Request::decode(opcode, payload) else {
        return;
    };
    let mut out = BytesMut::new();
    request.encode(7, &mut out).expect("a decoded request re-encodes");
    assert_eq!(out.len(), request.encoded_len());
    let frame = FrameDecoder::new().decode(&mut out).expect("valid frame").expect("whole frame");
    let again = Request::decode(frame.opcode, frame.payload).expect("re-decodes");
    assert_eq!(again, request);
}

fn check_response(opcode: u8, payload: Bytes) {
    let Ok(response) = Response::decode(opcode, payload) else {
        return;
    };
    let mut first = BytesMut::new();
    response.encode(7, &mut first).expect("a decoded response re-encodes");
    assert_eq!(first.len(), response.encoded_len());
    let mut copy = first.clone();
    let frame = FrameDecoder::new().decode(&mut copy).expect("valid frame").expect("whole frame");
    let again = Response::decode(frame.opcode, frame.payload).expect("re-decodes");
    let mut second = BytesMut::new();
    again.encode(7, &mut second).expect("re-encodes");
    assert_eq!(first, second);
}

fuzz_target!(|data: &[u8]| {
    // 1. The first byte picks an opcode; the rest is a body for both decoders.
    if let Some((&opcode, body)) = data.split_first() {
        let body = Bytes::copy_from_slice(body);
        check_request(opcode, body.clone());
        check_response(opcode, body);
    }

    // 2. The whole input as a byte stream, fed in chunks whose sizes come from the data,
    //    through the streaming decoder; every frame it yields goes to both decoders.
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut rest = data;
    let mut step = 1usize;
    while !rest.is_empty() {
        let take = step.min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        buf.extend_from_slice(chunk);
        rest = tail;
        step = step % 17 + usize::from(chunk.first().copied().unwrap_or(0) % 7) + 1;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(!frame.is_continuation());
                    check_request(frame.opcode, frame.payload.clone());
                    check_response(frame.opcode, frame.payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
