//! The Whisper worker: one thread that loads the model on its first job and transcribes
//! one recording at a time (each already uses every core).

use std::sync::mpsc::Receiver;
use std::time::Instant;

use axum::http::StatusCode;
use omni::encoder::whisper::Whisper;
use omni::tasks::transcribe::{TranscribeOptions, Transcript, transcribe_samples};
use tokio::sync::oneshot;

use crate::error::{ApiError, ApiResult};
use crate::queue::{Queue, Ticket};

/// One recording to transcribe: 16 kHz mono samples.
pub struct TranscribeJob {
    pub samples: Vec<f32>,
    pub options: TranscribeOptions,
    pub deadline: Instant,
    pub reply: oneshot::Sender<ApiResult<Transcript>>,
    pub ticket: Ticket,
}

/// Starts the worker of the Whisper model `model`.
pub fn spawn(model: String, max_queue: usize) -> Queue<TranscribeJob> {
    let (queue, rx) = Queue::new("transcription", max_queue);
    std::thread::Builder::new()
        .name("omni-whisper".into())
        .spawn(move || run(&model, rx))
        .expect("spawning the transcription worker thread");
    queue
}

fn run(model: &str, rx: Receiver<TranscribeJob>) {
    let mut whisper: Option<Result<Whisper, ApiError>> = None;
    while let Ok(job) = rx.recv() {
        if job.reply.is_closed() || Instant::now() > job.deadline {
            continue;
        }
        let loaded = whisper.get_or_insert_with(|| {
            omni::models::resolve(model)
                .and_then(|dir| Whisper::load(&dir))
                .map_err(|e| {
                    ApiError::unavailable(format!("cannot load the Whisper model `{model}`: {e}"))
                })
        });
        let result = match loaded {
            Ok(w) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                transcribe_samples(w, &job.samples, &job.options, &mut |_| {})
            }))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the Whisper model failed on this recording",
                )
            })
            .and_then(|r| r.map_err(ApiError::from)),
            Err(e) => Err(e.clone()),
        };
        let _ = job.reply.send(result);
    }
}
