//! Throttle scenarios with a manual clock: burst after idle, refill instants, limit changes,
//! no head-of-line blocking inside a fairness key, counters, recovery.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{HeaderHooks, World};
use fila_shard::*;

fn ids(ds: &[Delivery]) -> Vec<MessageId> {
    ds.iter().map(|d| d.message_id).collect()
}

fn world_with(limit: &str) -> World {
    let mut w = World::new();
    w.create("q", 600_000);
    w.shard.set_config(w.now, "throttle.p", limit).unwrap();
    w.consume("q", 1, 100_000);
    w
}

#[test]
fn burst_after_idle_never_exceeds_burst() {
    let mut w = world_with("10,5");
    for _ in 0..100 {
        w.enqueue("q", &[("tk", "p")]);
    }
    assert_eq!(w.poll(1000).len(), 5, "a new bucket starts full");
    assert_eq!(w.poll(1000).len(), 0);
    w.advance_ms(60_000);
    assert_eq!(w.poll(1000).len(), 5, "idle refills to the burst, no more");
    w.advance_ms(100);
    assert_eq!(w.poll(1000).len(), 1);
    w.check();
}

#[test]
fn a_throttled_message_is_delivered_at_its_refill_instant() {
    let mut w = world_with("10,1");
    w.enqueue("q", &[("tk", "p")]);
    w.enqueue("q", &[("tk", "p")]);
    assert_eq!(w.poll(10).len(), 1);
    assert_eq!(w.poll(10).len(), 0);
    w.check();
    let due = w.shard.next_timer().expect("a timer for the refill");
    assert_eq!(
        due,
        w.now.plus_millis(100),
        "armed for the exact refill instant"
    );
    w.advance_ms(99);
    assert_eq!(w.poll(10).len(), 0);
    w.now = w.now.plus_millis(1);
    w.shard.tick(w.now);
    assert_eq!(w.poll(10).len(), 1, "delivered at the refill instant");
    w.check();
}

#[test]
fn fractional_rates_work() {
    let mut w = world_with("0.05,1");
    for _ in 0..3 {
        w.enqueue("q", &[("tk", "p")]);
    }
    assert_eq!(w.poll(10).len(), 1);
    assert_eq!(w.shard.next_timer(), Some(w.now.plus_millis(20_000)));
    w.advance_ms(19_999);
    assert_eq!(w.poll(10).len(), 0);
    w.advance_ms(1);
    assert_eq!(w.poll(10).len(), 1);
}

#[test]
fn lowering_burst_clamps_and_raising_never_adds() {
    let mut w = World::new();
    w.create("q", 600_000);
    w.shard.set_config(w.now, "throttle.p", "1,10").unwrap();
    for _ in 0..20 {
        w.enqueue("q", &[("tk", "p")]);
    }
    w.shard.set_config(w.now, "throttle.p", "1,3").unwrap();
    w.shard.set_config(w.now, "throttle.p", "1,50").unwrap();
    w.consume("q", 1, 1000);
    assert_eq!(w.poll(100).len(), 3);
    assert_eq!(w.shard.stats("q").unwrap().per_throttle[0].burst, 50.0);
    w.check();
}

#[test]
fn removing_the_limit_releases_parked_messages_at_once() {
    let mut w = world_with("0,1");
    for _ in 0..5 {
        w.enqueue("q", &[("tk", "p")]);
    }
    assert_eq!(w.poll(10).len(), 1);
    assert_eq!(w.poll(10).len(), 0);
    // Rate 0: no refill to wait for (only the lease deadline is armed).
    assert_eq!(w.shard.next_timer(), Some(w.now.plus_millis(600_000)));
    w.check();
    w.shard.set_config(w.now, "throttle.p", "").unwrap();
    assert_eq!(w.poll(10).len(), 4);
    w.check();
}

#[test]
fn no_head_of_line_blocking_inside_a_fairness_key() {
    let mut w = world_with("0,1");
    let a = w.enqueue("q", &[("fk", "k"), ("tk", "p")]);
    let b = w.enqueue("q", &[("fk", "k"), ("tk", "p")]);
    let c = w.enqueue("q", &[("fk", "k")]);
    let d = w.enqueue("q", &[("fk", "k"), ("tk", "other")]);
    let e = w.enqueue("q", &[("fk", "k"), ("tk", "p,other")]);
    let f = w.enqueue("q", &[("fk", "k")]);
    let got = ids(&w.poll(10));
    assert_eq!(
        got,
        vec![a, c, d, f],
        "blocked p messages are passed, others keep order"
    );
    w.check();
    w.shard.set_config(w.now, "throttle.p", "").unwrap();
    assert_eq!(
        ids(&w.poll(10)),
        vec![b, e],
        "same throttle keys keep their order"
    );
    w.check();
}

