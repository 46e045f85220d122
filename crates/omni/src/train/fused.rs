//! A transformer's element-wise pieces (RMSNorm, rotary embeddings, attention softmax,
//! SwiGLU's gate) as single ops with hand-written backward passes. Composed of candle's
//! primitives, each is 5–15 ops forward and about twice that backward, every one a pass
//! over memory and an allocation: training through a frozen decoder spent more time there
//! than in its matrix products. Each op here is one pass forward and one backward, rows in
//! parallel; f32 and f64 (the gradient checks run in f64).

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, WithDType, bail,
};
use num_traits::{Float, One, Zero};
use rayon::prelude::*;

use crate::Result;

/// The floats these ops run on.
trait Real: Float + WithDType + Send + Sync {}
impl Real for f32 {}
impl Real for f64 {}

/// Outputs of at least this many values are computed on the thread pool.
const PARALLEL_VALUES: usize = 1 << 14;

/// Evaluates `$body` with `$t` the Rust type of `$dtype` (f32 or f64).
macro_rules! by_dtype {
    ($dtype:expr, $op:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            other => bail!("{}: f32 or f64 expected, got {other:?}", $op),
        }
    };
}

/// The values of a contiguous CPU storage.
fn slice<'a, T: Real>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: the input is not contiguous")
    };
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// The values of `t` in order.
fn values<T: Real>(t: &Tensor) -> candle_core::Result<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// Row `r` (of `width` values) of each of `inputs` and of the output, for each row, in
/// parallel when the output is large.
fn map_rows<T: Real>(
    inputs: &[&[T]],
    width: usize,
    f: impl Fn(usize, &[&[T]], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); inputs[0].len()];
    if width == 0 {
        return out;
    }
    let run = |(r, row): (usize, &mut [T])| {
        let rows: Vec<&[T]> = inputs
            .iter()
            .map(|v| &v[r * width..(r + 1) * width])
            .collect();
        f(r, &rows, row);
    };
    if out.len() >= PARALLEL_VALUES {
        out.par_chunks_mut(width).enumerate().for_each(run);
    } else {
        out.chunks_mut(width).enumerate().for_each(run);
    }
    out
}

fn tensor<T: Real>(values: Vec<T>, shape: &Shape) -> candle_core::Result<Tensor> {
    Tensor::from_vec(values, shape.clone(), &candle_core::Device::Cpu)
}

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension (differentiable in `x` and `w`).
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps })?)
}

struct RmsNorm {
    eps: f64,
}

fn inverse_rms<T: Real>(x: &[T], eps: f64) -> T {
    let mean = x.iter().fold(T::zero(), |s, &v| s + v * v) / T::from_f64(x.len() as f64);
    (mean + T::from_f64(eps)).sqrt().recip()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = xl.dims().last().copied().unwrap_or(0);
        if wl.dims() != [d] {
            bail!(
                "rms norm: a weight of shape {:?} for rows of {d}",
                wl.dims()
            );
        }
        let out = by_dtype!(xs.dtype(), self.name(), T => {
            let (x, w) = (slice::<T>(xs, xl, self.name())?, slice::<T>(ws, wl, self.name())?);
            T::to_cpu_storage_owned(map_rows(&[x], d, |_, rows, out| {
                let r = inverse_rms(rows[0], self.eps);
                for ((o, &v), &g) in out.iter_mut().zip(rows[0]).zip(w) {
                    *o = v * r * g;
                }
            }))
        });
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.dim(0)?;
        by_dtype!(x.dtype(), self.name(), T => {
            let (xv, wv, gv) = (values::<T>(x)?, values::<T>(w)?, values::<T>(grad)?);
            let norm = T::from_f64(d as f64);
            // dx = r·(g⊙w) − x·r³·Σ(g⊙w⊙x)/D
            let dx = map_rows(&[&xv, &gv], d, |_, rows, out| {
                let (x, g) = (rows[0], rows[1]);
                let r = inverse_rms(x, self.eps);
                let dot = x
                    .iter()
                    .zip(g)
                    .zip(&wv)
                    .fold(T::zero(), |s, ((&a, &b), &c)| s + a * b * c);
                let k = r * r * r * dot / norm;
                for (((o, &a), &b), &c) in out.iter_mut().zip(x).zip(g).zip(&wv) {
                    *o = r * b * c - a * k;
                }
            });
            // dw = Σ_rows g⊙x·r, only when the weight trains.
            let dw = if w.track_op() {
                let mut dw = vec![T::zero(); d];
                for (x, g) in xv.chunks_exact(d).zip(gv.chunks_exact(d)) {
                    let r = inverse_rms(x, self.eps);
                    for ((o, &a), &b) in dw.iter_mut().zip(x).zip(g) {
                        *o += a * b * r;
                    }
                }
                Some(tensor(dw, w.shape())?)
            } else {
                None
            };
            Ok((Some(tensor(dx, x.shape())?), dw))
        })
    }
}

