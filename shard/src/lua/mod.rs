//! [`LuaHooks`]: the Lua 5.4 script host behind the [`Hooks`] seam. One VM per shard.
//!
//! * **Scripts**: each queue's `on_enqueue` / `on_failure` source is a chunk that defines a
//!   global function of the same name (`function on_enqueue(msg) ... end`); a chunk that
//!   returns a function is accepted too. Chunks are compiled (text mode only) and run once at
//!   [`Hooks::compile`], in the queue's own environment table: globals persist between that
//!   queue's calls and are never visible to another queue.
//! * **Limits per call** (compile included): a deadline from the injected monotonic clock,
//!   checked by an instruction hook every 1,000 instructions and by the pattern matcher;
//!   memory limited to the usage at the start of the call plus
//!   [`LuaLimits::memory_limit_bytes`]. A stopped call cannot be resumed by `pcall`: see
//!   `limiter.rs`. The sandbox itself is described in `sandbox.rs`.
//! * **Failures** (error, timeout, memory overrun, a non-table return) give the defaults and
//!   count toward the queue's circuit breaker; [`Hooks::last_run`] and [`Hooks::stats`] tell
//!   the caller what happened.
//! * [`dry_run`] compiles and runs one script against one message, for `fila lua test`.

mod limiter;
mod pattern;
mod sandbox;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use mlua::chunk::ChunkMode;
use mlua::{Function, IntoLuaMulti, Lua, LuaString, Table, Value};

use crate::config::RuntimeConfig;
use crate::hooks::{
    EnqueueDecision, EnqueueInput, FailureDecision, FailureInput, HookCompileError, HookContext,
    HookRun, HookStats, Hooks, QueueScripts,
};
use crate::ids::{MessageId, QueueId};
use crate::limits::THROTTLE_KEYS_MAX;

use limiter::{HOOK_EVERY, Limiter, Trip, install_hook};
use sandbox::Sandbox;

/// Prefix of runtime-config keys that are internal (API keys and the like): `fila.get`
/// never returns them.
pub const INTERNAL_CONFIG_PREFIX: &str = crate::config::RESERVED_PREFIX;

/// True for config keys scripts must not see.
pub fn is_internal_config_key(key: &str) -> bool {
    key.starts_with(INTERNAL_CONFIG_PREFIX)
}

/// Entries of `throttle_keys` looked at (strings among them are kept, up to the shard's cap).
const THROTTLE_ENTRIES_SCANNED: usize = 4 * THROTTLE_KEYS_MAX;

/// The `[lua]` section of `fila.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LuaLimits {
    /// `lua.default_timeout_ms`: time budget of one hook call.
    pub timeout_ms: u64,
    /// `lua.default_memory_limit_bytes`: memory one hook call may add.
    pub memory_limit_bytes: usize,
    /// `lua.circuit_breaker_threshold`: consecutive failures that trip the breaker (0 = never).
    pub circuit_breaker_threshold: u32,
    /// `lua.circuit_breaker_cooldown_ms`: how long a tripped queue's hooks are bypassed.
    pub circuit_breaker_cooldown_ms: u64,
}

impl Default for LuaLimits {
    fn default() -> Self {
        LuaLimits {
            timeout_ms: 10,
            memory_limit_bytes: 1024 * 1024,
            circuit_breaker_threshold: 3,
            circuit_breaker_cooldown_ms: 10_000,
        }
    }
}

/// The Lua state could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start the Lua VM: {0}")]
pub struct LuaInitError(pub String);

/// Why one script call gave the defaults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookFailure {
    /// Ran past its deadline.
    #[error("script exceeded its time limit of {0} ms")]
    Timeout(u64),
    /// Allocated past its memory limit.
    #[error("script exceeded its memory limit of {0} bytes")]
    Memory(usize),
    /// A runtime error.
    #[error("{0}")]
    Error(String),
    /// Returned something other than a table.
    #[error("hook returned {0}, expected a table")]
    NotATable(String),
}

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `on_enqueue`.
    OnEnqueue,
    /// `on_failure`.
    OnFailure,
}

impl HookKind {
    /// The function name.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::OnEnqueue => "on_enqueue",
            HookKind::OnFailure => "on_failure",
        }
    }
}

#[derive(Default)]
struct Breaker {
    consecutive: u32,
    open_until: Option<Duration>,
}

