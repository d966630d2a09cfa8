//! `CliError`: everything that makes a `fila` command fail. `fila` prints it as one line,
//! `Error: <sentence>`, on stderr and exits 1. Every wire [`ErrorCode`] has a plain sentence
//! ([`phrase`]); the commands add context (the queue name, the key) where they know it.

use std::io;

use fila_wire::ErrorCode;

/// Why a `fila` command failed. The `Display` text is the sentence after `Error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--addr` cannot be resolved to a socket address.
    #[error("cannot resolve the server address \"{addr}\": {reason}")]
    Resolve {
        /// The address as given (without any `http://` prefix).
        addr: String,
        /// Why.
        reason: String,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect to the server at {addr}: {reason}")]
    Connect {
        /// The address as given.
        addr: String,
        /// A plain reason, e.g. "connection refused (is fila-server running there?)".
        reason: String,
    },
    /// The TLS handshake or a TLS record failed (certificate, alert, a peer not speaking TLS).
    #[error("TLS with the server at {addr} failed: {reason}")]
    Tls {
        /// The server address.
        addr: String,
        /// A plain reason with what to do about it.
        reason: String,
    },
    /// Reading from or writing to the server failed.
    #[error("the connection to {addr} failed: {source}")]
    Io {
        /// The server address.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server closed the connection before answering.
    #[error("the server at {addr} closed the connection before answering")]
    Closed {
        /// The server address.
        addr: String,
    },
    /// No reply within the client's safety limit.
    #[error("the server at {addr} did not answer within {seconds} s")]
    Timeout {
        /// The server address.
        addr: String,
        /// The limit.
        seconds: u64,
    },
    /// The server sent bytes that are not a valid protocol v1 reply.
    #[error("the server sent a reply this client cannot read ({0}); is that a Fila server?")]
    Protocol(String),
    /// The server answered with an error code.
    #[error("{0}")]
    Server(String),
    /// A local input problem: a file that cannot be read, a bad flag value.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// The terminal could not be set up or drawn (`fila top`).
    #[error("the terminal cannot be used: {0}")]
    Terminal(#[source] io::Error),
}

impl CliError {
    /// The error for a code the server returned, with the server's own text when it sent one.
    pub fn server(code: ErrorCode, message: &str) -> CliError {
        let message = message.trim();
        if message.is_empty() {
            CliError::Server(phrase(code).to_owned())
        } else {
            CliError::Server(message.to_owned())
        }
    }

    /// The error for a code the server returned, in a sentence the command wrote.
    pub fn sentence(text: impl Into<String>) -> CliError {
        CliError::Server(text.into())
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> CliError {
        CliError::Output(error)
    }
}

/// The plain sentence for an error code, used when the server sent no text or the code came
/// inside a result body.
pub fn phrase(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Ok => "the server reported success where a failure was expected",
        ErrorCode::QueueNotFound => "the queue does not exist",
        ErrorCode::MessageNotFound => {
            "the message is not leased to this connection (already acked, expired or unknown)"
        }
        ErrorCode::QueueAlreadyExists => "a queue with that name already exists",
        ErrorCode::LuaCompilationError => "the Lua script does not compile",
        ErrorCode::StorageError => "the server's storage failed; see the server log",
        ErrorCode::NotADLQ => "the queue is not a dead-letter queue (its name must end in .dlq)",
        ErrorCode::ParentQueueNotFound => {
            "the parent queue of that dead-letter queue does not exist"
        }
        ErrorCode::InvalidConfigValue => "the value is not valid for that key",
        ErrorCode::ChannelFull => "the server is overloaded; try again shortly",
        ErrorCode::Unauthorized => "the server rejected the API key (missing, unknown or expired)",
        ErrorCode::Forbidden => "the API key lacks the permission for this operation",
        ErrorCode::NotLeader => "this server node does not lead that queue",
        ErrorCode::UnsupportedVersion => "the server does not speak protocol version 1",
        ErrorCode::InvalidFrame => "the server could not decode the request",
        ErrorCode::ApiKeyNotFound => "no API key has that id",
        ErrorCode::NodeNotReady => "the server node is not ready yet",
        ErrorCode::InternalError => "the server reported an internal error; see the server log",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_sentence() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = phrase(*code);
            assert!(!text.is_empty());
            assert!(seen.insert(text), "{code} repeats {text:?}");
        }
    }

    #[test]
    fn server_text_wins_over_the_phrase() {
        let error = CliError::server(ErrorCode::InternalError, "API keys are not supported");
        assert_eq!(error.to_string(), "API keys are not supported");
        let error = CliError::server(ErrorCode::ChannelFull, "");
        assert_eq!(error.to_string(), phrase(ErrorCode::ChannelFull));
    }
}
