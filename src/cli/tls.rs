//! TLS for the `fila` client: the rustls client configuration built from `--tls`,
//! `--tls-ca-cert`, `--tls-cert`/`--tls-key` (ring provider; the system's trust store when no
//! CA file is given), the server name taken from `--addr`, the [`Stream`] a connection reads
//! and writes (plaintext or TLS over one blocking `TcpStream`), and the sentences for TLS
//! failures.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection};

use fila_pem::{ClientFile, ClientSetupError, PemError};

use crate::cli::error::CliError;

/// The TLS flags of a command line; TLS is on when this exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tls-ca-cert`: trust only the CAs in this PEM file (default: the system's trust store).
    pub ca_cert: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`: a client certificate chain and its key (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The rustls client configuration for `options`. Every file problem is a sentence naming the
/// file.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, CliError> {
    let client = options
        .client_cert
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    fila_pem::client_config_from_files(options.ca_cert.as_deref(), client)
        .map(Arc::new)
        .map_err(|failure| match failure {
            ClientSetupError::File { which, path, error } => {
                let what = match which {
                    ClientFile::Ca => "CA certificate (--tls-ca-cert)",
                    ClientFile::Cert => "client certificate (--tls-cert)",
                    ClientFile::Key => "client key (--tls-key)",
                };
                match (which, error) {
                    (ClientFile::Key, PemError::Invalid(reason)) => CliError::Input(format!(
                        "the {what} \"{}\" is not a PEM private key: {reason}",
                        path.display()
                    )),
                    (_, error) => file_error(what, &path, error),
                }
            }
            ClientSetupError::NoSystemRoots(problem) => CliError::Input(format!(
                "{problem}; pass the server's CA with --tls-ca-cert PATH"
            )),
            ClientSetupError::Rejected(e) => CliError::Input(match &options.client_cert {
                Some((cert_path, key_path)) => format!(
                    "the client certificate \"{}\" and key \"{}\" cannot be used together: {e}",
                    cert_path.display(),
                    key_path.display()
                ),
                None => format!("the TLS client cannot be set up: {e}"),
            }),
        })
}

/// A `fila_pem` failure as a sentence naming the file and its flag.
fn file_error(what: &str, path: &Path, error: PemError) -> CliError {
    let path = path.display();
    CliError::Input(match error {
        PemError::Read(e) => format!("cannot read the {what} \"{path}\": {e}"),
        PemError::Invalid(reason) => {
            format!("the {what} \"{path}\" is not a valid PEM certificate file: {reason}")
        }
        PemError::NoCertificate => format!(
            "the {what} \"{path}\" is not a valid PEM certificate file: it holds no CERTIFICATE block"
        ),
        PemError::NoKey => {
            format!("the {what} \"{path}\" is not a PEM private key: it holds no PRIVATE KEY block")
        }
        PemError::BadCa(reason) => format!("the {what} \"{path}\" cannot be used: {reason}"),
    })
}

/// The name the server certificate must carry: the host part of a normalized `host:port`
/// (`[::1]:5555` → `::1`). IP addresses are checked against IP SANs.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, CliError> {
    let host = match addr.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => addr.rsplit_once(':').map_or(addr, |(host, _)| host),
    };
    ServerName::try_from(host.to_owned()).map_err(|_| {
        CliError::Input(format!(
            "\"{host}\" is neither a DNS name nor an IP address, so it cannot be checked against the server's certificate"
        ))
    })
}

/// The byte stream of one connection.
pub enum Stream {
    /// Protocol bytes straight on the socket.
    Plain(TcpStream),
    /// Protocol bytes inside TLS.
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket (for timeouts).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.write_all(buf),
            // StreamOwned sends TLS records as it goes; flush pushes out the last one.
            Stream::Tls(tls) => {
                tls.write_all(buf)?;
                tls.flush()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// Runs the TLS handshake on `socket` (its read timeout bounds each wait) and returns the TLS
/// stream.
pub fn connect(
    config: Arc<ClientConfig>,
    addr: &str,
    mut socket: TcpStream,
) -> Result<Stream, CliError> {
    let name = server_name(addr)?;
    let mut tls = ClientConnection::new(config, name)
        .map_err(|e| CliError::Input(format!("the TLS client cannot be set up: {e}")))?;
    while tls.is_handshaking() {
        tls.complete_io(&mut socket)
            .map_err(|e| failure(addr, &e, true))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(tls, socket))))
}

/// The sentence for an I/O error of a TLS stream: rustls errors (carried inside the
/// `io::Error`) get a plain explanation; anything else is [`CliError::Io`]. `handshaking` is
/// true while the TLS handshake is still running.
pub fn failure(addr: &str, error: &io::Error, handshaking: bool) -> CliError {
    let tls = |reason: String| CliError::Tls {
        addr: addr.to_owned(),
        reason,
    };
    if let Some(inner) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match inner {
            rustls::Error::InvalidCertificate(reason) => tls(format!(
                "certificate verify failed: {}; if the server's certificate comes from a private CA, pass that CA with --tls-ca-cert PATH",
                certificate_reason(reason)
            )),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => tls(
                "the server requires a client certificate; pass --tls-cert PATH and --tls-key PATH"
                    .to_owned(),
            ),
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::AccessDenied),
            ) => tls(format!(
                "the server rejected the client certificate ({alert:?}); check --tls-cert and --tls-key against the server's CA"
            )),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }
                if handshaking =>
            {
                tls(
                    "the server did not answer in TLS (is TLS enabled on that port? without [tls] the server speaks plaintext: drop --tls)"
                        .to_owned(),
                )
            }
            other => tls(other.to_string()),
        };
    }
    if handshaking
        && matches!(
            error.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        )
    {
        return tls(
            "the server closed the connection during the TLS handshake (is TLS enabled on that port? without [tls] the server speaks plaintext: drop --tls)"
                .to_owned(),
        );
    }
    if handshaking && matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        return tls("no answer to the TLS handshake in time".to_owned());
    }
    CliError::Io {
        addr: addr.to_owned(),
        source: io::Error::new(error.kind(), error.to_string()),
    }
}

fn certificate_reason(reason: &CertificateError) -> String {
    match reason {
        CertificateError::UnknownIssuer => {
            "the certificate is not signed by a trusted CA (unknown issuer)".to_owned()
        }
        other => other.to_string(),
    }
}

/// True when `bytes` start like a TLS record (handshake or alert): what a TLS server sends a
/// client that spoke plaintext to it.
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("broker.example:5555").unwrap(),
            ServerName::try_from("broker.example").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:5555").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:5555").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad_host!:1").is_err());
    }

    #[test]
    fn tls_records_are_recognized() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(&[0x00, 0x00, 0x00, 0x0a]));
        assert!(!looks_like_tls(&[0x15]));
    }

    #[test]
    fn unreadable_and_invalid_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsOptions {
            ca_cert: Some(dir.path().join("nope.pem")),
            client_cert: None,
        };
        let text = client_config(&missing).unwrap_err().to_string();
        assert!(
            text.starts_with("cannot read the CA certificate (--tls-ca-cert)"),
            "{text}"
        );
        assert!(text.contains("nope.pem"), "{text}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let options = TlsOptions {
            ca_cert: Some(garbage),
            client_cert: None,
        };
        let text = client_config(&options).unwrap_err().to_string();
        assert!(
            text.contains("is not a valid PEM certificate file"),
            "{text}"
        );
    }
}
