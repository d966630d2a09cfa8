//! Seeded simulation of one shard: random enqueues, deliveries, acks, nacks with delays and
//! dead-letters, cancels, disconnects, redrives, expiries, clock jumps, and crashes with
//! recovery from storage (after a commit, or losing the uncommitted step) at random points;
//! some messages carry throttle keys with configured limits.
//! Invariants are checked after every step against a model of what clients were told:
//! no message lost, none duplicated, no acked message delivered again, every leased message
//! has exactly one lease (in memory and in storage), attempts never decrease except by
//! redrive, and recovery rebuilds the shard exactly.
//!
//! Replay a failure: `FILA_SIM_SEED=<seed> cargo test -p fila-shard --test sim`
//! (`FILA_SIM_STEPS` changes the number of steps per seed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use common::{HeaderHooks, T0_MS};
use fila_shard::ids::IdGenerator;
use fila_shard::storage::Keyspace;
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

const QUEUES: [(&str, u64); 2] = [("a", 50), ("b", 200)];
const ALL_QUEUES: [&str; 4] = ["a", "a.dlq", "b", "b.dlq"];
const STEPS_DEFAULT: u64 = 20_000;
const SEEDS_DEFAULT: [u64; 5] = [1, 2, 3, 4, 5];

/// What clients were told, as of the last commit.
#[derive(Clone, Default)]
struct Model {
    /// Messages whose enqueue was committed and whose ack was not, with the highest attempts
    /// seen.
    live: HashMap<MessageId, u32>,
    /// Messages whose ack was committed.
    acked: HashSet<MessageId>,
    /// Deliveries clients hold: (connection, queue, id).
    held: Vec<(u64, String, MessageId)>,
    /// Open connections and their consumers.
    connections: Vec<(u64, Vec<ConsumerId>)>,
    /// Headers and payload each message was enqueued with (checked at every delivery,
    /// whether the body came from the cache or from storage).
    bodies: HashMap<MessageId, (Vec<(String, String)>, Bytes)>,
}

struct Sim {
    rng: IdGenerator,
    shard: Shard<MemoryStorage>,
    now: Time,
    model: Model,
    next_connection: u64,
    seed: u64,
    step: u64,
    recoveries: u64,
}

