//! `storm`: does a flood of failed handshakes slow authorized clients? One authorized
//! connection does request/reply round trips (one-message Enqueue, as `rtt`) for a quiet half
//! of each run, then again while `--storm-threads` threads open connections as fast as they
//! can and present a wrong API key. Reports the authorized client's p50/p99 in both halves and
//! the refused handshakes per second. Needs a server with authentication on (`--api-key`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use fila_wire::{ErrorCode, FrameDecoder, Handshake, Request, Response};
use hdrhistogram::Histogram;

use crate::cli::{Defaults, Settings};
use crate::client::Endpoint;
use crate::clock;
use crate::error::{BenchError, Result};
use crate::report::Better;
use crate::workloads::{
    BETWEEN_RUNS, Outcome, Series, Window, batch_messages, create_queues, delete_queues, join,
    payload, progress, queue_names, rtt,
};

/// Defaults of `storm`.
pub const DEFAULTS: Defaults = Defaults {
    connections: 1,
    window: 1,
    batch: 1,
};

/// How long a storm connection waits for the server's refusal.
const REFUSAL_LIMIT: Duration = Duration::from_secs(5);

/// Runs `runs` quiet/storm pairs.
pub fn run(addr: Endpoint, settings: &Settings, storm_threads: usize) -> Result<Outcome> {
    if !addr.has_api_key() {
        return Err(BenchError::InvalidArgument(
            "storm needs a server with authentication on: pass --api-key KEY".to_owned(),
        ));
    }
    if addr.is_tls() {
        return Err(BenchError::InvalidArgument(
            "storm floods plaintext handshakes only: run it without --tls".to_owned(),
        ));
    }
    let mut series = Series::new(format!("storm {storm_threads} threads"));
    let queues = queue_names(1);
    create_queues(addr, &queues)?;
    let half = settings.duration / 2;
    for run in 0..settings.runs {
        let quiet = round_trips(addr, &queues, half)?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let stormers: Vec<_> = (0..storm_threads)
            .map(|_| {
                let (stop, refused) = (Arc::clone(&stop), Arc::clone(&refused));
                std::thread::spawn(move || storm(addr, &stop, &refused))
            })
            .collect();
        let stormy = round_trips(addr, &queues, half);
        stop.store(true, Ordering::Relaxed);
        for handle in stormers {
            join(handle, "storm")?;
        }
        let stormy = stormy?;
        let per_second = refused.load(Ordering::Relaxed) as f64 / half.as_secs_f64();
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        progress(
            series.workload(),
            run,
            settings.runs,
            &format!(
                "quiet p99 {:.1} µs, storm p99 {:.1} µs, {per_second:.0} refused handshakes/s",
                us(&quiet, 0.99),
                us(&stormy, 0.99)
            ),
        );
        series.push("quiet p50 µs", Better::Lower, us(&quiet, 0.5));
        series.push("quiet p99 µs", Better::Lower, us(&quiet, 0.99));
        series.push("storm p50 µs", Better::Lower, us(&stormy, 0.5));
        series.push("storm p99 µs", Better::Lower, us(&stormy, 0.99));
        series.push("refused handshakes/s", Better::Higher, per_second);
        clock::sleep(BETWEEN_RUNS);
    }
    delete_queues(addr, &queues)?;
    let mut outcome = Outcome::default();
    outcome.figures.extend(series.figures());
    Ok(outcome)
}

/// One authorized connection's one-message round trips for `span` (`rtt`'s loop); any
/// refusal fails the run, since the storm must not cost authorized requests.
fn round_trips(addr: Endpoint, queues: &[String], span: Duration) -> Result<Histogram<u64>> {
    let request = Request::Enqueue {
        messages: batch_messages(queues, 0, 1, 1, &payload(64)),
    };
    let start = clock::now();
    let (histogram, tally) = rtt::round_trips(
        addr,
        &request,
        Window {
            start,
            end: start + span,
        },
    )?;
    match tally.note("the authorized client") {
        Some(failure) => Err(BenchError::HandshakeRefused(failure)),
        None => Ok(histogram),
    }
}

/// Opens connections with a wrong key until `stop`, counting the refusals.
fn storm(addr: Endpoint, stop: &AtomicBool, refused: &AtomicU64) -> Result<()> {
    let mut hello = BytesMut::new();
    Request::Handshake(Handshake {
        protocol_version: 1,
        api_key: Some("fila-bench-storm-wrong-key".into()),
    })
    .encode(0, &mut hello)
    .map_err(|error| BenchError::InvalidArgument(format!("handshake: {error}")))?;
    let mut scratch = [0_u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr.addr) else {
            continue;
        };
        if stream.set_read_timeout(Some(REFUSAL_LIMIT)).is_err()
            || stream.write_all(&hello).is_err()
        {
            continue;
        }
        let mut input = BytesMut::new();
        let mut decoder = FrameDecoder::new();
        loop {
            match stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => input.extend_from_slice(scratch.get(..n).unwrap_or_default()),
            }
            if let Ok(Some(frame)) = decoder.decode(&mut input) {
                if matches!(
                    Response::decode(frame.opcode, frame.payload),
                    Ok(Response::Error {
                        code: ErrorCode::Unauthorized,
                        ..
                    })
                ) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
    }
    Ok(())
}
