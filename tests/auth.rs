//! API keys and ACLs, black box (wire-protocol §7.1, §7.2, §11, §13): the real server with
//! a bootstrap key, talked to over loopback. Every row of the §13 table is exercised allowed
//! and denied; revocation and ACL changes are checked on connections that stay open.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::client::Client;
use common::{ServerOptions, TestServer};
use fila_wire::{
    AckItem, CreateQueue, EnqueueMessage, ErrorCode, NackItem, Permission, Request, Response,
};

const BOOT: &str = "bootstrap-secret-for-tests";

fn auth_server() -> TestServer {
    TestServer::start_with(ServerOptions {
        env: vec![("FILA_BOOTSTRAP_APIKEY".to_owned(), BOOT.to_owned())],
        ..ServerOptions::default()
    })
}

fn connect(server: &TestServer, key: &str) -> Client {
    Client::connect_with_key(server.addr, Some(key))
        .unwrap_or_else(|reply| panic!("handshake with {key:?} refused: {reply:?}"))
}

fn refused(server: &TestServer, key: Option<&str>) -> (ErrorCode, String) {
    match Client::connect_with_key(server.addr, key) {
        Ok(_) => panic!("handshake with {key:?} was accepted"),
        Err(reply) => match *reply {
            Response::Error { code, message, .. } => (code, message.to_string()),
            other => panic!("handshake answered with {other:?}"),
        },
    }
}

fn create_key(
    client: &mut Client,
    name: &str,
    superadmin: bool,
    expires_at_ms: u64,
) -> (String, String) {
    match client.call(&Request::CreateApiKey {
        name: name.into(),
        expires_at_ms,
        is_superadmin: superadmin,
    }) {
        Response::CreateApiKeyResult {
            error_code: ErrorCode::Ok,
            key_id,
            key,
            is_superadmin,
        } => {
            assert_eq!(is_superadmin, superadmin);
            (key_id.to_string(), key.to_string())
        }
        other => panic!("CreateApiKey {name}: {other:?}"),
    }
}

fn set_acl_request(key_id: &str, perms: &[(&str, &str)]) -> Request {
    Request::SetAcl {
        key_id: key_id.into(),
        permissions: perms
            .iter()
            .map(|(kind, pattern)| Permission {
                kind: (*kind).into(),
                pattern: (*pattern).into(),
            })
            .collect(),
    }
}

fn set_acl(client: &mut Client, key_id: &str, perms: &[(&str, &str)]) {
    match client.call(&set_acl_request(key_id, perms)) {
        Response::SetAclResult {
            error_code: ErrorCode::Ok,
        } => {}
        other => panic!("SetAcl {key_id}: {other:?}"),
    }
}

/// A key with `perms`, connected.
fn key_with(
    server: &TestServer,
    admin: &mut Client,
    name: &str,
    perms: &[(&str, &str)],
) -> (String, Client) {
    let (id, token) = create_key(admin, name, false, 0);
    set_acl(admin, &id, perms);
    (id, connect(server, &token))
}

fn is_forbidden(reply: &Response) -> bool {
    matches!(
        reply,
        Response::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )
}

#[track_caller]
fn assert_forbidden(reply: Response) {
    assert!(is_forbidden(&reply), "expected Forbidden, got {reply:?}");
}

#[track_caller]
fn assert_allowed(reply: Response) {
    assert!(
        !is_forbidden(&reply),
        "expected the request to pass the permission check, got {reply:?}"
    );
}

fn enqueue_request(queues: &[&str]) -> Request {
    Request::Enqueue {
        messages: queues
            .iter()
            .map(|queue| EnqueueMessage {
                queue: (*queue).into(),
                headers: Vec::new(),
                payload: Bytes::from_static(b"x"),
            })
            .collect(),
    }
}

fn create_queue_request(name: &str) -> Request {
    Request::CreateQueue(CreateQueue {
        name: name.into(),
        on_enqueue_script: None,
        on_failure_script: None,
        visibility_timeout_ms: 0,
    })
}

