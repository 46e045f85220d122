//! `omni chat`: an interactive, multi-turn conversation read line by line from stdin.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use omni::tasks::chat::ChatSession;

use super::generate::{ModelArgs, SamplingArgs};

/// Chat with a language model: one message per line on stdin (`/reset` starts over,
/// `/exit` or end of input quits); replies stream to stdout.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let options = args.sampling.options()?;
    let llm = args.model.load()?;
    let mut session = ChatSession::new(&llm, args.system.clone(), options, args.model.context);
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    if interactive {
        eprintln!(
            "Chatting with {} (/reset to start over, /exit to quit).",
            llm.path().display()
        );
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
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
