//! Server bootstrap and lifetime, on the main thread: check the host, open the data directory,
//! start one executor per shard, wait until every shard listens, log where, then wait for
//! SIGINT/SIGTERM (or a shard failure), fire the shutdown and wait for the shards to finish.
//! A SIGHUP while running reloads the TLS certificates (see `tls.rs`); a failed reload is
//! logged and changes nothing.
//!
//! Each shard runs [`shard_main`]: bind the shared address, report it, serve its mesh inbox and
//! its accept loop until shutdown. The main thread learns everything through one event channel.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use fila_shard::lua::{LuaHooks, LuaLimits};
use fila_shard::storage::fjall::{Durability as FjallDurability, FjallOptions, FjallStorage};
use fila_shard::{Shard, ShardOptions};

use fila_shard::auth::AuthStore;
use fila_shard::storage::auth_db::AuthDb;

use crate::auth::ShardAuth;
use crate::broker::Broker;
use crate::config::{AuthConfig, Config, Durability};
use crate::connection::ConnectionLimits;
use crate::data_dir::{DataDir, ShardCountOrigin};
use crate::error::ServerError;
use crate::listener::{ConnectionCap, TlsOnAccept, accept_loop};
use crate::rt::clock;
use crate::rt::{
    self, BindError, Demand, ExecutorError, ExecutorPlan, HostFacts, MeshEndpoint, ShardBind,
    ShutdownSignal, SignalWatcher, TerminationSignal,
};
use crate::session::ProtocolHandler;
use crate::tls::ServerTls;

/// Shards get this long to stop after the shutdown fires (the process promise is 5 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

pub use crate::broker::ShardMessage;

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
    StorageFailed {
        shard: usize,
        error: String,
    },
    Exited {
        shard: usize,
        result: Result<(), ExecutorError>,
    },
    Signal(TerminationSignal),
    /// SIGHUP: reload the TLS certificates.
    Reload,
}

/// Everything one shard needs, moved into its executor thread.
struct ShardSetup {
    shard: usize,
    bind: ShardBind,
    mesh: MeshEndpoint<ShardMessage>,
    shutdown: ShutdownSignal,
    cap: ConnectionCap,
    limits: ConnectionLimits,
    tls: Option<TlsOnAccept>,
    storage: StorageSetup,
    events: flume::Sender<Event>,
    metrics: Option<flume::Receiver<crate::telemetry::SnapshotRequest>>,
    auth: ShardAuthSetup,
}

/// The key store as loaded at start, for every shard.
struct AuthSetup {
    config: AuthConfig,
    store: AuthStore,
    db: AuthDb,
}

/// One shard's part of [`AuthSetup`]: the database only for the home shard.
struct ShardAuthSetup {
    config: AuthConfig,
    store: AuthStore,
    db: Option<AuthDb>,
}

/// How a shard opens and runs its storage and core.
#[derive(Debug, Clone)]
struct StorageSetup {
    dir: PathBuf,
    durability: Durability,
    fjall: FjallOptions,
    options: ShardOptions,
    lua: LuaLimits,
}

