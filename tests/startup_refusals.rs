//! Start-ups that must be refused with a readable message and a non-zero exit: bad config
//! files, unknown keys, auth required without a key, incomplete TLS, a data directory in use, a taken port, a shard count
//! that differs from the recorded one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{ServerOptions, TestServer, run_to_exit};

/// Starts with `options` on a fresh directory; the server must exit non-zero and its stderr
/// must contain every one of `expected`. Returns stderr.
fn check_refused(options: ServerOptions, expected: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_exit(&options, dir.path());
    assert!(!status.success(), "server started; stderr:\n{stderr}");
    for text in expected {
        assert!(
            stderr.contains(text),
            "missing {text:?} in stderr:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "panic instead of a message:\n{stderr}"
    );
    stderr
}

#[test]
fn config_that_does_not_parse_names_file_and_line() {
    let options = ServerOptions::default().with_config("[server]\nshards = 2\nlisten_addr = \n");
    check_refused(options, &[".toml, line 3: not valid TOML"]);
}

#[test]
fn unknown_key_names_file_line_key_and_lists_the_valid_keys() {
    let options = ServerOptions::default().with_config("[scheduler]\nquantum = 5\nquantumm = 6\n");
    check_refused(
        options,
        &[
            ".toml, line 3: unknown key `scheduler.quantumm`",
            "valid keys in [scheduler]: quantum, command_channel_capacity, idle_timeout_ms",
        ],
    );
}

#[test]
fn bad_values_name_file_key_and_line() {
    let cases = [
        (
            "[scheduler]\nquantum = 0\n",
            "line 2: bad value for `scheduler.quantum`: must be at least 1",
        ),
        (
            "\n[storage]\ndurability = \"always\"\n",
            "line 3: bad value for `storage.durability`",
        ),
        (
            "[server]\nmax_connections = -1\n",
            "line 2: bad value for `server.max_connections`",
        ),
    ];
    for (text, expected) in cases {
        check_refused(ServerOptions::default().with_config(text), &[expected]);
    }
}

#[test]
fn missing_config_file_is_refused() {
    let options = ServerOptions {
        args: vec!["--config".to_owned(), "/nonexistent/fila.toml".to_owned()],
        ..ServerOptions::default()
    };
    check_refused(
        options,
        &["/nonexistent/fila.toml (given with --config) does not exist"],
    );
}

#[test]
fn required_auth_without_a_bootstrap_key_is_refused() {
    let flag = ServerOptions {
        args: vec!["--require-auth".to_owned()],
        ..ServerOptions::default()
    };
    check_refused(
        flag,
        &["required by --require-auth", "FILA_BOOTSTRAP_APIKEY"],
    );
    let file = ServerOptions::default().with_config("[auth]\nrequired = true\n");
    check_refused(file, &["(required = true)", "no bootstrap API key"]);
}

#[test]
fn incomplete_tls_section_is_refused() {
    let tls = ServerOptions::default().with_config("[tls]\ncert_file = \"a.pem\"\n");
    check_refused(tls, &["[tls] in", "has no key_file"]);
}

#[test]
fn second_server_on_the_same_data_dir_is_refused() {
    let first = TestServer::start();
    let (status, stderr) = run_to_exit(&ServerOptions::default(), first.data_dir());
    assert!(!status.success(), "{stderr}");
    let dir = first.data_dir().display().to_string();
    assert!(
        stderr.contains(&format!(
            "data directory {dir} is in use by another fila-server (pid {})",
            first.pid()
        )),
        "{stderr}"
    );
}

#[test]
fn port_held_by_another_broker_is_refused() {
    // The first server binds with SO_REUSEPORT, which would let a second one share the port.
    let first = TestServer::start();
    let options = ServerOptions {
        listen: first.addr.to_string(),
        ..ServerOptions::default()
    };
    let stderr = check_refused(options, &["already in use by another process"]);
    assert!(stderr.contains(&first.addr.to_string()), "{stderr}");
}

#[test]
fn port_held_by_a_plain_socket_is_refused() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let options = ServerOptions {
        listen: addr.clone(),
        ..ServerOptions::default()
    };
    check_refused(
        options,
        &[&format!("cannot listen on {addr}"), "already in use"],
    );
}

#[test]
fn different_shard_count_is_refused_and_recorded_count_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_on(dir.path(), ServerOptions::shards(2));
    assert!(server.terminate().unwrap().success());

    let (status, stderr) = run_to_exit(&ServerOptions::shards(1), dir.path());
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("was created with 2 shards, but 1 were requested"),
        "{stderr}"
    );
    assert!(stderr.contains("start with --shards 2"), "{stderr}");

    let adopted = TestServer::start_on(
        dir.path(),
        ServerOptions {
            shards: None,
            ..ServerOptions::default()
        },
    );
    assert!(
        adopted.stderr().contains("with 2 shards"),
        "{}",
        adopted.stderr()
    );
}

#[test]
fn default_config_file_is_found_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fila.toml"), "[server]\nbogus = 1\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fila-server"))
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-pin-cores"])
        .env_remove("FILA_DATA_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("fila.toml, line 2: unknown key `server.bogus`"),
        "{stderr}"
    );
}

#[test]
fn a_start_refused_by_host_or_port_checks_records_nothing() {
    // More pinned shards than this machine has CPUs: refused before the data dir is touched.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let options = ServerOptions {
        shards: Some(u64::try_from(cpus).unwrap() + 2),
        args: vec!["--pin-cores".to_owned()],
        ..ServerOptions::default()
    };
    let (status, stderr) = run_to_exit(&options, &data);
    assert!(!status.success(), "server started; stderr:\n{stderr}");
    assert!(
        !data.join("meta.toml").exists(),
        "shard count recorded: {stderr}"
    );
    // Nor does a start refused because the port is taken (after the 3 s grace).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = ServerOptions {
        listen: port.local_addr().unwrap().to_string(),
        ..ServerOptions::default()
    };
    let (status, _) = run_to_exit(&taken, &data);
    assert!(!status.success());
    assert!(
        !data.join("meta.toml").exists(),
        "recorded after a port refusal"
    );
}
