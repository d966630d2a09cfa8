//! One blocking TCP connection to the broker, speaking Fila binary protocol v1 through
//! `fila-wire`: connect and handshake, then a [`Writer`] half that numbers and sends requests and
//! a [`Reader`] half that takes reply and Delivery frames off the socket.
//!
//! The halves share one socket (`TcpStream::try_clone`) so a producer can write from one thread
//! while another thread reads its replies. This file knows the protocol's framing and the
//! handshake; what to send and how to count is the workloads' business.
//!
//! With TLS the halves also share one `rustls::ClientConnection` behind a mutex. The writer
//! locks it to encrypt a request into records it collects in memory, unlocks, and only then
//! writes the records to the socket (a writer blocked on a full socket never holds the lock the
//! reader needs to drain replies, so the two cannot deadlock). The reader reads raw socket
//! bytes without the lock, then locks to feed them to rustls and take the plaintext out. Only
//! the writer writes to the socket, so records go out in the order they were made; a record
//! rustls wants to send while reading (none in practice: the server sends no key updates) goes
//! out with the next request. Without TLS there is no mutex and no extra copy.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fila_wire::{CreateQueue, ErrorCode, FrameDecoder, Handshake, Request, Response};
use rustls::ClientConnection;

use crate::clock;
use crate::error::{BenchError, Result};
use crate::tls::{self, TlsClient};

/// How often a blocked read wakes up to look at its deadline.
const READ_POLL: Duration = Duration::from_millis(50);
/// A read without a deadline fails after this long without a byte from the server.
pub const STALL_LIMIT: Duration = Duration::from_secs(15);
/// Bytes read from the socket per `read` call.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How long the TLS handshake may take.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// How every connection of a run authenticates and encrypts.
#[derive(Debug, Default)]
pub struct Security {
    /// Token for the Handshake (`--api-key`).
    pub api_key: Option<String>,
    /// TLS set-up; `None` is plaintext.
    pub tls: Option<TlsClient>,
}

/// No API key, no TLS.
static PLAINTEXT: Security = Security {
    api_key: None,
    tls: None,
};

/// Where and how to connect: `Copy`, so workloads hand it to every thread they start.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The server address.
    pub addr: SocketAddr,
    security: &'static Security,
}

impl Endpoint {
    /// A plaintext endpoint without an API key.
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            security: &PLAINTEXT,
        }
    }

    /// An endpoint with `security`. The settings are leaked so that the endpoint stays `Copy`:
    /// one small allocation per target server of a run, kept until the process exits.
    pub fn new(addr: SocketAddr, security: Security) -> Endpoint {
        if security.api_key.is_none() && security.tls.is_none() {
            return Endpoint::plain(addr);
        }
        Endpoint {
            addr,
            security: Box::leak(Box::new(security)),
        }
    }

    /// True when connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.security.tls.is_some()
    }

    /// True when connections present an API key.
    pub fn has_api_key(&self) -> bool {
        self.security.api_key.is_some()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.is_tls() {
            write!(f, " (TLS)")?;
        }
        Ok(())
    }
}

/// The TLS session the two halves of a connection share.
type SharedTls = Arc<Mutex<ClientConnection>>;

/// A connected, handshaken connection: both halves, for request/reply use on one thread.
pub struct Connection {
    /// The sending half.
    pub writer: Writer,
    /// The receiving half.
    pub reader: Reader,
}

