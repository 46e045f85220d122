//! Whisper's log-mel spectrogram, computed exactly as faster-whisper's `FeatureExtractor`
//! (which follows OpenAI `whisper/audio.py` and transformers' `WhisperFeatureExtractor`).
//!
//! Recipe, for 16 kHz mono audio of `L` samples:
//! 1. append `hop` (160) zeros; reflect-pad `n_fft / 2` (200) samples on both sides (torch.stft
//!    `center=True`);
//! 2. frames of 400 samples every 160, times a periodic Hann window; real FFT; power spectrum;
//!    the last frame is dropped, leaving `L / 160 + 1` frames;
//! 3. Slaney mel filterbank (librosa `mel(sr=16000, n_fft=400, n_mels)`, area-normalised);
//! 4. `log10(max(x, 1e-10))`, clamped to `max - 8` with the maximum taken over the whole file,
//!    then `(x + 4) / 4`.
//!
//! The model then reads 3000-frame (30 s) windows of this spectrogram, zero-padded at the end
//! ([`LogMel::window`]), as faster-whisper's `pad_or_trim` does.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate Whisper expects, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s window, the encoder's input length.
pub const N_FRAMES: usize = 3000;

/// A log-mel spectrogram, row-major `[n_mels, n_frames]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Frames that hold audio content: faster-whisper's `content_frames` (`n_frames - 1`).
    pub fn content_frames(&self) -> usize {
        self.n_frames.saturating_sub(1)
    }

    /// The `[n_mels, len]` block starting at frame `start`, zero-padded (or trimmed) to
    /// `width` frames. Frames past the end are zero, as in faster-whisper's `pad_or_trim`.
    pub fn window(&self, start: usize, len: usize, width: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.n_mels * width];
        let end = (start + len.min(width)).min(self.n_frames);
        if start >= end {
            return out;
        }
        for m in 0..self.n_mels {
            let row = &self.data[m * self.n_frames..(m + 1) * self.n_frames];
            out[m * width..m * width + (end - start)].copy_from_slice(&row[start..end]);
        }
        out
    }
}

/// One triangular mel filter: weights for FFT bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
struct MelFilter {
    start: usize,
    weights: Vec<f32>,
}

/// Computes Whisper log-mel spectrograms for a given number of mel bins (80 or 128).
pub struct MelExtractor {
    n_mels: usize,
    filters: Vec<MelFilter>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("n_mels", &self.n_mels)
            .finish()
    }
}

impl MelExtractor {
    /// An extractor for `n_mels` bins at 16 kHz, `n_fft` 400, hop 160.
    pub fn new(n_mels: usize) -> Self {
        let dense = mel_filters(SAMPLE_RATE as f64, N_FFT, n_mels);
        let filters = dense
            .iter()
            .map(|row| {
                let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
                MelFilter {
                    start,
                    weights: row[start..end].to_vec(),
                }
            })
            .collect();
        // np.hanning(401)[:-1]: the periodic Hann window of 400, cast to f32.
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        MelExtractor {
            n_mels,
            filters,
            window,
            fft,
        }
    }

