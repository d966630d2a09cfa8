//! The commands: each opens one connection, sends its request(s), and writes the exact lines
//! of `compat.md` §CLI (or one JSON document with `--output json`) to `out`.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use fila_wire::{
    AckItem, ApiKeyInfo, CreateQueue, DeliveryMessage, EnqueueMessage, ErrorCode, LuaTest,
    NackItem, Permission, QueueStats, Request, Response, StringMap,
};
use serde_json::{Value, json};

use crate::cli::args::{
    AclCommand, AuthCommand, Command, ConfigCommand, HookArg, LuaCommand, Output, QueueCommand,
};
use crate::cli::client::{Connection, REPLY_LIMIT, Target};
use crate::cli::error::{CliError, phrase};
use crate::cli::table::Table;

/// Runs one command (not `top`, which owns the terminal) against `target`.
pub fn run(
    command: Command,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::Queue(command) => queue(command, target, output, out),
        Command::Config(command) => config(command, target, output, out),
        Command::Redrive { dlq, count } => redrive(&dlq, count, target, out),
        Command::Auth(command) => auth(command, target, output, out),
        Command::Enqueue {
            queue,
            headers,
            payload,
            file,
        } => enqueue(
            &queue,
            &headers,
            payload.as_deref(),
            file.as_deref(),
            target,
            output,
            out,
        ),
        Command::Consume {
            queue,
            count,
            ack,
            nack,
            timeout_ms,
        } => {
            let settle = match (ack, nack) {
                (true, _) => Settle::Ack,
                (false, Some(error)) => Settle::Nack(error),
                (false, None) => Settle::Leave,
            };
            let options = ConsumeOptions {
                count,
                settle,
                idle: timeout_ms.map(Duration::from_millis),
            };
            consume(&queue, &options, target, output, out)
        }
        Command::Lua(LuaCommand::Test {
            queue,
            hook,
            script,
            headers,
            payload_size,
            attempts,
            error,
        }) => {
            let test = LuaTest {
                queue: queue.as_str().into(),
                hook: match hook {
                    HookArg::OnEnqueue => 0,
                    HookArg::OnFailure => 1,
                },
                script: script
                    .as_deref()
                    .map(lua_source)
                    .transpose()?
                    .map(Into::into),
                headers: parse_headers(&headers)?,
                payload_size,
                attempts,
                error: error.as_str().into(),
            };
            lua_test(test, hook, target, output, out)
        }
        Command::Top { queue, interval_ms } => {
            crate::cli::top::run(target, queue, Duration::from_millis(interval_ms.max(100)))
        }
    }
}

/// The reply was not the one this request gets.
fn unexpected(response: &Response) -> CliError {
    match response {
        Response::Error { code, message, .. } => CliError::server(*code, message),
        other => CliError::Protocol(format!("unexpected {:?} reply", other.opcode())),
    }
}

fn queue_missing(name: &str) -> CliError {
    CliError::sentence(format!("queue \"{name}\" does not exist"))
}

/// An Error frame about a named queue, with the queue in the sentence where the code allows.
fn queue_error(name: &str, code: ErrorCode, message: &str) -> CliError {
    match code {
        ErrorCode::QueueNotFound => queue_missing(name),
        _ => CliError::server(code, message),
    }
}

