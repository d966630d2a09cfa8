//! The sandbox: one Lua 5.4 state with `string`, `table`, `math` and `utf8` only, the base
//! functions that cannot escape, and per-queue environments.
//!
//! * Removed: `os`, `io`, `debug`, `package`, `require`, `load`, `loadfile`, `dofile`,
//!   `collectgarbage`, `print`, `warn`, `coroutine` (coroutines escape per-thread hooks) and
//!   `string.dump` (bytecode can crash the VM; chunks are loaded in text mode only).
//! * Replaced: `string.find`, `match`, `gmatch`, `gsub` (a Rust port of Lua's matcher with a
//!   step budget, [`super::pattern`]); `string.rep` (the empty-string case loops in C without
//!   allocating, so no limit would stop it); `table.move` (done in chunks so the hook gets to
//!   run); `pcall`/`xpcall` (re-raise a timeout or memory overrun instead of returning it);
//!   `setmetatable` (refuses `__gc`, whose finalisers would run outside any call's limits).
//! * The string metatable is locked (`getmetatable("")` is `false`) and its `__index` is a
//!   private copy of the safe string table, so no script can change string methods.
//! * Each queue gets its own environment table with its own copies of the library tables:
//!   what one queue's script changes is invisible to every other queue.

use std::rc::Rc;

use mlua::{
    FromLuaMulti, Function, IntoLuaMulti, Lua, LuaOptions, LuaString, MultiValue, StdLib, Table,
    Value,
};

use super::limiter::{Limiter, StepBudget, Trip, trip};
use super::pattern::{CapValue, MatchError, Matcher, no_specials, plain_find, start_position};

/// Base functions a script may use as they are.
const BASE_GLOBALS: &[&str] = &[
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "select",
    "tonumber",
    "tostring",
    "type",
    "_VERSION",
];

/// Library tables copied into every environment.
const LIBRARIES: &[&str] = &["string", "table", "math", "utf8"];

/// Written in Lua, run once with the real globals; returns the wrappers.
const PRELUDE: &str = r#"
local guard, R = ...
local raw_pcall, raw_xpcall, raw_setmetatable = pcall, xpcall, setmetatable
local raw_move, tointeger, rawget, type, error = table.move, math.tointeger, rawget, type, error
local W = {}

local function check(ok, ...)
  if not ok then guard((...)) end
  return ok, ...
end

function W.pcall(f, ...)
  return check(raw_pcall(f, ...))
end

function W.xpcall(f, handler, ...)
  if type(handler) ~= "function" then
    error("bad argument #2 to 'xpcall' (function expected)", 2)
  end
  return check(raw_xpcall(f, function(e) guard(e) return handler(e) end, ...))
end

function W.setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not allowed in hooks", 2)
  end
  return raw_setmetatable(t, mt)
end

local CHUNK = 4096
function W.move(a1, f, e, t, a2)
  if a2 == nil then a2 = a1 end
  local fi, ei, ti = tointeger(f), tointeger(e), tointeger(t)
  if fi == nil or ei == nil or ti == nil then
    error("bad argument to 'move' (number has no integer representation)", 2)
  end
  local n = ei - fi
  if n < CHUNK then
    return raw_move(a1, fi, ei, ti, a2)
  end
  if ti > ei or ti <= fi or a1 ~= a2 then
    local i = 0
    while i <= n do
      local j = i + CHUNK - 1
      if j > n then j = n end
      raw_move(a1, fi + i, fi + j, ti + i, a2)
      i = j + 1
    end
  else
    local j = n
    while j >= 0 do
      local i = j - CHUNK + 1
      if i < 0 then i = 0 end
      raw_move(a1, fi + i, fi + j, ti + i, a2)
      j = i - 1
    end
  end
  return a2
end

-- The Rust string functions answer (true, results...) or (false, message) so that ordinary
-- errors are plain strings, as Lua's own functions raise them.
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
local raw_find, raw_match, raw_gsub, raw_rep, raw_gmatch = R.find, R.match, R.gsub, R.rep, R.gmatch
function W.find(...) return unwrap(raw_find(...)) end
function W.match(...) return unwrap(raw_match(...)) end
function W.gsub(...) return unwrap(raw_gsub(...)) end
function W.rep(...) return unwrap(raw_rep(...)) end
function W.gmatch(...)
  local iter = unwrap(raw_gmatch(...))
  return function() return unwrap(iter()) end
