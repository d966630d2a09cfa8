//! Recovery and storage measurements through the Shard API on a FjallStorage (process
//! durability, batches of 100). Run with
//! `cargo run --release -p fila-shard --example recovery -- [command]`:
//!
//! - (no command): `fill` 1,000,000 pending 1 KiB messages into a temporary directory, then
//!   run `open` in a child process (so the fill phase's memory does not count) and print
//!   its recovery time and peak RSS (VmHWM).
//! - `fill DIR COUNT PAYLOAD_BYTES`: enqueue COUNT messages in batches of 100, one commit per
//!   batch; prints the sustained enqueue rate.
//! - `open DIR [drain]`: `Shard::open` and its time and VmHWM; with `drain`, then delivers and
//!   acks everything in batches of 100 (every body is a cold read) and prints the rate.
//! - `churn COUNT`: the tombstone check: COUNT enqueue+deliver+ack cycles on one queue, then
//!   the cycle rate and restart time compared with a fresh database holding the same live
//!   messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods, // wall-clock timing is the point of this example
    missing_docs
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fila_shard::storage::fjall::{FjallOptions, FjallStorage};
use fila_shard::*;

const BATCH: usize = 100;
const T0_MS: u64 = 1_700_000_000_000;

fn vmhwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn journal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn storage(dir: &Path) -> FjallStorage {
    FjallStorage::open(dir, FjallOptions::default()).unwrap()
}

fn open_shard(dir: &Path, now: Time) -> (Shard<FjallStorage>, RecoveryReport, Duration) {
    let start = Instant::now();
    let store = storage(dir);
    let (shard, report) =
        Shard::open(store, ShardOptions::default(), Box::new(NoHooks), now).expect("recovery");
    (shard, report, start.elapsed())
}

fn items(n: usize, payload: &Bytes) -> Vec<EnqueueItem> {
    (0..n)
        .map(|_| EnqueueItem {
            queue: "q".to_string(),
            headers: Vec::new(),
            payload: payload.clone(),
        })
        .collect()
}

fn fill(dir: &Path, count: usize, payload_bytes: usize, crash: bool) {
    let (mut shard, _, _) = open_shard(dir, Time::from_millis(T0_MS));
    if shard.stats("q").is_err() {
        shard
            .create_queue(Time::from_millis(T0_MS), QueueSpec::named("q"))
            .unwrap();
        shard.commit().unwrap();
    }
    let payload = Bytes::from(vec![0x5a; payload_bytes]);
    let start = Instant::now();
    let mut now = T0_MS;
    for _ in 0..count / BATCH {
        now += 1;
        let batch = items(BATCH, &payload);
        for result in shard.enqueue(Time::from_millis(now), batch) {
            result.unwrap();
        }
        shard.commit().unwrap();
    }
    let elapsed = start.elapsed();
    if !crash {
        // Give fjall's flush worker time to catch up before the drop discards queued flushes.
        let settle = Instant::now();
        while shard.storage().outstanding_flushes() > 0 && settle.elapsed().as_secs() < 60 {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "fill: waited {:.2} s for outstanding flushes; journals {} MiB",
            settle.elapsed().as_secs_f64(),
            journal_bytes(dir) >> 20
        );
    }
    println!(
        "fill: {count} messages of {payload_bytes} B in {:.2} s = {:.0} msg/s (batches of {BATCH}, process durability); VmHWM {} MiB",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        vmhwm_kib() / 1024
    );
}

fn open(dir: &Path, drain: bool) {
    let now = Time::from_millis(T0_MS + 10_000_000);
    let start = Instant::now();
    let store = storage(dir);
    let storage_open = start.elapsed();
    let storage_hwm = vmhwm_kib() / 1024;
    let (mut shard, report) =
        Shard::open(store, ShardOptions::default(), Box::new(NoHooks), now).expect("recovery");
    let elapsed = start.elapsed();
    println!(
        "open: FjallStorage::open {:.3} s replaying {} MiB of journals (VmHWM {storage_hwm} MiB after it)",
        storage_open.as_secs_f64(),
        journal_bytes(dir) >> 20
    );
    println!(
        "open: recovered {} messages ({} leases) in {:.3} s; VmHWM {} MiB; body cache {} entries",
        report.messages,
        report.leases,
        elapsed.as_secs_f64(),
        vmhwm_kib() / 1024,
        shard.body_cache().entries
    );
    if drain {
        drain_all(&mut shard, now);
    }
}

/// Delivers and acks everything in batches of 100, timed and reported; returns the count.
fn drain_all(shard: &mut Shard<FjallStorage>, now: Time) -> usize {
    let start = Instant::now();
    let done = drain_quiet(shard, now, ConnectionId(1));
    let elapsed = start.elapsed();
    let stats = shard.body_cache().clone();
    println!(
        "drain: delivered+acked {done} in {:.2} s = {:.0} msg/s ({} cache hits, {} storage reads, {} read errors)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        stats.hits,
        stats.reads,
        stats.read_errors
    );
    done
}

