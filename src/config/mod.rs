//! Configuration of `fila-server`: where the file is found, and how flags, environment, file and
//! defaults combine (flags > `FILA_*` environment > file > defaults). The file format itself is
//! in `sections` (types and defaults), `file` (parsing and error lines) and `schema` (key lists).

mod bounded;
mod error;
mod file;
pub mod schema;
mod sections;

use std::path::{Path, PathBuf};

pub use bounded::Bounded;
pub use error::ConfigError;
pub use file::parse as parse_file;
pub use sections::{
    AuthSection, Durability, FileConfig, ListenAddr, LuaSection, SchedulerSection, ServerSection,
    ShardCount, StorageSection, TelemetrySection, TlsSection,
};

/// Environment variable: data directory.
pub const ENV_DATA_DIR: &str = "FILA_DATA_DIR";
/// Environment variable: the bootstrap superadmin API key (enables auth; wins over the file).
pub const ENV_BOOTSTRAP_APIKEY: &str = "FILA_BOOTSTRAP_APIKEY";
/// Environment variable: listen address (overrides `server.listen_addr`).
pub const ENV_LISTEN_ADDR: &str = "FILA_LISTEN_ADDR";
/// Environment variable: shard count (overrides `server.shards`).
pub const ENV_SHARDS: &str = "FILA_SHARDS";
/// Every environment variable the server reads besides `RUST_LOG`.
pub const ENV_VARS: [&str; 4] = [
    ENV_DATA_DIR,
    ENV_BOOTSTRAP_APIKEY,
    ENV_LISTEN_ADDR,
    ENV_SHARDS,
];

/// Data directory when neither flag nor environment names one (relative to the working dir).
pub const DEFAULT_DATA_DIR: &str = "data";
/// Config files tried, in order, when `--config` is not given.
pub const SEARCH_PATHS: [&str; 2] = ["fila.toml", "/etc/fila/fila.toml"];

