//! Argument structs and the command each one runs.

mod models;

use clap::{Parser, Subcommand};

/// omni: run multimodal models on your own machine.
#[derive(Debug, Parser)]
#[command(name = "omni", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, fetch, inspect and remove models in the local cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Models(command) => models::run(command),
    }
}
