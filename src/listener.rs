//! The per-shard accept loop: takes connections from this shard's listener, enforces the
//! process-wide connection cap (`[server] max_connections`), and runs each connection as its
//! own task on the shard. On shutdown it stops accepting, gives open connections
//! [`DRAIN_TIMEOUT`] to finish, then drops the rest.
//!
//! With TLS on, the TLS handshake runs at the start of the connection's own task, never in the
//! accept loop, so a slow or silent client cannot delay the accepts of others; it is bounded by
//! the handshake timeout and abandoned at shutdown. There is no plaintext fallback: a client
//! that does not speak TLS fails the handshake and is closed (logged with its address).
//!
//! A panic in a connection task would kill the whole shard (glommio runs tasks on one thread
//! and does not catch). Each connection future runs under `catch_unwind`: a panicking handler
//! closes its own connection, is logged with the shard and peer, and the shard keeps serving.
//! This relies on `panic = "unwind"` (the default profile setting) and on handlers not leaving
//! shard-wide state half-updated when they panic; the broker core is not called from inside a
//! connection's unwinding scope with borrowed state, so that holds for the shell's own state.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_lite::FutureExt;
use glommio::sync::Gate;

use crate::connection::{Connection, ConnectionHandler};
use crate::rt::{self, Listener, ShutdownSignal, Stream, TcpStream};
use crate::tls::ServerTls;

/// How long open connections may take to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after an accept error (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// The process-wide cap on open connections, shared by every shard's accept loop. One atomic
/// touched once per accept and once per close: not on the per-request path.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open connection's place under the cap; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    open: Arc<AtomicUsize>,
}

impl ConnectionCap {
    /// A cap of `max` open connections.
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A slot if fewer than `max` connections are open.
    pub fn try_acquire(&self) -> Option<ConnectionSlot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        taken.ok().map(|_| ConnectionSlot {
            open: Arc::clone(&self.open),
        })
    }

    /// Connections open now, across all shards.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// TLS on accepted connections: the shared server configuration and how long a TLS handshake
