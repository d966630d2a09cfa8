//! Shared test harness: a hooks implementation driven by message headers, and a `World`
//! holding a shard over `MemoryStorage` with a manual clock.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

/// Hooks driven by headers, so tests choose keys, weights and failure decisions per message:
/// `fk` fairness key, `w` weight, `tk` comma-separated throttle keys; on failure `fail` =
/// `dlq` (dead-letter), `delay=N` (retry after N ms), `dlq-after=N` (dead-letter from attempt
/// N on, else retry at once). A script whose text is `bad` fails to compile.
#[derive(Clone, Default)]
pub struct HeaderHooks {
    pub failures: Rc<RefCell<Vec<Failure>>>,
}

/// One `on_failure` call: queue, id, attempts, error text.
pub type Failure = (String, MessageId, u32, String);

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Hooks for HeaderHooks {
    fn compile(
        &mut self,
        _ctx: HookContext<'_>,
        _queue: &QueueId,
        scripts: &QueueScripts,
    ) -> Result<(), HookCompileError> {
        for script in [&scripts.on_enqueue, &scripts.on_failure]
            .into_iter()
            .flatten()
        {
            if script == "bad" {
                return Err(HookCompileError {
                    message: "syntax error near 'bad'".to_string(),
                });
            }
        }
        Ok(())
    }

    fn forget(&mut self, _queue: &QueueId) {}

    fn on_enqueue(&mut self, _ctx: HookContext<'_>, input: &EnqueueInput<'_>) -> EnqueueDecision {
        EnqueueDecision {
            fairness_key: header(input.headers, "fk").map(str::to_string),
            weight: header(input.headers, "w")
                .and_then(|w| w.parse().ok())
                .unwrap_or(1),
            throttle_keys: header(input.headers, "tk")
                .map(|t| t.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }

    fn on_failure(&mut self, _ctx: HookContext<'_>, input: &FailureInput<'_>) -> FailureDecision {
        self.failures.borrow_mut().push((
            input.queue.to_string(),
            input.id,
            input.attempts,
            input.error.to_string(),
        ));
        match header(input.headers, "fail") {
            Some("dlq") => FailureDecision::DeadLetter,
            Some(rule) => {
                if let Some(ms) = rule.strip_prefix("delay=") {
                    FailureDecision::Retry {
                        delay_ms: ms.parse().unwrap_or(0),
                    }
                } else if let Some(n) = rule.strip_prefix("dlq-after=") {
                    if input.attempts >= n.parse().unwrap_or(u32::MAX) {
                        FailureDecision::DeadLetter
                    } else {
                        FailureDecision::Retry { delay_ms: 0 }
                    }
                } else {
                    FailureDecision::Retry { delay_ms: 0 }
                }
            }
            None => FailureDecision::Retry { delay_ms: 0 },
        }
    }
}

pub const T0_MS: u64 = 1_700_000_000_000;

/// A shard with a manual clock; commits after every step like the server's loop.
pub struct World {
    pub shard: Shard<MemoryStorage>,
    pub now: Time,
    pub hooks: HeaderHooks,
}

impl World {
    pub fn new() -> World {
        World::with_quantum(1)
    }

    pub fn with_quantum(quantum: u32) -> World {
        World::with_options(ShardOptions {
            seed: 42,
            quantum,
            ..ShardOptions::default()
        })
    }

    pub fn with_options(options: ShardOptions) -> World {
        let hooks = HeaderHooks::default();
        World {
            shard: Shard::new(MemoryStorage::new(), options, Box::new(hooks.clone())),
            now: Time::from_millis(T0_MS),
            hooks,
        }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        self.shard.tick(self.now);
        self.shard.commit().unwrap();
    }

    pub fn create(&mut self, name: &str, visibility_timeout_ms: u64) {
        let spec = QueueSpec {
            visibility_timeout_ms,
            ..QueueSpec::named(name)
        };
        self.shard.create_queue(self.now, spec).unwrap();
        self.shard.commit().unwrap();
    }

    pub fn enqueue(&mut self, queue: &str, headers: &[(&str, &str)]) -> MessageId {
        let item = EnqueueItem {
            queue: queue.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            payload: Bytes::from_static(b"payload"),
        };
        let id = self.shard.enqueue(self.now, vec![item]).remove(0).unwrap();
        self.shard.commit().unwrap();
        id
    }

    pub fn consume(&mut self, queue: &str, connection: u64, window: u32) -> ConsumerId {
        self.shard
            .register_consumer(self.now, queue, ConnectionId(connection), window)
            .unwrap()
    }

    pub fn poll(&mut self, limit: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.shard.poll_deliveries(self.now, limit, &mut out);
        self.shard.commit().unwrap();
        out
    }

    pub fn ack(&mut self, connection: u64, queue: &str, id: MessageId) -> Result<(), AckError> {
        let item = AckItem {
            queue: queue.to_string(),
            id,
        };
        let result = self
            .shard
            .ack(self.now, ConnectionId(connection), &[item])
            .remove(0);
        self.shard.commit().unwrap();
        result
    }

    pub fn nack(
        &mut self,
        connection: u64,
        queue: &str,
        id: MessageId,
        error: &str,
    ) -> Result<(), NackError> {
        let item = NackItem {
            queue: queue.to_string(),
            id,
            error: error.to_string(),
        };
        let result = self
            .shard
            .nack(self.now, ConnectionId(connection), &[item])
            .remove(0);
        self.shard.commit().unwrap();
        result
    }

    pub fn view(&self, queue: &str, id: MessageId) -> Option<MessageView> {
        self.shard
            .inspect_queue(queue)?
            .messages
            .into_iter()
            .find(|m| m.id == id)
    }

    pub fn check(&self) {
        self.shard.check_invariants().unwrap();
    }
}
