//! The `fila` CLI from outside: the real binary against the real server (2 shards), checking
//! the exact output lines of compat.md §CLI, `--output json`, and that every failure is one
//! `Error: <sentence>` line on stderr with exit status 1 (never a panic).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use common::TestServer;
use serde_json::Value;

/// The outcome of one `fila` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_at(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fila"));
    command
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn run(server: &TestServer, args: &[&str]) -> Run {
    run_at(&server.addr.to_string(), args, None)
}

/// Runs `args`, asserts success with nothing on stderr, returns stdout.
fn ok(server: &TestServer, args: &[&str]) -> String {
    let out = run(server, args);
    assert_eq!(
        out.code,
        Some(0),
        "fila {args:?} failed:\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stderr, "", "fila {args:?} wrote to stderr");
    out.stdout
}

/// Asserts `out` is a clean failure: exit 1, nothing on stdout, one `Error: ` line.
fn assert_error(out: &Run, args: &[&str]) -> String {
    assert_eq!(
        out.code,
        Some(1),
        "fila {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "", "fila {args:?} printed to stdout");
    assert!(
        out.stderr.starts_with("Error: ") && out.stderr.ends_with('\n'),
        "fila {args:?}: {:?}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr.trim_end().to_owned()
}

/// Runs `args`, asserts a clean failure, returns the stderr line.
fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = run(server, args);
    assert_error(&out, args)
}

fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(server, &all)).unwrap()
}

/// The rows of an aligned table, split on runs of spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// A local port nobody listens on.
fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

// ---------------------------------------------------------------------------------------------
// queue

#[test]
fn queue_create_list_inspect_delete_print_the_compat_lines() {
    let server = TestServer::start();
    assert_eq!(ok(&server, &["queue", "list"]), "No queues found.\n");
    assert_eq!(
        ok(&server, &["queue", "create", "orders"]),
        "Created queue \"orders\"\n"
    );
    assert_eq!(
        ok(
            &server,
            &["queue", "create", "slow", "--visibility-timeout", "60000"]
        ),
        "Created queue \"slow\"\n"
    );
    let list = ok(&server, &["queue", "list"]);
    assert_eq!(
        rows(&list),
        vec![
            vec!["NAME", "DEPTH", "IN_FLIGHT", "CONSUMERS"],
            vec!["orders", "0", "0", "0"],
            vec!["orders.dlq", "0", "0", "0"],
            vec!["slow", "0", "0", "0"],
            vec!["slow.dlq", "0", "0", "0"],
        ]
    );
    // Aligned: every column starts at the same offset on every line.
    let header = list.lines().next().unwrap();
    let depth_col = header.find("DEPTH").unwrap();
    for line in list.lines().skip(1) {
        assert!(line[depth_col..].starts_with('0'), "misaligned: {list}");
    }

    ok(&server, &["enqueue", "orders", "--payload", "a"]);
    ok(&server, &["enqueue", "orders", "--payload", "b"]);
    let inspect = ok(&server, &["queue", "inspect", "orders"]);
    let lines: Vec<&str> = inspect.lines().collect();
    assert_eq!(lines[0], "Queue \"orders\"");
    assert_eq!(lines[1], "Depth:        2");
    assert_eq!(lines[2], "In flight:    0");
    assert_eq!(lines[3], "Active keys:  1");
    assert_eq!(lines[4], "Consumers:    0");
    assert_eq!(lines[5], "Quantum:      1000");
    assert_eq!(lines[7], "Fairness keys:");
    assert_eq!(
        rows(&lines[8..10].join("\n")),
        vec![
            vec!["KEY", "PENDING", "DEFICIT", "WEIGHT"],
            vec!["default", "2", "0", "1"]
        ]
    );
    assert_eq!(lines[11], "Throttle keys: none");
    let list = ok(&server, &["queue", "list"]);
    assert!(rows(&list).contains(&vec![
        "orders".to_owned(),
        "2".to_owned(),
        "0".to_owned(),
        "0".to_owned()
    ]));

    assert_eq!(
        ok(&server, &["queue", "delete", "orders"]),
        "Deleted queue \"orders\"\n"
    );
    assert_eq!(
        ok(&server, &["queue", "delete", "slow"]),
        "Deleted queue \"slow\"\n"
    );
    assert_eq!(ok(&server, &["queue", "list"]), "No queues found.\n");
}

