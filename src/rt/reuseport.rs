//! Binding the same TCP address on every shard (glommio sets SO_REUSEPORT, so the kernel spreads
//! connections across the shards' listeners).
//!
//! Two traps handled here. Port 0 would give every shard a different port, so shard 0 binds
//! first and hands its port to the others. And SO_REUSEPORT lets a second broker of the same
//! user bind the same port silently and take a share of the connections, so before any shard
//! binds, `probe_port_free` binds a plain std listener (no SO_REUSEPORT): it fails with
//! EADDRINUSE if anyone holds the port, and is dropped before the shards bind.

use std::net::SocketAddr;

use glommio::net::TcpListener;

/// Why the listen address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process (or socket) holds the port.
    #[error(
        "cannot listen on {addr}: the address is already in use by another process; \
         stop it or choose another --listen address"
    )]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Any other bind failure (permission for ports < 1024, address not on this host...).
    #[error("cannot listen on {addr}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Shard 0 failed to bind the ephemeral port, so the others have no port to share.
    #[error("shard {shard} cannot bind: shard 0 did not obtain a port")]
    NoSharedPort {
        /// The waiting shard.
        shard: usize,
    },
}

impl BindError {
    fn from_io(addr: SocketAddr, source: std::io::Error) -> BindError {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BindError::InUse { addr }
        } else {
            BindError::Io { addr, source }
        }
    }
}

/// How long a start keeps trying a port that is in use (see [`probe_port_free`]).
pub const PORT_BUSY_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// Pause between two tries.
const PORT_BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Fails if the address cannot be bound exclusively. Port 0 always passes (the kernel picks a
/// free port for shard 0). A port in use is tried again for [`PORT_BUSY_GRACE`]: right after a
/// previous broker on it exited, the kernel may still be tearing down that process's io_uring
/// and with it the old listening socket, so an immediate restart would otherwise be refused.
/// Another broker that really holds the port is refused after the grace period.
pub fn probe_port_free(addr: SocketAddr) -> Result<(), BindError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let tries = PORT_BUSY_GRACE.as_millis() / PORT_BUSY_PAUSE.as_millis();
    let mut result = Ok(());
    for _ in 0..=tries {
        result = std::net::TcpListener::bind(addr)
            .map(drop)
            .map_err(|source| BindError::from_io(addr, source));
        if !matches!(result, Err(BindError::InUse { .. })) {
            break;
        }
        // Start-up runs on the main thread before any executor exists; waiting here blocks
        // nothing else.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(PORT_BUSY_PAUSE);
    }
    result
}

/// A listening socket on `addr` with SO_REUSEPORT (every shard binds the same address) and
/// SO_REUSEADDR, handed to glommio. glommio's own `TcpListener::bind` sets only SO_REUSEPORT,
/// so a restart was refused for a minute while connections of the previous run sat in
/// TIME_WAIT on the port. Another live broker is still refused: `probe_port_free` runs first.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket that this function owns exclusively
    // (`into_raw_fd` gave up socket2's ownership); glommio takes over that ownership and closes
    // it when the listener is dropped. Nothing else holds or closes the descriptor.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(listener)
}

/// Pending connections per shard listener (glommio's own bind uses the same).
const LISTEN_BACKLOG: i32 = 1024;

/// One shard's part in binding the shared address.
#[derive(Debug)]
pub struct ShardBind {
    shard: usize,
    addr: SocketAddr,
    role: Role,
}

#[derive(Debug)]
enum Role {
    /// Binds `addr` as given (a fixed port, or shard 0 for port 0) and tells the waiting shards.
    First(Vec<flume::Sender<SocketAddr>>),
    /// Waits for shard 0's port.
    Follower(flume::Receiver<SocketAddr>),
    /// Fixed port, not shard 0: binds directly.
    Direct,
}

/// The per-shard bind steps for `addr` on `shards` shards, index = shard.
pub fn bind_plan(addr: SocketAddr, shards: usize) -> Vec<ShardBind> {
    if addr.port() != 0 {
        return (0..shards)
            .map(|shard| ShardBind {
                shard,
                addr,
                role: Role::Direct,
            })
            .collect();
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (1..shards).map(|_| flume::bounded(1)).unzip();
    let first = ShardBind {
        shard: 0,
        addr,
        role: Role::First(senders),
    };
    let followers = receivers
        .into_iter()
        .enumerate()
        .map(|(index, receiver)| ShardBind {
            shard: index + 1,
            addr,
            role: Role::Follower(receiver),
        });
    std::iter::once(first).chain(followers).collect()
}

impl ShardBind {
    /// Binds this shard's listener; call inside the shard's executor.
    pub async fn bind(self) -> Result<TcpListener, BindError> {
        let (addr, senders) = match self.role {
            Role::Follower(receiver) => (
                receiver
                    .recv_async()
                    .await
                    .map_err(|_| BindError::NoSharedPort { shard: self.shard })?,
                Vec::new(),
            ),
            Role::First(senders) => (self.addr, senders),
            Role::Direct => (self.addr, Vec::new()),
        };
        let listener = listen(addr).map_err(|source| BindError::from_io(addr, source))?;
        if !senders.is_empty() {
            let bound = listener.local_addr().map_err(|error| BindError::Io {
                addr,
                source: std::io::Error::from(error),
            })?;
            for sender in senders {
                // A follower that is gone has failed on its own; nothing to tell it.
                let _ = sender.send(bound);
            }
        }
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::executors::{ExecutorPlan, start_shards};
    use std::time::Duration;

    #[test]
    fn port_zero_gives_every_shard_the_same_port() {
        let plan = ExecutorPlan {
            shards: 3,
            pinned_cpus: None,
            spin_before_park: Duration::ZERO,
        };
        let mut binds = bind_plan(SocketAddr::from(([127, 0, 0, 1], 0)), 3).into_iter();
        let threads = start_shards(&plan, |_| {
            let bind = binds.next().unwrap();
            move || async move { bind.bind().await.unwrap().local_addr().unwrap() }
        })
        .unwrap();
        let addrs: Vec<SocketAddr> = threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        assert_ne!(addrs[0].port(), 0);
        assert!(addrs.iter().all(|addr| *addr == addrs[0]), "{addrs:?}");
    }

    #[test]
    fn a_held_port_is_reported_in_use() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let error = probe_port_free(addr).unwrap_err();
        assert!(matches!(error, BindError::InUse { .. }), "{error}");
        drop(holder);
        probe_port_free(addr).unwrap();
    }
}