    /// Number of mel bins.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The log-mel spectrogram of 16 kHz mono `samples` (see the module docs for the recipe).
    pub fn compute(&self, samples: &[f32]) -> LogMel {
        // 1. Pad `hop` zeros at the end, then reflect-pad n_fft/2 on both sides.
        let mut wave = Vec::with_capacity(samples.len() + HOP_LENGTH);
        wave.extend_from_slice(samples);
        wave.resize(samples.len() + HOP_LENGTH, 0.0);
        let half = N_FFT / 2;
        let n = wave.len();
        let padded: Vec<f32> = (0..n + 2 * half)
            .map(|j| wave[reflect(j as isize - half as isize, n)])
            .collect();
        // Frames of the STFT, minus the last one.
        let n_frames = (padded.len() - N_FFT) / HOP_LENGTH;
        let n_bins = N_FFT / 2 + 1;

        let mut mel = vec![0f32; self.n_mels * n_frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; n_bins];
        for t in 0..n_frames {
            let frame = &padded[t * HOP_LENGTH..t * HOP_LENGTH + N_FFT];
            for ((x, &s), &w) in input.iter_mut().zip(frame).zip(&self.window) {
                *x = (s * w) as f64;
            }
            // The buffers have the planner's lengths, so this cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                // complex64 magnitude squared, as numpy computes it.
                let (re, im) = (c.re as f32, c.im as f32);
                let mag = (re * re + im * im).sqrt();
                *p = (mag * mag) as f64;
            }
            for (m, filter) in self.filters.iter().enumerate() {
                let bins = &power[filter.start..filter.start + filter.weights.len()];
                let energy: f64 = bins
                    .iter()
                    .zip(&filter.weights)
                    .map(|(p, &w)| p * w as f64)
                    .sum();
                mel[m * n_frames + t] = energy as f32;
            }
        }
        // 4. log10, clamp to (global max - 8), rescale.
        let mut max = f32::NEG_INFINITY;
        for v in mel.iter_mut() {
            *v = v.max(1e-10).log10();
            max = max.max(*v);
        }
        let floor = max - 8.0;
        for v in mel.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        LogMel {
            n_mels: self.n_mels,
            n_frames,
            data: mel,
        }
    }
}

/// numpy `pad(mode="reflect")` index for position `i` of a signal of length `n`.
fn reflect(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    if m >= n as isize {
        (period - m) as usize
    } else {
        m as usize
    }
}

/// Slaney-style mel filterbank `[n_mels][n_fft/2 + 1]`, as librosa `filters.mel(sr, n_fft,
/// n_mels)` (htk=False, norm="slaney") and faster-whisper's `get_mel_filters`, cast to f32.
pub fn mel_filters(sr: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f32>> {
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz >= min_log_hz {
            min_log_mel + (hz / min_log_hz).ln() / logstep
        } else {
            hz / f_sp
        }
    };
    let max_mel = hz_to_mel(sr / 2.0);
    let step = max_mel / (n_mels + 1) as f64;
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            let mel = if i == n_mels + 1 {
                max_mel
            } else {
                i as f64 * step
            };
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_sp * mel
            }
        })
        .collect();
    (0..n_mels)
        .map(|i| {
            let enorm = 2.0 / (freqs[i + 2] - freqs[i]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - freqs[i]) / (freqs[i + 1] - freqs[i]);
                    let upper = (freqs[i + 2] - f) / (freqs[i + 2] - freqs[i + 1]);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([0,1,2,3], 5, mode="reflect") → [1,2,3,2,1,0,1,2,3,2,1,0,1,2]
        let idx: Vec<usize> = (-5..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
    }

    #[test]
    fn frame_count_matches_faster_whisper() {
        let mel = MelExtractor::new(80);
        for len in [1usize, 159, 160, 161, 16_000, 48_123] {
            let out = mel.compute(&vec![0.01; len]);
            assert_eq!(out.n_frames, len / HOP_LENGTH + 1, "len {len}");
            assert_eq!(out.data.len(), 80 * out.n_frames);
        }
    }

    #[test]
    fn filterbank_is_triangular_and_normalised() {
        let f = mel_filters(16_000.0, 400, 80);
        assert_eq!(f.len(), 80);
        assert!(f.iter().all(|row| row.len() == 201));
        assert!(f.iter().all(|row| row.iter().any(|&w| w > 0.0)));
        assert!(f.iter().flatten().all(|&w| w >= 0.0));
    }

    #[test]
    fn window_pads_with_zeros() {
        let mel = LogMel {
            n_mels: 2,
            n_frames: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        assert_eq!(
            mel.window(1, 2, 4),
            vec![2.0, 3.0, 0.0, 0.0, 5.0, 6.0, 0.0, 0.0]
        );
        assert_eq!(mel.content_frames(), 2);
    }
}
