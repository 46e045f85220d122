//! Audio: decode common formats, resample to the model rate, log-mel features.
//!
//! ```text
//! file ─► decode (symphonia: wav/flac/mp3/ogg, downmix to mono)
//!      ─► resample (rubato, any rate → 16 kHz)
//!      ─► mel (Whisper log-mel, 80 or 128 bins)
//!
//! generated samples ─► encode (WAV / FLAC / PCM, chunk by chunk)
//! ```

mod decode;
mod encode;
mod mel;
mod resample;

use std::path::Path;

pub use decode::{DecodedAudio, decode_bytes, decode_file};
pub use encode::{AudioEncoder, AudioFormat, patch_wav_sizes};
pub use mel::{HOP_LENGTH, LogMel, MelExtractor, N_FFT, N_FRAMES, SAMPLE_RATE, mel_filters};
pub use resample::resample;

use crate::{Error, Result};

/// Decodes `path` and returns mono samples at `rate` Hz (resampled when the file differs).
pub fn load_mono(path: &Path, rate: u32) -> Result<Vec<f32>> {
    to_rate(decode_file(path)?, rate, path)
}

/// Mono samples of `audio` at `rate` Hz; `name` is used in error messages.
pub fn to_rate(audio: DecodedAudio, rate: u32, name: &Path) -> Result<Vec<f32>> {
    resample(&audio.samples, audio.sample_rate, rate).map_err(|e| Error::Media {
        path: name.to_path_buf(),
        reason: e.to_string(),
    })
}