fn options(seed: u64) -> ShardOptions {
    ShardOptions {
        seed,
        quantum: 2,
        // Small caches so that deliveries of cold bodies (read from storage) are common.
        body_cache_bytes: [0, 300, 2_000, 1 << 20][(seed % 4) as usize],
        ..ShardOptions::default()
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut shard = Shard::new(
            MemoryStorage::new(),
            options(seed),
            Box::new(HeaderHooks::default()),
        );
        let now = Time::from_millis(T0_MS);
        for (name, vt) in QUEUES {
            let spec = QueueSpec {
                visibility_timeout_ms: vt,
                ..QueueSpec::named(name)
            };
            shard.create_queue(now, spec).unwrap();
        }
        // Throttle keys on some messages (header `tk`): parked keys, per-class FIFOs and their
        // recovery are exercised with everything else.
        shard.set_config(now, "throttle.t1", "400,3").unwrap();
        shard.set_config(now, "throttle.t2", "50,2").unwrap();
        shard.commit().unwrap();
        Sim {
            rng: IdGenerator::new(seed ^ 0xA5A5_5A5A),
            shard,
            now,
            model: Model::default(),
            next_connection: 1,
            seed,
            step: 0,
            recoveries: 0,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let i = self.below(items.len() as u64) as usize;
        Some(items[i].clone())
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("fk".to_string(), format!("k{}", self.below(5))),
            ("w".to_string(), (1 + self.below(4)).to_string()),
        ];
        let fail = match self.below(6) {
            0 => Some("dlq".to_string()),
            1 => Some("dlq-after=3".to_string()),
            2 | 3 => Some(format!("delay={}", self.below(100))),
            _ => None,
        };
        if let Some(fail) = fail {
            headers.push(("fail".to_string(), fail));
        }
        let throttle = ["", "", "t1", "t2", "t1,t2", "t3"][self.below(6) as usize];
        if !throttle.is_empty() {
            headers.push(("tk".to_string(), throttle.to_string()));
        }
        headers
    }

    /// One random operation; updates the model as if it will be committed.
    fn act(&mut self) {
        let choice = self.below(100);
        let now = self.now;
        match choice {
            0..=19 => {
                if self.model.live.len() > 150 {
                    return;
                }
                let queue = self.pick(&["a", "b", "a.dlq"]).unwrap();
                let n = 1 + self.below(4);
                let items: Vec<EnqueueItem> = (0..n)
                    .map(|_| {
                        let size = self.below(40) as usize;
                        let fill = self.below(256) as u8;
                        EnqueueItem {
                            queue: queue.to_string(),
                            headers: self.headers(),
                            payload: Bytes::from(vec![fill; size]),
                        }
                    })
                    .collect();
                let bodies: Vec<_> = items
                    .iter()
                    .map(|i| (i.headers.clone(), i.payload.clone()))
                    .collect();
                for (result, body) in self.shard.enqueue(now, items).into_iter().zip(bodies) {
                    let id = result.unwrap();
                    assert!(self.model.live.insert(id, 0).is_none(), "duplicate id {id}");
                    self.model.bodies.insert(id, body);
                }
            }
            20..=24 => {
                if self.model.connections.len() >= 4 {
                    return;
                }
                let connection = self.next_connection;
                self.next_connection += 1;
                self.model.connections.push((connection, Vec::new()));
                self.subscribe(connection);
            }
            25..=27 => {
                if let Some((connection, _)) = self.pick(&self.model.connections.clone()) {
                    self.subscribe(connection);
                }
            }
            28..=30 => {
                let consumers: Vec<ConsumerId> = self
                    .model
                    .connections
                    .iter()
                    .flat_map(|(_, c)| c.clone())
                    .collect();
                if let Some(consumer) = self.pick(&consumers) {
                    assert!(self.shard.unregister_consumer(now, consumer));
                    for (_, list) in &mut self.model.connections {
                        list.retain(|c| *c != consumer);
                    }
                }
            }
            31..=32 => {
                if let Some((connection, _)) = self.pick(&self.model.connections.clone()) {
                    self.shard.release_connection(now, ConnectionId(connection));
                    self.model.connections.retain(|(c, _)| *c != connection);
                    self.model.held.retain(|(c, _, _)| *c != connection);
                }
            }
            33..=52 => {
                let mut out = Vec::new();
                let limit = 1 + self.below(8) as usize;
                self.shard.poll_deliveries(now, limit, &mut out);
                for d in out {
                    assert!(
                        !self.model.acked.contains(&d.message_id),
                        "acked message {} delivered again",
                        d.message_id
                    );
                    let seen = self.model.live.get(&d.message_id).copied();
                    let seen = seen.unwrap_or_else(|| panic!("delivered unknown {}", d.message_id));
                    assert!(
                        d.attempts >= seen,
                        "attempts decreased for {}",
                        d.message_id
                    );
                    self.model.live.insert(d.message_id, d.attempts);
                    let (headers, payload) = &self.model.bodies[&d.message_id];
                    assert_eq!(&d.headers[..], &headers[..], "headers of {}", d.message_id);
                    assert_eq!(&d.payload, payload, "payload of {}", d.message_id);
                    self.model
                        .held
                        .push((d.connection.0, d.queue.to_string(), d.message_id));
                }
            }
            53..=67 => {
                let Some(i) = (!self.model.held.is_empty())
                    .then(|| self.below(self.model.held.len() as u64) as usize)
                else {
                    return;
                };
                let (connection, queue, id) = self.model.held.swap_remove(i);
                let wrong = self.below(10) == 0;
                let from = if wrong {
                    connection + 1_000
                } else {
                    connection
                };
                let item = AckItem {
                    queue: queue.clone(),
                    id,
                };
                let result = self.shard.ack(now, ConnectionId(from), &[item]).remove(0);
                if wrong {
                    assert_eq!(result, Err(AckError::MessageNotFound));
                    self.model.held.push((connection, queue, id));
                } else if result.is_ok() {
                    self.model.live.remove(&id);
                    self.model.acked.insert(id);
                }
            }
            68..=77 => {
                let Some(i) = (!self.model.held.is_empty())
                    .then(|| self.below(self.model.held.len() as u64) as usize)
                else {
                    return;
                };
                let (connection, queue, id) = self.model.held.swap_remove(i);
                let item = NackItem {
                    queue,
                    id,
                    error: "sim".to_string(),
                };
                let _ = self.shard.nack(now, ConnectionId(connection), &[item]);
            }
            78..=92 => {
                self.now = self.now.plus_millis(self.below(30));
                self.shard.tick(self.now);
            }
            93..=94 => {
                self.now = self.now.plus_millis(self.below(2_000));
                self.shard.tick(self.now);
            }
            _ => {
                let dlq = self.pick(&["a.dlq", "b.dlq"]).unwrap();
                let before: HashSet<MessageId> = self
                    .shard
                    .inspect_queue(dlq)
                    .unwrap()
                    .messages
                    .iter()
                    .map(|m| m.id)
                    .collect();
                let count = self.below(4);
                let moved = self.shard.redrive(now, dlq, count).unwrap();
                let parent = &dlq[..1];
                let after = self.shard.inspect_queue(parent).unwrap();
                let mut reset = 0;
                for m in after.messages {
                    if before.contains(&m.id) {
                        assert_eq!(m.attempts, 0, "redrive resets attempts");
                        self.model.live.insert(m.id, 0);
                        reset += 1;
                    }
                }
                assert_eq!(reset, moved);
            }
        }
    }

    fn subscribe(&mut self, connection: u64) {
        let queue = self.pick(&ALL_QUEUES).unwrap();
        let window = 1 + self.below(5) as u32;
        let consumer = self
            .shard
            .register_consumer(self.now, queue, ConnectionId(connection), window)
            .unwrap();
        for (c, list) in &mut self.model.connections {
            if *c == connection {
                list.push(consumer);
            }
        }
    }

    /// Checks every invariant against the committed model.
    fn check(&mut self) {
        self.shard.check_invariants().unwrap();
        let mut seen: HashMap<MessageId, &str> = HashMap::new();
        let mut leased = 0;
        let mut total = 0;
        for queue in ALL_QUEUES {
            let dump = self.shard.inspect_queue(queue).unwrap();
            for m in dump.messages {
                total += 1;
                if let Some(other) = seen.insert(m.id, queue) {
                    panic!("message {} is in {other} and {queue}", m.id);
                }
                assert!(!self.model.acked.contains(&m.id), "acked {} is back", m.id);
                let attempts = self
                    .model
                    .live
                    .get(&m.id)
                    .copied()
                    .unwrap_or_else(|| panic!("{} is not known to any client", m.id));
                assert!(m.attempts >= attempts, "attempts of {} decreased", m.id);
                self.model.live.insert(m.id, m.attempts);
                if let MessageState::Leased { connection, .. } = m.state {
                    leased += 1;
                    if let Some(c) = connection {
                        let open = self.model.connections.iter().any(|(x, _)| *x == c.0);
                        assert!(open, "lease held by closed connection {}", c.0);
                    }
                }
            }
        }
        for id in self.model.live.keys() {
            assert!(seen.contains_key(id), "message {id} was lost");
        }
        let store = self.shard.storage();
        assert_eq!(store.len(Keyspace::Messages), total, "stored messages");
        assert_eq!(store.len(Keyspace::Bodies), total, "stored bodies");
        assert_eq!(store.len(Keyspace::Leases), leased, "stored leases");
    }

    fn crash_and_recover(&mut self, committed: bool) {
        let storage = self.shard.storage().clone();
        let before: Vec<_> = ALL_QUEUES
            .iter()
            .map(|q| strip(self.shard.inspect_queue(q).unwrap()))
            .collect();
        let (shard, report) = Shard::open(
            storage,
            options(self.seed.wrapping_add(self.step)),
            Box::new(HeaderHooks::default()),
            self.now,
        )
        .unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        self.shard = shard;
        self.shard.commit().unwrap();
        if committed {
            let after: Vec<_> = ALL_QUEUES
                .iter()
                .map(|q| strip(self.shard.inspect_queue(q).unwrap()))
                .collect();
            assert_eq!(before, after, "recovery did not rebuild the shard exactly");
        }
        // Connections die with the process.
        self.model.connections.clear();
        self.model.held.clear();
        self.recoveries += 1;
    }

    fn run(&mut self, steps: u64) {
        for step in 0..steps {
            self.step = step;
            let snapshot = self.model.clone();
            self.act();
            match self.below(1_000) {
                0..=2 => {
                    // Crash before the commit: the step's writes are lost, and no client heard
                    // of them.
                    self.model = snapshot;
                    self.crash_and_recover(false);
                }
                3..=5 => {
                    self.shard.commit().unwrap();
                    self.crash_and_recover(true);
                }
                _ => self.shard.commit().unwrap(),
            }
            self.check();
        }
    }
}

