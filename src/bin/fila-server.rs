//! `fila-server`: the broker process. Parses the flags, sets up logging, loads the
//! configuration and runs the server; prints a one-paragraph error and exits 1 when it cannot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: fjall's memtables and the broker's per-message
/// allocations made malloc the largest single cost of a shard under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use fila::config::{Config, Flags};

/// Flags win over `FILA_*` environment variables, which win over the config file.
#[derive(Debug, Parser)]
#[command(name = "fila-server", version, about = "The Fila message broker")]
struct Args {
    /// Config file (must exist). Default: ./fila.toml, else /etc/fila/fila.toml, else defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:5555 (overrides server.listen_addr).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory (overrides FILA_DATA_DIR; default ./data).
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// Number of shards (overrides server.shards; default: recorded count, else CPUs).
    #[arg(long, value_name = "N")]
    shards: Option<u64>,
    /// Pin each shard to its own CPU (overrides server.pin_cores).
    #[arg(long, overrides_with = "no_pin_cores")]
    pin_cores: bool,
    /// Do not pin shards to CPUs (for tests and shared machines).
    #[arg(long, overrides_with = "pin_cores")]
    no_pin_cores: bool,
    /// Refuse to start unless a bootstrap API key is configured (auth on).
    #[arg(long)]
    require_auth: bool,
}

impl Args {
    fn flags(&self) -> Flags {
        let pin_cores = match (self.pin_cores, self.no_pin_cores) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Flags {
            config: self.config.clone(),
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            shards: self.shards,
            pin_cores,
            require_auth: self.require_auth,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    fila::logging::init();
    let outcome = Config::load(&args.flags())
        .map_err(fila::error::ServerError::from)
        .and_then(|config| fila::server::run(&config));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("fila-server: error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