end

return W
"#;

/// Locks the string metatable; run with the real globals.
const LOCK_STRINGS: &str = r#"
local safe = ...
local mt = getmetatable("")
mt.__index = safe
mt.__metatable = false
"#;

/// A Rust function for the prelude's `unwrap`: `(true, results...)`, or `(false, message)`
/// for an ordinary error. A timeout or memory overrun is raised as it is (never a value).
fn protected<A, R, F>(limiter: &Rc<Limiter>, lua: &Lua, body: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + 'static,
{
    let limiter = Rc::clone(limiter);
    lua.create_function(move |lua, args: MultiValue| {
        let result = A::from_lua_multi(args, lua)
            .and_then(|a| body(lua, a))
            .and_then(|r| r.into_lua_multi(lua));
        to_protocol(&limiter, lua, result)
    })
}

/// `(true, values...)` / `(false, message)`; trips stay errors.
fn to_protocol(
    limiter: &Rc<Limiter>,
    lua: &Lua,
    result: mlua::Result<MultiValue>,
) -> mlua::Result<MultiValue> {
    match result {
        Ok(mut values) => {
            values.push_front(Value::Boolean(true));
            Ok(values)
        }
        Err(_) if limiter.tripped().is_some() => Err(trip(
            limiter,
            lua,
            limiter.tripped().unwrap_or(Trip::Timeout),
        )),
        Err(err) if super::is_memory_error(&err) => Err(trip(limiter, lua, Trip::Memory)),
        Err(err) => {
            let mut values = MultiValue::new();
            values.push_back(Value::Boolean(false));
            values.push_back(Value::String(lua.create_string(super::error_text(&err))?));
            Ok(values)
        }
    }
}

/// The shared, read-only pieces every environment is built from.
pub(crate) struct Sandbox {
    base: Vec<(&'static str, Value)>,
    libraries: Vec<(&'static str, Table)>,
}

fn memory_error(limiter: &Rc<Limiter>, lua: &Lua, err: mlua::Error) -> mlua::Error {
    match err {
        mlua::Error::MemoryError(_) => trip(limiter, lua, Trip::Memory),
        other => other,
    }
}

fn match_error(limiter: &Rc<Limiter>, lua: &Lua, err: MatchError) -> mlua::Error {
    match err {
        MatchError::Pattern(message) => mlua::Error::runtime(message),
        MatchError::Budget => trip(limiter, lua, limiter.tripped().unwrap_or(Trip::Timeout)),
    }
}

fn cap_value(lua: &Lua, src: &[u8], cap: CapValue) -> mlua::Result<Value> {
    match cap {
        CapValue::Text(s, e) => Ok(Value::String(
            lua.create_string(src.get(s..e).unwrap_or_default())?,
        )),
        CapValue::Position(p) => Ok(Value::Integer(i64::try_from(p).unwrap_or(i64::MAX))),
    }
}

fn push_captures<B: super::pattern::Budget>(
    lua: &Lua,
    m: &Matcher<'_, B>,
    src: &[u8],
    s: usize,
    e: usize,
    whole: bool,
    out: &mut MultiValue,
) -> Result<(), mlua::Error> {
    for i in 0..m.capture_count(whole) {
        let cap = m.capture(i, s, e).map_err(|err| match err {
            MatchError::Pattern(message) => mlua::Error::runtime(message),
            MatchError::Budget => Trip::Timeout.error(),
        })?;
        out.push_back(cap_value(lua, src, cap)?);
    }
    Ok(())
}

/// `string.find` (`find` true) and `string.match`.
fn find_aux(
    limiter: &Rc<Limiter>,
    lua: &Lua,
    (subject, pattern, init, plain): (LuaString, LuaString, Option<i64>, Option<Value>),
    find: bool,
) -> mlua::Result<MultiValue> {
    let src_bytes = subject.as_bytes();
    let pat_bytes = pattern.as_bytes();
    let src: &[u8] = &src_bytes;
    let pat: &[u8] = &pat_bytes;
    let budget = StepBudget(limiter);
    let mut out = MultiValue::new();
    let init = start_position(init.unwrap_or(1), src.len()) - 1;
    if init > src.len() {
        out.push_back(Value::Nil);
        return Ok(out);
    }
    let plain = plain.is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || no_specials(pat)) {
        match plain_find(src, pat, init, &budget).map_err(|e| match_error(limiter, lua, e))? {
            Some(start) => {
                out.push_back(Value::Integer(i64::try_from(start + 1).unwrap_or(0)));
                out.push_back(Value::Integer(
                    i64::try_from(start + pat.len()).unwrap_or(0),
                ));
            }
            None => out.push_back(Value::Nil),
        }
        return Ok(out);
    }
    let (anchor, p) = if pat.first() == Some(&b'^') {
        (true, 1)
    } else {
        (false, 0)
    };
    let mut m = Matcher::new(src, pat, &budget);
    let mut s = init;
    loop {
        m.reset();
        if let Some(e) = m.do_match(s, p).map_err(|e| match_error(limiter, lua, e))? {
            if find {
                out.push_back(Value::Integer(i64::try_from(s + 1).unwrap_or(0)));
                out.push_back(Value::Integer(i64::try_from(e).unwrap_or(0)));
                push_captures(lua, &m, src, s, e, false, &mut out)?;
            } else {
                push_captures(lua, &m, src, s, e, true, &mut out)?;
            }
            return Ok(out);
        }
        s += 1;
        if anchor || s > src.len() {
            break;
        }
    }
    out.push_back(Value::Nil);
    Ok(out)
}

fn gmatch(
    limiter: &Rc<Limiter>,
    lua: &Lua,
    (subject, pattern, init): (LuaString, LuaString, Option<i64>),
) -> mlua::Result<Function> {
    let len = subject.as_bytes().len();
    let mut pos = start_position(init.unwrap_or(1), len) - 1;
    if pos > len {
        pos = len + 1;
    }
    let mut last_match: Option<usize> = None;
    let limiter = Rc::clone(limiter);
    lua.create_function_mut(move |lua, ()| {
        let src_bytes = subject.as_bytes();
        let pat_bytes = pattern.as_bytes();
        let src: &[u8] = &src_bytes;
        let budget = StepBudget(&limiter);
        let mut m = Matcher::new(src, &pat_bytes, &budget);
        let mut out = MultiValue::new();
        let mut result = Ok(());
        while pos <= src.len() {
            m.reset();
            match m.do_match(pos, 0) {
                Err(e) => {
                    result = Err(match_error(&limiter, lua, e));
                    break;
                }
                Ok(Some(e)) if Some(e) != last_match => {
                    let s = pos;
                    pos = e;
                    last_match = Some(e);
                    result = push_captures(lua, &m, src, s, e, true, &mut out);
                    return to_protocol(&limiter, lua, result.map(|()| out));
                }
                Ok(_) => pos += 1,
            }
        }
        if result.is_ok() {
            out.push_back(Value::Nil);
        }
        to_protocol(&limiter, lua, result.map(|()| out))
    })
}

/// Appends, refusing to grow a Rust-side buffer past the per-call memory limit.
fn append(limiter: &Rc<Limiter>, lua: &Lua, buf: &mut Vec<u8>, bytes: &[u8]) -> mlua::Result<()> {
    if buf.len().saturating_add(bytes.len()) > limiter.buffer_max {
        return Err(trip(limiter, lua, Trip::Memory));
    }
    buf.extend_from_slice(bytes);
    Ok(())
}

fn gsub(
    limiter: &Rc<Limiter>,
    lua: &Lua,
    (subject, pattern, repl, max_n): (LuaString, LuaString, Value, Option<i64>),
) -> mlua::Result<(LuaString, i64)> {
    let src_bytes = subject.as_bytes();
    let pat_bytes = pattern.as_bytes();
    let src: &[u8] = &src_bytes;
    let pat: &[u8] = &pat_bytes;
    let repl_text = match &repl {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(repl.clone())?
            .map(|s| s.as_bytes().to_vec()),
        Value::Table(_) | Value::Function(_) => None,
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )));
        }
    };
    let max_n = max_n.unwrap_or(i64::MAX);
    let (anchor, p) = if pat.first() == Some(&b'^') {
        (true, 1)
    } else {
        (false, 0)
    };
    let budget = StepBudget(limiter);
    let mut m = Matcher::new(src, pat, &budget);
    let mut out: Vec<u8> = Vec::new();
    let mut s = 0usize;
    let mut last_match: Option<usize> = None;
    let mut n: i64 = 0;
    while n < max_n {
        m.reset();
        let found = m.do_match(s, p).map_err(|e| match_error(limiter, lua, e))?;
        if let Some(e) = found
            && Some(e) != last_match
        {
            n += 1;
            let whole = src.get(s..e).unwrap_or_default();
            match &repl_text {
                Some(text) => {
                    let mut i = 0;
                    while let Some(&c) = text.get(i) {
                        i += 1;
                        if c != b'%' {
                            append(limiter, lua, &mut out, &[c])?;
                            continue;
                        }
                        let d = text.get(i).copied();
                        i += 1;
                        match d {
                            Some(b'%') => append(limiter, lua, &mut out, b"%")?,
                            Some(b'0') => append(limiter, lua, &mut out, whole)?,
                            Some(d) if d.is_ascii_digit() => {
                                let cap = m
                                    .capture(usize::from(d - b'1'), s, e)
                                    .map_err(|err| match_error(limiter, lua, err))?;
                                match cap {
                                    CapValue::Text(a, b) => append(
                                        limiter,
                                        lua,
                                        &mut out,
                                        src.get(a..b).unwrap_or_default(),
                                    )?,
                                    CapValue::Position(pos) => {
                                        append(limiter, lua, &mut out, pos.to_string().as_bytes())?
                                    }
                                }
                            }
                            _ => {
                                return Err(mlua::Error::runtime(
                                    "invalid use of '%' in replacement string",
                                ));
                            }
                        }
                    }
                }
                None => {
                    let value = match &repl {
                        Value::Table(t) => {
                            let key = cap_value(
                                lua,
                                src,
                                m.capture(0, s, e)
                                    .map_err(|err| match_error(limiter, lua, err))?,
                            )?;
                            t.get::<Value>(key)?
                        }
                        Value::Function(f) => {
                            let mut args = MultiValue::new();
                            push_captures(lua, &m, src, s, e, true, &mut args)?;
                            f.call::<Value>(args)?
                        }
                        _ => Value::Nil,
                    };
                    match value {
                        Value::Nil | Value::Boolean(false) => {
                            append(limiter, lua, &mut out, whole)?
                        }
                        Value::String(text) => append(limiter, lua, &mut out, &text.as_bytes())?,
                        v @ (Value::Integer(_) | Value::Number(_)) => {
                            if let Some(text) = lua.coerce_string(v)? {
                                append(limiter, lua, &mut out, &text.as_bytes())?;
                            }
                        }
                        other => {
                            return Err(mlua::Error::runtime(format!(
                                "invalid replacement value (a {})",
                                other.type_name()
                            )));
                        }
                    }
                }
            }
            s = e;
            last_match = Some(e);
        } else if let Some(&c) = src.get(s) {
            append(limiter, lua, &mut out, &[c])?;
            s += 1;
        } else {
            break;
        }
        if anchor {
            break;
        }
    }
    append(limiter, lua, &mut out, src.get(s..).unwrap_or_default())?;
    let result = lua
        .create_string(&out)
        .map_err(|e| memory_error(limiter, lua, e))?;
    Ok((result, n))
}

