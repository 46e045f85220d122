//! ConSE, the training-free aligner: an image's embedding in a text space is the
//! probability-weighted mean of the text embeddings of its classifier's top-T classes.
//!
//! Reference: Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic
//! Embeddings" (ICLR 2014), eq. 1: f(x) = (1/Z) Σ_{t=1..T} p(ŷ_t | x) · s(ŷ_t), with
//! Z = Σ_{t=1..T} p(ŷ_t | x). Here the result is also L2-normalised, for cosine search.

use candle_core::{Device, Tensor};

use crate::encoder::l2_normalize;
use crate::{Error, Result};

/// ConSE over a classifier's label set.
#[derive(Debug, Clone)]
pub struct Conse {
    /// (classes, dim): the text embedding of each class name.
    class_texts: Tensor,
    top_t: usize,
}

impl Conse {
    /// `class_texts` (classes, dim) embeds the classifier's labels in the text space;
    /// `top_t` is T (Norouzi et al. use 10).
    pub fn new(class_texts: Tensor, top_t: usize) -> Result<Self> {
        let (classes, _) = class_texts.dims2()?;
        if top_t == 0 || top_t > classes {
            return Err(Error::InvalidInput(format!(
                "ConSE needs 1 ≤ T ≤ {classes} classes, got T = {top_t}"
            )));
        }
        Ok(Self { class_texts, top_t })
    }

    /// Text-space embeddings of images from their class probabilities.
    ///
    /// # Shapes
    /// `probs`: (N, classes) softmax outputs → (N, dim), unit rows.
    pub fn forward(&self, probs: &Tensor) -> Result<Tensor> {
        let (n, classes) = probs.dims2()?;
        let expected = self.class_texts.dim(0)?;
        if classes != expected {
            return Err(Error::InvalidInput(format!(
                "ConSE: {classes} class probabilities, but {expected} class texts"
            )));
        }
        let rows: Vec<Vec<f32>> = probs.to_vec2()?;
        let mut weights = vec![0f32; n * classes];
        for (i, row) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..classes).collect();
            order.select_nth_unstable_by(self.top_t - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let top = &order[..self.top_t];
            let z: f32 = top
                .iter()
                .map(|&c| row[c])
                .sum::<f32>()
                .max(f32::MIN_POSITIVE);
            for &c in top {
                weights[i * classes + c] = row[c] / z;
            }
        }
        let weights =
            Tensor::from_vec(weights, (n, classes), &Device::Cpu)?.to_device(probs.device())?;
        l2_normalize(&weights.matmul(&self.class_texts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_mean_of_the_top_classes() {
        let texts = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [-1.0, 0.0]], &Device::Cpu).unwrap();
        let conse = Conse::new(texts, 2).unwrap();
        // Top-2 are classes 0 (0.6) and 1 (0.3): (0.6·e0 + 0.3·e1)/0.9, normalised.
        let probs = Tensor::new(&[[0.6f32, 0.3, 0.1]], &Device::Cpu).unwrap();
        let got: Vec<Vec<f32>> = conse.forward(&probs).unwrap().to_vec2().unwrap();
        let n = (0.6f32 * 0.6 + 0.3 * 0.3).sqrt();
        assert!((got[0][0] - 0.6 / n).abs() < 1e-6 && (got[0][1] - 0.3 / n).abs() < 1e-6);
        let wrong = Tensor::new(&[[0.5f32, 0.5]], &Device::Cpu).unwrap();
        assert!(conse.forward(&wrong).is_err());
        assert!(
            Conse::new(
                Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
                4
            )
            .is_err()
        );
    }
}
