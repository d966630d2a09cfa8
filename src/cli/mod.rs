//! The `fila` CLI: admin and debugging commands over the wire protocol (`fila-wire` on a
//! blocking `TcpStream`, optionally inside rustls). `args` is the command line, `client` the
//! connection, `tls` the TLS client set-up and its error sentences, `commands` the
//! request/output of each command, `table` the aligned tables, `top` the live view, and `error`
//! the single error type whose sentence is printed as `Error: <sentence>`.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod table;
pub mod tls;
pub mod top;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
pub use error::CliError;

/// Runs `fila` with the process arguments; the exit code for `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A closed stdout (e.g. `fila queue list | head -1`) is not worth a message.
            if let CliError::Output(io) = &error
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "Error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line, writing the output to stdout.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let mut target = client::Target::new(&cli.global.addr, cli.global.api_key.clone());
    if let Some(options) = cli.global.tls_options() {
        // Certificate files are read (and their problems reported) before any connection.
        target = target.with_tls(tls::client_config(&options)?);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    commands::run(cli.command, &target, cli.global.output, &mut out)?;
    out.flush()?;
    Ok(())
}
