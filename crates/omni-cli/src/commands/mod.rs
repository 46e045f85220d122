//! Argument structs and the command each one runs.

use clap::{Parser, Subcommand};

pub mod transcribe;

/// omni: run multimodal models on your own machine.
#[derive(Debug, Parser)]
#[command(name = "omni", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcribe speech in audio files with Whisper.
    Transcribe(transcribe::TranscribeArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Transcribe(args) => transcribe::run(args),
    }
}