/// Rotary position embeddings of `x` (b, heads, t, head_dim): `cos` and `sin` (t,
/// head_dim / 2) hold the angles of the t positions; pairs are the two halves of a head
/// (`interleaved = false`, GPT-NeoX's layout) or neighbours (`true`).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (_, _, t, hd) = x.dims4()?;
    if cos.dims() != [t, hd / 2] || sin.dims() != cos.dims() || hd % 2 != 0 {
        return Err(crate::Error::InvalidInput(format!(
            "rotary tables of shapes {:?} and {:?} for {t} positions of heads of {hd}",
            cos.dims(),
            sin.dims()
        )));
    }
    let table = |v: &Tensor| -> Result<Vec<f64>> { Ok(values::<f64>(&v.to_dtype(DType::F64)?)?) };
    let op = Rope {
        cos: table(cos)?,
        sin: table(sin)?,
        positions: t,
        interleaved,
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

struct Rope {
    /// (positions, head_dim / 2)
    cos: Vec<f64>,
    sin: Vec<f64>,
    positions: usize,
    interleaved: bool,
}

impl Rope {
    /// Each head row rotated by its position's angles, `sign = -1`: by their opposites
    /// (the transpose, which is the backward pass).
    fn rotate<T: Real>(&self, x: &[T], sign: f64) -> Vec<T> {
        let half = self.cos.len() / self.positions.max(1);
        map_rows(&[x], 2 * half, |r, rows, out| {
            let p = r % self.positions;
            for i in 0..half {
                let c = T::from_f64(self.cos[p * half + i]);
                let s = T::from_f64(sign * self.sin[p * half + i]);
                let (a, b) = match self.interleaved {
                    true => (2 * i, 2 * i + 1),
                    false => (i, i + half),
                };
                let (xa, xb) = (rows[0][a], rows[0][b]);
                out[a] = xa * c - xb * s;
                out[b] = xb * c + xa * s;
            }
        })
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = by_dtype!(s.dtype(), self.name(), T => {
            T::to_cpu_storage_owned(self.rotate(slice::<T>(s, l, self.name())?, 1.0))
        });
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        by_dtype!(x.dtype(), self.name(), T => {
            Ok(Some(tensor(self.rotate(&values::<T>(grad)?, -1.0), x.shape())?))
        })
    }
}

/// `softmax(scale · x)` over the last dimension of attention scores `x` (…, queries,
/// keys). `causal`: query i sees keys up to `i + keys − queries` only (the rest get
/// probability 0), so the last query sees every key.
pub(crate) fn attention_softmax(x: &Tensor, scale: f64, causal: bool) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || (causal && dims[dims.len() - 2] > dims[dims.len() - 1]) {
        return Err(crate::Error::InvalidInput(format!(
            "attention scores of shape {dims:?}: (…, queries, keys) expected, no more queries than keys when causal"
        )));
    }
    let (queries, keys) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let op = Softmax {
        scale,
        queries,
        keys,
        causal,
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

struct Softmax {
    scale: f64,
    queries: usize,
    keys: usize,
    causal: bool,
}

impl Softmax {
    /// How many keys row `r` of the scores sees.
    fn visible(&self, r: usize) -> usize {
        match self.causal {
            true => r % self.queries + self.keys - self.queries + 1,
            false => self.keys,
        }
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-attention-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = by_dtype!(s.dtype(), self.name(), T => {
            let scale = T::from_f64(self.scale);
            T::to_cpu_storage_owned(map_rows(&[slice::<T>(s, l, self.name())?], self.keys, |r, rows, out| {
                let n = self.visible(r);
                let (x, out) = (&rows[0][..n], &mut out[..n]);
                let max = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v * scale));
                let mut sum = T::zero();
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (v * scale - max).exp();
                    sum += *o;
                }
                out.iter_mut().for_each(|o| *o /= sum);
            }))
        });
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        by_dtype!(x.dtype(), self.name(), T => {
            let (y, g) = (values::<T>(res)?, values::<T>(grad)?);
            let scale = T::from_f64(self.scale);
            // dx = scale · y ⊙ (g − Σ g⊙y)
            let dx = map_rows(&[&y, &g], self.keys, |_, rows, out| {
                let (y, g) = (rows[0], rows[1]);
                let dot = y.iter().zip(g).fold(T::zero(), |s, (&a, &b)| s + a * b);
                for ((o, &a), &b) in out.iter_mut().zip(y).zip(g) {
                    *o = scale * a * (b - dot);
                }
            });
            Ok(Some(tensor(dx, x.shape())?))
        })
    }
}

