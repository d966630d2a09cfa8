//! Log output of `fila-server`: tracing to stderr, filtered by `RUST_LOG` (default
//! [`DEFAULT_FILTER`]: `info`, with the storage engine's routine messages at `warn`), with
//! records of the `log` crate (glommio, fjall) bridged in. Colour only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

/// Installs the subscriber. Call once, first thing in `main`.
pub fn init() {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => (
            EnvFilter::new(DEFAULT_FILTER),
            std::env::var("RUST_LOG").ok().map(|value| (value, error)),
        ),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if let Err(error) = installed {
        eprintln!("fila-server: logging not initialised: {error}");
    }
    if let Some((value, error)) = bad_filter.filter(|(value, _)| !value.is_empty()) {
        tracing::warn!(%error, "RUST_LOG={value:?} is not a valid filter; logging at the default level");
    }
}