/// Runs the server until a termination signal; `Ok` after a clean shutdown.
pub fn run(config: &Config) -> Result<(), ServerError> {
    for key in &config.ignored_cluster_keys {
        tracing::warn!(key = %format!("cluster.{key}"), "ignoring [cluster] setting: clustering is not supported by this server");
    }
    if config.storage.durability == Durability::None {
        tracing::warn!(
            "storage.durability = \"none\": acknowledged messages can be lost if the broker crashes; use this for benchmarks only"
        );
    }
    // Certificates are checked before anything is created, so a bad file leaves nothing behind.
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
    let host = HostFacts::read();
    tracing::info!("host: {}", host.summary());
    let default_shards = NonZeroUsize::new(host.cpus.len()).unwrap_or(NonZeroUsize::MIN);
    let requested = config
        .server
        .shards
        .and_then(|shards| NonZeroUsize::new(shards.get_usize()));
    // Host and port checks come before the data directory is created or its shard count
    // recorded, so a start refused for them leaves nothing behind.
    let planned = DataDir::planned_count(&config.data_dir, requested, default_shards)?;
    let demand = Demand {
        shards: planned.get(),
        pin_cores: config.server.pin_cores,
        io_memory_bytes: rt::executors::IO_MEMORY_BYTES as u64,
    };
    for warning in host.check(demand)? {
        tracing::warn!("{warning}");
    }
    let addr = config.server.listen_addr.0;
    rt::probe_port_free(addr)?;
    let (data_dir, origin) = DataDir::open(&config.data_dir, requested, default_shards)?;
    let shards = data_dir.shard_count().get();
    let auth_dir = data_dir.path().join("auth");
    let auth_db =
        AuthDb::open(&auth_dir).map_err(|error| ServerError::Auth(error_chain(&error)))?;
    let auth_store = AuthStore::from_records(
        auth_db
            .load()
            .map_err(|error| ServerError::Auth(error_chain(&error)))?,
    );
    warn_if_open(config, auth_store.len());
    if origin == ShardCountOrigin::Recorded {
        tracing::info!(
            shards,
            "using the shard count recorded in the data directory"
        );
    }

    let (events, inbox) = flume::unbounded();
    let signal_events = events.clone();
    let reload_events = events.clone();
    let _signals = SignalWatcher::start(
        move |signal| {
            let _ = signal_events.send(Event::Signal(signal));
        },
        move || {
            let _ = reload_events.send(Event::Reload);
        },
    )
    .map_err(ServerError::Signals)?;
    let (trigger, shutdown) = rt::shutdown_channel();
    let (metric_shards, metric_requests) = crate::telemetry::channels(&config.telemetry, shards);
    let telemetry = crate::telemetry::start(&config.telemetry, metric_shards)
        .map_err(ServerError::Telemetry)?;
    let auth = AuthSetup {
        config: config.auth.clone(),
        store: auth_store,
        db: auth_db,
    };
    start(
        config,
        &data_dir,
        &host,
        Wiring {
            events: &events,
            shutdown: &shutdown,
            tls: tls.as_ref(),
        },
        metric_requests,
        &auth,
    )?;
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
    let transport = match &tls {
        None => "",
        Some(tls) if tls.requires_client_certificates() => " (TLS, client certificates required)",
        Some(_) => " (TLS)",
    };
    tracing::info!(
        "fila-server listening on {bound}{transport} with {shards} shards, data in {}, durability {}",
        data_dir.path().display(),
        config.storage.durability.name()
    );
    let reload = tls.as_ref().zip(config.tls.as_ref());
    let stopped = await_stop(&inbox, reload);
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    trigger.fire();
    let exits = await_exits(&inbox, shards - usize::from(stopped.is_err()));
    stopped.and(exits)?;
    tracing::info!("fila-server stopped");
    Ok(())
}

/// Authentication off on an address other clients can reach: say so, loudly.
fn warn_if_open(config: &Config, stored_keys: usize) {
    let addr = config.server.listen_addr.0;
    if config.auth.enabled() {
        tracing::info!("API-key authentication is on: every connection must present a key");
        if config
            .auth
            .bootstrap_apikey
            .as_ref()
            .is_some_and(|key| key.len() < 16)
        {
            tracing::warn!(
                "the bootstrap API key is shorter than 16 characters: use a long random secret (e.g. openssl rand -hex 32)"
            );
        }
        return;
    }
    if stored_keys > 0 {
        tracing::warn!(
            stored_keys,
            "authentication is OFF (no bootstrap API key configured): the {stored_keys} stored API key(s) and their permissions are not enforced"
        );
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "SECURITY WARNING: authentication is OFF and fila-server listens on {addr}, which is \
             not a loopback address: anyone who can reach it can read, write and delete every \
             queue. Set [auth] bootstrap_apikey (or FILA_BOOTSTRAP_APIKEY) to require API keys, \
             and --require-auth to refuse to start without one."
        );
    }
}

