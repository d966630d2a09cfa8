//! Starting the broker for a run: spawn `fila-server` on 127.0.0.1 with an ephemeral port, a
//! temporary data directory and a config file naming the durability mode; learn the address
//! from its start-up line; stop it (SIGTERM, then SIGKILL) when the run ends.
//!
//! This file only manages the process. It never links the server: the bench talks to it over
//! TCP like any client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use crate::error::{BenchError, Result};

/// The text of the server's start-up line; the bound address follows it.
const LISTENING: &str = "fila-server listening on ";
/// How long the server may take to print its start-up line.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// Stderr lines kept for error messages.
const LOG_LINES_MAX: usize = 50;

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `fila-server` binary.
    pub binary: PathBuf,
    /// `--shards`.
    pub shards: u32,
    /// `[storage] durability`: `process`, `fsync` or `none`.
    pub durability: String,
    /// Turns API-key auth on with this bootstrap key (`FILA_BOOTSTRAP_APIKEY`).
    pub bootstrap_apikey: Option<String>,
}

/// A running server; dropping it stops the process and removes its data directory.
pub struct ServerProcess {
    /// Where every shard listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server and waits for its start-up line.
    pub fn start(spec: &ServerSpec) -> Result<ServerProcess> {
        let failed = |detail: String| BenchError::ServerStart {
            binary: spec.binary.clone(),
            detail,
        };
        let dir = tempfile::Builder::new()
            .prefix("fila-bench-")
            .tempdir()
            .map_err(|error| failed(format!("temporary directory: {error}")))?;
        let config = dir.path().join("fila.toml");
        let text = format!("[storage]\ndurability = \"{}\"\n", spec.durability);
        std::fs::write(&config, text).map_err(|error| failed(format!("config file: {error}")))?;
        let mut command = Command::new(&spec.binary);
        if let Some(key) = &spec.bootstrap_apikey {
            command.env("FILA_BOOTSTRAP_APIKEY", key);
        }
        let mut child = command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--shards")
            .arg(spec.shards.to_string())
            .arg("--no-pin-cores")
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| failed(error.to_string()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err(failed("no stderr pipe".to_owned()));
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = drain_stderr(stderr, Arc::clone(&log));
        let mut server = ServerProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            log,
            _dir: dir,
        };
        match wait_for_address(&lines) {
            Some(addr) => {
                server.addr = addr;
                Ok(server)
            }
            None => Err(failed(format!(
                "no start-up line within {} s; stderr:\n{}",
                START_LIMIT.as_secs(),
                server.stderr()
            ))),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last stderr lines of the server, joined.
    pub fn stderr(&self) -> String {
        self.log
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = clock::now() + STOP_LIMIT;
        while clock::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            clock::sleep(Duration::from_millis(20));
        }
        eprintln!("fila-bench: server did not exit within 5 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the server's stderr until it closes (so the pipe never fills), keeping the last lines
/// and passing each line on to the start-up wait.
fn drain_stderr(
    stderr: std::process::ChildStderr,
    log: Arc<Mutex<Vec<String>>>,
) -> Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|line| line.ok()) {
            if let Ok(mut kept) = log.lock() {
                if kept.len() == LOG_LINES_MAX {
                    kept.remove(0);
                }
                kept.push(line.clone());
            }
            let _ = sender.send(line);
        }
    });
    lines
}

fn wait_for_address(lines: &Receiver<String>) -> Option<SocketAddr> {
    let deadline = clock::now() + START_LIMIT;
    loop {
        let remaining = deadline.checked_duration_since(clock::now())?;
        match lines.recv_timeout(remaining) {
            Ok(line) => {
                if let Some(addr) = listening_addr(&line) {
                    return Some(addr);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The address in a `fila-server listening on ADDR ...` line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find(LISTENING)? + LISTENING.len();
    line.get(start..)?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_read_from_the_start_up_line() {
        let line = "2026 INFO fila-server listening on 127.0.0.1:4567 with 2 shards, data in /x";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(listening_addr("fila-server starting"), None);
        assert_eq!(listening_addr("fila-server listening on nonsense"), None);
    }
}
