//! The `fila-bench` binary: parse the command line, run it, print `Error: ...` and exit 1 on
//! failure.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = fila_bench::cli::Cli::parse();
    match fila_bench::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