/// What the main thread hands every shard besides its own setup.
struct Wiring<'a> {
    /// The main thread's event channel.
    events: &'a flume::Sender<Event>,
    /// The shutdown every task observes.
    shutdown: &'a ShutdownSignal,
    /// TLS on the client port, shared (and reloaded) across shards.
    tls: Option<&'a ServerTls>,
}

/// Starts the executors, and a thread per executor that reports its end.
fn start(
    config: &Config,
    data_dir: &DataDir,
    host: &HostFacts,
    wiring: Wiring<'_>,
    metric_requests: Vec<Option<flume::Receiver<crate::telemetry::SnapshotRequest>>>,
    auth: &AuthSetup,
) -> Result<(), ServerError> {
    let shards = data_dir.shard_count().get();
    let Wiring {
        events,
        shutdown,
        tls,
    } = wiring;
    let mut metric_requests = metric_requests.into_iter();
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
    let tls = tls.map(|tls| TlsOnAccept {
        tls: tls.clone(),
        handshake_timeout: limits.handshake_timeout,
    });
    let shard_count = u64::try_from(shards).unwrap_or(1).max(1);
    let mut setups = Vec::with_capacity(shards);
    for shard in 0..shards {
        let (Some(bind), Some(mesh)) = (binds.next(), mesh.next()) else {
            break;
        };
        let (shutdown, cap, events) = (shutdown.clone(), cap.clone(), events.clone());
        let storage = StorageSetup {
            dir: data_dir.shard_dir(shard),
            durability: config.storage.durability,
            fjall: FjallOptions {
                durability: match config.storage.durability {
                    Durability::Process => FjallDurability::Process,
                    Durability::Fsync => FjallDurability::Fsync,
                    Durability::None => FjallDurability::None,
                },
                cache_size_bytes: (config.storage.cache_bytes.get() / shard_count).max(1 << 20),
                ..FjallOptions::default()
            },
            options: ShardOptions {
                seed: seed(shard),
                quantum: u32::try_from(config.scheduler.quantum.get()).unwrap_or(u32::MAX),
                payload_bytes_max: config.server.max_payload_bytes.get_usize(),
                skip_corrupt: config.storage.skip_corrupt,
                ..ShardOptions::default()
            },
            lua: LuaLimits {
                timeout_ms: config.lua.default_timeout_ms.get(),
                memory_limit_bytes: config.lua.default_memory_limit_bytes.get_usize(),
                circuit_breaker_threshold: u32::try_from(
                    config.lua.circuit_breaker_threshold.get(),
                )
                .unwrap_or(u32::MAX),
                circuit_breaker_cooldown_ms: config.lua.circuit_breaker_cooldown_ms.get(),
            },
        };
        setups.push(Some(ShardSetup {
            shard,
            bind,
            mesh,
            shutdown,
            cap,
            limits,
            tls: tls.clone(),
            storage,
            events,
            metrics: metric_requests.next().flatten(),
            auth: ShardAuthSetup {
                config: auth.config.clone(),
                store: auth.store.clone(),
                db: (shard == crate::auth::HOME_SHARD).then(|| auth.db.clone()),
            },
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
        tls,
        storage,
        events,
        metrics,
        auth,
    } = setup;
    let auth = ShardAuth::new(&auth.config, auth.store, auth.db);
    let broker = match open_broker(shard, storage, mesh, auth) {
        Ok(broker) => broker,
        Err(error) => {
            let _ = events.send(Event::StorageFailed { shard, error });
            return;
        }
    };
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
    broker.spawn_tasks();
    if let Some(requests) = metrics {
        glommio::spawn_local(crate::telemetry::serve_snapshots(
            requests,
            Rc::clone(&broker),
        ))
        .detach();
    }
    let stop = shutdown.clone();
    let inbox = glommio::spawn_local(Rc::clone(&broker).serve_inbox(async move {
        stop.wait().await;
    }));
    let handler = Rc::new(ProtocolHandler::new(Rc::clone(&broker), limits));
    accept_loop(shard, listener, handler, cap, shutdown, tls).await;
    inbox.await;
    broker.final_commit().await;
}

/// Opens the shard's database and recovers its core.
fn open_broker(
    shard: usize,
    setup: StorageSetup,
    mesh: MeshEndpoint<ShardMessage>,
    auth: ShardAuth,
) -> Result<Rc<Broker>, String> {
    let storage = FjallStorage::open(&setup.dir, setup.fjall).map_err(|error| {
        format!(
            "cannot open the database of shard {shard} in {}: {}",
            setup.dir.display(),
            error_chain(&error)
        )
    })?;
    // One Lua VM per shard, built on the shard's own thread (it is not `Send`).
    let hooks = LuaHooks::new(setup.lua, clock::monotonic())
        .map_err(|error| format!("cannot start the Lua VM of shard {shard}: {}", error.0))?;
    let (core, report) = Shard::open(storage, setup.options, Box::new(hooks), clock::now())
        .map_err(|error| {
            format!(
                "cannot recover shard {shard} from {}: {}",
                setup.dir.display(),
                error_chain(&error)
            )
        })?;
    for warning in &report.warnings {
        tracing::warn!(shard, "recovery: {warning}");
    }
    tracing::debug!(shard, ?report, "shard recovered");
    Ok(Broker::new(
        shard,
        core,
        setup.durability,
        setup.lua,
        mesh,
        auth,
    ))
}

/// `error` and its sources, joined with ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A seed for a shard's id generator: fresh per start.
fn seed(shard: usize) -> u64 {
    let now = clock::now().as_micros();
    now ^ (u64::try_from(shard)
        .unwrap_or(0)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15))
        ^ u64::from(std::process::id()).rotate_left(32)
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
            Ok(Event::StorageFailed { shard, error }) => {
                return Err(ServerError::Storage {
                    shard,
                    message: error,
                });
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
            Ok(Event::Reload) => {
                tracing::warn!("received SIGHUP before the server was listening; ignored");
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

/// Waits for a termination signal (`Ok`) or a shard that ends on its own (`Err`); reloads the
/// TLS certificates from the files of `reload` on each SIGHUP meanwhile.
fn await_stop(
    inbox: &flume::Receiver<Event>,
    reload: Option<(&ServerTls, &crate::config::TlsConfig)>,
) -> Result<(), ServerError> {
    loop {
        match inbox.recv() {
            Ok(Event::Reload) => reload_tls(reload),
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
            Ok(
                Event::Listening { .. } | Event::BindFailed { .. } | Event::StorageFailed { .. },
            ) => {}
            Err(flume::RecvError::Disconnected) => {
                return Err(ServerError::ShardStopped { shard: 0 });
            }
        }
    }
}

/// Reloads the TLS certificates; a failure is logged and keeps the old ones.
fn reload_tls(reload: Option<(&ServerTls, &crate::config::TlsConfig)>) {
    let Some((tls, files)) = reload else {
        tracing::info!("received SIGHUP; TLS is off, nothing to reload");
        return;
    };
    match tls.reload(files) {
        Ok(()) => tracing::info!(
            "received SIGHUP; reloaded the TLS certificates from {}",
            files.cert_file.display()
        ),
        Err(error) => tracing::error!(
            "received SIGHUP; TLS reload failed, still serving the previous certificates: {}",
            error_chain(&error)
        ),
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
            Ok(
                Event::Listening { .. }
                | Event::BindFailed { .. }
                | Event::StorageFailed { .. }
                | Event::Reload,
            ) => {}
            Err(_) => {
                let seconds = SHUTDOWN_DEADLINE.as_secs().max(1);
                return Err(ServerError::ShutdownTimedOut { running, seconds });
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
