//! `Connection`: one blocking TCP connection to a Fila server (plaintext or TLS, see
//! [`crate::cli::tls`]), speaking protocol v1 through `fila-wire`. TLS handshake first when
//! asked for, then the protocol Handshake (request id 0), then one request at a time; Delivery
//! frames that arrive while a reply is awaited are kept for [`Connection::next_delivery`].

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fila_wire::{DeliveryMessage, ErrorCode, FrameDecoder, Handshake, Request, Response};

use crate::cli::error::CliError;
use crate::cli::tls::{self, Stream};

/// The port used when `--addr` names only a host.
pub const DEFAULT_PORT: u16 = 5555;
/// How long a TCP connect may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// How long a reply may take before the command gives up (a hang guard, not a deadline the
/// protocol promises).
pub const REPLY_LIMIT: Duration = Duration::from_secs(30);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, as shown in messages.
    pub addr: String,
    /// Token for the Handshake, if any.
    pub api_key: Option<String>,
    /// The TLS client configuration; `None` connects in plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// A target from the `--addr` text: a leading `http://` or `https://` and a trailing `/`
    /// are dropped, and a missing port becomes 5555. Plaintext; see [`Target::with_tls`].
    pub fn new(addr: &str, api_key: Option<String>) -> Target {
        Target {
            addr: normalize_addr(addr),
            api_key,
            tls: None,
        }
    }

    /// The same target over TLS with `config`.
    pub fn with_tls(self, config: Arc<rustls::ClientConfig>) -> Target {
        Target {
            tls: Some(config),
            ..self
        }
    }
}