fn print_json(out: &mut dyn Write, value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
    writeln!(out, "{text}")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// queue

fn queue(
    command: QueueCommand,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        QueueCommand::Create {
            name,
            on_enqueue,
            on_failure,
            visibility_timeout,
        } => {
            let on_enqueue = on_enqueue.as_deref().map(lua_source).transpose()?;
            let on_failure = on_failure.as_deref().map(lua_source).transpose()?;
            let mut connection = Connection::open(target)?;
            let reply = connection.call(&Request::CreateQueue(CreateQueue {
                name: name.as_str().into(),
                on_enqueue_script: on_enqueue.map(Into::into),
                on_failure_script: on_failure.map(Into::into),
                visibility_timeout_ms: visibility_timeout,
            }))?;
            match reply {
                Response::CreateQueueResult {
                    error_code: ErrorCode::Ok,
                    ..
                } => {
                    writeln!(out, "Created queue \"{}\"", one_line(&name))?;
                    Ok(())
                }
                Response::CreateQueueResult {
                    error_code: ErrorCode::QueueAlreadyExists,
                    ..
                } => Err(CliError::sentence(format!(
                    "queue \"{name}\" already exists"
                ))),
                Response::CreateQueueResult {
                    error_code: ErrorCode::LuaCompilationError,
                    queue_id,
                } => Err(CliError::sentence(format!(
                    "the Lua script does not compile: {}",
                    queue_id.trim()
                ))),
                Response::CreateQueueResult { error_code, .. } => {
                    Err(CliError::server(error_code, ""))
                }
                other => Err(unexpected(&other)),
            }
        }
        QueueCommand::Delete { name } => {
            let mut connection = Connection::open(target)?;
            let reply = connection.call(&Request::DeleteQueue {
                queue: name.as_str().into(),
            })?;
            match reply {
                Response::DeleteQueueResult {
                    error_code: ErrorCode::Ok,
                } => {
                    writeln!(out, "Deleted queue \"{}\"", one_line(&name))?;
                    Ok(())
                }
                Response::DeleteQueueResult { error_code } => {
                    Err(queue_error(&name, error_code, ""))
                }
                Response::Error { code, message, .. } => Err(queue_error(&name, code, &message)),
                other => Err(unexpected(&other)),
            }
        }
        QueueCommand::List => {
            let mut connection = Connection::open(target)?;
            let (cluster_nodes, queues) = match connection.call(&Request::ListQueues)? {
                Response::ListQueuesResult {
                    error_code: ErrorCode::Ok,
                    cluster_node_count,
                    queues,
                } => (cluster_node_count, queues),
                Response::ListQueuesResult { error_code, .. } => {
                    return Err(CliError::server(error_code, ""));
                }
                other => return Err(unexpected(&other)),
            };
            if output == Output::Json {
                let rows: Vec<Value> = queues
                    .iter()
                    .map(|q| {
                        json!({
                            "name": &*q.name,
                            "depth": q.depth,
                            "in_flight": q.in_flight,
                            "consumers": q.active_consumers,
                            "leader_node_id": q.leader_node_id,
                        })
                    })
                    .collect();
                return print_json(out, &Value::Array(rows));
            }
            if queues.is_empty() {
                writeln!(out, "No queues found.")?;
                return Ok(());
            }
            let clustered = cluster_nodes > 0;
            let mut header = vec!["NAME", "DEPTH", "IN_FLIGHT", "CONSUMERS"];
            if clustered {
                header.push("LEADER");
            }
            let mut table = Table::new(&header);
            for q in &queues {
                let mut row = vec![
                    q.name.to_string(),
                    q.depth.to_string(),
                    q.in_flight.to_string(),
                    q.active_consumers.to_string(),
                ];
                if clustered {
                    row.push(q.leader_node_id.to_string());
                }
                table.row(row);
            }
            write!(out, "{}", table.render())?;
            Ok(())
        }
        QueueCommand::Inspect { name } => {
            let mut connection = Connection::open(target)?;
            let stats = match connection.call(&Request::GetStats {
                queue: name.as_str().into(),
            })? {
                Response::GetStatsResult(stats) => stats,
                Response::Error { code, message, .. } => {
                    return Err(queue_error(&name, code, &message));
                }
                other => return Err(unexpected(&other)),
            };
            if output == Output::Json {
                return print_json(out, &stats_json(&name, &stats));
            }
            write!(out, "{}", inspect_text(&name, &stats))?;
            Ok(())
        }
    }
}

/// `queue inspect` as text: the summary lines, then the fairness and throttle tables.
pub fn inspect_text(name: &str, stats: &QueueStats) -> String {
    let name = one_line(name);
    let mut text = format!(
        "Queue \"{name}\"\n\
         Depth:        {}\n\
         In flight:    {}\n\
         Active keys:  {}\n\
         Consumers:    {}\n\
         Quantum:      {}\n",
        stats.depth,
        stats.in_flight,
        stats.active_fairness_keys,
        stats.active_consumers,
        stats.quantum,
    );
    if stats.leader_node_id != 0 || stats.replication_count != 0 {
        text.push_str(&format!(
            "Leader:       {}\nReplicas:     {}\n",
            stats.leader_node_id, stats.replication_count
        ));
    }
    if let Some(ext) = &stats.extension {
        if ext.hook_runs > 0 || ext.hook_breaker_trips > 0 {
            text.push_str(&format!(
                "Hook runs:    {} ({} failed, breaker tripped {} time(s){})\n",
                ext.hook_runs,
                ext.hook_errors,
                ext.hook_breaker_trips,
                if ext.hook_breaker_open {
                    ", open now"
                } else {
                    ""
                }
            ));
        }
        if !ext.hook_compile_error.is_empty() {
            text.push_str(&format!(
                "Warning:      the hooks did not compile at start-up and are bypassed: {}\n",
                ext.hook_compile_error
            ));
        }
        if ext.storage_poisoned {
            text.push_str(
                "Warning:      this queue's shard refuses writes after a storage failure; see the server log and restart it\n",
            );
        }
    }
    text.push('\n');
    if stats.per_key_stats.is_empty() {
        text.push_str("Fairness keys: none\n");
    } else {
        text.push_str("Fairness keys:\n");
        let mut table = Table::new(&["KEY", "PENDING", "DEFICIT", "WEIGHT"]);
        for key in &stats.per_key_stats {
            table.row(vec![
                key.key.to_string(),
                key.pending_count.to_string(),
                key.current_deficit.to_string(),
                key.weight.to_string(),
            ]);
        }
        text.push_str(&table.render());
    }
    text.push('\n');
    if stats.per_throttle_stats.is_empty() {
        text.push_str("Throttle keys: none\n");
    } else {
        text.push_str("Throttle keys:\n");
        let mut table = Table::new(&["KEY", "TOKENS", "RATE_PER_SECOND", "BURST"]);
        for throttle in &stats.per_throttle_stats {
            table.row(vec![
                throttle.key.to_string(),
                number(throttle.tokens),
                number(throttle.rate_per_second),
                number(throttle.burst),
            ]);
        }
        text.push_str(&table.render());
    }
    text
}

