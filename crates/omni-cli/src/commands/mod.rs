//! Argument structs and the command each one runs.

mod ask;
mod chat;
mod embed;
mod embed_sentences;
mod generate;
mod index;
mod models;
mod search;
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
    /// Embed images or texts with a CLIP or SigLIP model.
    #[command(subcommand)]
    Embed(embed::EmbedCommand),
    /// Build and inspect the search index of your images and text files.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// Search the index with a text or an image.
    Search(search::SearchArgs),
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
        Command::Index(command) => index::run(command),
        Command::Search(args) => search::run(args),
    }
}
