//! `omni chat`: an interactive, multi-turn conversation read line by line from stdin.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::Args;
use omni::encoder::whisper::Whisper;
use omni::generator::speech::{DEFAULT_VOICE, Kokoro, SpeechOptions, map_openai_voice};
use omni::modality::audio::{AudioFormat, SAMPLE_RATE, load_mono};
use omni::tasks::chat::ChatSession;
use omni::tasks::interleave::MediaKind;
use omni::tasks::mllm::MllmSession;

use super::ask::load_mllm;
use super::generate::{ModelArgs, SamplingArgs};
use super::speak::{TTS_MODEL, load_kokoro, speak_to_file};

/// Chat with a language model: one message per line on stdin (`/reset` starts over,
/// `/exit` or end of input quits); replies stream to stdout. With `--mllm`, `/image PATH`
/// (or `/audio PATH` for an audio model) attaches a file to the next message. With
/// `--voice`, `/audio PATH` speaks a message (transcribed by Whisper) and every reply is
/// spoken (Kokoro) into a WAV file.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Chat with an image/audio → LLM model (see `omni train mllm`) instead: `/image PATH`
    /// or `/audio PATH` attaches a file to your next message.
    #[arg(long, value_name = "NAME")]
    pub mllm: Option<String>,
    /// Voice chat: `/audio PATH` sends a recording (transcribed with Whisper), and each
    /// reply is also spoken, to `reply-N.wav` in --reply-dir (and played with --play).
    #[arg(long)]
    pub voice: bool,
    /// The voice replies are spoken with (see `omni voices`).
    #[arg(long, default_value = DEFAULT_VOICE, requires = "voice")]
    pub speaker: String,
    /// Whisper model that transcribes `/audio` messages in voice chat.
    #[arg(long, default_value = "whisper-base", requires = "voice")]
    pub whisper: String,
    /// Where spoken replies are written.
    #[arg(long, default_value = ".", requires = "voice")]
    pub reply_dir: PathBuf,
    /// A command that plays each spoken reply, given the WAV on stdin (e.g. `aplay -q`).
    #[arg(long, value_name = "COMMAND", requires = "voice")]
    pub play: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// A text chat or an image chat.
