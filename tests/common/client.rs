//! A blocking wire client for black-box tests, built on `fila-wire` only: handshake, one call
//! at a time (`call`) or pipelined (`send` + `recv`), and Delivery frames kept aside per
//! subscription while a call waits for its reply. Every read has a safety timeout so a hung
//! server fails the test instead of hanging it. The socket is plain TCP or, for TLS tests,
//! a rustls client session over TCP (`ClientStream`; see `tls.rs` for connecting).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fila_wire::{
    AckItem, CreateQueue, DeliveryMessage, EnqueueMessage, ErrorCode, FrameDecoder, Handshake,
    NackItem, QueueStats, Request, Response,
};

/// How long a read waits before the test fails (a hang detector, not a performance bound).
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// The client's socket: plain TCP or TLS over TCP.
pub enum ClientStream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS (rustls client session).
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ClientStream {
    /// The TCP socket underneath.
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            ClientStream::Plain(stream) => stream,
            ClientStream::Tls(stream) => &mut stream.sock,
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(stream) => stream.read(buf),
            ClientStream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(stream) => stream.write(buf),
            ClientStream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(stream) => stream.flush(),
            ClientStream::Tls(stream) => stream.flush(),
        }
    }
}

/// A connected, handshaken client.
pub struct Client {
    stream: ClientStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_id: u32,
    /// Replies that arrived while waiting for another request id.
    replies: HashMap<u32, Response>,
    /// Delivered messages per subscription (the Consume's request id), in arrival order.
    deliveries: HashMap<u32, VecDeque<DeliveryMessage>>,
}

