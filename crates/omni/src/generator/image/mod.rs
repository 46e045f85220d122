//! The image generator: Stable Diffusion's parts in the diffusers layout (noise
//! schedulers so far; the UNet, the VAE and the sampling pipeline follow).

pub mod scheduler;