enum Session<'m> {
    Text(Box<ChatSession<'m>>),
    Media(Box<MllmSession<'m>>),
}

impl Session<'_> {
    fn reset(&mut self) {
        match self {
            Session::Text(s) => s.reset(),
            Session::Media(s) => s.reset(),
        }
    }

    fn send(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> omni::Result<omni::llm::Generation> {
        match self {
            Session::Text(s) => s.send(message, on_text),
            Session::Media(s) => s.send(message, on_text),
        }
    }
}

/// Speech in and out for `--voice`: Whisper hears `/audio` messages, Kokoro speaks replies.
struct Voice {
    whisper: Option<Whisper>,
    kokoro: Kokoro,
    speech: SpeechOptions,
    reply_dir: PathBuf,
    play: Option<String>,
    replies: usize,
}

impl Voice {
    fn load(args: &ChatArgs, hears: bool) -> anyhow::Result<Voice> {
        let kokoro = load_kokoro(TTS_MODEL, None)?;
        let speech = SpeechOptions {
            voice: map_openai_voice(&args.speaker).to_string(),
            ..SpeechOptions::default()
        };
        kokoro.voices().resolve(&speech.voice)?;
        let whisper = if hears {
            let dir = omni::models::resolve(&args.whisper)?;
            Some(Whisper::load(&dir).with_context(|| format!("cannot load `{}`", args.whisper))?)
        } else {
            None
        };
        std::fs::create_dir_all(&args.reply_dir)
            .with_context(|| format!("cannot create {}", args.reply_dir.display()))?;
        Ok(Voice {
            whisper,
            kokoro,
            speech,
            reply_dir: args.reply_dir.clone(),
            play: args.play.clone(),
            replies: 0,
        })
    }

    /// The words spoken in a recording.
    fn hear(&self, path: &Path) -> anyhow::Result<String> {
        let whisper = self.whisper.as_ref().context("no Whisper model loaded")?;
        let samples = load_mono(path, SAMPLE_RATE)?;
        let opts = omni::tasks::transcribe::TranscribeOptions::default();
        let transcript =
            omni::tasks::transcribe::transcribe_samples(whisper, &samples, &opts, &mut |_| {})?;
        Ok(transcript.text)
    }

    /// Speaks a reply into the next `reply-N.wav` (and plays it); returns the file.
    fn say(&mut self, text: &str) -> anyhow::Result<PathBuf> {
        self.replies += 1;
        let path = self.reply_dir.join(format!("reply-{}.wav", self.replies));
        speak_to_file(
            &self.kokoro,
            text,
            &self.speech,
            AudioFormat::Wav,
            &path,
            &mut |_| {},
        )?;
        if let Some(player) = &self.play {
            play(player, &path)?;
        }
        Ok(path)
    }
}

/// Runs `player` (a command line) with the WAV file on its stdin.
fn play(player: &str, wav: &Path) -> anyhow::Result<()> {
    let mut words = player.split_whitespace();
    let program = words.next().context("--play is empty")?;
    let file = std::fs::File::open(wav)?;
    let status = Command::new(program)
        .args(words)
        .stdin(Stdio::from(file))
        .status()
        .with_context(|| format!("cannot run the player `{player}`"))?;
    anyhow::ensure!(status.success(), "the player `{player}` failed: {status}");
    Ok(())
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let options = args.sampling.options()?;
    let mllm = args.mllm.as_deref().map(load_mllm).transpose()?;
    let llm = match &mllm {
        Some(_) => None,
        None => Some(args.model.load()?),
    };
    let (mut session, name) = match (&mllm, &llm) {
        (Some(model), _) => {
            if args.system.is_some() {
                eprintln!(
                    "note: the image → LLM model keeps the system prompt it was trained with"
                );
            }
            (
                Session::Media(Box::new(MllmSession::new(
                    model,
                    options,
                    args.model.context,
                ))),
                args.mllm.clone().unwrap_or_default(),
            )
        }
        (None, Some(llm)) => (
            Session::Text(Box::new(ChatSession::new(
                llm,
                args.system.clone(),
                options,
                args.model.context,
            ))),
            llm.path().display().to_string(),
        ),
        (None, None) => anyhow::bail!("no model loaded"),
    };
    // An audio → LLM model hears `/audio` itself; a text model needs Whisper for it.
    let hears = !matches!(&mllm, Some(m) if m.media_kind() == MediaKind::Audio);
    let mut voice = args.voice.then(|| Voice::load(&args, hears)).transpose()?;
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    if interactive {
        let image_help = match &mllm {
            Some(m) if m.media_kind() == MediaKind::Audio => ", /audio PATH to attach a recording",
            Some(_) => ", /image PATH to attach an image",
            None if voice.is_some() => ", /audio PATH to send a recording",
            None => "",
        };
        eprintln!("Chatting with {name} (/reset to start over, /exit to quit{image_help}).");
    }
    let mut lines = stdin.lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let message = line.trim_end_matches('\r');
        match message.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                session.reset();
                if interactive {
                    eprintln!("(conversation reset)");
                }
                continue;
            }
            _ => {}
        }
        let heard;
        let mut message = message;
        if let (Some(v), Some(path)) = (&voice, message.trim().strip_prefix("/audio"))
            && v.whisper.is_some()
        {
            match v.hear(Path::new(path.trim())) {
                Ok(text) if !text.trim().is_empty() => {
                    eprintln!("(heard: {text})");
                    heard = text;
                    message = &heard;
                }
                Ok(_) => {
                    eprintln!("error: no speech heard in {}", path.trim());
                    continue;
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    continue;
                }
            }
        }
        let attach = ["/image", "/audio"]
            .iter()
            .find_map(|c| message.trim().strip_prefix(c));
        if let Some(path) = attach {
            let path = path.trim();
            match &mut session {
                Session::Media(s) if !path.is_empty() => match s.attach(path.as_ref()) {
                    Ok(()) => eprintln!("(image attached: {path})"),
                    Err(e) => eprintln!("error: {e}"),
                },
                Session::Media(_) => eprintln!("error: give a file path after the command"),
                Session::Text(_) => {
                    eprintln!(
                        "error: images and audio need a media → LLM model: start with --mllm NAME"
                    )
                }
            }
            continue;
        }
        let mut broken = false;
        let mut reply = String::new();
        let result = session.send(message, &mut |text| {
            reply.push_str(text);
            broken = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err();
            !broken
        });
        if broken {
            return Ok(());
        }
        match result {
            Ok(_) => {
                writeln!(stdout)?;
                if let Some(v) = &mut voice
                    && reply.chars().any(char::is_alphanumeric)
                {
                    match v.say(&reply) {
                        Ok(path) => eprintln!("(spoken: {})", path.display()),
                        Err(e) => eprintln!("error: cannot speak the reply: {e:#}"),
                    }
                }
            }
            // A conversation that outgrew the context is not fatal: say so and go on.
            Err(e @ omni::Error::ContextOverflow { .. }) => {
                eprintln!("error: {e}; /reset to start a new conversation");
            }
            Err(e @ omni::Error::InvalidInput(_)) => eprintln!("error: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
