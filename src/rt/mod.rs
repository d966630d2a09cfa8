//! The runtime: the only module that names glommio. It starts one executor per shard, connects
//! the shards with bounded channels, binds the shared listen address on every shard, turns
//! signals into a shutdown every task can await, wraps accepted sockets
//! (plain or TLS) in one stream type, and checks the host before any of that.
//! Keeping glommio behind this module keeps a move to the community fork (or another runtime)
//! a local change.

pub mod clock;
pub mod executors;
pub mod mesh;
pub mod notify;
pub mod preflight;
pub mod reuseport;
pub mod shutdown;
pub mod stream;
pub mod timer;

pub use executors::{ExecutorError, ExecutorPlan, ShardThread, spawn_blocking, start_shards};
pub use mesh::{MeshEndpoint, MeshSendError, build_mesh};
pub use notify::Notify;
pub use preflight::{Demand, HostFacts, PreflightError};
pub use reuseport::{BindError, ShardBind, bind_plan, probe_port_free};
pub use shutdown::{
    ShutdownSignal, ShutdownTrigger, SignalWatcher, TerminationSignal, shutdown_channel,
};
pub use stream::{Stream, TcpStream, TlsStream};
pub use timer::{sleep, within};

/// A listener bound on one shard.
pub type Listener = glommio::net::TcpListener;