#[test]
fn a_message_needs_a_token_of_every_key_and_tokens_go_only_on_delivery() {
    let mut w = World::new();
    w.create("q", 600_000);
    w.shard.set_config(w.now, "throttle.a", "0,2").unwrap();
    w.shard.set_config(w.now, "throttle.b", "0,1").unwrap();
    w.enqueue("q", &[("tk", "a,b")]);
    w.enqueue("q", &[("tk", "a,b")]);
    w.enqueue("q", &[("tk", "a")]);
    // No consumer yet: nothing delivered, no token taken.
    assert_eq!(w.poll(10).len(), 0);
    assert_eq!(w.shard.throttle_tokens("a", w.now), Some(2.0));
    w.consume("q", 1, 100);
    assert_eq!(w.poll(10).len(), 2, "a,b then a");
    assert_eq!(w.shard.throttle_tokens("a", w.now), Some(0.0));
    assert_eq!(w.shard.throttle_tokens("b", w.now), Some(0.0));
    let a = w.shard.throttle_view("a", w.now).unwrap();
    let b = w.shard.throttle_view("b", w.now).unwrap();
    assert_eq!((a.passes, b.passes), (2, 1));
    assert!(
        b.hits >= 1,
        "the second a,b message was refused for lack of b"
    );
    let per = &w.shard.stats("q").unwrap().per_throttle;
    assert_eq!(per.len(), 2);
    assert_eq!(per[0].tokens, 0.0);
    w.check();
}

#[test]
fn other_fairness_keys_are_served_while_one_is_parked() {
    let mut w = world_with("0,1");
    for _ in 0..3 {
        w.enqueue("q", &[("fk", "slow"), ("tk", "p")]);
    }
    for _ in 0..3 {
        w.enqueue("q", &[("fk", "fast")]);
    }
    let got = w.poll(100);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got.iter()
            .filter(|d| d.fairness_key.as_str() == "fast")
            .count(),
        3
    );
    w.check();
}

#[test]
fn configured_rates_survive_a_restart_and_buckets_start_full() {
    let mut w = world_with("1,2");
    for i in 0..6 {
        let tk = if i % 2 == 0 { "p" } else { "" };
        w.enqueue("q", &[("fk", "k"), ("tk", tk)]);
    }
    w.shard.commit().unwrap();
    let before = w.shard.inspect_queue("q").unwrap();
    let options = ShardOptions {
        seed: 43,
        quantum: 1,
        ..ShardOptions::default()
    };
    let (mut s, _) = Shard::open(
        w.shard.storage().clone(),
        options,
        Box::new(HeaderHooks::default()),
        w.now,
    )
    .unwrap();
    s.check_invariants().unwrap();
    assert_eq!(s.inspect_queue("q").unwrap().fifos, before.fifos);
    assert_eq!(s.get_config("throttle.p"), Some("1,2"));
    assert_eq!(s.throttle_tokens("p", w.now), Some(2.0));
    s.register_consumer(w.now, "q", ConnectionId(1), 100)
        .unwrap();
    let mut out = Vec::new();
    s.poll_deliveries(w.now, 100, &mut out);
    // 2 of the 3 "p" messages pass on the full bucket, plus the 3 unthrottled ones.
    assert_eq!(out.len(), 5);
    s.check_invariants().unwrap();
}

#[test]
fn a_key_behind_a_paused_limit_waits_once_however_many_messages_arrive() {
    // Rate 0 and burst 0: the key never gets a token, so it waits for a limit change. Every
    // enqueue wakes it and every poll parks it again; it must stay listed once (the queue's
    // check fails on a key listed twice).
    let mut w = world_with("0,0");
    for _ in 0..50 {
        w.enqueue("q", &[("tk", "p")]);
        assert_eq!(w.poll(10).len(), 0);
        w.check();
    }
    // A new rate keeps the current (zero) tokens; 100 ms of refill at 1000/s covers all 50.
    w.shard.set_config(w.now, "throttle.p", "1000,100").unwrap();
    w.advance_ms(100);
    assert_eq!(w.poll(1000).len(), 50, "the limit change releases the key");
    w.check();
}
