//! One client connection speaking the Fila binary protocol v1 (`wire-protocol.md` §7).
//!
//! The reader takes frames off the socket and submits each request to the broker in arrival
//! order (see [`crate::broker::Broker::submit`]): requests on one queue take effect in the
//! order they arrived, while their replies are written as each becomes durable (clients match
//! replies by request id). The writer task drains one outgoing buffer that replies and
//! Delivery frames are encoded into.
//!
//! Limits: the handshake must complete within `handshake_timeout_ms`; a started frame within
//! `frame_timeout_ms`; an idle established connection is never closed. A connection stops
//! reading (TCP pushes back on the client) while it has [`IN_FLIGHT_MAX`] requests in flight
//! or [`OUTBOX_BYTES_MAX`] bytes waiting for a client that does not read; deliveries are
//! bounded by the subscriptions' credit windows. Nothing waits on another connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use fila_shard::{
    AckError, ConfigError, ConsumeError, CreateQueueError, DeleteQueueError, Delivery,
    EnqueueError, MessageId, NackError, QueueScripts, QueueSpec, RedriveError, StatsError,
};
use fila_wire::{
    ConfigEntry, DeliveryFrameBuilder, DeliveryMessage, EnqueueItemResult, ErrorCode, Frame,
    FrameDecoder, FrameError, HandshakeOk, KeyStats, LuaTestResult, Opcode, QueueStats,
    QueueSummary, Request, Response, StatsExtension, ThrottleStats, limits::FRAME_BYTES_MAX,
};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use fila_shard::FailureDecision;
use fila_shard::lua::{DryRunMessage, DryRunOutcome, HookKind};

use fila_shard::auth::{Caller, GRANTS_MAX, Grant, TEXT_BYTES_MAX};
use fila_wire::{ApiKeyInfo, Permission};

use crate::auth::{AuthFailure, AuthMutation, AuthReply, ShardAuth};
use crate::broker::{
    AuthPending, Broker, DeliverySink, LuaTestFailure, LuaTestOp, Op, Outcome, Pending, RouteError,
};
use crate::connection::{Connection, ConnectionHandler, ConnectionLimits};
use crate::rt::{self, Notify, ShutdownSignal, Stream};

/// Requests of one connection in flight before it stops reading.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Bytes waiting to be written before the connection stops reading requests.
pub const OUTBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A Delivery frame is closed once it holds this much (smaller frames reach clients sooner).
const DELIVERY_FRAME_SOFT_BYTES: usize = 256 * 1024;

/// Serves protocol connections of one shard.
#[derive(Debug)]
pub struct ProtocolHandler {
    broker: Rc<Broker>,
    limits: ConnectionLimits,
    read_budget: Rc<ReadBudget>,
}

impl ProtocolHandler {
    /// A handler for the connections of `broker`'s shard.
    pub fn new(broker: Rc<Broker>, limits: ConnectionLimits) -> ProtocolHandler {
        let shards = broker.shard_count().max(1);
        ProtocolHandler {
            broker,
            limits,
            read_budget: Rc::new(ReadBudget::new(READ_BUDGET_BYTES / shards)),
        }
    }
}

impl ConnectionHandler for ProtocolHandler {
    async fn serve(self: Rc<Self>, connection: Connection) {
        let Connection {
            shard,
            stream,
            peer,
            shutdown,
        } = connection;
        let (reader, writer) = futures_lite::io::split(stream);
        let mut input = Input {
            reader,
            buf: BytesMut::with_capacity(READ_CHUNK),
            decoder: FrameDecoder::new(),
            scratch: vec![0_u8; READ_CHUNK],
            charged: 0,
            budget: Rc::clone(&self.read_budget),
        };
        let mut writer = writer;
        let caller = match handshake(
            &mut input,
            &mut writer,
            &self.limits,
            &shutdown,
            self.broker.auth(),
            peer,
        )
        .await
        {
            Ok(caller) => caller,
            Err(reason) => {
                tracing::debug!(shard, %peer, reason, "connection closed during the handshake");
                return;
            }
        };
        let outbox = Rc::new(Outbox::default());
        if let Some(caller) = &caller {
            *outbox.guard.borrow_mut() = Some(Guard {
                caller: caller.clone(),
                broker: Rc::downgrade(&self.broker),
            });
        }
        let sink: Rc<dyn DeliverySink> = outbox.clone();
        let id = self.broker.open_connection(Rc::downgrade(&sink));
        let watcher = caller.clone().map(|caller| {
            glommio::spawn_local(watch_key(
                Rc::clone(&self.broker),
                Rc::clone(&outbox),
                caller,
                id,
            ))
        });
        let writer_task = glommio::spawn_local(write_loop(Rc::clone(&outbox), writer));
        let mut session = Session {
            broker: Rc::clone(&self.broker),
            connection: id,
            outbox: Rc::clone(&outbox),
            subscriptions: HashMap::new(),
            credit: self.limits.credit_window,
            caller,
        };
        let end = session.read_loop(&mut input, &self.limits, &shutdown).await;
        tracing::debug!(shard, %peer, reason = end.reason(), "connection ended");
        // Replies still in flight finish (their effects happen anyway); a closing client does
        // not get them unless it is still reading.
        outbox.room.wait_until(|| outbox.in_flight.get() == 0).await;
        let release = !matches!(end, End::Shutdown);
        self.broker.close_connection(id, release).await;
        outbox.closed.set(true);
        outbox.ready.notify();
        outbox.auth_changed.notify();
        if let Some(watcher) = watcher {
            watcher.await;
        }
        writer_task.await;
    }
}

/// The read side: socket, read buffer, frame decoder.
struct Input {
    reader: ReadHalf<Stream>,
    buf: BytesMut,
    decoder: FrameDecoder,
    scratch: Vec<u8>,
    /// Bytes this connection holds in partial frames and continuation streams, as charged to
    /// the shard's budget.
    charged: usize,
    budget: Rc<ReadBudget>,
}

/// The bytes all connections of one shard may hold in frames still arriving (the read
/// buffer of an incomplete frame plus open continuation streams). Over it, the connection
/// that would exceed it is closed: many slow or hostile clients cannot exhaust memory.
#[derive(Debug)]
pub struct ReadBudget {
    max: usize,
    used: Cell<usize>,
}

