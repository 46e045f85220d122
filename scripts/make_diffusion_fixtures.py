"""Tiny random Stable-Diffusion parts in the diffusers layout and their outputs, for the
image generator's parity tests (crates/omni/tests/test_diffusion.rs).

Run with a venv holding torch, transformers and diffusers (no download: every part is
built from a config with fixed seeds, its weights then randomised so that no layer is
trivially zero):

    ~/.cache/omni/peers/bin/python scripts/make_diffusion_fixtures.py   # torch, transformers 5.24, diffusers 0.42.1

Writes fixtures/diffusion/tiny/{unet,vae,text_encoder,scheduler}/ as diffusers'
`save_pretrained` lays them out (config.json + safetensors; the scheduler's
scheduler_config.json is Stable Diffusion 1.5's), and fixtures/diffusion/reference.safetensors:

- `unet.{sample,timesteps,context,out}`: a UNet noise prediction for a batch of two;
- `vae.{latents,decoded,image,mean,std}`: a decode, and an encode's latent mean and std;
- `text.{ids,states}`: the CLIP text encoder's last hidden states;
- for each sampler (`ddim`, `euler`, `euler_a`, `ddpm`), a 10-step sample with
  classifier-free guidance 5 from the same initial noise: `{s}.timesteps`, `{s}.first`
  (the latents after one step), `{s}.final`, and for the stochastic ones `{s}.noise`
  (the noise each step drew, in order), plus the shared `sample.{init,cond,uncond}`;
  `{s}.toy.*` the same with a stand-in model (0.3·x + 0.1) that tests the schedulers
  without the UNet.
"""

import json
import os

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "diffusion")
TINY = os.path.join(OUT, "tiny")
CONTEXT = 16  # cross-attention width = the text encoder's hidden size
GUIDANCE = 5.0
STEPS = 10

# Stable Diffusion 1.5's scheduler_config.json.
SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    prediction_type="epsilon",
    timestep_spacing="leading",
)


def randomise(module, seed):
    """Every weight random (norm scales around 1), so that no path is zero at init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)
    return module.eval()


def unet():
    torch.manual_seed(0)
    model = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CONTEXT,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    return randomise(model, 1)


def vae():
    torch.manual_seed(0)
    model = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    return randomise(model, 2)


def text_encoder():
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=1000,
        hidden_size=CONTEXT,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=CONTEXT,
    )
    return randomise(CLIPTextModel(config), 3)


def sample(predict, scheduler, init, seed):
    """A sample with `predict(x, t)` as the model; returns (timesteps, latents after step
    1, final latents, the noises drawn)."""
    scheduler.set_timesteps(STEPS)
    generator = torch.Generator().manual_seed(seed)
    twin = torch.Generator().manual_seed(seed)  # draws the same noise, to record it
    latents = init * scheduler.init_noise_sigma
    first, noises = None, []
    for t in scheduler.timesteps:
        output = predict(scheduler.scale_model_input(latents, t), t)
        # Euler ancestral draws noise at every step, DDPM at every t > 0 (all of them
        # here: the last step is t = 1).
        if isinstance(scheduler, (EulerAncestralDiscreteScheduler, DDPMScheduler)):
            noises.append(torch.randn(latents.shape, generator=twin))
        latents = scheduler.step(output, t, latents, generator=generator).prev_sample
        if first is None:
            first = latents.clone()
    return scheduler.timesteps.clone(), first, latents, noises


def guided(model, cond, uncond):
    """The UNet with classifier-free guidance, as a `predict` for `sample`."""
    context = torch.cat([uncond, cond])

    def predict(x, t):
        eps_u, eps_c = model(torch.cat([x, x]), t, encoder_hidden_states=context).sample.chunk(2)
        return eps_u + GUIDANCE * (eps_c - eps_u)

    return predict


def toy(x, t):
    """A stand-in model (no UNet) that tests the schedulers alone."""
    return 0.3 * x + 0.1


def main():
    os.makedirs(TINY, exist_ok=True)
    u, v, text = unet(), vae(), text_encoder()
    u.save_pretrained(os.path.join(TINY, "unet"), safe_serialization=True)
    v.save_pretrained(os.path.join(TINY, "vae"), safe_serialization=True)
    text.save_pretrained(os.path.join(TINY, "text_encoder"), safe_serialization=True)
    DDIMScheduler(**SD15_SCHEDULER, clip_sample=False, set_alpha_to_one=False).save_pretrained(
        os.path.join(TINY, "scheduler")
    )

    g = torch.Generator().manual_seed(42)
    ref = {}
    with torch.no_grad():
        x = torch.randn(2, 4, 8, 8, generator=g)
        t = torch.tensor([10, 700])
        ctx = torch.randn(2, 5, CONTEXT, generator=g)
        ref.update({"unet.sample": x, "unet.timesteps": t.float(), "unet.context": ctx})
        ref["unet.out"] = u(x, t, encoder_hidden_states=ctx).sample

        z = torch.randn(1, 4, 8, 8, generator=g)
        img = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
        dist = v.encode(img).latent_dist
        ref.update({"vae.latents": z, "vae.decoded": v.decode(z).sample, "vae.image": img})
        ref.update({"vae.mean": dist.mean, "vae.std": dist.std})

        ids = torch.randint(0, 1000, (2, 7), generator=g)
        ref["text.ids"] = ids.float()
        ref["text.states"] = text(input_ids=ids).last_hidden_state

        init = torch.randn(1, 4, 8, 8, generator=g)
        cond = torch.randn(1, 5, CONTEXT, generator=g)
        uncond = torch.randn(1, 5, CONTEXT, generator=g)
        ref.update({"sample.init": init, "sample.cond": cond, "sample.uncond": uncond})
        samplers = {
            "ddim": lambda: DDIMScheduler(**SD15_SCHEDULER, clip_sample=False, set_alpha_to_one=False),
            "euler": lambda: EulerDiscreteScheduler(**SD15_SCHEDULER),
            "euler_a": lambda: EulerAncestralDiscreteScheduler(**SD15_SCHEDULER),
            "ddpm": lambda: DDPMScheduler(**SD15_SCHEDULER, clip_sample=False),
        }
        for name, make in samplers.items():
            for prefix, predict in [(name, guided(u, cond, uncond)), (f"{name}.toy", toy)]:
                steps, first, final, noises = sample(predict, make(), init, seed=7)
                ref[f"{prefix}.timesteps"] = steps.float()
                ref[f"{prefix}.first"] = first
                ref[f"{prefix}.final"] = final
                if noises:
                    ref[f"{prefix}.noise"] = torch.stack(noises)

    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, "reference.safetensors"))
    summary = {k: list(v.shape) for k, v in ref.items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
