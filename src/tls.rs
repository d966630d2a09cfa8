//! TLS on the client port: loads the `[tls]` files (PEM certificate chain, private key, and
//! optionally a CA bundle that makes client certificates mandatory) into a rustls server
//! configuration, shares it between the shards, and swaps it on reload (SIGHUP).
//!
//! What it does not do: the handshake scheduling and its timeout (the listener's connection
//! task) and the stream type (`rt::stream`).
//!
//! Reload design: every shard holds a clone of one [`ServerTls`], an
//! `Arc<RwLock<Arc<ServerConfig>>>`. An accept reads the lock once to clone the inner `Arc`
//! (a pointer copy under an uncontended read lock) and handshakes with that configuration; a
//! reload builds a complete new configuration off the shards (on the main thread) and only then
//! takes the write lock to replace the pointer. Sessions already established keep the
//! configuration they started with; a reload that fails leaves the old one in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use fila_pem::PemError;
use futures_rustls::TlsAcceptor;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};

use crate::config::TlsConfig;
use crate::rt::{TcpStream, TlsStream};

/// The ALPN protocol id this server advertises. Clients that send no ALPN are accepted too
/// (rustls only refuses a client that offers ALPN ids none of which match).
pub const ALPN_FILA: &[u8] = b"fila/1";

/// Why the `[tls]` files cannot be used. Each variant names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {key} {}", path.display())]
    Read {
        /// The config key (`tls.cert_file`, …).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{key} {} is not a valid PEM file: {problem}", path.display())]
    Pem {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, as a phrase.
        problem: String,
    },
    /// The file holds no certificate.
    #[error("{key} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "tls.key_file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the private key of the certificate.
    #[error(
        "tls.key_file {} is not the private key of the certificate in tls.cert_file {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// rustls refused the key (undecodable or unsupported).
    #[error(
        "tls.key_file {} cannot be used with the certificate in tls.cert_file {}",
        key.display(),
        cert.display()
    )]
    KeyRejected {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate is not a usable trust anchor.
    #[error("tls.ca_file {} holds an unusable CA certificate", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier cannot be built from the CA file.
    #[error("tls.ca_file {} cannot verify client certificates", path.display())]
    Verifier {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: VerifierBuilderError,
    },
    /// The crypto provider refused the protocol versions (a build problem, not a file problem).
    #[error("the TLS library refused its default protocol versions")]
    Provider(#[source] rustls::Error),
}

/// The TLS server configuration every shard shares; clones share it, and
/// [`ServerTls::reload`] swaps it for all of them.
#[derive(Debug, Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    client_certificates: bool,
}

impl ServerTls {
    /// Loads the files of `config`.
    pub fn load(config: &TlsConfig) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            current: Arc::new(RwLock::new(server_config(config)?)),
            client_certificates: config.ca_file.is_some(),
        })
    }

    /// Whether clients must present a certificate (mTLS).
    pub fn requires_client_certificates(&self) -> bool {
        self.client_certificates
    }

    /// Reads the files of `config` again; on success new handshakes use them, on failure
    /// nothing changes.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let fresh = server_config(config)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The configuration new handshakes use now.
    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs the server side of the TLS handshake on `stream` with the current configuration.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream> {
        TlsAcceptor::from(self.current()).accept(stream).await
    }
}

/// A rustls server configuration from the files of `config`.
fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("tls.cert_file", &config.cert_file)?;
    let key = private_key(&config.key_file)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let builder = match &config.ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => builder.with_client_cert_verifier(client_verifier(ca_file, provider)?),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|source| match source {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: config.key_file.clone(),
                cert: config.cert_file.clone(),
            },
            source => TlsError::KeyRejected {
                key: config.key_file.clone(),
                cert: config.cert_file.clone(),
                source,
            },
        })?;
    server.alpn_protocols = vec![ALPN_FILA.to_vec()];
    Ok(Arc::new(server))
}

/// A verifier that requires a client certificate chaining to a CA of `ca_file`.
fn client_verifier(
    ca_file: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates("tls.ca_file", ca_file)? {
        roots.add(certificate).map_err(|source| TlsError::BadCa {
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|source| TlsError::Verifier {
            path: ca_file.to_path_buf(),
            source,
        })
}

/// A `fila_pem` failure as the `TlsError` naming the config key and the file.
fn file_error(key: &'static str, path: &Path, error: PemError) -> TlsError {
    let path = path.to_path_buf();
    match error {
        PemError::Read(source) => TlsError::Read { key, path, source },
        PemError::NoCertificate => TlsError::NoCertificate { key, path },
        PemError::NoKey => TlsError::NoKey { path },
        PemError::Invalid(problem) | PemError::BadCa(problem) => {
            TlsError::Pem { key, path, problem }
        }
    }
}

/// Every certificate in the PEM file `path`, in file order; at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    fila_pem::certificates(path).map_err(|error| file_error(key, path, error))
}

/// The first private key in the PEM file `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    fila_pem::private_key(path).map_err(|error| file_error("tls.key_file", path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let config = TlsConfig {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            ca_file: None,
        };
        std::fs::write(&config.cert_file, cert.pem()).unwrap();
        std::fs::write(&config.key_file, key.serialize_pem()).unwrap();
        config
    }

    #[test]
    fn a_reload_swaps_the_configuration_only_when_every_file_is_usable() {
        let dir = tempfile::tempdir().unwrap();
        let config = files(dir.path());
        let tls = ServerTls::load(&config).unwrap();
        let shard_view = tls.clone();
        let first = tls.current();
        assert_eq!(first.alpn_protocols, vec![ALPN_FILA.to_vec()]);

        std::fs::write(&config.key_file, "broken").unwrap();
        assert!(matches!(tls.reload(&config), Err(TlsError::NoKey { .. })));
        assert!(Arc::ptr_eq(&first, &shard_view.current()));

        let fresh = files(dir.path());
        tls.reload(&fresh).unwrap();
        assert!(!Arc::ptr_eq(&first, &shard_view.current()));
    }

    #[test]
    fn pem_problems_read_as_text() {
        let problem = fila_pem::problem(&rustls::pki_types::pem::Error::MissingSectionEnd {
            end_marker: b"CERTIFICATE".to_vec(),
        });
        assert_eq!(
            problem,
            "a section has no \"-----END CERTIFICATE-----\" line"
        );
    }
}
