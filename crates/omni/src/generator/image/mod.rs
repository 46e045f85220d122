//! The image generator: Stable Diffusion's parts in the diffusers layout (noise
//! schedulers, the UNet, the VAE and the guided denoising loop so far; the text-to-image
//! pipeline follows).

mod blocks;
pub mod sampling;
pub mod scheduler;
pub mod unet;
pub mod vae;