#[test]
fn auth_off_needs_no_key_and_ignores_one() {
    let server = TestServer::start();
    let mut plain = Client::connect(server.addr);
    plain.create_queue("open", 0);
    let mut with_key = Client::connect_with_key(server.addr, Some("whatever, not checked"))
        .expect("a key is ignored when auth is off");
    with_key.enqueue(&[("open", b"m")]);
    // The key operations work without auth, unchecked.
    let (id, _) = create_key(&mut with_key, "k", true, 0);
    assert!(matches!(
        with_key.call(&Request::ListApiKeys),
        Response::ListApiKeysResult { keys, .. } if keys.len() == 1 && keys[0].key_id == *id
    ));
}

#[test]
fn handshake_refuses_missing_bad_expired_and_revoked_keys() {
    let mut server = auth_server();
    let (code, message) = refused(&server, None);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("requires an API key"), "{message}");
    // The first refusal of a shard is reported at once (then at most once a minute).
    assert!(server.wait_for_log("refused API-key handshakes since the previous report"));
    assert_eq!(refused(&server, Some("wrong")).0, ErrorCode::Unauthorized);
    assert_eq!(refused(&server, Some("")).0, ErrorCode::Unauthorized);

    let mut admin = connect(&server, BOOT);
    let (_, expired) = create_key(&mut admin, "expired", false, 1);
    assert_eq!(refused(&server, Some(&expired)).0, ErrorCode::Unauthorized);
    let future = 4_102_444_800_000; // 2100-01-01
    let (_, later) = create_key(&mut admin, "later", false, future);
    connect(&server, &later).ping();
    let (revoked_id, revoked) = create_key(&mut admin, "revoked", false, 0);
    connect(&server, &revoked).ping();
    assert_eq!(
        admin.call(&Request::RevokeApiKey {
            key_id: revoked_id.as_str().into()
        }),
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::Ok
        }
    );
    assert_eq!(refused(&server, Some(&revoked)).0, ErrorCode::Unauthorized);
    // Revoking again: no such key.
    assert_eq!(
        admin.call(&Request::RevokeApiKey {
            key_id: revoked_id.as_str().into()
        }),
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::ApiKeyNotFound
        }
    );
}