/// A float for a table: integers without decimals, others with two.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn stats_json(name: &str, stats: &QueueStats) -> Value {
    json!({
        "name": name,
        "depth": stats.depth,
        "in_flight": stats.in_flight,
        "active_fairness_keys": stats.active_fairness_keys,
        "active_consumers": stats.active_consumers,
        "quantum": stats.quantum,
        "leader_node_id": stats.leader_node_id,
        "replication_count": stats.replication_count,
        "fairness_keys": stats.per_key_stats.iter().map(|k| json!({
            "key": &*k.key,
            "pending": k.pending_count,
            "deficit": k.current_deficit,
            "weight": k.weight,
        })).collect::<Vec<_>>(),
        "throttle_keys": stats.per_throttle_stats.iter().map(|t| json!({
            "key": &*t.key,
            "tokens": t.tokens,
            "rate_per_second": t.rate_per_second,
            "burst": t.burst,
        })).collect::<Vec<_>>(),
        "health": stats.extension.as_ref().map(|e| json!({
            "storage_poisoned": e.storage_poisoned,
            "hook_compile_error": (!e.hook_compile_error.is_empty()).then(|| &*e.hook_compile_error),
            "hook_breaker_open": e.hook_breaker_open,
            "hook_runs": e.hook_runs,
            "hook_errors": e.hook_errors,
            "hook_breaker_trips": e.hook_breaker_trips,
        })),
    })
}

/// `KEY=VALUE` arguments as a header map.
fn parse_headers(headers: &[String]) -> Result<StringMap, CliError> {
    headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
            _ => Err(CliError::Input(format!("header \"{h}\" is not KEY=VALUE"))),
        })
        .collect()
}

/// `fila lua test`: the decision, one `field: value` line each (or JSON).
fn lua_test(
    test: LuaTest,
    hook: HookArg,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let queue = test.queue.to_string();
    let mut connection = Connection::open(target)?;
    let result = match connection.call(&Request::LuaTest(test))? {
        Response::LuaTestResult(result) => result,
        Response::Error {
            code: ErrorCode::InvalidFrame,
            ..
        } => {
            return Err(CliError::sentence(
                "this server does not support Lua dry runs".to_owned(),
            ));
        }
        other => return Err(unexpected(&other)),
    };
    match result.error_code {
        ErrorCode::Ok => {}
        ErrorCode::QueueNotFound => {
            return Err(CliError::sentence(format!(
                "queue \"{queue}\" does not exist"
            )));
        }
        ErrorCode::LuaCompilationError => {
            return Err(CliError::sentence(format!(
                "the hook failed: {}",
                result.message.trim()
            )));
        }
        code => return Err(CliError::server(code, &result.message)),
    }
    let fairness_key = if result.fairness_key.is_empty() {
        "default"
    } else {
        &result.fairness_key
    };
    let throttle_keys: Vec<&str> = result.throttle_keys.iter().map(|k| &**k).collect();
    match (hook, output) {
        (HookArg::OnEnqueue, Output::Json) => print_json(
            out,
            &json!({
                "fairness_key": fairness_key,
                "weight": result.weight,
                "throttle_keys": throttle_keys,
            }),
        ),
        (HookArg::OnFailure, Output::Json) => print_json(
            out,
            &json!({ "action": &*result.action, "delay_ms": result.delay_ms }),
        ),
        (HookArg::OnEnqueue, Output::Text) => {
            writeln!(out, "fairness_key: {}", one_line(fairness_key))?;
            writeln!(out, "weight: {}", result.weight)?;
            writeln!(
                out,
                "throttle_keys: {}",
                one_line(&throttle_keys.join(", "))
            )?;
            Ok(())
        }
        (HookArg::OnFailure, Output::Text) => {
            writeln!(out, "action: {}", one_line(&result.action))?;
            writeln!(out, "delay_ms: {}", result.delay_ms)?;
            Ok(())
        }
    }
}