impl Connection {
    /// Connects to `endpoint` (TLS handshake first when it uses TLS), sends Handshake
    /// (protocol 1, with its API key) and waits for HandshakeOk.
    pub fn open(endpoint: Endpoint) -> Result<Connection> {
        let addr = endpoint.addr;
        let stream = TcpStream::connect(addr).map_err(|source| BenchError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        let io = |source| BenchError::Io {
            doing: "setting up the socket",
            source,
        };
        stream.set_nodelay(true).map_err(io)?;
        let tls = match &endpoint.security.tls {
            None => None,
            Some(client) => {
                stream
                    .set_read_timeout(Some(TLS_HANDSHAKE_LIMIT))
                    .map_err(io)?;
                Some(tls_handshake(client, addr, &stream)?)
            }
        };
        stream.set_read_timeout(Some(READ_POLL)).map_err(io)?;
        let read_half = stream.try_clone().map_err(io)?;
        let mut connection = Connection {
            writer: Writer {
                stream,
                tls: tls.clone(),
                records: Vec::new(),
                out: BytesMut::new(),
                next_request_id: 1,
            },
            reader: Reader {
                stream: read_half,
                peer: addr,
                tls,
                input: BytesMut::new(),
                scratch: vec![0; READ_CHUNK_BYTES],
                decoder: FrameDecoder::new(),
            },
        };
        connection.handshake(endpoint.security.api_key.as_deref())?;
        Ok(connection)
    }

    fn handshake(&mut self, api_key: Option<&str>) -> Result<()> {
        let request = Request::Handshake(Handshake {
            protocol_version: 1,
            api_key: api_key.map(Into::into),
        });
        self.writer.send_with_id(&request, 0, "handshake")?;
        match self.reader.next_reply("waiting for HandshakeOk")? {
            (_, Response::HandshakeOk(_)) => Ok(()),
            (
                _,
                Response::Error {
                    code: ErrorCode::Unauthorized,
                    ..
                },
            ) => Err(BenchError::HandshakeRefused(match api_key {
                None => "the server requires an API key; pass --api-key KEY".to_owned(),
                Some(_) => "the server rejected --api-key (unknown, revoked or expired)".to_owned(),
            })),
            (_, other) => Err(unexpected("Handshake", &other)),
        }
    }

    /// Sends `request` and returns its reply, skipping Delivery frames (no subscription is
    /// expected on a connection used this way).
    pub fn call(&mut self, request: &Request, name: &'static str) -> Result<Response> {
        let id = self.writer.send(request, name)?;
        loop {
            let (reply_id, reply) = self.reader.next_reply(name)?;
            if reply_id == id && !matches!(reply, Response::Delivery { .. }) {
                return Ok(reply);
            }
        }
    }

    /// Creates queue `name` with default settings; an existing queue is fine.
    pub fn create_queue(&mut self, name: &str) -> Result<()> {
        self.create_queue_with(name, None)
    }

    /// Creates queue `name` with an optional `on_enqueue` Lua hook; an existing queue is fine.
    pub fn create_queue_with(&mut self, name: &str, on_enqueue: Option<&str>) -> Result<()> {
        let request = Request::CreateQueue(CreateQueue {
            name: name.into(),
            on_enqueue_script: on_enqueue.map(Into::into),
            on_failure_script: None,
            visibility_timeout_ms: 0,
        });
        match self.call(&request, "CreateQueue")? {
            Response::CreateQueueResult {
                error_code: ErrorCode::Ok | ErrorCode::QueueAlreadyExists,
                ..
            } => Ok(()),
            other => Err(unexpected(&format!("CreateQueue {name}"), &other)),
        }
    }

    /// Sets runtime configuration `key` to `value` (empty deletes the key).
    pub fn set_config(&mut self, key: &str, value: &str) -> Result<()> {
        let request = Request::SetConfig {
            key: key.into(),
            value: value.into(),
        };
        match self.call(&request, "SetConfig")? {
            Response::SetConfigResult {
                error_code: ErrorCode::Ok,
            } => Ok(()),
            other => Err(unexpected(&format!("SetConfig {key}={value}"), &other)),
        }
    }

    /// Deletes queue `name` (and its messages); a missing queue is fine.
    pub fn delete_queue(&mut self, name: &str) -> Result<()> {
        let request = Request::DeleteQueue { queue: name.into() };
        match self.call(&request, "DeleteQueue")? {
            Response::DeleteQueueResult {
                error_code: ErrorCode::Ok | ErrorCode::QueueNotFound,
            } => Ok(()),
            other => Err(unexpected(&format!("DeleteQueue {name}"), &other)),
        }
    }

    /// Splits into the two halves (for a writer thread and a reader thread).
    pub fn split(self) -> (Writer, Reader) {
        (self.writer, self.reader)
    }
}

/// The error for a reply that is not the one `request` expects.
pub fn unexpected(request: &str, reply: &Response) -> BenchError {
    BenchError::UnexpectedReply {
        request: request.to_owned(),
        reply: describe(reply),
    }
}

/// A short description of a reply for error messages (Error frames in full, others by kind).
pub fn describe(reply: &Response) -> String {
    match reply {
        Response::Error {
            code,
            message,
            metadata,
        } => format!("Error {code} {message:?} {metadata:?}"),
        other => {
            let text = format!("{other:?}");
            text.chars().take(200).collect()
        }
    }
}

/// Runs the TLS handshake on `stream` (its read timeout bounds each wait).
fn tls_handshake(client: &TlsClient, addr: SocketAddr, stream: &TcpStream) -> Result<SharedTls> {
    let failed = |reason: String| BenchError::Tls {
        addr: addr.to_string(),
        reason,
    };
    let mut tls = ClientConnection::new(Arc::clone(&client.config), client.server_name.clone())
        .map_err(|e| failed(e.to_string()))?;
    // The writer encrypts a whole request before writing it out; no cap on pending records.
    tls.set_buffer_limit(None);
    let mut socket = stream;
    while tls.is_handshaking() {
        tls.complete_io(&mut socket)
            .map_err(|e| failed(tls::reason(&e)))?;
    }
    Ok(Arc::new(Mutex::new(tls)))
}

fn poisoned(doing: &'static str) -> BenchError {
    BenchError::Io {
        doing,
        source: std::io::Error::other("the TLS session was poisoned by a panicked thread"),
    }
}

/// The sending half: numbers requests from 1 and writes each as one frame.
pub struct Writer {
    stream: TcpStream,
    /// The TLS session shared with the reader; `None` is plaintext.
    tls: Option<SharedTls>,
    /// Encrypted records of the request being sent (TLS only).
    records: Vec<u8>,
    out: BytesMut,
    next_request_id: u32,
}

impl Writer {
    /// Sends `request` with the next request id and returns that id.
    pub fn send(&mut self, request: &Request, name: &'static str) -> Result<u32> {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        self.send_with_id(request, id, name)?;
        Ok(id)
    }

