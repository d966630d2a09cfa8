//! `fila top` without a terminal: the sampler turns replies into rates and shares, and the
//! renderer (a pure function of a snapshot) draws the expected cells on ratatui's TestBackend.
//! One test feeds real ListQueues/GetStats replies from a real server through both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::TestServer;
use common::client::Client;
use fila::cli::top::{
    Action, QueueDetail, QueueRow, Sampler, Snapshot, ThrottleRow, action, draw, snapshot::KeyRow,
};
use fila_wire::{ErrorCode, KeyStats, QueueStats, QueueSummary, Request, Response, ThrottleStats};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Draws `snapshot` on a `width` × `height` test terminal; the screen as lines of text.
fn screen(snapshot: &Snapshot, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    draw(&mut terminal, snapshot).unwrap();
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer.cell((x, y)).unwrap().symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

/// The one line containing `needle`, split into words (borders dropped).
fn line_with(screen: &[String], needle: &str) -> Vec<String> {
    let matches: Vec<&String> = screen.iter().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        matches.len(),
        1,
        "{needle:?} on {} lines:\n{}",
        matches.len(),
        screen.join("\n")
    );
    matches[0]
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn summary(name: &str, depth: u64, in_flight: u64, consumers: u32) -> QueueSummary {
    QueueSummary {
        name: name.into(),
        depth,
        in_flight,
        active_consumers: consumers,
        leader_node_id: 0,
    }
}

fn stats(keys: &[(&str, u64, i64, u32)], throttles: &[(&str, f64, f64, f64)]) -> QueueStats {
    QueueStats {
        error_code: ErrorCode::Ok,
        depth: keys.iter().map(|k| k.1).sum(),
        in_flight: 0,
        active_fairness_keys: keys.len() as u64,
        active_consumers: 2,
        quantum: 1000,
        leader_node_id: 0,
        replication_count: 0,
        per_key_stats: keys
            .iter()
            .map(|(key, pending, deficit, weight)| KeyStats {
                key: (*key).into(),
                pending_count: *pending,
                current_deficit: *deficit,
                weight: *weight,
            })
            .collect(),
        per_throttle_stats: throttles
            .iter()
            .map(|(key, tokens, rate, burst)| ThrottleStats {
                key: (*key).into(),
                tokens: *tokens,
                rate_per_second: *rate,
                burst: *burst,
            })
            .collect(),
        extension: None,
    }
}

fn full_snapshot() -> Snapshot {
    Snapshot {
        addr: "127.0.0.1:5555".to_owned(),
        interval_ms: 1000,
        queues: vec![
            QueueRow {
                name: "emails".to_owned(),
                depth: 7,
                in_flight: 1,
                consumers: 0,
                drain_per_second: None,
            },
            QueueRow {
                name: "orders".to_owned(),
                depth: 120,
                in_flight: 8,
                consumers: 3,
                drain_per_second: Some(-12.5),
            },
        ],
        selected: Some("orders".to_owned()),
        detail: Some(QueueDetail {
            name: "orders".to_owned(),
            depth: 120,
            in_flight: 8,
            active_keys: 2,
            consumers: 3,
            quantum: 1000,
            keys: vec![
                KeyRow {
                    key: "tenant-a".to_owned(),
                    pending: 80,
                    deficit: -2,
                    weight: 1,
                    share: Some(0.25),
                    fair_share: 0.25,
                },
                KeyRow {
                    key: "tenant-b".to_owned(),
                    pending: 32,
                    deficit: 5,
                    weight: 3,
                    share: None,
                    fair_share: 0.75,
                },
            ],
            throttles: vec![
                ThrottleRow {
                    key: "api".to_owned(),
                    tokens: 0.5,
                    rate_per_second: 10.0,
                    burst: 100.0,
                    limiting: true,
                },
                ThrottleRow {
                    key: "db".to_owned(),
                    tokens: 40.0,
                    rate_per_second: 2.5,
                    burst: 50.0,
                    limiting: false,
                },
            ],
        }),
        detail_error: None,
        error: None,
    }
}

#[test]
fn render_draws_queues_keys_and_throttles() {
    let screen = screen(&full_snapshot(), 120, 30);
    assert!(screen[0].starts_with("fila top - 127.0.0.1:5555 - every 1000 ms - q quits"));
    assert!(screen.iter().any(|l| l.contains(" Queues (2) ")));
    assert_eq!(
        line_with(&screen, "IN_FLIGHT"),
        ["NAME", "DEPTH", "IN_FLIGHT", "CONSUMERS", "DRAIN/s"]
    );
    assert_eq!(line_with(&screen, "emails"), ["emails", "7", "1", "0", "-"]);
    // The selected queue is marked with `>` (readable without colours).
    assert_eq!(
        line_with(&screen, "-12.5"),
        [">", "orders", "120", "8", "3", "-12.5"]
    );
    assert!(
        screen.iter().any(|l| l.contains(
            " Queue \"orders\": depth 120, in flight 8, active keys 2, consumers 3, quantum 1000 "
        )),
        "{}",
        screen.join("\n")
    );
    assert_eq!(
        line_with(&screen, "PENDING"),
        ["KEY", "PENDING", "DEFICIT", "WEIGHT", "SHARE", "FAIR"]
    );
    assert_eq!(
        line_with(&screen, "tenant-a"),
        ["tenant-a", "80", "-2", "1", "25%", "25%"]
    );
    assert_eq!(
        line_with(&screen, "tenant-b"),
        ["tenant-b", "32", "5", "3", "-", "75%"]
    );
    assert_eq!(
        line_with(&screen, "LIMITING"),
        ["KEY", "TOKENS", "RATE/s", "BURST", "LIMITING"]
    );
    assert_eq!(
        line_with(&screen, "api"),
        ["api", "0.50", "10", "100", "yes"]
    );
    assert_eq!(line_with(&screen, "db"), ["db", "40", "2.50", "50", "no"]);
    assert!(screen[29].starts_with("DRAIN/s: depth decrease per second"));
}

#[test]
fn render_shows_empty_states_and_errors() {
    let empty = Snapshot {
        addr: "h:1".to_owned(),
        interval_ms: 500,
        ..Snapshot::default()
    };
    let screen1 = screen(&empty, 80, 20);
    assert!(screen1.iter().any(|l| l.contains("No queues found.")));
    assert!(screen1.iter().any(|l| l.contains("no queue selected")));

    let mut failing = full_snapshot();
    failing.error = Some("the server at h:1 closed the connection before answering".to_owned());
    let screen2 = screen(&failing, 120, 30);
    assert_eq!(
        screen2[29].trim_end(),
        "Error: the server at h:1 closed the connection before answering (retrying)"
    );
    // The last good data stays on screen.
    assert!(screen2.iter().any(|l| l.contains("tenant-a")));

    let mut missing = full_snapshot();
    missing.selected = Some("gone".to_owned());
    missing.detail = None;
    missing.detail_error = Some("queue \"gone\" does not exist".to_owned());
    let screen3 = screen(&missing, 120, 30);
    assert!(
        screen3
            .iter()
            .any(|l| l.contains("queue \"gone\" does not exist"))
    );
    assert!(!screen3.iter().any(|l| l.contains('>')));

    let mut no_keys = full_snapshot();
    if let Some(detail) = &mut no_keys.detail {
        detail.keys.clear();
        detail.throttles.clear();
    }
    let screen4 = screen(&no_keys, 120, 30);
    assert!(
        screen4
            .iter()
            .any(|l| l.contains("No fairness keys with pending messages."))
    );
    assert!(screen4.iter().any(|l| l.contains("No throttle keys.")));
}

#[test]
fn render_fits_a_small_terminal_without_panicking() {
    for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24)] {
        let _ = screen(&full_snapshot(), w, h);
    }
}

