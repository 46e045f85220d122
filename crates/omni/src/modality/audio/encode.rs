//! Encoding generated audio: 16-bit WAV, FLAC (flacenc) or raw PCM, chunk by chunk, so
//! that speech can be streamed to a file, a pipe or an HTTP body as it is synthesised.

use std::fmt;
use std::io::{Seek, SeekFrom, Write};
use std::str::FromStr;

use flacenc::component::{BitRepr, Stream};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};

use crate::{Error, Result};

/// An output container for mono 16-bit audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioFormat {
    /// RIFF WAVE, 16-bit PCM.
    #[default]
    Wav,
    /// Lossless FLAC, 16-bit.
    Flac,
    /// Raw signed 16-bit little-endian samples, no header (OpenAI's `pcm`).
    Pcm,
}

impl AudioFormat {
    /// The spelling used on the command line and in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Pcm => "pcm",
        }
    }

    /// The HTTP `Content-Type` of this format.
    pub fn mime(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Pcm => "audio/pcm",
        }
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AudioFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<AudioFormat> {
        match s.to_ascii_lowercase().as_str() {
            "wav" => Ok(AudioFormat::Wav),
            "flac" => Ok(AudioFormat::Flac),
            "pcm" => Ok(AudioFormat::Pcm),
            _ => Err(Error::InvalidInput(format!(
                "unsupported audio format `{s}` (supported: wav, flac, pcm)"
            ))),
        }
    }
}

/// FLAC block size in samples (the reference encoder's default).
const FLAC_BLOCK: usize = 4096;

/// Turns float samples into the bytes of one output format, incrementally: call
/// [`AudioEncoder::header`] once, [`AudioEncoder::encode`] per chunk, [`AudioEncoder::finish`]
/// at the end, and write the returned bytes in that order.
pub struct AudioEncoder {
    format: AudioFormat,
    sample_rate: u32,
    /// FLAC only: samples waiting for a full block, and the next frame's number.
    pending: Vec<i32>,
    frame_number: usize,
    flac_config: Option<flacenc::error::Verified<flacenc::config::Encoder>>,
}

impl AudioEncoder {
    /// An encoder of mono audio at `sample_rate` Hz.
    pub fn new(format: AudioFormat, sample_rate: u32) -> AudioEncoder {
        let flac_config = (format == AudioFormat::Flac).then(|| {
            flacenc::config::Encoder::default()
                .into_verified()
                .expect("flacenc's default configuration is valid")
        });
        AudioEncoder {
            format,
            sample_rate,
            pending: Vec::new(),
            frame_number: 0,
            flac_config,
        }
    }

    /// The bytes before any audio. The length is not known yet: WAV sizes are set to the
    /// "unknown, read to the end" value streaming servers use ([`patch_wav_sizes`] fixes a
    /// file afterwards); FLAC's total sample count is 0, which means unknown.
    pub fn header(&self) -> Vec<u8> {
        match self.format {
            AudioFormat::Wav => wav_header(self.sample_rate, u32::MAX - 36).to_vec(),
            AudioFormat::Flac => {
                let mut stream = Stream::new(self.sample_rate as usize, 1, 16)
                    .expect("24 kHz mono 16-bit is a valid FLAC stream");
                stream
                    .stream_info_mut()
                    .set_block_sizes(FLAC_BLOCK, FLAC_BLOCK)
                    .expect("4096 is a valid FLAC block size");
                bits_to_bytes(&stream)
            }
            AudioFormat::Pcm => Vec::new(),
        }
    }

    /// The bytes of `samples` (floats in [-1, 1]; louder values are clipped).
    pub fn encode(&mut self, samples: &[f32]) -> Vec<u8> {
        match self.format {
            AudioFormat::Wav | AudioFormat::Pcm => samples
                .iter()
                .flat_map(|&s| to_i16(s).to_le_bytes())
                .collect(),
            AudioFormat::Flac => {
                self.pending
                    .extend(samples.iter().map(|&s| i32::from(to_i16(s))));
                let full = self.pending.len() / FLAC_BLOCK * FLAC_BLOCK;
                let blocks: Vec<i32> = self.pending.drain(..full).collect();
                blocks
                    .chunks(FLAC_BLOCK)
                    .flat_map(|block| self.flac_frame(block))
                    .collect()
            }
        }
    }