/// `http://host:port/` → `host:port`; `host` → `host:5555`; `[::1]` → `[::1]:5555`.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    let addr = addr.trim_end_matches('/');
    let has_port = match addr.rfind(']') {
        // IPv6 literal: a port follows the closing bracket.
        Some(close) => addr.get(close..).is_some_and(|rest| rest.contains(':')),
        // Bare IPv6 without brackets (two or more colons) is taken as having no port.
        None => addr.matches(':').count() == 1,
    };
    if has_port {
        addr.to_owned()
    } else if addr.matches(':').count() > 1 && !addr.starts_with('[') {
        format!("[{addr}]:{DEFAULT_PORT}")
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

/// A connected, handshaken connection.
pub struct Connection {
    addr: String,
    stream: Stream,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_id: u32,
    deliveries: VecDeque<(u32, DeliveryMessage)>,
}

impl Connection {
    /// Connects to `target` and completes the handshake.
    pub fn open(target: &Target) -> Result<Connection, CliError> {
        let socket = connect(&target.addr)?;
        let stream = match &target.tls {
            None => Stream::Plain(socket),
            Some(config) => {
                // The handshake waits are bounded like replies.
                socket
                    .set_read_timeout(Some(REPLY_LIMIT))
                    .map_err(|source| CliError::Io {
                        addr: target.addr.clone(),
                        source,
                    })?;
                tls::connect(Arc::clone(config), &target.addr, socket)?
            }
        };
        let mut connection = Connection {
            addr: target.addr.clone(),
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: FrameDecoder::new(),
            next_id: 1,
            deliveries: VecDeque::new(),
        };
        connection.set_read_limit(Some(REPLY_LIMIT))?;
        let hello = Request::Handshake(Handshake {
            protocol_version: 1,
            api_key: target.api_key.as_deref().map(Into::into),
        });
        connection.send_with_id(0, &hello)?;
        // The server answers the handshake with request id 0; the first frame is the answer.
        let reply = match connection.read_frame() {
            Ok((_, reply)) => reply,
            Err(CliError::Closed { addr }) if !connection.stream.is_tls() => {
                return Err(CliError::sentence(format!(
                    "the server at {addr} closed the connection during the handshake (if it serves TLS, connect with --tls; if it needs a client certificate, add --tls-cert and --tls-key)"
                )));
            }
            Err(e) => return Err(e),
        };
        match reply {
            Response::HandshakeOk(_) => Ok(connection),
            Response::Error { code, message, .. } => {
                Err(handshake_error(code, &message, target.api_key.is_some()))
            }
            other => Err(CliError::Protocol(format!(
                "{:?} instead of HandshakeOk",
                other.opcode()
            ))),
        }
    }

    /// The server address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets how long one read may wait; `None` waits forever.
    pub fn set_read_limit(&mut self, limit: Option<Duration>) -> Result<(), CliError> {
        // A zero timeout is an error for the socket API; treat it as the smallest wait.
        let limit = limit.map(|d| d.max(Duration::from_millis(1)));
        self.stream
            .socket()
            .set_read_timeout(limit)
            .map_err(|e| self.io(e))
    }

    /// Sends `request` with a fresh request id; returns the id.
    pub fn send(&mut self, request: &Request) -> Result<u32, CliError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.send_with_id(id, request)?;
        Ok(id)
    }

    /// Ends subscription `subscription` (CancelConsume carries the Consume's request id; no
    /// reply). Leases already taken stay valid on this connection.
    pub fn cancel(&mut self, subscription: u32) -> Result<(), CliError> {
        self.send_with_id(subscription, &Request::CancelConsume)
    }

    fn send_with_id(&mut self, id: u32, request: &Request) -> Result<(), CliError> {
        let mut out = BytesMut::with_capacity(request.encoded_len());
        request
            .encode(id, &mut out)
            .map_err(|e| CliError::Input(format!("the request cannot be sent: {e}")))?;
        self.stream.write_all(&out).map_err(|e| self.io(e))
    }

    /// Sends `request` and waits for the reply with its request id. An Error frame is returned
    /// as `Response::Error`; the caller decides the sentence.
    pub fn call(&mut self, request: &Request) -> Result<Response, CliError> {
        let id = self.send(request)?;
        self.reply_to(id)
    }

    /// Waits for the reply to request `id`, keeping deliveries aside.
    pub fn reply_to(&mut self, id: u32) -> Result<Response, CliError> {
        loop {
            let (rid, response) = self.read_frame()?;
            match response {
                Response::Delivery { messages } => {
                    self.deliveries
                        .extend(messages.into_iter().map(|message| (rid, message)));
                }
                response if rid == id => return Ok(response),
                // A reply to a request we no longer wait for; nothing to do with it.
                _ => {}
            }
        }
    }

    /// The next delivered message of subscription `subscription`; `Ok(None)` when the read
    /// limit passes without one.
    pub fn next_delivery(
        &mut self,
        subscription: u32,
    ) -> Result<Option<DeliveryMessage>, CliError> {
        loop {
            if let Some(index) = self.deliveries.iter().position(|(s, _)| *s == subscription) {
                return Ok(self.deliveries.remove(index).map(|(_, message)| message));
            }
            match self.read_frame() {
                Ok((rid, Response::Delivery { messages })) => {
                    self.deliveries
                        .extend(messages.into_iter().map(|message| (rid, message)));
                }
                Ok((rid, Response::Error { code, message, .. })) if rid == subscription => {
                    return Err(CliError::server(code, &message));
                }
                Ok(_) => {}
                Err(CliError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next frame from the server.
    fn read_frame(&mut self) -> Result<(u32, Response), CliError> {
        loop {
            if !self.stream.is_tls() && tls::looks_like_tls(&self.buf) {
                return Err(CliError::sentence(format!(
                    "the server at {} speaks TLS on that port; connect with --tls (and --tls-ca-cert PATH if its certificate comes from a private CA)",
                    self.addr
                )));
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    let response = Response::decode(frame.opcode, frame.payload)
                        .map_err(|e| CliError::Protocol(e.to_string()))?;
                    return Ok((frame.request_id, response));
                }
                Ok(None) => {}
                Err(e) => return Err(CliError::Protocol(e.to_string())),
            }
            let mut chunk = [0_u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(CliError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let seconds = self
                        .stream
                        .socket()
                        .read_timeout()
                        .ok()
                        .flatten()
                        .map_or(0, |d| d.as_secs());
                    return Err(CliError::Timeout {
                        addr: self.addr.clone(),
                        seconds,
                    });
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Err(CliError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                // A TLS peer that closed the socket without close_notify (plain sockets never
                // report UnexpectedEof on read).
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    return Err(CliError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn io(&self, source: std::io::Error) -> CliError {
        if self.stream.is_tls() {
            // rustls errors (alerts, bad records) travel inside io::Error.
            return tls::failure(&self.addr, &source, false);
        }
        CliError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}

/// The sentence for an Error frame answering the Handshake; `sent_key` tells whether
/// `--api-key` was given.
pub fn handshake_error(code: ErrorCode, message: &str, sent_key: bool) -> CliError {
    match (code, sent_key) {
        (ErrorCode::Unauthorized, false) => {
            CliError::sentence("the server requires an API key; pass one with --api-key KEY")
        }
        (ErrorCode::Unauthorized, true) => CliError::sentence(
            "the server rejected the API key (unknown, revoked or expired); pass a valid one with --api-key KEY",
        ),
        _ => CliError::server(code, message),
    }
}

/// Resolves `addr` and connects to the first address that accepts.
fn connect(addr: &str) -> Result<TcpStream, CliError> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| CliError::Resolve {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for candidate in &candidates {
        match TcpStream::connect_timeout(candidate, CONNECT_LIMIT) {
            Ok(stream) => {
                // Latency over batching: every request is one small frame.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    let reason = match last {
        Some(e) => connect_reason(&e),
        None => "the name resolves to no address".to_owned(),
    };
    Err(CliError::Connect {
        addr: addr.to_owned(),
        reason,
    })
}

fn connect_reason(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::ConnectionRefused => {
            "connection refused (is fila-server running there?)".to_owned()
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!(
            "no answer within {} s (is the address right and reachable?)",
            CONNECT_LIMIT.as_secs()
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(normalize_addr("localhost:5555"), "localhost:5555");
        assert_eq!(normalize_addr("http://localhost:7000"), "localhost:7000");
        assert_eq!(normalize_addr("https://10.0.0.1:7000/"), "10.0.0.1:7000");
        assert_eq!(normalize_addr("broker"), "broker:5555");
        assert_eq!(normalize_addr("[::1]:9"), "[::1]:9");
        assert_eq!(normalize_addr("[::1]"), "[::1]:5555");
        assert_eq!(normalize_addr("::1"), "[::1]:5555");
    }
}