#[test]
fn the_refused_handshake_uses_request_id_0_and_closes() {
    let server = auth_server();
    let mut client = Client::connect_raw(server.addr);
    client.send_with_id(
        7,
        &Request::Handshake(fila_wire::Handshake {
            protocol_version: 1,
            api_key: Some("nope".into()),
        }),
    );
    let (id, reply) = client.recv_frame();
    assert_eq!(id, 0);
    assert!(matches!(
        reply,
        Response::Error {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    assert!(client.closed_within(Duration::from_secs(5)));
}

#[test]
fn revocation_and_acl_changes_reach_open_connections() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    admin.create_queue("orders", 0);
    let (id, token) = create_key(&mut admin, "worker", false, 0);
    set_acl(
        &mut admin,
        &id,
        &[("produce", "orders"), ("consume", "orders")],
    );
    // Several connections, so both shards hold some of them.
    let mut workers: Vec<Client> = (0..6).map(|_| connect(&server, &token)).collect();
    for worker in &mut workers {
        worker.enqueue(&[("orders", b"a")]);
    }
    set_acl(&mut admin, &id, &[("consume", "orders")]);
    for worker in &mut workers {
        assert_forbidden(worker.call(&enqueue_request(&["orders"])));
        assert_allowed(worker.call(&Request::Consume {
            queue: "orders".into(),
        }));
    }
    assert!(matches!(
        admin.call(&Request::RevokeApiKey {
            key_id: id.as_str().into()
        }),
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::Ok
        }
    ));
    for worker in &mut workers {
        let reply = worker.call(&Request::Ack {
            items: vec![AckItem {
                queue: "orders".into(),
                message_id: "x".into(),
            }],
        });
        match reply {
            Response::Error {
                code: ErrorCode::Forbidden,
                message,
                ..
            } => assert!(message.contains("revoked"), "{message}"),
            other => panic!("expected Forbidden after revocation, got {other:?}"),
        }
        // Nothing needs a permission still works: the connection is not closed.
        worker.ping();
    }
}

#[test]
fn hot_path_rows_of_section_13() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    for queue in ["orders.eu", "orders.us", "payments"] {
        admin.create_queue(queue, 0);
    }
    let (_, mut worker) = key_with(
        &server,
        &mut admin,
        "worker",
        &[("produce", "orders.*"), ("consume", "orders.eu")],
    );
    // Enqueue: produce matching each message's queue; one miss refuses the whole batch.
    worker.enqueue(&[("orders.eu", b"1"), ("orders.us", b"2")]);
    assert_forbidden(worker.call(&enqueue_request(&["payments"])));
    assert_forbidden(worker.call(&enqueue_request(&["orders.eu", "payments"])));
    assert_eq!(
        admin.stats("orders.eu").depth,
        1,
        "the refused batch had no effect"
    );
    assert_eq!(admin.stats("payments").depth, 0);
    // Consume: consume matching the queue.
    let sub = worker.consume("orders.eu");
    assert_forbidden(worker.call(&Request::Consume {
        queue: "orders.us".into(),
    }));
    let delivered = worker.take(sub, 1);
    // Ack/Nack: consume matching each item's queue, checked before any message lookup.
    let nack_us = Request::Nack {
        items: vec![NackItem {
            queue: "orders.us".into(),
            message_id: "no-such-message".into(),
            error: "e".into(),
        }],
    };
    assert_forbidden(worker.call(&nack_us));
    let ack_mixed = Request::Ack {
        items: vec![
            AckItem {
                queue: "orders.eu".into(),
                message_id: delivered[0].message_id.clone(),
            },
            AckItem {
                queue: "orders.us".into(),
                message_id: "x".into(),
            },
        ],
    };
    assert_forbidden(worker.call(&ack_mixed));
    assert_eq!(
        admin.stats("orders.eu").in_flight,
        1,
        "the refused ack had no effect"
    );
    assert_eq!(
        worker.ack(&[("orders.eu", &delivered[0].message_id)]),
        vec![ErrorCode::Ok]
    );
    // CancelConsume and Ping need nothing.
    let (_, mut nobody) = key_with(&server, &mut admin, "nobody", &[]);
    nobody.ping();
    nobody.send_with_id(99, &Request::CancelConsume);
    nobody.ping();
    assert_forbidden(nobody.call(&enqueue_request(&["orders.eu"])));
}

#[test]
fn queue_admin_rows_of_section_13() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    admin.create_queue("orders.eu", 0);
    admin.create_queue("payments", 0);
    admin.enqueue(&[("orders.eu", b"m")]);
    let (_, mut scoped) = key_with(
        &server,
        &mut admin,
        "orders-admin",
        &[("admin", "orders.*")],
    );
    let (_, mut global) = key_with(&server, &mut admin, "global-admin", &[("admin", "*")]);
    let (_, mut producer) = key_with(&server, &mut admin, "producer", &[("produce", "*")]);

    // CreateQueue / DeleteQueue: an admin grant matching the name.
    assert!(matches!(
        scoped.call(&create_queue_request("orders.new")),
        Response::CreateQueueResult {
            error_code: ErrorCode::Ok,
            ..
        }
    ));
    assert_forbidden(scoped.call(&create_queue_request("payments.new")));
    assert_forbidden(producer.call(&create_queue_request("orders.other")));
    assert_forbidden(scoped.call(&Request::DeleteQueue {
        queue: "payments".into(),
    }));
    assert!(matches!(
        scoped.call(&Request::DeleteQueue {
            queue: "orders.new".into()
        }),
        Response::DeleteQueueResult {
            error_code: ErrorCode::Ok
        }
    ));

    // Global-admin operations test the literal pattern "*": refused to orders.*, even on
    // orders.eu.
    let global_only = [
        Request::GetStats {
            queue: "orders.eu".into(),
        },
        Request::ListQueues,
        Request::SetConfig {
            key: "k".into(),
            value: "v".into(),
        },
        Request::GetConfig { key: "k".into() },
        Request::ListConfig { prefix: "".into() },
        Request::Redrive {
            dlq_queue: "orders.eu.dlq".into(),
            count: 0,
        },
        Request::ListApiKeys,
        Request::GetAcl {
            key_id: "any".into(),
        },
        Request::RevokeApiKey {
            key_id: "no-such-key".into(),
        },
    ];
    for request in &global_only {
        assert_forbidden(scoped.call(request));
        assert_forbidden(producer.call(request));
        assert_allowed(global.call(request));
    }
    // The extension LuaTest needs admin on the queue.
    let lua_test = |queue: &str| {
        Request::LuaTest(fila_wire::LuaTest {
            hook: 0,
            queue: queue.into(),
            script: Some("function on_enqueue(m) return {} end".into()),
            headers: Vec::new(),
            payload_size: 0,
            attempts: 0,
            error: "".into(),
        })
    };
    assert_allowed(scoped.call(&lua_test("orders.eu")));
    assert_forbidden(scoped.call(&lua_test("payments")));
}

