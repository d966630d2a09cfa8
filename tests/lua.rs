//! Lua hooks through the real server: fairness keys and weights from `on_enqueue`,
//! dead-lettering and redrive through `on_failure`, compilation errors at CreateQueue, and a
//! hostile script that costs only its own queue.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::TestServer;
use common::client::{Client, queue_on};
use fila_wire::{CreateQueue, EnqueueMessage, ErrorCode, Request, Response};

const ON_ENQUEUE: &str = r#"
function on_enqueue(msg)
  return {
    fairness_key = msg.headers["tenant"] or "default",
    weight = tonumber(msg.headers["weight"] or "1"),
    throttle_keys = { "t:" .. (msg.headers["tenant"] or "none") },
  }
end
"#;

const ON_FAILURE: &str = r#"
function on_failure(msg)
  if msg.attempts >= 2 then
    return { action = "dlq" }
  end
  return { action = "retry" }
end
"#;

fn create(
    client: &mut Client,
    name: &str,
    on_enqueue: Option<&str>,
    on_failure: Option<&str>,
) -> Response {
    client.call(&Request::CreateQueue(CreateQueue {
        name: name.into(),
        on_enqueue_script: on_enqueue.map(Into::into),
        on_failure_script: on_failure.map(Into::into),
        visibility_timeout_ms: 0,
    }))
}

fn enqueue_with(client: &mut Client, queue: &str, headers: &[(&str, &str)]) -> String {
    let reply = client.call(&Request::Enqueue {
        messages: vec![EnqueueMessage {
            queue: queue.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            payload: Bytes::from_static(b"p"),
        }],
    });
    let Response::EnqueueResult { results } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(results[0].error_code, ErrorCode::Ok);
    results[0].message_id.to_string()
}

#[test]
fn hooks_choose_keys_weights_and_dead_letter_then_redrive() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    for shard in 0..2 {
        let queue = queue_on("lua", shard, 2);
        let created = create(&mut client, &queue, Some(ON_ENQUEUE), Some(ON_FAILURE));
        assert!(
            matches!(
                created,
                Response::CreateQueueResult {
                    error_code: ErrorCode::Ok,
                    ..
                }
            ),
            "{created:?}"
        );
        let id = enqueue_with(&mut client, &queue, &[("tenant", "acme"), ("weight", "3")]);
        enqueue_with(&mut client, &queue, &[("tenant", "globex")]);
        let stats = client.stats(&queue);
        let mut keys: Vec<(String, u32)> = stats
            .per_key_stats
            .iter()
            .map(|k| (k.key.to_string(), k.weight))
            .collect();
        keys.sort();
        assert_eq!(keys, vec![("acme".into(), 3), ("globex".into(), 1)]);

        let sub = client.consume(&queue);
        let mut got = client.take(sub, 2);
        got.sort_by(|a, b| a.fairness_key.cmp(&b.fairness_key));
        assert_eq!(&*got[0].fairness_key, "acme");
        assert_eq!(got[0].weight, 3);
        assert_eq!(
            got[0].throttle_keys,
            vec![bytestring::ByteString::from("t:acme")]
        );
        let other = got[1].message_id.to_string();
        assert_eq!(
            client.ack(&[(queue.as_str(), other.as_str())]),
            vec![ErrorCode::Ok]
        );

        // First failure: retried; second: dead-lettered.
        assert_eq!(
            client.nack(&[(queue.as_str(), id.as_str())], "e1"),
            vec![ErrorCode::Ok]
        );
        let again = client.take(sub, 1);
        assert_eq!(
            (&*again[0].message_id, again[0].attempt_count),
            (id.as_str(), 1)
        );
        assert_eq!(
            client.nack(&[(queue.as_str(), id.as_str())], "e2"),
            vec![ErrorCode::Ok]
        );
        let dlq = format!("{queue}.dlq");
        client.ping();
        assert_eq!(client.stats(&queue).depth, 0);
        assert_eq!(client.stats(&dlq).depth, 1);

        // Redrive brings it back with attempts reset and its scheduling metadata kept.
        let moved = client.call(&Request::Redrive {
            dlq_queue: dlq.as_str().into(),
            count: 0,
        });
        assert_eq!(
            moved,
            Response::RedriveResult {
                error_code: ErrorCode::Ok,
                redriven: 1
            }
        );
        let back = client.take(sub, 1);
        assert_eq!(&*back[0].message_id, id.as_str());
        assert_eq!(back[0].attempt_count, 0);
        assert_eq!(&*back[0].fairness_key, "acme");
        assert_eq!(
            client.ack(&[(queue.as_str(), id.as_str())]),
            vec![ErrorCode::Ok]
        );
    }
}

