//! `fila`: the admin and debugging CLI of the Fila broker. Everything lives in `fila::cli`.

fn main() -> std::process::ExitCode {
    fila::cli::main()
}
