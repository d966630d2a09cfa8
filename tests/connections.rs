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
    let options = ServerOptions::shards(1).with_config("[server]\nhandshake_timeout_ms = 300\n");
    let server = TestServer::start_with(options);
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
    assert!(server.stderr().contains("closing connection: no handshake"));
}

#[test]
fn connections_over_max_connections_are_closed_and_slots_come_back() {
    let options = ServerOptions::shards(1).with_config("[server]\nmax_connections = 2\n");
    let server = TestServer::start_with(options);
    let mut first = Client::connect(server.addr);
    let mut second = Client::connect(server.addr);
    let mut third = Client::connect_raw(server.addr);
    assert!(
        third.closed_within(SOCKET_LIMIT),
        "third connection was kept"
    );
    first.ping();
    second.ping();
    assert!(server.stderr().contains("max_connections reached"));

    // Closing one frees its slot once the server has noticed; retry a bounded number of times.
    drop(first);
    let reopened = (0..50).any(|_| {
        let mut candidate = Client::connect_raw(server.addr);
        !candidate.closed_within(Duration::from_millis(200))
    });
    assert!(reopened, "slot of a closed connection never came back");
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