#[test]
fn key_management_rows_of_section_13() {
    let server = auth_server();
    let mut boot = connect(&server, BOOT);
    let (_, mut scoped) = key_with(&server, &mut boot, "orders-admin", &[("admin", "orders.*")]);
    let (_, mut global) = key_with(&server, &mut boot, "global", &[("admin", "*")]);
    let (_, mut producer) = key_with(&server, &mut boot, "producer", &[("produce", "orders.*")]);
    let (_, super_token) = create_key(&mut boot, "super", true, 0);
    let mut superadmin = connect(&server, &super_token);

    // CreateApiKey: at least one admin grant; superadmin keys only by superadmins.
    let (child, child_token) = create_key(&mut scoped, "child", false, 0);
    let create_super = Request::CreateApiKey {
        name: "s".into(),
        expires_at_ms: 0,
        is_superadmin: true,
    };
    assert_forbidden(scoped.call(&create_super));
    assert_forbidden(global.call(&create_super));
    assert_forbidden(producer.call(&Request::CreateApiKey {
        name: "p".into(),
        expires_at_ms: 0,
        is_superadmin: false,
    }));
    create_key(&mut superadmin, "made-by-super", true, 0);

    // SetAcl: every requested pattern inside one of the caller's admin patterns.
    set_acl(
        &mut scoped,
        &child,
        &[
            ("produce", "orders.eu"),
            ("consume", "orders.*"),
            ("admin", "orders.eu.*"),
        ],
    );
    assert_forbidden(scoped.call(&set_acl_request(&child, &[("consume", "*")])));
    assert_forbidden(scoped.call(&set_acl_request(&child, &[("produce", "orders")])));
    assert_forbidden(scoped.call(&set_acl_request(&child, &[("produce", "payments.*")])));
    assert_forbidden(producer.call(&set_acl_request(&child, &[("produce", "orders.eu")])));
    // Delegation is transitive: the child admin of orders.eu.* can grant inside it only.
    let mut child_client = connect(&server, &child_token);
    let (grandchild, _) = create_key(&mut child_client, "grandchild", false, 0);
    set_acl(
        &mut child_client,
        &grandchild,
        &[("consume", "orders.eu.x")],
    );
    assert_forbidden(child_client.call(&set_acl_request(&grandchild, &[("consume", "orders.us")])));
    // Beyond the reference: a scoped admin cannot rewrite a key holding grants outside its
    // patterns (another tenant's), nor a superadmin key.
    let (foreign, _) = create_key(&mut boot, "tenant-b", false, 0);
    set_acl(&mut boot, &foreign, &[("consume", "payments.*")]);
    assert_forbidden(scoped.call(&set_acl_request(&foreign, &[("consume", "orders.eu")])));
    // Unknown permission kinds are refused before anything is stored.
    match global.call(&set_acl_request(&child, &[("read", "*")])) {
        Response::Error {
            code: ErrorCode::InvalidConfigValue,
            message,
            ..
        } => assert!(message.contains("unknown permission kind"), "{message}"),
        other => panic!("expected InvalidConfigValue, got {other:?}"),
    }
    match global.call(&Request::GetAcl {
        key_id: child.as_str().into(),
    }) {
        Response::GetAclResult {
            error_code: ErrorCode::Ok,
            permissions,
            is_superadmin: false,
            ..
        } => assert_eq!(permissions.len(), 3, "the refused SetAcl stored nothing"),
        other => panic!("GetAcl: {other:?}"),
    }
    // ApiKeyNotFound in the bodies.
    assert_eq!(
        global.call(&set_acl_request("no-such-key", &[("produce", "x")])),
        Response::SetAclResult {
            error_code: ErrorCode::ApiKeyNotFound
        }
    );
    assert_eq!(
        global.call(&Request::GetAcl {
            key_id: "no-such-key".into()
        }),
        Response::GetAclResult {
            error_code: ErrorCode::ApiKeyNotFound,
            key_id: "no-such-key".into(),
            is_superadmin: false,
            permissions: Vec::new(),
        }
    );
    // Superadmin keys pass every check.
    superadmin.create_queue("anything", 0);
    assert_allowed(superadmin.call(&Request::ListApiKeys));
}

