//! Argument structs and the command each one runs.

mod ask;
mod bench;
mod caption;
mod chat;
mod classify;
mod data;
mod embed;
mod eval;
mod generate;
mod index;
mod models;
mod search;
mod serve;
mod similarity;
mod speak;
mod train;
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
    /// Chat with a language model, one message per line on stdin (with images or audio
    /// through a media → LLM model).
    Chat(chat::ChatArgs),
    /// List, fetch, inspect and remove models in the local cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Transcribe speech in audio files with Whisper.
    Transcribe(transcribe::TranscribeArgs),
    /// Speak text aloud with Kokoro-82M (to a wav/flac/pcm file or a pipe).
    Speak(speak::SpeakArgs),
    /// List the text-to-speech voices (and the OpenAI voice names mapped to them).
    Voices(speak::VoicesArgs),
    /// Answer a question about a recording (transcribed, then asked to a language model,
    /// or through an audio → LLM model) or an image (through an image → LLM model).
    Ask(ask::AskArgs),
    /// Describe images with an image → LLM model (a trained projector into the LLM).
    Caption(caption::CaptionArgs),
    /// Embed images or texts in one image–text space (MiniLM by default, or CLIP/SigLIP).
    #[command(subcommand)]
    Embed(embed::EmbedCommand),
    /// Build and inspect the search index of your images and text files.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// Search the index with a text or an image.
    Search(search::SearchArgs),
    /// Zero-shot image classification: which of the given labels fits each image.
    Classify(classify::ClassifyArgs),
    /// Cosine similarity of a text or image with other texts or images.
    Similarity(similarity::SimilarityArgs),
    /// Train the alignment parts: the image→text aligner, the projectors that feed images
    /// or audio to an LLM.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Measure an image–text space on a labelled dataset, or a media → LLM model on a
    /// manifest.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Write training data (synthetic scenes, Fashion-MNIST, spoken sentences) as media
    /// files + JSONL manifests.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Serve the models over an OpenAI-compatible HTTP API, with a search-and-chat page.
    Serve(serve::ServeArgs),
    /// Time omni's side of a benchmark row (scripts/bench.py runs it next to the peers).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Models(command) => models::run(command),
        Command::Transcribe(args) => transcribe::run(args),
        Command::Speak(args) => speak::run(args),
        Command::Voices(args) => speak::run_voices(args),
        Command::Ask(args) => ask::run(args),
        Command::Caption(args) => caption::run(args),
        Command::Embed(command) => embed::run(command),
        Command::Index(command) => index::run(command),
        Command::Search(args) => search::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Similarity(args) => similarity::run(args),
        Command::Train(command) => train::run(command),
        Command::Eval(command) => eval::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Data(command) => data::run(command),
        Command::Bench(command) => bench::run(command),
    }
}
