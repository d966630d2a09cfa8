//! `latency`: enqueue-to-delivery latency at fixed offered rates, open loop.
//!
//! Each producer connection follows a [`RateSchedule`]: message `i` is due at a fixed instant
//! whatever happened before, and carries that *scheduled* instant (nanoseconds since an epoch
//! the whole process shares) in the `fila-bench-sent-ns` header. A sender that falls behind
//! sends the overdue messages at once (up to `--batch` per Enqueue) with their original
//! scheduled times, so a stall is charged to every message it delayed: there is no
//! coordinated omission. Consumers record `delivery time - scheduled time` into an
//! HdrHistogram for messages scheduled inside the window, ack them, and keep going until
//! every accepted message scheduled in the window has arrived (or a drain limit passes; what
//! never arrived is reported, not ignored).

use crate::client::Endpoint;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use fila_wire::{DeliveryMessage, EnqueueMessage, ErrorCode, Request, Response};
use hdrhistogram::Histogram;

use crate::cli::{Defaults, Rate, Settings, format_bytes};
use crate::client::{Connection, Reader, describe, unexpected};
use crate::clock::{self, Epoch};
use crate::error::{BenchError, Result};
use crate::report::{Better, format_number};
use crate::schedule::RateSchedule;
use crate::summary::{latency_figures_us, latency_histogram, record_ns};
use crate::workloads::{
    BETWEEN_RUNS, KEY_HEADER, Outcome, Series, Tally, Window, consumer, create_queues,
    delete_queues, join, lifecycle, payload, progress, queue_names,
};

/// Header with the scheduled send time, decimal nanoseconds since the run's epoch.
pub const SENT_HEADER: &str = "fila-bench-sent-ns";
/// How long consumers wait after the window for messages still on their way.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Lead time before the first scheduled send, so the first messages are not born late.
const START_LEAD: Duration = Duration::from_millis(20);

/// Defaults of `latency` (the window is not used: the sender is open loop).
pub const DEFAULTS: Defaults = Defaults {
    connections: 1,
    window: 1,
    batch: 100,
};

/// Counts shared by the producers and consumers of one run.
#[derive(Debug, Default)]
struct Progress {
    /// Messages scheduled inside the window that the server accepted.
    accepted: AtomicU64,
    /// Such messages delivered (first attempt).
    received: AtomicU64,
    /// Producers still sending or waiting for replies.
    producers_running: AtomicUsize,
}

impl Progress {
    fn all_delivered(&self) -> bool {
        self.producers_running.load(Ordering::Acquire) == 0
            && self.received.load(Ordering::Acquire) >= self.accepted.load(Ordering::Acquire)
    }
}

/// One consumer's latencies and ack counts.
type ConsumerResult = (Histogram<u64>, Tally);

/// One run's results.
struct RunResult {
    histogram: Histogram<u64>,
    accepted: u64,
    received: u64,
    failures: Tally,
}

/// Runs every (payload, rate) pair.
pub fn run(
    addr: Endpoint,
    settings: &Settings,
    payloads: &[usize],
    rates: &[Rate],
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &bytes in payloads {
        let mut max_per_s = None;
        for &rate in rates {
            let (label, per_s) = match rate {
                Rate::PerSecond(per_s) => (format!("{} msg/s", format_number(per_s)), per_s),
                Rate::PercentOfMax(percent) => {
                    let max = match max_per_s {
                        Some(max) => max,
                        None => {
                            let max = measure_max(addr, settings, bytes)?;
                            outcome.notes.push(format!(
                                "latency {}: lifecycle maximum measured first: {} msg/s",
                                format_bytes(bytes),
                                format_number(max)
                            ));
                            max_per_s = Some(max);
                            max
                        }
                    };
                    (format!("{percent}% of max"), max * percent / 100.0)
                }
            };
            let workload = format!("latency {} @ {label}", format_bytes(bytes));
            outcome.extend(sweep_point(addr, settings, bytes, per_s, workload)?);
        }
    }
    Ok(outcome)
}

fn measure_max(addr: Endpoint, settings: &Settings, bytes: usize) -> Result<f64> {
    let tally = lifecycle::one_run(addr, settings, bytes)?;
    let max = tally.acked.ok as f64 / settings.duration.as_secs_f64();
    if max <= 0.0 {
        return Err(BenchError::InvalidArgument(
            "a percentage rate needs a measured maximum, but nothing was acked".to_owned(),
        ));
    }
    Ok(max)
}

