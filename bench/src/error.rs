//! `BenchError`: everything that can stop a benchmark run, each with a message an operator can
//! act on. `main` prints it as `Error: ...` and exits non-zero.

use std::path::PathBuf;

/// Why a run of `fila-bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value that clap cannot check on its own.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Connecting to the server failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The target address.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS flag's file cannot be used, or the TLS client cannot be set up.
    #[error("TLS set-up: {0}")]
    TlsSetup(String),
    /// The TLS handshake or a TLS record failed.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The server address.
        addr: String,
        /// What went wrong and what to do about it.
        reason: String,
    },
    /// The server refused the protocol handshake (for example a missing or unknown API key).
    #[error("the server refused the handshake: {0}")]
    HandshakeRefused(String),
    /// A socket read or write failed mid-run.
    #[error("connection to the server failed while {doing}: {source}")]
    Io {
        /// What the bench was doing.
        doing: &'static str,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("the server closed the connection while {doing}")]
    Closed {
        /// What the bench was doing.
        doing: &'static str,
    },
    /// Nothing arrived from the server for too long.
    #[error("no reply from the server for {seconds} s while {doing}")]
    Stalled {
        /// What the bench was waiting for.
        doing: &'static str,
        /// How long it waited.
        seconds: u64,
    },
    /// The server sent bytes that are not a valid frame or body.
    #[error("the server sent an invalid frame while {doing}: {detail}")]
    Protocol {
        /// What the bench was doing.
        doing: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The server answered a request with something other than the expected reply.
    #[error("unexpected reply to {request}: {reply}")]
    UnexpectedReply {
        /// The request that was sent.
        request: String,
        /// The reply, as debug text.
        reply: String,
    },
    /// A request could not be encoded (for example a batch over the 16 MiB frame limit).
    #[error("cannot encode {request}: {detail}")]
    Encode {
        /// The request.
        request: &'static str,
        /// The encoder's message.
        detail: String,
    },
    /// Starting the server binary failed.
    #[error("cannot start the server {binary}: {detail}")]
    ServerStart {
        /// The binary path.
        binary: PathBuf,
        /// What went wrong, with the server's stderr when there is some.
        detail: String,
    },
    /// Reading or writing a report file failed.
    #[error("cannot {doing} {path}: {source}")]
    File {
        /// Read or write.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON report could not be parsed.
    #[error("{path} is not a fila-bench JSON report: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// A worker thread panicked (a bug in the bench).
    #[error("a {role} thread panicked")]
    ThreadPanicked {
        /// Producer, consumer, ...
        role: &'static str,
    },
    /// A chart could not be drawn.
    #[error("cannot draw the chart {path}: {detail}")]
    Chart {
        /// The SVG file.
        path: PathBuf,
        /// plotters' message.
        detail: String,
    },
    /// A latency histogram could not be created or merged.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// Workloads of `all` that failed (the others' figures were still reported).
    #[error("workloads failed: {0} (see the notes in the report)")]
    WorkloadsFailed(String),
    /// `compare` found figures worse than the threshold allows.
    #[error("{count} figure(s) regressed by more than {threshold_pct}%")]
    Regressions {
        /// How many figures regressed.
        count: usize,
        /// The threshold, in percent.
        threshold_pct: f64,
    },
}

/// The bench's result type.
pub type Result<T> = std::result::Result<T, BenchError>;
