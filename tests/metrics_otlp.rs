//! Black box: the real fila-server exports OTLP/HTTP protobuf to a receiver on loopback inside
//! the test (a tiny std HTTP server reading POST /v1/metrics bodies, decoded with
//! opentelemetry-proto), and a scripted workload shows up with the right names, labels and
//! values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::client::Client;
use common::{ServerOptions, TestServer};
use fila_wire::{CreateQueue, EnqueueMessage, ErrorCode, Request, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use prost::Message;

type Received = Arc<Mutex<Vec<(String, ExportMetricsServiceRequest)>>>;

/// Starts the receiver; returns its port and what it got.
fn receiver() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || serve(stream, &sink));
        }
    });
    (port, received)
}

/// One keep-alive connection: requests until the peer closes.
fn serve(stream: TcpStream, sink: &Received) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let decoded = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
        sink.lock().unwrap().push((path, decoded));
        writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// Latest value of each counter/gauge point.
    latest: BTreeMap<(String, BTreeMap<String, String>), f64>,
    /// Histogram counts summed over all requests (delta temporality).
    histogram_counts: BTreeMap<(String, BTreeMap<String, String>), u64>,
    service_names: Vec<String>,
    paths: Vec<String>,
}

fn attrs(list: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn seen(received: &Received) -> Seen {
    let mut seen = Seen::default();
    for (path, request) in received.lock().unwrap().iter() {
        seen.paths.push(path.clone());
        for rm in &request.resource_metrics {
            if let Some(resource) = &rm.resource {
                let map = attrs(&resource.attributes);
                if let Some(name) = map.get("service.name") {
                    seen.service_names.push(name.clone());
                }
            }
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    let number =
                        |points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint],
                         seen: &mut Seen| {
                            for p in points {
                                let v = match p.value {
                                    Some(NumberValue::AsInt(i)) => i as f64,
                                    Some(NumberValue::AsDouble(d)) => d,
                                    None => continue,
                                };
                                seen.latest
                                    .insert((metric.name.clone(), attrs(&p.attributes)), v);
                            }
                        };
                    match &metric.data {
                        Some(Data::Sum(s)) => number(&s.data_points, &mut seen),
                        Some(Data::Gauge(g)) => number(&g.data_points, &mut seen),
                        Some(Data::Histogram(h)) => {
                            for p in &h.data_points {
                                *seen
                                    .histogram_counts
                                    .entry((metric.name.clone(), attrs(&p.attributes)))
                                    .or_default() += p.count;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    seen
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(client: &mut Client, name: &str, on_enqueue: &str) {
    let reply = client.call(&Request::CreateQueue(CreateQueue {
        name: name.into(),
        on_enqueue_script: Some(on_enqueue.into()),
        on_failure_script: None,
        visibility_timeout_ms: 0,
    }));
    assert!(
        matches!(
            reply,
            Response::CreateQueueResult {
                error_code: ErrorCode::Ok,
                ..
            }
        ),
        "{reply:?}"
    );
}

fn enqueue(client: &mut Client, queue: &str, tenant: &str) {
    let reply = client.call(&Request::Enqueue {
        messages: vec![EnqueueMessage {
            queue: queue.into(),
            headers: vec![("tenant".into(), tenant.into())],
            payload: Bytes::from_static(b"p"),
        }],
    });
    match reply {
        Response::EnqueueResult { results } => {
            assert_eq!(results[0].error_code, ErrorCode::Ok)
        }
        other => panic!("{other:?}"),
    }
}

const KEYED: &str = r#"
function on_enqueue(msg)
  return { fairness_key = msg.headers["tenant"], throttle_keys = { "t:" .. msg.headers["tenant"] } }
end
"#;
const FAILING: &str = "function on_enqueue(msg) error('boom') end";

/// The polling loop's safety deadline and pause are wall-clock by nature (a real server
/// exports on its own timer); no assertion depends on their precision.
#[allow(clippy::disallowed_methods)]
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

#[test]
fn the_server_exports_the_workload_over_otlp_http() {
    let (port, received) = receiver();
    let config = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nmetrics_interval_ms = 200\nservice_name = \"fila-bb\"\n"
    );
    let mut server = TestServer::start_with(ServerOptions::default().with_config(&config));
    let mut client = Client::connect(server.addr);
    create(&mut client, "lua_ok", KEYED);
    create(&mut client, "lua_bad", FAILING);
    for (key, value) in [("throttle.t:acme", "1,1"), ("throttle.t:globex", "100,100")] {
        let reply = client.call(&fila_wire::Request::SetConfig {
            key: key.into(),
            value: value.into(),
        });
        assert!(
            matches!(
                reply,
                fila_wire::Response::SetConfigResult {
                    error_code: fila_wire::ErrorCode::Ok
                }
            ),
            "{reply:?}"
        );
    }
    for tenant in ["acme", "acme", "globex"] {
        enqueue(&mut client, "lua_ok", tenant);
    }
    // Consume: globex passes, acme passes once (burst 1) and its second message is a hit until
    // its token refills a second later.
    let sub = client.consume("lua_ok");
    let delivered = client.take(sub, 3);
    let acks: Vec<(&str, &str)> = delivered
        .iter()
        .map(|m| (&*m.queue, &*m.message_id))
        .collect();
    client.ack(&acks);
    enqueue(&mut client, "lua_bad", "x");
    enqueue(&mut client, "lua_bad", "y");

    let wanted = |s: &Seen| {
        s.latest.get(&(
            "fila.messages.enqueued".to_string(),
            labels(&[("queue_id", "lua_ok")]),
        )) == Some(&3.0)
            && s.latest.get(&(
                "fila.lua.errors".to_string(),
                labels(&[("queue_id", "lua_bad")]),
            )) == Some(&2.0)
            && s.histogram_counts.get(&(
                "fila.lua.execution_duration_us".to_string(),
                labels(&[("queue_id", "lua_ok"), ("hook", "on_enqueue")]),
            )) == Some(&3)
            && s.histogram_counts.get(&(
                "fila.lua.execution_duration_us".to_string(),
                labels(&[("queue_id", "lua_bad"), ("hook", "on_enqueue")]),
            )) == Some(&2)
            && s.latest.get(&(
                "fila.throttle.decisions".to_string(),
                labels(&[("throttle_key", "t:globex"), ("result", "pass")]),
            )) == Some(&1.0)
            && s.latest.get(&(
                "fila.throttle.decisions".to_string(),
                labels(&[("throttle_key", "t:acme"), ("result", "pass")]),
            )) == Some(&2.0)
            && s.latest
                .get(&(
                    "fila.throttle.decisions".to_string(),
                    labels(&[("throttle_key", "t:acme"), ("result", "hit")]),
                ))
                .is_some_and(|hits| *hits >= 1.0)
            && s.latest.contains_key(&(
                "fila.throttle.tokens_remaining".to_string(),
                labels(&[("throttle_key", "t:globex")]),
            ))
    };
    let mut last = Seen::default();
    let found = wait_until(Duration::from_secs(20), || {
        last = seen(&received);
        wanted(&last)
    });
    assert!(
        found,
        "the workload never showed up: {last:#?}\nserver log:\n{}",
        server.stderr()
    );
    assert!(
        last.paths.iter().all(|p| p == "/v1/metrics"),
        "{:?}",
        last.paths
    );
    assert!(last.service_names.iter().all(|n| n == "fila-bb"));
    assert_eq!(
        last.latest.get(&(
            "fila.messages.enqueued".to_string(),
            labels(&[("queue_id", "lua_bad")])
        )),
        Some(&2.0)
    );
    // Everything in lua_ok was delivered and acked.
    assert_eq!(
        last.latest.get(&(
            "fila.queue.depth".to_string(),
            labels(&[("queue_id", "lua_ok")])
        )),
        Some(&0.0)
    );
    // No shard attribute, no message ids.
    for (name, l) in last.latest.keys() {
        assert!(!l.contains_key("shard"), "{name}");
    }
    // Throttle decisions come with throttling; when present they carry the right labels.
    for (name, l) in last.latest.keys() {
        if name == "fila.throttle.decisions" {
            assert!(l.contains_key("throttle_key"));
            assert!(matches!(
                l.get("result").map(String::as_str),
                Some("pass" | "hit")
            ));
        }
    }
    let before = received.lock().unwrap().len();
    assert!(server.terminate().is_some_and(|s| s.success()));
    // The final export on graceful shutdown.
    assert!(received.lock().unwrap().len() > before, "no final export");
}

#[test]
fn a_grpc_port_is_called_out_at_start_up() {
    let config =
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\nmetrics_interval_ms = 200\n";
    let mut server = TestServer::start_with(ServerOptions::default().with_config(config));
    assert!(server.wait_for_log("OTLP/gRPC"), "{}", server.stderr());
    assert!(server.terminate().is_some_and(|s| s.success()));
}

#[test]
fn an_unreachable_collector_is_logged_with_backoff_and_costs_nothing_else() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nmetrics_interval_ms = 50\n"
    );
    let mut server = TestServer::start_with(ServerOptions::default().with_config(&config));
    let mut client = Client::connect(server.addr);
    client.create_queue("plain", 0);
    let failures = |server: &TestServer| server.stderr().matches("metrics export failed").count();
    assert!(
        wait_until(Duration::from_secs(20), || failures(&server) >= 4),
        "{}",
        server.stderr()
    );
    // The broker keeps serving while exports fail.
    for _ in 0..20 {
        client.enqueue(&[("plain", b"x")]);
    }
    assert_eq!(client.stats("plain").depth, 20);
    // Logged at 1, 2, 4, 8, ... consecutive failures, not once per interval.
    let logged = failures(&server);
    let tail = server.stderr();
    let last = tail
        .lines()
        .rev()
        .find(|l| l.contains("metrics export failed"))
        .unwrap();
    let consecutive: u64 = last
        .split("consecutive_failures=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(consecutive, 1 << (logged - 1), "{tail}");
    assert!(server.terminate().is_some_and(|s| s.success()));
}
