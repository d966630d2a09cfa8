//! Property tests of the token bucket with a manual clock: tokens never exceed the burst;
//! admitted ≤ burst + rate × elapsed over any interval; limit changes never create tokens;
//! `available_at` is exact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use fila_shard::Time;
use fila_shard::throttle::TokenBucket;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Wait(u64),
    Take,
    SetLimit(f64, f64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..300_000).prop_map(Step::Wait),
        Just(Step::Take),
        Just(Step::Take),
        (0.0f64..200.0, 0.0f64..20.0).prop_map(|(r, b)| Step::SetLimit(r, b)),
    ]
}

proptest! {
    #[test]
    fn admitted_never_exceeds_burst_plus_rate_times_elapsed(
        rate in 0.0f64..500.0,
        burst in 0.0f64..50.0,
        steps in prop::collection::vec(step(), 1..300),
    ) {
        let mut now = Time::from_micros(1_000_000);
        let mut b = TokenBucket::new(rate, burst, now);
        // Admissions with their instants, for the interval bound.
        let mut admitted: Vec<Time> = Vec::new();
        let mut max_rate = rate;
        let mut max_burst = burst;
        for s in steps {
            match s {
                Step::Wait(us) => now = now.plus_micros(us),
                Step::Take => {
                    if b.try_take(now, 1.0) {
                        admitted.push(now);
                    }
                }
                Step::SetLimit(r, nb) => {
                    let before = b.tokens(now);
                    b.set_limit(now, r, nb);
                    let after = b.tokens(now);
                    prop_assert!(after <= before + 1e-9, "a limit change created tokens");
                    prop_assert!(after <= nb + 1e-9);
                    max_rate = max_rate.max(r);
                    max_burst = max_burst.max(nb);
                }
            }
            prop_assert!(b.tokens(now) <= b.burst() + 1e-9, "tokens above burst");
            prop_assert!(b.tokens(now) >= 0.0);
        }
        // Over every interval [admitted[i], admitted[j]]: j - i + 1 ≤ burst + rate × elapsed.
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let secs = admitted[j].micros_since(admitted[i]) as f64 / 1e6;
                let count = (j - i + 1) as f64;
                prop_assert!(
                    count <= max_burst + max_rate * secs + 1e-6,
                    "{count} admitted in {secs}s at rate {max_rate} burst {max_burst}"
                );
            }
        }
    }

    #[test]
    fn available_at_is_the_exact_earliest_instant(
        rate in 0.01f64..1000.0,
        burst in 1.0f64..20.0,
        drain in 1u32..20,
    ) {
        let now = Time::from_micros(5_000_000);
        let mut b = TokenBucket::new(rate, burst, now);
        for _ in 0..drain {
            b.try_take(now, 1.0);
        }
        let at = b.available_at(now, 1.0).unwrap();
        let mut probe = b.clone();
        prop_assert!(probe.has(at, 1.0), "no token at the announced instant");
        if at > now {
            let mut early = b.clone();
            let before = Time::from_micros(at.as_micros() - 1);
            // One microsecond earlier there is (within float tolerance) less than a token.
            prop_assert!(early.tokens(before) < 1.0 + 1e-6);
        }
    }
}