impl Sandbox {
    /// Sets up `lua` (created with the four libraries) and returns the environment builder.
    pub(crate) fn install(lua: &Lua, limiter: &Rc<Limiter>) -> mlua::Result<Sandbox> {
        let globals = lua.globals();
        let string: Table = globals.get("string")?;
        let raw_rep: Function = string.get("rep")?;

        let guard_limiter = Rc::clone(limiter);
        let guard = lua.create_function(move |lua, err: Value| {
            if let Some(kind) = guard_limiter.tripped() {
                return Err(kind.error());
            }
            if let Value::String(text) = &err
                && text.as_bytes().as_ref() == b"not enough memory"
            {
                return Err(trip(&guard_limiter, lua, Trip::Memory));
            }
            Ok(())
        })?;
        let raw = lua.create_table()?;
        let rep_inner = raw_rep.clone();
        raw.raw_set(
            "rep",
            protected(
                limiter,
                lua,
                move |lua, (s, n, sep): (LuaString, i64, Option<LuaString>)| {
                    let sep_len = sep.as_ref().map_or(0, |s| s.as_bytes().len());
                    if n <= 0 || (s.as_bytes().is_empty() && sep_len == 0) {
                        return lua.create_string("");
                    }
                    rep_inner.call::<LuaString>((s, n, sep))
                },
            )?,
        )?;
        let l = Rc::clone(limiter);
        raw.raw_set(
            "find",
            protected(limiter, lua, move |lua, args| find_aux(&l, lua, args, true))?,
        )?;
        let l = Rc::clone(limiter);
        raw.raw_set(
            "match",
            protected(limiter, lua, move |lua, args| {
                find_aux(&l, lua, args, false)
            })?,
        )?;
        let l = Rc::clone(limiter);
        raw.raw_set(
            "gmatch",
            protected(limiter, lua, move |lua, args| gmatch(&l, lua, args))?,
        )?;
        let l = Rc::clone(limiter);
        raw.raw_set(
            "gsub",
            protected(limiter, lua, move |lua, args| gsub(&l, lua, args))?,
        )?;
        let wrappers: Table = lua
            .load(PRELUDE)
            .set_name("=fila.prelude")
            .call((guard, raw))?;

        // The safe string library: a copy without `dump`, with the budgeted matchers.
        let safe_string = lua.create_table()?;
        for pair in string.pairs::<Value, Value>() {
            let (k, v) = pair?;
            safe_string.raw_set(k, v)?;
        }
        safe_string.raw_set("dump", Value::Nil)?;
        for name in ["rep", "find", "match", "gmatch", "gsub"] {
            safe_string.raw_set(name, wrappers.get::<Value>(name)?)?;
        }
        // Methods on string values use a private copy, unreachable from scripts.
        let method_table = lua.create_table()?;
        for pair in safe_string.pairs::<Value, Value>() {
            let (k, v) = pair?;
            method_table.raw_set(k, v)?;
        }
        lua.load(LOCK_STRINGS)
            .set_name("=fila.lock")
            .call::<()>(method_table)?;

        let table_lib: Table = globals.get("table")?;
        let safe_table = lua.create_table()?;
        for pair in table_lib.pairs::<Value, Value>() {
            let (k, v) = pair?;
            safe_table.raw_set(k, v)?;
        }
        safe_table.raw_set("move", wrappers.get::<Value>("move")?)?;

        let mut base = Vec::new();
        for name in BASE_GLOBALS {
            base.push((*name, globals.get::<Value>(*name)?));
        }
        for name in ["pcall", "xpcall", "setmetatable"] {
            base.push((name, wrappers.get::<Value>(name)?));
        }
        let mut libraries = Vec::new();
        for name in LIBRARIES {
            let table = match *name {
                "string" => safe_string.clone(),
                "table" => safe_table.clone(),
                other => globals.get(other)?,
            };
            libraries.push((*name, table));
        }
        Ok(Sandbox { base, libraries })
    }

    /// A fresh environment for one queue: base functions, copies of the libraries, `fila`.
    pub(crate) fn environment(&self, lua: &Lua, fila_get: &Function) -> mlua::Result<Table> {
        let env = lua.create_table_with_capacity(0, self.base.len() + LIBRARIES.len() + 2)?;
        for (name, value) in &self.base {
            env.raw_set(*name, value.clone())?;
        }
        for (name, library) in &self.libraries {
            let copy = lua.create_table()?;
            for pair in library.pairs::<Value, Value>() {
                let (k, v) = pair?;
                copy.raw_set(k, v)?;
            }
            env.raw_set(*name, copy)?;
        }
        let fila = lua.create_table()?;
        fila.raw_set("get", fila_get.clone())?;
        env.raw_set("fila", fila)?;
        env.raw_set("_G", env.clone())?;
        Ok(env)
    }
}

/// Options of the state: the four libraries (the base library is always there).
pub(crate) fn new_state() -> mlua::Result<Lua> {
    Lua::new_with(
        StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8,
        LuaOptions::default(),
    )
}
