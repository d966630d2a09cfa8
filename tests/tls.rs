//! TLS on the client port, black box: the real binary with certificates made by rcgen in each
//! test. The protocol over TLS, no plaintext fallback, server and client certificate checks
//! (mTLS), expired certificates, reload on SIGHUP, start-up refusals for bad files, and a
//! report of the handshake cost (printed, never asserted).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::client::{Client, READ_LIMIT};
use common::tls::{Ca, TlsFiles, client_config, connect};
use common::{ServerOptions, TestServer, run_to_exit};
use fila_wire::{ErrorCode, Handshake, Request, Response};

/// The log filter under which the listener's TLS lines (debug) are visible.
const LISTENER_DEBUG: &str = "info,fila::listener=debug";

fn start(files: &TlsFiles) -> TestServer {
    // Failed TLS handshakes are logged at debug (a flood must not flood the log).
    let options = ServerOptions::default()
        .with_config(&files.config())
        .with_log(LISTENER_DEBUG);
    TestServer::start_with(options)
}

#[test]
fn the_protocol_works_over_tls() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let server = start(&files);
    assert!(
        server
            .stderr()
            .contains(&format!("listening on {} (TLS) with 2 shards", server.addr)),
        "{}",
        server.stderr()
    );
    let mut client = connect(server.addr, &client_config(&ca, None)).unwrap();
    client.create_queue("tls-q", 30_000);
    let ids = client.enqueue(&[("tls-q", b"one"), ("tls-q", b"two")]);
    let sub = client.consume("tls-q");
    let messages = client.take(sub, 2);
    assert_eq!(&messages[0].payload[..], b"one");
    assert_eq!(&messages[1].payload[..], b"two");
    let acks = client.ack(&[("tls-q", &ids[0]), ("tls-q", &ids[1])]);
    assert!(acks.iter().all(|code| *code == ErrorCode::Ok));
    assert_eq!(client.stats("tls-q").depth, 0);
}

#[test]
fn inside_tls_the_handshake_rules_are_the_plaintext_ones() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let server = start(&files);
    let mut client = common::tls::connect_raw(server.addr, &client_config(&ca, None)).unwrap();
    client.send_with_id(
        0,
        &Request::Handshake(Handshake {
            protocol_version: 2,
            api_key: None,
        }),
    );
    match client.recv_frame() {
        (0, Response::Error { code, .. }) => assert_eq!(code, ErrorCode::UnsupportedVersion),
        other => panic!("version 2 answered with {other:?}"),
    }
}

#[test]
fn a_plaintext_client_is_refused_and_tls_clients_still_served() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let mut server = start(&files);
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let mut hello = BytesMut::new();
    Request::Handshake(Handshake {
        protocol_version: 1,
        api_key: None,
    })
    .encode(0, &mut hello)
    .unwrap();
    plain.write_all(&hello).unwrap();
    // The server closes the connection; at most a TLS alert record (content type 21) arrives,
    // never a protocol frame.
    let mut received = Vec::new();
    match plain.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    assert!(
        received.is_empty() || received[0] == 21,
        "plaintext client got {received:?}"
    );
    assert!(server.wait_for_log("TLS handshake failed; connection closed"));
    let peer = plain.local_addr().unwrap().to_string();
    assert!(server.stderr().contains(&peer), "{}", server.stderr());
    let mut client = connect(server.addr, &client_config(&ca, None)).unwrap();
    client.ping();
}

#[test]
fn a_silent_client_does_not_stall_accepts_and_is_closed_at_the_handshake_timeout() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let config = format!("[server]\nhandshake_timeout_ms = 300\n{}", files.config());
    let options = ServerOptions::shards(1)
        .with_config(&config)
        .with_log(LISTENER_DEBUG);
    let mut server = TestServer::start_with(options);
    let mut silent = Client::connect_raw(server.addr);
    // The only shard still accepts and serves TLS clients while the silent one waits.
    connect(server.addr, &client_config(&ca, None))
        .unwrap()
        .ping();
    assert!(silent.closed_within(READ_LIMIT));
    assert!(server.wait_for_log("no TLS handshake within 300ms"));
}

#[test]
fn a_client_trusting_another_ca_refuses_the_server() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let server = start(&files);
    let other = Ca::new("other CA");
    let Err(reason) = connect(server.addr, &client_config(&other, None)) else {
        panic!("connected to a server whose CA the client does not trust");
    };
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}

#[test]
fn an_expired_server_certificate_is_refused_by_the_client() {
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.expired_server_cert());
    let server = start(&files);
    let Err(reason) = connect(server.addr, &client_config(&ca, None)) else {
        panic!("connected to a server with an expired certificate");
    };
    assert!(reason.to_lowercase().contains("expired"), "{reason}");
}

#[test]
fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = TlsFiles::new(&server_ca.server_cert()).with_client_ca(&client_ca);
    let mut server = start(&files);
    assert!(
        server
            .stderr()
            .contains("(TLS, client certificates required)"),
        "{}",
        server.stderr()
    );
    let good = client_ca.client_cert();
    let mut client = connect(server.addr, &client_config(&server_ca, Some(&good))).unwrap();
    client.ping();

    let Err(reason) = connect(server.addr, &client_config(&server_ca, None)) else {
        panic!("connected without a client certificate");
    };
    assert!(server.wait_for_log("TLS handshake failed"), "{reason}");

    let stranger = Ca::new("stranger CA").client_cert();
    let Err(reason) = connect(server.addr, &client_config(&server_ca, Some(&stranger))) else {
        panic!("connected with a client certificate from another CA");
    };
    assert!(
        reason.contains("alert") || reason.contains("closed"),
        "{reason}"
    );
    // The good client's session is unaffected.
    client.ping();
}