#[test]
fn keys_are_listed_without_tokens_and_never_visible_as_config() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    let (id, token) = create_key(&mut admin, "listed", false, 0);
    assert_eq!(token.len(), 32);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    match admin.call(&Request::ListApiKeys) {
        Response::ListApiKeysResult { keys, .. } => {
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].key_id, *id);
            assert_eq!(&*keys[0].name, "listed");
            assert!(keys[0].created_at_ms > 1_700_000_000_000);
        }
        other => panic!("ListApiKeys: {other:?}"),
    }
    for prefix in ["", "auth", "__fila", "api"] {
        match admin.call(&Request::ListConfig {
            prefix: prefix.into(),
        }) {
            Response::ListConfigResult { entries, .. } => {
                assert!(entries.is_empty(), "config listing shows {entries:?}")
            }
            other => panic!("ListConfig: {other:?}"),
        }
    }
    // Lua's fila.get sees runtime config only.
    let probe = Request::LuaTest(fila_wire::LuaTest {
        hook: 0,
        queue: "q".into(),
        script: Some(format!(
            "function on_enqueue(m) return {{ fairness_key = tostring(fila.get('auth:{id}')) .. tostring(fila.get('{id}')) }} end"
        ).into()),
        headers: Vec::new(),
        payload_size: 0,
        attempts: 0,
        error: "".into(),
    });
    match admin.call(&probe) {
        Response::LuaTestResult(result) => {
            assert!(!format!("{result:?}").contains(&token));
        }
        other => panic!("LuaTest: {other:?}"),
    }
}

#[test]
fn keys_and_revocations_survive_a_restart() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    let (kept_id, kept) = create_key(&mut admin, "kept", false, 0);
    set_acl(&mut admin, &kept_id, &[("produce", "q")]);
    let (gone_id, gone) = create_key(&mut admin, "gone", false, 0);
    assert!(matches!(
        admin.call(&Request::RevokeApiKey {
            key_id: gone_id.as_str().into()
        }),
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::Ok
        }
    ));
    drop(admin);
    let server = server.restart();
    let mut client = connect(&server, &kept);
    assert_forbidden(client.call(&create_queue_request("q")));
    assert_eq!(refused(&server, Some(&gone)).0, ErrorCode::Unauthorized);
    let mut admin = connect(&server, BOOT);
    match admin.call(&Request::GetAcl {
        key_id: kept_id.as_str().into(),
    }) {
        Response::GetAclResult { permissions, .. } => {
            assert_eq!(permissions.len(), 1);
            assert_eq!(&*permissions[0].kind, "produce");
            assert_eq!(&*permissions[0].pattern, "q");
        }
        other => panic!("GetAcl: {other:?}"),
    }
}

