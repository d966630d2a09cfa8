//! Protocol abuse: the server answers or closes as the protocol says, never crashes, and keeps
//! serving a well-behaved client throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::client::{Client, queue_on};
use common::{ServerOptions, TestServer};
use fila_wire::{EnqueueMessage, ErrorCode, Frame, Request, Response};

/// How long the server may take to close a connection it must close (a safety net).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// A raw frame with `opcode`, `request_id` and `body`.
fn raw_frame(opcode: u8, request_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Frame {
        opcode,
        flags: 0,
        request_id,
        payload: Bytes::copy_from_slice(body),
    }
    .encode(&mut out)
    .unwrap();
    out.to_vec()
}

/// A well-behaved client still works end to end, on a fresh queue of each shard.
fn still_serves(server: &TestServer) {
    static ROUND: AtomicU32 = AtomicU32::new(0);
    let round = ROUND.fetch_add(1, Ordering::Relaxed);
    let mut client = Client::connect(server.addr);
    client.ping();
    for shard in 0..2 {
        let queue = queue_on(&format!("probe{round}"), shard, 2);
        client.create_queue(&queue, 0);
        let ids = client.enqueue(&[(queue.as_str(), b"ok".as_slice())]);
        let sub = client.consume(&queue);
        let got = client.take(sub, 1);
        assert_eq!(&*got[0].message_id, ids[0].as_str());
        assert_eq!(
            client.ack(&[(queue.as_str(), ids[0].as_str())]),
            vec![ErrorCode::Ok]
        );
    }
}

#[test]
fn unknown_opcode_and_malformed_body_get_invalid_frame_and_the_connection_stays() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.write_raw(&raw_frame(0x7e, 41, b"whatever"));
    match client.reply_to(41) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidFrame),
        other => panic!("{other:?}"),
    }
    // A server-to-client opcode sent by a client is not accepted either.
    client.write_raw(&raw_frame(0x11, 42, b""));
    match client.reply_to(42) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidFrame),
        other => panic!("{other:?}"),
    }
    // Enqueue claiming 9 messages in a 4-byte body.
    client.write_raw(&raw_frame(0x10, 43, &[0, 0, 0, 9]));
    match client.reply_to(43) {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidFrame),
        other => panic!("{other:?}"),
    }
    client.ping();
    // A second handshake is refused but the connection stays.
    client.write_raw(&raw_frame(0x01, 44, &[0, 1, 0]));
    assert!(matches!(client.reply_to(44), Response::Error { .. }));
    client.ping();
}

#[test]
fn oversized_length_prefix_closes_before_the_body() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    // 16 MiB + 1 after the length field: refused as soon as the prefix is read.
    client.write_raw(&(16 * 1024 * 1024 + 1_u32).to_be_bytes());
    assert!(client.closed_within(CLOSE_LIMIT));
    let mut short = Client::connect(server.addr);
    short.write_raw(&3_u32.to_be_bytes());
    assert!(short.closed_within(CLOSE_LIMIT));
    still_serves(&server);
}

#[test]
fn first_frame_not_a_handshake_is_refused() {
    let server = TestServer::start();
    let mut client = Client::connect_raw(server.addr);
    client.write_raw(&raw_frame(0x03, 5, b""));
    match client.recv_frame() {
        (5, Response::Error { code, .. }) => assert_eq!(code, ErrorCode::InvalidFrame),
        other => panic!("{other:?}"),
    }
    assert!(client.closed_within(CLOSE_LIMIT));
    let mut old = Client::connect_raw(server.addr);
    old.write_raw(&raw_frame(0x01, 0, &[0, 2, 0]));
    match old.recv_frame() {
        (0, Response::Error { code, metadata, .. }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert_eq!(metadata, vec![("max_version".into(), "1".into())]);
        }
        other => panic!("{other:?}"),
    }
    assert!(old.closed_within(CLOSE_LIMIT));
}

