//! The broker shell of one shard: the [`Shard`] core with its fjall storage, driven from the
//! shard's glommio executor by four tasks, plus the routing of operations between shards.
//!
//! - **Operations** ([`Op`]) are executed synchronously on the owning shard ([`Broker::execute`]),
//!   so operations of one connection on one queue take effect in arrival order; the reply then
//!   waits for the group commit that holds its writes ([`Broker::settle`]).
//! - **Committer**: all writes accepted during one turn of the executor go into one atomic
//!   batch with one durability call (`process`: written to the OS on the reactor thread, a
//!   memcpy and a `write(2)`; `fsync`: the `fdatasync` runs on the shard's blocking thread
//!   while the next group accumulates). Replies are released only after their group is durable.
//!   A failed write poisons the shard: every reply of that group and every later write reports
//!   a storage error.
//! - **Pump**: hands ready messages to consumers with credit and routes each delivery to the
//!   shard that holds the consumer's connection (itself, or another shard over the mesh).
//! - **Timers**: lease expiries and delayed retries run when due; the task sleeps until the
//!   core's next instant and is woken when an operation arms an earlier one.
//! - **Inbox**: requests forwarded by other shards (executed in arrival order, replied over a
//!   one-shot channel) and deliveries for this shard's connections.
//!
//! Connection ids are global: the shard that accepted the connection is in the top 16 bits,
//! so any shard can route a delivery back to its connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use fila_shard::storage::fjall::{FjallStorage, SyncHandle};
use fila_shard::storage::{Storage, StorageError};
use fila_shard::{
    AckError, AckItem, ConfigError, ConnectionId, ConsumeError, ConsumerId, CreateQueueError,
    DeleteQueueError, DeletedQueue, Delivery, EnqueueError, EnqueueItem, MessageId, NackError,
    NackItem, Poisoned, QueueSpec, QueueStats, QueueSummary, RedriveError, Shard, StatsError,
};

use fila_shard::HookStats;
use fila_shard::lua::{self, DryRunMessage, DryRunOutcome, HookKind, LuaLimits};

use crate::config::Durability;
use crate::routing::shard_for;
use crate::rt::{self, MeshEndpoint, Notify, clock};

#[path = "throttle_mesh.rs"]
mod throttle_mesh;

#[path = "auth_home.rs"]
mod auth_home;
pub use auth_home::AuthPending;

/// Deliveries taken from the core per pump step (then the pump yields).
const PUMP_BATCH: usize = 256;
/// The timer task re-checks at least this often even when nothing is armed.
const TIMER_IDLE_CHECK: Duration = Duration::from_secs(60);
/// How often a shard's executor wakes up even when idle (see [`heartbeat`]).
const HEARTBEAT: Duration = Duration::from_millis(20);
/// Bits of a [`ConnectionId`] below the accepting shard's index.
const CONNECTION_SHARD_SHIFT: u32 = 48;

/// An operation on the queues of one shard. Owned and `Send`, so it can cross shards.
#[derive(Debug)]
pub enum Op {
    /// Enqueue items (all owned by the target shard).
    Enqueue(Vec<EnqueueItem>),
    /// Ack items from `connection`.
    Ack {
        /// The acking connection (only the lease holder may ack).
        connection: ConnectionId,
        /// Items.
        items: Vec<AckItem>,
    },
    /// Nack items from `connection`.
    Nack {
        /// The nacking connection.
        connection: ConnectionId,
        /// Items.
        items: Vec<NackItem>,
    },
    /// Subscribe `connection` to `queue`; the subscription is the Consume's request id.
    Consume {
        /// Queue.
        queue: String,
        /// The connection.
        connection: ConnectionId,
        /// The Consume's request id.
        subscription: u32,
        /// Unacked deliveries the subscription may hold.
        credit: u32,
    },
    /// End a subscription (its leases stay valid).
    Cancel {
        /// The connection.
        connection: ConnectionId,
        /// The Consume's request id.
        subscription: u32,
    },
    /// The connection closed: end its subscriptions and release its leases.
    Release {
        /// The connection.
        connection: ConnectionId,
    },
    /// CreateQueue.
    CreateQueue(QueueSpec),
    /// DeleteQueue.
    DeleteQueue(String),
    /// GetStats.
    Stats(String),
    /// ListQueues (this shard's part).
    ListQueues,
    /// SetConfig (every shard applies it).
    SetConfig {
        /// Key.
        key: String,
        /// Value; empty deletes.
        value: String,
    },
    /// Redrive.
    Redrive {
        /// The dead-letter queue.
        dlq: String,
        /// Most to move; 0 = all.
        count: u64,
    },
    /// Dry-run a Lua hook (extension LuaTest): nothing changes.
    LuaTest(Box<LuaTestOp>),
}

