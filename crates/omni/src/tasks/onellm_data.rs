//! The synthetic worlds of OneLLM's eight modalities: the signals a training stage draws
//! (in memory, as the stems take them), and the same signals written out as the files a
//! user gives `omni ask` (`omni data synth onellm`): pictures and maps as PNG (depth as
//! 16-bit grey), clips as MP4 (through `ffmpeg`), speech as WAV, point clouds as PLY, IMU
//! windows as CSV, fMRI responses as `.npy`, with a JSONL manifest of their captions and
//! questions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::onellm_train::{OneLlmProgress, OneLlmRecipe};
use crate::formats::npy::npy_bytes;
use crate::modality::audio::MelExtractor;
use crate::modality::universal::Modality;
use crate::train::datasets::Split;
use crate::train::onellm::ModalSample;
use crate::train::scenes::Question;
use crate::train::signals::{Brain, Sample};
use crate::train::synth::{SynthReport, SynthSizes, save_png};
use crate::train::{frames, signals, synth};
use crate::{Error, Result};

/// The random streams of the training signals, the test split, and new signals drawn
/// like the training ones.
pub(crate) const TRAIN: (Split, u64) = (Split::Train, 0x7a);
pub(crate) const TEST: (Split, u64) = (Split::Test, 0x7e);
pub(crate) const FRESH: (Split, u64) = (Split::Train, 0x7b);

/// The signals of the synthetic worlds, by modality.
pub(crate) struct Worlds {
    brain: Brain,
    mel: MelExtractor,
    scratch: PathBuf,
}

