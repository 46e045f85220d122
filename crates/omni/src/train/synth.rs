//! Writes training data to disk as media files plus LLaVA-style manifests (`train.jsonl`,
//! `test.jsonl`): the synthetic scene world, Fashion-MNIST with templated captions and
//! questions, and spoken sentences (espeak-ng) with their transcripts.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::datasets::{FASHION_MNIST_CLASSES, Split, fashion_mnist};
use super::manifest::{AUDIO_TOKEN, Record, Turn, write_manifest};
use super::scenes::{QuestionKind, scenes};
use super::signals::{Sample, question};
use crate::{Error, Result};

/// How many examples of each split to write.
#[derive(Debug, Clone, Copy)]
pub struct SynthSizes {
    pub train: usize,
    pub test: usize,
}

/// What was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SynthReport {
    /// Media files (images or audio clips).
    pub images: usize,
    pub train_records: usize,
    pub test_records: usize,
}

/// Scenes from `seed`: `images/{split}-{n}.png`, a caption record and one record per
/// question for each scene. `on_image` is called after each image (progress).
pub fn write_scenes(
    dir: &Path,
    seed: u64,
    sizes: SynthSizes,
    on_image: &mut dyn FnMut(),
) -> Result<SynthReport> {
    let mut report = SynthReport::default();
    for (split, n) in [(Split::Train, sizes.train), (Split::Test, sizes.test)] {
        let name = split_name(split);
        let mut records = Vec::new();
        for (i, (scene, questions)) in scenes(seed, split, n).into_iter().enumerate() {
            let image = format!("images/{name}-{i:06}.png");
            save_png(
                &dir.join(&image),
                &image::DynamicImage::from(scene.render()),
            )?;
            report.images += 1;
            on_image();
            for q in questions {
                let kind = serde_json::to_value(q.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                records.push(Record::single(
                    format!("{name}-{i:06}-{kind}"),
                    image.clone(),
                    &q.question,
                    &q.answer,
                    &kind,
                ));
            }
        }
        finish_split(dir, split, &records, &mut report)?;
    }
    Ok(report)
}

/// The first `sizes.train` / `sizes.test` Fashion-MNIST images (from `source`, default
/// Debian's folder), each with a caption record and a "what is it" record.
pub fn write_fashion(
    dir: &Path,
    source: Option<&Path>,
    sizes: SynthSizes,
    on_image: &mut dyn FnMut(),
) -> Result<SynthReport> {
    let mut report = SynthReport::default();
    for (split, n) in [(Split::Train, sizes.train), (Split::Test, sizes.test)] {
        let name = split_name(split);
        let data = fashion_mnist(source, split)?;
        let mut records = Vec::new();
        for i in 0..n.min(data.len()) {
            let image = format!("images/fashion-{name}-{i:05}.png");
            let gray = image::GrayImage::from_raw(
                data.width as u32,
                data.height as u32,
                data.image(i).to_vec(),
            )
            .ok_or_else(|| Error::InvalidInput("Fashion-MNIST image of the wrong size".into()))?;
            save_png(&dir.join(&image), &image::DynamicImage::from(gray))?;
            report.images += 1;
            on_image();
            let class = FASHION_MNIST_CLASSES[data.labels[i] as usize].to_lowercase();
            let article = if class.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            records.push(Record::single(
                format!("fashion-{name}-{i:05}-caption"),
                image.clone(),
                "Describe the image.",
                &format!("A photo of {article} {class}."),
                "fashion-caption",
            ));
            records.push(Record::single(
                format!("fashion-{name}-{i:05}-class"),
                image,
                "What piece of clothing is this?",
                &class,
                "fashion-class",
            ));
        }
        finish_split(dir, split, &records, &mut report)?;
    }
    Ok(report)
}

const NAMES: [&str; 8] = [
    "Alice", "Bruno", "Clara", "David", "Emma", "Felix", "Grace", "Henry",
];
const VERBS: [&str; 8] = [
    "painted", "found", "carried", "washed", "sold", "bought", "opened", "dropped",
];
const ADJECTIVES: [&str; 8] = [
    "small", "heavy", "green", "broken", "shiny", "wooden", "yellow", "old",
];
const NOUNS: [&str; 8] = [
    "boat", "basket", "chair", "lamp", "letter", "bottle", "window", "drum",
];
const PLACES: [&str; 6] = [
    "in the garden",
    "near the river",
    "at the market",
    "before dinner",
    "after school",
    "on the roof",
];
/// Adjective–noun pairs only test sentences use.
const HELD_OUT_PAIRS: [(&str, &str); 4] = [
    ("green", "chair"),
    ("heavy", "letter"),
    ("shiny", "drum"),
    ("old", "lamp"),
];
/// espeak-ng voices the clips are spoken in.
const VOICES: [&str; 4] = ["en-us", "en-gb", "en-gb-x-rp", "en-029"];

/// A random sentence of `split` and the name it mentions: test sentences hold a held-out
/// adjective–noun pair, training sentences none.
fn sentence(rng: &mut StdRng, split: Split) -> (String, &'static str) {
    loop {
        let pick = |rng: &mut StdRng, n: usize| rng.random_range(0..n);
        let name = NAMES[pick(rng, NAMES.len())];
        let adjective = ADJECTIVES[pick(rng, ADJECTIVES.len())];
        let noun = NOUNS[pick(rng, NOUNS.len())];
        let held_out = HELD_OUT_PAIRS.contains(&(adjective, noun));
        if held_out != (split == Split::Test) {
            continue;
        }
        let verb = VERBS[pick(rng, VERBS.len())];
        let place = PLACES[pick(rng, PLACES.len())];
        return (
            format!("{name} {verb} the {adjective} {noun} {place}."),
            name,
        );
    }
}

/// Spoken sentences from `seed`, made with espeak-ng (voice, speed and pitch vary):
/// `audio/{split}-{n}.wav`, a transcript record ("What was said?") and a "Who is
/// mentioned?" record for each.
pub fn write_speech(
    dir: &Path,
    seed: u64,
    sizes: SynthSizes,
    on_clip: &mut dyn FnMut(),
) -> Result<SynthReport> {
    let mut report = SynthReport::default();
    let audio_dir = dir.join("audio");
    std::fs::create_dir_all(&audio_dir).map_err(|e| Error::io(&audio_dir, e))?;
    for (split, n) in [(Split::Train, sizes.train), (Split::Test, sizes.test)] {
        let name = split_name(split);
        let salt = if split == Split::Train {
            0x5a11
        } else {
            0x5a12
        };
        let mut rng = StdRng::seed_from_u64(seed ^ salt);
        let mut records = Vec::new();
        for i in 0..n {
            let (text, who) = sentence(&mut rng, split);
            let voice = VOICES[rng.random_range(0..VOICES.len())];
            let speed = rng.random_range(140..190u32);
            let pitch = rng.random_range(30..70u32);
            let clip = format!("audio/{name}-{i:06}.wav");
            speak(&text, voice, speed, pitch, &dir.join(&clip))?;
            report.images += 1;
            on_clip();
            for (kind, question, answer) in [
                ("transcript", "What was said?", text.as_str()),
                ("who", "Who is mentioned?", who),
            ] {
                records.push(Record {
                    id: format!("{name}-{i:06}-{kind}"),
                    image: None,
                    audio: Some(clip.clone()),
                    conversations: vec![
                        Turn {
                            from: "human".into(),
                            value: format!("{AUDIO_TOKEN}\n{question}"),
                        },
                        Turn {
                            from: "gpt".into(),
                            value: answer.into(),
                        },
                    ],
                    kind: Some(kind.into()),
                });
            }
        }
        finish_split(dir, split, &records, &mut report)?;
    }
    Ok(report)
}

/// A spoken sentence of `split` for OneLLM's audio stem: its Whisper log-mel map
/// `(mel bins, frames)` (trimmed or zero-padded), the sentence as caption, and who and
/// what it mentions as questions. The clip is spoken into `scratch` (a file path).
pub fn spoken_sentence(
    rng: &mut StdRng,
    split: Split,
    mel: &crate::modality::audio::MelExtractor,
    frames: usize,
    scratch: &Path,
) -> Result<Sample> {
    let (text, who) = sentence(rng, split);
    let voice = VOICES[rng.random_range(0..VOICES.len())];
    let speed = rng.random_range(150..190u32);
    let pitch = rng.random_range(30..70u32);
    speak(&text, voice, speed, pitch, scratch)?;
    let samples = crate::modality::audio::load_mono(scratch, crate::modality::audio::SAMPLE_RATE)?;
    let spectrogram = mel.compute(&samples);
    let what = NOUNS
        .iter()
        .find(|n| text.contains(&format!(" {n} ")))
        .copied()
        .unwrap_or_default();
    Ok(Sample {
        data: spectrogram.window(0, frames, frames),
        shape: vec![mel.n_mels(), frames],
        caption: text,
        questions: vec![
            question(QuestionKind::Who, "Who is mentioned?", who),
            question(QuestionKind::What, "What object is mentioned?", what),
        ],
    })
}

/// Runs espeak-ng to write `text` as a WAV file.
fn speak(text: &str, voice: &str, speed: u32, pitch: u32, out: &Path) -> Result<()> {
    let status = std::process::Command::new("espeak-ng")
        .args([
            "-v",
            voice,
            "-s",
            &speed.to_string(),
            "-p",
            &pitch.to_string(),
            "-w",
        ])
        .arg(out)
        .arg(text)
        .status()
        .map_err(|e| {
            Error::InvalidInput(format!(
                "cannot run espeak-ng ({e}); install it (Debian: apt-get install espeak-ng)"
            ))
        })?;
    if !status.success() {
        return Err(Error::InvalidInput(format!(
            "espeak-ng failed ({status}) on \"{text}\""
        )));
    }
    Ok(())
}

pub(crate) fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

fn finish_split(
    dir: &Path,
    split: Split,
    records: &[Record],
    report: &mut SynthReport,
) -> Result<()> {
    // An empty split (e.g. `--test 0`) writes no manifest: readers refuse empty ones.
    if !records.is_empty() {
        write_manifest(&dir.join(format!("{}.jsonl", split_name(split))), records)?;
    }
    match split {
        Split::Train => report.train_records = records.len(),
        Split::Test => report.test_records = records.len(),
    }
    Ok(())
}

/// Saves `image` as PNG at `path`, making its folder.
pub(crate) fn save_png(path: &Path, image: &image::DynamicImage) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::Media {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::manifest::Manifest;

    #[test]
    fn scene_datasets_are_written_as_valid_manifests() {
        let dir = std::env::temp_dir().join(format!("omni-synth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut images = 0;
        let report = write_scenes(&dir, 4, SynthSizes { train: 6, test: 3 }, &mut || {
            images += 1
        })
        .unwrap();
        assert_eq!((report.images, images), (9, 9));
        let train = Manifest::read(&dir.join("train.jsonl")).unwrap();
        assert_eq!(train.records.len(), report.train_records);
        for record in &train.records {
            let image = image::open(record.image.as_deref().unwrap()).unwrap();
            assert_eq!((image.width(), image.height()), (224, 224));
        }
        assert!(
            train
                .records
                .iter()
                .any(|r| r.kind.as_deref() == Some("caption"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
