//! A bounded job queue in front of a worker thread: at most `capacity` jobs in flight
//! (waiting or being served); beyond that, submissions get 429 at once instead of
//! piling up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::error::{ApiError, ApiResult};

/// The submitting side, shared by request handlers.
pub struct Queue<J> {
    name: &'static str,
    tx: mpsc::Sender<J>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

/// Held by a job until it is dropped: counts it as in flight.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<J> Queue<J> {
    /// A queue named `name` (in messages and metrics) and the worker's receiving end.
    pub fn new(name: &'static str, capacity: usize) -> (Self, mpsc::Receiver<J>) {
        let (tx, rx) = mpsc::channel();
        let queue = Self {
            name,
            tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
        };
        (queue, rx)
    }

    /// Sends the job `make` builds around a ticket, unless the queue is full (429) or the
    /// worker has stopped (503).
    pub fn submit(&self, make: impl FnOnce(Ticket) -> J) -> ApiResult<()> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(self.in_flight.clone());
        if before >= self.capacity {
            return Err(ApiError::busy(self.name));
        }
        self.tx
            .send(make(ticket))
            .map_err(|_| ApiError::unavailable(format!("the {} worker has stopped", self.name)))
    }

    /// Jobs waiting or being served.
    pub fn depth(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}