#[test]
fn queue_errors_are_plain_sentences() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "orders"]);
    assert_eq!(
        fails(&server, &["queue", "create", "orders"]),
        "Error: queue \"orders\" already exists"
    );
    assert_eq!(
        fails(&server, &["queue", "delete", "missing"]),
        "Error: queue \"missing\" does not exist"
    );
    assert_eq!(
        fails(&server, &["queue", "inspect", "missing"]),
        "Error: queue \"missing\" does not exist"
    );
    let missing_file = fails(
        &server,
        &[
            "queue",
            "create",
            "hooked",
            "--on-enqueue",
            "@/no/such/file.lua",
        ],
    );
    assert!(
        missing_file.starts_with("Error: cannot read the Lua script \"/no/such/file.lua\""),
        "{missing_file}"
    );
    // Nothing was created by the failed attempt.
    assert!(!ok(&server, &["queue", "list"]).contains("hooked"));
}

#[test]
fn queue_create_sends_the_hook_file_named_with_at() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("broken.lua");
    std::fs::write(&script, "function on_enqueue(msg) return {\n").unwrap();
    let arg = format!("@{}", script.display());
    // The script reached the server (as source, not as a file name): the server compiles it
    // and refuses it, and the CLI says so.
    let line = fails(
        &server,
        &["queue", "create", "hooked", "--on-enqueue", &arg],
    );
    assert!(
        line.starts_with("Error: the Lua script does not compile: "),
        "{line}"
    );
    let line = fails(
        &server,
        &[
            "queue",
            "create",
            "hooked",
            "--on-failure",
            "this is not lua (",
        ],
    );
    assert!(
        line.starts_with("Error: the Lua script does not compile: "),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// config

#[test]
fn config_set_get_list_print_the_compat_lines() {
    let server = TestServer::start();
    assert_eq!(
        ok(&server, &["config", "list"]),
        "No config entries found.\n"
    );
    assert_eq!(
        ok(&server, &["config", "set", "app.mode", "fast"]),
        "Set \"app.mode\" = \"fast\"\n"
    );
    assert_eq!(
        ok(&server, &["config", "set", "throttle.api", "10,100"]),
        "Set \"throttle.api\" = \"10,100\"\n"
    );
    assert_eq!(
        ok(&server, &["config", "get", "app.mode"]),
        "app.mode: fast\n"
    );
    assert_eq!(ok(&server, &["config", "get", "app.other"]), "(not set)\n");
    assert_eq!(
        rows(&ok(&server, &["config", "list"])),
        vec![
            vec!["KEY", "VALUE"],
            vec!["app.mode", "fast"],
            vec!["throttle.api", "10,100"],
        ]
    );
    assert_eq!(
        rows(&ok(&server, &["config", "list", "--prefix", "throttle."])),
        vec![vec!["KEY", "VALUE"], vec!["throttle.api", "10,100"]]
    );
    // An empty value deletes the key.
    ok(&server, &["config", "set", "app.mode", ""]);
    assert_eq!(ok(&server, &["config", "get", "app.mode"]), "(not set)\n");
}

#[test]
fn a_bad_throttle_value_is_an_error_and_stores_nothing() {
    let server = TestServer::start();
    for bad in ["fast", "10", "-1,5", "1,2,3"] {
        let line = fails(&server, &["config", "set", "throttle.api", bad]);
        assert!(
            line.starts_with(&format!(
                "Error: invalid value \"{bad}\" for \"throttle.api\""
            )),
            "{line}"
        );
        assert!(line.contains("<rate_per_second>,<burst>"), "{line}");
    }
    assert_eq!(
        ok(&server, &["config", "get", "throttle.api"]),
        "(not set)\n"
    );
}

#[test]
fn queue_inspect_shows_throttle_keys() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "orders"]);
    ok(&server, &["config", "set", "throttle.api", "10,100"]);
    let inspect = ok(&server, &["queue", "inspect", "orders"]);
    let lines: Vec<&str> = inspect.lines().collect();
    let at = lines.iter().position(|l| *l == "Throttle keys:").unwrap();
    assert_eq!(
        rows(&lines[at + 1..].join("\n")),
        vec![
            vec!["KEY", "TOKENS", "RATE_PER_SECOND", "BURST"],
            vec!["api", "100", "10", "100"],
        ]
    );
    assert!(inspect.contains("Fairness keys: none"), "{inspect}");
}