/// A hook argument: Lua source, or `@path` to read the source from a file.
fn lua_source(argument: &str) -> Result<String, CliError> {
    match argument.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("cannot read the Lua script \"{path}\": {e}"))),
        None => Ok(argument.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// config

fn config(
    command: ConfigCommand,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut connection = Connection::open(target)?;
    match command {
        ConfigCommand::Set { key, value } => {
            let reply = connection.call(&Request::SetConfig {
                key: key.as_str().into(),
                value: value.as_str().into(),
            })?;
            match reply {
                Response::SetConfigResult {
                    error_code: ErrorCode::Ok,
                } => {
                    writeln!(out, "Set \"{key}\" = \"{value}\"")?;
                    Ok(())
                }
                Response::SetConfigResult {
                    error_code: ErrorCode::InvalidConfigValue,
                } => Err(CliError::sentence(invalid_value(&key, &value))),
                Response::SetConfigResult { error_code } => Err(CliError::server(error_code, "")),
                other => Err(unexpected(&other)),
            }
        }
        ConfigCommand::Get { key } => {
            let value = match connection.call(&Request::GetConfig {
                key: key.as_str().into(),
            })? {
                Response::GetConfigResult {
                    error_code: ErrorCode::Ok,
                    value,
                } => value,
                Response::GetConfigResult { error_code, .. } => {
                    return Err(CliError::server(error_code, ""));
                }
                other => return Err(unexpected(&other)),
            };
            if output == Output::Json {
                let value = if value.is_empty() {
                    Value::Null
                } else {
                    Value::from(&*value)
                };
                return print_json(out, &json!({ "key": key, "value": value }));
            }
            if value.is_empty() {
                writeln!(out, "(not set)")?;
            } else {
                writeln!(out, "{key}: {value}")?;
            }
            Ok(())
        }
        ConfigCommand::List { prefix } => {
            let entries = match connection.call(&Request::ListConfig {
                prefix: prefix.as_str().into(),
            })? {
                Response::ListConfigResult {
                    error_code: ErrorCode::Ok,
                    entries,
                } => entries,
                Response::ListConfigResult { error_code, .. } => {
                    return Err(CliError::server(error_code, ""));
                }
                other => return Err(unexpected(&other)),
            };
            if output == Output::Json {
                let rows: Vec<Value> = entries
                    .iter()
                    .map(|e| json!({ "key": &*e.key, "value": &*e.value }))
                    .collect();
                return print_json(out, &Value::Array(rows));
            }
            if entries.is_empty() {
                writeln!(out, "No config entries found.")?;
                return Ok(());
            }
            let mut table = Table::new(&["KEY", "VALUE"]);
            for entry in &entries {
                table.row(vec![entry.key.to_string(), entry.value.to_string()]);
            }
            write!(out, "{}", table.render())?;
            Ok(())
        }
    }
}

fn invalid_value(key: &str, value: &str) -> String {
    if key.is_empty() {
        "a config key must not be empty".to_owned()
    } else if key.starts_with("__fila.") {
        format!("\"{key}\" is in the namespace the broker reserves for itself (__fila.)")
    } else if key.starts_with("throttle.") {
        format!(
            "invalid value \"{value}\" for \"{key}\": a throttle takes \"<rate_per_second>,<burst>\", two finite numbers >= 0 (e.g. \"10,100\"), and a name after \"throttle.\""
        )
    } else {
        format!("invalid value \"{value}\" for \"{key}\"")
    }
}

// ---------------------------------------------------------------------------------------------
// redrive

fn redrive(dlq: &str, count: u64, target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let mut connection = Connection::open(target)?;
    let reply = connection.call(&Request::Redrive {
        dlq_queue: dlq.into(),
        count,
    })?;
    match reply {
        Response::RedriveResult {
            error_code: ErrorCode::Ok,
            redriven,
        } => {
            writeln!(
                out,
                "Redrive complete: {redriven} message(s) moved from \"{dlq}\""
            )?;
            Ok(())
        }
        Response::RedriveResult { error_code, .. } => Err(redrive_error(dlq, error_code, "")),
        Response::Error { code, message, .. } => Err(redrive_error(dlq, code, &message)),
        other => Err(unexpected(&other)),
    }
}

fn redrive_error(dlq: &str, code: ErrorCode, message: &str) -> CliError {
    match code {
        ErrorCode::QueueNotFound => queue_missing(dlq),
        ErrorCode::NotADLQ => CliError::sentence(format!(
            "queue \"{dlq}\" is not a dead-letter queue (redrive takes a name ending in .dlq)"
        )),
        ErrorCode::ParentQueueNotFound => {
            let parent = dlq.strip_suffix(".dlq").unwrap_or(dlq);
            CliError::sentence(format!(
                "the parent queue \"{parent}\" of \"{dlq}\" does not exist"
            ))
        }
        _ => CliError::server(code, message),
    }
}

// ---------------------------------------------------------------------------------------------
// auth

fn auth(
    command: AuthCommand,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Parse local input before connecting, so a typo never needs a server.
    let permissions = match &command {
        AuthCommand::Acl(AclCommand::Set { perms, .. }) => {
            let mut seen = std::collections::HashSet::new();
            let mut unique = Vec::with_capacity(perms.len());
            for permission in perms.iter().map(|p| parse_permission(p)) {
                let permission = permission?;
                // A permission given twice is sent (and stored, and counted) once.
                if seen.insert((permission.kind.clone(), permission.pattern.clone())) {
                    unique.push(permission);
                }
            }
            unique
        }
        _ => Vec::new(),
    };
    if let AuthCommand::Create { expires_at, .. } = &command {
        check_expiry(*expires_at, now_unix_ms())?;
    }
    let mut connection = Connection::open(target)?;
    match command {
        AuthCommand::Create {
            name,
            expires_at,
            superadmin,
        } => {
            let reply = connection.call(&Request::CreateApiKey {
                name: name.as_str().into(),
                expires_at_ms: expires_at,
                is_superadmin: superadmin,
            })?;
            match reply {
                Response::CreateApiKeyResult {
                    error_code: ErrorCode::Ok,
                    key_id,
                    key,
                    is_superadmin,
                } => {
                    if output == Output::Json {
                        return print_json(
                            out,
                            &created_key_json(&name, &key_id, &key, is_superadmin),
                        );
                    }
                    write!(
                        out,
                        "{}",
                        created_key_text(&name, &key_id, &key, is_superadmin)
                    )?;
                    Ok(())
                }
                Response::CreateApiKeyResult { error_code, .. } => {
                    Err(CliError::server(error_code, ""))
                }
                other => Err(unexpected(&other)),
            }
        }
        AuthCommand::Revoke { id } => {
            let reply = connection.call(&Request::RevokeApiKey {
                key_id: id.as_str().into(),
            })?;
            match reply {
                Response::RevokeApiKeyResult {
                    error_code: ErrorCode::Ok,
                } => {
                    writeln!(out, "Revoked API key \"{id}\"")?;
                    Ok(())
                }
                Response::RevokeApiKeyResult { error_code } => Err(key_error(&id, error_code)),
                other => Err(unexpected(&other)),
            }
        }
        AuthCommand::List => {
            let keys = match connection.call(&Request::ListApiKeys)? {
                Response::ListApiKeysResult {
                    error_code: ErrorCode::Ok,
                    keys,
                } => keys,
                Response::ListApiKeysResult { error_code, .. } => {
                    return Err(CliError::server(error_code, ""));
                }
                other => return Err(unexpected(&other)),
            };
            let now_ms = now_unix_ms();
            if output == Output::Json {
                return print_json(out, &keys_json(&keys, now_ms));
            }
            write!(out, "{}", keys_text(&keys, now_ms))?;
            Ok(())
        }
        AuthCommand::Acl(AclCommand::Set { id, .. }) => {
            let count = permissions.len();
            let reply = connection.call(&Request::SetAcl {
                key_id: id.as_str().into(),
                permissions,
            })?;
            match reply {
                Response::SetAclResult {
                    error_code: ErrorCode::Ok,
                } => {
                    writeln!(out, "Set {count} permission(s) on API key \"{id}\"")?;
                    Ok(())
                }
                Response::SetAclResult { error_code } => Err(key_error(&id, error_code)),
                other => Err(unexpected(&other)),
            }
        }
        AuthCommand::Acl(AclCommand::Get { id }) => {
            let (is_superadmin, permissions) = match connection.call(&Request::GetAcl {
                key_id: id.as_str().into(),
            })? {
                Response::GetAclResult {
                    error_code: ErrorCode::Ok,
                    is_superadmin,
                    permissions,
                    ..
                } => (is_superadmin, permissions),
                Response::GetAclResult { error_code, .. } => {
                    return Err(key_error(&id, error_code));
                }
                other => return Err(unexpected(&other)),
            };
            if output == Output::Json {
                return print_json(out, &acl_json(&id, is_superadmin, &permissions));
            }
            write!(out, "{}", acl_text(&id, is_superadmin, &permissions))?;
            Ok(())
        }
    }
}

/// `--expires-at` must be 0 (never) or a Unix time in milliseconds that is still ahead.
fn check_expiry(expires_at: u64, now_ms: u64) -> Result<(), CliError> {
    if expires_at != 0 && expires_at <= now_ms {
        return Err(CliError::Input(format!(
            "--expires-at {expires_at} is in the past ({}); give a later Unix time in milliseconds (not seconds), or 0 for never",
            utc_text(expires_at)
        )));
    }
    Ok(())
}

fn key_error(id: &str, code: ErrorCode) -> CliError {
    match code {
        ErrorCode::ApiKeyNotFound => CliError::sentence(format!("no API key has id \"{id}\"")),
        _ => CliError::server(code, ""),
    }
}

/// The permission kinds of wire §11.4.
pub const PERMISSION_KINDS: [&str; 3] = ["produce", "consume", "admin"];

/// `KIND:PATTERN` → a permission, checked here so that a typo never reaches the server: KIND is
/// one of [`PERMISSION_KINDS`], PATTERN is `*`, an exact queue name, or `<prefix>.*`.
pub fn parse_permission(text: &str) -> Result<Permission, CliError> {
    let Some((kind, pattern)) = text.split_once(':') else {
        return Err(CliError::Input(format!(
            "permission \"{text}\" is not KIND:PATTERN (e.g. produce:orders, consume:orders.*, admin:*)"
        )));
    };
    if !PERMISSION_KINDS.contains(&kind) {
        return Err(CliError::Input(format!(
            "unknown permission kind \"{kind}\" in \"{text}\": the kinds are produce, consume and admin"
        )));
    }
    if let Some(reason) = pattern_problem(pattern) {
        return Err(CliError::Input(format!(
            "invalid pattern \"{pattern}\" in \"{text}\": {reason}; a pattern is *, a queue name, or PREFIX.*"
        )));
    }
    Ok(Permission {
        kind: kind.into(),
        pattern: pattern.into(),
    })
}

/// Why `pattern` is not `*`, an exact name, or `<prefix>.*`; `None` when it is one of them.
fn pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        return Some("it is empty");
    }
    if pattern.trim() != pattern {
        return Some("it starts or ends with white space");
    }
    if pattern == "*" {
        return None;
    }
    let name = pattern.strip_suffix(".*").unwrap_or(pattern);
    if name.is_empty() {
        return Some("the prefix before .* is empty");
    }
    if name.contains('*') {
        return Some("* may only be the whole pattern or follow the last \".\"");
    }
    None
}

