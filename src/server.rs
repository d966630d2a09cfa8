//! Server bootstrap and lifetime, on the main thread: check the host, open the data directory,
//! start one executor per shard, wait until every shard listens, log where, then wait for
//! SIGINT/SIGTERM (or a shard failure), fire the shutdown and wait for the shards to finish.
//!
//! Each shard runs [`shard_main`]: bind the shared address, report it, serve its mesh inbox and
//! its accept loop until shutdown. The main thread learns everything through one event channel.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::connection::{ConnectionLimits, PreProtocolHandler};
use crate::data_dir::{DataDir, ShardCountOrigin};
use crate::error::ServerError;
use crate::listener::{ConnectionCap, accept_loop};
use crate::rt::{
    self, BindError, Demand, ExecutorError, ExecutorPlan, HostFacts, MeshEndpoint, ShardBind,
    ShutdownSignal, SignalWatcher, TerminationSignal,
};

/// Shards get this long to stop after the shutdown fires (the process promise is 5 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

/// Messages between shards. Empty until the broker core is wired in: forwarded requests,
/// replies and deliveries become its variants, and `serve_inbox` their dispatch.
#[derive(Debug)]
pub enum ShardMessage {}

/// What the main thread hears about.
#[derive(Debug)]
enum Event {
    Listening {
        shard: usize,
        addr: SocketAddr,
    },
    BindFailed {
        shard: usize,
        error: BindError,
    },
    Exited {
        shard: usize,
        result: Result<(), ExecutorError>,
    },
    Signal(TerminationSignal),
}

/// Everything one shard needs, moved into its executor thread.
struct ShardSetup {
    shard: usize,
    bind: ShardBind,
    mesh: MeshEndpoint<ShardMessage>,
    shutdown: ShutdownSignal,
    cap: ConnectionCap,
    limits: ConnectionLimits,
    events: flume::Sender<Event>,
}

/// Runs the server until a termination signal; `Ok` after a clean shutdown.
pub fn run(config: &Config) -> Result<(), ServerError> {
    for key in &config.ignored_cluster_keys {
        tracing::warn!(key = %format!("cluster.{key}"), "ignoring [cluster] setting: clustering is not supported by this server");
    }
    let host = HostFacts::read();
    tracing::info!("host: {}", host.summary());
    let default_shards = NonZeroUsize::new(host.cpus.len()).unwrap_or(NonZeroUsize::MIN);
    let requested = config
        .server
        .shards
        .and_then(|shards| NonZeroUsize::new(shards.get_usize()));
    let (data_dir, origin) = DataDir::open(&config.data_dir, requested, default_shards)?;
    let shards = data_dir.shard_count().get();
    if origin == ShardCountOrigin::Recorded {
        tracing::info!(
            shards,
            "using the shard count recorded in the data directory"
        );
    }
    let demand = Demand {
        shards,
        pin_cores: config.server.pin_cores,
        io_memory_bytes: rt::executors::IO_MEMORY_BYTES as u64,
    };
    for warning in host.check(demand)? {
        tracing::warn!("{warning}");
    }
    let addr = config.server.listen_addr.0;
    rt::probe_port_free(addr)?;

    let (events, inbox) = flume::unbounded();
    let signal_events = events.clone();
    let _signals = SignalWatcher::start(move |signal| {
        let _ = signal_events.send(Event::Signal(signal));
    })
    .map_err(ServerError::Signals)?;
    let (trigger, shutdown) = rt::shutdown_channel();
    start(config, &host, shards, &events, &shutdown)?;
    drop(events);

    let bound = match await_listening(&inbox, shards) {
        Ok(bound) => bound,
        Err(error) => {
            trigger.fire();
            // Best effort: the start already failed; the error says why.
            let _ = await_exits(&inbox, shards);
            return Err(error);
        }
    };
    tracing::info!(
        "fila-server listening on {bound} with {shards} shards, data in {}, durability {}",
        data_dir.path().display(),
        config.storage.durability.name()
    );
    let stopped = await_stop(&inbox);
    trigger.fire();
    let exits = await_exits(&inbox, shards - usize::from(stopped.is_err()));
    stopped.and(exits)?;
    tracing::info!("fila-server stopped");
    Ok(())
}

/// Starts the executors, and a thread per executor that reports its end.
fn start(
    config: &Config,
    host: &HostFacts,
    shards: usize,
    events: &flume::Sender<Event>,
    shutdown: &ShutdownSignal,
) -> Result<(), ServerError> {
    let plan = ExecutorPlan {
        shards,
        pinned_cpus: config
            .server
            .pin_cores
            .then(|| host.cpus.iter().copied().take(shards).collect()),
        spin_before_park: Duration::from_micros(config.server.spin_before_park_us.get()),
    };
    let mut mesh = rt::build_mesh(
        shards,
        config.scheduler.command_channel_capacity.get_usize(),
    )
    .into_iter();
    let mut binds = rt::bind_plan(config.server.listen_addr.0, shards).into_iter();
    let cap = ConnectionCap::new(config.server.max_connections.get_usize());
    let limits = ConnectionLimits::from_config(config);
    let mut setups = Vec::with_capacity(shards);
    for shard in 0..shards {
        let (Some(bind), Some(mesh)) = (binds.next(), mesh.next()) else {
            break;
        };
        let (shutdown, cap, events) = (shutdown.clone(), cap.clone(), events.clone());
        setups.push(Some(ShardSetup {
            shard,
            bind,
            mesh,
            shutdown,
            cap,
            limits,
            events,
        }));
    }
    let threads = rt::start_shards(&plan, |shard| {
        let setup = setups.get_mut(shard).and_then(Option::take);
        move || async move {
            if let Some(setup) = setup {
                shard_main(setup).await;
            }
        }
    })?;
    for thread in threads {
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("fila-shard-{}-watch", thread.shard()))
            .spawn(move || {
                let shard = thread.shard();
                let _ = events.send(Event::Exited {
                    shard,
                    result: thread.join(),
                });
            })
            .map_err(ServerError::Signals)?;
    }
    Ok(())
}