/// `cycles` enqueue+deliver+ack cycles in batches of 100, then `live` pending messages.
/// Returns the cycle rate of the last 100,000 cycles (msg/s).
fn churn_into(dir: &Path, cycles: usize, live: usize) -> f64 {
    let (mut shard, _, _) = open_shard(dir, Time::from_millis(T0_MS));
    let now = Time::from_millis(T0_MS);
    shard.create_queue(now, QueueSpec::named("q")).unwrap();
    let connection = ConnectionId(1);
    let consumer = shard
        .register_consumer(now, "q", connection, BATCH as u32)
        .unwrap();
    shard.commit().unwrap();
    let payload = Bytes::from(vec![0x5a; 64]);
    let window = 100_000.min(cycles);
    let mut window_start = Instant::now();
    let mut out = Vec::with_capacity(BATCH);
    for done in (0..cycles).step_by(BATCH) {
        if done == cycles - window {
            window_start = Instant::now();
        }
        shard.enqueue(now, items(BATCH, &payload));
        shard.commit().unwrap();
        out.clear();
        shard.next_deliveries(now, consumer, BATCH, &mut out);
        let acks: Vec<AckItem> = out
            .iter()
            .map(|d| AckItem {
                queue: "q".to_string(),
                id: d.message_id,
            })
            .collect();
        shard.ack(now, connection, &acks);
        shard.commit().unwrap();
    }
    let rate = window as f64 / window_start.elapsed().as_secs_f64();
    shard.unregister_consumer(now, consumer);
    for _ in 0..live / BATCH {
        shard.enqueue(now, items(BATCH, &payload));
        shard.commit().unwrap();
    }
    rate
}

fn churn(cycles: usize) {
    const LIVE: usize = 1_000;
    let tombstoned = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let churned_rate = churn_into(tombstoned.path(), cycles, LIVE);
    println!(
        "churn: {cycles} enqueue+deliver+ack cycles in {:.1} s; last 100k at {:.0} msg/s",
        start.elapsed().as_secs_f64(),
        churned_rate
    );
    let fresh_rate = churn_into(fresh.path(), 100_000.min(cycles), LIVE);
    println!("fresh: first 100k cycles at {fresh_rate:.0} msg/s");
    for (name, dir) in [("tombstoned", &tombstoned), ("fresh", &fresh)] {
        let mut times = Vec::new();
        let mut rate = 0.0;
        for _ in 0..3 {
            let now = Time::from_millis(T0_MS + 1);
            let (mut shard, report, elapsed) = open_shard(dir.path(), now);
            assert_eq!(report.messages, LIVE);
            times.push(elapsed.as_secs_f64() * 1e3);
            let start = Instant::now();
            let n = drain_quiet(&mut shard, now, ConnectionId(2));
            rate = n as f64 / start.elapsed().as_secs_f64();
            // Drop without committing the acks' effects? No: drain commits, so put them back.
            for _ in 0..LIVE / BATCH {
                shard.enqueue(now, items(BATCH, &Bytes::from(vec![0x5a; 64])));
                shard.commit().unwrap();
            }
        }
        println!(
            "restart {name}: open {:.1} / {:.1} / {:.1} ms; then delivered+acked {LIVE} at {rate:.0} msg/s",
            times[0], times[1], times[2]
        );
    }
}

/// Delivers and acks everything in batches of 100 on `connection`; returns the count.
fn drain_quiet(shard: &mut Shard<FjallStorage>, now: Time, connection: ConnectionId) -> usize {
    let consumer = shard
        .register_consumer(now, "q", connection, BATCH as u32)
        .unwrap();
    let mut out = Vec::with_capacity(BATCH);
    let mut done = 0;
    loop {
        out.clear();
        shard.next_deliveries(now, consumer, BATCH, &mut out);
        if out.is_empty() {
            break;
        }
        let acks: Vec<AckItem> = out
            .iter()
            .map(|d| AckItem {
                queue: "q".to_string(),
                id: d.message_id,
            })
            .collect();
        for r in shard.ack(now, connection, &acks) {
            r.unwrap();
        }
        shard.commit().unwrap();
        done += out.len();
    }
    shard.unregister_consumer(now, consumer);
    done
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("fill") => fill(
            Path::new(arg(1).expect("DIR")),
            arg(2).and_then(|n| n.parse().ok()).unwrap_or(1_000_000),
            arg(3).and_then(|n| n.parse().ok()).unwrap_or(1024),
            arg(4) == Some("crash"),
        ),
        Some("open") => open(Path::new(arg(1).expect("DIR")), arg(2) == Some("drain")),
        Some("churn") => churn(arg(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000)),
        Some(other) => panic!("unknown command {other}"),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let exe = std::env::current_exe().unwrap();
            let path = dir.path().to_str().unwrap();
            for args in [
                vec!["fill", path, "1000000", "1024"],
                vec!["open", path, "drain"],
            ] {
                let status = Command::new(&exe).args(&args).status().unwrap();
                assert!(status.success(), "{args:?} failed");
            }
        }
    }
}