impl Client {
    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut client = Client::connect_raw(addr);
        client.handshake().unwrap_or_else(|error| panic!("{error}"));
        client
    }

    /// Sends the Handshake and waits for HandshakeOk; the failure as text (an Error reply,
    /// a closed connection, or a TLS alert) instead of a panic.
    pub fn handshake(&mut self) -> Result<(), String> {
        let hello = Request::Handshake(Handshake {
            protocol_version: 1,
            api_key: None,
        });
        let mut out = BytesMut::new();
        hello.encode(0, &mut out).unwrap();
        self.stream
            .write_all(&out)
            .and_then(|()| self.stream.flush())
            .map_err(|error| format!("handshake not sent: {error}"))?;
        // The server answers the handshake with request id 0 whatever the client sent.
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return match Response::decode(frame.opcode, frame.payload).unwrap() {
                    Response::HandshakeOk(ok) if frame.request_id == 0 => {
                        assert_eq!(ok.negotiated_version, 1);
                        Ok(())
                    }
                    other => Err(format!("handshake answered with {other:?}")),
                };
            }
            let mut chunk = [0_u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed during the handshake".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error) => return Err(format!("handshake failed: {error}")),
            }
        }
    }

    /// Connects and handshakes with `api_key`: the client, or the handshake's reply when it
    /// is not HandshakeOk (the server then closes the connection).
    pub fn connect_with_key(
        addr: SocketAddr,
        api_key: Option<&str>,
    ) -> Result<Client, Box<Response>> {
        let mut client = Client::connect_raw(addr);
        let hello = Request::Handshake(Handshake {
            protocol_version: 1,
            api_key: api_key.map(Into::into),
        });
        client.send_with_id(0, &hello);
        match client.reply_to(0) {
            Response::HandshakeOk(_) => Ok(client),
            other => Err(Box::new(other)),
        }
    }

    /// Connects without a handshake.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client::over(ClientStream::Plain(stream))
    }

    /// A client on an established `stream` (plain or TLS), without a handshake.
    pub fn over(mut stream: ClientStream) -> Client {
        stream.tcp().set_read_timeout(Some(READ_LIMIT)).unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(),
            next_id: 1,
            replies: HashMap::new(),
            deliveries: HashMap::new(),
        }
    }

    /// The TCP socket, for raw writes (under TLS: the socket beneath the session).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.stream.tcp()
    }

    /// Sends `request` with a fresh request id and returns the id.
    pub fn send(&mut self, request: &Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_with_id(id, request);
        id
    }

    /// Sends `request` with a fresh id; `None` when the socket is closed.
    pub fn try_send(&mut self, request: &Request) -> Option<u32> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::new();
        request.encode(id, &mut out).unwrap();
        self.stream
            .write_all(&out)
            .and_then(|()| self.stream.flush())
            .ok()
            .map(|()| id)
    }

    /// Sends `request` with `id`.
    pub fn send_with_id(&mut self, id: u32, request: &Request) {
        let mut out = BytesMut::new();
        request.encode(id, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
        self.stream.flush().unwrap();
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// The next frame from the server as (request id, response). Deliveries are returned too.
    pub fn recv_frame(&mut self) -> (u32, Response) {
        self.try_recv_frame()
            .unwrap_or_else(|| panic!("the server closed the connection"))
    }

    /// The next frame, or `None` when the server closed the connection.
    pub fn try_recv_frame(&mut self) -> Option<(u32, Response)> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                let response = Response::decode(frame.opcode, frame.payload).unwrap();
                return Some((frame.request_id, response));
            }
            let mut chunk = [0_u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no frame from the server within {READ_LIMIT:?}")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The reply to request `id`, keeping deliveries and other replies aside.
    pub fn reply_to(&mut self, id: u32) -> Response {
        if let Some(reply) = self.replies.remove(&id) {
            return reply;
        }
        loop {
            let (rid, response) = self.recv_frame();
            match response {
                Response::Delivery { messages } if self.deliveries.contains_key(&rid) => {
                    self.deliveries.entry(rid).or_default().extend(messages);
                }
                response if rid == id => return response,
                response => {
                    self.replies.insert(rid, response);
                }
            }
        }
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&mut self, request: &Request) -> Response {
        let id = self.send(request);
        self.reply_to(id)
    }

    /// True if the server closes the connection within `limit` (nothing else may arrive).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.stream.tcp().set_read_timeout(Some(limit)).unwrap();
        let mut chunk = [0_u8; 4096];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(e) => panic!("read failed: {e}"),
            }
        };
        self.stream
            .tcp()
            .set_read_timeout(Some(READ_LIMIT))
            .unwrap();
        result
    }

    /// Ping → Pong.
    pub fn ping(&mut self) {
        assert_eq!(self.call(&Request::Ping), Response::Pong);
    }

    /// Creates `name`; panics unless it succeeds.
    pub fn create_queue(&mut self, name: &str, visibility_timeout_ms: u64) {
        let reply = self.call(&Request::CreateQueue(CreateQueue {
            name: name.into(),
            on_enqueue_script: None,
            on_failure_script: None,
            visibility_timeout_ms,
        }));
        match reply {
            Response::CreateQueueResult {
                error_code: ErrorCode::Ok,
                queue_id,
            } => assert_eq!(&*queue_id, name),
            other => panic!("CreateQueue {name}: {other:?}"),
        }
    }

    /// Enqueues `(queue, payload)` items in one request; the message id of each, in order.
    pub fn enqueue(&mut self, items: &[(&str, &[u8])]) -> Vec<String> {
        let messages = items
            .iter()
            .map(|(queue, payload)| EnqueueMessage {
                queue: (*queue).into(),
                headers: vec![("n".into(), "v".into())],
                payload: Bytes::copy_from_slice(payload),
            })
            .collect();
        match self.call(&Request::Enqueue { messages }) {
            Response::EnqueueResult { results } => {
                assert_eq!(results.len(), items.len());
                results
                    .into_iter()
                    .map(|r| {
                        assert_eq!(r.error_code, ErrorCode::Ok, "{}", r.message_id);
                        r.message_id.to_string()
                    })
                    .collect()
            }
            other => panic!("Enqueue: {other:?}"),
        }
    }

    /// Subscribes to `queue`; the subscription id (the Consume's request id).
    pub fn consume(&mut self, queue: &str) -> u32 {
        let id = self.send(&Request::Consume {
            queue: queue.into(),
        });
        self.deliveries.insert(id, VecDeque::new());
        match self.reply_to(id) {
            Response::ConsumeOk { .. } => id,
            other => panic!("Consume {queue}: {other:?}"),
        }
    }

    /// The next `n` messages of subscription `sub`, waiting for them.
    pub fn take(&mut self, sub: u32, n: usize) -> Vec<DeliveryMessage> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(message) = self.deliveries.get_mut(&sub).and_then(VecDeque::pop_front) {
                out.push(message);
                continue;
            }
            let (rid, response) = self.recv_frame();
            match response {
                Response::Delivery { messages } => {
                    self.deliveries.entry(rid).or_default().extend(messages);
                }
                other => {
                    self.replies.insert(rid, other);
                }
            }
        }
        out
    }

    /// Messages already received for `sub` and not yet taken.
    pub fn buffered(&self, sub: u32) -> usize {
        self.deliveries.get(&sub).map_or(0, VecDeque::len)
    }

    /// Acks `(queue, id)` items; one code per item.
    pub fn ack(&mut self, items: &[(&str, &str)]) -> Vec<ErrorCode> {
        let items = items
            .iter()
            .map(|(queue, id)| AckItem {
                queue: (*queue).into(),
                message_id: (*id).into(),
            })
            .collect();
        match self.call(&Request::Ack { items }) {
            Response::AckResult { results } => results,
            other => panic!("Ack: {other:?}"),
        }
    }

    /// Nacks `(queue, id)` items with an error text; one code per item.
    pub fn nack(&mut self, items: &[(&str, &str)], error: &str) -> Vec<ErrorCode> {
        let items = items
            .iter()
            .map(|(queue, id)| NackItem {
                queue: (*queue).into(),
                message_id: (*id).into(),
                error: error.into(),
            })
            .collect();
        match self.call(&Request::Nack { items }) {
            Response::NackResult { results } => results,
            other => panic!("Nack: {other:?}"),
        }
    }

    /// GetStats of `queue`; panics unless it succeeds.
    pub fn stats(&mut self, queue: &str) -> QueueStats {
        match self.call(&Request::GetStats {
            queue: queue.into(),
        }) {
            Response::GetStatsResult(stats) => stats,
            other => panic!("GetStats {queue}: {other:?}"),
        }
    }
}

/// A queue name with `prefix` owned by `shard` of `shards` (names are tried in order).
pub fn queue_on(prefix: &str, shard: usize, shards: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|name| fila::routing::shard_for(name, shards) == shard)
        .unwrap()
}