/// The lines printed once when a key is created.
pub fn created_key_text(name: &str, key_id: &str, key: &str, superadmin: bool) -> String {
    format!(
        "Created API key \"{}\"\n\
         Key ID:     {}\n\
         Token:      {}\n\
         Superadmin: {}\n\
         The token is shown only now and cannot be retrieved later; store it somewhere safe.\n",
        one_line(name),
        one_line(key_id),
        one_line(key),
        yes_no(superadmin)
    )
}

fn created_key_json(name: &str, key_id: &str, key: &str, superadmin: bool) -> Value {
    json!({ "name": name, "id": key_id, "token": key, "superadmin": superadmin })
}

/// The current time in Unix milliseconds, to mark expired keys in `auth list`.
fn now_unix_ms() -> u64 {
    // The CLI's one wall-clock read: output formatting only, not logic under test.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix milliseconds as RFC 3339 UTC to the second: `2026-12-04T05:10:03Z`.
pub fn utc_text(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (the
/// well-known era/day-of-era arithmetic over 400-year cycles).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn key_expired(key: &ApiKeyInfo, now_ms: u64) -> bool {
    key.expires_at_ms != 0 && key.expires_at_ms <= now_ms
}

/// `auth list` as text; `now_ms` decides which keys are marked expired.
pub fn keys_text(keys: &[ApiKeyInfo], now_ms: u64) -> String {
    if keys.is_empty() {
        return "No API keys found.\n".to_owned();
    }
    let mut table = Table::new(&["KEY_ID", "NAME", "CREATED", "EXPIRES", "SUPERADMIN"]);
    for key in keys {
        let expires = if key.expires_at_ms == 0 {
            "never".to_owned()
        } else if key_expired(key, now_ms) {
            format!("{} (expired)", utc_text(key.expires_at_ms))
        } else {
            utc_text(key.expires_at_ms)
        };
        table.row(vec![
            key.key_id.to_string(),
            key.name.to_string(),
            utc_text(key.created_at_ms),
            expires,
            yes_no(key.is_superadmin).to_owned(),
        ]);
    }
    table.render()
}

fn keys_json(keys: &[ApiKeyInfo], now_ms: u64) -> Value {
    Value::Array(
        keys.iter()
            .map(|k| {
                json!({
                    "id": &*k.key_id,
                    "name": &*k.name,
                    "created_at_ms": k.created_at_ms,
                    "expires_at_ms": k.expires_at_ms,
                    "expired": key_expired(k, now_ms),
                    "superadmin": k.is_superadmin,
                })
            })
            .collect(),
    )
}

/// `auth acl get` as text.
pub fn acl_text(id: &str, superadmin: bool, permissions: &[Permission]) -> String {
    let mut text = format!("API key \"{id}\"\nSuperadmin: {}\n", yes_no(superadmin));
    if permissions.is_empty() {
        text.push_str("No permissions.\n");
    } else {
        let mut table = Table::new(&["KIND", "PATTERN"]);
        for p in permissions {
            table.row(vec![p.kind.to_string(), p.pattern.to_string()]);
        }
        text.push_str(&table.render());
    }
    text
}

fn acl_json(id: &str, superadmin: bool, permissions: &[Permission]) -> Value {
    json!({
        "id": id,
        "superadmin": superadmin,
        "permissions": permissions.iter().map(|p| json!({
            "kind": &*p.kind,
            "pattern": &*p.pattern,
        })).collect::<Vec<_>>(),
    })
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

// ---------------------------------------------------------------------------------------------
// enqueue and consume

fn enqueue(
    queue: &str,
    headers: &[String],
    payload: Option<&str>,
    file: Option<&Path>,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let headers = parse_headers(headers)?;
    let payload = match (payload, file) {
        (Some(text), _) => Bytes::copy_from_slice(text.as_bytes()),
        (None, Some(path)) => Bytes::from(
            std::fs::read(path)
                .map_err(|e| CliError::Input(format!("cannot read \"{}\": {e}", path.display())))?,
        ),
        (None, None) => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(CliError::Input(
                    "no payload: give --payload TEXT or --file PATH, or pipe it on stdin"
                        .to_owned(),
                ));
            }
            let mut data = Vec::new();
            stdin
                .read_to_end(&mut data)
                .map_err(|e| CliError::Input(format!("cannot read the payload from stdin: {e}")))?;
            Bytes::from(data)
        }
    };
    let mut connection = Connection::open(target)?;
    let reply = connection.call(&Request::Enqueue {
        messages: vec![EnqueueMessage {
            queue: queue.into(),
            headers,
            payload,
        }],
    })?;
    let result = match reply {
        Response::EnqueueResult { results } => results
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Protocol("an EnqueueResult without a result".to_owned()))?,
        Response::Error { code, message, .. } => return Err(queue_error(queue, code, &message)),
        other => return Err(unexpected(&other)),
    };
    if result.error_code == ErrorCode::InvalidFrame && !result.message_id.is_empty() {
        // Per-message refusals (payload over the cap, too many headers) carry the reason.
        return Err(CliError::sentence(format!(
            "the message was refused: {}",
            result.message_id
        )));
    }
    if result.error_code != ErrorCode::Ok {
        return Err(queue_error(queue, result.error_code, ""));
    }
    if output == Output::Json {
        return print_json(out, &json!({ "message_id": &*result.message_id }));
    }
    writeln!(out, "{}", result.message_id)?;
    Ok(())
}

