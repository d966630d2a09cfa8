//! A connection on the shard that accepted it: the handler interface the accept loop calls and
//! the per-connection limits from the config. The protocol handler is `session.rs`.
//!
//! The interface is the seam for the protocol: `accept_loop` hands every accepted stream to
//! `ConnectionHandler::serve` on a task of its own; the handler owns the stream until it returns,
//! and should return promptly once `connection.shutdown` fires (finishing in-flight requests
//! first). One handler value per shard (`Rc`), so it may hold the shard's mesh endpoint and any
//! other `!Send` shard state.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::config::Config;
use crate::rt::{ShutdownSignal, Stream};

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
