//! TLS for the bench's connections: the rustls client configuration from `--tls`,
//! `--tls-ca-cert`, `--tls-cert`/`--tls-key` and `--tls-server-name` (ring provider; the
//! system's trust store when no CA file is given), and the explanation of a TLS failure.
//!
//! How one TLS session serves the writer and reader threads of a connection is in
//! `client.rs`; this file only builds the configuration.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig};

use fila_pem::{ClientFile, ClientSetupError, PemError};

use crate::error::{BenchError, Result};

/// The TLS flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only these CAs (PEM); default: the system's trust store.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server certificate must carry; default: the IP address of `--addr`.
    pub server_name: Option<String>,
}

/// A TLS client set-up: configuration plus the name to verify.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The rustls configuration (shared by every connection).
    pub config: Arc<ClientConfig>,
    /// The server name checked against the certificate.
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// Builds the set-up for a server at `addr`. File problems are [`BenchError::TlsSetup`].
    pub fn new(options: &TlsOptions, addr: SocketAddr) -> Result<TlsClient> {
        let client = options
            .client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let config = fila_pem::client_config_from_files(options.ca_cert.as_deref(), client)
            .map_err(|failure| match failure {
                ClientSetupError::File { which, path, error } => {
                    let flag = match which {
                        ClientFile::Ca => "--tls-ca-cert",
                        ClientFile::Cert => "--tls-cert",
                        ClientFile::Key => "--tls-key",
                    };
                    file_error(flag, &path, error)
                }
                ClientSetupError::NoSystemRoots(problem) => {
                    setup(format!("{problem}; pass --tls-ca-cert PATH"))
                }
                ClientSetupError::Rejected(e) => setup(match &options.client_cert {
                    Some((cert_path, key_path)) => format!(
                        "--tls-cert {} and --tls-key {} cannot be used together: {e}",
                        cert_path.display(),
                        key_path.display()
                    ),
                    None => format!("the TLS client cannot be set up: {e}"),
                }),
            })?;
        let server_name = match &options.server_name {
            Some(name) => ServerName::try_from(name.clone()).map_err(|_| {
                setup(format!(
                    "--tls-server-name {name:?} is neither a DNS name nor an IP address"
                ))
            })?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

fn setup(message: String) -> BenchError {
    BenchError::TlsSetup(message)
}

/// A `fila_pem` failure as a sentence naming the flag and the file.
fn file_error(flag: &str, path: &Path, error: PemError) -> BenchError {
    let path = path.display();
    setup(match error {
        PemError::Read(e) => format!("cannot read {flag} {path}: {e}"),
        PemError::Invalid(reason) if flag == "--tls-key" => {
            format!("{flag} {path}: not a PEM private key: {reason}")
        }
        PemError::Invalid(reason) => format!("{flag} {path}: not a PEM certificate file: {reason}"),
        PemError::NoCertificate => format!("{flag} {path}: no CERTIFICATE block in the file"),
        PemError::NoKey => format!("{flag} {path}: not a PEM private key: no key in the file"),
        PemError::BadCa(reason) => format!("{flag} {path}: {reason}"),
    })
}

/// A readable reason for a failed TLS read, write or handshake (rustls errors travel inside
/// `io::Error`).
pub fn reason(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(inner) => rustls_reason(inner),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake (is TLS enabled on that port?)"
                .to_owned()
        }
        None => error.to_string(),
    }
}

/// A readable reason for a rustls error.
pub fn rustls_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(why) => format!(
            "certificate verify failed: {why}; pass the server's CA with --tls-ca-cert (and --tls-server-name if the certificate does not name the address)"
        ),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate; pass --tls-cert and --tls-key".to_owned()
        }
        other => other.to_string(),
    }
}