/// What to do with each consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack(String),
    /// Neither: the lease is released when the connection closes (a failed attempt).
    Leave,
}

#[derive(Debug)]
struct ConsumeOptions {
    count: u64,
    settle: Settle,
    /// Stop when no message arrives for this long; `None` waits forever.
    idle: Option<Duration>,
}

fn consume(
    queue: &str,
    options: &ConsumeOptions,
    target: &Target,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut connection = Connection::open(target)?;
    let subscription = connection.send(&Request::Consume {
        queue: queue.into(),
    })?;
    match connection.reply_to(subscription)? {
        Response::ConsumeOk { .. } => {}
        Response::Error { code, message, .. } => return Err(queue_error(queue, code, &message)),
        other => return Err(unexpected(&other)),
    }
    let mut received = Vec::new();
    let mut count = 0_u64;
    while count < options.count {
        connection.set_read_limit(options.idle)?;
        let Some(message) = connection.next_delivery(subscription)? else {
            break;
        };
        count += 1;
        if count == options.count {
            // Stop deliveries before settling the last one, so a nacked (retried) message is
            // not delivered to us again only to be released when we exit.
            connection.cancel(subscription)?;
        }
        connection.set_read_limit(Some(REPLY_LIMIT))?;
        let settled = settle(&mut connection, &message, &options.settle)?;
        if output == Output::Json {
            received.push(message_json(&message, settled));
        } else {
            write!(out, "{}", message_text(&message, settled))?;
            out.flush()?;
        }
    }
    if output == Output::Json {
        return print_json(out, &Value::Array(received));
    }
    if count == 0 {
        let waited = options.idle.map_or(0, |d| d.as_millis());
        writeln!(out, "No messages received within {waited} ms.")?;
    }
    Ok(())
}

