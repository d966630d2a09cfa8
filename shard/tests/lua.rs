//! The Lua host: both hooks' fields and defaults, `fila.get`, the sandbox, per-call limits
//! against hostile scripts, the circuit breaker, dry runs, recovery, and an end-to-end
//! scenario through `Shard`. Time comes from a fake clock: deterministic, no sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::T0_MS;
use fila_shard::config::RuntimeConfig;
use fila_shard::lua::{DryRunMessage, DryRunOutcome, HookKind, LuaHooks, LuaLimits, dry_run};
use fila_shard::storage::memory::MemoryStorage;
use fila_shard::*;

/// A monotonic fake clock; every read advances it by `step` (so a runaway script meets its
/// deadline after a fixed number of checks), and tests move it with `advance`.
#[derive(Clone)]
struct FakeClock {
    now_us: Rc<Cell<u64>>,
    step_us: Rc<Cell<u64>>,
}

impl FakeClock {
    fn new(step_us: u64) -> FakeClock {
        FakeClock {
            now_us: Rc::new(Cell::new(1_000_000)),
            step_us: Rc::new(Cell::new(step_us)),
        }
    }

    fn boxed(&self) -> Box<dyn Fn() -> Duration> {
        let clock = self.clone();
        Box::new(move || {
            let now = clock.now_us.get();
            clock.now_us.set(now + clock.step_us.get());
            Duration::from_micros(now)
        })
    }

    fn advance_ms(&self, ms: u64) {
        self.now_us.set(self.now_us.get() + ms * 1_000);
    }
}

const LIMITS: LuaLimits = LuaLimits {
    timeout_ms: 10,
    memory_limit_bytes: 1024 * 1024,
    circuit_breaker_threshold: 3,
    circuit_breaker_cooldown_ms: 10_000,
};

struct Host {
    hooks: LuaHooks,
    clock: FakeClock,
    config: RuntimeConfig,
}

impl Host {
    fn new() -> Host {
        Host::with_limits(LIMITS)
    }

    fn with_limits(limits: LuaLimits) -> Host {
        let clock = FakeClock::new(100);
        Host {
            hooks: LuaHooks::new(limits, clock.boxed()).unwrap(),
            clock,
            config: RuntimeConfig::new(),
        }
    }

    fn create(
        &mut self,
        queue: &str,
        on_enqueue: Option<&str>,
        on_failure: Option<&str>,
    ) -> Result<(), HookCompileError> {
        let scripts = QueueScripts {
            on_enqueue: on_enqueue.map(str::to_string),
            on_failure: on_failure.map(str::to_string),
        };
        let ctx = HookContext {
            config: &self.config,
        };
        self.hooks.compile(ctx, &QueueId::new(queue), &scripts)
    }

    fn enqueue(&mut self, queue: &str, headers: &[(&str, &str)]) -> EnqueueDecision {
        self.enqueue_sized(queue, headers, 7)
    }

    fn enqueue_sized(
        &mut self,
        queue: &str,
        headers: &[(&str, &str)],
        payload_size: usize,
    ) -> EnqueueDecision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let id = QueueId::new(queue);
        let ctx = HookContext {
            config: &self.config,
        };
        self.hooks.on_enqueue(
            ctx,
            &EnqueueInput {
                queue: &id,
                headers: &headers,
                payload_size,
            },
        )
    }

    fn fail(&mut self, queue: &str, headers: &[(&str, &str)], attempts: u32) -> FailureDecision {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let id = QueueId::new(queue);
        let ctx = HookContext {
            config: &self.config,
        };
        self.hooks.on_failure(
            ctx,
            &FailureInput {
                queue: &id,
                id: MessageId::parse("0190a5f2-7b3c-7def-8123-456789abcdef").unwrap(),
                headers: &headers,
                attempts,
                error: "boom",
            },
        )
    }

    fn stats(&self, queue: &str) -> HookStats {
        self.hooks.stats(&QueueId::new(queue)).unwrap()
    }

    fn last_ok(&self) -> bool {
        match self.hooks.last_run() {
            Some(HookRun::Ran { ok, .. }) => ok,
            other => panic!("expected a run, got {other:?}"),
        }
    }
}

fn default_decision() -> EnqueueDecision {
    EnqueueDecision {
        fairness_key: None,
        weight: 1,
        throttle_keys: Vec::new(),
    }
}

fn ret(table: &str) -> String {
    format!("function on_enqueue(msg) return {table} end")
}

const GOOD: &str = r#"
function on_enqueue(msg)
  return { fairness_key = "good:" .. (msg.headers.tenant or "?"), weight = 2 }
end
"#;

/// Runs `body` as the `on_enqueue` of queue "evil" and checks it is contained: the call
/// returns the defaults, counts as a failed run within its time limit, and a second queue on
/// the same VM works right after. Returns the failure text.
fn contained(body: &str) -> String {
    contained_with(LIMITS, body)
}