/// may take.
#[derive(Debug, Clone)]
pub struct TlsOnAccept {
    /// The certificates (swapped by a reload).
    pub tls: ServerTls,
    /// The TLS handshake must finish within this time.
    pub handshake_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown` fires, then drains. Returns when every
/// connection task of this shard has ended or the drain timeout passed. With `tls`, every
/// connection starts with a TLS handshake.
pub async fn accept_loop<H: ConnectionHandler>(
    shard: usize,
    listener: Listener,
    handler: Rc<H>,
    cap: ConnectionCap,
    shutdown: ShutdownSignal,
    tls: Option<TlsOnAccept>,
) {
    let tls = tls.map(Rc::new);
    let connections = Gate::new();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(shard, %error, "accept failed");
                rt::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        // Replies and Delivery frames are small and latency-bound: never wait for the peer's
        // delayed ACK before sending the next one (Nagle).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(shard, %peer, %error, "cannot set TCP_NODELAY");
        }
        let Some(slot) = cap.try_acquire() else {
            tracing::warn!(shard, %peer, max = cap.max, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let accepted = Accepted {
            shard,
            stream,
            peer,
            shutdown: shutdown.clone(),
            tls: tls.clone(),
        };
        let task = run_connection(Rc::clone(&handler), accepted, slot);
        match connections.spawn(task) {
            Ok(task) => drop(task.detach()),
            Err(error) => tracing::error!(shard, %error, "cannot start a connection task"),
        }
    }
    drop(listener);
    let open = cap.open();
    tracing::debug!(shard, open, "stopped accepting; draining connections");
    if rt::within(DRAIN_TIMEOUT, connections.close())
        .await
        .is_none()
    {
        tracing::warn!(
            shard,
            "connections still open after the drain timeout; closing them"
        );
    }
}

/// A TCP connection as accepted, before any TLS.
struct Accepted {
    shard: usize,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownSignal,
    tls: Option<Rc<TlsOnAccept>>,
}

/// Runs one connection (its TLS handshake, then the handler) under `catch_unwind`, holding its
/// slot until it ends.
async fn run_connection<H: ConnectionHandler>(
    handler: Rc<H>,
    accepted: Accepted,
    slot: ConnectionSlot,
) {
    let (shard, peer) = (accepted.shard, accepted.peer);
    tracing::debug!(shard, %peer, "connection accepted");
    let outcome = AssertUnwindSafe(async move {
        let Accepted {
            stream,
            shutdown,
            tls,
            ..
        } = accepted;
        let stream = match tls {
            None => Stream::from(stream),
            Some(tls) => match tls_handshake(&tls, stream, &shutdown).await {
                Ok((stream, took)) => {
                    let handshake_us = took.as_micros();
                    tracing::debug!(shard, %peer, handshake_us, "TLS handshake complete");
                    stream
                }
                Err(reason) => {
                    // Debug, like refused API keys: a flood of bad connections must not flood
                    // the log at the default level.
                    tracing::debug!(shard, %peer, %reason, "TLS handshake failed; connection closed");
                    return;
                }
            },
        };
        let connection = Connection {
            shard,
            stream,
            peer,
            shutdown,
        };
        handler.serve(connection).await;
    })
    .catch_unwind()
    .await;
    if let Err(panic) = outcome {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::error!(shard, %peer, %reason, "connection handler panicked; connection closed, shard continues");
    }
    tracing::debug!(shard, %peer, "connection closed");
    drop(slot);
}

/// The server side of the TLS handshake, within the handshake timeout; abandoned at shutdown.
/// The TLS stream and how long the handshake took; the error is a sentence for the log.
async fn tls_handshake(
    tls: &TlsOnAccept,
    stream: TcpStream,
    shutdown: &ShutdownSignal,
) -> Result<(Stream, Duration), String> {
    let elapsed = rt::clock::monotonic();
    let handshake = futures_lite::future::or(async { Some(tls.tls.accept(stream).await) }, async {
        shutdown.wait().await;
        None
    });
    match rt::within(tls.handshake_timeout, handshake).await {
        None => Err(format!(
            "no TLS handshake within {:?}",
            tls.handshake_timeout
        )),
        Some(None) => Err("shutdown during the TLS handshake".to_owned()),
        Some(Some(Err(error))) => Err(error.to_string()),
        Some(Some(Ok(stream))) => Ok((Stream::from(stream), elapsed())),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Read;

    use futures_lite::AsyncWriteExt;

    use super::*;
    use crate::rt::{ExecutorPlan, shutdown_channel, start_shards};

    /// Panics on its first connection, answers `ok` on the others.
    struct PanicsOnce {
        served: Cell<usize>,
    }

    impl ConnectionHandler for PanicsOnce {
        async fn serve(self: Rc<Self>, mut connection: Connection) {
            self.served.set(self.served.get() + 1);
            if self.served.get() == 1 {
                panic!("handler bug");
            }
            connection.stream.write_all(b"ok").await.unwrap();
        }
    }

    #[test]
    fn a_panicking_connection_does_not_take_the_shard_down() {
        let (trigger, shutdown) = shutdown_channel();
        let (addr_sender, addr_receiver) = flume::bounded(1);
        let plan = ExecutorPlan {
            shards: 1,
            pinned_cpus: None,
            spin_before_park: Duration::ZERO,
        };
        let threads = start_shards(&plan, |shard| {
            let (shutdown, addr_sender) = (shutdown.clone(), addr_sender.clone());
            move || async move {
                let listener = Listener::bind("127.0.0.1:0").unwrap();
                addr_sender.send(listener.local_addr().unwrap()).unwrap();
                let handler = Rc::new(PanicsOnce {
                    served: Cell::new(0),
                });
                accept_loop(
                    shard,
                    listener,
                    handler,
                    ConnectionCap::new(10),
                    shutdown,
                    None,
                )
                .await;
            }
        })
        .unwrap();
        let addr = addr_receiver.recv().unwrap();
        let mut first = std::net::TcpStream::connect(addr).unwrap();
        let mut nothing = Vec::new();
        first.read_to_end(&mut nothing).unwrap();
        assert!(nothing.is_empty());
        let mut second = std::net::TcpStream::connect(addr).unwrap();
        let mut answer = [0_u8; 2];
        second.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"ok");
        trigger.fire();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn cap_counts_slots_and_releases_them_on_drop() {
        let cap = ConnectionCap::new(2);
        let first = cap.try_acquire().unwrap();
        let _second = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        assert_eq!(cap.open(), 2);
        drop(first);
        assert!(cap.try_acquire().is_some());
    }
}
