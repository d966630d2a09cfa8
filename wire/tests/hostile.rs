//! Hostile input: arbitrary bytes through the frame decoder, the continuation reassembler
//! and every body decoder never panic, and decoding never allocates past what the input
//! and the named limits allow (a huge count with few bytes is an error, not an allocation).
//!
//! Allocation is measured with a counting global allocator that records, per thread, the
//! largest single allocation made while a measurement is active.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// The only unsafe code in the crate's tests: a `GlobalAlloc` wrapper must be an unsafe impl.
// It forwards every call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use fila_wire::limits::{FLAG_CONTINUATION, FRAME_BYTES_MAX, LIST_ITEMS_MAX};
use fila_wire::{
    ContinuationLimits, DecodeError, Frame, FrameDecoder, FrameError, Request, Response,
};
use proptest::collection::vec;
use proptest::prelude::*;

struct CountingAllocator;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    let _ = MEASURING.try_with(|measuring| {
        if measuring.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
            let _ = TOTAL.try_with(|total| total.set(total.get() + size));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns (largest single allocation, total bytes allocated) on this thread.
fn measure<T>(work: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|largest| largest.set(0));
    TOTAL.with(|total| total.set(0));
    MEASURING.with(|measuring| measuring.set(true));
    let result = work();
    MEASURING.with(|measuring| measuring.set(false));
    (result, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// Largest single allocation a body of `body_len` bytes may cause: a decoded value holds at
/// most 16 bytes of Rust structure per input byte (a map entry is 64 bytes of structure for
/// 4 bytes of input), plus a fixed allowance.
fn allocation_allowance(body_len: usize) -> usize {
    16 * body_len + 1024
}

fn decode_both(
    opcode: u8,
    body: &Bytes,
) -> (Result<Request, DecodeError>, Result<Response, DecodeError>) {
    (
        Request::decode(opcode, body.clone()),
        Response::decode(opcode, body.clone()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_body_for_any_opcode_never_panics_nor_over_allocates(
        opcode in any::<u8>(),
        body in vec(any::<u8>(), 0..256),
    ) {
        let body = Bytes::from(body);
        let (_, largest, _) = measure(|| decode_both(opcode, &body));
        prop_assert!(largest <= allocation_allowance(body.len()), "{largest} bytes for {}", body.len());
    }

    #[test]
    fn bodies_with_hostile_counts_fail_without_allocating(
        opcode in prop_oneof![Just(0x10u8), Just(0x11), Just(0x14), Just(0x16), Just(0x17),
                              Just(0x18), Just(0x19), Just(0xE7), Just(0xE4), Just(0xE8),
                              Just(0xF0), Just(0xF6), Just(0xF8), Just(0xFE)],
        prefix in vec(any::<u8>(), 0..48),
        count in prop_oneof![Just(u32::MAX), Just(0x00ff_ffffu32), Just(LIST_ITEMS_MAX as u32),
                             Just(0xffffu32), 1000u32..100_000],
        tail in vec(any::<u8>(), 0..8),
    ) {
        // A count field (both u32 and u16 spellings) dropped at every offset of a body.
        let mut body = prefix;
        let insert_at = body.len() / 2;
        body.splice(insert_at..insert_at, count.to_be_bytes());
        body.extend(tail);
        let body = Bytes::from(body);
        let (_, largest, _) = measure(|| decode_both(opcode, &body));
        prop_assert!(largest <= allocation_allowance(body.len()), "{largest} bytes for {}", body.len());
    }

    #[test]
    fn any_byte_stream_never_panics_the_frame_decoder(
        stream in vec(any::<u8>(), 0..512),
        chunk in 1usize..64,
    ) {
        let mut decoder = FrameDecoder::with_limits(ContinuationLimits { streams_max: 4, buffered_bytes_max: 256 });
        let mut buf = BytesMut::new();
        'feed: for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        prop_assert!(!frame.is_continuation());
                        let _ = decode_both(frame.opcode, &frame.payload);
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(decoder.open_streams() <= 4);
            prop_assert!(decoder.buffered_bytes() <= 256);
        }
    }

    #[test]
    fn hostile_piece_sequences_respect_the_continuation_limits(
        pieces in vec((0u32..6, prop_oneof![Just(0x10u8), Just(0x16)], any::<bool>(), vec(any::<u8>(), 0..40)), 0..40),
    ) {
        let limits = ContinuationLimits { streams_max: 3, buffered_bytes_max: 100 };
        let mut decoder = FrameDecoder::with_limits(limits);
        let mut buf = BytesMut::new();
        for (request_id, opcode, more, payload) in pieces {
            let payload_len = payload.len();
            Frame { opcode, flags: if more { FLAG_CONTINUATION } else { 0 }, request_id, payload: Bytes::from(payload) }
                .encode(&mut buf)
                .unwrap();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    prop_assert!(!more);
                    prop_assert_eq!(frame.request_id, request_id);
                    prop_assert!(frame.payload.len() >= payload_len);
                    prop_assert!(frame.payload.len() <= limits.buffered_bytes_max.max(payload_len));
                }
                Ok(None) => prop_assert!(more),
                Err(FrameError::TooManyStreams { max }) => { prop_assert_eq!(max, 3); break; }
                Err(FrameError::ContinuationTooLarge { needed, max }) => { prop_assert!(needed > max); break; }
                Err(FrameError::OpcodeMismatch { expected, found, .. }) => { prop_assert_ne!(expected, found); break; }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
            prop_assert!(decoder.open_streams() <= limits.streams_max);
            prop_assert!(decoder.buffered_bytes() <= limits.buffered_bytes_max);
        }
    }
}

#[test]
fn a_million_item_count_in_ten_bytes_allocates_nothing_big() {
    for opcode in [0x10u8, 0x16, 0x18, 0x11, 0x14, 0x17, 0x19] {
        let body = Bytes::from_static(&[0x00, 0x0f, 0x42, 0x40, 0, 0, 0, 0, 0, 0]);
        let ((request, response), largest, total) = measure(|| decode_both(opcode, &body));
        assert!(request.is_err() || response.is_err());
        let error = request
            .err()
            .filter(|e| !e.is_opcode_rejection())
            .or(response.err())
            .unwrap();
        assert!(
            matches!(
                error,
                DecodeError::CountExceedsRemaining {
                    count: 1_000_000,
                    ..
                }
            ),
            "{opcode:#04x}: {error:?}"
        );
        assert!(
            largest < 256 && total < 1024,
            "{opcode:#04x}: largest {largest}, total {total}"
        );
    }
}

#[test]
fn counts_over_the_list_limit_are_rejected_even_with_enough_bytes() {
    let mut body = vec![0u8; 4 + LIST_ITEMS_MAX + 1];
    body[..4].copy_from_slice(&((LIST_ITEMS_MAX + 1) as u32).to_be_bytes());
    let error = Response::decode(0x17, Bytes::from(body)).unwrap_err();
    assert!(
        matches!(error, DecodeError::CountTooLarge { count, max, .. } if count == LIST_ITEMS_MAX + 1 && max == LIST_ITEMS_MAX)
    );
}

#[test]
fn a_length_prefix_over_16_mib_is_fatal_before_any_body_arrives() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    let (result, largest, _) = measure(|| FrameDecoder::new().decode(&mut buf));
    assert!(matches!(
        result,
        Err(FrameError::TooLong {
            length: u32::MAX,
            max: FRAME_BYTES_MAX
        })
    ));
    assert!(largest < 1024);
}

#[test]
fn opcodes_not_accepted_are_rejected_without_reading_the_body() {
    // Server-to-client, cluster, unassigned and unused extension numbers, with bodies that would
    // not decode: the error is the opcode rejection, not a body error.
    for opcode in [
        0x00u8, 0x02, 0x04, 0x06, 0x14, 0x1A, 0x40, 0x4D, 0x5F, 0xC1, 0xCF, 0xFE, 0xFF,
    ] {
        let error = Request::decode(opcode, Bytes::from_static(&[0xff; 3])).unwrap_err();
        assert_eq!(error, DecodeError::OpcodeNotAccepted { opcode });
        assert!(error.is_opcode_rejection());
    }
    for opcode in [0x00u8, 0x01, 0x03, 0x05, 0x10, 0x40, 0xC0, 0xFD, 0xFF] {
        let error = Response::decode(opcode, Bytes::from_static(&[0xff; 3])).unwrap_err();
        assert_eq!(error, DecodeError::NotAResponse { opcode });
    }
    let body_error = Request::decode(0x10, Bytes::from_static(&[0xff; 3])).unwrap_err();
    assert!(!body_error.is_opcode_rejection());
}