#[test]
fn sampler_computes_drain_rates_and_shares_between_samples() {
    let mut sampler = Sampler::new();
    let first_stats = stats(
        &[("a", 10, 0, 1), ("b", 10, 0, 3)],
        &[("api", 0.0, 1.0, 5.0)],
    );
    let (rows, detail) = sampler.sample(
        &[summary("q", 20, 0, 1), summary("p", 5, 0, 0)],
        Some(("q", &first_stats)),
        None,
    );
    assert_eq!(rows[0].name, "p", "rows are sorted by name");
    assert!(rows.iter().all(|r| r.drain_per_second.is_none()));
    let detail = detail.unwrap();
    assert!(detail.keys.iter().all(|k| k.share.is_none()));
    assert_eq!(detail.keys[0].fair_share, 0.25);
    assert_eq!(detail.keys[1].fair_share, 0.75);
    assert!(detail.throttles[0].limiting);

    // Two seconds later: q drained 6 (a: 4, b: 2), p grew by 3.
    let second_stats = stats(&[("a", 6, 1, 1), ("b", 8, 0, 3)], &[("api", 4.0, 1.0, 5.0)]);
    let (rows, detail) = sampler.sample(
        &[summary("q", 14, 2, 1), summary("p", 8, 0, 0)],
        Some(("q", &second_stats)),
        Some(2.0),
    );
    assert_eq!(rows[0].drain_per_second, Some(-1.5));
    assert_eq!(rows[1].drain_per_second, Some(3.0));
    let detail = detail.unwrap();
    let a = detail.keys.iter().find(|k| k.key == "a").unwrap();
    let b = detail.keys.iter().find(|k| k.key == "b").unwrap();
    assert!((a.share.unwrap() - 4.0 / 6.0).abs() < 1e-9);
    assert!((b.share.unwrap() - 2.0 / 6.0).abs() < 1e-9);
    assert!(!detail.throttles[0].limiting);
    // Most pending first.
    assert_eq!(detail.keys[0].key, "b");
}