/// Acks or nacks `message` on this connection; the word for the output, if any.
fn settle(
    connection: &mut Connection,
    message: &DeliveryMessage,
    how: &Settle,
) -> Result<Option<&'static str>, CliError> {
    let (request, word) = match how {
        Settle::Leave => return Ok(None),
        Settle::Ack => (
            Request::Ack {
                items: vec![AckItem {
                    queue: message.queue.clone(),
                    message_id: message.message_id.clone(),
                }],
            },
            "acked",
        ),
        Settle::Nack(error) => (
            Request::Nack {
                items: vec![NackItem {
                    queue: message.queue.clone(),
                    message_id: message.message_id.clone(),
                    error: error.as_str().into(),
                }],
            },
            "nacked",
        ),
    };
    let code = match connection.call(&request)? {
        Response::AckResult { results } | Response::NackResult { results } => {
            results.first().copied().unwrap_or(ErrorCode::InternalError)
        }
        other => return Err(unexpected(&other)),
    };
    if code == ErrorCode::Ok {
        Ok(Some(word))
    } else {
        Err(CliError::sentence(format!(
            "message {} was received but could not be {word}: {}",
            message.message_id,
            phrase(code)
        )))
    }
}

/// The payload as text when it is UTF-8, else as hex; and which one it is.
pub fn payload_text(payload: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => {
            let mut hex = String::with_capacity(payload.len() * 2);
            for byte in payload {
                hex.push_str(&format!("{byte:02x}"));
            }
            (hex, "hex")
        }
    }
}

/// `text` on one line: newlines, tabs and other control characters escaped (`\n`, `\t`,
/// `\u{1b}`), everything else as is.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() || is_bidi_control(c) => {
                line.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => line.push(c),
        }
    }
    line
}