impl ReadBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> ReadBudget {
        ReadBudget {
            max,
            used: Cell::new(0),
        }
    }

    /// A connection that had `previous` bytes charged now holds `now`: recharges it and says
    /// whether the shard is still within budget (a connection holding nothing always is).
    fn recharge(&self, previous: usize, now: usize) -> bool {
        let used = self.used.get().saturating_sub(previous) + now;
        self.used.set(used);
        used <= self.max || now == 0
    }
}

/// Server-wide bytes of frames still arriving, shared equally by the shards (decisions.md:
/// "a global budget (e.g. 1 GiB)").
pub const READ_BUDGET_BYTES: usize = 1 << 30;

/// The largest Handshake frame: header, version, presence byte, and the longest key string.
/// A longer announced length is not a Handshake; the connection is closed before its body is
/// read, so an unauthenticated client cannot make the server buffer megabytes.
const HANDSHAKE_FRAME_BYTES_MAX: usize = 6 + 2 + 1 + 2 + u16::MAX as usize;

impl Drop for Input {
    fn drop(&mut self) {
        self.budget.recharge(self.charged, 0);
    }
}

/// Why a read for the next frame stopped.
enum ReadFailure {
    Closed,
    Timeout,
    Io(std::io::Error),
    Shutdown,
    Frame(FrameError),
    /// The shard's budget for frames still arriving is spent.
    OverBudget,
}

impl Input {
    /// The next frame. A partial frame must complete within `frame_timeout`; waiting for a
    /// frame to start has no limit (idle connections stay open).
    async fn next_frame(
        &mut self,
        frame_timeout: Duration,
        shutdown: &ShutdownSignal,
    ) -> Result<Frame, ReadFailure> {
        self.read_frame(frame_timeout, shutdown, false).await
    }

    /// The Handshake frame: never reassembled (§7.1: the flags are not looked at), and closed
    /// as soon as its announced length is more than a Handshake can be.
    async fn handshake_frame(
        &mut self,
        frame_timeout: Duration,
        shutdown: &ShutdownSignal,
    ) -> Result<Frame, ReadFailure> {
        self.read_frame(frame_timeout, shutdown, true).await
    }

    /// Charges this connection's buffered bytes to the shard's budget.
    fn charge(&mut self) -> Result<(), ReadFailure> {
        let now = self.buf.len() + self.decoder.buffered_bytes();
        let within = self.budget.recharge(self.charged, now);
        self.charged = now;
        if within {
            Ok(())
        } else {
            Err(ReadFailure::OverBudget)
        }
    }

    async fn read_frame(
        &mut self,
        frame_timeout: Duration,
        shutdown: &ShutdownSignal,
        handshake: bool,
    ) -> Result<Frame, ReadFailure> {
        loop {
            let decoded = if handshake {
                if let Some(prefix) = self.buf.first_chunk::<4>() {
                    let length = u32::from_be_bytes(*prefix);
                    if usize::try_from(length).unwrap_or(usize::MAX) > HANDSHAKE_FRAME_BYTES_MAX {
                        return Err(ReadFailure::Frame(FrameError::TooLong {
                            length,
                            max: HANDSHAKE_FRAME_BYTES_MAX,
                        }));
                    }
                }
                fila_wire::decode_frame(&mut self.buf)
            } else {
                self.decoder.decode(&mut self.buf)
            };
            let decoded = decoded.map_err(ReadFailure::Frame);
            self.charge()?;
            if let Some(frame) = decoded? {
                return Ok(frame);
            }
            let partial = !self.buf.is_empty() || self.decoder.open_streams() > 0;
            let read = async {
                if partial {
                    rt::within(frame_timeout, self.reader.read(&mut self.scratch)).await
                } else {
                    Some(self.reader.read(&mut self.scratch).await)
                }
            };
            let outcome = futures_lite::future::or(async { Some(read.await) }, async {
                shutdown.wait().await;
                None
            })
            .await;
            match outcome {
                None => return Err(ReadFailure::Shutdown),
                Some(None) => return Err(ReadFailure::Timeout),
                Some(Some(Ok(0))) => return Err(ReadFailure::Closed),
                Some(Some(Ok(n))) => {
                    self.buf
                        .extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                    self.charge()?;
                }
                Some(Some(Err(error))) => return Err(ReadFailure::Io(error)),
            }
        }
    }
}

/// Runs the handshake (§7.1): `Ok` with the caller (`None` when authentication is off) once
/// HandshakeOk is written.
async fn handshake(
    input: &mut Input,
    writer: &mut WriteHalf<Stream>,
    limits: &ConnectionLimits,
    shutdown: &ShutdownSignal,
    auth: &ShardAuth,
    peer: std::net::SocketAddr,
) -> Result<Option<Caller>, &'static str> {
    let frame = match rt::within(
        limits.handshake_timeout,
        input.handshake_frame(limits.handshake_timeout, shutdown),
    )
    .await
    {
        None | Some(Err(ReadFailure::Timeout)) => {
            // Debug: a flood of silent connections must not flood the log.
            tracing::debug!(
                "closing connection: no handshake within {:?}",
                limits.handshake_timeout
            );
            return Err("handshake timeout");
        }
        Some(Err(_)) => return Err("no handshake frame"),
        Some(Ok(frame)) => frame,
    };
    if frame.opcode != Opcode::Handshake as u8 {
        let reply = error(
            ErrorCode::InvalidFrame,
            "the first frame must be a Handshake",
        );
        refuse(writer, frame.request_id, &reply).await;
        return Err("first frame not a handshake");
    }
    let Ok(Request::Handshake(hello)) = Request::decode(frame.opcode, frame.payload) else {
        return Err("undecodable handshake");
    };
    if hello.protocol_version != 1 {
        let reply = Response::Error {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "protocol version {} is not supported; this server speaks version 1",
                hello.protocol_version
            )
            .into(),
            metadata: vec![("max_version".into(), "1".into())],
        };
        refuse(writer, 0, &reply).await;
        return Err("unsupported version");
    }
    let now_ms = rt::clock::now().as_millis();
    let caller = match auth.authenticate(hello.api_key.as_deref(), now_ms) {
        Ok(caller) => caller,
        Err(refused) => {
            auth.note_refusal(now_ms, peer, refused);
            let reply = error(ErrorCode::Unauthorized, &refused.to_string());
            refuse(writer, 0, &reply).await;
            return Err("unauthorized");
        }
    };
    let mut out = BytesMut::new();
    encode_reply(
        &mut out,
        0,
        &Response::HandshakeOk(HandshakeOk {
            negotiated_version: 1,
            node_id: 0,
            max_frame_size: u32::try_from(FRAME_BYTES_MAX).unwrap_or(u32::MAX),
        }),
    );
    writer.write_all(&out).await.map_err(|_| "write failed")?;
    Ok(caller)
}