fn sweep_point(
    addr: Endpoint,
    settings: &Settings,
    bytes: usize,
    per_s: f64,
    workload: String,
) -> Result<Outcome> {
    let mut series = Series::new(workload);
    let mut failures = Tally::default();
    let mut notes = Vec::new();
    for run in 0..settings.runs {
        let result = one_run(addr, settings, bytes, per_s)?;
        let window_s = settings.duration.as_secs_f64();
        let figures = latency_figures_us(&result.histogram);
        let p99 = figures
            .iter()
            .find(|(name, _)| *name == "p99 µs")
            .map_or(0.0, |f| f.1);
        let missing = result.accepted.saturating_sub(result.received);
        progress(
            series.workload(),
            run,
            settings.runs,
            &format!(
                "p99 {p99:.0} µs, {} msg/s delivered, {missing} not delivered",
                format_number(result.received as f64 / window_s)
            ),
        );
        for (metric, value) in figures {
            series.push(metric, Better::Lower, value);
        }
        series.push(
            "delivered msg/s",
            Better::Higher,
            result.received as f64 / window_s,
        );
        series.push("not delivered", Better::Lower, missing as f64);
        if missing > 0 {
            notes.push(format!(
                "{} run {}: {missing} of {} accepted messages were not delivered within {} s \
                 after the window",
                series.workload(),
                run + 1,
                result.accepted,
                DRAIN_LIMIT.as_secs()
            ));
        }
        failures.merge(result.failures);
        clock::sleep(BETWEEN_RUNS);
    }
    notes.extend(failures.note(series.workload()));
    Ok(Outcome {
        figures: series.figures(),
        notes,
    })
}

fn one_run(addr: Endpoint, settings: &Settings, bytes: usize, per_s: f64) -> Result<RunResult> {
    let queues = queue_names(settings.queues);
    create_queues(addr, &queues)?;
    let epoch = Epoch::start();
    let measure = Window::after_warmup(settings);
    let progress = Arc::new(Progress::default());
    progress
        .producers_running
        .store(settings.connections, Ordering::Release);
    let consumers: Vec<JoinHandle<Result<ConsumerResult>>> =
        (0..settings.connections.max(settings.queues))
            .map(|index| {
                let queue = queues
                    .get(index % queues.len())
                    .cloned()
                    .unwrap_or_default();
                let progress = Arc::clone(&progress);
                std::thread::spawn(move || consume(addr, &queue, epoch, measure, &progress))
            })
            .collect();
    let producers: Vec<JoinHandle<Result<Tally>>> = (0..settings.connections)
        .map(|index| {
            let plan = OpenLoopPlan {
                queues: queues.clone(),
                index,
                per_s,
                connections: settings.connections,
                batch: settings.batch,
                payload: payload(bytes),
                keys: settings.keys,
            };
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let result = produce(addr, &plan, epoch, measure, &progress);
                progress.producers_running.fetch_sub(1, Ordering::AcqRel);
                result
            })
        })
        .collect();
    let mut failures = Tally::default();
    for handle in producers {
        failures.merge(join(handle, "latency producer")?);
    }
    let mut histogram = latency_histogram()?;
    for handle in consumers {
        let (part, tally) = join(handle, "latency consumer")?;
        histogram
            .add(&part)
            .map_err(|error| BenchError::Histogram(format!("{error:?}")))?;
        failures.merge(tally);
    }
    delete_queues(addr, &queues)?;
    Ok(RunResult {
        histogram,
        accepted: progress.accepted.load(Ordering::Acquire),
        received: progress.received.load(Ordering::Acquire),
        failures,
    })
}

/// One consumer: records the latency of first deliveries scheduled inside the window.
fn consume(
    addr: Endpoint,
    queue: &str,
    epoch: Epoch,
    measure: Window,
    progress: &Progress,
) -> Result<ConsumerResult> {
    let mut histogram = latency_histogram()?;
    let (start_ns, end_ns) = (epoch.ns_at(measure.start), epoch.ns_at(measure.end));
    let mut on_message = |message: &DeliveryMessage, at| {
        let Some(sent_ns) = sent_ns(message) else {
            return;
        };
        if message.attempt_count == 0 && (start_ns..end_ns).contains(&sent_ns) {
            record_ns(&mut histogram, epoch.ns_at(at).saturating_sub(sent_ns));
            progress.received.fetch_add(1, Ordering::AcqRel);
        }
    };
    let until = measure.end + DRAIN_LIMIT;
    let stop = || progress.all_delivered();
    let tally = consumer::run(addr, queue, until, measure, &stop, &mut on_message)?;
    Ok((histogram, tally))
}

/// The scheduled send time a producer wrote into `message`.
pub fn sent_ns(message: &DeliveryMessage) -> Option<u64> {
    message
        .headers
        .iter()
        .find(|(name, _)| &**name == SENT_HEADER)
        .and_then(|(_, value)| value.parse().ok())
}

