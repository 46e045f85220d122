//! Writes training data to disk as images plus LLaVA-style manifests (`train.jsonl`,
//! `test.jsonl`): the synthetic scene world, and Fashion-MNIST with templated captions
//! and questions.

use std::path::Path;

use super::datasets::{FASHION_MNIST_CLASSES, Split, fashion_mnist};
use super::manifest::{Record, write_manifest};
use super::scenes::scenes;
use crate::{Error, Result};

/// How many examples of each split to write.
#[derive(Debug, Clone, Copy)]
pub struct SynthSizes {
    pub train: usize,
    pub test: usize,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthReport {
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
    let mut report = SynthReport {
        images: 0,
        train_records: 0,
        test_records: 0,
    };
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
    let mut report = SynthReport {
        images: 0,
        train_records: 0,
        test_records: 0,
    };
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
                "caption",
            ));
            records.push(Record::single(
                format!("fashion-{name}-{i:05}-class"),
                image,
                "What piece of clothing is this?",
                &class,
                "class",
            ));
        }
        finish_split(dir, split, &records, &mut report)?;
    }
    Ok(report)
}

fn split_name(split: Split) -> &'static str {
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
    write_manifest(&dir.join(format!("{}.jsonl", split_name(split))), records)?;
    match split {
        Split::Train => report.train_records = records.len(),
        Split::Test => report.test_records = records.len(),
    }
    Ok(())
}

fn save_png(path: &Path, image: &image::DynamicImage) -> Result<()> {
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
            let path = train.media_path(record.image.as_deref().unwrap());
            let image = image::open(&path).unwrap();
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