/// Writes the handshake's refusal and closes: flushed, and a TLS session ends with
/// close_notify. The connection is being dropped, so write errors change nothing.
async fn refuse(writer: &mut WriteHalf<Stream>, request_id: u32, reply: &Response) {
    let mut out = BytesMut::new();
    encode_reply(&mut out, request_id, reply);
    let _ = writer.write_all(&out).await;
    let _ = writer.close().await;
}

/// How a session ended.
enum End {
    Closed,
    Disconnect,
    Shutdown,
    Failed(&'static str),
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Closed => "closed by the client",
            End::Disconnect => "Disconnect",
            End::Shutdown => "server shutdown",
            End::Failed(reason) => reason,
        }
    }
}

/// Where a subscription of this connection stands.
#[derive(Debug)]
enum SubState {
    /// Consume sent, ConsumeOk not yet written: deliveries wait here.
    Opening(Vec<Delivery>),
    /// ConsumeOk written.
    Open,
}

/// Everything written to the socket, and the counters that throttle reading.
#[derive(Debug, Default)]
struct Outbox {
    buf: RefCell<BytesMut>,
    ready: Notify,
    room: Notify,
    in_flight: Cell<usize>,
    subs: RefCell<HashMap<u32, SubState>>,
    closed: Cell<bool>,
    broken: Cell<bool>,
    /// Set on authenticated connections: deliveries are re-checked against the key's ACL.
    guard: RefCell<Option<Guard>>,
    /// Queue (and owner shard) of every subscription, for the guard.
    sub_queues: RefCell<HashMap<u32, (usize, String)>>,
    /// The connection's key changed: its subscriptions are re-checked.
    auth_changed: Notify,
}

/// What an authenticated connection re-checks its deliveries with.
#[derive(Debug)]
struct Guard {
    caller: Caller,
    broker: std::rc::Weak<Broker>,
}

impl Outbox {
    /// True when the key of this connection may still consume what `subscription` delivers
    /// (always, without authentication).
    fn may_deliver(&self, subscription: u32) -> bool {
        let guard = self.guard.borrow();
        let Some(guard) = guard.as_ref() else {
            return true;
        };
        let Some(broker) = guard.broker.upgrade() else {
            return false;
        };
        match self.sub_queues.borrow().get(&subscription) {
            Some((_, queue)) => broker.auth().may_consume(&guard.caller, queue),
            None => false,
        }
    }
}

impl Outbox {
    fn reply(&self, request_id: u32, response: &Response) {
        if self.broken.get() {
            return;
        }
        encode_reply(&mut self.buf.borrow_mut(), request_id, response);
        self.ready.notify();
    }

    fn has_room(&self) -> bool {
        self.in_flight.get() < IN_FLIGHT_MAX && self.buf.borrow().len() < OUTBOX_BYTES_MAX
    }

    fn write_deliveries(&self, subscription: u32, deliveries: &[Delivery]) {
        if self.broken.get() || deliveries.is_empty() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        let mut rest = deliveries.iter().map(delivery_message).peekable();
        while rest.peek().is_some() {
            let start = buf.len();
            let mut frame = DeliveryFrameBuilder::new(&mut buf, subscription);
            while let Some(message) = rest.peek() {
                if frame.message_count() > 0
                    && (frame.frame_len() >= DELIVERY_FRAME_SOFT_BYTES || !frame.fits(message))
                {
                    break;
                }
                if let Err(error) = frame.push(message) {
                    // Cannot happen for a message that arrived in a valid frame; the lease
                    // expires and the message is retried.
                    tracing::warn!(%error, "a delivery could not be encoded");
                }
                rest.next();
            }
            if frame.message_count() == 0 {
                buf.truncate(start);
            }
        }
        drop(buf);
        self.ready.notify();
    }

    /// ConsumeOk is written: release the deliveries that waited for it.
    fn open(&self, subscription: u32) {
        let waiting = self.subs.borrow_mut().insert(subscription, SubState::Open);
        if let Some(SubState::Opening(deliveries)) = waiting {
            self.write_deliveries(subscription, &deliveries);
        }
    }
}

impl DeliverySink for Outbox {
    fn deliver(&self, subscription: u32, deliveries: Vec<Delivery>) {
        if self.closed.get() {
            return;
        }
        if !self.may_deliver(subscription) {
            // The key lost its consume permission (or was revoked) since the subscription
            // started: nothing more reaches this client. The watcher cancels the subscription;
            // these leases expire and the messages are retried.
            return;
        }
        {
            let mut subs = self.subs.borrow_mut();
            if let Some(SubState::Opening(waiting)) = subs.get_mut(&subscription) {
                waiting.extend(deliveries);
                return;
            }
        }
        self.write_deliveries(subscription, &deliveries);
    }

    fn auth_changed(&self, key_id: &str) {
        let guard = self.guard.borrow();
        if let Some(Guard {
            caller: Caller::Key(id),
            ..
        }) = guard.as_ref()
            && id == key_id
        {
            self.auth_changed.notify();
        }
    }
}

/// Re-checks the subscriptions of an authenticated connection whenever its key changes: a
/// subscription whose queue the key may no longer consume is cancelled; a revoked key's
/// connection loses every subscription and lease (as on disconnect) but stays open, and its
/// requests get Forbidden.
async fn watch_key(
    broker: Rc<Broker>,
    outbox: Rc<Outbox>,
    caller: Caller,
    connection: fila_shard::ConnectionId,
) {
    loop {
        outbox.auth_changed.wait().await;
        if outbox.closed.get() {
            return;
        }
        let revoked = !broker.auth().is_live(&caller);
        let denied: Vec<(u32, usize)> = outbox
            .sub_queues
            .borrow()
            .iter()
            .filter(|(_, (_, queue))| revoked || !broker.auth().may_consume(&caller, queue))
            .map(|(subscription, (shard, _))| (*subscription, *shard))
            .collect();
        for (subscription, shard) in denied {
            outbox.sub_queues.borrow_mut().remove(&subscription);
            outbox.subs.borrow_mut().remove(&subscription);
            let op = Op::Cancel {
                connection,
                subscription,
            };
            drop(broker.submit(shard, op).await);
            tracing::info!(
                subscription,
                "subscription ended: the API key of its connection may no longer consume"
            );
        }
        if revoked {
            broker.release_everywhere(connection).await;
        }
    }
}

