//! TLS for black-box tests: certificate authorities and certificates made with rcgen (written
//! as PEM files into a temporary directory for the server), and a blocking rustls client that
//! connects, handshakes TLS and then the protocol, and reports a refusal as an `Err` with the
//! reason instead of panicking.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::client::{Client, ClientStream};

/// The name the server certificates are issued for, and the clients connect to.
pub const SERVER_NAME: &str = "localhost";

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub pem: String,
    der: CertificateDer<'static>,
}

/// An issued certificate and its private key.
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    /// A fresh self-signed CA called `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for [`SERVER_NAME`] and 127.0.0.1.
    pub fn server_cert(&self) -> Issued {
        self.issue(true, false)
    }

    /// A server certificate that expired in 2020.
    pub fn expired_server_cert(&self) -> Issued {
        self.issue(true, true)
    }

    /// A client certificate.
    pub fn client_cert(&self) -> Issued {
        self.issue(false, false)
    }

    fn issue(&self, server: bool, expired: bool) -> Issued {
        let names = if server {
            vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            if server {
                "fila test server"
            } else {
                "fila test client"
            },
        );
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// The server's `[tls]` files in a temporary directory (kept while this value lives).
pub struct TlsFiles {
    dir: tempfile::TempDir,
    /// `tls.cert_file`.
    pub cert: PathBuf,
    /// `tls.key_file`.
    pub key: PathBuf,
    /// `tls.ca_file`, written by [`TlsFiles::with_client_ca`].
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Writes `server` as cert.pem and key.pem.
    pub fn new(server: &Issued) -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            ca: None,
            dir,
        };
        files.replace(server);
        files
    }

    /// Also writes `ca` as ca.pem (client certificates required).
    pub fn with_client_ca(mut self, ca: &Ca) -> TlsFiles {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &ca.pem).unwrap();
        self.ca = Some(path);
        self
    }

    /// Overwrites cert.pem and key.pem with `server` (for reloads).
    pub fn replace(&self, server: &Issued) {
        std::fs::write(&self.cert, &server.cert_pem).unwrap();
        std::fs::write(&self.key, &server.key_pem).unwrap();
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `[tls]` section naming these files.
    pub fn config(&self) -> String {
        let mut text = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert.display().to_string(),
            self.key.display().to_string()
        );
        if let Some(ca) = &self.ca {
            text.push_str(&format!("ca_file = {:?}\n", ca.display().to_string()));
        }
        text
    }
}

/// A client configuration trusting `ca`, optionally presenting `identity`.
pub fn client_config(ca: &Ca, identity: Option<&Issued>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(issued) => builder
            .with_client_auth_cert(
                vec![issued.der.clone()],
                PrivateKeyDer::try_from(issued.key_der.clone()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// Connects with TLS under `config`, then handshakes the protocol. A refusal at either step
/// (certificate not trusted, client certificate refused, connection closed) is an `Err` with
/// the reason.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Client, String> {
    let mut client = connect_raw(addr, config)?;
    client.handshake()?;
    Ok(client)
}

/// Connects with TLS under `config`, without the protocol handshake.
pub fn connect_raw(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Client, String> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(super::client::READ_LIMIT))
        .unwrap();
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let mut session = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    while session.is_handshaking() {
        session
            .complete_io(&mut tcp)
            .map_err(|error| format!("TLS handshake failed: {error}"))?;
    }
    let stream = rustls::StreamOwned::new(session, tcp);
    Ok(Client::over(ClientStream::Tls(Box::new(stream))))
}
