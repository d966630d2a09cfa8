//! Codec micro-benchmarks: decode and encode of an Enqueue of 100 × 1 KiB messages and of a
//! Delivery of 100 × 1 KiB, plus the cost of copying the payloads alone as a baseline.
//!
//! Criterion reports time per batch and elements (messages) per second; divide the batch
//! time by 100 for ns per message, and subtract the `copy_payloads` baseline for the cost
//! beyond copying payload bytes.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fila_wire::{
    DeliveryFrameBuilder, DeliveryMessage, EnqueueMessage, FrameDecoder, Request, Response,
};

const MESSAGES: usize = 100;
const PAYLOAD_BYTES: usize = 1024;

fn enqueue() -> Request {
    Request::Enqueue {
        messages: (0..MESSAGES)
            .map(|index| EnqueueMessage {
                queue: "orders".into(),
                headers: vec![("tenant".into(), format!("tenant-{}", index % 7).into())],
                payload: Bytes::from(vec![index as u8; PAYLOAD_BYTES]),
            })
            .collect(),
    }
}

fn delivery_messages() -> Vec<DeliveryMessage> {
    (0..MESSAGES)
        .map(|index| DeliveryMessage {
            message_id: format!("01920c4e-8f3a-7b21-9c4d-5e6f7a8b{index:04x}").into(),
            queue: "orders".into(),
            headers: vec![("tenant".into(), format!("tenant-{}", index % 7).into())],
            payload: Bytes::from(vec![index as u8; PAYLOAD_BYTES]),
            fairness_key: "default".into(),
            weight: 1,
            throttle_keys: vec![],
            attempt_count: 0,
            enqueued_at: 1_727_712_000_000,
            leased_at: 1_727_712_000_250,
        })
        .collect()
}

fn frame_payload(encoded: &BytesMut) -> (u8, Bytes) {
    let mut copy = encoded.clone();
    let frame = FrameDecoder::new()
        .decode(&mut copy)
        .ok()
        .flatten()
        .unwrap_or_else(|| std::process::abort());
    (frame.opcode, frame.payload)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(MESSAGES as u64));

    let request = enqueue();
    let mut encoded_request = BytesMut::new();
    let _ = request.encode(1, &mut encoded_request);
    let (enqueue_opcode, enqueue_body) = frame_payload(&encoded_request);

    let messages = delivery_messages();
    let response = Response::Delivery {
        messages: messages.clone(),
    };
    let mut encoded_delivery = BytesMut::new();
    let _ = response.encode(10, &mut encoded_delivery);
    let (delivery_opcode, delivery_body) = frame_payload(&encoded_delivery);

    let payloads: Vec<Bytes> = messages.iter().map(|m| m.payload.clone()).collect();
    let mut out = BytesMut::with_capacity(2 * encoded_delivery.len());

    group.bench_function("copy_payloads_baseline", |b| {
        b.iter(|| {
            out.clear();
            for payload in &payloads {
                out.extend_from_slice(black_box(payload));
            }
            black_box(out.len())
        })
    });
    group.bench_function("enqueue_decode", |b| {
        b.iter(|| Request::decode(enqueue_opcode, black_box(enqueue_body.clone())))
    });
    group.bench_function("enqueue_frame_and_decode", |b| {
        let mut decoder = FrameDecoder::new();
        b.iter_batched_ref(
            || encoded_request.clone(),
            |buf| {
                let frame = decoder.decode(buf).ok().flatten();
                frame.map(|f| Request::decode(f.opcode, f.payload))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("enqueue_encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&request).encode(1, &mut out)
        })
    });
    group.bench_function("delivery_decode", |b| {
        b.iter(|| Response::decode(delivery_opcode, black_box(delivery_body.clone())))
    });
    group.bench_function("delivery_encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&response).encode(10, &mut out)
        })
    });
    group.bench_function("delivery_builder_encode", |b| {
        b.iter(|| {
            out.clear();
            let mut builder = DeliveryFrameBuilder::new(&mut out, 10);
            for message in black_box(&messages) {
                let _ = builder.push(message);
            }
            builder.message_count()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = codec;
    config = config();
    targets = benches
}
criterion_main!(codec);