/// One shard's life: bind, report, serve until shutdown.
async fn shard_main(setup: ShardSetup) {
    let ShardSetup {
        shard,
        bind,
        mesh,
        shutdown,
        cap,
        limits,
        events,
    } = setup;
    let listener = match bind.bind().await {
        Ok(listener) => listener,
        Err(error) => {
            let _ = events.send(Event::BindFailed { shard, error });
            return;
        }
    };
    match listener.local_addr() {
        Ok(addr) => drop(events.send(Event::Listening { shard, addr })),
        Err(error) => {
            let error = BindError::Io {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source: error.into(),
            };
            let _ = events.send(Event::BindFailed { shard, error });
            return;
        }
    }
    let inbox = glommio::spawn_local(serve_inbox(mesh, shutdown.clone()));
    let handler = Rc::new(PreProtocolHandler::new(limits));
    accept_loop(shard, listener, handler, cap, shutdown).await;
    inbox.await;
}

/// Serves the shard's mesh inbox until shutdown.
async fn serve_inbox(mesh: MeshEndpoint<ShardMessage>, shutdown: ShutdownSignal) {
    // `ShardMessage` has no variants yet, so clippy sees a loop that cannot repeat.
    #[allow(clippy::never_loop)]
    let serve = async {
        while let Some(message) = mesh.recv().await {
            match message {}
        }
    };
    futures_lite::future::or(serve, shutdown.wait()).await;
}

/// Waits until every shard listens; the address they share.
fn await_listening(
    inbox: &flume::Receiver<Event>,
    shards: usize,
) -> Result<SocketAddr, ServerError> {
    let mut listening = Vec::with_capacity(shards);
    while listening.len() < shards {
        match inbox.recv() {
            Ok(Event::Listening { shard, addr }) => {
                tracing::debug!(shard, %addr, "shard listening");
                listening.push(addr);
            }
            Ok(Event::BindFailed { shard, error }) => {
                tracing::debug!(shard, %error, "shard cannot bind");
                return Err(error.into());
            }
            Ok(Event::Exited { shard, result }) => {
                return Err(result
                    .err()
                    .map_or(ServerError::ShardStopped { shard }, ServerError::Executor));
            }
            Ok(Event::Signal(signal)) => {
                return Err(ServerError::ShutdownInterrupted {
                    signal: signal.name(),
                });
            }
            Err(flume::RecvError::Disconnected) => {
                return Err(ServerError::ShardStopped { shard: 0 });
            }
        }
    }
    listening
        .first()
        .copied()
        .ok_or(ServerError::ShardStopped { shard: 0 })
}

/// Waits for a termination signal (`Ok`) or a shard that ends on its own (`Err`).
fn await_stop(inbox: &flume::Receiver<Event>) -> Result<(), ServerError> {
    loop {
        match inbox.recv() {
            Ok(Event::Signal(signal)) => {
                tracing::info!("received {}, shutting down", signal.name());
                return Ok(());
            }
            Ok(Event::Exited { shard, result }) => {
                if let Err(error) = &result {
                    tracing::error!(shard, %error, "shard crashed");
                }
                return Err(result
                    .err()
                    .map_or(ServerError::ShardStopped { shard }, ServerError::Executor));
            }
            Ok(Event::Listening { .. } | Event::BindFailed { .. }) => {}
            Err(flume::RecvError::Disconnected) => {
                return Err(ServerError::ShardStopped { shard: 0 });
            }
        }
    }
}

/// Waits until `running` shards have ended, at most [`SHUTDOWN_DEADLINE`].
fn await_exits(inbox: &flume::Receiver<Event>, mut running: usize) -> Result<(), ServerError> {
    // The process-level shutdown deadline is wall-clock by nature.
    #[allow(clippy::disallowed_methods)]
    let deadline = Instant::now() + SHUTDOWN_DEADLINE;
    let mut failure = None;
    while running > 0 {
        match inbox.recv_deadline(deadline) {
            Ok(Event::Exited { shard, result }) => {
                running -= 1;
                if let Err(error) = result {
                    tracing::error!(shard, %error, "shard crashed during shutdown");
                    failure = Some(ServerError::Executor(error));
                }
            }
            Ok(Event::Signal(signal)) => {
                return Err(ServerError::ShutdownInterrupted {
                    signal: signal.name(),
                });
            }
            Ok(Event::Listening { .. } | Event::BindFailed { .. }) => {}
            Err(_) => {
                let seconds = SHUTDOWN_DEADLINE.as_secs().max(1);
                return Err(ServerError::ShutdownTimedOut { running, seconds });
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
