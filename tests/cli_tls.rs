//! The `fila` CLI over TLS: the real binary against a small rustls server in a test thread that
//! speaks just enough protocol v1 (HandshakeOk, an empty ListQueues, one Enqueue result, one
//! Consume with a Delivery, Ack).
//! Certificates are made here with rcgen: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, a client certificate, and an unrelated CA for the verify-failure case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::BytesMut;
use fila_wire::{
    DeliveryMessage, EnqueueItemResult, ErrorCode, FrameDecoder, HandshakeOk, Request, Response,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Certificate files of one test.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_issuer = ca("fila test CA");
    let other = ca("some other CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca_issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "fila test client");
    let client = client_params.signed_by(&client_key, &ca_issuer).unwrap();
    Pki {
        ca: write("ca.pem", ca_issuer.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
        _dir: dir,
    }
}

/// How the stand-in server treats clients.
#[derive(Clone, Copy)]
struct ServerMode {
    /// Require and verify a client certificate signed by the test CA.
    mutual: bool,
    /// The API key the Handshake must carry, if any.
    api_key: Option<&'static str>,
}

fn server_config(pki: &Pki, mode: ServerMode) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if mode.mutual {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// Starts the TLS stand-in server; returns its `127.0.0.1:port`. It serves connections one at
/// a time until the test process exits.
fn tls_server(pki: &Pki, mode: ServerMode) -> String {
    let config = server_config(pki, mode);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { continue };
            let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut stream = rustls::StreamOwned::new(connection, socket);
            // TLS failures (the client's verify failure, a plaintext client) end the connection.
            let _ = serve(&mut stream, mode);
        }
    });
    addr
}

