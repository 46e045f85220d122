//! Sentence pooling as sentence-transformers' `Pooling` and `Normalize` modules compute it.

use candle_core::{D, Tensor};

use crate::Result;

/// Mean of the token states under the mask: `sum(h·m) / max(sum(m), 1e-9)`.
///
/// # Shapes
/// `states`: `[b, s, d]`, `mask`: `[b, s]` (any numeric dtype) → `[b, d]`.
pub fn mean(states: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?; // [b, s, 1]
    let sum = states.broadcast_mul(&m)?.sum(1)?; // [b, d]
    let count = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // [b, 1]
    Ok(sum.broadcast_div(&count)?)
}

pub use crate::encoder::l2_normalize;
