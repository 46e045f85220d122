//! Quantized linear layers over GGUF tensors.
//!
//! Q4_1, Q8_0 and Q5_0 weights (SmolLM2's file, most of Qwen2.5's) run on our own kernels (`kernels.rs`, AVX2 in
//! `avx2.rs`): candle 0.11's CPU `QMatMul` has no SIMD path for Q4_1 (1.5–7 tok/s on
//! SmolLM2 here), and one fused, allocation-free call per group of matmuls sharing an
//! input (q/k/v, gate/up) keeps the per-token overhead of 30 small layers low. Every other
//! GGUF type goes through candle's `QMatMul`. Activations are quantized to 8 bits per block
//! of 32 exactly as llama.cpp does before its quantized dot products, so results match
//! llama.cpp's up to float summation order.

mod acts;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod kernels;
mod packed;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

pub(crate) use acts::QActs;
pub(crate) use kernels::hsum_float_8;
use packed::{Q4_1Matrix, Q8_0Matrix};

use crate::Result;

/// Weight rows per work item.
const ROW_TILE: usize = 16;
/// Activation rows per work item (prefill): weight and activation tiles stay in L1.
const ACT_TILE: usize = 32;

/// A linear layer `y = x · Wᵀ` with a GGUF weight of shape `n × k` (no bias).
#[derive(Debug)]
pub(crate) enum QLinear {
    Q4_1(Q4_1Matrix),
    Q8_0(Q8_0Matrix),
    /// Any other GGUF type, through candle.
    Candle {
        qmm: QMatMul,
        n: usize,
        k: usize,
    },
}

impl QLinear {
    /// Wraps a GGUF tensor of shape `(n, k)` (candle's order: rows first).
    pub(crate) fn from_qtensor(t: QTensor) -> Result<Self> {
        let (n, k) = t.shape().dims2()?;
        let packed = match t.dtype() {
            GgmlDType::Q4_1 => Q4_1Matrix::from_ggml(&t.data()?, n, k).map(Self::Q4_1),
            GgmlDType::Q8_0 => Q8_0Matrix::from_ggml(&t.data()?, n, k).map(Self::Q8_0),
            GgmlDType::Q5_0 => Q8_0Matrix::from_ggml_q5_0(&t.data()?, n, k).map(Self::Q8_0),
            _ => None,
        };
        Ok(match packed {
            Some(packed) => packed,
            None => Self::Candle {
                qmm: QMatMul::from_qtensor(t)?,
                n,
                k,
            },
        })
    }

    /// Output features.
    pub(crate) fn n(&self) -> usize {
        match self {
            Self::Q4_1(w) => w.n,
            Self::Q8_0(w) => w.n,
            Self::Candle { n, .. } => *n,
        }
    }

    /// Input features.
    pub(crate) fn k(&self) -> usize {
        match self {
            Self::Q4_1(w) => w.k,
            Self::Q8_0(w) => w.k,
            Self::Candle { k, .. } => *k,
        }
    }

    /// Rows `ids` of the weight as f32 (`ids.len() × k`): an embedding lookup.
    pub(crate) fn rows(&self, ids: &[u32], out: &mut [f32]) -> Result<()> {
        let k = self.k();
        match self {
            Self::Q4_1(w) => {
                for (i, &id) in ids.iter().enumerate() {
                    w.dequantize_row(id as usize, &mut out[i * k..(i + 1) * k]);
                }
            }
            Self::Q8_0(w) => {
                for (i, &id) in ids.iter().enumerate() {
                    w.dequantize_row(id as usize, &mut out[i * k..(i + 1) * k]);
                }
            }
            Self::Candle { qmm, .. } => {
                let ids = Tensor::new(ids, &Device::Cpu)?;
                let rows = qmm.embedding(&ids)?.flatten_all()?.to_vec1::<f32>()?;
                out[..rows.len()].copy_from_slice(&rows);
            }
        }
        Ok(())
    }

    /// The whole weight as f32 `(n, k)`.
    pub(crate) fn dequantize(&self) -> Result<Tensor> {
        let (n, k) = (self.n(), self.k());
        let ids: Vec<u32> = (0..n as u32).collect();
        let mut out = vec![0f32; n * k];
        self.rows(&ids, &mut out)?;
        Ok(Tensor::from_vec(out, (n, k), &Device::Cpu)?)
    }

    /// `weight + delta` re-quantized to Q8_0 (a merged LoRA adapter).
    pub(crate) fn add(&self, delta: &Tensor) -> Result<Self> {
        let merged = (self.dequantize()? + delta)?;
        Self::from_qtensor(QTensor::quantize(&merged, GgmlDType::Q8_0)?)
    }

    fn is_packed(&self) -> bool {
        !matches!(self, Self::Candle { .. })
    }
}

/// A raw pointer that worker threads write disjoint elements through.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every work item writes a disjoint set of output elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

pub(crate) use super::pool::parallel_for;

