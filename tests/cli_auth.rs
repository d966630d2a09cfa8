//! `fila auth …` and `--api-key` end to end: the real CLI against the real server with
//! authentication on. Creates keys, grants and reads permissions, uses a tenant key for the
//! commands it may and may not run, and revokes it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use common::{ServerOptions, TestServer};

const BOOT: &str = "cli-bootstrap-secret";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn fila(server: &TestServer, key: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fila"));
    command.arg("--addr").arg(server.addr.to_string());
    if let Some(key) = key {
        command.arg("--api-key").arg(key);
    }
    let output = command.args(args).output().unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[track_caller]
fn ok(run: Run) -> String {
    assert!(run.ok, "failed: {}", run.stderr);
    run.stdout
}

#[track_caller]
fn error(run: Run) -> String {
    assert!(!run.ok, "succeeded: {}", run.stdout);
    let line = run.stderr.trim_end().to_owned();
    assert!(line.starts_with("Error: "), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    line
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

#[test]
fn operators_manage_keys_and_tenants_use_them() {
    let server = TestServer::start_with(ServerOptions {
        env: vec![("FILA_BOOTSTRAP_APIKEY".to_owned(), BOOT.to_owned())],
        ..ServerOptions::default()
    });
    let boot = Some(BOOT);
    // Without a key, every command is refused with a hint.
    let refused = error(fila(&server, None, &["queue", "list"]));
    assert!(refused.contains("--api-key"), "{refused}");
    let wrong = error(fila(&server, Some("wrong"), &["queue", "list"]));
    assert!(wrong.contains("API key"), "{wrong}");

    let created = ok(fila(
        &server,
        boot,
        &["auth", "create", "--name", "orders-svc"],
    ));
    assert!(
        created.starts_with("Created API key \"orders-svc\""),
        "{created}"
    );
    let id = field(&created, "Key ID:").to_owned();
    let token = field(&created, "Token:").to_owned();
    assert_eq!(token.len(), 32);

    let set = ok(fila(
        &server,
        boot,
        &[
            "auth",
            "acl",
            "set",
            &id,
            "--perm",
            "produce:orders.*",
            "--perm",
            "consume:orders.*",
            "--perm",
            "admin:orders.*",
        ],
    ));
    assert_eq!(
        set.trim(),
        format!("Set 3 permission(s) on API key \"{id}\"")
    );
    let acl = ok(fila(&server, boot, &["auth", "acl", "get", &id]));
    assert!(acl.contains("produce  orders.*"), "{acl}");
    assert!(acl.contains("Superadmin: no"), "{acl}");
    let listed = ok(fila(&server, boot, &["auth", "list"]));
    assert!(
        listed.contains(&id) && listed.contains("orders-svc"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "tokens are never listed");

    // The tenant key works inside its patterns and nowhere else.
    let tenant = Some(token.as_str());
    ok(fila(&server, tenant, &["queue", "create", "orders.eu"]));
    let outside = error(fila(&server, tenant, &["queue", "create", "payments"]));
    assert!(
        outside.contains("admin permission on queue \"payments\""),
        "{outside}"
    );
    let global = error(fila(&server, tenant, &["queue", "list"]));
    assert!(global.contains("\"*\""), "{global}");
    ok(fila(
        &server,
        tenant,
        &["enqueue", "orders.eu", "--payload", "hi"],
    ));
    let bad_kind = error(fila(
        &server,
        boot,
        &["auth", "acl", "set", &id, "--perm", "write:*"],
    ));
    assert!(bad_kind.contains("write"), "{bad_kind}");

    let revoked = ok(fila(&server, boot, &["auth", "revoke", &id]));
    assert_eq!(revoked.trim(), format!("Revoked API key \"{id}\""));
    error(fila(&server, tenant, &["queue", "create", "orders.us"]));
    let again = error(fila(&server, boot, &["auth", "revoke", &id]));
    assert!(again.contains("not") || again.contains("no "), "{again}");
}