/// A dry run of a hook against a described message.
#[derive(Debug)]
pub struct LuaTestOp {
    /// Which hook.
    pub kind: HookKind,
    /// The source to run; `None` = the queue's own hook.
    pub script: Option<String>,
    /// The message (its `queue` names the queue).
    pub message: DryRunMessage,
}

/// Why a dry run has no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LuaTestFailure {
    /// The queue's own hook was asked for and the queue does not exist.
    QueueNotFound,
    /// The script did not compile, failed or returned no decision.
    Script(String),
}

/// The result of an [`Op`].
#[derive(Debug)]
pub enum Outcome {
    /// Per item.
    Enqueue(Vec<Result<MessageId, EnqueueError>>),
    /// Per item.
    Ack(Vec<Result<(), AckError>>),
    /// Per item.
    Nack(Vec<Result<(), NackError>>),
    /// The new consumer.
    Consume(Result<ConsumerId, ConsumeError>),
    /// Cancel and Release have no result.
    Done,
    /// CreateQueue.
    CreateQueue(Result<(), CreateQueueError>),
    /// DeleteQueue.
    DeleteQueue(Result<(), DeleteQueueError>),
    /// GetStats.
    Stats(Box<Result<(QueueStats, Option<HookStats>), StatsError>>),
    /// ListQueues.
    ListQueues(Vec<QueueSummary>),
    /// SetConfig.
    SetConfig(Result<(), ConfigError>),
    /// Redrive.
    Redrive(Result<u64, RedriveError>),
    /// LuaTest.
    LuaTest(Result<DryRunOutcome, LuaTestFailure>),
}

impl Outcome {
    /// The outcome after the group commit holding its writes failed: every success becomes a
    /// storage error (failures keep their own reason).
    fn storage_failed(self) -> Outcome {
        match self {
            Outcome::Enqueue(results) => Outcome::Enqueue(
                results
                    .into_iter()
                    .map(|r| r.and(Err(EnqueueError::Storage(Poisoned))))
                    .collect(),
            ),
            Outcome::Ack(results) => Outcome::Ack(
                results
                    .into_iter()
                    .map(|r| r.and(Err(AckError::Storage(Poisoned))))
                    .collect(),
            ),
            Outcome::Nack(results) => Outcome::Nack(
                results
                    .into_iter()
                    .map(|r| r.and(Err(NackError::Storage(Poisoned))))
                    .collect(),
            ),
            Outcome::CreateQueue(r) => {
                Outcome::CreateQueue(r.and(Err(CreateQueueError::Storage(Poisoned))))
            }
            Outcome::DeleteQueue(r) => {
                Outcome::DeleteQueue(r.and(Err(DeleteQueueError::Storage(Poisoned))))
            }
            Outcome::SetConfig(r) => Outcome::SetConfig(r.and(Err(ConfigError::Storage(Poisoned)))),
            Outcome::Redrive(r) => Outcome::Redrive(r.and(Err(RedriveError::Storage(Poisoned)))),
            other => other,
        }
    }
}

/// A delivery on its way to the shard that holds the connection.
#[derive(Debug)]
pub struct Routed {
    /// The connection.
    pub connection: ConnectionId,
    /// The subscription (Consume request id).
    pub subscription: u32,
    /// The message.
    pub delivery: Delivery,
}

/// Wakes the executor every [`HEARTBEAT`]. Under benchmark load a wake-up sent from another
/// shard's thread (a forwarded request's reply, a mesh message) was occasionally not acted on
/// until something else woke the parked executor: a one-request-at-a-time client then waited
/// forever (2 of 40 one-second runs of `fila-bench rtt`; 0 of 40 with the heartbeat). Waking
/// periodically bounds such a stall to one heartbeat, at the cost of 50 timer wake-ups per
/// second per shard (idle CPU stays well under 1 % of a core).
async fn heartbeat() {
    loop {
        rt::sleep(HEARTBEAT).await;
    }
}