fn contained_with(limits: LuaLimits, body: &str) -> String {
    let mut h = Host::with_limits(limits);
    h.create("good", Some(GOOD), None).unwrap();
    let script = format!("function on_enqueue(msg)\n{body}\nend");
    h.create("evil", Some(&script), None).unwrap();
    let memory_before = h.hooks.used_memory();
    assert_eq!(h.enqueue("evil", &[]), default_decision());
    match h.hooks.last_run() {
        Some(HookRun::Ran { ok, duration, .. }) => {
            assert!(!ok, "the hostile script must count as a failure");
            // The fake clock moves 0.1 ms per read; a stopped call ends within a few reads
            // of its 10 ms deadline.
            assert!(
                duration <= Duration::from_millis(11),
                "stopped late: {duration:?}"
            );
        }
        other => panic!("expected a run, got {other:?}"),
    }
    let stats = h.stats("evil");
    assert_eq!((stats.runs, stats.errors), (1, 1));
    assert!(
        h.hooks.used_memory() <= memory_before + 2 * limits.memory_limit_bytes,
        "memory kept growing"
    );
    let good = h.enqueue("good", &[("tenant", "t1")]);
    assert_eq!(good.fairness_key.as_deref(), Some("good:t1"));
    assert_eq!(good.weight, 2);
    assert!(h.last_ok());
    // And the hostile queue's next call is contained again (not yet tripped: threshold 3).
    assert_eq!(h.enqueue("evil", &[]), default_decision());
    assert!(!h.last_ok());
    stats.last_error.unwrap()
}

// ---- on_enqueue fields ----

#[test]
fn on_enqueue_sees_headers_payload_size_and_queue() {
    let mut h = Host::new();
    let script = r#"
function on_enqueue(msg)
  return {
    fairness_key = msg.headers.tenant .. "|" .. msg.queue .. "|" .. msg.payload_size,
    weight = tonumber(msg.headers.w),
    throttle_keys = { "tenant:" .. msg.headers.tenant, "global" },
  }
end"#;
    h.create("orders", Some(script), None).unwrap();
    let d = h.enqueue_sized("orders", &[("tenant", "acme"), ("w", "5")], 1234);
    assert_eq!(d.fairness_key.as_deref(), Some("acme|orders|1234"));
    assert_eq!(d.weight, 5);
    assert_eq!(d.throttle_keys, vec!["tenant:acme", "global"]);
    assert!(h.last_ok());
}

#[test]
fn on_enqueue_defaults_for_missing_fields() {
    let mut h = Host::new();
    h.create("q", Some(&ret("{}")), None).unwrap();
    assert_eq!(h.enqueue("q", &[]), default_decision());
    assert!(h.last_ok(), "an empty table is a success");
}

#[test]
fn on_enqueue_invalid_weights_become_one() {
    for weight in ["0", "-3", "2.5", "'7'", "{}", "true", "0/0"] {
        let mut h = Host::new();
        h.create("q", Some(&ret(&format!("{{ weight = {weight} }}"))), None)
            .unwrap();
        assert_eq!(h.enqueue("q", &[]).weight, 1, "weight = {weight}");
        assert!(h.last_ok());
    }
    let mut h = Host::new();
    h.create("q", Some(&ret("{ weight = 3.0 }")), None).unwrap();
    assert_eq!(h.enqueue("q", &[]).weight, 3);
    h.create("q", Some(&ret("{ weight = 99999999 }")), None)
        .unwrap();
    assert_eq!(h.enqueue("q", &[]).weight, 99_999_999, "the shard clamps");
}

#[test]
fn on_enqueue_fairness_key_must_be_a_string_or_number() {
    let mut h = Host::new();
    h.create("q", Some(&ret("{ fairness_key = 42 }")), None)
        .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("42"));
    h.create("q", Some(&ret("{ fairness_key = {} }")), None)
        .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key, None);
    h.create("q", Some(&ret("{ fairness_key = nil }")), None)
        .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key, None);
}