impl Worlds {
    pub(crate) fn new(recipe: &OneLlmRecipe) -> Result<Self> {
        let scratch = std::env::temp_dir().join(format!("omni-onellm-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
        Ok(Self {
            brain: Brain::new(recipe.seed ^ 0xb2a1, recipe.model.stems.fmri_voxels),
            mel: MelExtractor::new(recipe.model.stems.audio_mel_bins),
            scratch,
        })
    }

    /// The random stream of `m`'s signals in `stream`, the same for the same seed.
    fn rng(recipe: &OneLlmRecipe, m: Modality, stream: u64) -> StdRng {
        let key = Modality::ALL.iter().position(|x| *x == m).unwrap_or(0) as u64;
        StdRng::seed_from_u64(recipe.seed ^ (key << 8) ^ stream)
    }

    /// The next signal of `m` from `rng`; speech is spoken into `wav`.
    fn sample(
        &self,
        recipe: &OneLlmRecipe,
        m: Modality,
        split: Split,
        rng: &mut StdRng,
        wav: &Path,
    ) -> Result<Sample> {
        let c = &recipe.model.stems;
        let size = c.image_size;
        Ok(match m {
            Modality::Image => frames::scene_image(rng, split, size),
            Modality::Video => frames::video_clip(rng, split, recipe.video_frames, size),
            Modality::Rgbd => frames::depth_scene(rng, split, size),
            Modality::Rgbn => frames::normal_scene(rng, split, size),
            Modality::Audio => synth::spoken_sentence(rng, split, &self.mel, c.audio_frames, wav)?,
            Modality::Point => signals::point_cloud(rng, split, c.points),
            Modality::Imu => signals::imu_window(rng, split, c.imu_samples),
            Modality::Fmri => self.brain.response(rng, split),
        })
    }

    /// `n` signals of `m` for `split` from random stream `stream`, the same for the same
    /// seed.
    pub(crate) fn signals(
        &self,
        recipe: &OneLlmRecipe,
        m: Modality,
        (split, stream): (Split, u64),
        n: usize,
        progress: &mut dyn FnMut(OneLlmProgress) -> bool,
    ) -> Result<Vec<ModalSample>> {
        let mut rng = Self::rng(recipe, m, stream);
        let wav = self.scratch.join("clip.wav");
        (0..n)
            .map(|i| {
                let sample = self.sample(recipe, m, split, &mut rng, &wav)?;
                progress(OneLlmProgress::Data {
                    modality: m,
                    done: i + 1,
                    total: n,
                });
                Ok(ModalSample {
                    modality: m,
                    sample,
                })
            })
            .collect()
    }
}

impl Drop for Worlds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The first `n` training or test signals of `m` in `recipe`'s worlds, as a training
/// stage draws them (and [`write_onellm_data`] writes them).
pub fn world_signals(
    recipe: &OneLlmRecipe,
    m: Modality,
    split: Split,
    n: usize,
) -> Result<Vec<Sample>> {
    let stream = if split == Split::Train { TRAIN } else { TEST };
    let signals = Worlds::new(recipe)?.signals(recipe, m, stream, n, &mut |_| true)?;
    Ok(signals.into_iter().map(|s| s.sample).collect())
}

/// One written signal: its files by `omni ask` option (`image` and `depth` for an RGB-D
/// pair), caption and questions.
#[derive(Debug, Serialize)]
struct SignalRecord {
    id: String,
    modality: &'static str,
    files: BTreeMap<&'static str, String>,
    caption: String,
    questions: Vec<Question>,
}

/// Writes `sizes.train` training and `sizes.test` test signals of each modality of
/// `recipe`'s worlds under `dir` (`{modality}/{split}-{n}.{ext}`, `train.jsonl`,
/// `test.jsonl`): the very signals `omni train onellm` with this recipe trains and
/// tests on. `on_signal` is called after each signal (progress).
pub fn write_onellm_data(
    dir: &Path,
    recipe: &OneLlmRecipe,
    sizes: SynthSizes,
    on_signal: &mut dyn FnMut(),
) -> Result<SynthReport> {
    let worlds = Worlds::new(recipe)?;
    let mut report = SynthReport::default();
    for ((split, stream), n) in [(TRAIN, sizes.train), (TEST, sizes.test)] {
        let name = synth::split_name(split);
        let mut records = Vec::new();
        for m in Modality::ALL {
            let folder = dir.join(m.name());
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            let mut rng = Worlds::rng(recipe, m, stream);
            for i in 0..n {
                let stem = format!("{}/{name}-{i:04}", m.name());
                let wav = dir.join(format!("{stem}.wav"));
                let sample = worlds.sample(recipe, m, split, &mut rng, &wav)?;
                let files = write_signal(dir, &stem, m, &sample)?;
                report.images += 1;
                on_signal();
                records.push(SignalRecord {
                    id: format!("{}-{name}-{i:04}", m.name()),
                    modality: m.name(),
                    files,
                    caption: sample.caption,
                    questions: sample.questions,
                });
            }
        }
        if !records.is_empty() {
            let path = dir.join(format!("{name}.jsonl"));
            let mut text = String::new();
            for r in &records {
                text.push_str(
                    &serde_json::to_string(r).map_err(|e| Error::InvalidInput(e.to_string()))?,
                );
                text.push('\n');
            }
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        match split {
            Split::Train => report.train_records = records.len(),
            Split::Test => report.test_records = records.len(),
        }
    }
    Ok(report)
}

/// Writes `sample` of `m` as files `dir/{stem}…`; returns them by `omni ask` option,
/// relative to `dir`. Speech is already at `{stem}.wav`.
fn write_signal(
    dir: &Path,
    stem: &str,
    m: Modality,
    sample: &Sample,
) -> Result<BTreeMap<&'static str, String>> {
    let mut files = BTreeMap::new();
    let mut file = |option: &'static str, suffix: &str| -> PathBuf {
        let name = format!("{stem}{suffix}");
        files.insert(option, name.clone());
        dir.join(name)
    };
    let size = sample.shape.last().copied().unwrap_or(0);
    let plane = 3 * size * size;
    let frame = |k: usize| frames::frame_picture(&sample.data[k * plane..(k + 1) * plane], size);
    match m {
        Modality::Image => save_png(&file("image", ".png"), &frame(0).into())?,
        Modality::Rgbd | Modality::Rgbn => {
            save_png(&file("image", "-photo.png"), &frame(0).into())?;
            if m == Modality::Rgbn {
                save_png(&file("normal", "-normal.png"), &frame(1).into())?;
            } else {
                // The map is grey: its first channel, as 16-bit grey.
                let map = frame(1);
                let depth = image::ImageBuffer::from_fn(size as u32, size as u32, |x, y| {
                    image::Luma([u16::from(map.get_pixel(x, y)[0]) * 257])
                });
                save_png(&file("depth", "-depth.png"), &depth.into())?;
            }
        }
        Modality::Video => write_video(&file("video", ".mp4"), &sample.shape, frame)?,
        Modality::Audio => {
            file("audio", ".wav");
        }
        Modality::Point => {
            let points = &sample.data;
            let mut text = format!(
                "ply\nformat ascii 1.0\nelement vertex {}\nproperty float x\nproperty float y\n\
                 property float z\nproperty float red\nproperty float green\nproperty float blue\nend_header\n",
                points.len() / 6
            );
            for p in points.chunks_exact(6) {
                let row: Vec<String> = p.iter().map(f32::to_string).collect();
                text.push_str(&row.join(" "));
                text.push('\n');
            }
            write(&file("point", ".ply"), text.as_bytes())?;
        }
        Modality::Imu => {
            // (6, T) channel-major → T rows of six channels.
            let t = sample.shape[1];
            let mut text = String::from("acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n");
            for i in 0..t {
                let row: Vec<String> = (0..6)
                    .map(|ch| sample.data[ch * t + i].to_string())
                    .collect();
                text.push_str(&row.join(","));
                text.push('\n');
            }
            write(&file("imu", ".csv"), text.as_bytes())?;
        }
        Modality::Fmri => write(
            &file("fmri", ".npy"),
            &npy_bytes(&sample.shape, &sample.data),
        )?,
    }
    Ok(files)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The frames of a clip `(frames, 3, S, S)` as a one-second MP4, encoded by `ffmpeg`.
fn write_video(
    path: &Path,
    shape: &[usize],
    frame: impl Fn(usize) -> image::RgbImage,
) -> Result<()> {
    let frames = shape[0];
    let scratch = path.with_extension("frames");
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    for k in 0..frames {
        save_png(&scratch.join(format!("{k}.png")), &frame(k).into())?;
    }
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-nostdin",
            "-framerate",
            &frames.to_string(),
            "-i",
        ])
        .arg(scratch.join("%d.png"))
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .status();
    let _ = std::fs::remove_dir_all(&scratch);
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Error::Media {
            path: path.to_path_buf(),
            reason: format!("ffmpeg could not encode the clip ({s})"),
        }),
        Err(e) => Err(Error::Media {
            path: path.to_path_buf(),
            reason: format!("cannot run ffmpeg ({e}); install it (Debian: apt-get install ffmpeg)"),
        }),
    }
}
