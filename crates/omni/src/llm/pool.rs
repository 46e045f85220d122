//! A small persistent thread pool for the decoder's parallel loops.
//!
//! A decoding step runs ~150 short parallel regions (a few µs to 100 µs each), so
//! threads must not be created or woken through the OS per region: workers spin for a
//! while after each job (about a millisecond, longer than the serial work between two
//! regions), then park. The caller waits for stragglers by spinning too: yielding the
//! core there, when other processes compete for the CPUs, cost a whole scheduler time
//! slice per region (2 threads ran 3× slower than 1 on a busy machine here).
//! One parallel region runs at a time; a caller that finds the workers busy (another
//! sequence decoding on another thread) runs its loop alone instead of waiting.
//!
//! When the machine is oversubscribed, a worker is sometimes descheduled in the middle of
//! a region and the caller waits for it for a whole time slice; with ~150 regions per
//! token that made 2 threads 10× slower than 1 on a busy machine here. So the pool
//! watches for such stalls and, after a few, runs regions on the calling thread alone for
//! a while (a few tokens) before trying the workers again.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle, Thread};

/// Spins (`pause`) a worker waits for work before parking.
const SPINS: usize = 30_000;
/// Spins the caller waits for the workers before also yielding the core.
const WAIT_SPINS: usize = 1_000_000;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// A wait for workers longer than this, after the caller ran out of work, is a stall.
const STALL: std::time::Duration = std::time::Duration::from_micros(1500);
/// This many stalls within `STALL_WINDOW` regions switch to solo mode …
const STALLS_TO_SOLO: usize = 3;
const STALL_WINDOW: usize = 200;
/// … for this many regions.
const SOLO_REGIONS: usize = 3000;

/// Counts parallel regions, and tracks stalls for the solo mode.
struct Health {
    region: AtomicUsize,
    solo_until: AtomicUsize,
    last_stalls: Mutex<Vec<usize>>,
}

static HEALTH: Health = Health {
    region: AtomicUsize::new(0),
    solo_until: AtomicUsize::new(0),
    last_stalls: Mutex::new(Vec::new()),
};

impl Health {
    fn note_stall(&self, region: usize) {
        let mut stalls = self.last_stalls.lock().unwrap_or_else(|e| e.into_inner());
        stalls.retain(|&r| r + STALL_WINDOW > region);
        stalls.push(region);
        if stalls.len() >= STALLS_TO_SOLO {
            stalls.clear();
            self.solo_until
                .store(region + SOLO_REGIONS, Ordering::Relaxed);
            tracing::debug!(
                "decoder threads stalled {STALLS_TO_SOLO} times; running single-threaded for a while"
            );
        }
    }
}
static POOL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);

thread_local! {
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Sets the number of threads (including the caller's) the decoder uses; 0 restores the
/// default (`OMNI_THREADS`, else `CANDLE_NUM_THREADS`, else all logical CPUs).
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n, Ordering::Relaxed);
}

/// The number of threads parallel loops use.
pub fn num_threads() -> usize {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    }
}

fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        ["OMNI_THREADS", "CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"]
            .iter()
            .find_map(|k| {
                std::env::var(k)
                    .ok()?
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
            })
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

type Job<'a> = dyn Fn(Range<usize>) + Sync + 'a;

struct Shared {
    /// Bumped for every job; workers compare it with the last one they ran.
    generation: AtomicUsize,
    /// The current job (a `&Job` whose lifetime `run` guarantees), as two words.
    job: Mutex<Option<(usize, usize)>>,
    cursor: AtomicUsize,
    n_items: AtomicUsize,
    chunk: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// A worker's job panicked.
    panicked: AtomicBool,
    stop: AtomicBool,
    parked: Vec<AtomicBool>,
}

struct Pool {
    /// Held for the duration of a parallel region: one job at a time.
    busy: Mutex<()>,
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    /// Threads asked for (workers + the caller).
    requested: usize,
    /// Threads running (fewer if spawning failed).
    n_threads: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for t in &self.threads {
            t.unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Pool {
    fn new(requested: usize) -> Self {
        let workers = requested.saturating_sub(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: Mutex::new(None),
            cursor: AtomicUsize::new(0),
            n_items: AtomicUsize::new(0),
            chunk: AtomicUsize::new(1),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            parked: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut handles = Vec::with_capacity(workers);
        for id in 0..workers {
            let shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("omni-llm-{id}"))
                .spawn(move || worker(&shared, id));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::warn!("cannot start a decoder thread: {e}");
                    break;
                }
            }
        }
        let threads = handles.iter().map(|h| h.thread().clone()).collect();
        let n_threads = handles.len() + 1;
        Self {
            busy: Mutex::new(()),
            shared,
            threads,
            handles,
            requested,
            n_threads,
        }
    }
}