/// Unicode bidirectional controls, which reorder how a terminal shows the text around them
/// (`report\u{202e}txt.exe`): escaped like control characters.
/// True for the characters [`one_line`] escapes besides `\\`: controls and bidi controls.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One consumed message as text lines.
pub fn message_text(message: &DeliveryMessage, settled: Option<&str>) -> String {
    let headers = if message.headers.is_empty() {
        "(none)".to_owned()
    } else {
        message
            .headers
            .iter()
            .map(|(k, v)| format!("{}={}", one_line(k), one_line(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (payload, encoding) = payload_text(&message.payload);
    let payload = if encoding == "hex" {
        format!("(hex) {payload}")
    } else {
        one_line(&payload)
    };
    let mut text = format!(
        "Message {}\n\
         \x20 queue:        {}\n\
         \x20 fairness key: {}\n\
         \x20 attempts:     {}\n\
         \x20 headers:      {headers}\n\
         \x20 payload:      {payload}\n",
        one_line(&message.message_id),
        one_line(&message.queue),
        one_line(&message.fairness_key),
        message.attempt_count,
    );
    if let Some(word) = settled {
        text.push_str(&format!("  {word}\n"));
    }
    text
}

fn message_json(message: &DeliveryMessage, settled: Option<&str>) -> Value {
    let headers: serde_json::Map<String, Value> = message
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(&**v)))
        .collect();
    let (payload, encoding) = payload_text(&message.payload);
    json!({
        "id": &*message.message_id,
        "queue": &*message.queue,
        "fairness_key": &*message.fairness_key,
        "weight": message.weight,
        "throttle_keys": message.throttle_keys.iter().map(|k| &**k).collect::<Vec<&str>>(),
        "attempts": message.attempt_count,
        "enqueued_at_ms": message.enqueued_at,
        "leased_at_ms": message.leased_at,
        "headers": headers,
        "payload": payload,
        "payload_encoding": encoding,
        "settled": settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_expiry_is_refused_before_sending() {
        let now = 1_767_225_600_000;
        assert!(check_expiry(0, now).is_ok());
        assert!(check_expiry(now + 1, now).is_ok());
        let seconds = check_expiry(1_767_225_600, now).unwrap_err().to_string();
        assert!(seconds.contains("not seconds"), "{seconds}");
        assert!(check_expiry(now, now).is_err());
    }

    #[test]
    fn permissions_parse_kind_and_pattern() {
        for (text, kind, pattern) in [
            ("produce:orders", "produce", "orders"),
            ("consume:orders.*", "consume", "orders.*"),
            ("admin:*", "admin", "*"),
            ("produce:a.b.*", "produce", "a.b.*"),
            ("consume:tenant:eu", "consume", "tenant:eu"),
            ("produce:orders.dlq", "produce", "orders.dlq"),
        ] {
            let permission = parse_permission(text).unwrap();
            assert_eq!(
                (&*permission.kind, &*permission.pattern),
                (kind, pattern),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_permissions_name_the_bad_part() {
        for (text, needle) in [
            ("produce", "is not KIND:PATTERN"),
            ("", "is not KIND:PATTERN"),
            ("write:orders", "unknown permission kind \"write\""),
            ("Produce:orders", "unknown permission kind \"Produce\""),
            (":orders", "unknown permission kind \"\""),
            ("admin:", "invalid pattern \"\""),
            ("admin:.*", "the prefix before .* is empty"),
            ("admin:**", "* may only be"),
            ("admin:a*", "* may only be"),
            ("admin:*.orders", "* may only be"),
            ("admin:a.*.b", "* may only be"),
            ("admin:a*.*", "* may only be"),
            ("admin: orders", "white space"),
        ] {
            let error = parse_permission(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn utc_times_are_rfc3339() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(4_107_542_399_999), "2100-02-28T23:59:59Z");
        assert_eq!(utc_text(4_107_542_400_000), "2100-03-01T00:00:00Z");
    }

    fn key(id: &str, expires_at_ms: u64, superadmin: bool) -> ApiKeyInfo {
        ApiKeyInfo {
            key_id: id.into(),
            name: format!("{id}-name").as_str().into(),
            created_at_ms: 1_700_000_000_000,
            expires_at_ms,
            is_superadmin: superadmin,
        }
    }

    #[test]
    fn key_lists_mark_expired_keys() {
        let now = 1_800_000_000_000;
        let text = keys_text(
            &[
                key("a", 0, true),
                key("b", now + 1, false),
                key("c", now, false),
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("KEY_ID"), "{text}");
        assert!(
            lines[1].contains("never") && lines[1].ends_with("yes"),
            "{text}"
        );
        assert!(!lines[2].contains("expired"), "{text}");
        assert!(lines[3].contains("(expired)"), "{text}");
        assert_eq!(keys_text(&[], now), "No API keys found.\n");
        let json = keys_json(&[key("c", now, false)], now);
        assert_eq!(json[0]["expired"], true);
        assert_eq!(json[0]["expires_at_ms"], now);
    }

    #[test]
    fn created_keys_show_the_token_once_with_a_warning() {
        let text = created_key_text("ci", "id-1", "tok", false);
        assert_eq!(
            text,
            "Created API key \"ci\"\nKey ID:     id-1\nToken:      tok\nSuperadmin: no\nThe token is shown only now and cannot be retrieved later; store it somewhere safe.\n"
        );
    }

    #[test]
    fn acls_print_a_table_or_no_permissions() {
        let permissions = vec![
            Permission {
                kind: "produce".into(),
                pattern: "orders".into(),
            },
            Permission {
                kind: "admin".into(),
                pattern: "*".into(),
            },
        ];
        assert_eq!(
            acl_text("k", true, &permissions),
            "API key \"k\"\nSuperadmin: yes\nKIND     PATTERN\nproduce  orders\nadmin    *\n"
        );
        assert_eq!(
            acl_text("k", false, &[]),
            "API key \"k\"\nSuperadmin: no\nNo permissions.\n"
        );
        let json = acl_json("k", false, &permissions);
        assert_eq!(json["permissions"][1]["pattern"], "*");
    }
}
