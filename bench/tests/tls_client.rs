//! The bench's connection over TLS, against a rustls stand-in server in a test thread that
//! answers Handshake (checking the API key) and every Enqueue. The writer and reader halves run
//! on two threads with many large requests in flight, as a producer does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fila_bench::BenchError;
use fila_bench::client::{Connection, Endpoint, Security};
use fila_bench::tls::{TlsClient, TlsOptions};
use fila_wire::{
    EnqueueItemResult, EnqueueMessage, ErrorCode, FrameDecoder, HandshakeOk, Request, Response,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const KEY: &str = "bench-key";

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("bench test CA");
    let other = ca("another CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, issuer.pem()).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        _dir: dir,
        ca,
        other_ca,
        server: Arc::new(server),
    }
}

/// A TLS server answering each connection on its own thread.
fn server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let session = rustls::ServerConnection::new(config).unwrap();
                let _ = serve(rustls::StreamOwned::new(session, socket));
            });
        }
    });
    addr
}

fn serve(mut stream: impl Read + Write) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let frame = loop {
            if let Some(frame) = decoder.decode(&mut buf).map_err(std::io::Error::other)? {
                break frame;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let request =
            Request::decode(frame.opcode, frame.payload).map_err(std::io::Error::other)?;
        let (id, reply) = match request {
            Request::Handshake(hello) if hello.api_key.as_deref() == Some(KEY) => (
                0,
                Response::HandshakeOk(HandshakeOk {
                    negotiated_version: 1,
                    node_id: 0,
                    max_frame_size: 16 * 1024 * 1024,
                }),
            ),
            Request::Handshake(_) => (0, Response::error(ErrorCode::Unauthorized, "")),
            Request::Enqueue { messages } => (
                frame.request_id,
                Response::EnqueueResult {
                    results: messages
                        .iter()
                        .map(|_| EnqueueItemResult {
                            error_code: ErrorCode::Ok,
                            message_id: "id".into(),
                        })
                        .collect(),
                },
            ),
            _ => (
                frame.request_id,
                Response::error(ErrorCode::InvalidFrame, "not in this test"),
            ),
        };
        let mut out = BytesMut::new();
        reply.encode(id, &mut out).unwrap();
        stream.write_all(&out)?;
        stream.flush()?;
    }
}

fn endpoint(addr: SocketAddr, ca: &Path, api_key: Option<&str>) -> Endpoint {
    let options = TlsOptions {
        ca_cert: Some(ca.to_path_buf()),
        ..TlsOptions::default()
    };
    let security = Security {
        api_key: api_key.map(str::to_owned),
        tls: Some(TlsClient::new(&options, addr).unwrap()),
    };
    Endpoint::new(addr, security)
}

#[test]
fn writer_and_reader_threads_share_one_tls_session() {
    let pki = pki();
    let addr = server(Arc::clone(&pki.server));
    let (mut writer, mut reader) = Connection::open(endpoint(addr, &pki.ca, Some(KEY)))
        .unwrap()
        .split();
    const REQUESTS: usize = 300;
    let payload = Bytes::from(vec![7_u8; 64 * 1024]);
    let sender = std::thread::spawn(move || {
        for _ in 0..REQUESTS {
            let request = Request::Enqueue {
                messages: vec![
                    EnqueueMessage {
                        queue: "q".into(),
                        headers: Default::default(),
                        payload: payload.clone(),
                    };
                    2
                ],
            };
            writer.send(&request, "Enqueue").unwrap();
        }
    });
    let mut seen = Vec::new();
    let deadline = fila_bench::clock::now() + std::time::Duration::from_secs(60);
    while seen.len() < REQUESTS {
        let Some((id, reply)) = reader.next_before(deadline, "replies").unwrap() else {
            panic!("only {} replies", seen.len());
        };
        let Response::EnqueueResult { results } = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(results.len(), 2);
        seen.push(id);
    }
    sender.join().unwrap();
    let expected: Vec<u32> = (1..=REQUESTS as u32).collect();
    assert_eq!(seen, expected);
}

#[test]
fn tls_and_key_failures_are_explained() {
    let pki = pki();
    let addr = server(Arc::clone(&pki.server));
    let Err(error) = Connection::open(endpoint(addr, &pki.other_ca, Some(KEY))) else {
        panic!("connected with the wrong CA");
    };
    assert!(matches!(error, BenchError::Tls { .. }), "{error}");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "{error}"
    );
    let Err(error) = Connection::open(endpoint(addr, &pki.ca, None)) else {
        panic!("connected without the key");
    };
    assert!(matches!(error, BenchError::HandshakeRefused(_)), "{error}");
    assert!(error.to_string().contains("--api-key"), "{error}");
    // A missing CA file is a set-up error.
    let options = TlsOptions {
        ca_cert: Some(pki.ca.with_file_name("missing.pem")),
        ..TlsOptions::default()
    };
    let Err(error) = TlsClient::new(&options, addr) else {
        panic!("a missing CA file was accepted");
    };
    assert!(error.to_string().contains("missing.pem"), "{error}");
}