fn delivery_message(d: &Delivery) -> DeliveryMessage {
    DeliveryMessage {
        message_id: ByteString::from(d.message_id.to_string()),
        queue: ByteString::from(d.queue.as_str()),
        headers: d
            .headers
            .iter()
            .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
            .collect(),
        payload: d.payload.clone(),
        fairness_key: ByteString::from(d.fairness_key.as_str()),
        weight: d.weight,
        throttle_keys: d
            .throttle_keys
            .iter()
            .map(|k| ByteString::from(k.as_str()))
            .collect(),
        attempt_count: d.attempts,
        enqueued_at: d.enqueued_at_ms,
        leased_at: d.leased_at_ms,
    }
}

/// Encodes `response`; a reply that cannot be encoded (a string over 65,535 bytes, say)
/// becomes an InternalError so the client still gets exactly one reply.
fn encode_reply(out: &mut BytesMut, request_id: u32, response: &Response) {
    if let Err(failure) = response.encode(request_id, out) {
        tracing::warn!(%failure, request_id, "reply could not be encoded");
        let fallback = error(ErrorCode::InternalError, "the reply could not be encoded");
        if fallback.encode(request_id, out).is_err() {
            tracing::error!(request_id, "error reply could not be encoded");
        }
    }
}

/// Ok, or ApiKeyNotFound.
fn found_code(reply: &AuthReply) -> ErrorCode {
    match reply {
        AuthReply::NotFound => ErrorCode::ApiKeyNotFound,
        AuthReply::Done | AuthReply::Created { .. } => ErrorCode::Ok,
    }
}

fn error(code: ErrorCode, message: &str) -> Response {
    Response::Error {
        code,
        message: ByteString::from(message),
        metadata: Vec::new(),
    }
}

async fn write_loop(outbox: Rc<Outbox>, mut writer: WriteHalf<Stream>) {
    loop {
        let chunk: Bytes = {
            let mut buf = outbox.buf.borrow_mut();
            if buf.is_empty() {
                None
            } else {
                Some(buf.split().freeze())
            }
        }
        .unwrap_or_default();
        if chunk.is_empty() {
            if outbox.closed.get() {
                break;
            }
            outbox.ready.wait().await;
            continue;
        }
        outbox.room.notify();
        if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
            outbox.broken.set(true);
            outbox.buf.borrow_mut().clear();
            outbox.room.notify();
            break;
        }
    }
    let _ = writer.close().await;
}

/// The request side of a connection.
struct Session {
    broker: Rc<Broker>,
    connection: fila_shard::ConnectionId,
    outbox: Rc<Outbox>,
    /// Open subscriptions: Consume request id → owning shard.
    subscriptions: HashMap<u32, usize>,
    credit: u32,
    /// Who authenticated at handshake; `None` = authentication off (nothing is checked).
    caller: Option<Caller>,
}

impl Session {
    async fn read_loop(
        &mut self,
        input: &mut Input,
        limits: &ConnectionLimits,
        shutdown: &ShutdownSignal,
    ) -> End {
        loop {
            if !self.outbox.has_room() {
                let outbox = Rc::clone(&self.outbox);
                let room = outbox
                    .room
                    .wait_until(|| outbox.has_room() || outbox.broken.get());
                if futures_lite::future::or(
                    async {
                        room.await;
                        false
                    },
                    async {
                        shutdown.wait().await;
                        true
                    },
                )
                .await
                {
                    return End::Shutdown;
                }
            }
            if self.outbox.broken.get() {
                return End::Failed("socket write failed");
            }
            let frame = match input.next_frame(limits.frame_timeout, shutdown).await {
                Ok(frame) => frame,
                Err(ReadFailure::Closed) => return End::Closed,
                Err(ReadFailure::Shutdown) => return End::Shutdown,
                Err(ReadFailure::Timeout) => return End::Failed("frame not completed in time"),
                Err(ReadFailure::Io(error)) => {
                    tracing::debug!(%error, "socket read failed");
                    return End::Failed("socket read failed");
                }
                Err(ReadFailure::Frame(error)) => {
                    tracing::info!(%error, "closing connection: invalid frame");
                    return End::Failed("invalid frame");
                }
                Err(ReadFailure::OverBudget) => {
                    tracing::warn!(
                        "closing connection: the shard's budget for frames still arriving ({} MiB) is spent",
                        input.budget.max >> 20
                    );
                    return End::Failed("read budget spent");
                }
            };
            let request_id = frame.request_id;
            let request = match Request::decode(frame.opcode, frame.payload) {
                Ok(request) => request,
                Err(failure) => {
                    self.outbox.reply(
                        request_id,
                        &error(ErrorCode::InvalidFrame, &failure.to_string()),
                    );
                    continue;
                }
            };
            if let Some(end) = self.dispatch(request_id, request).await {
                return end;
            }
        }
    }

