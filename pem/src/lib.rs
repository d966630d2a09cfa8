//! `fila-pem`: the PEM files of Fila's TLS, read from paths — certificate chains, private
//! keys, CA bundles, and the system's trust store — and the rustls client configuration the
//! CLI and the bench build from them. One reader for the server (`[tls]`), the `fila` CLI and
//! `fila-bench` (`--tls-*`). This crate says what is wrong with a file ([`PemError`]) and, for a
//! client set-up, which file it was ([`ClientSetupError`]); callers word the message with their
//! own flag or config key.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with a PEM file (the caller says which file it is).
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file cannot be read.
    #[error("cannot be read: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not valid PEM (the phrase says where).
    #[error("is not a valid PEM file: {0}")]
    Invalid(String),
    /// No certificate block.
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// No private-key block.
    #[error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    /// A CA certificate rustls cannot use as a trust anchor.
    #[error("holds a CA certificate that cannot be used: {0}")]
    BadCa(String),
}

/// Every certificate in the PEM file `path`, in file order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = std::fs::read(path).map_err(PemError::Read)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PemError::Invalid(problem(&error)))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(chain)
}

/// The first private key in the PEM file `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = std::fs::read(path).map_err(PemError::Read)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(PemError::NoKey),
        Err(error) => Err(PemError::Invalid(problem(&error))),
    }
}

/// The CA certificates of the PEM file `path`, as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|error| PemError::BadCa(error.to_string()))?;
    }
    Ok(roots)
}

/// The operating system's trusted CA certificates; `Err` with a phrase when none were found.
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted CA certificates were found on this system{detail}"
        ));
    }
    Ok(roots)
}

/// A client configuration with the ring provider and the safe default protocol versions,
/// trusting `roots`, presenting `client_auth` (chain and key) when given. An error is rustls
/// refusing the provider or the certificate/key pair.
pub fn client_config(
    roots: RootCertStore,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    match client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key),
    }
}

/// Which file of a client set-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFile {
    /// The CA bundle to trust (`--tls-ca-cert`).
    Ca,
    /// The client certificate chain (`--tls-cert`).
    Cert,
    /// The client private key (`--tls-key`).
    Key,
}

/// Why a client configuration could not be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// One of the files.
    #[error("{} {}: {error}", match which { ClientFile::Ca => "CA file", ClientFile::Cert => "certificate file", ClientFile::Key => "key file" }, path.display())]
    File {
        /// Which one.
        which: ClientFile,
        /// Its path.
        path: std::path::PathBuf,
        /// What is wrong with it.
        error: PemError,
    },
    /// No CA file was given and the system has no trusted CAs.
    #[error("{0}")]
    NoSystemRoots(String),
    /// rustls refused the configuration (with a client certificate: the pair does not fit).
    #[error("{0}")]
    Rejected(#[source] rustls::Error),
}

/// The client configuration for a CA file (`None` = the system's trust store) and an optional
/// client certificate chain and key, read from their files.
pub fn client_config_from_files(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, ClientSetupError> {
    fn file(which: ClientFile, path: &Path) -> impl FnOnce(PemError) -> ClientSetupError {
        let path = path.to_path_buf();
        move |error| ClientSetupError::File { which, path, error }
    }
    let roots = match ca {
        Some(path) => roots(path).map_err(file(ClientFile::Ca, path))?,
        None => system_roots().map_err(ClientSetupError::NoSystemRoots)?,
    };
    let client_auth = match client {
        None => None,
        Some((cert, key)) => Some((
            certificates(cert).map_err(file(ClientFile::Cert, cert))?,
            private_key(key).map_err(file(ClientFile::Key, key))?,
        )),
    };
    client_config(roots, client_auth).map_err(ClientSetupError::Rejected)
}

/// A PEM parse error as a phrase for an operator (rustls prints markers as byte lists).
pub fn problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed section start {:?}",
            String::from_utf8_lossy(line)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rcgen_writes_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        assert_eq!(certificates(&cert_path).unwrap().len(), 1);
        assert!(private_key(&key_path).is_ok());
        assert!(roots(&cert_path).is_ok());
        assert!(matches!(
            certificates(&key_path),
            Err(PemError::NoCertificate)
        ));
        assert!(matches!(private_key(&cert_path), Err(PemError::NoKey)));
        assert!(matches!(
            certificates(&dir.path().join("missing.pem")),
            Err(PemError::Read(_))
        ));
        std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let Err(PemError::Invalid(problem)) = certificates(&cert_path) else {
            panic!("truncated PEM accepted");
        };
        assert!(problem.contains("-----END CERTIFICATE-----"), "{problem}");
    }
}
