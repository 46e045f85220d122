//! `omni chat`: an interactive, multi-turn conversation read line by line from stdin.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use omni::tasks::chat::ChatSession;
use omni::tasks::interleave::MediaKind;
use omni::tasks::mllm::MllmSession;

use super::ask::load_mllm;
use super::generate::{ModelArgs, SamplingArgs};

/// Chat with a language model: one message per line on stdin (`/reset` starts over,
/// `/exit` or end of input quits); replies stream to stdout. With `--mllm`, `/image PATH`
/// (or `/audio PATH` for an audio model) attaches a file to the next message.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Chat with an image/audio → LLM model (see `omni train mllm`) instead: `/image PATH`
    /// or `/audio PATH` attaches a file to your next message.
    #[arg(long, value_name = "NAME")]
    pub mllm: Option<String>,
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
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    if interactive {
        let image_help = match &mllm {
            Some(m) if m.media_kind() == MediaKind::Audio => ", /audio PATH to attach a recording",
            Some(_) => ", /image PATH to attach an image",
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
        let result = session.send(message, &mut |text| {
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
            Ok(_) => writeln!(stdout)?,
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