fn strip(dump: QueueDump) -> QueueDump {
    QueueDump {
        messages: dump
            .messages
            .into_iter()
            .map(|mut m| {
                if let MessageState::Leased { connection, .. } = &mut m.state {
                    *connection = None;
                }
                m
            })
            .collect(),
        fifos: dump.fifos,
    }
}

fn run_seed(seed: u64, steps: u64) -> (u64, usize) {
    let result = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed);
        sim.run(steps);
        (sim.recoveries, sim.model.acked.len())
    });
    match result {
        Ok(summary) => summary,
        Err(panic) => {
            eprintln!(
                "simulation failed; replay with: FILA_SIM_SEED={seed} FILA_SIM_STEPS={steps} cargo test -p fila-shard --test sim"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn simulation() {
    let steps = std::env::var("FILA_SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS_DEFAULT);
    let seeds: Vec<u64> = match std::env::var("FILA_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("FILA_SIM_SEED must be a number")],
        Err(_) => SEEDS_DEFAULT.to_vec(),
    };
    for seed in seeds {
        let (recoveries, acked) = run_seed(seed, steps);
        eprintln!("seed {seed}: {steps} steps, {recoveries} recoveries, {acked} acked");
        assert!(
            recoveries > 0 && acked > 0,
            "the workload exercised too little"
        );
    }
}
