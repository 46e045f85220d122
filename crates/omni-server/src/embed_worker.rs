//! One worker thread per embedding space. It loads the space on its first job, then
//! serves jobs in batches: every job waiting when it wakes (up to a batch's worth of
//! inputs) is embedded in one call for the texts and one for the images, so concurrent
//! clients share forward passes.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use axum::http::StatusCode;
use omni::index::Embedder;
use omni::tasks::search_space::load_space;
use tokio::sync::oneshot;

use crate::error::{ApiError, ApiResult};
use crate::media::ImageBytes;
use crate::metrics::Metrics;
use crate::queue::{Queue, Ticket};

/// Inputs gathered into one batch.
const BATCH_INPUTS: usize = 256;

/// Something to embed.
#[derive(Debug, Clone)]
pub enum EmbedInput {
    Text(String),
    Image(ImageBytes),
}

/// One request's inputs; the reply holds one vector per input, in order.
pub struct EmbedJob {
    pub inputs: Vec<EmbedInput>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<ApiResult<Vec<Vec<f32>>>>,
    pub ticket: Ticket,
}

/// Starts the worker of `space`.
pub fn spawn(space: String, max_queue: usize, metrics: Arc<Metrics>) -> Queue<EmbedJob> {
    let (queue, rx) = Queue::new("embeddings", max_queue);
    std::thread::Builder::new()
        .name(format!("omni-embed-{space}"))
        .spawn(move || run(&space, rx, &metrics))
        .expect("spawning an embedding worker thread");
    queue
}

fn run(space: &str, rx: Receiver<EmbedJob>, metrics: &Metrics) {
    let mut embedder: Option<Result<Box<dyn Embedder>, ApiError>> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut inputs = jobs[0].inputs.len();
        while inputs < BATCH_INPUTS {
            match rx.try_recv() {
                Ok(job) => {
                    inputs += job.inputs.len();
                    jobs.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let now = Instant::now();
        jobs.retain(|j| !j.reply.is_closed() && j.deadline > now);
        if jobs.is_empty() {
            continue;
        }
        let loaded = embedder.get_or_insert_with(|| {
            load_space(space).map_err(|e| {
                ApiError::unavailable(format!("cannot load the embedding model `{space}`: {e}"))
            })
        });
        match loaded {
            Ok(embedder) => {
                let results = catch(|| embed_jobs(embedder.as_ref(), &jobs));
                metrics.embedded(inputs);
                match results {
                    Ok(results) => {
                        for (job, result) in jobs.into_iter().zip(results) {
                            let _ = job.reply.send(result);
                        }
                    }
                    Err(e) => jobs
                        .into_iter()
                        .for_each(|j| drop(j.reply.send(Err(e.clone())))),
                }
            }
            Err(e) => jobs
                .into_iter()
                .for_each(|j| drop(j.reply.send(Err(e.clone())))),
        }
    }
}

fn catch<T>(f: impl FnOnce() -> T) -> ApiResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the embedding model failed on this batch",
        )
    })
}

/// Embeds all jobs' texts in one call and all their images in another; a job fails
/// alone when one of its images does.
fn embed_jobs(embedder: &dyn Embedder, jobs: &[EmbedJob]) -> Vec<ApiResult<Vec<Vec<f32>>>> {
    let texts: Vec<&str> = jobs
        .iter()
        .flat_map(|j| &j.inputs)
        .filter_map(|i| match i {
            EmbedInput::Text(t) => Some(t.as_str()),
            EmbedInput::Image(_) => None,
        })
        .collect();
    let images: Vec<_> = jobs
        .iter()
        .flat_map(|j| &j.inputs)
        .filter_map(|i| match i {
            EmbedInput::Image(b) => Some(b.source()),
            EmbedInput::Text(_) => None,
        })
        .collect();
    let text_vectors = if texts.is_empty() {
        Ok(Vec::new())
    } else {
        embedder.embed_texts(&texts).map_err(ApiError::from)
    };
    let mut text_vectors = match text_vectors {
        Ok(v) => v.into_iter(),
        Err(_) if jobs.len() > 1 => {
            // Find the job at fault: embed each alone.
            return jobs
                .iter()
                .map(|j| embed_jobs(embedder, std::slice::from_ref(j)).remove(0))
                .collect();
        }
        Err(e) => return vec![Err(e)],
    };
    let mut image_vectors = if images.is_empty() {
        Vec::new()
    } else {
        embedder.embed_images(&images)
    }
    .into_iter();
    jobs.iter()
        .map(|job| {
            let mut out = Vec::with_capacity(job.inputs.len());
            let mut failed = None;
            for input in &job.inputs {
                let v = match input {
                    EmbedInput::Text(_) => text_vectors.next().ok_or_else(missing),
                    EmbedInput::Image(_) => match image_vectors.next() {
                        Some(v) => v.map_err(ApiError::from),
                        None => Err(missing()),
                    },
                };
                match v {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            failed.map_or(Ok(out), Err)
        })
        .collect()
}

fn missing() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the embedding model returned too few vectors",
    )
}
