//! Deficit Round Robin over fairness keys: pure, no clock, no storage.
//!
//! The ring is two FIFOs: `current` holds keys still to be visited in this round, `next`
//! holds keys already visited. When `current` runs dry the round ends and `next` becomes
//! `current`. Consequences:
//! - O(1) per delivery whatever the number of keys: every visit credits at least one message.
//! - A key that gets its first message mid-round joins `current`, so it is served within the
//!   current round. A key that was already served this round and comes back goes to `next`,
//!   so leaving and rejoining cannot earn extra turns.
//! - Among backlogged keys the delivery sequence is periodic with period `quantum × Σw`, so
//!   every such window gives each key exactly `quantum × w` deliveries.
//!
//! The deficit unit is one message (decisions.md). A key's state ([`DrrKeyState`]) lives with
//! the key in its owner's table; the scheduler reaches it through [`DrrKeys`].

use std::collections::VecDeque;

/// Index of a fairness key in its owner's table.
pub type KeyIdx = u32;

/// Per-key scheduler state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrrKeyState {
    /// Messages the key may still deliver in its current visit.
    pub deficit: i64,
    /// Weight (1..=10,000).
    pub weight: u32,
    /// True while the key is in the ring.
    pub in_ring: bool,
    /// True once the key received its credit for the current visit.
    pub credited: bool,
    /// The last round in which the key finished a visit (`u64::MAX` = never).
    pub served_round: u64,
}

impl DrrKeyState {
    /// A fresh key with `weight`.
    pub fn new(weight: u32) -> DrrKeyState {
        DrrKeyState {
            deficit: 0,
            weight,
            in_ring: false,
            credited: false,
            served_round: u64::MAX,
        }
    }
}

/// Access to the per-key states by index.
pub trait DrrKeys {
    /// The state of `key`.
    fn drr_state(&mut self, key: KeyIdx) -> Option<&mut DrrKeyState>;
}

impl DrrKeys for Vec<DrrKeyState> {
    fn drr_state(&mut self, key: KeyIdx) -> Option<&mut DrrKeyState> {
        self.get_mut(key as usize)
    }
}

/// The ring of one queue.
#[derive(Clone, Debug, Default)]
pub struct Drr {
    current: VecDeque<KeyIdx>,
    next: VecDeque<KeyIdx>,
    round: u64,
    /// Rounds started (metric `fila.scheduler.drr.rounds`).
    pub rounds_started: u64,
    /// Key visits (metric `fila.scheduler.drr.keys_processed`).
    pub keys_processed: u64,
}

impl Drr {
    /// An empty ring.
    pub fn new() -> Drr {
        Drr::default()
    }

    /// The current round number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Number of keys in the ring (active keys).
    pub fn active_keys(&self) -> usize {
        self.current.len() + self.next.len()
    }

    /// Keys in ring order: the rest of this round, then the next round.
    pub fn ring(&self) -> impl Iterator<Item = KeyIdx> + '_ {
        self.current.iter().chain(self.next.iter()).copied()
    }

    /// Puts a key that now has deliverable messages into the ring (no-op if already in).
    pub fn activate(&mut self, key: KeyIdx, state: &mut DrrKeyState) {
        if state.in_ring {
            return;
        }
        state.in_ring = true;
        state.deficit = 0;
        state.credited = false;
        if state.served_round == self.round {
            self.next.push_back(key);
        } else {
            self.current.push_back(key);
        }
    }

    /// The key to deliver the next message from, credited for its visit; `None` when the ring
    /// is empty. The caller must then deliver one message and call [`Drr::charge`].
    pub fn pick(&mut self, keys: &mut impl DrrKeys, quantum: u32) -> Option<KeyIdx> {
        if self.current.is_empty() {
            if self.next.is_empty() {
                return None;
            }
            std::mem::swap(&mut self.current, &mut self.next);
            self.round += 1;
            self.rounds_started += 1;
        }
        let head = *self.current.front()?;
        let state = keys.drr_state(head)?;
        if !state.credited {
            state.credited = true;
            state.deficit = state
                .deficit
                .saturating_add(i64::from(quantum.max(1)) * i64::from(state.weight.max(1)));
            self.keys_processed += 1;
        }
        Some(head)
    }

    /// Charges the picked `key` one message. `still_ready` says whether it has more
    /// deliverable messages; without, it leaves the ring and its deficit resets.
    pub fn charge(&mut self, key: KeyIdx, state: &mut DrrKeyState, still_ready: bool) {
        debug_assert_eq!(self.current.front(), Some(&key));
        state.deficit -= 1;
        if !still_ready {
            self.current.pop_front();
            state.in_ring = false;
            state.deficit = 0;
            state.credited = false;
            state.served_round = self.round;
        } else if state.deficit <= 0 {
            self.current.pop_front();
            state.deficit = 0;
            state.credited = false;
            state.served_round = self.round;
            self.next.push_back(key);
        }
    }

    /// Takes the head key out of the ring without charging (it can no longer deliver, e.g.
    /// throttled); it keeps no credit.
    pub fn park_head(&mut self, key: KeyIdx, state: &mut DrrKeyState) {
        debug_assert_eq!(self.current.front(), Some(&key));
        self.current.pop_front();
        state.in_ring = false;
        state.deficit = 0;
        state.credited = false;
    }

    /// Removes a key from anywhere in the ring (O(active keys); admin paths only).
    pub fn remove(&mut self, key: KeyIdx, state: &mut DrrKeyState) {
        if !state.in_ring {
            return;
        }
        self.current.retain(|k| *k != key);
        self.next.retain(|k| *k != key);
        state.in_ring = false;
        state.deficit = 0;
        state.credited = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `n` deliveries over backlogged keys and returns the picked keys.
    fn run(weights: &[u32], quantum: u32, n: usize) -> Vec<KeyIdx> {
        let mut keys: Vec<DrrKeyState> = weights.iter().map(|w| DrrKeyState::new(*w)).collect();
        let mut drr = Drr::new();
        for (k, state) in keys.iter_mut().enumerate() {
            drr.activate(k as KeyIdx, state);
        }
        let mut out = Vec::new();
        for _ in 0..n {
            let k = drr.pick(&mut keys, quantum).unwrap();
            drr.charge(k, &mut keys[k as usize], true);
            out.push(k);
        }
        out
    }

    #[test]
    fn weighted_rounds_are_exact() {
        let picks = run(&[1, 3], 2, 16);
        assert_eq!(picks, vec![0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn huge_quantum_and_weight_do_not_overflow() {
        let picks = run(&[10_000, 10_000], u32::MAX, 3);
        assert_eq!(picks, vec![0, 0, 0]);
    }

    #[test]
    fn an_emptied_key_rejoining_in_the_same_round_waits_for_the_next() {
        let mut keys = vec![DrrKeyState::new(1), DrrKeyState::new(1)];
        let mut drr = Drr::new();
        drr.activate(0, &mut keys[0]);
        drr.activate(1, &mut keys[1]);
        let k = drr.pick(&mut keys, 1).unwrap();
        assert_eq!(k, 0);
        drr.charge(0, &mut keys[0], false);
        drr.activate(0, &mut keys[0]);
        assert_eq!(drr.pick(&mut keys, 1), Some(1));
        drr.charge(1, &mut keys[1], true);
        assert_eq!(drr.pick(&mut keys, 1), Some(0));
    }
}
