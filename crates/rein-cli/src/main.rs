//! The `rein` binary; everything lives in the library, see [`rein_cli::main`].

fn main() -> std::process::ExitCode {
    rein_cli::main()
}