    /// Runs one request; `Some` ends the session.
    async fn dispatch(&mut self, id: u32, request: Request) -> Option<End> {
        if let Some(caller) = &self.caller
            && let Err(denied) = self.broker.auth().authorize(caller, &request)
        {
            self.outbox
                .reply(id, &error(ErrorCode::Forbidden, &denied.to_string()));
            return None;
        }
        let reply = |response: Response| self.outbox.reply(id, &response);
        match request {
            Request::Handshake(_) => reply(error(
                ErrorCode::InvalidFrame,
                "the connection has already completed its handshake",
            )),
            Request::Ping => reply(Response::Pong),
            Request::Disconnect => return Some(End::Disconnect),
            Request::Enqueue { messages } => self.enqueue(id, messages).await,
            Request::Consume { queue } => self.consume(id, &queue).await,
            Request::CancelConsume => {
                self.outbox.sub_queues.borrow_mut().remove(&id);
                if let Some(shard) = self.subscriptions.remove(&id) {
                    let op = Op::Cancel {
                        connection: self.connection,
                        subscription: id,
                    };
                    // No reply: the effect is ordered by the submit itself.
                    drop(self.broker.submit(shard, op).await);
                }
            }
            Request::Ack { items } => self.ack(id, items).await,
            Request::Nack { items } => self.nack(id, items).await,
            Request::CreateQueue(create) => {
                let name = create.name.to_string();
                let spec = QueueSpec {
                    name: name.clone(),
                    scripts: QueueScripts {
                        on_enqueue: create.on_enqueue_script.map(|s| s.to_string()),
                        on_failure: create.on_failure_script.map(|s| s.to_string()),
                    },
                    visibility_timeout_ms: create.visibility_timeout_ms,
                };
                let pending = self
                    .broker
                    .submit(self.broker.owner(&name), Op::CreateQueue(spec))
                    .await;
                self.answer(id, pending, move |outcome| match outcome {
                    Outcome::CreateQueue(Ok(())) => Response::CreateQueueResult {
                        error_code: ErrorCode::Ok,
                        queue_id: name.into(),
                    },
                    Outcome::CreateQueue(Err(e)) => create_queue_error(&name, e),
                    other => unexpected(&other),
                });
            }
            Request::DeleteQueue { queue } => {
                let shard = self.broker.owner(&queue);
                let pending = self
                    .broker
                    .submit(shard, Op::DeleteQueue(queue.to_string()))
                    .await;
                self.answer(id, pending, |outcome| match outcome {
                    Outcome::DeleteQueue(result) => Response::DeleteQueueResult {
                        error_code: match result {
                            Ok(()) => ErrorCode::Ok,
                            Err(DeleteQueueError::QueueNotFound) => ErrorCode::QueueNotFound,
                            Err(DeleteQueueError::Storage(_)) => ErrorCode::StorageError,
                        },
                    },
                    other => unexpected(&other),
                });
            }
            Request::GetStats { queue } => {
                let shard = self.broker.owner(&queue);
                let pending = self
                    .broker
                    .submit(shard, Op::Stats(queue.to_string()))
                    .await;
                self.answer(id, pending, |outcome| match outcome {
                    Outcome::Stats(result) => match *result {
                        Ok((stats, hooks)) => Response::GetStatsResult(wire_stats(stats, hooks)),
                        Err(StatsError::QueueNotFound) => {
                            error(ErrorCode::QueueNotFound, "queue not found")
                        }
                    },
                    other => unexpected(&other),
                });
            }
            Request::ListQueues => {
                let mut parts = Vec::with_capacity(self.broker.shard_count());
                for shard in 0..self.broker.shard_count() {
                    parts.push(self.broker.submit(shard, Op::ListQueues).await);
                }
                self.answer(id, join_all(parts), |outcomes| {
                    let mut queues = Vec::new();
                    for outcome in outcomes {
                        if let Outcome::ListQueues(rows) = outcome {
                            queues.extend(rows.into_iter().map(|q| QueueSummary {
                                name: ByteString::from(q.name.as_str()),
                                depth: q.depth,
                                in_flight: q.in_flight,
                                active_consumers: q.active_consumers,
                                leader_node_id: 0,
                            }));
                        }
                    }
                    queues.sort_by(|a, b| a.name.cmp(&b.name));
                    queues.truncate(usize::from(u16::MAX));
                    Response::ListQueuesResult {
                        error_code: ErrorCode::Ok,
                        cluster_node_count: 0,
                        queues,
                    }
                });
            }
            Request::SetConfig { key, value } => {
                let mut parts = Vec::with_capacity(self.broker.shard_count());
                for shard in 0..self.broker.shard_count() {
                    let op = Op::SetConfig {
                        key: key.to_string(),
                        value: value.to_string(),
                    };
                    parts.push(self.broker.submit(shard, op).await);
                }
                self.answer(id, join_all(parts), |outcomes| {
                    let mut code = ErrorCode::Ok;
                    for outcome in outcomes {
                        match outcome {
                            Outcome::SetConfig(Ok(())) => {}
                            Outcome::SetConfig(Err(ConfigError::Invalid(_))) => {
                                code = ErrorCode::InvalidConfigValue;
                            }
                            Outcome::SetConfig(Err(ConfigError::Storage(_))) => {
                                if code == ErrorCode::Ok {
                                    code = ErrorCode::StorageError;
                                }
                            }
                            _ => code = ErrorCode::InternalError,
                        }
                    }
                    Response::SetConfigResult { error_code: code }
                });
            }
            Request::GetConfig { key } => {
                let value = self
                    .broker
                    .with_core(|core| core.get_config(&key).map(str::to_owned))
                    .unwrap_or_default();
                reply(Response::GetConfigResult {
                    error_code: ErrorCode::Ok,
                    value: value.into(),
                });
            }
            Request::ListConfig { prefix } => {
                let mut entries: Vec<ConfigEntry> = self.broker.with_core(|core| {
                    core.list_config(&prefix)
                        .into_iter()
                        .map(|(key, value)| ConfigEntry {
                            key: key.into(),
                            value: value.into(),
                        })
                        .collect()
                });
                entries.truncate(10_000);
                reply(Response::ListConfigResult {
                    error_code: ErrorCode::Ok,
                    entries,
                });
            }
            Request::Redrive { dlq_queue, count } => {
                let shard = self.broker.owner(&dlq_queue);
                let op = Op::Redrive {
                    dlq: dlq_queue.to_string(),
                    count,
                };
                let pending = self.broker.submit(shard, op).await;
                self.answer(id, pending, |outcome| match outcome {
                    Outcome::Redrive(Ok(redriven)) => Response::RedriveResult {
                        error_code: ErrorCode::Ok,
                        redriven,
                    },
                    Outcome::Redrive(Err(e)) => {
                        let code = match &e {
                            RedriveError::NotADlq(_) => ErrorCode::NotADLQ,
                            RedriveError::QueueNotFound => ErrorCode::QueueNotFound,
                            RedriveError::ParentQueueNotFound(_) => ErrorCode::ParentQueueNotFound,
                            RedriveError::Storage(_) => ErrorCode::StorageError,
                        };
                        error(code, &e.to_string())
                    }
                    other => unexpected(&other),
                });
            }
            Request::LuaTest(test) => {
                let Some(kind) = (match test.hook {
                    0 => Some(HookKind::OnEnqueue),
                    1 => Some(HookKind::OnFailure),
                    _ => None,
                }) else {
                    reply(error(
                        ErrorCode::InvalidFrame,
                        "LuaTest hook must be 0 (on_enqueue) or 1 (on_failure)",
                    ));
                    return None;
                };
                let shard = self.broker.owner(&test.queue);
                let op = Op::LuaTest(Box::new(LuaTestOp {
                    kind,
                    script: test.script.map(|s| s.to_string()),
                    message: DryRunMessage {
                        queue: test.queue.to_string(),
                        headers: test
                            .headers
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        payload_size: usize::try_from(test.payload_size).unwrap_or(usize::MAX),
                        id: None,
                        attempts: test.attempts,
                        error: test.error.to_string(),
                    },
                }));
                let pending = self.broker.submit(shard, op).await;
                self.answer(id, pending, |outcome| match outcome {
                    Outcome::LuaTest(result) => Response::LuaTestResult(lua_test_result(result)),
                    other => unexpected(&other),
                });
            }
            Request::CreateApiKey {
                name,
                expires_at_ms,
                is_superadmin,
            } => {
                if name.len() > TEXT_BYTES_MAX {
                    let message = format!("an API key name is limited to {TEXT_BYTES_MAX} bytes");
                    reply(error(ErrorCode::InvalidConfigValue, &message));
                    return None;
                }
                if name.chars().any(char::is_control) {
                    let message = "an API key name must not contain control characters";
                    reply(error(ErrorCode::InvalidConfigValue, message));
                    return None;
                }
                let mutation = AuthMutation::Create {
                    name: name.to_string(),
                    expires_at_ms,
                    superadmin: is_superadmin,
                    now_ms: rt::clock::now().as_millis(),
                    created_by: match &self.caller {
                        Some(Caller::Key(id)) => Some(id.clone()),
                        Some(Caller::Bootstrap) | None => None,
                    },
                };
                let pending = self.broker.auth_request(mutation).await;
                self.answer_auth(id, pending, |reply| match reply {
                    AuthReply::Created {
                        key_id,
                        token,
                        superadmin,
                    } => Response::CreateApiKeyResult {
                        error_code: ErrorCode::Ok,
                        key_id: key_id.into(),
                        key: token.into(),
                        is_superadmin: superadmin,
                    },
                    AuthReply::Done | AuthReply::NotFound => {
                        error(ErrorCode::InternalError, "unexpected key-store reply")
                    }
                });
            }
            Request::RevokeApiKey { key_id } => {
                let mutation = AuthMutation::Revoke {
                    key_id: key_id.to_string(),
                };
                let pending = self.broker.auth_request(mutation).await;
                self.answer_auth(id, pending, |reply| Response::RevokeApiKeyResult {
                    error_code: found_code(&reply),
                });
            }
            Request::ListApiKeys => {
                let mut keys: Vec<ApiKeyInfo> = self
                    .broker
                    .auth()
                    .list()
                    .iter()
                    .map(|key| ApiKeyInfo {
                        key_id: key.id.as_str().into(),
                        name: key.name.as_str().into(),
                        created_at_ms: key.created_at_ms,
                        expires_at_ms: key.expires_at_ms,
                        is_superadmin: key.superadmin,
                    })
                    .collect();
                keys.truncate(usize::from(u16::MAX));
                reply(Response::ListApiKeysResult {
                    error_code: ErrorCode::Ok,
                    keys,
                });
            }
            Request::SetAcl {
                key_id,
                permissions,
            } => self.set_acl(id, key_id, &permissions).await,
            Request::GetAcl { key_id } => {
                let response = match self.broker.auth().get(&key_id) {
                    Some(key) => Response::GetAclResult {
                        error_code: ErrorCode::Ok,
                        key_id,
                        is_superadmin: key.superadmin,
                        permissions: key
                            .grants
                            .iter()
                            .take(usize::from(u16::MAX))
                            .map(|grant| Permission {
                                kind: grant.kind.as_str().into(),
                                pattern: grant.pattern.to_string().into(),
                            })
                            .collect(),
                    },
                    None => Response::GetAclResult {
                        error_code: ErrorCode::ApiKeyNotFound,
                        key_id,
                        is_superadmin: false,
                        permissions: Vec::new(),
                    },
                };
                reply(response);
            }
        }
        None
    }

