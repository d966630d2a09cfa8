//! A connection on the shard that accepted it: the handler interface the accept loop calls, the
//! per-connection limits from the config, and the handler the server runs until the protocol
//! session exists.
//!
//! The interface is the seam for the protocol: `accept_loop` hands every accepted stream to
//! `ConnectionHandler::serve` on a task of its own; the handler owns the stream until it returns,
//! and should return promptly once `connection.shutdown` fires (finishing in-flight requests
//! first). One handler value per shard (`Rc`), so it may hold the shard's mesh endpoint and any
//! other `!Send` shard state.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;

use crate::config::Config;
use crate::rt::{self, ShutdownSignal, Stream};

/// One accepted connection, as given to a handler.
#[derive(Debug)]
pub struct Connection {
    /// The shard that accepted it (and runs it).
    pub shard: usize,
    /// The socket.
    pub stream: Stream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Fires when the server shuts down.
    pub shutdown: ShutdownSignal,
}

/// Serves accepted connections of one shard.
pub trait ConnectionHandler: 'static {
    /// Serves `connection` until it closes; the future runs as its own task on the shard.
    fn serve(self: Rc<Self>, connection: Connection) -> impl Future<Output = ()> + 'static;
}

/// Per-connection limits from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A new connection must complete its handshake within this time.
    pub handshake_timeout: Duration,
    /// A started frame must complete within this time.
    pub frame_timeout: Duration,
    /// Largest message payload accepted at enqueue.
    pub max_payload_bytes: usize,
    /// Unacked deliveries per subscription.
    pub credit_window: u32,
}

impl ConnectionLimits {
    /// The limits of `config`.
    pub fn from_config(config: &Config) -> ConnectionLimits {
        let server = &config.server;
        ConnectionLimits {
            handshake_timeout: Duration::from_millis(server.handshake_timeout_ms.get()),
            frame_timeout: Duration::from_millis(server.frame_timeout_ms.get()),
            max_payload_bytes: server.max_payload_bytes.get_usize(),
            credit_window: u32::try_from(server.credit_window.get()).unwrap_or(u32::MAX),
        }
    }
}

/// How a read with a deadline ended.
#[derive(Debug)]
pub enum TimedRead {
    /// Bytes arrived (`n > 0`).
    Data(usize),
    /// The peer closed its side.
    Closed,
    /// Nothing arrived in time.
    TimedOut,
    /// The socket failed.
    Failed(std::io::Error),
}

/// Reads once into `buffer`, waiting at most `limit`.
pub async fn read_within(stream: &mut Stream, buffer: &mut [u8], limit: Duration) -> TimedRead {
    match rt::within(limit, stream.read(buffer)).await {
        None => TimedRead::TimedOut,
        Some(Ok(0)) => TimedRead::Closed,
        Some(Ok(n)) => TimedRead::Data(n),
        Some(Err(error)) => TimedRead::Failed(error),
    }
}

/// The handler the server runs until the protocol session is wired in. It enforces the parts
/// of the connection contract that need no codec: a client that sends nothing within the
/// handshake timeout is disconnected; a client that does send is kept open (bytes are read and
/// discarded, never answered) until it closes or the server shuts down. Idle established
/// connections are never closed (the SDK does not ping).
#[derive(Debug)]
pub struct PreProtocolHandler {
    limits: ConnectionLimits,
}

impl PreProtocolHandler {
    /// A handler with `limits`.
    pub fn new(limits: ConnectionLimits) -> PreProtocolHandler {
        PreProtocolHandler { limits }
    }
}

/// Read buffer of the pre-protocol handler.
const DISCARD_BUFFER_BYTES: usize = 4096;

impl ConnectionHandler for PreProtocolHandler {
    async fn serve(self: Rc<Self>, connection: Connection) {
        let Connection {
            shard,
            mut stream,
            peer,
            shutdown,
        } = connection;
        let mut buffer = vec![0_u8; DISCARD_BUFFER_BYTES];
        let first = futures_lite::future::or(
            read_within(&mut stream, &mut buffer, self.limits.handshake_timeout),
            async {
                shutdown.wait().await;
                TimedRead::Closed
            },
        )
        .await;
        match first {
            TimedRead::Data(_) => {}
            TimedRead::TimedOut => {
                let timeout_ms = self.limits.handshake_timeout.as_millis();
                tracing::info!(shard, %peer, timeout_ms, "closing connection: no handshake in time");
                return;
            }
            TimedRead::Closed | TimedRead::Failed(_) => return,
        }
        let drain = async {
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
            }
        };
        futures_lite::future::or(drain, shutdown.wait()).await;
    }
}