/// Speaks protocol v1 on one connection until it ends.
fn serve(stream: &mut impl ReadWrite, mode: ServerMode) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    loop {
        let frame = loop {
            if let Some(frame) = decoder.decode(&mut buf).map_err(std::io::Error::other)? {
                break frame;
            }
            let mut chunk = [0_u8; 4096];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let request =
            Request::decode(frame.opcode, frame.payload).map_err(std::io::Error::other)?;
        let id = frame.request_id;
        let replies = match request {
            Request::Handshake(hello) => {
                let sent = hello.api_key.as_deref().map(str::to_owned);
                let reply = match mode.api_key {
                    Some(key) if sent.as_deref() != Some(key) => {
                        Response::error(ErrorCode::Unauthorized, "")
                    }
                    _ => Response::HandshakeOk(HandshakeOk {
                        negotiated_version: 1,
                        node_id: 0,
                        max_frame_size: 16 * 1024 * 1024,
                    }),
                };
                vec![(0, reply)]
            }
            Request::ListQueues => vec![(
                id,
                Response::ListQueuesResult {
                    error_code: ErrorCode::Ok,
                    cluster_node_count: 0,
                    queues: vec![],
                },
            )],
            Request::Enqueue { .. } => vec![(
                id,
                Response::EnqueueResult {
                    results: vec![EnqueueItemResult {
                        error_code: ErrorCode::Ok,
                        message_id: "0190a0b0-0000-7000-8000-000000000001".into(),
                    }],
                },
            )],
            Request::Consume { queue } => vec![
                (
                    id,
                    Response::ConsumeOk {
                        consumer_id: "c1".into(),
                    },
                ),
                (
                    id,
                    Response::Delivery {
                        messages: vec![DeliveryMessage {
                            message_id: "m1".into(),
                            queue,
                            headers: Default::default(),
                            payload: bytes::Bytes::from_static(b"over tls"),
                            fairness_key: "default".into(),
                            weight: 1,
                            throttle_keys: vec![],
                            attempt_count: 1,
                            enqueued_at: 1,
                            leased_at: 2,
                        }],
                    },
                ),
            ],
            Request::Ack { items } => vec![(
                id,
                Response::AckResult {
                    results: items.iter().map(|_| ErrorCode::Ok).collect(),
                },
            )],
            Request::CancelConsume => vec![],
            _ => vec![(
                id,
                Response::error(ErrorCode::InvalidFrame, "not in this test"),
            )],
        };
        for (id, reply) in replies {
            let mut out = BytesMut::new();
            reply.encode(id, &mut out).unwrap();
            stream.write_all(&out)?;
        }
        stream.flush()?;
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn fila(addr: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_fila"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts a clean failure (exit 1, one `Error:` line) and returns that line.
fn error_line(run: &Run) -> String {
    assert_eq!(
        run.code,
        Some(1),
        "stdout {:?} stderr {:?}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", run.stderr);
    assert!(lines[0].starts_with("Error: "), "{:?}", run.stderr);
    lines[0].to_owned()
}

const PLAIN: ServerMode = ServerMode {
    mutual: false,
    api_key: None,
};

#[test]
fn commands_work_over_tls_with_the_given_ca() {
    let pki = pki();
    let addr = tls_server(&pki, PLAIN);
    let run = fila(
        &addr,
        &["--tls", "--tls-ca-cert", path(&pki.ca), "queue", "list"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "No queues found.\n");
    assert_eq!(run.stderr, "");
    // --tls-ca-cert alone implies TLS; a DNS name is checked against the DNS SAN.
    let port = addr.rsplit_once(':').unwrap().1;
    let by_name = format!("localhost:{port}");
    let run = fila(&by_name, &["--tls-ca-cert", path(&pki.ca), "queue", "list"]);
    assert_eq!(run.stdout, "No queues found.\n", "{}", run.stderr);
    let run = fila(
        &addr,
        &[
            "enqueue",
            "q",
            "--payload",
            "x",
            "--tls-ca-cert",
            path(&pki.ca),
        ],
    );
    assert_eq!(
        run.stdout, "0190a0b0-0000-7000-8000-000000000001\n",
        "{}",
        run.stderr
    );
}

#[test]
fn a_certificate_from_another_ca_fails_verification() {
    let pki = pki();
    let addr = tls_server(&pki, PLAIN);
    let line = error_line(&fila(
        &addr,
        &["--tls-ca-cert", path(&pki.other_ca), "queue", "list"],
    ));
    assert!(
        line.starts_with(&format!(
            "Error: TLS with the server at {addr} failed: certificate verify failed: "
        )),
        "{line}"
    );
    assert!(line.contains("--tls-ca-cert"), "{line}");
}

#[test]
fn plaintext_and_tls_mismatches_are_explained() {
    let pki = pki();
    // A plaintext client at a TLS port.
    let addr = tls_server(&pki, PLAIN);
    let line = error_line(&fila(&addr, &["queue", "list"]));
    assert!(line.contains("--tls"), "{line}");
    // A TLS client at a plaintext port that drops the connection on the ClientHello, as
    // fila-server does with a frame length over 16 MiB.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let mut first = [0_u8; 4];
            let _ = socket.read_exact(&mut first);
            drop(socket);
        }
    });
    let line = error_line(&fila(
        &plain,
        &["--tls-ca-cert", path(&pki.ca), "queue", "list"],
    ));
    assert!(
        line.starts_with(&format!("Error: TLS with the server at {plain} failed: ")),
        "{line}"
    );
    assert!(line.contains("drop --tls"), "{line}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = pki();
    let addr = tls_server(
        &pki,
        ServerMode {
            mutual: true,
            api_key: None,
        },
    );
    let line = error_line(&fila(
        &addr,
        &["--tls-ca-cert", path(&pki.ca), "queue", "list"],
    ));
    assert!(line.contains("requires a client certificate"), "{line}");
    assert!(line.contains("--tls-cert"), "{line}");
    let run = fila(
        &addr,
        &[
            "--tls-ca-cert",
            path(&pki.ca),
            "--tls-cert",
            path(&pki.client_cert),
            "--tls-key",
            path(&pki.client_key),
            "queue",
            "list",
        ],
    );
    assert_eq!(run.stdout, "No queues found.\n", "{}", run.stderr);
}

#[test]
fn the_api_key_travels_inside_tls() {
    let pki = pki();
    let addr = tls_server(
        &pki,
        ServerMode {
            mutual: false,
            api_key: Some("s3cret"),
        },
    );
    let ca = path(&pki.ca);
    let line = error_line(&fila(&addr, &["--tls-ca-cert", ca, "queue", "list"]));
    assert_eq!(
        line,
        "Error: the server requires an API key; pass one with --api-key KEY"
    );
    let line = error_line(&fila(
        &addr,
        &["--tls-ca-cert", ca, "--api-key", "nope", "queue", "list"],
    ));
    assert!(line.contains("rejected the API key"), "{line}");
    let run = fila(
        &addr,
        &["--tls-ca-cert", ca, "--api-key", "s3cret", "queue", "list"],
    );
    assert_eq!(run.stdout, "No queues found.\n", "{}", run.stderr);
}

#[test]
fn bad_certificate_files_are_named_before_connecting() {
    let pki = pki();
    // Nothing listens here: file problems come first.
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let missing = pki.ca.with_file_name("missing.pem");
    let line = error_line(&fila(
        &dead,
        &["--tls-ca-cert", path(&missing), "queue", "list"],
    ));
    assert!(
        line.starts_with("Error: cannot read the CA certificate (--tls-ca-cert)")
            && line.contains("missing.pem"),
        "{line}"
    );
    // A key file where the CA should be.
    let line = error_line(&fila(
        &dead,
        &["--tls-ca-cert", path(&pki.client_key), "queue", "list"],
    ));
    assert!(line.contains("not a valid PEM certificate file"), "{line}");
    // A certificate where the key should be.
    let line = error_line(&fila(
        &dead,
        &[
            "--tls-cert",
            path(&pki.client_cert),
            "--tls-key",
            path(&pki.client_cert),
            "queue",
            "list",
        ],
    ));
    assert!(line.contains("is not a PEM private key"), "{line}");
    // --tls-cert needs --tls-key: a usage error from the parser.
    let run = fila(
        &dead,
        &["--tls-cert", path(&pki.client_cert), "queue", "list"],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--tls-key"), "{}", run.stderr);
}