    /// SetAcl: every permission is parsed (an unknown kind is InvalidConfigValue, nothing is
    /// stored), then checked against the caller's admin patterns, then stored.
    async fn set_acl(&mut self, id: u32, key_id: ByteString, permissions: &[Permission]) {
        let mut grants: Vec<Grant> = Vec::with_capacity(permissions.len().min(GRANTS_MAX));
        let mut seen = std::collections::HashSet::with_capacity(grants.capacity());
        for permission in permissions {
            match Grant::parse(&permission.kind, &permission.pattern) {
                // A permission given twice is stored once (and counted once against the limit).
                Ok(grant) if seen.contains(&grant) => {}
                Ok(grant) => {
                    seen.insert(grant.clone());
                    grants.push(grant);
                }
                Err(reason) => {
                    self.outbox
                        .reply(id, &error(ErrorCode::InvalidConfigValue, &reason));
                    return;
                }
            }
        }
        if grants.len() > GRANTS_MAX {
            let message = format!("an API key holds at most {GRANTS_MAX} permissions");
            self.outbox
                .reply(id, &error(ErrorCode::InvalidConfigValue, &message));
            return;
        }
        if let Some(caller) = &self.caller
            && let Err(denied) = self
                .broker
                .auth()
                .authorize_set_acl(caller, &key_id, &grants)
        {
            self.outbox
                .reply(id, &error(ErrorCode::Forbidden, &denied.to_string()));
            return;
        }
        let mutation = AuthMutation::SetAcl {
            key_id: key_id.to_string(),
            grants,
        };
        let pending = self.broker.auth_request(mutation).await;
        self.answer_auth(id, pending, |reply| Response::SetAclResult {
            error_code: found_code(&reply),
        });
    }

    /// Writes the reply of a key change when every shard has it.
    fn answer_auth(
        &self,
        id: u32,
        pending: AuthPending,
        reply: impl FnOnce(AuthReply) -> Response + 'static,
    ) {
        self.answer(
            id,
            async move { Ok(pending.await) },
            move |result| match result {
                Ok(done) => reply(done),
                Err(failure @ AuthFailure::Storage(_)) => {
                    error(ErrorCode::StorageError, &failure.to_string())
                }
                Err(failure) => error(ErrorCode::InternalError, &failure.to_string()),
            },
        );
    }

