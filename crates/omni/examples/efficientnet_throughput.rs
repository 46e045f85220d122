//! EfficientNet-Lite0 throughput on fixed pseudo-random 224×224 inputs, for
//! `scripts/bench_encoders.py` (thread count from `RAYON_NUM_THREADS`).
//!
//!     cargo run --release -p omni --example efficientnet_throughput -- PTH BATCH ROUNDS
//!
//! Prints `images/s <value>` (best of ROUNDS timed passes after one warm-up pass).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use omni::encoder::efficientnet::EfficientNet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    omni::runtime::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pth, batch, rounds] = args.as_slice() else {
        return Err("usage: efficientnet_throughput PTH BATCH ROUNDS".into());
    };
    let batch: usize = batch.parse()?;
    let rounds: usize = rounds.parse()?;
    let model = EfficientNet::load(&PathBuf::from(pth))?;
    let n = batch * 3 * 224 * 224;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x = Tensor::from_vec(data, (batch, 3, 224, 224), &Device::Cpu)?;
    model.forward(&x)?; // warm-up
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let out = model.forward(&x)?;
        out.logits.to_vec2::<f32>()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("images/s {:.2}", batch as f64 / best);
    Ok(())
}