/// Messages between shards.
#[derive(Debug)]
pub enum ShardMessage {
    /// An operation for this shard; the outcome goes back on `reply` (if any).
    Request {
        /// The operation.
        op: Op,
        /// Where the outcome goes.
        reply: Option<flume::Sender<Outcome>>,
    },
    /// Deliveries for connections of this shard.
    Deliver(Vec<Routed>),
    /// A throttle token-lease message (request, grant, return) for this shard.
    Throttle(fila_shard::throttle::TokenMsg),
    /// A key change for the home shard to validate, persist and broadcast.
    AuthMutate {
        /// The change asked for.
        mutation: crate::auth::AuthMutation,
        /// Where the result goes.
        reply: flume::Sender<Result<crate::auth::AuthReply, crate::auth::AuthFailure>>,
    },
    /// A persisted key change to apply to this shard's copy of the key store.
    AuthApply {
        /// The change.
        change: fila_shard::auth::AuthChange,
        /// Signalled once applied.
        done: flume::Sender<()>,
    },
}

/// Why an operation got no outcome.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The owning shard has stopped (the server is shutting down).
    #[error("shard {0} is not running")]
    ShardStopped(usize),
}

/// The outcome of a submitted operation, once it is durable.
pub type Pending = Pin<Box<dyn Future<Output = Result<Outcome, RouteError>>>>;

/// What a connection of this shard offers the broker: where its deliveries go.
pub trait DeliverySink {
    /// Queues deliveries of `subscription` for writing.
    fn deliver(&self, subscription: u32, deliveries: Vec<Delivery>);

    /// The API key `key_id` was changed or revoked: a connection authenticated with it
    /// re-checks its subscriptions.
    fn auth_changed(&self, key_id: &str) {
        let _ = key_id;
    }
}

/// Group-commit bookkeeping: writes accumulate in epoch `open`; the committer closes it.
#[derive(Debug, Default)]
struct Epochs {
    /// The epoch accepting writes now.
    open: Cell<u64>,
    /// The last epoch whose commit finished (successfully or not).
    finished: Cell<u64>,
    /// The first epoch whose commit failed; it and every later one fail.
    failed_from: Cell<Option<u64>>,
    /// Waiters for `finished` to advance.
    waiters: RefCell<Vec<Waker>>,
}

impl Epochs {
    fn finish(&self, epoch: u64, ok: bool) {
        if !ok && self.failed_from.get().is_none() {
            self.failed_from.set(Some(epoch));
        }
        self.finished.set(epoch);
        for waker in std::mem::take(&mut *self.waiters.borrow_mut()) {
            waker.wake();
        }
    }