/// What one open-loop producer connection sends.
struct OpenLoopPlan {
    queues: Vec<String>,
    /// This connection's index; it offsets the schedule so connections interleave.
    index: usize,
    /// The offered rate over all connections.
    per_s: f64,
    connections: usize,
    batch: usize,
    payload: Bytes,
    keys: usize,
}

/// The part of one Enqueue that was scheduled inside the window: `skip` messages before it,
/// then `len` inside.
#[derive(Debug, Clone, Copy)]
struct InWindow {
    skip: usize,
    len: usize,
}

fn produce(
    addr: Endpoint,
    plan: &OpenLoopPlan,
    epoch: Epoch,
    measure: Window,
    progress: &Progress,
) -> Result<Tally> {
    let per_connection = plan.per_s / plan.connections.max(1) as f64;
    let first_ns = epoch.ns_now() + START_LEAD.as_nanos() as u64;
    let phase_ns = (plan.index as f64 * 1e9 / plan.per_s) as u64;
    let schedule = RateSchedule::new(first_ns + phase_ns, per_connection)
        .ok_or_else(|| BenchError::InvalidArgument(format!("offered rate {} msg/s", plan.per_s)))?;
    let (start_ns, end_ns) = (epoch.ns_at(measure.start), epoch.ns_at(measure.end));
    let (mut writer, reader) = Connection::open(addr)?.split();
    let (tokens, pending) = mpsc::channel::<InWindow>();
    let replies = std::thread::spawn(move || count_replies(reader, &pending));
    let mut next = 0u64;
    let mut sent = Ok(());
    loop {
        let due_ns = schedule.send_ns(next);
        if due_ns >= end_ns {
            break;
        }
        let now_ns = epoch.ns_now();
        if now_ns < due_ns {
            clock::sleep_until(epoch.at_ns(due_ns));
            continue;
        }
        let count = (schedule.due_count(now_ns) - next).clamp(1, plan.batch as u64);
        let mut in_window = InWindow { skip: 0, len: 0 };
        let messages: Vec<EnqueueMessage> = (next..next + count)
            .filter(|&i| schedule.send_ns(i) < end_ns)
            .map(|i| {
                let sent_ns = schedule.send_ns(i);
                if sent_ns < start_ns {
                    in_window.skip += 1;
                } else {
                    in_window.len += 1;
                }
                message(plan, i, sent_ns)
            })
            .collect();
        next += count;
        if tokens.send(in_window).is_err() {
            break;
        }
        if let Err(error) = writer.send(&Request::Enqueue { messages }, "Enqueue") {
            sent = Err(error);
            break;
        }
    }
    drop(tokens);
    let (tally, accepted) = join(replies, "latency producer reader")?;
    progress.accepted.fetch_add(accepted, Ordering::AcqRel);
    sent.map(|()| tally)
}

fn message(plan: &OpenLoopPlan, index: u64, sent_ns: u64) -> EnqueueMessage {
    let spread = plan.index + index as usize;
    let queue = plan
        .queues
        .get(spread % plan.queues.len().max(1))
        .map_or("", String::as_str);
    EnqueueMessage {
        queue: queue.into(),
        headers: vec![
            (SENT_HEADER.into(), sent_ns.to_string().into()),
            (
                KEY_HEADER.into(),
                format!("k{}", spread % plan.keys.max(1)).into(),
            ),
        ],
        payload: plan.payload.clone(),
    }
}

/// Reads one EnqueueResult per Enqueue; returns the failures and how many in-window messages
/// the server accepted.
fn count_replies(mut reader: Reader, pending: &Receiver<InWindow>) -> Result<(Tally, u64)> {
    let mut tally = Tally::default();
    let mut accepted = 0;
    while let Ok(in_window) = pending.recv() {
        let (_, reply) = reader.next_reply("waiting for EnqueueResult")?;
        match reply {
            Response::EnqueueResult { results } => {
                let window_items = results.iter().skip(in_window.skip).take(in_window.len);
                accepted += window_items
                    .filter(|r| r.error_code == ErrorCode::Ok)
                    .count() as u64;
                for result in results.iter().filter(|r| r.error_code != ErrorCode::Ok) {
                    tally.fail(1, || {
                        format!(
                            "Enqueue item -> {} {:?}",
                            result.error_code, result.message_id
                        )
                    });
                }
                tally.ok += results.len() as u64;
            }
            Response::Error { .. } => tally.fail(1, || format!("Enqueue -> {}", describe(&reply))),
            other => return Err(unexpected("Enqueue", &other)),
        }
    }
    Ok((tally, accepted))
}
