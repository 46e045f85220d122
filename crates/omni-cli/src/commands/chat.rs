//! `omni chat`: an interactive, multi-turn conversation read line by line from stdin.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use omni::tasks::chat::ChatSession;
use omni::tasks::vlm::VlmSession;

use super::ask::load_vlm;
use super::generate::{ModelArgs, SamplingArgs};

/// Chat with a language model: one message per line on stdin (`/reset` starts over,
/// `/exit` or end of input quits); replies stream to stdout. With `--vlm`, `/image PATH`
/// attaches an image to the next message.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Chat with an image → LLM model (see `omni train vlm`) instead: `/image PATH`
    /// attaches an image to your next message.
    #[arg(long, value_name = "NAME")]
    pub vlm: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// A text chat or an image chat.
enum Session<'m> {
    Text(Box<ChatSession<'m>>),
    Vision(VlmSession<'m>),
}

impl Session<'_> {
    fn reset(&mut self) {
        match self {
            Session::Text(s) => s.reset(),
            Session::Vision(s) => s.reset(),
        }
    }

    fn send(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> omni::Result<omni::llm::Generation> {
        match self {
            Session::Text(s) => s.send(message, on_text),
            Session::Vision(s) => s.send(message, on_text),
        }
    }
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let options = args.sampling.options()?;
    let vlm = args.vlm.as_deref().map(load_vlm).transpose()?;
    let llm = match &vlm {
        Some(_) => None,
        None => Some(args.model.load()?),
    };
    let (mut session, name) = match (&vlm, &llm) {
        (Some(vlm), _) => {
            if args.system.is_some() {
                eprintln!(
                    "note: the image → LLM model keeps the system prompt it was trained with"
                );
            }
            (
                Session::Vision(VlmSession::new(vlm, options, args.model.context)),
                args.vlm.clone().unwrap_or_default(),
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
        let image_help = if vlm.is_some() {
            ", /image PATH to attach an image"
        } else {
            ""
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
        if let Some(path) = message.trim().strip_prefix("/image") {
            let path = path.trim();
            match &mut session {
                Session::Vision(s) if !path.is_empty() => match s.attach(path.as_ref()) {
                    Ok(()) => eprintln!("(image attached: {path})"),
                    Err(e) => eprintln!("error: {e}"),
                },
                Session::Vision(_) => eprintln!("error: /image needs a file path"),
                Session::Text(_) => {
                    eprintln!("error: images need an image → LLM model: start with --vlm NAME")
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