#[test]
fn on_enqueue_throttle_keys_skip_non_strings() {
    let mut h = Host::new();
    h.create(
        "q",
        Some(&ret(r#"{ throttle_keys = { "a", 1, {}, true, "b" } }"#)),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]).throttle_keys, vec!["a", "b"]);
    h.create("q", Some(&ret(r#"{ throttle_keys = "a" }"#)), None)
        .unwrap();
    assert!(h.enqueue("q", &[]).throttle_keys.is_empty());
}

#[test]
fn returned_tables_are_read_raw() {
    // An __index metamethod on the result would run outside the call's limits.
    let mut h = Host::new();
    h.create(
        "q",
        Some(&ret(
            r#"setmetatable({}, { __index = function() while true do end end })"#,
        )),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]), default_decision());
    assert!(h.last_ok());
}

// ---- on_failure fields ----

#[test]
fn on_failure_sees_every_field() {
    let mut h = Host::new();
    let script = r#"
function on_failure(msg)
  seen = table.concat({ msg.headers.k or "-", msg.id, msg.attempts, msg.queue, msg.error }, ",")
  if msg.attempts >= 3 then return { action = "dlq" } end
  return { action = "retry", delay_ms = 100 * msg.attempts }
end
function on_enqueue(msg)
  return { fairness_key = seen }
end"#;
    h.create("q", Some(script), Some(script)).unwrap();
    assert_eq!(
        h.fail("q", &[("k", "v")], 1),
        FailureDecision::Retry { delay_ms: 100 }
    );
    assert_eq!(
        h.enqueue("q", &[]).fairness_key.as_deref(),
        Some("v,0190a5f2-7b3c-7def-8123-456789abcdef,1,q,boom")
    );
    assert_eq!(
        h.fail("q", &[], 2),
        FailureDecision::Retry { delay_ms: 200 }
    );
    assert_eq!(h.fail("q", &[], 3), FailureDecision::DeadLetter);
}

#[test]
fn on_failure_missing_or_unknown_action_retries() {
    let mut h = Host::new();
    for table in [
        "{}",
        r#"{ action = "explode" }"#,
        r#"{ action = "DLQ" }"#,
        r#"{ action = 1 }"#,
        r#"{ delay_ms = -5 }"#,
        r#"{ delay_ms = "10" }"#,
    ] {
        let script = format!("function on_failure(msg) return {table} end");
        h.create("q", None, Some(&script)).unwrap();
        assert_eq!(
            h.fail("q", &[], 1),
            FailureDecision::Retry { delay_ms: 0 },
            "{table}"
        );
        assert!(h.last_ok());
    }
    h.create(
        "q",
        None,
        Some("function on_failure(msg) return { delay_ms = 12.9 } end"),
    )
    .unwrap();
    assert_eq!(h.fail("q", &[], 1), FailureDecision::Retry { delay_ms: 12 });
}

#[test]
fn a_queue_without_that_hook_gets_defaults_and_no_run() {
    let mut h = Host::new();
    h.create(
        "q",
        None,
        Some("function on_failure(m) return {action='dlq'} end"),
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]), default_decision());
    assert_eq!(h.hooks.last_run(), None);
    assert_eq!(h.enqueue("unknown", &[]), default_decision());
    assert_eq!(h.hooks.last_run(), None);
    h.create("dlq", None, None).unwrap();
    assert_eq!(h.hooks.stats(&QueueId::new("dlq")), None);
}

// ---- fila.get ----

#[test]
fn fila_get_reads_runtime_config_but_not_internal_entries() {
    let mut w = common::World::new();
    w.shard
        .set_config(w.now, "tenant.acme.weight", "7")
        .unwrap();
    // The broker's reserved namespace cannot be written through SetConfig at all; fila.get
    // hides it as well (defence in depth for entries the broker keeps there itself).
    assert!(
        w.shard
            .set_config(w.now, "__fila.apikey.1", "secret")
            .is_err()
    );
    let mut h = Host::new();
    h.config = w.shard.config().clone();
    let script = r#"
function on_enqueue(msg)
  return {
    weight = tonumber(fila.get("tenant." .. msg.headers.tenant .. ".weight")) or 1,
    fairness_key = tostring(fila.get("missing")) .. "," .. tostring(fila.get("__fila.apikey.1")),
  }
end"#;
    h.create("q", Some(script), None).unwrap();
    let d = h.enqueue("q", &[("tenant", "acme")]);
    assert_eq!(d.weight, 7);
    assert_eq!(d.fairness_key.as_deref(), Some("nil,nil"));
    // A changed config is seen by the next call.
    w.shard
        .set_config(w.now, "tenant.acme.weight", "9")
        .unwrap();
    h.config = w.shard.config().clone();
    assert_eq!(h.enqueue("q", &[("tenant", "acme")]).weight, 9);
}

#[test]
fn fila_get_outside_a_call_returns_nil() {
    // A script that keeps a reference to fila.get and calls it at load time.
    let mut h = Host::new();
    let script = r#"
local get = fila.get
local at_load = get("x")
function on_enqueue(msg) return { fairness_key = tostring(at_load) .. tostring(get("x")) } end"#;
    let mut w = common::World::new();
    w.shard.set_config(w.now, "x", "1").unwrap();
    h.config = w.shard.config().clone();
    h.create("q", Some(script), None).unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("11"));
}

// ---- compile ----

#[test]
fn syntax_errors_are_compile_errors_with_the_compilers_message() {
    let mut h = Host::new();
    let err = h
        .create("q", Some("function on_enqueue(msg) return { end"), None)
        .unwrap_err();
    assert!(err.message.contains("on_enqueue:1:"), "{}", err.message);
    assert!(err.message.contains("unexpected symbol"), "{}", err.message);
    let err = h.create("q", None, Some("x = = 1")).unwrap_err();
    assert!(err.message.contains("on_failure:1:"), "{}", err.message);
}

#[test]
fn a_script_must_define_its_function() {
    let mut h = Host::new();
    let err = h.create("q", Some("x = 1"), None).unwrap_err();
    assert!(err.message.contains("on_enqueue(msg)"), "{}", err.message);
    // Returning the function from the chunk is accepted too.
    h.create(
        "q",
        Some("return function(msg) return { fairness_key = 'r' } end"),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("r"));
}

#[test]
fn top_level_code_runs_under_the_limits_at_compile() {
    let mut h = Host::new();
    let err = h.create("q", Some("while true do end"), None).unwrap_err();
    assert!(err.message.contains("time limit"), "{}", err.message);
    let err = h
        .create("q", Some("local s = string.rep('x', 1e8)"), None)
        .unwrap_err();
    assert!(err.message.contains("memory limit"), "{}", err.message);
    let err = h.create("q", Some("error('nope')"), None).unwrap_err();
    assert!(err.message.contains("nope"), "{}", err.message);
    h.create("good", Some(GOOD), None).unwrap();
    assert_eq!(h.enqueue("good", &[]).weight, 2);
}

#[test]
fn bytecode_is_refused() {
    let mut h = Host::new();
    let err = h
        .create("q", Some("\x1bLua\x54\x00garbage"), None)
        .unwrap_err();
    assert!(!err.message.is_empty());
}

#[test]
fn recompiling_a_queue_replaces_its_environment() {
    let mut h = Host::new();
    h.create(
        "q",
        Some("n = 0 function on_enqueue(m) n = n + 1 return { fairness_key = tostring(n) } end"),
        None,
    )
    .unwrap();
    h.enqueue("q", &[]);
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("2"));
    h.hooks.forget(&QueueId::new("q"));
    assert_eq!(h.hooks.stats(&QueueId::new("q")), None);
    h.create(
        "q",
        Some("function on_enqueue(m) n = (n or 0) + 1 return { fairness_key = tostring(n) } end"),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("1"));
}

// ---- per-queue environments ----

