//! Property tests of DRR: weighted shares of backlogged keys within 1 percentage point of
//! w/Σw over windows of quantum×Σw deliveries; no backlogged key waits more than one round;
//! keys joining and leaving mid-round keep both; a brand-new key is served within the round
//! it joins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use fila_shard::drr::{Drr, DrrKeyState, KeyIdx};
use proptest::prelude::*;

/// A DRR ring with message counts per key (`u64::MAX` = backlogged forever).
struct Ring {
    drr: Drr,
    keys: Vec<DrrKeyState>,
    backlog: Vec<u64>,
    quantum: u32,
}

impl Ring {
    fn new(weights: &[u32], quantum: u32) -> Ring {
        Ring {
            drr: Drr::new(),
            keys: weights.iter().map(|w| DrrKeyState::new(*w)).collect(),
            backlog: vec![0; weights.len()],
            quantum,
        }
    }

    fn add(&mut self, key: usize, n: u64) {
        self.backlog[key] = self.backlog[key].saturating_add(n);
        if self.backlog[key] > 0 {
            self.drr.activate(key as KeyIdx, &mut self.keys[key]);
        }
    }

    fn deliver(&mut self) -> Option<usize> {
        let k = self.drr.pick(&mut self.keys, self.quantum)? as usize;
        if self.backlog[k] != u64::MAX {
            self.backlog[k] -= 1;
        }
        let still = self.backlog[k] > 0;
        self.drr.charge(k as KeyIdx, &mut self.keys[k], still);
        Some(k)
    }
}

/// Checks shares of `keys` (with `weights`) in every window of `window` entries of `seq`
/// starting at the given offsets.
fn check_shares(seq: &[usize], keys: &[usize], weights: &[u32], window: usize) {
    let total: u64 = keys.iter().map(|k| u64::from(weights[*k])).sum();
    let mut offset = 0;
    while offset + window <= seq.len() {
        let slice = &seq[offset..offset + window];
        for k in keys {
            let got = slice.iter().filter(|x| *x == k).count() as f64 / window as f64;
            let want = f64::from(weights[*k]) / total as f64;
            assert!(
                (got - want).abs() < 0.01,
                "key {k}: share {got:.4} vs {want:.4} in window at {offset}"
            );
        }
        offset += window / 3 + 1;
    }
}

/// Largest number of other deliveries between two deliveries of each key in `keys`.
fn max_gaps(seq: &[usize], n_keys: usize) -> Vec<usize> {
    let mut last = vec![None::<usize>; n_keys];
    let mut gaps = vec![0; n_keys];
    for (i, k) in seq.iter().enumerate() {
        if let Some(prev) = last[*k] {
            gaps[*k] = gaps[*k].max(i - prev - 1);
        }
        last[*k] = Some(i);
    }
    gaps
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backlogged_shares_and_waits(
        weights in prop::collection::vec(1u32..=100, 2..=50),
        quantum in 1u32..=3,
    ) {
        let mut ring = Ring::new(&weights, quantum);
        for k in 0..weights.len() {
            ring.add(k, u64::MAX);
        }
        let sum: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let window = (u64::from(quantum) * sum) as usize;
        let seq: Vec<usize> = (0..window * 3).map(|_| ring.deliver().unwrap()).collect();
        let keys: Vec<usize> = (0..weights.len()).collect();
        check_shares(&seq, &keys, &weights, window);
        let gaps = max_gaps(&seq, weights.len());
        for (k, gap) in gaps.iter().enumerate() {
            let others = (u64::from(quantum) * (sum - u64::from(weights[k]))) as usize;
            prop_assert!(*gap <= others, "key {} waited {} > one round ({})", k, gap, others);
        }
    }

    #[test]
    fn joining_and_leaving_keys_keep_shares_and_waits(
        backlogged in prop::collection::vec(1u32..=100, 2..=20),
        transient in prop::collection::vec((1u32..=100, 1u64..=30, 0usize..4_000), 1..=20),
        quantum in 1u32..=3,
    ) {
        let mut weights = backlogged.clone();
        weights.extend(transient.iter().map(|(w, _, _)| *w));
        let mut ring = Ring::new(&weights, quantum);
        let nb = backlogged.len();
        for k in 0..nb {
            ring.add(k, u64::MAX);
        }
        let sum_b: u64 = backlogged.iter().map(|w| u64::from(*w)).sum();
        let sum_all: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let window_b = (u64::from(quantum) * sum_b) as usize;
        // Joins: (step, key, messages); a transient key may join twice (leave and rejoin).
        let mut joins: Vec<(usize, usize, u64)> = Vec::new();
        for (i, (_, n, at)) in transient.iter().enumerate() {
            joins.push((*at, nb + i, *n));
            joins.push((*at + 2_000, nb + i, *n));
        }
        joins.sort();
        let steps = (window_b * 4).max(6_500);
        let mut seq = Vec::with_capacity(steps);
        let mut next_join = 0;
        let mut ever_served = vec![false; weights.len()];
        // Round in which each key last started a visit.
        let mut visit_round: Vec<Option<u64>> = vec![None; weights.len()];
        // Brand-new keys waiting for their first delivery, with the keys that had already
        // been visited in the round they joined: none of those may be visited again first.
        let mut watching: Vec<(usize, Vec<bool>)> = Vec::new();
        let mut prev: Option<usize> = None;
        for step in 0..steps {
            while next_join < joins.len() && joins[next_join].0 <= step {
                let (_, key, n) = joins[next_join];
                if !ever_served[key] && ring.backlog[key] == 0 {
                    let round = ring.drr.round();
                    let visited: Vec<bool> = visit_round.iter().map(|r| *r == Some(round)).collect();
                    watching.push((key, visited));
                }
                ring.add(key, n);
                next_join += 1;
            }
            let k = ring.deliver().unwrap();
            let new_visit = prev != Some(k);
            prev = Some(k);
            ever_served[k] = true;
            if new_visit {
                visit_round[k] = Some(ring.drr.round());
            }
            watching.retain(|(key, visited)| {
                if *key == k {
                    return false;
                }
                assert!(
                    !(new_visit && visited[k]),
                    "new key {key} not served within the round it joined: {k} visited again first"
                );
                true
            });
            seq.push(k);
        }
        // Shares of backlogged keys among backlogged deliveries.
        let backlogged_seq: Vec<usize> = seq.iter().copied().filter(|k| *k < nb).collect();
        let keys: Vec<usize> = (0..nb).collect();
        check_shares(&backlogged_seq, &keys, &weights, window_b);
        let gaps = max_gaps(&seq, weights.len());
        for k in 0..nb {
            let others = (u64::from(quantum) * (sum_all - u64::from(weights[k]))) as usize;
            prop_assert!(gaps[k] <= others, "key {} waited {} > one round ({})", k, gaps[k], others);
        }
    }
}
