//! `omni`: the command-line face of the omni engine. Thin: parsing here, work in the library.

mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    tracing_subscriber::fmt()
        // symphonia logs at WARN/ERROR before returning the errors omni reports itself.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OMNI_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,symphonia_core=off,symphonia=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    omni::runtime::tune_allocator();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming the input and the cause.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