#[test]
// Reads the clock only to print the authorized client's latency during the storm.
#[allow(clippy::disallowed_methods)]
fn hostile_handshakes_do_not_disturb_authorized_clients() {
    let server = auth_server();
    // A 64 KiB garbage key (the longest string a frame can carry) is refused like any bad key.
    let huge = "k".repeat(usize::from(u16::MAX));
    assert_eq!(refused(&server, Some(&huge)).0, ErrorCode::Unauthorized);
    let mut admin = connect(&server, BOOT);
    admin.create_queue("storm", 0);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let storm: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, addr) = (stop.clone(), failures.clone(), server.addr);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if Client::connect_with_key(addr, Some("bad-key")).is_err() {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The authorized client keeps being served during the storm (figures are printed; the
    // test asserts only that every request is answered).
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..500 {
        let sent = Instant::now();
        admin.enqueue(&[("storm", b"m")]);
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in storm {
        thread.join().unwrap();
    }
    latencies.sort();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "storm: {failed} refused handshakes in {elapsed:?} ({:.0}/s); authorized enqueue p50 {:?} p99 {:?}",
        failed as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    );
    assert!(failed > 0);
    assert_eq!(admin.stats("storm").depth, 500);
}

#[test]
fn open_server_on_a_public_address_warns_and_a_secured_one_does_not() {
    let mut open = TestServer::start_with(ServerOptions {
        listen: "0.0.0.0:0".to_owned(),
        ..ServerOptions::default()
    });
    assert!(open.wait_for_log("SECURITY WARNING: authentication is OFF"));
    let mut secured = TestServer::start_with(ServerOptions {
        listen: "0.0.0.0:0".to_owned(),
        env: vec![("FILA_BOOTSTRAP_APIKEY".to_owned(), BOOT.to_owned())],
        ..ServerOptions::default()
    });
    assert!(secured.wait_for_log("API-key authentication is on"));
    assert!(!secured.stderr().contains("SECURITY WARNING"));
    let loopback = TestServer::start();
    assert!(!loopback.stderr().contains("SECURITY WARNING"));
}

#[test]
fn a_revoked_or_narrowed_key_stops_receiving_on_open_subscriptions() {
    let server = auth_server();
    let mut admin = connect(&server, BOOT);
    admin.create_queue("feed", 60_000);
    admin.create_queue("other", 60_000);
    let (revoked_id, mut revoked) = key_with(&server, &mut admin, "revoked", &[("consume", "*")]);
    let (narrowed_id, mut narrowed) =
        key_with(&server, &mut admin, "narrowed", &[("consume", "*")]);
    let (_, mut witness) = key_with(&server, &mut admin, "witness", &[("consume", "*")]);
    let revoked_sub = revoked.consume("feed");
    let narrowed_sub = narrowed.consume("other");
    admin.enqueue(&[
        ("feed", b"before-1"),
        ("feed", b"before-2"),
        ("other", b"before-3"),
    ]);
    let held = revoked.take(revoked_sub, 2);
    narrowed.take(narrowed_sub, 1);

    assert!(matches!(
        admin.call(&Request::RevokeApiKey {
            key_id: revoked_id.as_str().into()
        }),
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::Ok
        }
    ));
    set_acl(&mut admin, &narrowed_id, &[("consume", "feed")]);
    // Both subscriptions end and the revoked key's leases are released, right after the
    // change (asynchronously: wait for the stats to show it, bounded).
    let settled = (0..2_000).any(|_| {
        let (feed, other) = (admin.stats("feed"), admin.stats("other"));
        feed.active_consumers == 0 && feed.in_flight == 0 && other.active_consumers == 0
    });
    assert!(settled, "subscriptions of the changed keys did not end");
    // The witness gets the released messages again, and every new message; the revoked and
    // narrowed connections get nothing more.
    let witness_feed = witness.consume("feed");
    let witness_other = witness.consume("other");
    let new: Vec<(&str, &[u8])> = (0..20).map(|_| ("feed", &b"after"[..])).collect();
    admin.enqueue(&new);
    let others: Vec<(&str, &[u8])> = (0..10).map(|_| ("other", &b"after"[..])).collect();
    admin.enqueue(&others);
    let got = witness.take(witness_feed, 22);
    let redelivered: Vec<_> = got.iter().filter(|m| m.attempt_count > 0).collect();
    assert_eq!(
        redelivered.len(),
        2,
        "the revoked key's two leases came back"
    );
    for message in &held {
        assert!(got.iter().any(|m| m.message_id == message.message_id));
    }
    witness.take(witness_other, 10);
    revoked.ping();
    narrowed.ping();
    assert_eq!(revoked.buffered(revoked_sub), 0);
    assert_eq!(narrowed.buffered(narrowed_sub), 0);
    assert_eq!(admin.stats("feed").depth, 22);
}

