//! Test harness for black-box tests: starts the real `fila-server` binary on 127.0.0.1 with an
//! ephemeral port, unpinned, on a temporary data directory; learns the port from the start-up
//! log line; keeps every stderr line for assertions; stops with SIGTERM or SIGKILL; restarts on
//! the same data directory. Dropping a `TestServer` kills the process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for the server to start or stop before failing (a safety net for
/// hangs, not a performance assertion).
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// The promise of the shutdown contract: exit within 5 s of SIGTERM/SIGINT.
pub const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The text that marks the start-up line; the address follows it.
const LISTENING: &str = "fila-server listening on ";

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--shards`; `None` = not given.
    pub shards: Option<u64>,
    /// Content of a config file passed with `--config`; `None` = no file.
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `--listen`; default `127.0.0.1:0`.
    pub listen: String,
    /// Further flags.
    pub args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            shards: Some(2),
            config: None,
            env: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// Options with `shards`.
    pub fn shards(shards: u64) -> ServerOptions {
        ServerOptions {
            shards: Some(shards),
            ..ServerOptions::default()
        }
    }

    /// Options with a config file of `text`.
    pub fn with_config(mut self, text: &str) -> ServerOptions {
        self.config = Some(text.to_owned());
        self
    }

    /// Options with the server's `RUST_LOG` set to `filter` (for lines logged at debug).
    pub fn with_log(mut self, filter: &str) -> ServerOptions {
        self.env.push(("RUST_LOG".to_owned(), filter.to_owned()));
        self
    }
}

/// A running (or exited) `fila-server` process.
pub struct TestServer {
    /// The address every shard listens on.
    pub addr: SocketAddr,
    process: Process,
    data_dir: DataDirHolder,
    options: ServerOptions,
}

enum DataDirHolder {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

impl DataDirHolder {
    fn path(&self) -> &Path {
        match self {
            DataDirHolder::Owned(dir) => dir.path(),
            DataDirHolder::Borrowed(path) => path,
        }
    }
}

impl TestServer {
    /// Starts a 2-shard server on a fresh data directory.
    pub fn start() -> TestServer {
        TestServer::start_with(ServerOptions::default())
    }

    /// Starts a server with `options` on a fresh data directory.
    pub fn start_with(options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        TestServer::launch(options, DataDirHolder::Owned(dir))
    }

    /// Starts a server with `options` on `data_dir` (which the caller keeps).
    pub fn start_on(data_dir: &Path, options: ServerOptions) -> TestServer {
        TestServer::launch(options, DataDirHolder::Borrowed(data_dir.to_path_buf()))
    }

    fn launch(options: ServerOptions, data_dir: DataDirHolder) -> TestServer {
        let mut process = Process::spawn(&options, data_dir.path());
        let line = process
            .wait_for_line(LISTENING, START_LIMIT)
            .unwrap_or_else(|| panic!("server did not start; stderr:\n{}", process.stderr()));
        TestServer {
            addr: listening_addr(&line),
            process,
            data_dir,
            options,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Waits (at most [`START_LIMIT`]) until a stderr line contains `text`.
    pub fn wait_for_log(&mut self, text: &str) -> bool {
        self.process.stderr().contains(text)
            || self.process.wait_for_line(text, START_LIMIT).is_some()
    }

    /// Every stderr line so far, joined.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Sends SIGTERM and waits (at most [`STOP_LIMIT`]) for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.process.signal("TERM");
        self.process.wait(STOP_LIMIT)
    }

    /// Sends SIGHUP (reload the TLS certificates); the server keeps running.
    pub fn hangup(&mut self) {
        self.process.signal("HUP");
    }

    /// Sends SIGINT and waits (at most [`STOP_LIMIT`]) for the exit status.
    pub fn interrupt(&mut self) -> Option<ExitStatus> {
        self.process.signal("INT");
        self.process.wait(STOP_LIMIT)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.signal("KILL");
        self.process.wait(START_LIMIT);
    }

    /// Stops with SIGTERM (must exit 0) and starts again with the same options and data dir.
    pub fn restart(mut self) -> TestServer {
        let status = self.terminate().expect("server did not stop");
        assert!(
            status.success(),
            "server exited with {status}; stderr:\n{}",
            self.stderr()
        );
        let TestServer {
            data_dir, options, ..
        } = self;
        TestServer::launch(options, data_dir)
    }
}

/// Runs the server to its exit (for start-ups that must fail): status and stderr.
pub fn run_to_exit(options: &ServerOptions, data_dir: &Path) -> (ExitStatus, String) {
    let mut process = Process::spawn(options, data_dir);
    let status = process.wait(START_LIMIT).unwrap_or_else(|| {
        process.signal("KILL");
        panic!("server did not exit; stderr:\n{}", process.stderr())
    });
    (status, process.stderr())
}

fn listening_addr(line: &str) -> SocketAddr {
    let rest = &line[line.find(LISTENING).unwrap() + LISTENING.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// The child process, its stderr lines, and its exit status (collected by a waiter thread so
/// that waits can time out without polling).
struct Process {
    pid: u32,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    exit: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    _config: Option<tempfile::NamedTempFile>,
}

impl Process {
    fn spawn(options: &ServerOptions, data_dir: &Path) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fila-server"));
        command
            .arg("--listen")
            .arg(&options.listen)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--no-pin-cores")
            .args(&options.args)
            .env(
                "RUST_LOG",
                std::env::var("FILA_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in [
            "FILA_DATA_DIR",
            "FILA_BOOTSTRAP_APIKEY",
            "FILA_LISTEN_ADDR",
            "FILA_SHARDS",
        ] {
            command.env_remove(name);
        }
        for (name, value) in &options.env {
            command.env(name, value);
        }
        if let Some(shards) = options.shards {
            command.arg("--shards").arg(shards.to_string());
        }
        let config = options.config.as_ref().map(|text| {
            let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
            std::fs::write(file.path(), text).unwrap();
            command.arg("--config").arg(file.path());
            file
        });
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (line_sender, lines) = mpsc::channel();
        let reader_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                reader_log.lock().unwrap().push(line.clone());
                let _ = line_sender.send(line);
            }
        });
        let (exit_sender, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().unwrap();
            let _ = exit_sender.send(status);
        });
        Process {
            pid,
            lines,
            log,
            exit,
            status: None,
            _config: config,
        }
    }

    fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The first stderr line containing `text`, waiting at most `limit`.
    fn wait_for_line(&mut self, text: &str, limit: Duration) -> Option<String> {
        let deadline = deadline_in(limit);
        loop {
            let remaining = deadline.checked_duration_since(now())?;
            match self.lines.recv_timeout(remaining) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.exit.try_recv().ok();
        }
        self.status.is_some()
    }

    fn signal(&mut self, name: &str) {
        if !self.exited() {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(self.pid.to_string())
                .status();
        }
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exit.recv_timeout(limit).ok();
        }
        if self.status.is_some() {
            // The waiter reaped the child; let the reader drain the rest of stderr.
            while self.lines.recv_timeout(Duration::from_secs(2)).is_ok() {}
        }
        self.status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.exit.recv_timeout(START_LIMIT);
    }
}

// The harness's safety timeouts are wall-clock by nature; tests never assert on them.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn deadline_in(limit: Duration) -> Instant {
    now() + limit
}
