//! Argument structs and the command each one runs.

mod ask;
mod chat;
mod embed;
mod generate;
mod models;
mod transcribe;

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
    /// Continue a prompt with a language model, streaming the text.
    Generate(generate::GenerateArgs),
    /// Chat with a language model, one message per line on stdin.
    Chat(chat::ChatArgs),
    /// List, fetch, inspect and remove models in the local cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Transcribe speech in audio files with Whisper.
    Transcribe(transcribe::TranscribeArgs),
    /// Answer a question about a recording: transcribe it, then ask a language model.
    Ask(ask::AskArgs),
    /// Embed texts (or images) as vectors.
    #[command(subcommand)]
    Embed(embed::EmbedCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Models(command) => models::run(command),
        Command::Transcribe(args) => transcribe::run(args),
        Command::Ask(args) => ask::run(args),
        Command::Embed(command) => embed::run(command),
    }
}