#[test]
fn sighup_reloads_the_certificates_without_dropping_connections() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = TlsFiles::new(&old_ca.server_cert());
    let mut server = start(&files);
    let mut open = connect(server.addr, &client_config(&old_ca, None)).unwrap();
    open.create_queue("reload-q", 30_000);

    // New files on disk change nothing until the signal.
    files.replace(&new_ca.server_cert());
    assert!(connect(server.addr, &client_config(&new_ca, None)).is_err());
    server.hangup();
    assert!(server.wait_for_log("reloaded the TLS certificates"));
    let mut fresh = connect(server.addr, &client_config(&new_ca, None)).unwrap();
    fresh.ping();
    assert!(connect(server.addr, &client_config(&old_ca, None)).is_err());
    // The connection opened before the reload keeps its session.
    open.enqueue(&[("reload-q", b"still here")]);
    open.ping();

    // A broken key file: the reload fails, names the file, and the new certificate stays.
    std::fs::write(&files.key, "not a key").unwrap();
    server.hangup();
    assert!(server.wait_for_log("TLS reload failed, still serving the previous certificates"));
    assert!(
        server
            .stderr()
            .contains(&format!("tls.key_file {}", files.key.display())),
        "{}",
        server.stderr()
    );
    connect(server.addr, &client_config(&new_ca, None))
        .unwrap()
        .ping();
    open.ping();
    fresh.ping();
}

/// Starts with `files`; the start must fail with every one of `expected` in stderr, on one line.
fn check_refused(files: &TlsFiles, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions::default().with_config(&files.config());
    let (status, stderr) = run_to_exit(&options, dir.path());
    assert!(!status.success(), "server started; stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("fila-server: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    for text in expected {
        assert!(line.contains(text), "missing {text:?} in {line:?}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !dir.path().join("meta.toml").exists(),
        "data directory initialised"
    );
}

#[test]
fn unusable_certificate_files_refuse_the_start() {
    let ca = Ca::new("test CA");
    let issued = ca.server_cert();

    let missing = TlsFiles::new(&issued);
    std::fs::remove_file(&missing.cert).unwrap();
    let cert = missing.cert.display().to_string();
    check_refused(
        &missing,
        &[&format!("cannot read tls.cert_file {cert}"), "No such file"],
    );

    let garbage_key = TlsFiles::new(&issued);
    std::fs::write(&garbage_key.key, "garbage\n").unwrap();
    let key = garbage_key.key.display().to_string();
    check_refused(
        &garbage_key,
        &[&format!("tls.key_file {key} holds no PEM private key")],
    );

    let wrong_key = TlsFiles::new(&issued);
    std::fs::write(&wrong_key.key, ca.server_cert().key_pem).unwrap();
    check_refused(
        &wrong_key,
        &[&format!(
            "tls.key_file {} is not the private key of the certificate in tls.cert_file",
            wrong_key.key.display()
        )],
    );

    let garbage_cert = TlsFiles::new(&issued);
    std::fs::write(&garbage_cert.cert, "-----BEGIN CERTIFICATE-----\n%%%\n").unwrap();
    check_refused(
        &garbage_cert,
        &[
            &format!("tls.cert_file {}", garbage_cert.cert.display()),
            "is not a valid PEM file: a section has no \"-----END CERTIFICATE-----\" line",
        ],
    );

    let missing_ca = TlsFiles::new(&issued).with_client_ca(&ca);
    std::fs::remove_file(missing_ca.ca.as_ref().unwrap()).unwrap();
    check_refused(&missing_ca, &["cannot read tls.ca_file"]);
}

/// Handshake cost, reported and never asserted: TLS + protocol handshakes in a row against one
/// shard (server-side TLS time from its debug log, client-side connect → HandshakeOk), and the
/// Ping round trip of an established connection on the same shard with and without that
/// handshake load. `FILA_TLS_HANDSHAKES` sets the count (default 20).
#[test]
fn handshake_cost_report() {
    let runs: usize = std::env::var("FILA_TLS_HANDSHAKES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let ca = Ca::new("test CA");
    let files = TlsFiles::new(&ca.server_cert());
    let options = ServerOptions::shards(1)
        .with_config(&files.config())
        .with_log(LISTENER_DEBUG);
    let server = TestServer::start_with(options);
    let config = client_config(&ca, None);
    let mut pinger = connect(server.addr, &config).unwrap();
    let idle = ping_times(&mut pinger, runs);

    let addr = server.addr;
    let load_config = config.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_load = stop.clone();
    let load = std::thread::spawn(move || {
        let mut times = Vec::new();
        while times.len() < runs || !stop_load.load(std::sync::atomic::Ordering::Relaxed) {
            let started = now();
            let client = connect(addr, &load_config).unwrap();
            times.push(started.elapsed());
            drop(client);
        }
        times
    });
    let loaded = ping_times(&mut pinger, runs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let connects = load.join().unwrap();
    let server_side: Vec<Duration> = server
        .stderr()
        .lines()
        .filter_map(|line| line.split("handshake_us=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    assert!(server_side.len() >= runs, "{}", server.stderr());
    eprintln!(
        "TLS handshake, server side ({} runs): {}",
        server_side.len(),
        summary(server_side)
    );
    eprintln!(
        "connect + TLS + protocol handshake, client side ({} runs): {}",
        connects.len(),
        summary(connects)
    );
    eprintln!("Ping on the same shard, idle: {}", summary(idle));
    eprintln!(
        "Ping on the same shard, during handshakes: {}",
        summary(loaded)
    );
}

fn ping_times(client: &mut Client, runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let started = now();
            client.ping();
            started.elapsed()
        })
        .collect()
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:?}, p99 {:?}, max {:?}", at(0.5), at(0.99), at(1.0))
}

// Reported figures only; nothing is asserted on them.
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}
