//! Per-call limits: the deadline checked by the instruction hook and the pattern matcher, and
//! the "tripped" state that makes a timeout or memory overrun impossible to swallow.
//!
//! Once a call has run out of time (or memory), the global hook is re-installed to fire on
//! every instruction and fail: `pcall` may catch the first error, but the very next
//! instruction of the script fails again, so the error reaches the host. After the call the
//! normal hook (every [`HOOK_EVERY`] instructions) is restored.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use mlua::{HookTriggers, Lua, VmState};

use super::pattern::Budget;

/// Instructions between two deadline checks.
pub(crate) const HOOK_EVERY: u32 = 1_000;
/// Pattern-matching steps between two deadline checks.
const STEPS_EVERY: u32 = 1_024;

/// The error text of a timeout (classification never parses it).
pub(crate) const TIMEOUT_TEXT: &str = "script exceeded its time limit";
/// The error text of a memory overrun.
pub(crate) const MEMORY_TEXT: &str = "script exceeded its memory limit";

/// Why a call was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trip {
    /// Past the deadline.
    Timeout,
    /// Over the memory limit (an allocation failed, even if the script caught it).
    Memory,
}

impl Trip {
    pub(crate) fn error(self) -> mlua::Error {
        mlua::Error::runtime(match self {
            Trip::Timeout => TIMEOUT_TEXT,
            Trip::Memory => MEMORY_TEXT,
        })
    }
}

/// Shared by the host, the hook callback and the Rust functions the sandbox exposes.
pub(crate) struct Limiter {
    clock: Rc<dyn Fn() -> Duration>,
    deadline: Cell<Option<Duration>>,
    tripped: Cell<Option<Trip>>,
    steps: Cell<u32>,
    /// Largest buffer a Rust-side string function may build (the per-call memory limit).
    pub(crate) buffer_max: usize,
}

impl Limiter {
    pub(crate) fn new(clock: Rc<dyn Fn() -> Duration>, buffer_max: usize) -> Limiter {
        Limiter {
            clock,
            deadline: Cell::new(None),
            tripped: Cell::new(None),
            steps: Cell::new(0),
            buffer_max,
        }
    }

    /// The injected monotonic clock.
    pub(crate) fn now(&self) -> Duration {
        (self.clock)()
    }

    /// Starts a call: sets its deadline, clears any trip.
    pub(crate) fn arm(&self, deadline: Duration) {
        self.deadline.set(Some(deadline));
        self.tripped.set(None);
        self.steps.set(0);
    }

    /// Ends a call; what stopped it, if anything.
    pub(crate) fn disarm(&self) -> Option<Trip> {
        self.deadline.set(None);
        self.tripped.take()
    }

    pub(crate) fn tripped(&self) -> Option<Trip> {
        self.tripped.get()
    }

    fn expired(&self) -> bool {
        self.deadline.get().is_some_and(|d| self.now() >= d)
    }
}

/// Marks the call as stopped and makes every further instruction fail; the error to raise.
pub(crate) fn trip(limiter: &Rc<Limiter>, lua: &Lua, kind: Trip) -> mlua::Error {
    let kind = match limiter.tripped.get() {
        Some(first) => first,
        None => {
            limiter.tripped.set(Some(kind));
            // If re-installing fails the error still propagates; the next hook call fails too.
            let _ = install_hook(limiter, lua, 1);
            kind
        }
    };
    kind.error()
}

/// Installs the global instruction hook (every `every` instructions).
pub(crate) fn install_hook(limiter: &Rc<Limiter>, lua: &Lua, every: u32) -> mlua::Result<()> {
    let limiter = Rc::clone(limiter);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(every),
        move |lua, _debug| {
            if let Some(kind) = limiter.tripped.get() {
                return Err(kind.error());
            }
            if limiter.expired() {
                return Err(trip(&limiter, lua, Trip::Timeout));
            }
            Ok(VmState::Continue)
        },
    )
}

/// The pattern matcher's view of the limiter.
pub(crate) struct StepBudget<'a>(pub(crate) &'a Limiter);

impl Budget for StepBudget<'_> {
    fn step(&self) -> bool {
        let limiter = self.0;
        if limiter.tripped.get().is_some() {
            return false;
        }
        let steps = limiter.steps.get().wrapping_add(1);
        limiter.steps.set(steps);
        if steps.is_multiple_of(STEPS_EVERY) && limiter.expired() {
            return false;
        }
        true
    }
}
