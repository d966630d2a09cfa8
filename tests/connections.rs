//! Connection handling: the connection cap, the handshake timeout, and connections spread
//! over shards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::client::Client;
use common::{ServerOptions, TestServer};

/// Generous bound for the server to act on a socket (a safety net, not an assertion).
const SOCKET_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn connection_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    // The timeout is logged at debug (a flood of silent connections must not flood the log).
    let options = ServerOptions::shards(1)
        .with_config("[server]\nhandshake_timeout_ms = 300\n")
        .with_log("info,fila::session=debug");
    let mut server = TestServer::start_with(options);
    let mut talker = Client::connect(server.addr);
    let mut silent = Client::connect_raw(server.addr);
    assert!(
        silent.closed_within(SOCKET_LIMIT),
        "silent connection stayed open"
    );
    // The talker connected first, so its handshake deadline has passed too: it must still be
    // open (it completed the handshake; idle established connections are never closed).
    assert!(
        !talker.closed_within(Duration::from_millis(300)),
        "talker was closed"
    );
    talker.ping();
    assert!(server.wait_for_log("closing connection: no handshake"));
}

#[test]
fn connections_over_max_connections_are_closed_and_slots_come_back() {
    let options = ServerOptions::shards(1).with_config("[server]\nmax_connections = 2\n");
    let mut server = TestServer::start_with(options);
    let mut first = Client::connect(server.addr);
    let mut second = Client::connect(server.addr);
    let mut third = Client::connect_raw(server.addr);
    assert!(
        third.closed_within(SOCKET_LIMIT),
        "third connection was kept"
    );
    first.ping();
    second.ping();
    assert!(server.wait_for_log("max_connections reached"));

    // Closing one frees its slot once the server has noticed; retry a bounded number of times
    // with a short pause (the server may be busy with the other tests' servers).
    drop(first);
    let (_keep, pause) = std::sync::mpsc::channel::<()>();
    let reopened = (0..100).any(|_| {
        let mut candidate = Client::connect_raw(server.addr);
        let open = !candidate.closed_within(Duration::from_millis(200));
        if !open {
            let _ = pause.recv_timeout(Duration::from_millis(50));
        }
        open
    });
    assert!(
        reopened,
        "slot of a closed connection never came back; stderr:\n{}",
        server.stderr()
    );
}

#[test]
fn connections_spread_over_shards_all_stay_open() {
    let server = TestServer::start_with(ServerOptions::shards(2));
    let mut clients: Vec<Client> = (0..16).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        assert!(!client.closed_within(Duration::from_millis(50)));
        client.ping();
    }
}