#[test]
fn a_script_that_does_not_compile_creates_nothing() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let reply = create(&mut client, "broken", Some("function on_enqueue(msg"), None);
    let Response::CreateQueueResult {
        error_code,
        queue_id,
    } = reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(error_code, ErrorCode::LuaCompilationError);
    assert!(!queue_id.is_empty(), "the compiler's message is given");
    let stats = client.call(&Request::GetStats {
        queue: "broken".into(),
    });
    assert!(matches!(
        stats,
        Response::Error {
            code: ErrorCode::QueueNotFound,
            ..
        }
    ));
}

#[test]
fn a_hostile_script_costs_only_its_own_queue() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let hostile = queue_on("hostile", 0, 2);
    let created = create(
        &mut client,
        &hostile,
        Some("function on_enqueue(msg) while true do end end"),
        None,
    );
    assert!(matches!(
        created,
        Response::CreateQueueResult {
            error_code: ErrorCode::Ok,
            ..
        }
    ));
    let calm = queue_on("calm", 0, 2);
    client.create_queue(&calm, 0);
    // The loop is stopped by the time limit: the message still goes in with defaults.
    for _ in 0..5 {
        enqueue_with(&mut client, &hostile, &[]);
        enqueue_with(&mut client, &calm, &[]);
    }
    let stats = client.stats(&hostile);
    assert_eq!(stats.depth, 5);
    assert_eq!(&*stats.per_key_stats[0].key, "default");
    assert_eq!(client.stats(&calm).depth, 5);
    client.ping();
}

#[test]
fn hook_health_is_in_stats_and_a_script_that_no_longer_compiles_is_bypassed() {
    // The chunk's top level needs ~600 KB: fine under the default 1 MiB per call, too much
    // once the operator lowers the limit, so at the restart it no longer compiles.
    let script = r#"
local big = string.rep("x", 300000)
function on_enqueue(msg) return { fairness_key = "from-hook" } end
"#;
    let mut server = TestServer::start();
    let mut client = Client::connect(server.addr);
    let created = create(&mut client, "healthy", Some(script), None);
    assert!(matches!(
        created,
        Response::CreateQueueResult {
            error_code: ErrorCode::Ok,
            ..
        }
    ));
    enqueue_with(&mut client, "healthy", &[]);
    let ext = client.stats("healthy").extension.unwrap();
    assert_eq!((ext.hook_runs, ext.hook_errors), (1, 0));
    assert!(ext.hook_compile_error.is_empty() && !ext.storage_poisoned);
    drop(client);
    assert!(server.terminate().is_some_and(|s| s.success()));

    let options = common::ServerOptions::default()
        .with_config("[lua]\ndefault_memory_limit_bytes = 100000\n");
    let mut again = TestServer::start_on(server.data_dir(), options);
    assert!(again.wait_for_log("recovery"), "{}", again.stderr());
    let mut client = Client::connect(again.addr);
    let ext = client.stats("healthy").extension.unwrap();
    assert!(!ext.hook_compile_error.is_empty(), "{ext:?}");
    // The queue keeps working without its hook: defaults apply.
    enqueue_with(&mut client, "healthy", &[]);
    let stats = client.stats("healthy");
    let keys: Vec<&str> = stats.per_key_stats.iter().map(|k| &*k.key).collect();
    assert!(keys.contains(&"default"), "{keys:?}");
}
