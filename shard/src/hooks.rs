//! The hooks seam: how a queue's scripts (Lua: [`crate::lua::LuaHooks`]) decide a message's fairness
//! key, weight and throttle keys at enqueue, and retry-or-dead-letter after a failed attempt.
//!
//! The shard calls a [`Hooks`] implementation; [`NoHooks`] is the default (no scripts: key
//! `"default"`, weight 1, no throttle keys, retry at once). Whatever a hook returns is
//! sanitised by the shard (weights clamped to 1..=10,000, keys bounded), so an
//! implementation cannot break scheduling.

use std::time::Duration;

use crate::config::RuntimeConfig;
use crate::ids::{MessageId, QueueId};
use crate::shard::Shard;
use crate::storage::Storage;

/// A queue's optional script sources, stored with its definition so hooks can be recompiled
/// at recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueScripts {
    /// Source of `on_enqueue`.
    pub on_enqueue: Option<String>,
    /// Source of `on_failure`.
    pub on_failure: Option<String>,
}

impl QueueScripts {
    /// True when neither script is present.
    pub fn is_empty(&self) -> bool {
        self.on_enqueue.is_none() && self.on_failure.is_none()
    }
}

/// What a hook may read besides the message: the shard's copy of runtime config (`fila.get`).
#[derive(Clone, Copy, Debug)]
pub struct HookContext<'a> {
    /// The shard's runtime configuration.
    pub config: &'a RuntimeConfig,
}

/// The input of `on_enqueue`.
#[derive(Clone, Copy, Debug)]
pub struct EnqueueInput<'a> {
    /// Target queue.
    pub queue: &'a QueueId,
    /// The message's headers.
    pub headers: &'a [(String, String)],
    /// Payload length in bytes.
    pub payload_size: usize,
}

/// What `on_enqueue` decided. Raw values: the shard clamps and bounds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnqueueDecision {
    /// Fairness key; `None` means `"default"`.
    pub fairness_key: Option<String>,
    /// Weight as the script returned it; clamped to 1..=10,000 by the shard.
    pub weight: i64,
    /// Throttle keys.
    pub throttle_keys: Vec<String>,
}

/// The input of `on_failure`.
#[derive(Clone, Copy, Debug)]
pub struct FailureInput<'a> {
    /// The queue the message failed in.
    pub queue: &'a QueueId,
    /// The message id.
    pub id: MessageId,
    /// The message's headers.
    pub headers: &'a [(String, String)],
    /// Attempts, already counting this failure (the first nack sees 1).
    pub attempts: u32,
    /// The nack's error text, `"visibility timeout expired"` or `"consumer disconnected"`.
    pub error: &'a str,
}

/// What `on_failure` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDecision {
    /// Back to pending, deliverable after `delay_ms` (0 = at once).
    Retry {
        /// Delay before the message is deliverable again.
        delay_ms: u64,
    },
    /// Move to `<queue>.dlq` (retried instead when that queue is missing).
    DeadLetter,
}

/// A queue's scripts failed to compile; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookCompileError {
    /// The compiler's message.
    pub message: String,
}

/// What the most recent `on_enqueue`/`on_failure` call did with the queue's script (for
/// metrics: `fila.lua.execution_duration_us` only when it ran, `fila.lua.errors` when it
/// failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookRun {
    /// The script ran; `ok` is false for an error, timeout, memory overrun or bad return
    /// (the decision was the default).
    Ran {
        /// The script succeeded.
        ok: bool,
        /// How long the call took.
        duration: Duration,
        /// This failure tripped the circuit breaker.
        tripped: bool,
    },
    /// The circuit breaker is open: the script was skipped and the defaults applied.
    Bypassed,
}

/// Per-queue counters of a script host (`fila queue inspect`, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Script runs (successful or not).
    pub runs: u64,
    /// Failed runs (error, timeout, memory overrun, non-table return).
    pub errors: u64,
    /// Calls skipped while the breaker was open.
    pub bypassed: u64,
    /// Times the breaker tripped.
    pub breaker_trips: u64,
    /// The breaker is open now.
    pub breaker_open: bool,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// Set when the scripts did not compile at recovery: the queue runs without them.
    pub compile_error: Option<String>,
}

/// The seam the Lua host implements.
pub trait Hooks {
    /// Compiles (or validates) a queue's scripts at creation and at recovery. An error makes
    /// CreateQueue fail with a compilation error.
    fn compile(
        &mut self,
        ctx: HookContext<'_>,
        queue: &QueueId,
        scripts: &QueueScripts,
    ) -> Result<(), HookCompileError>;

    /// Forgets a deleted queue's compiled scripts.
    fn forget(&mut self, queue: &QueueId);

    /// Decides fairness key, weight and throttle keys of a new message.
    fn on_enqueue(&mut self, ctx: HookContext<'_>, input: &EnqueueInput<'_>) -> EnqueueDecision;

    /// Decides what happens after a failed attempt.
    fn on_failure(&mut self, ctx: HookContext<'_>, input: &FailureInput<'_>) -> FailureDecision;

    /// What the last `on_enqueue`/`on_failure` call did; `None` when the queue has no script
    /// for that hook.
    fn last_run(&self) -> Option<HookRun> {
        None
    }

    /// Counters of a queue's scripts; `None` when it has none.
    fn stats(&self, _queue: &QueueId) -> Option<HookStats> {
        None
    }
}

impl<S: Storage> Shard<S> {
    /// The hook counters of a queue (`None` without scripts or without a script host).
    pub fn hook_stats(&self, queue: &str) -> Option<HookStats> {
        self.hooks.stats(&QueueId::new(queue))
    }
}

/// The default: no scripts. Queues created with scripts are refused (this build has no
/// script host), so a script is never silently ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn compile(
        &mut self,
        _ctx: HookContext<'_>,
        _queue: &QueueId,
        scripts: &QueueScripts,
    ) -> Result<(), HookCompileError> {
        if scripts.is_empty() {
            Ok(())
        } else {
            Err(HookCompileError {
                message: "Lua hooks are not supported by this build yet".to_string(),
            })
        }
    }

    fn forget(&mut self, _queue: &QueueId) {}

    fn on_enqueue(&mut self, _ctx: HookContext<'_>, _input: &EnqueueInput<'_>) -> EnqueueDecision {
        EnqueueDecision {
            fairness_key: None,
            weight: 1,
            throttle_keys: Vec::new(),
        }
    }

    fn on_failure(&mut self, _ctx: HookContext<'_>, _input: &FailureInput<'_>) -> FailureDecision {
        FailureDecision::Retry { delay_ms: 0 }
    }
}
