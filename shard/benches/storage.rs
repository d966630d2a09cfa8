//! Storage benchmarks for FjallStorage (run with `cargo bench -p fila-shard --bench storage`):
//! sustained writes of 100-message batches (64 B and 1 KiB payloads) per durability mode,
//! `fsync` group commit (32 batches of 100, one sync), and the tombstone scenario (cursor
//! scan and reopen after 1,000,000 inserted-and-deleted keys, against a fresh database).
//! Keys are queue-shaped: queue id (u32 BE) ++ sequence (u64 BE); values are ~40 bytes of
//! metadata plus the payload.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fila_shard::storage::fjall::{Durability, FjallOptions, FjallStorage};
use fila_shard::storage::{Keyspace, Storage, WriteBatch};
use tempfile::TempDir;

const QUEUE: u32 = 7;
const BATCH: u64 = 100;
const GROUP_BATCHES: u64 = 32;
const METADATA_BYTES: usize = 40;
const TOMBSTONE_KEYS: u64 = 1_000_000;
const LIVE_KEYS: u64 = 1_000;

fn key(queue: u32, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&queue.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// ~40 bytes of metadata (id, timestamps, attempts, fairness key) then the payload.
fn value(seq: u64, payload: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(METADATA_BYTES + payload);
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&[0x5a; 16]); // message id
    value.extend_from_slice(&seq.wrapping_mul(31).to_le_bytes()); // enqueued at
    value.extend_from_slice(&[0, 0, 0, 1]); // attempts, weight
    value.extend_from_slice(b"tenant01"[..4].as_ref()); // fairness key
    value.resize(METADATA_BYTES + payload, b'p');
    value
}

fn message_batch(first_seq: u64, payload: usize) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for seq in first_seq..first_seq + BATCH {
        batch.put(Keyspace::Messages, key(QUEUE, seq), value(seq, payload));
    }
    batch
}

fn open(dir: &Path, durability: Durability) -> FjallStorage {
    FjallStorage::open(
        dir,
        FjallOptions {
            durability,
            ..FjallOptions::default()
        },
    )
    .unwrap()
}

fn sustained_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_batch_100");
    group.throughput(Throughput::Elements(BATCH));
    for (durability, payload) in [
        (Durability::Process, 64),
        (Durability::Process, 1024),
        (Durability::None, 64),
        (Durability::Fsync, 64),
    ] {
        let dir = TempDir::new().unwrap();
        let mut store = open(dir.path(), durability);
        let mut seq = 0u64;
        group.bench_function(format!("{durability}/{payload}B"), |b| {
            b.iter_batched(
                || {
                    let batch = message_batch(seq, payload);
                    seq += BATCH;
                    batch
                },
                |batch| store.apply(&batch).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("fsync_group_commit_32x100");
    for payload in [64, 1024] {
        group.throughput(Throughput::Elements(BATCH * GROUP_BATCHES));
        let dir = TempDir::new().unwrap();
        let mut store = open(dir.path(), Durability::Fsync);
        let sync = store.sync_handle();
        let mut seq = 0u64;
        group.bench_function(format!("{payload}B"), |b| {
            b.iter_batched(
                || {
                    let batches: Vec<WriteBatch> = (0..GROUP_BATCHES)
                        .map(|i| message_batch(seq + i * BATCH, payload))
                        .collect();
                    seq += BATCH * GROUP_BATCHES;
                    batches
                },
                |batches| {
                    for batch in &batches {
                        store.apply_unsynced(batch).unwrap();
                    }
                    sync.sync().unwrap();
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Queue-like churn: insert in batches of 100, delete each batch after the next was
/// inserted, until `TOMBSTONE_KEYS` were inserted and all deleted; then `LIVE_KEYS` live ones.
fn tombstoned_store(dir: &Path) -> FjallStorage {
    let mut store = open(dir, Durability::Process);
    let mut previous: Option<u64> = None;
    for first in (0..TOMBSTONE_KEYS).step_by(BATCH as usize) {
        let mut batch = message_batch(first, 64);
        if let Some(prev) = previous {
            for seq in prev..prev + BATCH {
                batch.delete(Keyspace::Messages, key(QUEUE, seq));
            }
        }
        store.apply(&batch).unwrap();
        previous = Some(first);
    }
    let mut batch = WriteBatch::new();
    for seq in previous.unwrap()..TOMBSTONE_KEYS {
        batch.delete(Keyspace::Messages, key(QUEUE, seq));
    }
    store.apply(&batch).unwrap();
    fill_live(&mut store);
    store
}

fn fill_live(store: &mut FjallStorage) {
    for first in (TOMBSTONE_KEYS..TOMBSTONE_KEYS + LIVE_KEYS).step_by(BATCH as usize) {
        store.apply(&message_batch(first, 64)).unwrap();
    }
}

fn read_100(store: &FjallStorage, from_seq: u64) -> usize {
    let mut seen = 0;
    store
        .scan_range(
            Keyspace::Messages,
            &key(QUEUE, from_seq),
            &key(QUEUE + 1, 0),
            &mut |_, v| {
                black_box(v);
                seen += 1;
                Ok(seen < 100)
            },
        )
        .unwrap();
    assert_eq!(seen, 100);
    seen
}

fn tombstones(c: &mut Criterion) {
    let tombstoned_dir = TempDir::new().unwrap();
    let fresh_dir = TempDir::new().unwrap();
    let tombstoned = tombstoned_store(tombstoned_dir.path());
    let mut fresh = open(fresh_dir.path(), Durability::Process);
    fill_live(&mut fresh);

    let mut group = c.benchmark_group("tombstones_1M");
    group.throughput(Throughput::Elements(100));
    group.bench_function("cursor_scan_100/fresh", |b| {
        b.iter(|| read_100(&fresh, TOMBSTONE_KEYS));
    });
    group.bench_function("cursor_scan_100/tombstoned", |b| {
        b.iter(|| read_100(&tombstoned, TOMBSTONE_KEYS));
    });
    // What the cursor avoids: scanning from the start of the queue over every tombstone.
    group.sample_size(10);
    group.bench_function("scan_from_queue_start_100/tombstoned", |b| {
        b.iter(|| read_100(&tombstoned, 0));
    });
    drop(tombstoned);
    drop(fresh);
    group.throughput(Throughput::Elements(1));
    for (name, dir) in [("fresh", &fresh_dir), ("tombstoned", &tombstoned_dir)] {
        group.bench_function(format!("reopen/{name}"), |b| {
            b.iter_batched(
                || (),
                |()| drop(open(dir.path(), Durability::Process)),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = sustained_writes, group_commit, tombstones
}
criterion_main!(benches);
