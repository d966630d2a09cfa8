//! Drawing `fila top`: a pure function of a [`Snapshot`] onto a ratatui frame, so it can be
//! tested on a `TestBackend` without a server or a terminal. Plain text markers (`>` for the
//! selected queue, `yes` for a limiting throttle) so the view reads the same without colours.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::cli::commands::number;
use crate::cli::top::snapshot::{QueueDetail, Snapshot};

/// Draws `snapshot` over the whole frame.
pub fn render(frame: &mut Frame<'_>, snapshot: &Snapshot) {
    let [title, queues, keys, throttles, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(35),
        Constraint::Percentage(40),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(format!(
            "fila top - {} - every {} ms - q quits, Up/Down selects a queue",
            snapshot.addr, snapshot.interval_ms
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );
    render_queues(frame, queues, snapshot);
    match &snapshot.detail {
        Some(detail) => {
            render_keys(frame, keys, detail);
            render_throttles(frame, throttles, detail);
        }
        None => {
            let text = match (&snapshot.selected, &snapshot.detail_error) {
                (_, Some(error)) => error.clone(),
                (Some(name), None) => format!("waiting for statistics of \"{name}\""),
                (None, None) => "no queue selected".to_owned(),
            };
            frame.render_widget(
                Paragraph::new(text).block(Block::bordered().title(" Fairness keys ")),
                keys,
            );
            frame.render_widget(Block::bordered().title(" Throttle keys "), throttles);
        }
    }
    let status_line = match &snapshot.error {
        Some(error) => Line::styled(
            format!("Error: {error} (retrying)"),
            Style::new().fg(Color::Red),
        ),
        None => Line::raw(
            "DRAIN/s: depth decrease per second; SHARE: part of the pending decrease since the last refresh; FAIR: weight share",
        ),
    };
    frame.render_widget(Paragraph::new(status_line), status);
}

fn render_queues(frame: &mut Frame<'_>, area: Rect, snapshot: &Snapshot) {
    let title = format!(" Queues ({}) ", snapshot.queues.len());
    if snapshot.queues.is_empty() {
        frame.render_widget(
            Paragraph::new("No queues found.").block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let rows = snapshot.queues.iter().map(|q| {
        let selected = snapshot.selected.as_deref() == Some(q.name.as_str());
        let row = Row::new(vec![
            if selected {
                ">".to_owned()
            } else {
                String::new()
            },
            q.name.clone(),
            q.depth.to_string(),
            q.in_flight.to_string(),
            q.consumers.to_string(),
            q.drain_per_second.map_or_else(|| "-".to_owned(), rate),
        ]);
        if selected {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(header(&[
        "",
        "NAME",
        "DEPTH",
        "IN_FLIGHT",
        "CONSUMERS",
        "DRAIN/s",
    ]))
    .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn render_keys(frame: &mut Frame<'_>, area: Rect, detail: &QueueDetail) {
    let title = format!(
        " Queue \"{}\": depth {}, in flight {}, active keys {}, consumers {}, quantum {} ",
        detail.name,
        detail.depth,
        detail.in_flight,
        detail.active_keys,
        detail.consumers,
        detail.quantum
    );
    let block = Block::bordered().title(title);
    if detail.keys.is_empty() {
        frame.render_widget(
            Paragraph::new("No fairness keys with pending messages.").block(block),
            area,
        );
        return;
    }
    let rows = detail.keys.iter().map(|k| {
        Row::new(vec![
            k.key.clone(),
            k.pending.to_string(),
            k.deficit.to_string(),
            k.weight.to_string(),
            k.share.map_or_else(|| "-".to_owned(), percent),
            percent(k.fair_share),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(header(&[
        "KEY", "PENDING", "DEFICIT", "WEIGHT", "SHARE", "FAIR",
    ]))
    .block(block);
    frame.render_widget(table, area);
}

fn render_throttles(frame: &mut Frame<'_>, area: Rect, detail: &QueueDetail) {
    let block = Block::bordered().title(format!(" Throttle keys ({}) ", detail.throttles.len()));
    if detail.throttles.is_empty() {
        frame.render_widget(Paragraph::new("No throttle keys.").block(block), area);
        return;
    }
    let rows = detail.throttles.iter().map(|t| {
        let row = Row::new(vec![
            t.key.clone(),
            number(t.tokens),
            number(t.rate_per_second),
            number(t.burst),
            if t.limiting { "yes" } else { "no" }.to_owned(),
        ]);
        if t.limiting {
            row.style(Style::new().fg(Color::Yellow))
        } else {
            row
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(header(&["KEY", "TOKENS", "RATE/s", "BURST", "LIMITING"]))
    .block(block);
    frame.render_widget(table, area);
}

fn header(names: &[&'static str]) -> Row<'static> {
    Row::new(names.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

fn rate(value: f64) -> String {
    format!("{value:.1}")
}

fn percent(value: f64) -> String {
    format!("{:.0}%", value * 100.0)
}
