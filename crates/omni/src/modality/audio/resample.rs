//! Sample-rate conversion with rubato's synchronous FFT resampler.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::{Error, Result};

/// Resamples mono `samples` from `from_rate` to `to_rate` Hz.
///
/// Returns the input unchanged when the rates are equal. The output is aligned with the input
/// (rubato's start-up delay is trimmed) and has `ceil(len * to / from)` samples.
pub fn resample(samples: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>> {
    if from_rate == 0 || to_rate == 0 {
        return Err(Error::InvalidInput(format!(
            "cannot resample from {from_rate} Hz to {to_rate} Hz"
        )));
    }
    if from_rate == to_rate || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(
        from_rate as usize,
        to_rate as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|e| Error::InvalidInput(format!("resampler {from_rate} → {to_rate} Hz: {e}")))?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| Error::InvalidInput(format!("resampler input: {e}")))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| Error::InvalidInput(format!("resampling {from_rate} → {to_rate} Hz: {e}")))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsamples_a_sine_keeping_its_frequency_and_length() {
        let (from, to) = (44_100u32, 16_000u32);
        let freq = 440.0f32;
        let n = from as usize; // one second
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / from as f32).sin())
            .collect();
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), to as usize);
        // Project on the ideal sine and cosine away from the edges: amplitude ≈ 1 and a phase
        // offset well under one output sample (rubato leaves a sub-sample delay).
        let w = 2.0 * std::f64::consts::PI * freq as f64 / to as f64;
        let (mut s_dot, mut c_dot) = (0f64, 0f64);
        let range = 1000..15_000;
        for i in range.clone() {
            s_dot += y[i] as f64 * (w * i as f64).sin();
            c_dot += y[i] as f64 * (w * i as f64).cos();
        }
        let n = range.len() as f64 / 2.0;
        let amplitude = (s_dot * s_dot + c_dot * c_dot).sqrt() / n;
        let phase_samples = (c_dot.atan2(s_dot) / w).abs();
        assert!((amplitude - 1.0).abs() < 0.01, "amplitude {amplitude}");
        assert!(phase_samples < 0.5, "phase offset {phase_samples} samples");
    }

    #[test]
    fn same_rate_is_identity() {
        let x = vec![0.1, -0.2, 0.3];
        assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    }
}