struct QueueHooks {
    name: Option<LuaString>,
    on_enqueue: Option<Function>,
    on_failure: Option<Function>,
    uses_config: bool,
    breaker: Breaker,
    stats: HookStats,
}

impl QueueHooks {
    fn function(&self, kind: HookKind) -> Option<&Function> {
        match kind {
            HookKind::OnEnqueue => self.on_enqueue.as_ref(),
            HookKind::OnFailure => self.on_failure.as_ref(),
        }
    }

    /// Whether the breaker lets a call through at `now` (closing it after the cooldown).
    fn admit(&mut self, now: Duration) -> bool {
        if let Some(until) = self.breaker.open_until {
            if now < until {
                self.stats.bypassed += 1;
                return false;
            }
            self.breaker.open_until = None;
            self.breaker.consecutive = 0;
        }
        true
    }

    /// Records a run; true when this failure tripped the breaker.
    fn record(&mut self, outcome: Result<(), String>, now: Duration, limits: &LuaLimits) -> bool {
        self.stats.runs += 1;
        match outcome {
            Ok(()) => {
                self.breaker.consecutive = 0;
                false
            }
            Err(text) => {
                self.stats.errors += 1;
                self.stats.last_error = Some(text);
                self.breaker.consecutive = self.breaker.consecutive.saturating_add(1);
                let threshold = limits.circuit_breaker_threshold;
                if threshold > 0 && self.breaker.consecutive >= threshold {
                    self.breaker.open_until =
                        Some(now + Duration::from_millis(limits.circuit_breaker_cooldown_ms));
                    self.stats.breaker_trips += 1;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Field names, interned once (pushing a cached string is a copy; `&str` is hashed each time).
struct Keys {
    headers: LuaString,
    payload_size: LuaString,
    queue: LuaString,
    id: LuaString,
    attempts: LuaString,
    error: LuaString,
    fairness_key: LuaString,
    weight: LuaString,
    throttle_keys: LuaString,
    action: LuaString,
    delay_ms: LuaString,
}

impl Keys {
    fn new(lua: &Lua) -> mlua::Result<Keys> {
        Ok(Keys {
            headers: lua.create_string("headers")?,
            payload_size: lua.create_string("payload_size")?,
            queue: lua.create_string("queue")?,
            id: lua.create_string("id")?,
            attempts: lua.create_string("attempts")?,
            error: lua.create_string("error")?,
            fairness_key: lua.create_string("fairness_key")?,
            weight: lua.create_string("weight")?,
            throttle_keys: lua.create_string("throttle_keys")?,
            action: lua.create_string("action")?,
            delay_ms: lua.create_string("delay_ms")?,
        })
    }
}

/// The VM and everything calls share (split from the queue table for disjoint borrows).
struct Host {
    keys: Keys,
    lua: Lua,
    limiter: Rc<Limiter>,
    sandbox: Sandbox,
    /// Private table whose `get` is the current call's config reader.
    current: Table,
    /// The `fila.get` every environment holds: forwards to `current.get`.
    fila_get: Function,
    limits: LuaLimits,
}

pub(crate) fn error_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::RuntimeError(message) => message
            .split("\nstack traceback:")
            .next()
            .unwrap_or(message)
            .to_string(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

impl Host {
    fn new(limits: LuaLimits, clock: Rc<dyn Fn() -> Duration>) -> mlua::Result<Host> {
        let lua = sandbox::new_state()?;
        // Hook calls leave short-lived garbage (message and result tables): the generational
        // collector frees it in small minor steps instead of long incremental cycles.
        lua.gc_set_mode(mlua::state::GcMode::Generational(
            mlua::state::GcGenParams::default(),
        ));
        let limiter = Rc::new(Limiter::new(clock, limits.memory_limit_bytes));
        let sandbox = Sandbox::install(&lua, &limiter)?;
        install_hook(&limiter, &lua, HOOK_EVERY)?;
        let current = lua.create_table()?;
        let fila_get: Function = lua
            .load(
                "local current = ...\n\
                 return function(key)\n\
                   local get = current.get\n\
                   if get == nil then return nil end\n\
                   return get(key)\n\
                 end",
            )
            .set_name("=fila.get")
            .call(current.clone())?;
        Ok(Host {
            keys: Keys::new(&lua)?,
            lua,
            limiter,
            sandbox,
            current,
            fila_get,
            limits,
        })
    }

    /// Runs `func(args)` under the per-call limits; the result and the call's duration.
    /// `start` is the injected clock's reading when the call began.
    fn call(
        &self,
        start: Duration,
        config: Option<&RuntimeConfig>,
        func: &Function,
        args: impl IntoLuaMulti,
    ) -> (Result<Value, HookFailure>, Duration) {
        let result = match config {
            Some(config) => self.lua.scope(|scope| {
                let get = scope.create_function(|lua, key: LuaString| {
                    let key = key.to_str()?;
                    match config.get(&key) {
                        Some(value) if !is_internal_config_key(&key) => {
                            Ok(Value::String(lua.create_string(value)?))
                        }
                        _ => Ok(Value::Nil),
                    }
                })?;
                self.current.raw_set("get", get)?;
                let result = self.limited(start, func, args);
                self.current.raw_set("get", Value::Nil)?;
                Ok(result)
            }),
            None => Ok(self.limited(start, func, args)),
        };
        let result = match result {
            Ok(inner) => inner,
            Err(err) => Err(self.classify(None, &err)),
        };
        (result, self.limiter.now().saturating_sub(start))
    }

    /// Like [`Host::call`], reading the clock first.
    fn call_now(
        &self,
        config: Option<&RuntimeConfig>,
        func: &Function,
        args: impl IntoLuaMulti,
    ) -> (Result<Value, HookFailure>, Duration) {
        self.call(self.limiter.now(), config, func, args)
    }

    fn limited(
        &self,
        start: Duration,
        func: &Function,
        args: impl IntoLuaMulti,
    ) -> Result<Value, HookFailure> {
        let args = args
            .into_lua_multi(&self.lua)
            .map_err(|e| HookFailure::Error(error_text(&e)))?;
        let used = self.lua.used_memory();
        let memory = self
            .lua
            .set_memory_limit(used.saturating_add(self.limits.memory_limit_bytes));
        self.limiter
            .arm(start + Duration::from_millis(self.limits.timeout_ms));
        let result = func.call::<Value>(args);
        let trip = self.limiter.disarm();
        if memory.is_ok() {
            let _ = self.lua.set_memory_limit(0);
        }
        if trip.is_some() {
            // Back to the normal hook (the tripped one fails every instruction).
            let _ = install_hook(&self.limiter, &self.lua, HOOK_EVERY);
        }
        match (trip, result) {
            (Some(kind), _) => Err(self.trip_failure(kind)),
            (None, Err(err)) => Err(self.classify(None, &err)),
            (None, Ok(value)) => Ok(value),
        }
    }

    fn trip_failure(&self, kind: Trip) -> HookFailure {
        match kind {
            Trip::Timeout => HookFailure::Timeout(self.limits.timeout_ms),
            Trip::Memory => HookFailure::Memory(self.limits.memory_limit_bytes),
        }
    }

    fn classify(&self, trip: Option<Trip>, err: &mlua::Error) -> HookFailure {
        match trip {
            Some(kind) => self.trip_failure(kind),
            None if is_memory_error(err) => HookFailure::Memory(self.limits.memory_limit_bytes),
            None => HookFailure::Error(error_text(err)),
        }
    }

    fn headers(&self, headers: &[(String, String)]) -> mlua::Result<Table> {
        let table = self.lua.create_table_with_capacity(0, headers.len())?;
        for (name, value) in headers {
            table.raw_set(name.as_str(), value.as_str())?;
        }
        Ok(table)
    }

    fn enqueue_msg(&self, queue: &LuaString, input: &EnqueueInput<'_>) -> mlua::Result<Table> {
        let k = &self.keys;
        let msg = self.lua.create_table_with_capacity(0, 3)?;
        msg.raw_set(&k.headers, self.headers(input.headers)?)?;
        msg.raw_set(
            &k.payload_size,
            i64::try_from(input.payload_size).unwrap_or(i64::MAX),
        )?;
        msg.raw_set(&k.queue, queue)?;
        Ok(msg)
    }

    fn failure_msg(&self, queue: &LuaString, input: &FailureInput<'_>) -> mlua::Result<Table> {
        let k = &self.keys;
        let msg = self.lua.create_table_with_capacity(0, 5)?;
        msg.raw_set(&k.headers, self.headers(input.headers)?)?;
        msg.raw_set(&k.id, input.id.to_string())?;
        msg.raw_set(&k.attempts, i64::from(input.attempts))?;
        msg.raw_set(&k.queue, queue)?;
        msg.raw_set(&k.error, input.error)?;
        Ok(msg)
    }

    /// Compiles a queue's scripts in a fresh environment and runs their top level.
    fn compile(
        &self,
        config: &RuntimeConfig,
        queue: &QueueId,
        scripts: &QueueScripts,
    ) -> Result<QueueHooks, String> {
        let env = self
            .sandbox
            .environment(&self.lua, &self.fila_get)
            .map_err(|e| error_text(&e))?;
        let mut hooks = QueueHooks {
            name: Some(
                self.lua
                    .create_string(queue.as_str())
                    .map_err(|e| error_text(&e))?,
            ),
            on_enqueue: None,
            on_failure: None,
            uses_config: false,
            breaker: Breaker::default(),
            stats: HookStats::default(),
        };
        for (kind, source) in [
            (HookKind::OnEnqueue, &scripts.on_enqueue),
            (HookKind::OnFailure, &scripts.on_failure),
        ] {
            let Some(source) = source else { continue };
            let name = kind.name();
            hooks.uses_config |= source.contains("fila");
            let chunk = self
                .lua
                .load(source.as_str())
                .set_name(format!("={name}"))
                .set_mode(ChunkMode::Text)
                .set_environment(env.clone())
                .into_function()
                .map_err(|e| error_text(&e))?;
            let (result, _) = self.call_now(Some(config), &chunk, ());
            let returned = result.map_err(|f| format!("{name} script failed to load: {f}"))?;
            let function = match returned {
                Value::Function(f) => f,
                _ => match env.raw_get::<Value>(name) {
                    Ok(Value::Function(f)) => f,
                    _ => {
                        return Err(format!(
                            "the {name} script must define a function {name}(msg)"
                        ));
                    }
                },
            };
            match kind {
                HookKind::OnEnqueue => hooks.on_enqueue = Some(function),
                HookKind::OnFailure => hooks.on_failure = Some(function),
            }
        }
        Ok(hooks)
    }
}

fn coerce_key(lua: &Lua, value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string_lossy()),
        v @ (Value::Integer(_) | Value::Number(_)) => lua
            .coerce_string(v)
            .ok()
            .flatten()
            .map(|s| s.to_string_lossy()),
        _ => None,
    }
}

/// Reads `on_enqueue`'s table (raw reads: no metamethod runs outside the call's limits).
fn parse_enqueue(lua: &Lua, k: &Keys, value: Value) -> Result<EnqueueDecision, HookFailure> {
    let Value::Table(table) = value else {
        return Err(HookFailure::NotATable(value.type_name().to_string()));
    };
    let fairness_key = table
        .raw_get::<Value>(&k.fairness_key)
        .ok()
        .and_then(|v| coerce_key(lua, v));
    let weight = match table.raw_get::<Value>(&k.weight) {
        Ok(Value::Integer(w)) if w > 0 => w,
        Ok(Value::Number(w)) if w >= 1.0 && w.fract() == 0.0 => w as i64,
        _ => 1,
    };
    let mut throttle_keys = Vec::new();
    if let Ok(Value::Table(keys)) = table.raw_get::<Value>(&k.throttle_keys) {
        let len = keys.raw_len().min(THROTTLE_ENTRIES_SCANNED);
        for i in 1..=len {
            if let Ok(Value::String(key)) = keys.raw_get::<Value>(i) {
                throttle_keys.push(key.to_string_lossy());
                if throttle_keys.len() == THROTTLE_KEYS_MAX {
                    break;
                }
            }
        }
    }
    Ok(EnqueueDecision {
        fairness_key,
        weight,
        throttle_keys,
    })
}

/// Reads `on_failure`'s table.
fn parse_failure(k: &Keys, value: Value) -> Result<FailureDecision, HookFailure> {
    let Value::Table(table) = value else {
        return Err(HookFailure::NotATable(value.type_name().to_string()));
    };
    let dlq = matches!(
        table.raw_get::<Value>(&k.action),
        Ok(Value::String(action)) if action.as_bytes().as_ref() == b"dlq"
    );
    if dlq {
        return Ok(FailureDecision::DeadLetter);
    }
    let delay_ms = match table.raw_get::<Value>(&k.delay_ms) {
        Ok(Value::Integer(ms)) => u64::try_from(ms).unwrap_or(0),
        Ok(Value::Number(ms)) if ms.is_finite() && ms > 0.0 => ms as u64,
        _ => 0,
    };
    Ok(FailureDecision::Retry { delay_ms })
}

fn default_enqueue() -> EnqueueDecision {
    EnqueueDecision {
        fairness_key: None,
        weight: 1,
        throttle_keys: Vec::new(),
    }
}

const DEFAULT_FAILURE: FailureDecision = FailureDecision::Retry { delay_ms: 0 };

/// The Lua script host: one VM, each queue's compiled hooks, their breakers and counters.
pub struct LuaHooks {
    host: Host,
    queues: HashMap<QueueId, QueueHooks>,
    last: Option<HookRun>,
    /// When the last run ended (the breaker's "now" for recording it).
    ended: Duration,
}

impl std::fmt::Debug for LuaHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaHooks")
            .field("limits", &self.host.limits)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl LuaHooks {
    /// A host with these limits. `clock` is a monotonic time source (the shard never reads a
    /// clock): the server passes e.g. `move || start.elapsed()`, tests a fake clock.
    pub fn new(
        limits: LuaLimits,
        clock: Box<dyn Fn() -> Duration>,
    ) -> Result<LuaHooks, LuaInitError> {
        let host = Host::new(limits, Rc::from(clock)).map_err(|e| LuaInitError(error_text(&e)))?;
        Ok(LuaHooks {
            host,
            queues: HashMap::new(),
            last: None,
            ended: Duration::ZERO,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> LuaLimits {
        self.host.limits
    }

    /// Bytes the VM uses now (all queues).
    pub fn used_memory(&self) -> usize {
        self.host.lua.used_memory()
    }

    /// Runs one hook of `queue` through the breaker; the script's value or why it failed.
    fn run(
        &mut self,
        ctx: HookContext<'_>,
        queue: &QueueId,
        kind: HookKind,
        build: &dyn Fn(&Host, &LuaString) -> mlua::Result<Table>,
    ) -> Option<Result<Value, HookFailure>> {
        self.last = None;
        let q = self.queues.get_mut(queue)?;
        q.function(kind)?;
        let host = &self.host;
        let now = host.limiter.now();
        if !q.admit(now) {
            self.last = Some(HookRun::Bypassed);
            return None;
        }
        let function = q.function(kind)?;
        let name = q.name.as_ref()?;
        let (result, duration) = match build(host, name) {
            Ok(msg) => host.call(now, q.uses_config.then_some(ctx.config), function, msg),
            Err(err) => (Err(HookFailure::Error(error_text(&err))), Duration::ZERO),
        };
        self.ended = now + duration;
        // `tripped` is filled in by `finish` once the value is parsed.
        self.last = Some(HookRun::Ran {
            ok: result.is_ok(),
            duration,
            tripped: false,
        });
        Some(result)
    }

    fn finish(&mut self, queue: &QueueId, outcome: Result<(), String>) {
        let limits = self.host.limits;
        let now = self.ended;
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let ok = outcome.is_ok();
        let tripped = q.record(outcome, now, &limits);
        if let Some(HookRun::Ran { duration, .. }) = self.last {
            self.last = Some(HookRun::Ran {
                ok,
                duration,
                tripped,
            });
        }
    }
}

impl Hooks for LuaHooks {
    fn compile(
        &mut self,
        ctx: HookContext<'_>,
        queue: &QueueId,
        scripts: &QueueScripts,
    ) -> Result<(), HookCompileError> {
        self.queues.remove(queue);
        if scripts.is_empty() {
            return Ok(());
        }
        match self.host.compile(ctx.config, queue, scripts) {
            Ok(hooks) => {
                self.queues.insert(queue.clone(), hooks);
                Ok(())
            }
            Err(message) => {
                // Kept so stats show why a recovered queue runs without its hooks; a failed
                // CreateQueue forgets it.
                self.queues.insert(
                    queue.clone(),
                    QueueHooks {
                        name: None,
                        on_enqueue: None,
                        on_failure: None,
                        uses_config: false,
                        breaker: Breaker::default(),
                        stats: HookStats {
                            compile_error: Some(message.clone()),
                            ..HookStats::default()
                        },
                    },
                );
                Err(HookCompileError { message })
            }
        }
    }

    fn forget(&mut self, queue: &QueueId) {
        self.queues.remove(queue);
    }

    fn on_enqueue(&mut self, ctx: HookContext<'_>, input: &EnqueueInput<'_>) -> EnqueueDecision {
        let build = |host: &Host, name: &LuaString| host.enqueue_msg(name, input);
        let Some(result) = self.run(ctx, input.queue, HookKind::OnEnqueue, &build) else {
            return default_enqueue();
        };
        match result.and_then(|v| parse_enqueue(&self.host.lua, &self.host.keys, v)) {
            Ok(decision) => {
                self.finish(input.queue, Ok(()));
                decision
            }
            Err(failure) => {
                self.finish(input.queue, Err(failure.to_string()));
                default_enqueue()
            }
        }
    }

    fn on_failure(&mut self, ctx: HookContext<'_>, input: &FailureInput<'_>) -> FailureDecision {
        let build = |host: &Host, name: &LuaString| host.failure_msg(name, input);
        let Some(result) = self.run(ctx, input.queue, HookKind::OnFailure, &build) else {
            return DEFAULT_FAILURE;
        };
        match result.and_then(|v| parse_failure(&self.host.keys, v)) {
            Ok(decision) => {
                self.finish(input.queue, Ok(()));
                decision
            }
            Err(failure) => {
                self.finish(input.queue, Err(failure.to_string()));
                DEFAULT_FAILURE
            }
        }
    }

    fn last_run(&self) -> Option<HookRun> {
        self.last
    }

    fn stats(&self, queue: &QueueId) -> Option<HookStats> {
        let q = self.queues.get(queue)?;
        let mut stats = q.stats.clone();
        stats.consecutive_failures = q.breaker.consecutive;
        stats.breaker_open = q
            .breaker
            .open_until
            .is_some_and(|until| self.host.limiter.now() < until);
        Some(stats)
    }
}

/// A message for [`dry_run`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DryRunMessage {
    /// `msg.queue`.
    pub queue: String,
    /// `msg.headers`.
    pub headers: Vec<(String, String)>,
    /// `msg.payload_size` (on_enqueue).
    pub payload_size: usize,
    /// `msg.id` (on_failure); the nil UUID when `None`.
    pub id: Option<MessageId>,
    /// `msg.attempts` (on_failure).
    pub attempts: u32,
    /// `msg.error` (on_failure).
    pub error: String,
}

/// What a dry run decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DryRunOutcome {
    /// `on_enqueue`'s decision, as the script returned it (before the shard's clamping).
    Enqueue(EnqueueDecision),
    /// `on_failure`'s decision.
    Failure(FailureDecision),
}

/// Compiles `script` as the `kind` hook in a fresh VM and runs it once against `msg`, with
/// the given limits and config. The decision, or the compile/runtime error as text (a dry run
/// reports failures instead of falling back to defaults).
pub fn dry_run(
    limits: LuaLimits,
    clock: Box<dyn Fn() -> Duration>,
    config: &RuntimeConfig,
    kind: HookKind,
    script: &str,
    msg: &DryRunMessage,
) -> Result<DryRunOutcome, String> {
    let host = Host::new(limits, Rc::from(clock)).map_err(|e| error_text(&e))?;
    let queue = QueueId::new(&msg.queue);
    let scripts = match kind {
        HookKind::OnEnqueue => QueueScripts {
            on_enqueue: Some(script.to_string()),
            on_failure: None,
        },
        HookKind::OnFailure => QueueScripts {
            on_enqueue: None,
            on_failure: Some(script.to_string()),
        },
    };
    let hooks = host.compile(config, &queue, &scripts)?;
    let function = hooks
        .function(kind)
        .ok_or_else(|| format!("no {} function", kind.name()))?;
    let name = host
        .lua
        .create_string(&msg.queue)
        .map_err(|e| error_text(&e))?;
    let table = match kind {
        HookKind::OnEnqueue => host.enqueue_msg(
            &name,
            &EnqueueInput {
                queue: &queue,
                headers: &msg.headers,
                payload_size: msg.payload_size,
            },
        ),
        HookKind::OnFailure => host.failure_msg(
            &name,
            &FailureInput {
                queue: &queue,
                id: msg.id.unwrap_or(MessageId(uuid::Uuid::nil())),
                headers: &msg.headers,
                attempts: msg.attempts,
                error: &msg.error,
            },
        ),
    }
    .map_err(|e| error_text(&e))?;
    let (result, _) = host.call_now(Some(config), function, table);
    let value = result.map_err(|f| f.to_string())?;
    match kind {
        HookKind::OnEnqueue => {
            parse_enqueue(&host.lua, &host.keys, value).map(DryRunOutcome::Enqueue)
        }
        HookKind::OnFailure => parse_failure(&host.keys, value).map(DryRunOutcome::Failure),
    }
    .map_err(|f| f.to_string())
}
