//! Zero-shot image classification in any image–text space: each label becomes captions
//! from prompt templates ("a photo of a {}."), their embeddings are averaged (CLIP's
//! prompt ensembling), and an image's label scores are its cosine similarities, turned
//! into probabilities the way the space was trained ([`Scoring`]).

use std::path::Path;

use crate::index::{Embedder, Scoring, dot};
use crate::modality::image::ImageSource;
use crate::{Error, Result};

/// The template used when none is given.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// One label's score for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    pub label: String,
    /// Cosine similarity of the image and the label's ensembled caption embedding.
    pub cosine: f32,
    /// Probability under the space's [`Scoring`].
    pub probability: f32,
}

/// Labels embedded once, for scoring many images.
pub struct LabelSet {
    labels: Vec<String>,
    /// Unit rows, one per label.
    rows: Vec<Vec<f32>>,
    scoring: Scoring,
}

impl LabelSet {
    /// Embeds `labels` with every template (`{}` marks where the label goes).
    pub fn new(space: &dyn Embedder, labels: &[&str], templates: &[&str]) -> Result<Self> {
        let labels: Vec<String> = labels
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if labels.len() < 2 {
            return Err(Error::InvalidInput(
                "give at least two labels (e.g. --labels \"cat,dog\")".into(),
            ));
        }
        if templates.is_empty() {
            return Err(Error::InvalidInput("give at least one template".into()));
        }
        if let Some(bad) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::InvalidInput(format!(
                "template `{bad}` has no `{{}}` for the label"
            )));
        }
        let labels_ref: Vec<&str> = labels.iter().map(String::as_str).collect();
        let captions = captions(&labels_ref, templates);
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let embedded = space.embed_texts(&refs)?;
        let rows = embedded
            .chunks(templates.len())
            .map(|group| {
                let mut mean = vec![0f32; space.dim()];
                for row in group {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                unit(mean)
            })
            .collect();
        Ok(Self {
            labels,
            rows,
            scoring: space.scoring(),
        })
    }

    /// The labels, in the order given.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Scores of every label for one image embedding, best first.
    pub fn score(&self, image: &[f32]) -> Vec<LabelScore> {
        let cosines: Vec<f32> = self.rows.iter().map(|r| dot(r, image)).collect();
        let probabilities = self.scoring.probabilities(&cosines);
        let mut scores: Vec<LabelScore> = self
            .labels
            .iter()
            .zip(cosines.iter().zip(probabilities))
            .map(|(label, (&cosine, probability))| LabelScore {
                label: label.clone(),
                cosine,
                probability,
            })
            .collect();
        scores.sort_by(|a, b| b.cosine.total_cmp(&a.cosine));
        scores
    }

    /// Classifies image files; one result per file, a bad file failing alone.
    pub fn classify(&self, space: &dyn Embedder, images: &[&Path]) -> Vec<Result<Vec<LabelScore>>> {
        let sources: Vec<ImageSource> = images.iter().map(|&p| ImageSource::File(p)).collect();
        space
            .embed_images(&sources)
            .into_iter()
            .map(|e| e.map(|e| self.score(&e)))
            .collect()
    }
}

/// Fills each template's `{}` with each label: `labels × templates` captions, label-major.
pub fn captions(labels: &[&str], templates: &[&str]) -> Vec<String> {
    labels
        .iter()
        .flat_map(|l| templates.iter().map(move |t| t.replace("{}", l)))
        .collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts and images embed as one-hot vectors by their first letter (a, b or c).
    struct Letters;

    fn onehot(s: &str) -> Vec<f32> {
        let first = s
            .trim_start_matches("a photo of a ")
            .bytes()
            .next()
            .unwrap();
        (b'a'..=b'c')
            .map(|c| f32::from(u8::from(c == first)))
            .collect()
    }

    impl Embedder for Letters {
        fn space(&self) -> &str {
            "letters"
        }
        fn dim(&self) -> usize {
            3
        }
        fn embed_images(&self, images: &[ImageSource]) -> Vec<Result<Vec<f32>>> {
            images
                .iter()
                .map(|p| Ok(onehot(&p.name().display().to_string())))
                .collect()
        }
        fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|t| onehot(t)).collect())
        }
    }

    #[test]
    fn picks_the_matching_label_and_checks_input() {
        let set = LabelSet::new(
            &Letters,
            &["apple", " banana ", "cherry"],
            &[DEFAULT_TEMPLATE],
        )
        .unwrap();
        assert_eq!(set.labels(), ["apple", "banana", "cherry"]);
        let got = set.classify(&Letters, &[Path::new("b.jpg")]);
        let scores = got[0].as_ref().unwrap();
        assert_eq!(scores[0].label, "banana");
        assert!(scores[0].probability > 0.99);
        let total: f32 = scores.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-5);

        assert!(LabelSet::new(&Letters, &["apple"], &[DEFAULT_TEMPLATE]).is_err());
        let err = LabelSet::new(&Letters, &["a", "b"], &["no slot"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("no `{}`"), "{err}");
    }
}