/// Values given on the command line; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config PATH`: this file, which must exist.
    pub config: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--data-dir PATH`.
    pub data_dir: Option<PathBuf>,
    /// `--shards N`.
    pub shards: Option<u64>,
    /// `--pin-cores` / `--no-pin-cores`.
    pub pin_cores: Option<bool>,
    /// `--require-auth`: refuse to start without a bootstrap API key.
    pub require_auth: bool,
}

/// API-key authentication, after precedence (`FILA_BOOTSTRAP_APIKEY` > `[auth]`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The bootstrap superadmin key; `None` = authentication off.
    pub bootstrap_apikey: Option<String>,
    /// Start only with authentication on (`--require-auth` or `[auth] required = true`).
    pub required: bool,
}

impl AuthConfig {
    /// True when connections must present an API key.
    pub fn enabled(&self) -> bool {
        self.bootstrap_apikey.is_some()
    }
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled())
            .field("required", &self.required)
            .finish()
    }
}

/// TLS on the client port: certificate chain and key, and a CA that makes client certificates
/// mandatory (mTLS). Paths are read at start and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Server private key (PEM).
    pub key_file: PathBuf,
    /// CA bundle for client certificates (PEM); `Some` = mTLS required.
    pub ca_file: Option<PathBuf>,
}

/// The effective configuration after precedence.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file that was read; `None` = defaults only.
    pub file: Option<PathBuf>,
    /// Where the shards keep their data.
    pub data_dir: PathBuf,
    /// `[server]`, with flag and environment overrides applied.
    pub server: ServerSection,
    /// `[scheduler]`.
    pub scheduler: SchedulerSection,
    /// `[lua]`.
    pub lua: LuaSection,
    /// `[telemetry]`.
    pub telemetry: TelemetrySection,
    /// `[storage]`.
    pub storage: StorageSection,
    /// Keys of an ignored `[cluster]` section (the caller warns about them).
    pub ignored_cluster_keys: Vec<String>,
    /// API-key authentication.
    pub auth: AuthConfig,
    /// TLS; `None` = plaintext.
    pub tls: Option<TlsConfig>,
}

impl Config {
    /// Loads the configuration from the process environment and the standard file locations.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        // A key that is not UTF-8 cannot be sent in a Handshake: refuse rather than read it as
        // unset (which would run without authentication).
        if std::env::var_os(ENV_BOOTSTRAP_APIKEY).is_some_and(|key| key.to_str().is_none()) {
            return Err(ConfigError::BadBootstrapKey {
                from: ENV_BOOTSTRAP_APIKEY.to_owned(),
                problem: "it is not valid UTF-8",
            });
        }
        let search: Vec<PathBuf> = SEARCH_PATHS.iter().map(PathBuf::from).collect();
        Config::load_with(flags, &|name| std::env::var(name).ok(), &search)
    }

    /// [`Config::load`] with the environment and the search paths given (for tests).
    pub fn load_with(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        search: &[PathBuf],
    ) -> Result<Config, ConfigError> {
        let (file, parsed) = match find_file(flags.config.as_deref(), search)? {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let parsed = parse_file(&path, &text)?;
                (Some(path), parsed)
            }
            None => (None, FileConfig::default()),
        };
        let auth = auth_config(file.as_deref(), &parsed, env, flags)?;
        let tls = tls_config(file.as_deref(), &parsed)?;
        let mut server = parsed.server;
        apply_env(&mut server, env)?;
        apply_flags(&mut server, flags)?;
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| {
                env(ENV_DATA_DIR)
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Config {
            file,
            data_dir,
            server,
            scheduler: parsed.scheduler,
            lua: parsed.lua,
            telemetry: parsed.telemetry,
            storage: parsed.storage,
            ignored_cluster_keys: parsed
                .cluster
                .map(|table| table.keys().cloned().collect())
                .unwrap_or_default(),
            auth,
            tls,
        })
    }
}

/// `--config` must exist; otherwise the first search path that exists, or none.
fn find_file(flag: Option<&Path>, search: &[PathBuf]) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = flag {
        return if path.exists() {
            Ok(Some(path.to_path_buf()))
        } else {
            Err(ConfigError::Missing {
                path: path.to_path_buf(),
            })
        };
    }
    Ok(search.iter().find(|path| path.is_file()).cloned())
}

/// `FILA_BOOTSTRAP_APIKEY` wins over `[auth] bootstrap_apikey`. Unlike other variables, a set
/// but empty `FILA_BOOTSTRAP_APIKEY` (or an empty `bootstrap_apikey`) refuses the start: it is
/// what `FILA_BOOTSTRAP_APIKEY=$UNSET_VAR` produces, and reading it as "no key" would run the
/// server open. Asked to require auth without a key, the start is refused.
fn auth_config(
    file: Option<&Path>,
    parsed: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &Flags,
) -> Result<AuthConfig, ConfigError> {
    let section = parsed.auth.clone().unwrap_or_default();
    let (bootstrap_apikey, from) = match env(ENV_BOOTSTRAP_APIKEY) {
        Some(key) => (Some(key), ENV_BOOTSTRAP_APIKEY.to_owned()),
        None => (
            section.bootstrap_apikey,
            in_file(file, "auth") + " bootstrap_apikey",
        ),
    };
    if let Some(key) = &bootstrap_apikey {
        check_bootstrap_key(key)
            .map_err(|problem| ConfigError::BadBootstrapKey { from, problem })?;
    }
    let required = flags.require_auth || section.required;
    if required && bootstrap_apikey.is_none() {
        let by = if flags.require_auth {
            "--require-auth".to_owned()
        } else {
            in_file(file, "auth") + " (required = true)"
        };
        return Err(ConfigError::AuthRequired { by });
    }
    Ok(AuthConfig {
        bootstrap_apikey,
        required,
    })
}

/// A bootstrap key clients can actually send: not blank, no surrounding whitespace (a pasted
/// newline would lock everyone out), no control characters, at most 4 KiB.
fn check_bootstrap_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty (unset it to run without authentication)");
    }
    if key.trim().is_empty() {
        return Err("it is blank");
    }
    if key.trim() != key {
        return Err("it has leading or trailing whitespace");
    }
    if key.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    // Handshake keys over this length are refused unread, so a longer one could never log in.
    if key.len() > crate::auth::API_KEY_BYTES_MAX {
        return Err("it is longer than 4096 bytes");
    }
    Ok(())
}

/// `[tls]` needs both `cert_file` and `key_file`; `ca_file` is optional.
fn tls_config(file: Option<&Path>, parsed: &FileConfig) -> Result<Option<TlsConfig>, ConfigError> {
    let Some(section) = &parsed.tls else {
        return Ok(None);
    };
    match (&section.cert_file, &section.key_file) {
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsConfig {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            ca_file: section.ca_file.clone(),
        })),
        (cert, _) => Err(ConfigError::TlsIncomplete {
            origin: in_file(file, "tls"),
            missing: if cert.is_none() {
                "cert_file"
            } else {
                "key_file"
            },
        }),
    }
}

fn in_file(file: Option<&Path>, section: &str) -> String {
    match file {
        Some(path) => format!("[{section}] in {}", path.display()),
        None => format!("[{section}]"),
    }
}

/// `FILA_LISTEN_ADDR` and `FILA_SHARDS` override the file (empty = unset).
fn apply_env(
    server: &mut ServerSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let bad = |name: &'static str, value: &str, message: String| ConfigError::Env {
        name,
        value: value.to_owned(),
        message,
    };
    if let Some(value) = env(ENV_LISTEN_ADDR).filter(|value| !value.is_empty()) {
        server.listen_addr =
            ListenAddr::parse(&value).map_err(|message| bad(ENV_LISTEN_ADDR, &value, message))?;
    }
    if let Some(value) = env(ENV_SHARDS).filter(|value| !value.is_empty()) {
        let shards = parse_shards(&value).map_err(|message| bad(ENV_SHARDS, &value, message))?;
        server.shards = Some(shards);
    }
    Ok(())
}

/// Flags override everything.
fn apply_flags(server: &mut ServerSection, flags: &Flags) -> Result<(), ConfigError> {
    if let Some(value) = &flags.listen {
        server.listen_addr = ListenAddr::parse(value).map_err(|message| ConfigError::Flag {
            flag: "--listen",
            value: value.clone(),
            message,
        })?;
    }
    if let Some(value) = flags.shards {
        let shards = ShardCount::new(value).map_err(|message| ConfigError::Flag {
            flag: "--shards",
            value: value.to_string(),
            message,
        })?;
        server.shards = Some(shards);
    }
    if let Some(pin) = flags.pin_cores {
        server.pin_cores = pin;
    }
    Ok(())
}

fn parse_shards(text: &str) -> Result<ShardCount, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a whole number of shards, e.g. 4".to_owned())?;
    ShardCount::new(value)
}

#[cfg(test)]
mod tests;