#[test]
fn globals_persist_per_queue_and_never_leak_to_another_queue() {
    let mut h = Host::new();
    let counter = r#"
function on_enqueue(msg)
  counter = (counter or 0) + 1
  secret = "a's secret"
  string.upper = function() return "hijacked" end
  return { fairness_key = tostring(counter) }
end"#;
    let reader = r#"
function on_enqueue(msg)
  return { fairness_key = tostring(counter) .. "," .. tostring(secret) .. "," .. ("x"):upper() .. string.upper("y") }
end"#;
    h.create("a", Some(counter), None).unwrap();
    h.create("b", Some(reader), None).unwrap();
    assert_eq!(h.enqueue("a", &[]).fairness_key.as_deref(), Some("1"));
    assert_eq!(h.enqueue("a", &[]).fairness_key.as_deref(), Some("2"));
    assert_eq!(
        h.enqueue("b", &[]).fairness_key.as_deref(),
        Some("nil,nil,XY")
    );
    assert_eq!(h.enqueue("a", &[]).fairness_key.as_deref(), Some("3"));
}

#[test]
fn rawset_on_g_stays_in_the_queue() {
    let mut h = Host::new();
    h.create(
        "a",
        Some("function on_enqueue(m) rawset(_G, 'leak', 1) _G.leak2 = 2 return {} end"),
        None,
    )
    .unwrap();
    h.create(
        "b",
        Some(&ret("{ fairness_key = tostring(leak) .. tostring(leak2) }")),
        None,
    )
    .unwrap();
    h.enqueue("a", &[]);
    assert_eq!(h.enqueue("b", &[]).fairness_key.as_deref(), Some("nilnil"));
}

// ---- hostile scripts: time ----

