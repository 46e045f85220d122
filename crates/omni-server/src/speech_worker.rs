//! The text-to-speech worker: one thread that loads Kokoro on its first job and speaks
//! one request at a time (ONNX Runtime already uses every core), streaming the encoded
//! audio to the handler chunk by chunk.

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use axum::body::Bytes;
use omni::generator::speech::{Kokoro, SpeechOptions};
use omni::modality::audio::AudioFormat;
use omni::tasks::speak::speak_to;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ApiResult};
use crate::queue::{Queue, Ticket};

/// Encoded audio as it is produced; an `Err` ends the body early.
pub type AudioChunks = mpsc::Receiver<std::io::Result<Bytes>>;

/// One text to speak.
pub struct SpeechJob {
    pub text: String,
    pub options: SpeechOptions,
    pub format: AudioFormat,
    pub deadline: Instant,
    /// `Ok` when the input is accepted and audio starts flowing on `audio`; the error
    /// otherwise (nothing to say, unknown voice, model unavailable).
    pub started: oneshot::Sender<ApiResult<()>>,
    pub audio: mpsc::Sender<std::io::Result<Bytes>>,
    pub ticket: Ticket,
}

/// Starts the worker of the text-to-speech model `model`.
pub fn spawn(model: String, max_queue: usize) -> Queue<SpeechJob> {
    let (queue, rx) = Queue::new("speech", max_queue);
    std::thread::Builder::new()
        .name("omni-speech".into())
        .spawn(move || run(&model, rx))
        .expect("spawning the speech worker thread");
    queue
}

fn run(model: &str, rx: Receiver<SpeechJob>) {
    let mut kokoro: Option<Result<Kokoro, ApiError>> = None;
    while let Ok(job) = rx.recv() {
        if job.started.is_closed() || Instant::now() > job.deadline {
            continue;
        }
        let loaded = kokoro.get_or_insert_with(|| {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            omni::models::resolve(model)
                .and_then(|dir| Kokoro::load(&dir, threads))
                .map_err(|e| {
                    ApiError::unavailable(format!("cannot load the speech model `{model}`: {e}"))
                })
        });
        let kokoro = match loaded {
            Ok(k) => k,
            Err(e) => {
                let _ = job.started.send(Err(e.clone()));
                continue;
            }
        };
        let mut out = ChannelWriter {
            started: Some(job.started),
            audio: job.audio,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            speak_to(
                kokoro,
                &job.text,
                &job.options,
                job.format,
                &mut out,
                &mut |_| {},
            )
        }));
        let result = match result {
            Ok(r) => r.map(|_| ()).map_err(ApiError::from),
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the speech model failed on this text",
            )),
        };
        match (out.started.take(), result) {
            (Some(started), result) => {
                let _ = started.send(result);
            }
            (None, Err(error)) => {
                let _ = out
                    .audio
                    .blocking_send(Err(std::io::Error::other(error.message)));
            }
            (None, Ok(())) => {}
        }
    }
}

/// Sends written bytes to the handler; the first write also tells it the audio started.
struct ChannelWriter {
    started: Option<oneshot::Sender<ApiResult<()>>>,
    audio: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.audio
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
