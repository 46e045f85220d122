//! `omni speak TEXT` and `omni voices`: text to speech with Kokoro-82M.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use omni::generator::speech::{
    DEFAULT_VOICE, Kokoro, OPENAI_VOICES, SpeechChunk, SpeechOptions, map_openai_voice,
};
use omni::modality::audio::{AudioFormat, patch_wav_sizes};
use omni::tasks::speak::{SpeechSummary, speak_to};

/// The text-to-speech model used by default.
pub const TTS_MODEL: &str = "kokoro-82m";

/// Arguments of `omni speak`.
#[derive(Debug, Args)]
pub struct SpeakArgs {
    /// The text to speak; read from stdin when omitted. Long texts are spoken sentence by
    /// sentence and streamed.
    pub text: Option<String>,

    /// Output file (`.wav`, `.flac` or `.pcm`); `-` for stdout. Default: stdout when it is
    /// a pipe, else `speech.wav`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    /// Voice: a name from `omni voices`, an OpenAI name (alloy, echo, nova, …), or a blend
    /// such as `jf_alpha:0.7,jm_kumo:0.3`.
    #[arg(long, short, default_value = DEFAULT_VOICE)]
    pub voice: String,

    /// Speaking rate, 0.25 to 4.0.
    #[arg(long, short, default_value_t = 1.0)]
    pub speed: f32,

    /// Audio format: wav, flac or pcm (16-bit signed little-endian, 24 kHz mono).
    /// Default: the output file's extension, else wav.
    #[arg(long, short)]
    pub format: Option<String>,

    /// Text-to-speech model: a catalogue name or a model directory.
    #[arg(long, short, default_value = TTS_MODEL)]
    pub model: String,

    /// Compute threads (default: all cores).
    #[arg(long, short = 't', value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Print what was spoken (voice, duration, chunks, output) as JSON on stderr when the
    /// audio goes to stdout, else on stdout.
    #[arg(long)]
    pub json: bool,

    /// Print the Kokoro phonemes of the text instead of speaking it, one line per utterance.
    #[arg(long)]
    pub phonemes: bool,
}

/// Arguments of `omni voices`.
#[derive(Debug, Args)]
pub struct VoicesArgs {
    /// Text-to-speech model: a catalogue name or a model directory.
    #[arg(long, short, default_value = TTS_MODEL)]
    pub model: String,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni speak`.
pub fn run(args: SpeakArgs) -> anyhow::Result<()> {
    let text = match &args.text {
        Some(text) => text.clone(),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the text from stdin")?;
            text
        }
    };
    let to_stdout = match &args.output {
        Some(path) => path == Path::new("-"),
        None => !std::io::stdout().is_terminal(),
    };
    let output = match (&args.output, to_stdout) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => Some(PathBuf::from("speech.wav")),
    };
    let format = match (&args.format, &output) {
        (Some(f), _) => f.parse::<AudioFormat>()?,
        (None, Some(path)) => match path.extension().and_then(|e| e.to_str()) {
            Some(ext) => ext.parse::<AudioFormat>().with_context(|| {
                format!(
                    "{}: cannot tell the format from the extension; pass --format",
                    path.display()
                )
            })?,
            None => AudioFormat::Wav,
        },
        (None, None) => AudioFormat::Wav,
    };
    let kokoro = load_kokoro(&args.model, args.threads.map(usize::from))?;
    if args.phonemes {
        for (_, phonemes) in kokoro.phonemize(&text)? {
            println!("{phonemes}");
        }
        return Ok(());
    }
    let opts = SpeechOptions {
        voice: map_openai_voice(&args.voice).to_string(),
        speed: args.speed,
    };
    let bar = ProgressBar::new(text.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("speaking [{bar:30}] {percent}% {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if text.len() < 400 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |chunk: &SpeechChunk| {
        bar.set_length(chunk.total as u64);
        bar.set_position(chunk.done as u64);
    };
    let summary = match &output {
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            speak_to(&kokoro, &text, &opts, format, &mut out, &mut progress)?
        }
        Some(path) => speak_to_file(&kokoro, &text, &opts, format, path, &mut progress)?,
    };
    bar.finish_and_clear();
    let target = output
        .as_ref()
        .map_or("-".to_string(), |p| p.display().to_string());
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        value["output"] = target.into();
        value["format"] = format.as_str().into();
        let line = serde_json::to_string(&value)?;
        if output.is_some() {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    } else if output.is_some() {
        eprintln!(
            "{target}: {:.1} s of speech ({}, {} chunk{})",
            summary.duration,
            summary.voice,
            summary.chunks,
            if summary.chunks == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Speaks `text` into the file `path`. It is written beside the target and renamed at the
/// end, so a failure leaves no half-written file under the asked name.
pub fn speak_to_file(
    kokoro: &Kokoro,
    text: &str,
    opts: &SpeechOptions,
    format: AudioFormat,
    path: &Path,
    progress: &mut dyn FnMut(&SpeechChunk),
) -> anyhow::Result<SpeechSummary> {
    let partial = path.with_extension(format!("{}.part", format.as_str()));
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let result = speak_to(kokoro, text, opts, format, &mut file, progress).and_then(|summary| {
        if format == AudioFormat::Wav {
            patch_wav_sizes(&mut file, summary.audio_bytes)
                .map_err(|e| omni::Error::io(&partial, e))?;
        }
        Ok(summary)
    });
    drop(file);
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.into())
        }
    }
}

/// Runs `omni voices`.
pub fn run_voices(args: VoicesArgs) -> anyhow::Result<()> {
    let dir = omni::models::resolve(&args.model)?;
    let bank = Kokoro::voices_in(&dir)?;
    let names: Vec<&str> = bank.names().collect();
    if args.json {
        let aliases: serde_json::Map<String, serde_json::Value> = OPENAI_VOICES
            .iter()
            .map(|(openai, ours)| (openai.to_string(), (*ours).into()))
            .collect();
        let value = serde_json::json!({
            "model": args.model,
            "default": DEFAULT_VOICE,
            "voices": names,
            "openai_aliases": aliases,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for name in names {
        let aliases: Vec<&str> = OPENAI_VOICES
            .iter()
            .filter(|(_, ours)| *ours == name)
            .map(|(openai, _)| *openai)
            .collect();
        let default = if name == DEFAULT_VOICE {
            " (default)"
        } else {
            ""
        };
        writeln!(out, "{name}{default}\tOpenAI names: {}", aliases.join(", "))?;
    }
    writeln!(
        out,
        "Blend voices with weights, e.g. --voice jf_alpha:0.7,jm_kumo:0.3"
    )?;
    Ok(())
}

/// Loads a Kokoro model by name or directory on `threads` threads (default: all cores).
pub fn load_kokoro(model: &str, threads: Option<usize>) -> anyhow::Result<Kokoro> {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let dir = omni::models::resolve(model)?;
    Kokoro::load(&dir, threads)
        .with_context(|| format!("cannot load the text-to-speech model `{model}`"))
}