/// SwiGLU's `silu(gate) ⊙ up` (tensors of one shape).
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(crate::Error::InvalidInput(format!(
            "gate of shape {:?} and up projection of shape {:?}",
            gate.dims(),
            up.dims()
        )));
    }
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)?)
}

struct SiluMul;

fn sigmoid<T: Real>(v: T) -> T {
    (T::one() + (-v).exp()).recip()
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "fused-silu-mul"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let width = gl.dims().last().copied().unwrap_or(0);
        let out = by_dtype!(gs.dtype(), self.name(), T => {
            let (g, u) = (slice::<T>(gs, gl, self.name())?, slice::<T>(us, ul, self.name())?);
            T::to_cpu_storage_owned(map_rows(&[g, u], width, |_, rows, out| {
                for ((o, &a), &b) in out.iter_mut().zip(rows[0]).zip(rows[1]) {
                    *o = a * sigmoid(a) * b;
                }
            }))
        });
        Ok((out, gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let width = gate.dims().last().copied().unwrap_or(0);
        by_dtype!(gate.dtype(), self.name(), T => {
            let (g, u, dy) = (values::<T>(gate)?, values::<T>(up)?, values::<T>(grad)?);
            let d_gate = gate.track_op().then(|| {
                map_rows(&[&g, &u, &dy], width, |_, rows, out| {
                    for (i, o) in out.iter_mut().enumerate() {
                        let (a, s) = (rows[0][i], sigmoid(rows[0][i]));
                        *o = rows[2][i] * rows[1][i] * s * (T::one() + a * (T::one() - s));
                    }
                })
            });
            let d_up = up.track_op().then(|| {
                map_rows(&[&g, &dy], width, |_, rows, out| {
                    for ((o, &a), &d) in out.iter_mut().zip(rows[0]).zip(rows[1]) {
                        *o = d * a * sigmoid(a);
                    }
                })
            });
            Ok((
                d_gate.map(|v| tensor(v, gate.shape())).transpose()?,
                d_up.map(|v| tensor(v, up.shape())).transpose()?,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Var};

    use super::*;
    use crate::llm::dense::test_support::{max_abs_diff as diff, values};

    fn var(shape: &[usize], seed: u64) -> Var {
        let mut seed = seed;
        let n = shape.iter().product();
        Var::from_vec(values(n, &mut seed), shape, &Device::Cpu).unwrap()
    }

    /// The fused op and candle's composition agree in value and in the gradients of
    /// `Σ y ⊙ r` (r random) with respect to each input.
    fn same_as_composed(
        inputs: &[&Var],
        fused: impl Fn(&[&Tensor]) -> Tensor,
        composed: impl Fn(&[&Tensor]) -> Tensor,
    ) {
        let xs: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
        let (a, b) = (fused(&xs), composed(&xs));
        let weights = var(a.dims(), 99);
        assert!(diff(&a, &b) < 1e-12, "values differ by {}", diff(&a, &b));
        let grads = |y: &Tensor| {
            (y * weights.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (ga, gb) = (grads(&a), grads(&b));
        for x in &xs {
            let (p, q) = (ga.get(x).unwrap(), gb.get(x).unwrap());
            assert!(diff(p, q) < 1e-12, "gradients differ by {}", diff(p, q));
        }
    }

    #[test]
    fn rms_norm_matches_the_composed_ops() {
        let (x, w) = (var(&[2, 3, 8], 1), var(&[8], 2));
        same_as_composed(
            &[&x, &w],
            |t| rms_norm(t[0], t[1], 1e-6).unwrap(),
            |t| {
                let r = (t[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                    .unwrap()
                    .sqrt()
                    .unwrap();
                t[0].broadcast_div(&r).unwrap().broadcast_mul(t[1]).unwrap()
            },
        );
    }

    #[test]
    fn rope_matches_candle_in_both_layouts() {
        let x = var(&[2, 3, 5, 8], 3);
        let angles: Vec<f64> = (0..5 * 4).map(|i| i as f64 * 0.37).collect();
        let table = |f: fn(f64) -> f64| {
            Tensor::from_vec(
                angles.iter().map(|&a| f(a)).collect::<Vec<_>>(),
                (5, 4),
                &Device::Cpu,
            )
            .unwrap()
        };
        let (cos, sin) = (table(f64::cos), table(f64::sin));
        same_as_composed(
            &[&x],
            |t| rope(t[0], &cos, &sin, false).unwrap(),
            |t| candle_nn::rotary_emb::rope_slow(t[0], &cos, &sin).unwrap(),
        );
        same_as_composed(
            &[&x],
            |t| rope(t[0], &cos, &sin, true).unwrap(),
            |t| candle_nn::rotary_emb::rope_i_slow(t[0], &cos, &sin).unwrap(),
        );
    }

    #[test]
    fn attention_softmax_matches_scaled_masked_softmax() {
        // 3 queries after 2 cached positions: query i sees keys 0..=i + 2.
        let x = var(&[2, 3, 5], 4);
        let mask: Vec<f64> = (0..3)
            .flat_map(|i| (0..5).map(move |j| if j > i + 2 { f64::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (3, 5), &Device::Cpu).unwrap();
        same_as_composed(
            &[&x],
            |t| attention_softmax(t[0], 0.5, true).unwrap(),
            |t| {
                let s = (t[0] * 0.5).unwrap().broadcast_add(&mask).unwrap();
                candle_nn::ops::softmax(&s, D::Minus1).unwrap()
            },
        );
        same_as_composed(
            &[&x],
            |t| attention_softmax(t[0], 0.5, false).unwrap(),
            |t| candle_nn::ops::softmax(&(t[0] * 0.5).unwrap(), D::Minus1).unwrap(),
        );
    }

    #[test]
    fn silu_mul_matches_the_composed_ops() {
        let (g, u) = (var(&[4, 6], 5), var(&[4, 6], 6));
        same_as_composed(
            &[&g, &u],
            |t| silu_mul(t[0], t[1]).unwrap(),
            |t| (candle_nn::ops::silu(t[0]).unwrap() * t[1]).unwrap(),
        );
    }

    #[test]
    fn large_inputs_take_the_parallel_path_with_the_same_values() {
        let x = var(&[64, 512], 7);
        let w = var(&[512], 8);
        let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let rows = rms_norm(&x.as_tensor().narrow(0, 5, 1).unwrap(), w.as_tensor(), 1e-5).unwrap();
        assert_eq!(diff(&fused.narrow(0, 5, 1).unwrap(), &rows), 0.0);
    }
}
