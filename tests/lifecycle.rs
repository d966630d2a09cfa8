//! The server's lifetime from outside: it starts with one line saying where it listens, stops
//! cleanly on SIGTERM and SIGINT within the 5 s promise, and restarts on its own data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{ServerOptions, TestServer};

#[test]
fn start_up_line_names_address_shards_data_dir_and_durability() {
    let server = TestServer::start_with(
        ServerOptions::default().with_config("[storage]\ndurability = \"fsync\"\n"),
    );
    let line = format!(
        "fila-server listening on {} with 2 shards, data in {}, durability fsync",
        server.addr,
        server.data_dir().display()
    );
    assert!(server.stderr().contains(&line), "{}", server.stderr());
    assert_eq!(server.stderr().matches("listening on").count(), 1);
}

#[test]
fn sigterm_stops_with_exit_0_within_5_s() {
    let mut server = TestServer::start();
    let _client = std::net::TcpStream::connect(server.addr).unwrap();
    let status = server.terminate().expect("no exit within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(server.stderr().contains("received SIGTERM, shutting down"));
}

#[test]
fn sigint_stops_with_exit_0_within_5_s() {
    let mut server = TestServer::start_with(ServerOptions::shards(1));
    let status = server.interrupt().expect("no exit within 5 s of SIGINT");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[test]
fn restart_on_the_same_data_dir_works_and_releases_the_port() {
    let server = TestServer::start();
    let dir = server.data_dir().to_path_buf();
    let server = server.restart();
    assert_eq!(server.data_dir(), dir);
    assert!(std::net::TcpStream::connect(server.addr).is_ok());
}

#[test]
fn data_dir_flag_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("from-env");
    let options = ServerOptions {
        env: vec![("FILA_DATA_DIR".to_owned(), env_dir.display().to_string())],
        ..ServerOptions::default()
    };
    // The harness passes --data-dir, which wins; so check the flag beats the environment.
    let server = TestServer::start_with(options);
    assert!(!env_dir.exists());
    assert!(server.data_dir().join("meta.toml").is_file());
}

#[test]
fn durability_none_is_named_loudly_at_start() {
    let options = ServerOptions::shards(1).with_config("[storage]\ndurability = \"none\"\n");
    let mut server = TestServer::start_with(options);
    assert!(server.wait_for_log("use this for benchmarks only"));
    assert!(server.stderr().contains("durability none"));
}

#[test]
fn restart_on_the_same_port_works_while_old_connections_sit_in_time_wait() {
    let mut server = TestServer::start();
    let port = server.addr.port();
    // Connected clients: the server closes them at shutdown, leaving TIME_WAIT on its port.
    let mut clients: Vec<common::client::Client> = (0..4)
        .map(|_| common::client::Client::connect(server.addr))
        .collect();
    for client in &mut clients {
        client.ping();
    }
    let status = server.terminate().expect("no exit within 5 s");
    assert!(status.success());
    drop(clients);
    let options = ServerOptions {
        listen: format!("127.0.0.1:{port}"),
        ..ServerOptions::default()
    };
    let again = TestServer::start_on(server.data_dir(), options);
    assert_eq!(again.addr.port(), port);
    common::client::Client::connect(again.addr).ping();
}
