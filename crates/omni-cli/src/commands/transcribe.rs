//! `omni transcribe FILE...`: speech to text with Whisper.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use omni::encoder::whisper::Whisper;
use omni::modality::audio::{SAMPLE_RATE, load_mono};
use omni::tasks::transcribe::{Task, TranscribeOptions, TranscriptFormat, transcribe_samples};

/// Arguments of `omni transcribe`.
#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// Audio files to transcribe (wav, flac, mp3, ogg; any sample rate, mono or stereo).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Whisper model: a catalogue name (whisper-tiny.en, whisper-base) or a directory with a
    /// CTranslate2 model.bin, tokenizer.json and config.json.
    #[arg(long, short, default_value = "whisper-tiny.en")]
    pub model: String,

    /// Beam size (1 = greedy decoding).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: u16,

    /// Spoken language code (en, fr, de, …); detected when omitted (multilingual models).
    #[arg(long, short)]
    pub language: Option<String>,

    /// Transcribe, or translate into English (multilingual models).
    #[arg(long, value_enum, default_value_t = TaskArg::Transcribe)]
    pub task: TaskArg,

    /// Decode at temperature 0 only (no sampling fallback): deterministic output.
    #[arg(long)]
    pub no_fallback: bool,

    /// Print JSON (language, duration, text, timed segments).
    #[arg(long, group = "format")]
    pub json: bool,
    /// Print SubRip (.srt) subtitles.
    #[arg(long, group = "format")]
    pub srt: bool,
    /// Print WebVTT (.vtt) subtitles.
    #[arg(long, group = "format")]
    pub vtt: bool,
    /// Print plain text (the default).
    #[arg(long, group = "format")]
    pub text: bool,

    /// Compute threads (default: the number of physical cores).
    #[arg(long, short = 't', value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Print the model load time and each file's transcription time to stderr.
    #[arg(long)]
    pub timings: bool,
}

/// `--task`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TaskArg {
    Transcribe,
    Translate,
}

impl TranscribeArgs {
    fn format(&self) -> TranscriptFormat {
        if self.json {
            TranscriptFormat::Json
        } else if self.srt {
            TranscriptFormat::Srt
        } else if self.vtt {
            TranscriptFormat::Vtt
        } else {
            TranscriptFormat::Text
        }
    }
}

/// Sets the compute thread count before any thread pool starts.
pub fn set_threads(threads: u16) {
    // SAFETY: called at the start of the command, before the model or any thread pool is
    // created, while the process has a single thread.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// Runs `omni transcribe`.
pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        set_threads(threads);
    }
    // The model loads after the first file decodes, so bad input fails fast.
    let mut model: Option<Whisper> = None;
    let opts = TranscribeOptions {
        language: args.language.clone(),
        task: match args.task {
            TaskArg::Transcribe => Task::Transcribe,
            TaskArg::Translate => Task::Translate,
        },
        beam_size: args.beam_size as usize,
        temperatures: if args.no_fallback {
            vec![0.0]
        } else {
            TranscribeOptions::default().temperatures
        },
        ..TranscribeOptions::default()
    };
    let format = args.format();
    let several = args.files.len() > 1;
    let stdout = std::io::stdout();
    for file in &args.files {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(file.display().to_string());
        let start = Instant::now();
        let mut load_secs = 0.0;
        let samples = load_mono(file, SAMPLE_RATE)?;
        let model = match &mut model {
            Some(model) => model,
            empty => {
                let load_start = Instant::now();
                let dir = omni::models::resolve(&args.model)?;
                let loaded = Whisper::load(&dir)
                    .with_context(|| format!("cannot load Whisper model `{}`", args.model))?;
                load_secs = load_start.elapsed().as_secs_f64();
                if args.timings {
                    eprintln!("timing: model load {load_secs:.3} s");
                }
                empty.insert(loaded)
            }
        };
        let result = transcribe_samples(model, &samples, &opts, &mut |p| {
            if p.total > 0.0 {
                bar.set_position((1000.0 * p.done / p.total) as u64);
            }
        });
        bar.finish_and_clear();
        let transcript = result?;
        if args.timings {
            eprintln!(
                "timing: {}: {:.2} s of audio in {:.3} s (including decoding the file)",
                file.display(),
                transcript.duration,
                start.elapsed().as_secs_f64() - load_secs
            );
        }
        let mut out = stdout.lock();
        let rendered = transcript.render(format);
        if several && format == TranscriptFormat::Text {
            write!(out, "{}: {rendered}", file.display())?;
        } else {
            out.write_all(rendered.as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}