// ---------------------------------------------------------------------------------------------
// redrive

#[test]
fn redrive_moves_messages_and_prints_the_count() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "orders"]);
    for payload in ["1", "2", "3"] {
        ok(&server, &["enqueue", "orders.dlq", "--payload", payload]);
    }
    assert_eq!(
        ok(&server, &["redrive", "orders.dlq", "--count", "2"]),
        "Redrive complete: 2 message(s) moved from \"orders.dlq\"\n"
    );
    assert_eq!(
        ok(&server, &["redrive", "orders.dlq"]),
        "Redrive complete: 1 message(s) moved from \"orders.dlq\"\n"
    );
    assert_eq!(
        ok(&server, &["redrive", "orders.dlq"]),
        "Redrive complete: 0 message(s) moved from \"orders.dlq\"\n"
    );
    let list = rows(&ok(&server, &["queue", "list"]));
    assert!(list.contains(&vec!["orders".into(), "3".into(), "0".into(), "0".into()]));
    assert!(list.contains(&vec![
        "orders.dlq".into(),
        "0".into(),
        "0".into(),
        "0".into()
    ]));
}

#[test]
fn redrive_errors_are_plain_sentences() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "orders"]);
    ok(&server, &["queue", "create", "orphan.dlq"]);
    assert_eq!(
        fails(&server, &["redrive", "orders"]),
        "Error: queue \"orders\" is not a dead-letter queue (redrive takes a name ending in .dlq)"
    );
    assert_eq!(
        fails(&server, &["redrive", "missing.dlq"]),
        "Error: queue \"missing.dlq\" does not exist"
    );
    assert_eq!(
        fails(&server, &["redrive", "orphan.dlq"]),
        "Error: the parent queue \"orphan\" of \"orphan.dlq\" does not exist"
    );
}

// ---------------------------------------------------------------------------------------------
// enqueue and consume

