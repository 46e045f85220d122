//! CLIP's symmetric InfoNCE loss with a learnable temperature, generalised to batches in
//! which several images share a caption (class captions: every image of a class has the
//! same positive text).
//!
//! Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
//! Supervision" (2021), Figure 3; van den Oord et al., "Representation Learning with
//! Contrastive Predictive Coding" (2018).

use candle_core::{D, DType, Tensor};

use crate::{Error, Result};

/// The loss of a batch: `images` (B, D) and `texts` (T, D), both L2-normalised; image `i`'s
/// positive is `texts[targets[i]]`. `log_scale` is the learnable scalar whose exp
/// multiplies the cosine similarities (CLIP initialises it to ln(1/0.07)).
///
/// Image→text: cross-entropy over the T texts. Text→image: for each text that is some
/// image's positive, cross-entropy over the B images with the target spread evenly over
/// its positives. The loss is the mean of the two directions.
pub fn info_nce(
    images: &Tensor,
    texts: &Tensor,
    targets: &[u32],
    log_scale: &Tensor,
) -> Result<Tensor> {
    let (b, t) = (images.dim(0)?, texts.dim(0)?);
    if targets.len() != b || b == 0 {
        return Err(Error::InvalidInput(format!(
            "info_nce: {} targets for {b} images",
            targets.len()
        )));
    }
    if let Some(bad) = targets.iter().find(|&&x| x as usize >= t) {
        return Err(Error::InvalidInput(format!(
            "info_nce: target {bad} but only {t} texts"
        )));
    }
    let device = images.device();
    let logits = images
        .matmul(&texts.t()?)?
        .broadcast_mul(&log_scale.exp()?)?; // (B, T)
    let target_ids = Tensor::new(targets, device)?;
    let image_to_text = candle_nn::loss::cross_entropy(&logits, &target_ids)?;

    // Text→image targets: row t spreads 1 over the images whose positive is t.
    let mut counts = vec![0f32; t];
    for &x in targets {
        counts[x as usize] += 1.0;
    }
    let mut weights = vec![0f32; t * b];
    for (i, &x) in targets.iter().enumerate() {
        weights[x as usize * b + i] = 1.0 / counts[x as usize];
    }
    let present = counts.iter().filter(|&&c| c > 0.0).count() as f64;
    let weights = Tensor::from_vec(weights, (t, b), device)?;
    let log_probs = candle_nn::ops::log_softmax(&logits.t()?, D::Minus1)?; // (T, B)
    let text_to_image = ((log_probs * weights)?.sum_all()? * (-1.0 / present))?;
    Ok(((image_to_text + text_to_image)? * 0.5)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn unit_rows(v: &[f32], cols: usize) -> Tensor {
        let t = Tensor::from_slice(v, (v.len() / cols, cols), &Device::Cpu).unwrap();
        let n = t.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
        t.broadcast_div(&n).unwrap()
    }

    /// With distinct targets this is CLIP's loss: (CE(logits) + CE(logitsᵀ)) / 2.
    #[test]
    fn equals_clip_on_distinct_pairs() {
        let img = unit_rows(&[1.0, 0.2, 0.1, 0.3, 1.0, 0.0, 0.0, 0.5, 1.0], 3);
        let txt = unit_rows(&[0.9, 0.1, 0.0, 0.1, 0.8, 0.3, 0.2, 0.2, 0.9], 3);
        let s = Tensor::new(2.0f32, &Device::Cpu).unwrap();
        let got = info_nce(&img, &txt, &[0, 1, 2], &s).unwrap();
        let logits = (img.matmul(&txt.t().unwrap()).unwrap() * 2f64.exp()).unwrap();
        let ids = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
        let a = candle_nn::loss::cross_entropy(&logits, &ids).unwrap();
        let b = candle_nn::loss::cross_entropy(&logits.t().unwrap(), &ids).unwrap();
        let want = ((a + b).unwrap() * 0.5).unwrap();
        let (got, want) = (
            got.to_scalar::<f32>().unwrap(),
            want.to_scalar::<f32>().unwrap(),
        );
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn shared_captions_and_bad_targets() {
        let img = unit_rows(&[1.0, 0.0, 0.9, 0.1, 0.0, 1.0], 2);
        let txt = unit_rows(&[1.0, 0.0, 0.0, 1.0], 2);
        let s = Tensor::new(3.0f32, &Device::Cpu).unwrap();
        let good = info_nce(&img, &txt, &[0, 0, 1], &s).unwrap();
        let bad = info_nce(&img, &txt, &[1, 1, 0], &s).unwrap();
        assert!(good.to_scalar::<f32>().unwrap() < bad.to_scalar::<f32>().unwrap());
        assert!(info_nce(&img, &txt, &[0, 2, 1], &s).is_err());
        assert!(info_nce(&img, &txt, &[0, 1], &s).is_err());
    }
}