#[test]
fn garbage_truncated_frames_and_connection_churn_leave_the_server_serving() {
    let server = TestServer::start();
    let mut admin = Client::connect(server.addr);
    let queues: Vec<String> = (0..2).map(|s| queue_on("churn", s, 2)).collect();
    for q in &queues {
        admin.create_queue(q, 0);
    }
    // Garbage before any handshake.
    for seed in 0_u32..20 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let garbage: Vec<u8> = (0..256_u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect();
        let _ = stream.write_all(&garbage);
    }
    // Garbage after a handshake, and a frame cut off mid-body then closed.
    for _ in 0..10 {
        let mut client = Client::connect(server.addr);
        let mut frame = raw_frame(0x10, 9, &[0, 0, 0, 1, 0, 1, b'q']);
        frame.truncate(frame.len() - 2);
        client.write_raw(&frame);
    }
    let mut client = Client::connect(server.addr);
    client.write_raw(&[0xff; 64]);
    assert!(client.closed_within(CLOSE_LIMIT));
    // 1,000 connections opened and dropped, some mid-handshake.
    for i in 0..1000 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        if i % 3 == 0 {
            let _ = stream.write_all(&raw_frame(0x01, 0, &[0, 1, 0]));
        } else if i % 3 == 1 {
            let _ = stream.write_all(&[0, 0]);
        }
    }
    still_serves(&server);
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let server = TestServer::start();
    let mut admin = Client::connect(server.addr);
    let queues: Vec<String> = (0..2).map(|s| queue_on("stall", s, 2)).collect();
    for q in &queues {
        admin.create_queue(q, 0);
    }
    // The hog pipelines enqueues and never reads a reply: the server stops reading it once
    // its replies back up, and the hog's writes then block (in its own thread).
    let mut hog = Client::connect(server.addr);
    let hog_queue = queues[0].clone();
    let writer = std::thread::spawn(move || {
        let payload = Bytes::from(vec![b'h'; 512]);
        let request = Request::Enqueue {
            messages: (0..64)
                .map(|_| EnqueueMessage {
                    queue: hog_queue.as_str().into(),
                    headers: vec![],
                    payload: payload.clone(),
                })
                .collect(),
        };
        let mut frame = BytesMut::new();
        request.encode(1, &mut frame).unwrap();
        hog.stream()
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut sent = 0_usize;
        while sent < 20_000 && hog.stream().write_all(&frame).is_ok() {
            sent += 1;
        }
        (hog, sent)
    });
    // A consumer that never reads either, on a busy queue.
    let mut lazy = Client::connect(server.addr);
    let _sub = lazy.consume(&queues[1]);
    let payloads = vec![b'x'; 4096];
    for _ in 0..20 {
        let items: Vec<(&str, &[u8])> = (0..50)
            .map(|_| (queues[1].as_str(), &payloads[..]))
            .collect();
        admin.enqueue(&items);
    }
    still_serves(&server);
    let (hog, sent) = writer.join().unwrap();
    assert!(sent > 0);
    assert!(sent < 20_000, "the server never stopped reading the hog");
    drop(hog);
    drop(lazy);
    still_serves(&server);
}

#[test]
fn a_slow_trickle_handshake_is_closed_at_the_handshake_timeout() {
    let options = ServerOptions::default().with_config("[server]\nhandshake_timeout_ms = 300\n");
    let server = TestServer::start_with(options);
    let mut trickle = Client::connect_raw(server.addr);
    trickle.write_raw(&[0, 0, 0]);
    let mut silent = Client::connect_raw(server.addr);
    assert!(silent.closed_within(CLOSE_LIMIT));
    assert!(trickle.closed_within(CLOSE_LIMIT));
    // A connection that completed its handshake stays open past that timeout.
    let mut done = Client::connect(server.addr);
    assert!(!done.closed_within(Duration::from_millis(600)));
    done.ping();
}