    fn send_with_id(&mut self, request: &Request, id: u32, name: &'static str) -> Result<()> {
        self.out.clear();
        request
            .encode(id, &mut self.out)
            .map_err(|error| BenchError::Encode {
                request: name,
                detail: error.to_string(),
            })?;
        let doing = "sending a request";
        let io = |source| BenchError::Io { doing, source };
        let Some(tls) = &self.tls else {
            return self.stream.write_all(&self.out).map_err(io);
        };
        self.records.clear();
        {
            let mut session = tls.lock().map_err(|_| poisoned(doing))?;
            session.writer().write_all(&self.out).map_err(io)?;
            while session.wants_write() {
                session.write_tls(&mut self.records).map_err(io)?;
            }
        }
        self.stream.write_all(&self.records).map_err(io)
    }
}

/// The receiving half: buffers socket bytes and decodes one frame at a time.
pub struct Reader {
    stream: TcpStream,
    /// The server address, for TLS error messages.
    peer: SocketAddr,
    /// The TLS session shared with the writer; `None` is plaintext.
    tls: Option<SharedTls>,
    input: BytesMut,
    scratch: Vec<u8>,
    decoder: FrameDecoder,
}

impl Reader {
    /// The next frame, failing after [`STALL_LIMIT`] without a byte from the server.
    pub fn next_reply(&mut self, doing: &'static str) -> Result<(u32, Response)> {
        let mut last_progress = clock::now();
        loop {
            if let Some(frame) = self.next_buffered(doing)? {
                return Ok(frame);
            }
            if self.fill(doing)? {
                last_progress = clock::now();
            } else if clock::now().duration_since(last_progress) > STALL_LIMIT {
                return Err(BenchError::Stalled {
                    doing,
                    seconds: STALL_LIMIT.as_secs(),
                });
            }
        }
    }

    /// The next frame, or `None` once `deadline` has passed without one.
    pub fn next_before(
        &mut self,
        deadline: Instant,
        doing: &'static str,
    ) -> Result<Option<(u32, Response)>> {
        loop {
            if let Some(frame) = self.next_buffered(doing)? {
                return Ok(Some(frame));
            }
            if clock::now() >= deadline {
                return Ok(None);
            }
            self.fill(doing)?;
        }
    }

    /// Decodes a frame already in the buffer, if there is a whole one.
    fn next_buffered(&mut self, doing: &'static str) -> Result<Option<(u32, Response)>> {
        let protocol = |detail: String| BenchError::Protocol { doing, detail };
        let Some(frame) = self
            .decoder
            .decode(&mut self.input)
            .map_err(|error| protocol(error.to_string()))?
        else {
            return Ok(None);
        };
        let reply =
            Response::decode(frame.opcode, frame.payload).map_err(|e| protocol(e.to_string()))?;
        Ok(Some((frame.request_id, reply)))
    }

    /// One read of at most [`READ_CHUNK_BYTES`]; false when the poll interval passed with none.
    fn fill(&mut self, doing: &'static str) -> Result<bool> {
        match self.stream.read(&mut self.scratch) {
            Ok(0) => Err(BenchError::Closed { doing }),
            Ok(n) => {
                let bytes = self.scratch.get(..n).unwrap_or_default();
                match &self.tls {
                    None => self.input.extend_from_slice(bytes),
                    Some(tls) => decrypt(tls, bytes, &mut self.input, self.peer, doing)?,
                }
                Ok(true)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(source) => Err(BenchError::Io { doing, source }),
        }
    }
}

/// Feeds socket bytes to the TLS session and appends the plaintext they carry to `input`.
fn decrypt(
    tls: &SharedTls,
    mut raw: &[u8],
    input: &mut BytesMut,
    peer: SocketAddr,
    doing: &'static str,
) -> Result<()> {
    let mut session = tls.lock().map_err(|_| poisoned(doing))?;
    while !raw.is_empty() {
        session
            .read_tls(&mut raw)
            .map_err(|source| BenchError::Io { doing, source })?;
        let state = session.process_new_packets().map_err(|e| BenchError::Tls {
            addr: peer.to_string(),
            reason: tls::rustls_reason(&e),
        })?;
        let available = state.plaintext_bytes_to_read();
        if available > 0 {
            let start = input.len();
            input.resize(start + available, 0);
            let target = input.get_mut(start..).unwrap_or_default();
            session
                .reader()
                .read_exact(target)
                .map_err(|source| BenchError::Io { doing, source })?;
        }
    }
    Ok(())
}