fn worker(shared: &Shared, id: usize) {
    IN_WORKER.with(|w| w.set(true));
    let mut seen = 0;
    loop {
        let mut waited = 0;
        let generation = loop {
            let g = shared.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            waited += 1;
            if waited < SPINS {
                std::hint::spin_loop();
            } else {
                shared.parked[id].store(true, Ordering::SeqCst);
                if shared.generation.load(Ordering::SeqCst) == seen {
                    thread::park();
                }
                shared.parked[id].store(false, Ordering::SeqCst);
                waited = 0;
            }
        };
        seen = generation;
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            // SAFETY: `run` keeps the job alive until `pending` reaches zero.
            let f: &Job<'_> = unsafe { std::mem::transmute::<(usize, usize), &Job<'_>>(job) };
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| consume(shared, f)));
            if run.is_err() {
                shared.panicked.store(true, Ordering::SeqCst);
            }
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

fn consume(shared: &Shared, f: &Job<'_>) {
    let n = shared.n_items.load(Ordering::Acquire);
    let chunk = shared.chunk.load(Ordering::Acquire);
    loop {
        let start = shared.cursor.fetch_add(chunk, Ordering::AcqRel);
        if start >= n {
            break;
        }
        f(start..n.min(start + chunk));
    }
}

/// Runs `f` over `0..n_items` in chunks, on all threads; returns when all are done.
pub(crate) fn parallel_for(n_items: usize, f: impl Fn(Range<usize>) + Sync) {
    if n_items == 0 {
        return;
    }
    let n_threads = num_threads();
    if n_threads <= 1 || n_items == 1 || IN_WORKER.with(|w| w.get()) {
        f(0..n_items);
        return;
    }
    let region = HEALTH.region.fetch_add(1, Ordering::Relaxed);
    if region < HEALTH.solo_until.load(Ordering::Relaxed) {
        f(0..n_items);
        return;
    }
    let pool = {
        let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(p) if p.requested == n_threads => Arc::clone(p),
            _ => {
                let p = Arc::new(Pool::new(n_threads));
                *guard = Some(Arc::clone(&p));
                p
            }
        }
    };
    if pool.n_threads <= 1 {
        f(0..n_items);
        return;
    }
    // Another sequence (another thread) is using the workers: run on this thread alone
    // rather than wait — each concurrent sequence then gets a core.
    let Ok(_busy) = pool.busy.try_lock() else {
        f(0..n_items);
        return;
    };
    let shared = &pool.shared;
    let job: &Job<'_> = &f;
    // SAFETY: the reference is erased to two words and restored by workers only while
    // this call waits for them below.
    let words = unsafe { std::mem::transmute::<&Job<'_>, (usize, usize)>(job) };
    // ~4 grabs per thread balance the load without much cursor contention.
    let chunk = n_items.div_ceil(pool.n_threads * 4).max(1);
    *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(words);
    shared.cursor.store(0, Ordering::Release);
    shared.n_items.store(n_items, Ordering::Release);
    shared.chunk.store(chunk, Ordering::Release);
    shared.pending.store(pool.threads.len(), Ordering::Release);
    shared.generation.fetch_add(1, Ordering::SeqCst);
    for (t, parked) in pool.threads.iter().zip(&shared.parked) {
        if parked.load(Ordering::SeqCst) {
            t.unpark();
        }
    }
    // Waits for the workers even if `f` panics here, so they never see a dead job.
    let guard = WaitForWorkers(shared);
    consume(shared, job);
    let done = std::time::Instant::now();
    drop(guard);
    if done.elapsed() > STALL {
        HEALTH.note_stall(region);
    }
    if shared.panicked.swap(false, Ordering::SeqCst) {
        panic!("a decoder thread panicked");
    }
}

struct WaitForWorkers<'a>(&'a Shared);

impl Drop for WaitForWorkers<'_> {
    fn drop(&mut self) {
        let mut waited = 0usize;
        while self.0.pending.load(Ordering::Acquire) != 0 {
            waited += 1;
            if waited < WAIT_SPINS {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        *self.0.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once() {
        for n in [0, 1, 2, 7, 100, 10_000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            parallel_for(n, |r| {
                for i in r {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn concurrent_callers_each_get_all_their_items() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..200 {
                        let n = 1 + (t * 31 + round * 7) % 97;
                        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                        parallel_for(n, |r| {
                            for i in r {
                                hits[i].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }
}