    async fn durable(&self, epoch: u64) -> bool {
        poll_fn(|cx| {
            if self.finished.get() >= epoch {
                return Poll::Ready(self.failed_from.get().is_none_or(|f| epoch < f));
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Subscriptions this shard's core serves, by consumer and by (connection, request id).
#[derive(Debug, Default)]
struct Subscriptions {
    by_consumer: HashMap<ConsumerId, (ConnectionId, u32)>,
    by_connection: HashMap<ConnectionId, Vec<(u32, ConsumerId)>>,
}

impl Subscriptions {
    fn add(&mut self, consumer: ConsumerId, connection: ConnectionId, subscription: u32) {
        self.by_consumer
            .insert(consumer, (connection, subscription));
        self.by_connection
            .entry(connection)
            .or_default()
            .push((subscription, consumer));
    }

    fn remove(&mut self, connection: ConnectionId, subscription: u32) -> Option<ConsumerId> {
        let subs = self.by_connection.get_mut(&connection)?;
        let at = subs.iter().position(|(s, _)| *s == subscription)?;
        let (_, consumer) = subs.swap_remove(at);
        if subs.is_empty() {
            self.by_connection.remove(&connection);
        }
        self.by_consumer.remove(&consumer);
        Some(consumer)
    }

    fn remove_consumer(&mut self, consumer: ConsumerId) {
        if let Some((connection, subscription)) = self.by_consumer.get(&consumer).copied() {
            self.remove(connection, subscription);
        }
    }

    fn remove_connection(&mut self, connection: ConnectionId) {
        for (_, consumer) in self.by_connection.remove(&connection).unwrap_or_default() {
            self.by_consumer.remove(&consumer);
        }
    }
}

/// The broker of one shard. Lives in an `Rc` on its executor; never crosses threads.
pub struct Broker {
    index: usize,
    shards: usize,
    core: RefCell<Shard<FjallStorage>>,
    durability: Durability,
    lua_limits: LuaLimits,
    sync: SyncHandle,
    mesh: MeshEndpoint<ShardMessage>,
    epochs: Epochs,
    commit_needed: Notify,
    pump_needed: Notify,
    timer_changed: Notify,
    armed: Cell<Option<fila_shard::Time>>,
    subscriptions: RefCell<Subscriptions>,
    connections: RefCell<HashMap<ConnectionId, Weak<dyn DeliverySink>>>,
    next_connection: Cell<u64>,
    auth: crate::auth::ShardAuth,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("index", &self.index)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over a recovered core.
    pub fn new(
        index: usize,
        core: Shard<FjallStorage>,
        durability: Durability,
        lua_limits: LuaLimits,
        mesh: MeshEndpoint<ShardMessage>,
        auth: crate::auth::ShardAuth,
    ) -> Rc<Broker> {
        let sync = core.storage().sync_handle();
        let shards = mesh.shard_count();
        let mut core = core;
        throttle_mesh::set_topology(&mut core, index, shards);
        let broker = Rc::new(Broker {
            index,
            shards,
            core: RefCell::new(core),
            durability,
            lua_limits,
            sync,
            mesh,
            epochs: Epochs::default(),
            commit_needed: Notify::new(),
            pump_needed: Notify::new(),
            timer_changed: Notify::new(),
            armed: Cell::new(None),
            subscriptions: RefCell::new(Subscriptions::default()),
            connections: RefCell::new(HashMap::new()),
            next_connection: Cell::new(1),
            auth,
        });
        broker.epochs.open.set(1);
        broker
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Shards in the server.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The shard that owns `queue`.
    pub fn owner(&self, queue: &str) -> usize {
        shard_for(queue, self.shards)
    }

    /// Registers a connection of this shard; its id is unique across the server.
    pub fn open_connection(&self, sink: Weak<dyn DeliverySink>) -> ConnectionId {
        let n = self.next_connection.get();
        self.next_connection.set(n + 1);
        let shard = u64::try_from(self.index).unwrap_or(0);
        let id = ConnectionId(
            (shard << CONNECTION_SHARD_SHIFT) | (n & ((1 << CONNECTION_SHARD_SHIFT) - 1)),
        );
        self.connections.borrow_mut().insert(id, sink);
        id
    }

    /// Ends every subscription of `connection` and releases its leases on every shard
    /// (failed attempts), leaving the connection open: what a revoked key's connection gets.
    pub async fn release_everywhere(&self, connection: ConnectionId) {
        for shard in 0..self.shards {
            // Nothing to wait for: the release needs no reply.
            let _ = self.send(shard, Op::Release { connection }, None).await;
        }
    }

    /// Forgets a connection of this shard. With `release`, every shard ends its
    /// subscriptions and releases its leases at once (failed attempts); without (server
    /// shutdown), leases keep their deadlines and survive the restart.
    pub async fn close_connection(self: &Rc<Self>, connection: ConnectionId, release: bool) {
        self.connections.borrow_mut().remove(&connection);
        if release {
            self.release_everywhere(connection).await;
        }
    }

    /// Runs `op` on `shard`: on this shard it executes before this returns (so operations
    /// submitted in order take effect in order); on another it is queued in that shard's inbox
    /// (waiting while the inbox is full). The returned future resolves when the outcome is
    /// durable.
    pub async fn submit(self: &Rc<Self>, shard: usize, op: Op) -> Pending {
        if shard == self.index {
            let (outcome, epoch) = self.execute(op);
            let broker = Rc::clone(self);
            return Box::pin(async move { Ok(broker.settle(outcome, epoch).await) });
        }
        let (reply, answer) = flume::bounded(1);
        if let Err(error) = self.send(shard, op, Some(reply)).await {
            return Box::pin(async move { Err(error) });
        }
        Box::pin(async move {
            answer
                .recv_async()
                .await
                .map_err(|_| RouteError::ShardStopped(shard))
        })
    }

    async fn send(
        &self,
        shard: usize,
        op: Op,
        reply: Option<flume::Sender<Outcome>>,
    ) -> Result<(), RouteError> {
        self.mesh
            .send_to(shard, ShardMessage::Request { op, reply })
            .await
            .map_err(|_| RouteError::ShardStopped(shard))
    }

    /// Executes `op` on this shard now. The epoch is the group commit the reply must wait for
    /// (`None` when there is nothing to make durable).
    pub fn execute(&self, op: Op) -> (Outcome, Option<u64>) {
        let now = clock::now();
        let outcome = {
            let mut core = self.core.borrow_mut();
            match op {
                Op::Enqueue(items) => Outcome::Enqueue(core.enqueue(now, items)),
                Op::Ack { connection, items } => Outcome::Ack(core.ack(now, connection, &items)),
                Op::Nack { connection, items } => Outcome::Nack(core.nack(now, connection, &items)),
                Op::Consume {
                    queue,
                    connection,
                    subscription,
                    credit,
                } => {
                    let mut subs = self.subscriptions.borrow_mut();
                    if let Some(old) = subs.remove(connection, subscription) {
                        core.unregister_consumer(now, old);
                    }
                    let result = core.register_consumer(now, &queue, connection, credit);
                    if let Ok(consumer) = result {
                        subs.add(consumer, connection, subscription);
                    }
                    Outcome::Consume(result)
                }
                Op::Cancel {
                    connection,
                    subscription,
                } => {
                    if let Some(consumer) = self
                        .subscriptions
                        .borrow_mut()
                        .remove(connection, subscription)
                    {
                        core.unregister_consumer(now, consumer);
                    }
                    Outcome::Done
                }
                Op::Release { connection } => {
                    self.subscriptions
                        .borrow_mut()
                        .remove_connection(connection);
                    core.release_connection(now, connection);
                    Outcome::Done
                }
                Op::CreateQueue(spec) => Outcome::CreateQueue(core.create_queue(now, spec)),
                Op::DeleteQueue(name) => {
                    let result = core.delete_queue(now, &name);
                    if let Ok(DeletedQueue {
                        dropped_consumers, ..
                    }) = &result
                    {
                        let mut subs = self.subscriptions.borrow_mut();
                        for (consumer, _) in dropped_consumers {
                            subs.remove_consumer(*consumer);
                        }
                    }
                    Outcome::DeleteQueue(result.map(|_| ()))
                }
                Op::Stats(name) => Outcome::Stats(Box::new(
                    core.stats(&name)
                        .map(|stats| (stats, core.hook_stats(&name))),
                )),
                Op::ListQueues => Outcome::ListQueues(core.list_queues()),
                Op::SetConfig { key, value } => {
                    Outcome::SetConfig(core.set_config(now, &key, &value))
                }
                Op::Redrive { dlq, count } => Outcome::Redrive(core.redrive(now, &dlq, count)),
                Op::LuaTest(test) => Outcome::LuaTest(self.lua_test(&core, &test)),
            }
        };
        (outcome, self.after_change())
    }

    /// Runs a hook once in a fresh sandbox with this shard's Lua limits and runtime config.
    fn lua_test(
        &self,
        core: &Shard<FjallStorage>,
        test: &LuaTestOp,
    ) -> Result<DryRunOutcome, LuaTestFailure> {
        let queue = test.message.queue.as_str();
        let script = match &test.script {
            Some(script) => script.clone(),
            None => {
                let scripts = core
                    .queue_scripts(queue)
                    .ok_or(LuaTestFailure::QueueNotFound)?;
                let own = match test.kind {
                    HookKind::OnEnqueue => scripts.on_enqueue.clone(),
                    HookKind::OnFailure => scripts.on_failure.clone(),
                };
                own.ok_or_else(|| {
                    LuaTestFailure::Script(format!(
                        "queue \"{queue}\" has no {} hook",
                        test.kind.name()
                    ))
                })?
            }
        };
        lua::dry_run(
            self.lua_limits,
            clock::monotonic(),
            core.config(),
            test.kind,
            &script,
            &test.message,
        )
        .map_err(LuaTestFailure::Script)
    }

    /// After any change to the core: wake the pump, arm the timer, schedule a commit. Returns
    /// the epoch holding the pending writes, if any.
    fn after_change(&self) -> Option<u64> {
        self.ship_throttle();
        let core = self.core.borrow();
        self.arm_timer(core.next_timer());
        self.pump_needed.notify();
        if core.has_writes() {
            self.commit_needed.notify();
            Some(self.epochs.open.get())
        } else {
            None
        }
    }

    /// Wakes the timer task when `next` is earlier than what it sleeps towards.
    fn arm_timer(&self, next: Option<fila_shard::Time>) {
        if next.is_some_and(|t| self.armed.get().is_none_or(|armed| t < armed)) {
            self.armed.set(next);
            self.timer_changed.notify();
        }
    }

    /// Waits until `epoch` is durable; a failed commit turns successes into storage errors.
    pub async fn settle(&self, outcome: Outcome, epoch: Option<u64>) -> Outcome {
        match epoch {
            None => outcome,
            Some(epoch) => {
                if self.epochs.durable(epoch).await {
                    outcome
                } else {
                    outcome.storage_failed()
                }
            }
        }
    }

    /// Reads the core without changing it (config lookups).
    pub fn with_core<R>(&self, read: impl FnOnce(&Shard<FjallStorage>) -> R) -> R {
        read(&self.core.borrow())
    }

    /// Starts the shard's tasks; they run until the executor stops.
    pub fn spawn_tasks(self: &Rc<Self>) {
        glommio::spawn_local(Rc::clone(self).committer()).detach();
        glommio::spawn_local(Rc::clone(self).pump()).detach();
        glommio::spawn_local(Rc::clone(self).timers()).detach();
        glommio::spawn_local(heartbeat()).detach();
    }

    /// Serves the mesh inbox until `stop` resolves.
    pub async fn serve_inbox(self: Rc<Self>, stop: impl Future<Output = ()>) {
        let serve = async {
            while let Some(message) = self.mesh.recv().await {
                match message {
                    ShardMessage::Request { op, reply } => {
                        let (outcome, epoch) = self.execute(op);
                        let broker = Rc::clone(&self);
                        glommio::spawn_local(async move {
                            let outcome = broker.settle(outcome, epoch).await;
                            if let Some(reply) = reply {
                                // The requester may be gone (its connection closed).
                                let _ = reply.send(outcome);
                            }
                        })
                        .detach();
                    }
                    ShardMessage::Deliver(routed) => self.deliver_local(routed),
                    ShardMessage::Throttle(msg) => self.receive_throttle(msg),
                    ShardMessage::AuthMutate { mutation, reply } => {
                        let broker = Rc::clone(&self);
                        glommio::spawn_local(async move {
                            // The requester may be gone (its connection closed).
                            let _ = reply.send(broker.auth_mutate_here(mutation).await);
                        })
                        .detach();
                    }
                    ShardMessage::AuthApply { change, done } => {
                        self.auth.apply(&change);
                        self.auth_changed(&change);
                        let _ = done.send(());
                    }
                }
            }
        };
        futures_lite::future::or(serve, stop).await;
    }

    /// Commits the pending writes now (at shutdown, after the connections are done).
    pub async fn final_commit(&self) {
        self.commit_once().await;
    }

    async fn committer(self: Rc<Self>) {
        loop {
            self.commit_needed.wait().await;
            self.commit_once().await;
        }
    }

    async fn commit_once(&self) {
        let (epoch, batch) = {
            let mut core = self.core.borrow_mut();
            if !core.has_writes() {
                return;
            }
            let epoch = self.epochs.open.get();
            self.epochs.open.set(epoch + 1);
            (epoch, core.take_writes())
        };
        let result = match self.durability {
            Durability::Fsync => {
                let written = self.core.borrow_mut().storage_mut().apply_unsynced(&batch);
                match written {
                    Ok(()) => {
                        let sync = self.sync.clone();
                        rt::spawn_blocking(move || sync.sync()).await
                    }
                    Err(error) => Err(error),
                }
            }
            Durability::Process | Durability::None => {
                self.core.borrow_mut().storage_mut().apply(&batch)
            }
        };
        let ok = result.is_ok();
        if let Err(error) = result {
            self.poison(&error);
        }
        self.epochs.finish(epoch, ok);
    }

    fn poison(&self, error: &StorageError) {
        let mut core = self.core.borrow_mut();
        if !core.is_poisoned() {
            tracing::error!(
                shard = self.index,
                %error,
                "storage write failed: this shard refuses further writes until restarted (check disk space and permissions of the data directory)"
            );
        }
        core.poison();
    }

    async fn pump(self: Rc<Self>) {
        let mut out = Vec::with_capacity(PUMP_BATCH);
        loop {
            self.pump_needed.wait().await;
            loop {
                out.clear();
                let delivered =
                    self.core
                        .borrow_mut()
                        .poll_deliveries(clock::now(), PUMP_BATCH, &mut out);
                if delivered == 0 {
                    // Throttle-parked keys may have armed a refill timer or asked for tokens.
                    self.after_idle_poll();
                    break;
                }
                self.after_change();
                self.route(&mut out).await;
                glommio::yield_if_needed().await;
            }
        }
    }

    /// Sends deliveries to the shards of their connections.
    async fn route(&self, deliveries: &mut Vec<Delivery>) {
        let mut by_shard: Vec<Vec<Routed>> = (0..self.shards).map(|_| Vec::new()).collect();
        {
            let subs = self.subscriptions.borrow();
            for delivery in deliveries.drain(..) {
                let Some((connection, subscription)) =
                    subs.by_consumer.get(&delivery.consumer).copied()
                else {
                    continue;
                };
                let shard = usize::try_from(connection.0 >> CONNECTION_SHARD_SHIFT).unwrap_or(0);
                if let Some(list) = by_shard.get_mut(shard) {
                    list.push(Routed {
                        connection,
                        subscription,
                        delivery,
                    });
                }
            }
        }
        for (shard, routed) in by_shard.into_iter().enumerate() {
            if routed.is_empty() {
                continue;
            }
            if shard == self.index {
                self.deliver_local(routed);
            } else if let Err(error) = self
                .mesh
                .send_to(shard, ShardMessage::Deliver(routed))
                .await
            {
                // The other shard stopped (shutdown): the leases expire or survive restart.
                tracing::debug!(%error, "deliveries not routed");
            }
        }
    }

    /// Hands deliveries to connections of this shard (dropped for a closed connection: its
    /// release, sent when it closed, frees the leases).
    fn deliver_local(&self, routed: Vec<Routed>) {
        let connections = self.connections.borrow();
        let mut run: Vec<Delivery> = Vec::new();
        let mut current: Option<(ConnectionId, u32)> = None;
        let flush = |target: Option<(ConnectionId, u32)>, run: &mut Vec<Delivery>| {
            if let Some((connection, subscription)) = target
                && let Some(sink) = connections.get(&connection).and_then(Weak::upgrade)
            {
                sink.deliver(subscription, std::mem::take(run));
            }
            run.clear();
        };
        for item in routed {
            let target = Some((item.connection, item.subscription));
            if current != target {
                flush(current, &mut run);
                current = target;
            }
            run.push(item.delivery);
        }
        flush(current, &mut run);
    }

    async fn timers(self: Rc<Self>) {
        loop {
            let next = self.core.borrow().next_timer();
            self.armed.set(next);
            let wait = next.map_or(TIMER_IDLE_CHECK, |at| {
                clock::until(clock::now(), at).min(TIMER_IDLE_CHECK)
            });
            futures_lite::future::or(rt::sleep(wait), self.timer_changed.wait()).await;
            let next = self.core.borrow_mut().tick(clock::now());
            // Record what is armed before `after_change`, which would otherwise see an earlier
            // instant than "nothing" and wake this task again at once.
            self.armed.set(next);
            self.after_change();
        }
    }
}
