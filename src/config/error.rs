//! `ConfigError`: everything that can be wrong with the configuration, each naming where the
//! bad value came from (file and line, environment variable, or flag).

use std::path::PathBuf;

/// Why the configuration could not be loaded. The messages are written for operators.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {} (given with --config) does not exist", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}, line {line}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What the parser says.
        message: String,
    },
    /// A section that does not exist.
    #[error("{}, line {line}: unknown section `{section}`; valid sections: {valid}", path.display())]
    UnknownSection {
        /// The file.
        path: PathBuf,
        /// 1-based line of the section name.
        line: usize,
        /// The unknown name.
        section: String,
        /// The valid section names, comma-separated.
        valid: String,
    },
    /// A key that its section does not have.
    #[error(
        "{}, line {line}: unknown key `{section}.{key}`; valid keys in [{section}]: {valid}",
        path.display()
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The section.
        section: String,
        /// The unknown key (dotted if nested).
        key: String,
        /// The valid keys of the section, comma-separated.
        valid: String,
    },
    /// A key whose value has the wrong type or is out of range.
    #[error("{}, line {line}: bad value for `{key}`: {message}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// `section.key`, or the section when the whole section is malformed.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable with a value that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line flag with a value that does not parse.
    #[error("flag {flag} {value:?} is invalid: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// Auth was required but no bootstrap key was given.
    #[error(
        "authentication is required by {by}, but no bootstrap API key is configured; \
         set [auth] bootstrap_apikey in fila.toml or FILA_BOOTSTRAP_APIKEY"
    )]
    AuthRequired {
        /// `--require-auth` or `[auth] in <file> (required = true)`.
        by: String,
    },
    /// A bootstrap key no client could present.
    #[error("the bootstrap API key from {from} cannot be used: {problem}")]
    BadBootstrapKey {
        /// `FILA_BOOTSTRAP_APIKEY` or `[auth] in <file> bootstrap_apikey`.
        from: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// `[tls]` without a certificate or key.
    #[error("{origin} has no {missing}: TLS needs both cert_file and key_file (PEM paths)")]
    TlsIncomplete {
        /// `[tls] in <file>`.
        origin: String,
        /// The missing key.
        missing: &'static str,
    },
}
