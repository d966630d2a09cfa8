//! Encoder limits: nothing over 16 MiB, no string over 65,535 bytes, no list over its count
//! field; every refusal is an `EncodeError` that leaves the output buffer unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use fila_wire::limits::{FRAME_BYTES_MAX, STRING_BYTES_MAX};
use fila_wire::{
    ConfigEntry, DELIVERY_MESSAGE_BYTES_MAX, DeliveryFrameBuilder, DeliveryMessage, EncodeError,
    EnqueueMessage, ErrorCode, FrameDecoder, Request, Response,
};

fn message(payload_bytes: usize) -> DeliveryMessage {
    DeliveryMessage {
        message_id: "01920c4e-8f3a-7b21-9c4d-5e6f7a8b9c0d".into(),
        queue: "orders".into(),
        headers: vec![],
        payload: Bytes::from(vec![7u8; payload_bytes]),
        fairness_key: "default".into(),
        weight: 1,
        throttle_keys: vec![],
        attempt_count: 0,
        enqueued_at: 0,
        leased_at: 0,
    }
}

fn prefilled() -> BytesMut {
    BytesMut::from(&b"earlier frames"[..])
}

#[test]
fn delivery_builder_refuses_the_message_that_would_overflow_and_keeps_the_frame() {
    let big = message(4 * 1024 * 1024);
    let mut out = prefilled();
    let mut builder = DeliveryFrameBuilder::new(&mut out, 10);
    for _ in 0..3 {
        builder.push(&big).unwrap();
    }
    assert!(!builder.fits(&big));
    let before = builder.frame_len();
    let error = builder.push(&big).unwrap_err();
    assert!(
        matches!(error, EncodeError::FrameTooLarge { length, max } if length > max && max == FRAME_BYTES_MAX)
    );
    assert_eq!(builder.frame_len(), before);
    assert_eq!(builder.message_count(), 3);
    // A small message still fits after the refusal.
    let small = message(10);
    builder.push(&small).unwrap();
    let mut stream = out.split_off(14);
    assert_eq!(&out[..], b"earlier frames");
    let frame = FrameDecoder::new().decode(&mut stream).unwrap().unwrap();
    assert!(stream.is_empty());
    match Response::decode(frame.opcode, frame.payload).unwrap() {
        Response::Delivery { messages } => {
            assert_eq!(messages.len(), 4);
            assert_eq!(messages[3], small);
            assert_eq!(messages[0], big);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_largest_deliverable_record_fits_alone_and_one_byte_more_does_not() {
    let overhead = message(0).encoded_len();
    let largest = message(DELIVERY_MESSAGE_BYTES_MAX - overhead);
    assert_eq!(largest.encoded_len(), DELIVERY_MESSAGE_BYTES_MAX);
    let mut out = BytesMut::new();
    let mut builder = DeliveryFrameBuilder::new(&mut out, 1);
    builder.push(&largest).unwrap();
    assert_eq!(builder.frame_len(), 4 + FRAME_BYTES_MAX);
    let mut out = BytesMut::new();
    let mut builder = DeliveryFrameBuilder::new(&mut out, 1);
    let too_big = message(DELIVERY_MESSAGE_BYTES_MAX - overhead + 1);
    assert!(builder.push(&too_big).is_err());
    assert_eq!(builder.message_count(), 0);
    // The same record through Response::encode: refused, output unchanged.
    let mut out = prefilled();
    let error = Response::Delivery {
        messages: vec![too_big],
    }
    .encode(1, &mut out)
    .unwrap_err();
    assert_eq!(
        error,
        EncodeError::FrameTooLarge {
            length: FRAME_BYTES_MAX + 1,
            max: FRAME_BYTES_MAX
        }
    );
    assert_eq!(out, prefilled());
}

#[test]
fn an_enqueue_of_exactly_sixteen_mib_encodes_and_one_byte_more_does_not() {
    // length = 6 header + 4 count + 2+1 queue + 2 headers + 4 payload length + payload.
    let payload_bytes = FRAME_BYTES_MAX - 6 - 4 - 3 - 2 - 4;
    let request = |payload_bytes: usize| Request::Enqueue {
        messages: vec![EnqueueMessage {
            queue: "q".into(),
            headers: vec![],
            payload: Bytes::from(vec![1u8; payload_bytes]),
        }],
    };
    let exact = request(payload_bytes);
    let mut out = BytesMut::new();
    exact.encode(3, &mut out).unwrap();
    assert_eq!(out.len(), 4 + FRAME_BYTES_MAX);
    let frame = FrameDecoder::new().decode(&mut out).unwrap().unwrap();
    assert_eq!(Request::decode(frame.opcode, frame.payload).unwrap(), exact);

    let mut out = prefilled();
    let error = request(payload_bytes + 1).encode(3, &mut out).unwrap_err();
    assert!(matches!(error, EncodeError::FrameTooLarge { .. }));
    assert_eq!(out, prefilled());
}

#[test]
fn a_string_over_65535_bytes_is_refused_and_nothing_is_written() {
    let long = "e".repeat(STRING_BYTES_MAX + 1);
    let mut out = prefilled();
    let error = Response::error(ErrorCode::LuaCompilationError, long.as_str())
        .encode(5, &mut out)
        .unwrap_err();
    assert_eq!(
        error,
        EncodeError::StringTooLong {
            field: "error.message",
            length: STRING_BYTES_MAX + 1,
            max: STRING_BYTES_MAX
        }
    );
    assert_eq!(out, prefilled());
    // Exactly 65,535 is fine.
    Response::error(ErrorCode::LuaCompilationError, &long[1..])
        .encode(5, &mut out)
        .unwrap();
}

#[test]
fn a_u16_list_over_65535_entries_is_refused() {
    let entries = vec![
        ConfigEntry {
            key: "".into(),
            value: "".into()
        };
        65_536
    ];
    let mut out = prefilled();
    let error = Response::ListConfigResult {
        error_code: ErrorCode::Ok,
        entries,
    }
    .encode(6, &mut out)
    .unwrap_err();
    assert!(matches!(
        error,
        EncodeError::ListTooLong {
            count: 65_536,
            max: 65_535,
            ..
        }
    ));
    assert_eq!(out, prefilled());
}
