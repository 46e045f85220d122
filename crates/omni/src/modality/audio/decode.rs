//! Decoding audio files (wav, flac, mp3, ogg/vorbis, …) to mono `f32` samples with symphonia.
//!
//! Every failure is an [`Error::Media`] naming the file: a missing or empty file, a file that is
//! not audio, a header that promises more frames than the file holds (truncation), or a stream
//! whose packets cannot be decoded.

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::{Error, Result};

/// Decoded audio: mono samples in [-1, 1] at the file's own sample rate.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Mono samples (multi-channel input is averaged over channels).
    pub samples: Vec<f32>,
    /// Sample rate of `samples`, in Hz.
    pub sample_rate: u32,
    /// Number of channels in the file before the downmix.
    pub channels: usize,
}

impl DecodedAudio {
    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

fn media(path: &Path, reason: impl Into<String>) -> Error {
    Error::Media {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read the file: {e}"),
    }
}

/// Decodes the first audio track of `path` and downmixes it to mono.
pub fn decode_file(path: &Path) -> Result<DecodedAudio> {
    let file = File::open(path).map_err(|e| media(path, io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| media(path, io_reason(&e)))?;
    if meta.is_dir() {
        return Err(media(path, "is a directory, not an audio file"));
    }
    if meta.len() == 0 {
        return Err(media(path, "the file is empty"));
    }
    decode_stream(
        MediaSourceStream::new(Box::new(file), Default::default()),
        path,
    )
}

/// Decodes in-memory audio (an upload); `name` (its file name, whose extension is a
/// format hint) is used in error messages.
pub fn decode_bytes(data: Vec<u8>, name: &Path) -> Result<DecodedAudio> {
    if data.is_empty() {
        return Err(media(name, "the audio is empty"));
    }
    let source = std::io::Cursor::new(data);
    decode_stream(
        MediaSourceStream::new(Box::new(source), Default::default()),
        name,
    )
}

/// Decodes the first audio track of `mss`, named `path` in errors, downmixed to mono.
fn decode_stream(mss: MediaSourceStream, path: &Path) -> Result<DecodedAudio> {
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(_) => {
                media(path, "not a recognised audio file (wav, flac, mp3, ogg, …)")
            }
            e => media(
                path,
                format!("not a recognised audio file (wav, flac, mp3, ogg, …): {e}"),
            ),
        })?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| media(path, "the file has no audio track"))?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| media(path, "the audio track has no codec parameters"))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| media(path, format!("unsupported audio codec: {e}")))?;

    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    let mut samples: Vec<f32> = Vec::new();
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut bad_packets = 0usize;
    let mut good_packets = 0usize;
    let mut first_error: Option<String> = None;
    let mut truncated = false;
    let mut expected_pts: Option<i64> = None;
    let mut skipped = 0u64;

    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                if good_packets == 0 {
                    return Err(media(path, format!("cannot read the audio stream: {e}")));
                }
                truncated = true;
                first_error.get_or_insert_with(|| e.to_string());
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        // Demuxers that resynchronise past damaged data (ogg) leave a jump in timestamps.
        let pts = packet.pts.get();
        if let Some(expected) = expected_pts
            && pts > expected
        {
            skipped += (pts - expected) as u64;
        }
        expected_pts =
            Some(pts.saturating_add((packet.trim_start.get() + packet.dur.get()) as i64));
        match decoder.decode(&packet) {
            Ok(buf) => {
                good_packets += 1;
                let spec = buf.spec();
                sample_rate = spec.rate();
                channels = spec.channels().count().max(buf.num_planes());
                buf.copy_to_vecs_planar::<f32>(&mut planes);
                downmix_append(&planes, buf.frames(), &mut samples);
            }
            Err(SymError::DecodeError(e)) | Err(SymError::Unsupported(e)) => {
                bad_packets += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(SymError::IoError(e)) => {
                bad_packets += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(media(path, format!("cannot decode the audio stream: {e}"))),
        }
    }

    if good_packets == 0 && bad_packets > 0 {
        return Err(media(
            path,
            format!(
                "corrupt audio: none of {bad_packets} packets could be decoded ({})",
                first_error.unwrap_or_default()
            ),
        ));
    }
    if bad_packets > 0 || skipped > 0 {
        let lost = if bad_packets > 0 {
            format!(
                "{bad_packets} of {} packets could not be decoded ({})",
                bad_packets + good_packets,
                first_error.unwrap_or_default()
            )
        } else {
            format!("{skipped} frames of damaged data were skipped")
        };
        return Err(media(path, format!("corrupt audio: {lost}")));
    }
    // Streamed WAV (OpenAI's and omni's own speech endpoints) declares the 32-bit maximum
    // size, meaning "read to the end": no length to check against.
    let streamed =
        |declared: u64| declared >= (u64::from(u32::MAX) - 64) / (4 * channels.max(1) as u64);
    if let Some(declared) = declared_frames
        && (samples.len() as u64) < declared
        && !streamed(declared)
    {
        return Err(media(
            path,
            format!(
                "truncated audio: the header declares {declared} frames but only {} could be read",
                samples.len()
            ),
        ));
    }
    if truncated && samples.is_empty() {
        return Err(media(
            path,
            "truncated audio: the stream ends before any sample",
        ));
    }
    if samples.is_empty() {
        return Err(media(path, "the file contains no audio samples"));
    }
    if sample_rate == 0 {
        return Err(media(
            path,
            "the audio stream does not state its sample rate",
        ));
    }
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(media(
            path,
            "corrupt audio: decoded samples are not finite numbers",
        ));
    }
    Ok(DecodedAudio {
        samples,
        sample_rate,
        channels: channels.max(1),
    })
}

/// Appends the average of `planes` (first `frames` samples of each) to `out`.
fn downmix_append(planes: &[Vec<f32>], frames: usize, out: &mut Vec<f32>) {
    match planes {
        [] => {}
        [mono] => out.extend_from_slice(&mono[..frames.min(mono.len())]),
        _ => {
            let scale = 1.0 / planes.len() as f32;
            out.extend((0..frames).map(|i| {
                planes
                    .iter()
                    .map(|p| p.get(i).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    * scale
            }));
        }
    }
}