#[test]
fn hardening_beyond_the_reference() {
    let server = auth_server();
    let mut boot = connect(&server, BOOT);
    let (_, mut scoped) = key_with(&server, &mut boot, "orders-admin", &[("admin", "orders.*")]);
    let (_, mut worker) = key_with(&server, &mut boot, "w", &[("consume", "orders.*")]);
    // orders.* does not reach orders.dlq, the dead-letter queue of the queue "orders".
    boot.create_queue("orders", 0);
    assert_forbidden(scoped.call(&Request::DeleteQueue {
        queue: "orders.dlq".into(),
    }));
    assert_forbidden(worker.call(&Request::Consume {
        queue: "orders.dlq".into(),
    }));
    assert!(matches!(
        scoped.call(&create_queue_request("orders.eu")),
        Response::CreateQueueResult {
            error_code: ErrorCode::Ok,
            ..
        }
    ));
    worker.consume("orders.eu.dlq");
    // A fresh key another admin created cannot be claimed by a tenant admin.
    let (fresh, _) = create_key(&mut boot, "payments-worker", false, 0);
    assert_forbidden(scoped.call(&set_acl_request(&fresh, &[("consume", "orders.eu")])));
    // Patterns with a * anywhere but alone or after the last dot, or with control characters,
    // are refused before anything is stored; duplicates are stored once.
    for bad in [
        "orders.*x",
        "orders.eu.*.*",
        "*.*",
        "* ",
        "orders.\u{1b}[2J",
    ] {
        match boot.call(&set_acl_request(&fresh, &[("consume", bad)])) {
            Response::Error {
                code: ErrorCode::InvalidConfigValue,
                ..
            } => {}
            other => panic!("pattern {bad:?}: {other:?}"),
        }
    }
    set_acl(&mut boot, &fresh, &[("consume", "a"), ("consume", "a")]);
    match boot.call(&Request::GetAcl {
        key_id: fresh.as_str().into(),
    }) {
        Response::GetAclResult { permissions, .. } => assert_eq!(permissions.len(), 1),
        other => panic!("GetAcl: {other:?}"),
    }
    // Key names cannot carry terminal escapes.
    assert!(matches!(
        boot.call(&Request::CreateApiKey {
            name: "evil\u{1b}[2J".into(),
            expires_at_ms: 0,
            is_superadmin: false,
        }),
        Response::Error {
            code: ErrorCode::InvalidConfigValue,
            ..
        }
    ));
}

#[test]
fn stored_keys_without_a_bootstrap_key_are_reported_as_not_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        env: vec![("FILA_BOOTSTRAP_APIKEY".to_owned(), BOOT.to_owned())],
        ..ServerOptions::default()
    };
    let server = TestServer::start_on(dir.path(), options);
    create_key(&mut connect(&server, BOOT), "k", false, 0);
    drop(server);
    let mut open = TestServer::start_on(dir.path(), ServerOptions::default());
    assert!(open.wait_for_log("stored API key(s) and their permissions are not enforced"));
}

#[test]
fn an_oversized_handshake_is_closed_before_its_body_and_flags_are_ignored() {
    let server = TestServer::start_with(
        ServerOptions::default().with_config("[server]\nhandshake_timeout_ms = 60000\n"),
    );
    // A Handshake announcing 16 MiB: closed right after the length prefix, long before the
    // handshake timeout, without the server buffering the body.
    let mut big = Client::connect_raw(server.addr);
    let mut frame = (16_u32 * 1024 * 1024).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0_u8; 4096]);
    big.write_raw(&frame);
    assert!(big.closed_within(Duration::from_secs(10)));
    // A Handshake with the continuation flag is read as is (§7.1: no reassembly).
    let mut flagged = Client::connect_raw(server.addr);
    let mut body = bytes::BytesMut::new();
    Request::Handshake(fila_wire::Handshake {
        protocol_version: 1,
        api_key: None,
    })
    .encode(0, &mut body)
    .unwrap();
    body[5] |= 0x01;
    flagged.write_raw(&body);
    assert!(matches!(flagged.recv_frame().1, Response::HandshakeOk(_)));
}