    /// Writes the reply of `pending` when it resolves, without holding up the reader.
    fn answer<T: 'static>(
        &self,
        id: u32,
        pending: impl Future<Output = Result<T, RouteError>> + 'static,
        reply: impl FnOnce(T) -> Response + 'static,
    ) {
        let outbox = Rc::clone(&self.outbox);
        outbox.in_flight.set(outbox.in_flight.get() + 1);
        glommio::spawn_local(async move {
            let response = match pending.await {
                Ok(value) => reply(value),
                Err(failure) => error(ErrorCode::InternalError, &failure.to_string()),
            };
            outbox.reply(id, &response);
            outbox
                .in_flight
                .set(outbox.in_flight.get().saturating_sub(1));
            outbox.room.notify();
        })
        .detach();
    }

    async fn enqueue(&mut self, id: u32, messages: Vec<fila_wire::EnqueueMessage>) {
        let count = messages.len();
        let mut groups = ByOwner::default();
        for (index, message) in messages.into_iter().enumerate() {
            let shard = self.broker.owner(&message.queue);
            let item = fila_shard::EnqueueItem {
                queue: message.queue.to_string(),
                headers: message
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                payload: message.payload,
            };
            groups.push(shard, index, item);
        }
        let (parts, placement) = groups.submit(&self.broker, Op::Enqueue).await;
        self.answer(id, join_all(parts), move |outcomes| {
            let mut results = vec![
                EnqueueItemResult {
                    error_code: ErrorCode::InternalError,
                    message_id: ByteString::new(),
                };
                count
            ];
            for (outcome, indexes) in outcomes.into_iter().zip(placement) {
                let Outcome::Enqueue(items) = outcome else {
                    continue;
                };
                for (result, index) in items.into_iter().zip(indexes) {
                    if let Some(slot) = results.get_mut(index) {
                        *slot = enqueue_result(result);
                    }
                }
            }
            Response::EnqueueResult { results }
        });
    }

    async fn consume(&mut self, id: u32, queue: &str) {
        let shard = self.broker.owner(queue);
        if let Some(old) = self.subscriptions.remove(&id)
            && old != shard
        {
            let op = Op::Cancel {
                connection: self.connection,
                subscription: id,
            };
            drop(self.broker.submit(old, op).await);
        }
        self.outbox
            .subs
            .borrow_mut()
            .insert(id, SubState::Opening(Vec::new()));
        self.outbox
            .sub_queues
            .borrow_mut()
            .insert(id, (shard, queue.to_owned()));
        let op = Op::Consume {
            queue: queue.to_owned(),
            connection: self.connection,
            subscription: id,
            credit: self.credit,
        };
        let pending = self.broker.submit(shard, op).await;
        self.subscriptions.insert(id, shard);
        let outbox = Rc::clone(&self.outbox);
        outbox.in_flight.set(outbox.in_flight.get() + 1);
        glommio::spawn_local(async move {
            match pending.await {
                Ok(Outcome::Consume(Ok(consumer))) => {
                    outbox.reply(
                        id,
                        &Response::ConsumeOk {
                            consumer_id: consumer.to_string().into(),
                        },
                    );
                    outbox.open(id);
                }
                Ok(Outcome::Consume(Err(ConsumeError::QueueNotFound))) => {
                    outbox.subs.borrow_mut().remove(&id);
                    outbox.reply(id, &error(ErrorCode::QueueNotFound, "queue not found"));
                }
                Ok(other) => {
                    outbox.subs.borrow_mut().remove(&id);
                    outbox.reply(id, &unexpected(&other));
                }
                Err(failure) => {
                    outbox.subs.borrow_mut().remove(&id);
                    outbox.reply(id, &error(ErrorCode::InternalError, &failure.to_string()));
                }
            }
            outbox
                .in_flight
                .set(outbox.in_flight.get().saturating_sub(1));
            outbox.room.notify();
        })
        .detach();
    }

    async fn ack(&mut self, id: u32, items: Vec<fila_wire::AckItem>) {
        let parsed = items.into_iter().map(|item| {
            let queue = item.queue.to_string();
            MessageId::parse(&item.message_id).map(|id| fila_shard::AckItem { queue, id })
        });
        let connection = self.connection;
        self.batch(
            id,
            parsed,
            |items| Op::Ack { connection, items },
            |outcome| match outcome {
                Outcome::Ack(results) => results
                    .into_iter()
                    .map(|r| match r {
                        Ok(()) => ErrorCode::Ok,
                        Err(AckError::MessageNotFound) => ErrorCode::MessageNotFound,
                        Err(AckError::Storage(_)) => ErrorCode::StorageError,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            |results| Response::AckResult { results },
        )
        .await;
    }

    async fn nack(&mut self, id: u32, items: Vec<fila_wire::NackItem>) {
        let parsed = items.into_iter().map(|item| {
            let queue = item.queue.to_string();
            let error = item.error.to_string();
            MessageId::parse(&item.message_id).map(|id| fila_shard::NackItem { queue, id, error })
        });
        let connection = self.connection;
        self.batch(
            id,
            parsed,
            |items| Op::Nack { connection, items },
            |outcome| match outcome {
                Outcome::Nack(results) => results
                    .into_iter()
                    .map(|r| match r {
                        Ok(()) => ErrorCode::Ok,
                        Err(NackError::MessageNotFound) => ErrorCode::MessageNotFound,
                        Err(NackError::Storage(_)) => ErrorCode::StorageError,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            |results| Response::NackResult { results },
        )
        .await;
    }

    /// Splits an Ack/Nack batch by owning shard, submits the parts in order and reassembles
    /// one code per item. Items whose id does not parse are MessageNotFound without a trip.
    async fn batch<I: HasQueue + 'static>(
        &mut self,
        id: u32,
        items: impl Iterator<Item = Option<I>>,
        op: impl Fn(Vec<I>) -> Op,
        codes: impl Fn(Outcome) -> Vec<ErrorCode> + 'static,
        response: impl FnOnce(Vec<ErrorCode>) -> Response + 'static,
    ) {
        let mut results = Vec::new();
        let mut groups = ByOwner::default();
        for (index, item) in items.enumerate() {
            results.push(ErrorCode::MessageNotFound);
            let Some(item) = item else { continue };
            let shard = self.broker.owner(item.queue());
            groups.push(shard, index, item);
        }
        let (parts, placement) = groups.submit(&self.broker, op).await;
        self.answer(id, join_all(parts), move |outcomes| {
            for (outcome, indexes) in outcomes.into_iter().zip(placement) {
                let part = codes(outcome);
                for (position, original) in indexes.into_iter().enumerate() {
                    if let Some(slot) = results.get_mut(original) {
                        *slot = part
                            .get(position)
                            .copied()
                            .unwrap_or(ErrorCode::InternalError);
                    }
                }
            }
            response(results)
        });
    }
}

/// The items of one batch request grouped by owning shard, each with its positions in the
/// request, so the per-item results can be put back in request order.
struct ByOwner<T> {
    groups: Vec<(usize, Vec<usize>, Vec<T>)>,
}

impl<T> Default for ByOwner<T> {
    fn default() -> Self {
        ByOwner { groups: Vec::new() }
    }
}

impl<T> ByOwner<T> {
    /// Adds the item at request position `index`, owned by `shard`.
    fn push(&mut self, shard: usize, index: usize, item: T) {
        match self.groups.iter_mut().find(|(s, _, _)| *s == shard) {
            Some((_, indexes, items)) => {
                indexes.push(index);
                items.push(item);
            }
            None => self.groups.push((shard, vec![index], vec![item])),
        }
    }

    /// Submits one operation per owning shard, in order: the pending outcomes and, for each,
    /// the request positions of its items.
    async fn submit(
        self,
        broker: &Rc<Broker>,
        op: impl Fn(Vec<T>) -> Op,
    ) -> (Vec<Pending>, Vec<Vec<usize>>) {
        let mut parts = Vec::with_capacity(self.groups.len());
        let mut placement = Vec::with_capacity(self.groups.len());
        for (shard, indexes, items) in self.groups {
            parts.push(broker.submit(shard, op(items)).await);
            placement.push(indexes);
        }
        (parts, placement)
    }
}

/// The queue an Ack or Nack item names.
trait HasQueue {
    fn queue(&self) -> &str;
}

impl HasQueue for fila_shard::AckItem {
    fn queue(&self) -> &str {
        &self.queue
    }
}

impl HasQueue for fila_shard::NackItem {
    fn queue(&self) -> &str {
        &self.queue
    }
}

/// Waits for every part; the first routing failure fails the whole.
async fn join_all(parts: Vec<Pending>) -> Result<Vec<Outcome>, RouteError> {
    let mut outcomes = Vec::with_capacity(parts.len());
    for part in parts {
        outcomes.push(part.await?);
    }
    Ok(outcomes)
}

fn enqueue_result(result: Result<MessageId, EnqueueError>) -> EnqueueItemResult {
    match result {
        Ok(id) => EnqueueItemResult {
            error_code: ErrorCode::Ok,
            message_id: id.to_string().into(),
        },
        Err(failure) => EnqueueItemResult {
            error_code: match failure {
                EnqueueError::QueueNotFound => ErrorCode::QueueNotFound,
                EnqueueError::Storage(_) => ErrorCode::StorageError,
                _ => ErrorCode::InvalidFrame,
            },
            // The SDK shows this text as the error message of a failed item.
            message_id: failure.to_string().into(),
        },
    }
}

fn create_queue_error(name: &str, failure: CreateQueueError) -> Response {
    let (code, text) = match &failure {
        CreateQueueError::AlreadyExists(_) => (ErrorCode::QueueAlreadyExists, name.to_owned()),
        CreateQueueError::HookCompile(_) => (ErrorCode::LuaCompilationError, failure.to_string()),
        CreateQueueError::Storage(_) => (ErrorCode::StorageError, String::new()),
        CreateQueueError::InvalidName { .. }
        | CreateQueueError::VisibilityTimeoutTooLong { .. } => {
            return error(ErrorCode::InvalidFrame, &failure.to_string());
        }
    };
    Response::CreateQueueResult {
        error_code: code,
        queue_id: text.into(),
    }
}

fn wire_stats(stats: fila_shard::QueueStats, hooks: Option<fila_shard::HookStats>) -> QueueStats {
    let hooks = hooks.unwrap_or_default();
    let extension = StatsExtension {
        storage_poisoned: stats.storage_poisoned,
        hook_compile_error: hooks.compile_error.unwrap_or_default().into(),
        hook_breaker_open: hooks.breaker_open,
        hook_runs: hooks.runs,
        hook_errors: hooks.errors,
        hook_breaker_trips: hooks.breaker_trips,
    };
    QueueStats {
        error_code: ErrorCode::Ok,
        depth: stats.depth,
        in_flight: stats.in_flight,
        active_fairness_keys: stats.active_fairness_keys,
        active_consumers: stats.active_consumers,
        quantum: stats.quantum,
        leader_node_id: 0,
        replication_count: 0,
        per_key_stats: stats
            .per_key
            .into_iter()
            .map(|k| KeyStats {
                key: ByteString::from(k.key.as_str()),
                pending_count: k.pending,
                current_deficit: k.deficit,
                weight: k.weight,
            })
            .collect(),
        per_throttle_stats: stats
            .per_throttle
            .into_iter()
            .map(|t| ThrottleStats {
                key: t.key.into(),
                tokens: t.tokens,
                rate_per_second: t.rate_per_second,
                burst: t.burst,
            })
            .collect(),
        extension: Some(extension),
    }
}

fn lua_test_result(result: Result<DryRunOutcome, LuaTestFailure>) -> LuaTestResult {
    let mut out = LuaTestResult {
        error_code: ErrorCode::Ok,
        message: ByteString::new(),
        fairness_key: ByteString::new(),
        weight: 0,
        throttle_keys: Vec::new(),
        action: ByteString::new(),
        delay_ms: 0,
    };
    match result {
        Ok(DryRunOutcome::Enqueue(decision)) => {
            out.fairness_key = decision.fairness_key.unwrap_or_default().into();
            out.weight = decision.weight;
            out.throttle_keys = decision
                .throttle_keys
                .into_iter()
                .map(ByteString::from)
                .collect();
        }
        Ok(DryRunOutcome::Failure(FailureDecision::Retry { delay_ms })) => {
            out.action = "retry".into();
            out.delay_ms = delay_ms;
        }
        Ok(DryRunOutcome::Failure(FailureDecision::DeadLetter)) => out.action = "dlq".into(),
        Err(LuaTestFailure::QueueNotFound) => {
            out.error_code = ErrorCode::QueueNotFound;
            out.message = "queue not found".into();
        }
        Err(LuaTestFailure::Script(message)) => {
            out.error_code = ErrorCode::LuaCompilationError;
            // A reply string is at most 65,535 bytes.
            let mut cut = message.len().min(4096);
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            out.message = message.get(..cut).unwrap_or_default().into();
        }
    }
    out
}

fn unexpected(outcome: &Outcome) -> Response {
    tracing::error!(?outcome, "a shard answered with the wrong kind of outcome");
    error(ErrorCode::InternalError, "internal routing error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_budget_is_shared_and_returned() {
        let budget = ReadBudget::new(100);
        assert!(budget.recharge(0, 60), "first connection within budget");
        assert!(!budget.recharge(0, 50), "second connection goes over");
        assert!(budget.recharge(50, 0), "closing it returns its bytes");
        assert!(budget.recharge(60, 90), "the first may now grow");
        assert!(budget.recharge(90, 0));
        assert_eq!(budget.used.get(), 0);
    }
}
