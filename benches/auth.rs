//! Cost of authentication and permission checks: the handshake's SHA-256 + digest lookup
//! against a store of 10,000 keys, and the per-request ACL decision (`just bench-auth`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fila::auth::{ShardAuth, digest};
use fila::config::AuthConfig;
use fila_shard::auth::{Action, AuthChange, AuthStore, Caller, Grant, KeyRecord};
use fila_wire::{EnqueueMessage, Request};

const KEYS: usize = 10_000;

fn store() -> (AuthStore, Vec<String>) {
    let mut store = AuthStore::default();
    let mut tokens = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let token = format!("{i:032x}");
        let grants = (0..10)
            .map(|g| Grant::parse("produce", &format!("tenant{g}.*")).unwrap())
            .chain([Grant::parse("consume", &format!("tenant{i}.*")).unwrap()])
            .collect();
        store.apply(&AuthChange::Put(Arc::new(KeyRecord {
            id: format!("key-{i}"),
            name: format!("k{i}"),
            created_at_ms: 1,
            expires_at_ms: 0,
            superadmin: false,
            token_digest: digest(token.as_bytes()),
            grants,
            created_by: None,
        })));
        tokens.push(token);
    }
    (store, tokens)
}

fn bench(c: &mut Criterion) {
    let (store, tokens) = store();
    let config = AuthConfig {
        bootstrap_apikey: Some("bootstrap".to_owned()),
        required: false,
    };
    let auth = ShardAuth::new(&config, store.clone(), None);
    let mut group = c.benchmark_group("auth");
    group.bench_function("handshake (sha256 + lookup, 10k keys)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(auth.authenticate(Some(&tokens[i]), 5).unwrap());
        });
    });
    group.bench_function("handshake with a 64 KiB garbage key", |b| {
        let garbage = "x".repeat(65_535);
        b.iter(|| black_box(auth.authenticate(Some(&garbage), 5).is_err()));
    });
    let caller = Caller::Key("key-77".to_owned());
    group.bench_function("authorize produce (11 grants)", |b| {
        b.iter(|| {
            black_box(
                store
                    .authorize(&caller, Action::Produce(black_box("tenant9.orders")))
                    .is_ok(),
            )
        });
    });
    let batch = Request::Enqueue {
        messages: (0..100)
            .map(|_| EnqueueMessage {
                queue: "tenant9.orders".into(),
                headers: Vec::new(),
                payload: bytes::Bytes::from_static(b"x"),
            })
            .collect(),
    };
    group.bench_function("authorize a 100-message enqueue", |b| {
        b.iter(|| black_box(auth.authorize(&caller, &batch).is_ok()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