#[test]
fn infinite_loop_is_stopped() {
    let err = contained("while true do end");
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn infinite_recursion_is_stopped() {
    let err = contained("local function f(n) return 1 + f(n + 1) end return f(1)");
    assert!(
        err.contains("stack overflow") || err.contains("memory limit") || err.contains("time"),
        "{err}"
    );
}

#[test]
fn pcall_cannot_swallow_a_timeout() {
    let err = contained("while true do pcall(function() while true do end end) end");
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn xpcall_cannot_swallow_a_timeout() {
    let err = contained(
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
    );
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn pcall_cannot_swallow_a_pattern_timeout() {
    let err = contained(
        r#"local s = string.rep("a", 40)
while true do pcall(string.find, s, "a*a*a*a*a*a*a*a*a*a*b") end"#,
    );
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn catastrophic_nested_quantifiers_are_stopped() {
    let err =
        contained(r#"return { fairness_key = string.rep("a", 40):find("a*a*a*a*a*a*a*a*a*a*b") }"#);
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn catastrophic_lazy_pattern_on_a_megabyte_is_stopped() {
    let script = r#"return { fairness_key = string.rep("a", 1e6):find(".-.-.-.-x") }"#;
    // With 1 MiB per call, building the subject already hits the memory limit (string.rep
    // needs a buffer and the string); with 4 MiB the matcher itself is stopped.
    let err = contained(script);
    assert!(err.contains("memory limit"), "{err}");
    let err = contained_with(
        LuaLimits {
            memory_limit_bytes: 4 * 1024 * 1024,
            ..LIMITS
        },
        script,
    );
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn catastrophic_match_gmatch_and_gsub_are_stopped() {
    for call in [
        r#"string.match(string.rep("a", 40), "a*a*a*a*a*a*a*a*a*a*b")"#,
        r#"for x in string.gmatch(string.rep("a", 40), "a*a*a*a*a*a*a*a*a*a*b") do end"#,
        r#"string.gsub(string.rep("a", 40), "a*a*a*a*a*a*a*a*a*a*b", "")"#,
        r#"("a"):rep(40):gsub("a-a-a-a-a-a-a-a-b", "%0")"#,
    ] {
        let err = contained(call);
        assert!(err.contains("time limit"), "{call}: {err}");
    }
}

#[test]
fn quadratic_capture_pattern_finishes() {
    // Lua quantifiers apply to one class, so `(a*)*b` means "a run, then a literal *b":
    // quadratic, and over in well under the limit.
    let mut h = Host::new();
    h.create(
        "q",
        Some(&ret(
            r#"{ fairness_key = tostring(string.find(string.rep("a", 30), "(a*)*b")) }"#,
        )),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("nil"));
    assert!(h.last_ok());
}

#[test]
fn huge_table_move_is_stopped() {
    let err = contained("table.move({}, 1, 1e12, 2)");
    assert!(err.contains("time limit"), "{err}");
}

#[test]
fn empty_string_rep_does_not_spin() {
    let mut h = Host::new();
    h.create(
        "q",
        Some(&ret(
            r#"{ fairness_key = "[" .. string.rep("", 1e15) .. ("x"):rep(0) .. "]" }"#,
        )),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("[]"));
}

// ---- hostile scripts: memory ----

#[test]
fn string_rep_memory_bomb_is_stopped() {
    let err = contained(r#"local s = string.rep("x", 1e9)"#);
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn doubling_string_is_stopped() {
    let err = contained(r#"local s = "x" while true do s = s .. s end"#);
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn growing_table_is_stopped() {
    let err =
        contained(r#"local t = {} while true do t[#t + 1] = string.rep("y", 1024) .. #t end"#);
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn pcall_cannot_swallow_a_memory_overrun() {
    let err = contained(
        r#"while true do pcall(function() local t = {} while true do t[#t + 1] = {} end end) end"#,
    );
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn gsub_output_is_bounded_by_the_memory_limit() {
    let err =
        contained(r#"local s = string.rep("a", 1e5) local r = s:gsub(".", string.rep("b", 100))"#);
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn globals_growing_across_calls_are_bounded_per_call() {
    let mut h = Host::new();
    h.create(
        "q",
        Some("hoard = {} function on_enqueue(m) hoard[#hoard + 1] = string.rep('z', 2e6) return {} end"),
        None,
    )
    .unwrap();
    h.enqueue("q", &[]);
    assert!(!h.last_ok());
}

// ---- sandbox: removed libraries ----

/// `body` must fail by itself: the hook returns a valid decision after it, so a call that
/// were allowed would leave a successful run (and `contained` asserts the run failed).
fn refused(body: &str) {
    let err = contained(&format!("{body}\nreturn {{}}"));
    assert!(!err.is_empty());
}

#[test]
fn os_is_absent() {
    refused("os.exit(1)");
}

#[test]
fn io_is_absent() {
    refused("io.open('/etc/passwd')");
}

#[test]
fn debug_is_absent() {
    refused("debug.sethook()");
}

#[test]
fn package_is_absent() {
    refused("local _ = package.loaded");
}

#[test]
fn require_is_absent() {
    refused("require('os')");
}

#[test]
fn load_is_absent() {
    refused("load('return 1')()");
}

#[test]
fn loadfile_is_absent() {
    refused("loadfile('/etc/passwd')()");
}

#[test]
fn dofile_is_absent() {
    refused("dofile('/etc/passwd')");
}

#[test]
fn collectgarbage_is_absent() {
    refused("collectgarbage('stop')");
}

#[test]
fn print_is_absent() {
    refused("print('hello')");
}

#[test]
fn coroutine_is_absent() {
    refused("coroutine.wrap(function() while true do end end)()");
}

#[test]
fn string_dump_is_absent() {
    refused("string.dump(on_enqueue)");
}

#[test]
fn setmetatable_on_a_string_is_refused() {
    refused(r#"setmetatable("", { __index = function() return "pwned" end })"#);
}

#[test]
fn the_string_metatable_is_protected() {
    refused(r#"getmetatable("").__index.upper = function() return "pwned" end"#);
    // Nothing changed for anyone: methods still work in a fresh queue.
    let mut h = Host::new();
    h.create(
        "evil",
        Some(&ret(r#"{ fairness_key = tostring(getmetatable("")) }"#)),
        None,
    )
    .unwrap();
    assert_eq!(
        h.enqueue("evil", &[]).fairness_key.as_deref(),
        Some("false")
    );
    h.create(
        "good",
        Some(&ret(r#"{ fairness_key = ("abc"):upper() }"#)),
        None,
    )
    .unwrap();
    assert_eq!(h.enqueue("good", &[]).fairness_key.as_deref(), Some("ABC"));
}

#[test]
fn gc_metamethods_are_refused() {
    refused("setmetatable({}, { __gc = function() while true do end end })");
}

#[test]
fn only_the_documented_globals_exist() {
    let mut h = Host::new();
    let script = r#"
function on_enqueue(msg)
  local names = {}
  for k in pairs(_G) do names[#names + 1] = k end
  table.sort(names)
  return { fairness_key = table.concat(names, " ") }
end"#;
    h.create("q", Some(script), None).unwrap();
    assert_eq!(
        h.enqueue("q", &[]).fairness_key.as_deref(),
        Some(
            "_G _VERSION assert error fila getmetatable ipairs math next on_enqueue pairs pcall \
             rawequal rawget rawlen rawset select setmetatable string table tonumber tostring \
             type utf8 xpcall"
        )
    );
}

// ---- non-table returns and errors ----

#[test]
fn non_table_returns_are_failures() {
    for value in ["nil", "42", "'key'", "true", "function() end", ""] {
        let mut h = Host::new();
        h.create("q", Some(&ret(value)), None).unwrap();
        assert_eq!(h.enqueue("q", &[]), default_decision(), "return {value}");
        assert!(!h.last_ok(), "return {value}");
        assert!(
            h.stats("q")
                .last_error
                .unwrap()
                .contains("expected a table"),
            "return {value}"
        );
        h.create(
            "f",
            None,
            Some(&format!("function on_failure(m) return {value} end")),
        )
        .unwrap();
        assert_eq!(h.fail("f", &[], 1), FailureDecision::Retry { delay_ms: 0 });
        assert!(!h.last_ok());
    }
}

#[test]
fn runtime_errors_are_failures() {
    let err = contained("error('deliberate')");
    assert!(err.contains("deliberate"), "{err}");
    let err = contained("error({ code = 1 })");
    assert!(!err.is_empty());
    let err = contained("return nil + 1");
    assert!(err.contains("arithmetic"), "{err}");
}

#[test]
fn pcall_still_works_for_ordinary_errors() {
    let mut h = Host::new();
    let script = r#"
function on_enqueue(msg)
  local ok, e = pcall(error, { code = 7 })
  local ok2, e2 = xpcall(function() error("x", 0) end, function(m) return "handled " .. m end)
  local ok3, a, b = pcall(function() return 1, 2 end)
  return { fairness_key = tostring(ok) .. e.code .. tostring(ok2) .. e2 .. tostring(ok3) .. a .. b }
end"#;
    h.create("q", Some(script), None).unwrap();
    assert_eq!(
        h.enqueue("q", &[]).fairness_key.as_deref(),
        Some("false7falsehandled xtrue12")
    );
}

#[test]
fn string_library_still_behaves_like_lua() {
    let mut h = Host::new();
    let script = r##"
function on_enqueue(msg)
  local out = {}
  local function add(...) for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end end
  add(("hello world"):find("o w"))
  add(("hello world"):find("l+"))
  add(string.find("a.b", ".", 1, true))
  add(string.find("abc", "b", -1))
  add(string.match("key=val", "(%w+)=(%w+)"))
  add(string.match("  trim  ", "^%s*(.-)%s*$"))
  add(string.match("hello", "()ll()"))
  for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do add(k, v) end
  add(string.gsub("hello world", "o", "0"))
  add(string.gsub("hello world", "(%w+)", "<%1>"))
  add(string.gsub("abc", "%w", "%0%0", 2))
  add(string.gsub("$name is $age", "%$(%w+)", { name = "bob", age = 42 }))
  add(string.gsub("abc", ".", function(c) return c:upper() end))
  add(string.gsub("abc", "", "-"))
  add(string.format("%d-%s", 5, "x"), ("x"):rep(3, ","), #utf8.char(228))
  add(pcall(string.find, "a", "[a"))
  return { fairness_key = table.concat(out, " ") }
end"##;
    h.create("q", Some(script), None).unwrap();
    assert_eq!(
        h.enqueue("q", &[]).fairness_key.as_deref(),
        Some(
            "5 7 3 4 2 2 nil key val trim 3 5 a 1 b 2 hell0 w0rld 2 <hello> <world> 2 \
             aabbc 2 bob is 42 2 ABC 3 -a-b-c- 4 5-x x,x,x 2 false malformed pattern (missing ']')"
        )
    );
}

// ---- circuit breaker ----

#[test]
fn breaker_trips_on_the_threshold_th_consecutive_failure_and_bypasses_during_cooldown() {
    let mut h = Host::new();
    h.create(
        "q",
        Some("function on_enqueue(m) calls = (calls or 0) + 1 error('always ' .. calls) end"),
        None,
    )
    .unwrap();
    for n in 1..=3 {
        assert_eq!(h.enqueue("q", &[]), default_decision());
        match h.hooks.last_run() {
            Some(HookRun::Ran { ok, tripped, .. }) => {
                assert!(!ok);
                assert_eq!(tripped, n == 3, "call {n}");
            }
            other => panic!("{other:?}"),
        }
    }
    let stats = h.stats("q");
    assert!(stats.breaker_open);
    assert_eq!((stats.runs, stats.errors, stats.breaker_trips), (3, 3, 1));
    // Bypassed during the cooldown: the script does not run.
    h.clock.advance_ms(9_000);
    assert_eq!(h.enqueue("q", &[]), default_decision());
    assert_eq!(h.hooks.last_run(), Some(HookRun::Bypassed));
    let stats = h.stats("q");
    assert_eq!((stats.runs, stats.bypassed), (3, 1));
    // After the cooldown the count restarts at zero and the script runs again.
    h.clock.advance_ms(1_000);
    assert!(!h.stats("q").breaker_open);
    h.enqueue("q", &[]);
    match h.hooks.last_run() {
        Some(HookRun::Ran { ok, tripped, .. }) => assert!(!ok && !tripped),
        other => panic!("{other:?}"),
    }
    assert!(h.stats("q").last_error.unwrap().contains("always 4"));
    assert_eq!(h.stats("q").consecutive_failures, 1);
    h.enqueue("q", &[]);
    h.enqueue("q", &[]);
    assert!(h.stats("q").breaker_open);
    assert_eq!(h.stats("q").breaker_trips, 2);
}

#[test]
fn success_resets_the_count() {
    let mut h = Host::new();
    h.create(
        "q",
        Some("function on_enqueue(m) if m.headers.fail then error('x') end return { fairness_key = 'ok' } end"),
        None,
    )
    .unwrap();
    let fail = [("fail", "1")];
    h.enqueue("q", &fail);
    h.enqueue("q", &fail);
    assert_eq!(h.enqueue("q", &[]).fairness_key.as_deref(), Some("ok"));
    assert_eq!(h.stats("q").consecutive_failures, 0);
    h.enqueue("q", &fail);
    h.enqueue("q", &fail);
    assert!(!h.stats("q").breaker_open);
    h.enqueue("q", &fail);
    assert!(h.stats("q").breaker_open);
}

#[test]
fn the_breaker_covers_both_hooks_of_a_queue_and_only_that_queue() {
    let mut h = Host::new();
    let script = "function on_enqueue(m) error('e') end function on_failure(m) error('f') end";
    h.create("q", Some(script), Some(script)).unwrap();
    h.create("good", Some(GOOD), None).unwrap();
    h.enqueue("q", &[]);
    h.fail("q", &[], 1);
    h.enqueue("q", &[]);
    assert!(h.stats("q").breaker_open);
    assert_eq!(h.fail("q", &[], 1), FailureDecision::Retry { delay_ms: 0 });
    assert_eq!(h.hooks.last_run(), Some(HookRun::Bypassed));
    assert_eq!(h.enqueue("good", &[]).weight, 2);
    assert!(h.last_ok());
}

#[test]
fn timeouts_trip_the_breaker_too() {
    let mut h = Host::new();
    h.create(
        "q",
        Some("function on_enqueue(m) while true do end end"),
        None,
    )
    .unwrap();
    for _ in 0..3 {
        h.enqueue("q", &[]);
    }
    assert!(h.stats("q").breaker_open);
    h.enqueue("q", &[]);
    assert_eq!(h.hooks.last_run(), Some(HookRun::Bypassed));
}

#[test]
fn threshold_zero_never_trips() {
    let mut h = Host::with_limits(LuaLimits {
        circuit_breaker_threshold: 0,
        ..LIMITS
    });
    h.create("q", Some("function on_enqueue(m) error('e') end"), None)
        .unwrap();
    for _ in 0..10 {
        h.enqueue("q", &[]);
    }
    assert!(!h.stats("q").breaker_open);
    assert_eq!(h.stats("q").runs, 10);
}

// ---- dry run ----

#[test]
fn dry_run_reports_decisions_and_errors() {
    let clock = FakeClock::new(100);
    let config = RuntimeConfig::new();
    let msg = DryRunMessage {
        queue: "orders".to_string(),
        headers: vec![("tenant".to_string(), "acme".to_string())],
        payload_size: 10,
        attempts: 3,
        error: "boom".to_string(),
        ..DryRunMessage::default()
    };
    let outcome = dry_run(
        LIMITS,
        clock.boxed(),
        &config,
        HookKind::OnEnqueue,
        "function on_enqueue(m) return { fairness_key = m.headers.tenant, weight = m.payload_size } end",
        &msg,
    );
    assert_eq!(
        outcome,
        Ok(DryRunOutcome::Enqueue(EnqueueDecision {
            fairness_key: Some("acme".to_string()),
            weight: 10,
            throttle_keys: vec![],
        }))
    );
    let outcome = dry_run(
        LIMITS,
        clock.boxed(),
        &config,
        HookKind::OnFailure,
        "function on_failure(m) if m.attempts >= 3 and m.error == 'boom' then return { action = 'dlq' } end return {} end",
        &msg,
    );
    assert_eq!(
        outcome,
        Ok(DryRunOutcome::Failure(FailureDecision::DeadLetter))
    );
    let err = dry_run(
        LIMITS,
        clock.boxed(),
        &config,
        HookKind::OnEnqueue,
        "function on_enqueue(m) while true do end end",
        &msg,
    )
    .unwrap_err();
    assert!(err.contains("time limit of 10 ms"), "{err}");
    let err = dry_run(
        LIMITS,
        clock.boxed(),
        &config,
        HookKind::OnEnqueue,
        "function on_enqueue(m",
        &msg,
    )
    .unwrap_err();
    assert!(err.contains("on_enqueue:1:"), "{err}");
    let err = dry_run(
        LIMITS,
        clock.boxed(),
        &config,
        HookKind::OnEnqueue,
        "function on_enqueue(m) return 1 end",
        &msg,
    )
    .unwrap_err();
    assert!(err.contains("expected a table"), "{err}");
}

// ---- through the shard ----

fn lua_shard(clock: &FakeClock) -> Shard<MemoryStorage> {
    let options = ShardOptions {
        seed: 7,
        quantum: 1,
        ..ShardOptions::default()
    };
    let hooks = LuaHooks::new(LIMITS, clock.boxed()).unwrap();
    Shard::new(MemoryStorage::new(), options, Box::new(hooks))
}

fn item(queue: &str, headers: &[(&str, &str)]) -> EnqueueItem {
    EnqueueItem {
        queue: queue.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        payload: Bytes::from_static(b"payload"),
    }
}

const TENANT_HOOK: &str = r#"
function on_enqueue(msg)
  local tenant = msg.headers["x-tenant"] or "anonymous"
  return {
    fairness_key = tenant,
    weight = tonumber(msg.headers["x-weight"]) or 1,
    throttle_keys = { "tenant:" .. tenant },
  }
end"#;

const RETRY_HOOK: &str = r#"
function on_failure(msg)
  if msg.attempts >= 3 then return { action = "dlq" } end
  return { action = "retry", delay_ms = 1000 * msg.attempts }
end"#;

#[test]
fn end_to_end_fairness_weight_delay_and_dead_letter() {
    let clock = FakeClock::new(1);
    let mut shard = lua_shard(&clock);
    let mut now = Time::from_millis(T0_MS);
    let spec = QueueSpec {
        name: "jobs".to_string(),
        scripts: QueueScripts {
            on_enqueue: Some(TENANT_HOOK.to_string()),
            on_failure: Some(RETRY_HOOK.to_string()),
        },
        visibility_timeout_ms: 60_000,
    };
    shard.create_queue(now, spec).unwrap();
    let bad = QueueSpec {
        name: "broken".to_string(),
        scripts: QueueScripts {
            on_enqueue: Some("function on_enqueue(".to_string()),
            on_failure: None,
        },
        visibility_timeout_ms: 0,
    };
    assert!(matches!(
        shard.create_queue(now, bad),
        Err(CreateQueueError::HookCompile(_))
    ));
    assert_eq!(
        shard.hook_stats("broken"),
        None,
        "a refused queue leaves nothing"
    );
    shard.commit().unwrap();

    let mut items = Vec::new();
    for _ in 0..6 {
        items.push(item("jobs", &[("x-tenant", "big"), ("x-weight", "2")]));
    }
    for _ in 0..6 {
        items.push(item("jobs", &[("x-tenant", "small")]));
    }
    assert!(shard.enqueue(now, items).iter().all(Result::is_ok));
    shard.commit().unwrap();
    let stats = shard.stats("jobs").unwrap();
    let weight = |key: &str| {
        stats
            .per_key
            .iter()
            .find(|k| k.key.as_str() == key)
            .unwrap()
            .weight
    };
    assert_eq!((weight("big"), weight("small")), (2, 1));

    // Deliveries follow the weights: 2 of "big" per 1 of "small".
    shard
        .register_consumer(now, "jobs", ConnectionId(1), 1_000)
        .unwrap();
    let mut out = Vec::new();
    shard.poll_deliveries(now, 6, &mut out);
    shard.commit().unwrap();
    let big = out
        .iter()
        .filter(|d| d.fairness_key.as_str() == "big")
        .count();
    assert_eq!(
        big,
        4,
        "{:?}",
        out.iter()
            .map(|d| d.fairness_key.as_str())
            .collect::<Vec<_>>()
    );
    assert!(out.iter().all(|d| {
        d.throttle_keys
            .iter()
            .any(|t| t.as_str().starts_with("tenant:"))
    }));

    // Nack one message: attempt 1 → retry after 1 s, invisible until then.
    let victim = out[0].message_id;
    for d in &out[1..] {
        let ack = AckItem {
            queue: "jobs".to_string(),
            id: d.message_id,
        };
        shard.ack(now, ConnectionId(1), &[ack]).remove(0).unwrap();
    }
    let rest = {
        let mut rest = Vec::new();
        shard.poll_deliveries(now, 100, &mut rest);
        rest
    };
    for d in &rest {
        let ack = AckItem {
            queue: "jobs".to_string(),
            id: d.message_id,
        };
        shard.ack(now, ConnectionId(1), &[ack]).remove(0).unwrap();
    }
    shard.commit().unwrap();
    let nack = |shard: &mut Shard<MemoryStorage>, now: Time| {
        let item = NackItem {
            queue: "jobs".to_string(),
            id: victim,
            error: "handler failed".to_string(),
        };
        shard.nack(now, ConnectionId(1), &[item]).remove(0).unwrap();
        shard.commit().unwrap();
    };
    for attempt in 1..=2u64 {
        nack(&mut shard, now);
        let mut out = Vec::new();
        now = now.plus_millis(1_000 * attempt - 1);
        shard.tick(now);
        shard.poll_deliveries(now, 10, &mut out);
        assert!(
            out.is_empty(),
            "delivered before its delay (attempt {attempt})"
        );
        now = now.plus_millis(1);
        shard.tick(now);
        shard.poll_deliveries(now, 10, &mut out);
        shard.commit().unwrap();
        assert_eq!(
            out.len(),
            1,
            "redelivered after its delay (attempt {attempt})"
        );
        assert_eq!(out[0].message_id, victim);
    }
    // Third failure: dead-lettered.
    nack(&mut shard, now);
    assert_eq!(shard.stats("jobs").unwrap().depth, 0);
    let dlq = shard.inspect_queue("jobs.dlq").unwrap();
    assert_eq!(dlq.messages.len(), 1);
    assert_eq!(dlq.messages[0].id, victim);
    let hook = shard.hook_stats("jobs").unwrap();
    assert_eq!(hook.errors, 0);
    assert_eq!(hook.runs, 12 + 3);
    shard.check_invariants().unwrap();
}

#[test]
fn a_failing_hook_never_fails_the_enqueue() {
    let clock = FakeClock::new(100);
    let mut shard = lua_shard(&clock);
    let now = Time::from_millis(T0_MS);
    let spec = QueueSpec {
        name: "q".to_string(),
        scripts: QueueScripts {
            on_enqueue: Some("function on_enqueue(m) while true do end end".to_string()),
            on_failure: None,
        },
        visibility_timeout_ms: 0,
    };
    shard.create_queue(now, spec).unwrap();
    let results = shard.enqueue(
        now,
        vec![
            item("q", &[]),
            item("q", &[]),
            item("q", &[]),
            item("q", &[]),
        ],
    );
    assert!(results.iter().all(Result::is_ok));
    let hook = shard.hook_stats("q").unwrap();
    assert_eq!((hook.runs, hook.errors, hook.bypassed), (3, 3, 1));
    assert!(hook.breaker_open);
    let stats = shard.stats("q").unwrap();
    assert_eq!(stats.per_key.len(), 1);
    assert_eq!(stats.per_key[0].key.as_str(), "default");
}

#[test]
fn a_script_that_no_longer_compiles_at_recovery_is_reported_and_bypassed() {
    // Written by a host that accepted the script (HeaderHooks accepts anything but "bad").
    let mut w = common::World::new();
    let spec = QueueSpec {
        name: "q".to_string(),
        scripts: QueueScripts {
            on_enqueue: Some("function on_enqueue(msg) return { end".to_string()),
            on_failure: None,
        },
        visibility_timeout_ms: 0,
    };
    w.shard.create_queue(w.now, spec).unwrap();
    w.shard.commit().unwrap();
    let clock = FakeClock::new(100);
    let hooks = LuaHooks::new(LIMITS, clock.boxed()).unwrap();
    let (mut shard, report) = Shard::open(
        w.shard.storage().clone(),
        ShardOptions::default(),
        Box::new(hooks),
        w.now,
    )
    .unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].reason.contains("runs without them"));
    assert!(report.warnings[0].reason.contains("on_enqueue:1:"));
    let hook = shard.hook_stats("q").unwrap();
    assert!(hook.compile_error.unwrap().contains("unexpected symbol"));
    assert!(shard.enqueue(w.now, vec![item("q", &[])])[0].is_ok());
    assert_eq!(shard.stats("q").unwrap().depth, 1);
}

#[test]
fn hooks_are_recompiled_at_recovery() {
    let clock = FakeClock::new(1);
    let mut shard = lua_shard(&clock);
    let now = Time::from_millis(T0_MS);
    let spec = QueueSpec {
        name: "q".to_string(),
        scripts: QueueScripts {
            on_enqueue: Some(TENANT_HOOK.to_string()),
            on_failure: None,
        },
        visibility_timeout_ms: 0,
    };
    shard.create_queue(now, spec).unwrap();
    shard.commit().unwrap();
    let hooks = LuaHooks::new(LIMITS, clock.boxed()).unwrap();
    let (mut shard, report) = Shard::open(
        shard.storage().clone(),
        ShardOptions::default(),
        Box::new(hooks),
        now,
    )
    .unwrap();
    assert!(report.warnings.is_empty());
    shard
        .enqueue(now, vec![item("q", &[("x-tenant", "acme")])])
        .remove(0)
        .unwrap();
    assert_eq!(shard.stats("q").unwrap().per_key[0].key.as_str(), "acme");
}