    /// The bytes after the last chunk (FLAC's last, shorter frame).
    pub fn finish(&mut self) -> Vec<u8> {
        if self.format != AudioFormat::Flac || self.pending.is_empty() {
            return Vec::new();
        }
        let rest = std::mem::take(&mut self.pending);
        self.flac_frame(&rest)
    }

    fn flac_frame(&mut self, block: &[i32]) -> Vec<u8> {
        let config = self.flac_config.as_ref().expect("FLAC encoder");
        let info = flacenc::component::StreamInfo::new(self.sample_rate as usize, 1, 16)
            .expect("valid stream info");
        // FLAC's smallest block is 16 samples; a shorter tail is padded with silence.
        let mut padded = block.to_vec();
        padded.resize(block.len().max(16), 0);
        let mut buf = FrameBuf::with_size(1, padded.len()).expect("block size in range");
        buf.fill_interleaved(&padded)
            .expect("mono samples fill a mono frame");
        let frame = flacenc::encode_fixed_size_frame(config, &buf, self.frame_number, &info)
            .expect("a 16-bit mono frame encodes");
        self.frame_number += 1;
        bits_to_bytes(&frame)
    }
}

fn bits_to_bytes(item: &impl BitRepr) -> Vec<u8> {
    let mut sink = flacenc::bitsink::ByteSink::new();
    item.write(&mut sink)
        .expect("writing to memory cannot fail");
    sink.into_inner()
}

fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// A 44-byte RIFF header of mono 16-bit PCM with `data_bytes` of samples.
fn wav_header(sample_rate: u32, data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Rewrites the sizes of a streamed WAV file once its length is known (a file over 4 GiB
/// keeps the "unknown" sizes).
pub fn patch_wav_sizes(file: &mut (impl Write + Seek), data_bytes: u64) -> std::io::Result<()> {
    let Ok(data) = u32::try_from(data_bytes) else {
        return Ok(());
    };
    let Some(riff) = data.checked_add(36) else {
        return Ok(());
    };
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff.to_le_bytes())?;
    file.seek(SeekFrom::Start(40))?;
    file.write_all(&data.to_le_bytes())?;
    file.seek(SeekFrom::End(0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::audio::decode_bytes;

    fn tone(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin())
            .collect()
    }

    fn encode_in_chunks(format: AudioFormat, samples: &[f32]) -> Vec<u8> {
        let mut enc = AudioEncoder::new(format, 24_000);
        let mut bytes = enc.header();
        for chunk in samples.chunks(3001) {
            bytes.extend(enc.encode(chunk));
        }
        bytes.extend(enc.finish());
        bytes
    }

    #[test]
    fn wav_and_flac_round_trip_through_the_decoder() {
        let samples = tone(10_007);
        for format in [AudioFormat::Wav, AudioFormat::Flac] {
            let mut bytes = encode_in_chunks(format, &samples);
            if format == AudioFormat::Wav {
                let mut cursor = std::io::Cursor::new(&mut bytes);
                cursor.seek(SeekFrom::End(0)).unwrap();
                patch_wav_sizes(&mut cursor, 2 * samples.len() as u64).unwrap();
            }
            let name = format!("out.{format}");
            let decoded = decode_bytes(bytes, std::path::Path::new(&name)).unwrap();
            assert_eq!(decoded.sample_rate, 24_000, "{format}");
            assert!(decoded.samples.len() >= samples.len(), "{format}");
            let max_err = samples
                .iter()
                .zip(&decoded.samples)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(max_err < 1e-4, "{format}: {max_err}");
        }
    }

    #[test]
    fn pcm_is_bare_little_endian_i16_and_clips() {
        let bytes = encode_in_chunks(AudioFormat::Pcm, &[0.0, 1.0, -2.0]);
        assert_eq!(bytes, [0, 0, 0xff, 0x7f, 0x01, 0x80]);
    }

    #[test]
    fn unknown_formats_name_the_supported_ones() {
        let err = "mp3".parse::<AudioFormat>().unwrap_err().to_string();
        assert!(
            err.contains("`mp3`") && err.contains("wav, flac, pcm"),
            "{err}"
        );
        assert_eq!("FLAC".parse::<AudioFormat>().unwrap(), AudioFormat::Flac);
    }
}
