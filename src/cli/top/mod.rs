//! `fila top`: a live terminal view of the broker. Each refresh sends ListQueues and GetStats of
//! the selected queue on one connection (reconnecting after a failure), turns the replies into
//! a [`Snapshot`] ([`snapshot`]) and draws it ([`render`], a pure function of the snapshot).
//! Pacing is crossterm's event poll timeout; the one clock read is [`now`].
//!
//! The terminal is restored on every exit path and on panic (ratatui's `try_init` installs a
//! panic hook that restores it before the default hook prints).

pub mod render;
pub mod snapshot;

use std::time::{Duration, Instant};

use fila_wire::{QueueStats, QueueSummary, Request, Response};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::{DefaultTerminal, Terminal, backend::Backend};

pub use render::render;
pub use snapshot::{QueueDetail, QueueRow, Sampler, Snapshot, ThrottleRow};

use crate::cli::client::{Connection, Target};
use crate::cli::error::CliError;

/// The refresh loop's clock: the only place `fila` reads time.
#[allow(
    clippy::disallowed_methods,
    reason = "fila top paces its refreshes and computes rates from wall-clock intervals"
)]
fn now() -> Instant {
    Instant::now()
}

/// Runs the view until `q`, Esc or Ctrl-C. Fails before touching the terminal when the server
/// cannot be reached at start.
pub fn run(target: &Target, queue: Option<String>, interval: Duration) -> Result<(), CliError> {
    let connection = Connection::open(target)?;
    let mut terminal = ratatui::try_init().map_err(CliError::Terminal)?;
    let mut app = App::new(target, Some(connection), queue, interval);
    let result = app.run(&mut terminal);
    ratatui::restore();
    result
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave.
    Quit,
    /// Select the previous queue.
    Up,
    /// Select the next queue.
    Down,
    /// Nothing.
    None,
}

/// The action for a key event (`q`, Esc and Ctrl-C quit; arrows and j/k select).
pub fn action(key: &KeyEvent) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        _ => Action::None,
    }
}

struct App {
    target: Target,
    connection: Option<Connection>,
    interval: Duration,
    sampler: Sampler,
    snapshot: Snapshot,
    last_sample: Option<Instant>,
    /// The selection is the queue named on the command line (until Up/Down changes it).
    pinned: bool,
}

impl App {
    fn new(
        target: &Target,
        connection: Option<Connection>,
        queue: Option<String>,
        interval: Duration,
    ) -> App {
        App {
            target: target.clone(),
            connection,
            interval,
            sampler: Sampler::new(),
            snapshot: Snapshot {
                addr: target.addr.clone(),
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                selected: queue.clone(),
                ..Snapshot::default()
            },
            last_sample: None,
            pinned: queue.is_some(),
        }
    }

    fn run(&mut self, terminal: &mut DefaultTerminal) -> Result<(), CliError> {
        let mut next_refresh = now();
        loop {
            if now() >= next_refresh {
                self.refresh();
                next_refresh = now() + self.interval;
            }
            draw(terminal, &self.snapshot)?;
            let wait = next_refresh.saturating_duration_since(now());
            if !event::poll(wait).map_err(CliError::Terminal)? {
                continue;
            }
            // A resize or any other event just redraws at the top of the loop.
            if let Event::Key(key) = event::read().map_err(CliError::Terminal)? {
                match action(&key) {
                    Action::Quit => return Ok(()),
                    Action::Up => {
                        self.select(-1);
                        next_refresh = now();
                    }
                    Action::Down => {
                        self.select(1);
                        next_refresh = now();
                    }
                    Action::None => {}
                }
            }
        }
    }

    /// Moves the selection by `step` in the (sorted) queue list.
    fn select(&mut self, step: isize) {
        let names: Vec<&str> = self
            .snapshot
            .queues
            .iter()
            .map(|q| q.name.as_str())
            .collect();
        if names.is_empty() {
            return;
        }
        let current = self
            .snapshot
            .selected
            .as_deref()
            .and_then(|s| names.iter().position(|n| *n == s));
        let index = match current {
            Some(i) => i.saturating_add_signed(step).min(names.len() - 1),
            None => 0,
        };
        self.snapshot.selected = names.get(index).map(|n| (*n).to_owned());
        self.pinned = false;
        self.snapshot.detail = None;
        self.snapshot.detail_error = None;
    }

    /// One sample; a failure keeps the last data on screen and reconnects next time.
    fn refresh(&mut self) {
        match self.fetch() {
            Ok((queues, stats)) => {
                let taken = now();
                let elapsed = self
                    .last_sample
                    .map(|last| taken.saturating_duration_since(last).as_secs_f64());
                self.last_sample = Some(taken);
                let selected = self.snapshot.selected.clone();
                let stats_ref = match (&selected, &stats) {
                    (Some(name), Some(Ok(stats))) => Some((name.as_str(), stats)),
                    _ => None,
                };
                let (rows, detail) = self.sampler.sample(&queues, stats_ref, elapsed);
                self.snapshot.queues = rows;
                self.snapshot.detail = detail;
                self.snapshot.detail_error = match stats {
                    Some(Err(error)) => Some(error),
                    _ => None,
                };
                self.snapshot.error = None;
            }
            Err(error) => {
                self.connection = None;
                self.snapshot.error = Some(error.to_string());
            }
        }
    }

    /// ListQueues, then GetStats of the selected queue (choosing the first when none is).
    #[allow(clippy::type_complexity)]
    fn fetch(
        &mut self,
    ) -> Result<(Vec<QueueSummary>, Option<Result<QueueStats, String>>), CliError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            slot @ None => slot.insert(Connection::open(&self.target)?),
        };
        let mut queues = match connection.call(&Request::ListQueues)? {
            Response::ListQueuesResult { queues, .. } => queues,
            Response::Error { code, message, .. } => return Err(CliError::server(code, &message)),
            other => {
                return Err(CliError::Protocol(format!(
                    "unexpected {:?} reply",
                    other.opcode()
                )));
            }
        };
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        // A queue named on the command line stays selected (its detail then says it does not
        // exist); one picked from the list is replaced when it disappears.
        let gone = self
            .snapshot
            .selected
            .as_deref()
            .is_some_and(|s| !queues.iter().any(|q| &*q.name == s));
        if gone && !self.pinned {
            self.snapshot.selected = None;
        }
        if self.snapshot.selected.is_none() {
            self.snapshot.selected = queues.first().map(|q| q.name.to_string());
        }
        let Some(name) = self.snapshot.selected.clone() else {
            return Ok((queues, None));
        };
        let stats = match connection.call(&Request::GetStats {
            queue: name.as_str().into(),
        })? {
            Response::GetStatsResult(stats) => Ok(stats),
            Response::Error {
                code: fila_wire::ErrorCode::QueueNotFound,
                ..
            } => Err(format!("queue \"{name}\" does not exist")),
            Response::Error { code, message, .. } => {
                Err(CliError::server(code, &message).to_string())
            }
            other => {
                return Err(CliError::Protocol(format!(
                    "unexpected {:?} reply",
                    other.opcode()
                )));
            }
        };
        Ok((queues, Some(stats)))
    }
}

/// Draws one frame of `snapshot` on any backend.
pub fn draw<B: Backend>(terminal: &mut Terminal<B>, snapshot: &Snapshot) -> Result<(), CliError>
where
    B::Error: std::fmt::Display,
{
    terminal
        .draw(|frame| render(frame, snapshot))
        .map(|_| ())
        .map_err(|e| CliError::Terminal(std::io::Error::other(e.to_string())))
}