#[test]
fn keys_q_esc_and_ctrl_c_quit() {
    let press = |code, modifiers| KeyEvent::new(code, modifiers);
    assert_eq!(
        action(&press(KeyCode::Char('q'), KeyModifiers::NONE)),
        Action::Quit
    );
    assert_eq!(
        action(&press(KeyCode::Esc, KeyModifiers::NONE)),
        Action::Quit
    );
    assert_eq!(
        action(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
    assert_eq!(
        action(&press(KeyCode::Char('c'), KeyModifiers::NONE)),
        Action::None
    );
    assert_eq!(action(&press(KeyCode::Up, KeyModifiers::NONE)), Action::Up);
    assert_eq!(
        action(&press(KeyCode::Char('j'), KeyModifiers::NONE)),
        Action::Down
    );
    let mut release = press(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert_eq!(action(&release), Action::None);
}

#[test]
fn real_server_replies_render_through_the_sampler() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr);
    client.create_queue("orders", 0);
    client.enqueue(&[("orders", b"1"), ("orders", b"2"), ("orders", b"3")]);
    match client.call(&Request::SetConfig {
        key: "throttle.api".into(),
        value: "0,0".into(),
    }) {
        Response::SetConfigResult {
            error_code: ErrorCode::Ok,
        } => {}
        other => panic!("{other:?}"),
    }
    let queues = match client.call(&Request::ListQueues) {
        Response::ListQueuesResult { queues, .. } => queues,
        other => panic!("{other:?}"),
    };
    let stats = client.stats("orders");
    let mut sampler = Sampler::new();
    let (rows, detail) = sampler.sample(&queues, Some(("orders", &stats)), None);
    let snapshot = Snapshot {
        addr: server.addr.to_string(),
        interval_ms: 1000,
        queues: rows,
        selected: Some("orders".to_owned()),
        detail,
        detail_error: None,
        error: None,
    };
    let screen = screen(&snapshot, 120, 30);
    assert_eq!(
        line_with(&screen, "> "),
        [">", "orders", "3", "0", "0", "-"]
    );
    assert_eq!(
        line_with(&screen, "orders.dlq"),
        ["orders.dlq", "0", "0", "0", "-"]
    );
    assert_eq!(
        line_with(&screen, "default"),
        ["default", "3", "0", "1", "-", "100%"]
    );
    assert_eq!(line_with(&screen, "api"), ["api", "0", "0", "0", "yes"]);
}
