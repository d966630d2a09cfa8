//! The worked examples of wire-protocol.md §19, byte for byte, in both directions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use fila_wire::{
    DeliveryFrameBuilder, DeliveryMessage, EnqueueMessage, ErrorCode, FrameDecoder, Handshake,
    HandshakeOk, Request, Response,
};

fn bytes_of(spaced_hex: &str) -> Vec<u8> {
    hex::decode(spaced_hex.split_whitespace().collect::<String>()).unwrap()
}

/// Encoding `request` gives `spaced_hex`, and decoding `spaced_hex` gives `request` back.
fn check_request(request: Request, request_id: u32, spaced_hex: &str) {
    let expected = bytes_of(spaced_hex);
    let mut out = BytesMut::new();
    request.encode(request_id, &mut out).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&expected));
    let mut buf = BytesMut::from(&expected[..]);
    let frame = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.request_id, request_id);
    assert_eq!(
        Request::decode(frame.opcode, frame.payload).unwrap(),
        request
    );
}

fn check_response(response: Response, request_id: u32, spaced_hex: &str) {
    let expected = bytes_of(spaced_hex);
    let mut out = BytesMut::new();
    response.encode(request_id, &mut out).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&expected));
    let mut buf = BytesMut::from(&expected[..]);
    let frame = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.request_id, request_id);
    assert_eq!(
        Response::decode(frame.opcode, frame.payload).unwrap(),
        response
    );
}

#[test]
fn handshake_with_api_key() {
    check_request(
        Request::Handshake(Handshake {
            protocol_version: 1,
            api_key: Some("test-bootstrap-key".into()),
        }),
        1,
        "00 00 00 1d 01 00 00 00 00 01 00 01 01 00 12
         74 65 73 74 2d 62 6f 6f 74 73 74 72 61 70 2d 6b 65 79",
    );
}

#[test]
fn handshake_ok_single_node() {
    check_response(
        Response::HandshakeOk(HandshakeOk {
            negotiated_version: 1,
            node_id: 0,
            max_frame_size: 16_777_216,
        }),
        0,
        "00 00 00 14 02 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 01 00 00 00",
    );
}

#[test]
fn enqueue_of_one_message() {
    check_request(
        Request::Enqueue {
            messages: vec![EnqueueMessage {
                queue: "q".into(),
                headers: vec![],
                payload: Bytes::from_static(b"abc"),
            }],
        },
        2,
        "00 00 00 16 10 00 00 00 00 02 00 00 00 01 00 01 71 00 00 00 00 00 03 61 62 63",
    );
}

#[test]
fn delivery_as_the_reference_server_sends_it() {
    let message = DeliveryMessage {
        message_id: "01920c4e-8f3a-7b21-9c4d-5e6f7a8b9c0d".into(),
        queue: "orders".into(),
        headers: vec![("tenant".into(), "acme".into())],
        payload: Bytes::from_static(b"hello"),
        fairness_key: "default".into(),
        weight: 1,
        throttle_keys: vec![],
        attempt_count: 0,
        enqueued_at: 0,
        leased_at: 0,
    };
    let spaced = "00 00 00 74 14 00 00 00 00 0a 00 00 00 01
         00 24 30 31 39 32 30 63 34 65 2d 38 66 33 61 2d 37 62 32 31 2d 39 63 34 64 2d 35 65 36 66 37 61 38 62 39 63 30 64
         00 06 6f 72 64 65 72 73
         00 01 00 06 74 65 6e 61 6e 74 00 04 61 63 6d 65
         00 00 00 05 68 65 6c 6c 6f
         00 07 64 65 66 61 75 6c 74
         00 00 00 01 00 00 00 00 00 00
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
    assert_eq!(bytes_of(spaced).len(), 4 + 116);
    check_response(
        Response::Delivery {
            messages: vec![message.clone()],
        },
        10,
        spaced,
    );
    // The batching builder writes the same bytes.
    let mut out = BytesMut::new();
    DeliveryFrameBuilder::new(&mut out, 10)
        .push(&message)
        .unwrap();
    assert_eq!(&out[..], &bytes_of(spaced)[..]);
}

#[test]
fn ack_result_ok_then_message_not_found() {
    check_response(
        Response::AckResult {
            results: vec![ErrorCode::Ok, ErrorCode::MessageNotFound],
        },
        11,
        "00 00 00 0c 17 00 00 00 00 0b 00 00 00 02 00 02",
    );
}

#[test]
fn error_unsupported_version() {
    let message = "protocol version 2 is not supported";
    assert_eq!(message.len(), 35);
    let spaced = format!(
        "00 00 00 3e fe 00 00 00 00 00 0d 00 23 {} 00 01 00 0b 6d 61 78 5f 76 65 72 73 69 6f 6e 00 01 31",
        hex::encode(message)
    );
    check_response(
        Response::Error {
            code: ErrorCode::UnsupportedVersion,
            message: message.into(),
            metadata: vec![("max_version".into(), "1".into())],
        },
        0,
        &spaced,
    );
}

#[test]
fn enqueue_split_into_two_frames() {
    let mut stream = BytesMut::from(
        &bytes_of(
            "00 00 00 10 10 01 00 00 00 14 00 00 00 01 00 06 6f 72 64 65
             00 00 00 19 10 00 00 00 00 14 72 73 00 00 00 00 00 0b 68 65 6c 6c 6f 20 77 6f 72 6c 64",
        )[..],
    );
    let frame = FrameDecoder::new().decode(&mut stream).unwrap().unwrap();
    assert!(stream.is_empty());
    assert_eq!(frame.request_id, 20);
    assert_eq!(
        Request::decode(frame.opcode, frame.payload).unwrap(),
        Request::Enqueue {
            messages: vec![EnqueueMessage {
                queue: "orders".into(),
                headers: vec![],
                payload: Bytes::from_static(b"hello world"),
            }],
        }
    );
}
