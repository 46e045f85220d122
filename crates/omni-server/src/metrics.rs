//! Prometheus metrics in the text exposition format: requests by route and status,
//! latency histograms, tokens and decode rate, batch sizes and queue depths.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency bucket bounds, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Batch size bucket bounds.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, &b) in self.counts.iter_mut().zip(bounds) {
            if value <= b {
                *c += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's counters, shared by handlers and workers.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch: Mutex<Histogram>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    embedded_inputs: AtomicU64,
    cancelled: AtomicU64,
    /// f64 bits.
    decode_rate: AtomicU64,
}

impl Metrics {
    /// One finished request on `route` with `status` that took `secs`.
    pub fn request(&self, route: &str, status: u16, secs: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(route.to_string())
                .or_default()
                .observe(LATENCY_BUCKETS, secs);
        }
    }

    /// One decoding step over `batch` sequences that took `secs`.
    pub fn decode_step(&self, batch: usize, secs: f64) {
        if let Ok(mut h) = self.batch.lock() {
            h.observe(BATCH_BUCKETS, batch as f64);
        }
        self.completion_tokens
            .fetch_add(batch as u64, Ordering::Relaxed);
        if secs > 0.0 {
            let rate = batch as f64 / secs;
            self.decode_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
    }

    /// Prompt tokens prefilled.
    pub fn prompt(&self, tokens: usize) {
        self.prompt_tokens
            .fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// A completion ended early: its client went away or its time ran out.
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Inputs embedded.
    pub fn embedded(&self, n: usize) {
        self.embedded_inputs.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The exposition text; `queues` are (name, depth) gauges.
    pub fn render(&self, queues: &[(String, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP omni_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE omni_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "omni_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP omni_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE omni_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                h.render(
                    &mut out,
                    "omni_request_duration_seconds",
                    &format!("route=\"{route}\""),
                    LATENCY_BUCKETS,
                );
            }
        }
        out.push_str("# HELP omni_decode_batch_size Sequences per decoding step.\n");
        out.push_str("# TYPE omni_decode_batch_size histogram\n");
        if let Ok(h) = self.batch.lock() {
            h.render(&mut out, "omni_decode_batch_size", "", BATCH_BUCKETS);
        }
        let counters = [
            (
                "omni_prompt_tokens_total",
                "Prompt tokens prefilled.",
                &self.prompt_tokens,
            ),
            (
                "omni_completion_tokens_total",
                "Tokens generated.",
                &self.completion_tokens,
            ),
            (
                "omni_embedded_inputs_total",
                "Texts and images embedded.",
                &self.embedded_inputs,
            ),
            (
                "omni_cancelled_completions_total",
                "Completions ended early: client gone or timed out.",
                &self.cancelled,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let rate = f64::from_bits(self.decode_rate.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP omni_decode_tokens_per_second Tokens per second of the last decoding step, over the batch.\n\
             # TYPE omni_decode_tokens_per_second gauge\nomni_decode_tokens_per_second {rate}"
        );
        out.push_str("# HELP omni_queue_depth Jobs waiting or being served, by worker.\n");
        out.push_str("# TYPE omni_queue_depth gauge\n");
        for (name, depth) in queues {
            let _ = writeln!(out, "omni_queue_depth{{worker=\"{name}\"}} {depth}");
        }
        out
    }
}
