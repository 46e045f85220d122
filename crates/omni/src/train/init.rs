//! Reproducible initial values: a [`VarBuilder`] over a [`VarMap`] that draws each new
//! variable from the distribution its module asks for (candle's [`Init`] hints), with a
//! random stream seeded by the run's seed and the variable's name — so the same seed
//! gives the same model whatever order the variables are made in.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

struct Seeded {
    vars: VarMap,
    seed: u64,
}

/// FNV-1a of the name, mixed with the seed: the variable's own stream.
fn stream(seed: u64, name: &str) -> StdRng {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(h)
}

/// Values of `shape` drawn as `init` says, from `rng`.
fn draw(init: Init, shape: &Shape, rng: &mut StdRng) -> Vec<f32> {
    let n = shape.elem_count();
    let uniform = |rng: &mut StdRng, lo: f64, up: f64| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
    };
    let normal = |rng: &mut StdRng, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                let v: f64 = rng.random_range(0.0..1.0);
                (mean + std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    };
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

impl SimpleBackend for Seeded {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.vars.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let values = draw(init, &shape, &mut stream(self.seed, name));
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("`{name}`: a fresh variable needs a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().unwrap().contains_key(name)
    }
}

/// A builder whose new variables land in `vars` with values fixed by `seed` and their
/// names (f32, CPU).
pub fn seeded_builder(vars: &VarMap, seed: u64) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(Seeded {
            vars: vars.clone(),
            seed,
        }),
        DType::F32,
        Device::Cpu,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_name_give_the_same_values() {
        let make = |seed| {
            let vars = VarMap::new();
            let vb = seeded_builder(&vars, seed);
            let w = vb
                .get_with_hints((4, 3), "w", candle_nn::init::DEFAULT_KAIMING_NORMAL)
                .unwrap();
            let b = vb.get_with_hints(4, "b", Init::Const(0.5)).unwrap();
            (
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.to_vec1::<f32>().unwrap(),
                vars.all_vars().len(),
            )
        };
        let (w, b, n) = make(1);
        assert_eq!((make(1).0, n), (w.clone(), 2));
        assert_ne!(make(2).0, w);
        assert_eq!(b, [0.5; 4]);
        assert!(w.iter().all(|v| v.abs() < 5.0) && w.iter().any(|v| *v != 0.0));
    }
}
