//! The image generator: Stable Diffusion's parts in the diffusers layout (noise
//! schedulers, the UNet and the VAE so far; the sampling pipeline follows).

mod blocks;
pub mod scheduler;
pub mod unet;
pub mod vae;