#[test]
fn enqueue_prints_the_id_and_consume_prints_and_acks() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "jobs"]);
    let id1 = ok(
        &server,
        &[
            "enqueue",
            "jobs",
            "--header",
            "tenant=a",
            "--header",
            "k=v=w",
            "--payload",
            "hello",
        ],
    );
    let id1 = id1.trim_end().to_owned();
    assert_eq!(id1.len(), 36, "{id1}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, [0xff_u8, 0x00, 0x41]).unwrap();
    let id2 = ok(
        &server,
        &["enqueue", "jobs", "--file", file.to_str().unwrap()],
    );
    let out = run_at(
        &server.addr.to_string(),
        &["enqueue", "jobs"],
        Some(b"from stdin\nline two"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let id3 = out.stdout.trim_end().to_owned();

    let consumed = ok(
        &server,
        &[
            "consume",
            "jobs",
            "--count",
            "3",
            "--ack",
            "--timeout-ms",
            "5000",
        ],
    );
    let expected = format!(
        "Message {id1}\n  queue:        jobs\n  fairness key: default\n  attempts:     0\n  headers:      tenant=a, k=v=w\n  payload:      hello\n  acked\n\
         Message {}\n  queue:        jobs\n  fairness key: default\n  attempts:     0\n  headers:      (none)\n  payload:      (hex) ff0041\n  acked\n\
         Message {id3}\n  queue:        jobs\n  fairness key: default\n  attempts:     0\n  headers:      (none)\n  payload:      from stdin\\nline two\n  acked\n",
        id2.trim_end()
    );
    assert_eq!(consumed, expected);
    // All acked: the queue is empty and nothing more arrives.
    assert_eq!(
        ok(&server, &["consume", "jobs", "--timeout-ms", "300"]),
        "No messages received within 300 ms.\n"
    );
    assert!(ok(&server, &["queue", "inspect", "jobs"]).contains("Depth:        0"));
}

#[test]
fn consume_nack_counts_an_attempt_and_leaving_a_message_releases_it() {
    let server = TestServer::start();
    ok(&server, &["queue", "create", "jobs"]);
    let id = ok(&server, &["enqueue", "jobs", "--payload", "x"]);
    let id = id.trim_end();
    let first = ok(
        &server,
        &["consume", "jobs", "--nack", "boom", "--timeout-ms", "5000"],
    );
    assert!(first.starts_with(&format!("Message {id}\n")), "{first}");
    assert!(first.contains("  attempts:     0\n"), "{first}");
    assert!(first.ends_with("  nacked\n"), "{first}");
    let second = ok(&server, &["consume", "jobs", "--timeout-ms", "5000"]);
    assert!(second.contains("  attempts:     1\n"), "{second}");
    assert!(!second.contains("acked"), "{second}");
    // Neither acked nor nacked: the exit released the lease (another failed attempt).
    let third = ok(
        &server,
        &["consume", "jobs", "--ack", "--timeout-ms", "5000"],
    );
    assert!(third.contains("  attempts:     2\n"), "{third}");
    assert!(third.ends_with("  acked\n"), "{third}");
}

#[test]
fn enqueue_and_consume_errors_are_plain_sentences() {
    let server = TestServer::start();
    assert_eq!(
        fails(&server, &["enqueue", "missing", "--payload", "x"]),
        "Error: queue \"missing\" does not exist"
    );
    assert_eq!(
        fails(&server, &["consume", "missing", "--timeout-ms", "100"]),
        "Error: queue \"missing\" does not exist"
    );
    assert_eq!(
        fails(
            &server,
            &["enqueue", "q", "--header", "novalue", "--payload", "x"]
        ),
        "Error: header \"novalue\" is not KEY=VALUE"
    );
    let line = fails(&server, &["enqueue", "q", "--file", "/no/such/payload"]);
    assert!(
        line.starts_with("Error: cannot read \"/no/such/payload\""),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// --output json

#[test]
fn read_commands_speak_json() {
    let server = TestServer::start();
    assert_eq!(json(&server, &["queue", "list"]), serde_json::json!([]));
    ok(&server, &["queue", "create", "orders"]);
    ok(&server, &["config", "set", "throttle.api", "2.5,10"]);
    ok(
        &server,
        &["enqueue", "orders", "--header", "h=1", "--payload", "p"],
    );

    let list = json(&server, &["queue", "list"]);
    assert_eq!(list[0]["name"], "orders");
    assert_eq!(list[0]["depth"], 1);
    assert_eq!(list[0]["in_flight"], 0);
    assert_eq!(list[0]["consumers"], 0);
    assert_eq!(list[1]["name"], "orders.dlq");

    let inspect = json(&server, &["queue", "inspect", "orders"]);
    assert_eq!(inspect["name"], "orders");
    assert_eq!(inspect["depth"], 1);
    assert_eq!(inspect["active_fairness_keys"], 1);
    assert_eq!(inspect["quantum"], 1000);
    assert_eq!(inspect["fairness_keys"][0]["key"], "default");
    assert_eq!(inspect["fairness_keys"][0]["pending"], 1);
    assert_eq!(inspect["fairness_keys"][0]["weight"], 1);
    assert_eq!(inspect["throttle_keys"][0]["key"], "api");
    assert_eq!(inspect["throttle_keys"][0]["rate_per_second"], 2.5);
    assert_eq!(inspect["throttle_keys"][0]["burst"], 10.0);

    assert_eq!(
        json(&server, &["config", "get", "throttle.api"]),
        serde_json::json!({"key": "throttle.api", "value": "2.5,10"})
    );
    assert_eq!(
        json(&server, &["config", "get", "nope"]),
        serde_json::json!({"key": "nope", "value": null})
    );
    assert_eq!(
        json(&server, &["config", "list"]),
        serde_json::json!([{"key": "throttle.api", "value": "2.5,10"}])
    );

    let consumed = json(
        &server,
        &["consume", "orders", "--ack", "--timeout-ms", "5000"],
    );
    assert_eq!(consumed.as_array().unwrap().len(), 1);
    let message = &consumed[0];
    assert_eq!(message["queue"], "orders");
    assert_eq!(message["fairness_key"], "default");
    assert_eq!(message["attempts"], 0);
    assert_eq!(message["headers"], serde_json::json!({"h": "1"}));
    assert_eq!(message["payload"], "p");
    assert_eq!(message["payload_encoding"], "utf8");
    assert_eq!(message["settled"], "acked");
    assert_eq!(message["id"].as_str().unwrap().len(), 36);
    assert_eq!(
        json(&server, &["consume", "orders", "--timeout-ms", "200"]),
        serde_json::json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// auth

#[test]
fn bad_permissions_are_refused_before_connecting() {
    // Nothing listens at this address: each refusal below comes before any connection.
    let addr = dead_addr();
    for (perm, expected) in [
        (
            "produce",
            "Error: permission \"produce\" is not KIND:PATTERN (e.g. produce:orders, consume:orders.*, admin:*)",
        ),
        (
            "write:orders",
            "Error: unknown permission kind \"write\" in \"write:orders\": the kinds are produce, consume and admin",
        ),
        (
            "consume:",
            "Error: invalid pattern \"\" in \"consume:\": it is empty; a pattern is *, a queue name, or PREFIX.*",
        ),
        (
            "admin:or*ders",
            "Error: invalid pattern \"or*ders\" in \"admin:or*ders\": * may only be the whole pattern or follow the last \".\"; a pattern is *, a queue name, or PREFIX.*",
        ),
    ] {
        let args = [
            "auth",
            "acl",
            "set",
            "k",
            "--perm",
            "produce:orders",
            "--perm",
            perm,
        ];
        let out = run_at(&addr, &args, None);
        assert_eq!(assert_error(&out, &args), expected, "{perm}");
    }
}

#[test]
fn auth_commands_print_a_servers_refusal_plainly() {
    use fila_wire::{ErrorCode, Response};
    // A server without API-key support answers auth opcodes with InternalError and a text.
    let out = scripted(
        &["auth", "list"],
        Response::error(
            ErrorCode::InternalError,
            "API keys are not supported by this server yet",
        ),
    );
    assert_eq!(
        assert_error(&out, &["auth", "list"]),
        "Error: API keys are not supported by this server yet"
    );
    // Forbidden: the server's explanation as is.
    let out = scripted(
        &["auth", "create", "--name", "x", "--superadmin"],
        Response::error(
            ErrorCode::Forbidden,
            "only a superadmin may create a superadmin key",
        ),
    );
    assert_eq!(
        assert_error(&out, &["auth", "create"]),
        "Error: only a superadmin may create a superadmin key"
    );
    // A key id the server does not know.
    let out = scripted(
        &["auth", "acl", "get", "nope"],
        Response::GetAclResult {
            error_code: ErrorCode::ApiKeyNotFound,
            key_id: "nope".into(),
            is_superadmin: false,
            permissions: vec![],
        },
    );
    assert_eq!(
        assert_error(&out, &["auth", "acl", "get"]),
        "Error: no API key has id \"nope\""
    );
}

// ---------------------------------------------------------------------------------------------
// connection flags

#[test]
fn an_unreachable_server_is_a_sentence_naming_the_address() {
    let addr = dead_addr();
    for args in [
        &["queue", "list"][..],
        &["config", "get", "k"],
        &["enqueue", "q", "--payload", "x"],
        &["consume", "q"],
        &["top"],
    ] {
        let out = run_at(&addr, args, None);
        let line = assert_error(&out, args);
        assert_eq!(
            line,
            format!(
                "Error: cannot connect to the server at {addr}: connection refused (is fila-server running there?)"
            ),
            "fila {args:?}"
        );
    }
}

// TLS: tests/cli_tls.rs.

#[test]
fn addr_accepts_a_url_prefix_and_api_key_is_sent_in_the_handshake() {
    let server = TestServer::start();
    let url = format!("http://{}/", server.addr);
    let out = run_at(&url, &["queue", "list"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "No queues found.\n");
    let url = format!("https://{}", server.addr);
    let out = run_at(&url, &["--api-key", "secret", "queue", "create", "q"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "Created queue \"q\"\n");
}

// ---------------------------------------------------------------------------------------------
// Output the real server cannot produce yet (API keys, cluster columns, bare error codes): a
// scripted stand-in server that answers the handshake with `hello` and each request, in turn,
// with the next of `replies`.

fn scripted_server(hello: fila_wire::Response, replies: Vec<fila_wire::Response>) -> String {
    use bytes::BytesMut;
    use fila_wire::FrameDecoder;
    use std::io::Read;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = BytesMut::new();
        let mut decoder = FrameDecoder::new();
        let mut replies = std::iter::once(hello).chain(replies);
        loop {
            let frame = loop {
                if let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    break frame;
                }
                let mut chunk = [0_u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let Some(reply) = replies.next() else { return };
            let mut out = BytesMut::new();
            reply.encode(frame.request_id, &mut out).unwrap();
            stream.write_all(&out).unwrap();
        }
    });
    addr
}

fn hello() -> fila_wire::Response {
    fila_wire::Response::HandshakeOk(fila_wire::HandshakeOk {
        negotiated_version: 1,
        node_id: 0,
        max_frame_size: 16 * 1024 * 1024,
    })
}

fn scripted(args: &[&str], reply: fila_wire::Response) -> Run {
    let addr = scripted_server(hello(), vec![reply]);
    run_at(&addr, args, None)
}

#[test]
fn auth_output_once_the_server_supports_keys() {
    use fila_wire::{ApiKeyInfo, ErrorCode, Permission, Response};
    let id = "7d0f6f52-3f0e-4c7b-9a53-2f1d8c0e9b11";
    let out = scripted(
        &["auth", "create", "--name", "ci", "--superadmin"],
        Response::CreateApiKeyResult {
            error_code: ErrorCode::Ok,
            key_id: id.into(),
            key: "0123456789abcdef0123456789abcdef".into(),
            is_superadmin: true,
        },
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "Created API key \"ci\"\nKey ID:     {id}\nToken:      0123456789abcdef0123456789abcdef\nSuperadmin: yes\nThe token is shown only now and cannot be retrieved later; store it somewhere safe.\n"
        )
    );
    let out = scripted(
        &["--output", "json", "auth", "create", "--name", "ci"],
        Response::CreateApiKeyResult {
            error_code: ErrorCode::Ok,
            key_id: id.into(),
            key: "tok".into(),
            is_superadmin: false,
        },
    );
    let value: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"name": "ci", "id": id, "token": "tok", "superadmin": false})
    );
    let out = scripted(
        &["auth", "revoke", id],
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::Ok,
        },
    );
    assert_eq!(out.stdout, format!("Revoked API key \"{id}\"\n"));
    let out = scripted(
        &["auth", "revoke", "nope"],
        Response::RevokeApiKeyResult {
            error_code: ErrorCode::ApiKeyNotFound,
        },
    );
    assert_eq!(
        assert_error(&out, &["auth", "revoke"]),
        "Error: no API key has id \"nope\""
    );
    let keys = vec![
        ApiKeyInfo {
            key_id: id.into(),
            name: "ci".into(),
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: 0,
            is_superadmin: true,
        },
        ApiKeyInfo {
            key_id: "k2".into(),
            name: "reader".into(),
            created_at_ms: 1_700_000_000_001,
            expires_at_ms: 1_900_000_000_000,
            is_superadmin: false,
        },
        ApiKeyInfo {
            key_id: "old".into(),
            name: "gone".into(),
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_086_400_000,
            is_superadmin: false,
        },
    ];
    let out = scripted(
        &["auth", "list"],
        Response::ListApiKeysResult {
            error_code: ErrorCode::Ok,
            keys: keys.clone(),
        },
    );
    assert_eq!(
        rows(&out.stdout),
        vec![
            vec!["KEY_ID", "NAME", "CREATED", "EXPIRES", "SUPERADMIN"],
            vec![id, "ci", "2023-11-14T22:13:20Z", "never", "yes"],
            vec![
                "k2",
                "reader",
                "2023-11-14T22:13:20Z",
                "2030-03-17T17:46:40Z",
                "no"
            ],
            vec![
                "old",
                "gone",
                "2023-11-14T22:13:20Z",
                "2023-11-15T22:13:20Z",
                "(expired)",
                "no"
            ],
        ]
    );
    let out = scripted(
        &["--output", "json", "auth", "list"],
        Response::ListApiKeysResult {
            error_code: ErrorCode::Ok,
            keys,
        },
    );
    let value: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value[1]["name"], "reader");
    assert_eq!(value[1]["expires_at_ms"], 1_900_000_000_000_u64);
    assert_eq!(value[1]["expired"], false);
    assert_eq!(value[2]["expired"], true);
    assert_eq!(value[0]["superadmin"], true);
    let out = scripted(
        &["auth", "list"],
        Response::ListApiKeysResult {
            error_code: ErrorCode::Ok,
            keys: vec![],
        },
    );
    assert_eq!(out.stdout, "No API keys found.\n");
    let out = scripted(
        &[
            "auth",
            "acl",
            "set",
            "k2",
            "--perm",
            "produce:orders",
            "--perm",
            "consume:orders.*",
        ],
        Response::SetAclResult {
            error_code: ErrorCode::Ok,
        },
    );
    assert_eq!(out.stdout, "Set 2 permission(s) on API key \"k2\"\n");
    let out = scripted(
        &["auth", "acl", "get", "k2"],
        Response::GetAclResult {
            error_code: ErrorCode::Ok,
            key_id: "k2".into(),
            is_superadmin: false,
            permissions: vec![Permission {
                kind: "produce".into(),
                pattern: "orders".into(),
            }],
        },
    );
    assert_eq!(
        out.stdout,
        "API key \"k2\"\nSuperadmin: no\nKIND     PATTERN\nproduce  orders\n"
    );
}

#[test]
fn cluster_columns_bare_codes_and_a_rejected_key() {
    use fila_wire::{ErrorCode, QueueSummary, Response};
    let out = scripted(
        &["queue", "list"],
        Response::ListQueuesResult {
            error_code: ErrorCode::Ok,
            cluster_node_count: 3,
            queues: vec![QueueSummary {
                name: "orders".into(),
                depth: 4,
                in_flight: 1,
                active_consumers: 2,
                leader_node_id: 2,
            }],
        },
    );
    assert_eq!(
        rows(&out.stdout),
        vec![
            vec!["NAME", "DEPTH", "IN_FLIGHT", "CONSUMERS", "LEADER"],
            vec!["orders", "4", "1", "2", "2"],
        ]
    );
    // An Error frame without text gets the code's fixed sentence.
    let out = scripted(
        &["config", "get", "k"],
        Response::error(ErrorCode::ChannelFull, ""),
    );
    assert_eq!(
        assert_error(&out, &["config", "get"]),
        "Error: the server is overloaded; try again shortly"
    );
    let out = scripted(
        &["queue", "create", "q"],
        Response::CreateQueueResult {
            error_code: ErrorCode::StorageError,
            queue_id: "".into(),
        },
    );
    assert_eq!(
        assert_error(&out, &["queue", "create"]),
        "Error: the server's storage failed; see the server log"
    );
    // A handshake refused for the API key.
    let addr = scripted_server(
        Response::error(ErrorCode::Unauthorized, "invalid api key"),
        vec![],
    );
    let out = run_at(&addr, &["--api-key", "wrong", "queue", "list"], None);
    assert_eq!(
        assert_error(&out, &["queue", "list"]),
        "Error: the server rejected the API key (unknown, revoked or expired); pass a valid one with --api-key KEY"
    );
    // Something that is not a Fila server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let out = run_at(&addr, &["queue", "list"], None);
    let line = assert_error(&out, &["queue", "list"]);
    assert!(line.contains("is that a Fila server?"), "{line}");
}

#[test]
fn lua_test_dry_runs_a_file_or_the_queues_own_hook() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let enqueue = dir.path().join("enqueue.lua");
    std::fs::write(
        &enqueue,
        "function on_enqueue(msg)\n  return { fairness_key = msg.headers.tenant, weight = msg.payload_size, throttle_keys = { \"a\", \"b\" } }\nend\n",
    )
    .unwrap();
    let script = format!("@{}", enqueue.display());
    let printed = ok(
        &server,
        &[
            "lua",
            "test",
            "orders",
            "--script",
            &script,
            "--header",
            "tenant=acme",
            "--payload-size",
            "7",
        ],
    );
    assert_eq!(
        printed,
        "fairness_key: acme\nweight: 7\nthrottle_keys: a, b\n"
    );

    // The queue's own on_failure hook, once the queue exists.
    let on_failure = "function on_failure(msg) if msg.attempts >= 3 then return { action = \"dlq\" } end return { action = \"retry\", delay_ms = 100 * msg.attempts } end";
    let missing = fails(&server, &["lua", "test", "orders", "--hook", "on-failure"]);
    assert!(missing.contains("does not exist"), "{missing}");
    ok(
        &server,
        &["queue", "create", "orders", "--on-failure", on_failure],
    );
    let retry = ok(
        &server,
        &[
            "lua",
            "test",
            "orders",
            "--hook",
            "on-failure",
            "--attempts",
            "2",
        ],
    );
    assert_eq!(retry, "action: retry\ndelay_ms: 200\n");
    let value = json(
        &server,
        &[
            "lua",
            "test",
            "orders",
            "--hook",
            "on-failure",
            "--attempts",
            "3",
        ],
    );
    assert_eq!(value["action"], "dlq");
    // It has no on_enqueue hook; a broken script is reported with the compiler's message.
    let none = fails(&server, &["lua", "test", "orders"]);
    assert!(none.contains("no on_enqueue hook"), "{none}");
    let broken = fails(
        &server,
        &["lua", "test", "orders", "--script", "function on_enqueue("],
    );
    assert!(broken.contains("the hook failed"), "{broken}");
    // Nothing was enqueued by the dry runs.
    let inspect = ok(&server, &["queue", "inspect", "orders"]);
    let depth = inspect.lines().find(|l| l.starts_with("Depth:")).unwrap();
    assert_eq!(depth.split_whitespace().last(), Some("0"), "{inspect}");
}

#[test]
fn refused_messages_and_config_keys_say_why() {
    let server = TestServer::start_with(
        common::ServerOptions::default().with_config("[server]\nmax_payload_bytes = 16\n"),
    );
    ok(&server, &["queue", "create", "small"]);
    let refused = fails(
        &server,
        &["enqueue", "small", "--payload", "seventeen bytes!!"],
    );
    assert!(
        refused.contains("refused") && refused.contains("16"),
        "{refused}"
    );
    let empty = fails(&server, &["config", "set", "", "x"]);
    assert!(empty.contains("must not be empty"), "{empty}");
    let reserved = fails(&server, &["config", "set", "__fila.k", "x"]);
    assert!(reserved.contains("reserves"), "{reserved}");
    // The broker still takes writes.
    ok(&server, &["enqueue", "small", "--payload", "fits"]);
}
