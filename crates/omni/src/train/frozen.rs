//! Matrix products with frozen weights that gradients flow through: the backward pass
//! computes only the input's gradient. candle's own matmul would also compute the
//! weight's (and allocate a weight-sized zero gradient to add it to), doubling the cost
//! of every backward step through a frozen LLM or encoder.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::Result;

/// `y = x·Wᵀ` for a weight that does not train: the backward pass returns `∂L/∂x` only.
struct FrozenMatmul {
    /// (out, in)
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen matmul: input not contiguous".into()))?;
        let cpu = Device::Cpu;
        let x = match storage {
            CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], layout.dims(), &cpu)?,
            CpuStorage::F64(v) => Tensor::from_slice(&v[start..end], layout.dims(), &cpu)?,
            _ => candle_core::bail!("frozen matmul: f32 or f64 input expected"),
        };
        let y = x.matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        let y = y.flatten_all()?;
        let out = match y.dtype() {
            DType::F64 => CpuStorage::F64(y.to_vec1()?),
            _ => CpuStorage::F32(y.to_vec1()?),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// `x·Wᵀ` for `x` (rows, in) and `weight` (out, in): a plain matmul when the weight is a
/// variable, [`FrozenMatmul`] otherwise.
pub(crate) fn matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    Ok(if weight.is_variable() {
        x.matmul(&weight.t()?)?
    } else {
        x.contiguous()?.apply_op1(FrozenMatmul {
            weight: weight.clone(),
        })?
    })
}

/// A linear layer over any leading dimensions, `x` (…, in) → (…, out), through
/// [`matmul_t`], plus `bias`.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (&inp, lead) = x
        .dims()
        .split_last()
        .ok_or_else(|| crate::Error::InvalidInput("a linear layer needs a tensor".into()))?;
    let rows: usize = lead.iter().product();
    let y = matmul_t(&x.contiguous()?.reshape((rows, inp))?, weight)?;
    let mut dims = lead.to_vec();
    dims.push(weight.dim(0)?);
    let y = y.reshape(dims)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn the_input_gets_its_gradient_and_the_frozen_weight_none() {
        let cpu = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &cpu).unwrap();
        let x = Var::new(&[[1f32, -1.0]], &cpu).unwrap();
        let y = linear(x.as_tensor(), &w, None).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), [[-1.0, -1.0, -1.0]]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        // d(sum y)/dx = column sums of W.
        let gx = grads.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(gx, [[9.0, 12.0]]);
        assert!(grads.get(&w).is_none());
    }
}
