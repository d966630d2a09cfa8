//! Connection handling that needs no codec: the connection cap and the handshake timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{ServerOptions, TestServer};

/// Generous bound for the server to act on a socket (a safety net, not an assertion).
const SOCKET_LIMIT: Duration = Duration::from_secs(10);

/// True if the server closed `stream` (read returns end of file or a reset) within `limit`;
/// false if the socket stayed open with nothing to read.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0_u8; 16];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(n) => panic!("server sent {n} bytes before the protocol exists"),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(error) if error.kind() == ErrorKind::ConnectionReset => true,
        Err(error) => panic!("unexpected socket error {error}"),
    }
}

fn connect_and_send(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"x").unwrap();
    stream
}

#[test]
fn connection_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    let options = ServerOptions::shards(1).with_config("[server]\nhandshake_timeout_ms = 300\n");
    let server = TestServer::start_with(options);
    let mut talker = connect_and_send(&server);
    let mut silent = TcpStream::connect(server.addr).unwrap();
    assert!(
        closed_by_server(&mut silent, SOCKET_LIMIT),
        "silent connection stayed open"
    );
    // The talker connected first, so its handshake deadline has passed too: it must still be
    // open (data arrived in time; idle established connections are never closed).
    assert!(
        !closed_by_server(&mut talker, Duration::from_millis(300)),
        "talker was closed"
    );
    assert!(
        server
            .stderr()
            .contains("closing connection: no handshake in time")
    );
}

#[test]
fn connections_over_max_connections_are_closed_and_slots_come_back() {
    let options = ServerOptions::shards(1).with_config("[server]\nmax_connections = 2\n");
    let server = TestServer::start_with(options);
    let mut first = connect_and_send(&server);
    let mut second = connect_and_send(&server);
    let mut third = TcpStream::connect(server.addr).unwrap();
    assert!(
        closed_by_server(&mut third, SOCKET_LIMIT),
        "third connection was kept"
    );
    assert!(!closed_by_server(&mut first, Duration::from_millis(100)));
    assert!(!closed_by_server(&mut second, Duration::from_millis(100)));
    assert!(server.stderr().contains("max_connections reached"));

    // Closing one frees its slot once the server has noticed; retry a bounded number of times.
    drop(first);
    let reopened = (0..50).any(|_| {
        let mut candidate = connect_and_send(&server);
        !closed_by_server(&mut candidate, Duration::from_millis(200))
    });
    assert!(reopened, "slot of a closed connection never came back");
}

#[test]
fn connections_spread_over_shards_all_stay_open() {
    let server = TestServer::start_with(ServerOptions::shards(2));
    let mut streams: Vec<TcpStream> = (0..16).map(|_| connect_and_send(&server)).collect();
    for stream in &mut streams {
        assert!(!closed_by_server(stream, Duration::from_millis(50)));
    }
}