/// Several linear layers applied to the same input `x` (`m × k`) in one parallel region:
/// `outs[j][i · n_j + r] = Σ_e x[i · k + e] · W_j[r, e]`.
///
/// `acts` is scratch space reused across calls.
pub(crate) fn matmul_many(
    ws: &[&QLinear],
    x: &[f32],
    m: usize,
    acts: &mut QActs,
    outs: &mut [&mut [f32]],
) -> Result<()> {
    assert_eq!(ws.len(), outs.len());
    let Some(k) = ws.first().map(|w| w.k()) else {
        return Ok(());
    };
    assert_eq!(x.len(), m * k);
    for (w, out) in ws.iter().zip(outs.iter()) {
        assert_eq!(w.k(), k);
        assert!(out.len() >= m * w.n());
    }
    if ws.iter().any(|w| w.is_packed()) {
        acts.quantize(x, m, k);
        let acts = &*acts;
        // Work items: (activation tile, weight, row tile), activation tile major.
        let mut starts = Vec::with_capacity(ws.len() + 1);
        let mut total_tiles = 0;
        for w in ws {
            starts.push(total_tiles);
            if w.is_packed() {
                total_tiles += w.n().div_ceil(ROW_TILE);
            }
        }
        starts.push(total_tiles);
        let act_tiles = m.div_ceil(ACT_TILE);
        let ptrs: Vec<SharedOut> = outs.iter_mut().map(|o| SharedOut(o.as_mut_ptr())).collect();
        let (ptrs, starts) = (&ptrs, &starts);
        parallel_for(act_tiles * total_tiles, |items| {
            for item in items {
                let (t, tile) = (item / total_tiles, item % total_tiles);
                let j = starts.partition_point(|&s| s <= tile) - 1;
                let w = ws[j];
                let rows =
                    (tile - starts[j]) * ROW_TILE..((tile - starts[j] + 1) * ROW_TILE).min(w.n());
                let acts_range = t * ACT_TILE..((t + 1) * ACT_TILE).min(m);
                run_tile(w, rows, acts, acts_range, ptrs[j]);
            }
        });
    }
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        if let QLinear::Candle { qmm, n, .. } = w {
            let xt = Tensor::from_slice(x, (m, k), &Device::Cpu)?;
            let y = qmm.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?;
            out[..m * n].copy_from_slice(&y);
        }
    }
    Ok(())
}

fn run_tile(
    w: &QLinear,
    rows: std::ops::Range<usize>,
    acts: &QActs,
    act_rows: std::ops::Range<usize>,
    out: SharedOut,
) {
    let n = w.n();
    let (r0, r1) = (rows.start, rows.end);
    if act_rows.len() > 1
        && let QLinear::Q4_1(w) = w
    {
        let a: Vec<_> = act_rows.clone().map(|i| acts.row(i)).collect();
        // SAFETY: this work item alone writes (i, r) for its activation and weight rows;
        // `matmul_many` checked the output holds m × n values.
        unsafe { kernels::gemm_q4_1(w, rows, &a, out.0.add(act_rows.start * n), n) };
        return;
    }
    for i in act_rows {
        // SAFETY: as above; the slice covers (i, r0..r1) only.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(i * n + r0), r1 - r0) };
        match w {
            QLinear::Q4_1(w) => kernels::gemv_q4_1(w, rows.clone(), &acts.row(i), dst),
            QLinear::Q8_0(w) => kernels::gemv_q8_0(w, rows.clone(), &acts.row(i), dst),
            QLinear::Candle { .. } => unreachable!("packed weights only"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn dequantized_and_merged_weights_keep_their_values() {
        let w = Tensor::randn(0f32, 1.0, (48, 96), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let reference = q.dequantize(&Device::Cpu).unwrap();
            let linear = QLinear::from_qtensor(q).unwrap();
            assert!(linear.is_packed());
            let ours = linear.dequantize().unwrap();
            assert_eq!(max_diff(&ours, &reference), 0.0, "{dtype:?}");
            // Adding a change re-quantizes to Q8_0: close to the exact sum.
            let delta = Tensor::randn(0f32, 0.1, (48, 96), &Device::Cpu).unwrap();
            let merged = linear.add(&delta).unwrap().dequantize().unwrap();
            let exact = (reference + delta).unwrap();
            let diff = max_diff(&merged, &exact);
            assert!(diff < 0.05, "{dtype:?}: {diff}");
        }
    }

    #[test]
    fn mixed_weight_types_multiply_together() {
        let x = Tensor::randn(0f32, 1.0, (5, 96), &Device::Cpu).unwrap();
        let w4 = Tensor::randn(0f32, 1.0, (48, 96), &Device::Cpu).unwrap();
        let w8 = Tensor::randn(0f32, 1.0, (40, 96), &Device::Cpu).unwrap();
        let q4 = QLinear::from_qtensor(QTensor::quantize(&w4, GgmlDType::Q4_1).unwrap()).unwrap();
        let q8 = QLinear::from_qtensor(QTensor::quantize(&w8, GgmlDType::Q8_0).unwrap()).unwrap();
        for m in [1, 5] {
            let xm = x.narrow(0, 0, m).unwrap();
            let xs: Vec<f32> = xm.flatten_all().unwrap().to_vec1().unwrap();
            let (mut o4, mut o8) = (vec![0f32; m * 48], vec![0f32; m * 40]);
            let mut acts = QActs::default();
            matmul_many(&[&q4, &q8], &xs, m, &mut acts, &mut [&mut o4, &mut o8]).unwrap();
            for (q, out, n) in [(&q4, o4, 48), (&q8, o8, 40)] {
                let want = xm.matmul(&q.dequantize().unwrap().t().unwrap()).unwrap();
                let got = Tensor::from_vec(out, (m, n), &Device::Cpu).unwrap();
                let diff = max_diff(&got, &want);
                assert!(diff < 0.5, "m = {m}, n = {n}: {diff}");
            }
        }
    }
}
