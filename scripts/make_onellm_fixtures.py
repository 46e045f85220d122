"""A tiny random OneLLM built by the reference code (csuhan/OneLLM, model/LLM/onellm.py)
and its outputs for every modality, for crates/omni/tests/test_onellm.rs.

The reference is run from a local checkout of https://github.com/csuhan/OneLLM, on the
CPU in float32, at a tiny size: a 2-block 64-wide ViT (open_clip's `CLIP` class) as the
universal encoder, K = 3 experts of 2 blocks each, 30 queries, a 2-layer 64-wide LLaMA,
and smaller stems (audio 36×56 mel maps, 96 points → 24 centres of 8 neighbours, 40-sample
IMU windows, 40 fMRI voxels → 8 tokens). Everything else is the reference's own code.
Needs torch, open_clip_torch==2.23.0 and fairscale (pip), no network:

    git clone https://github.com/csuhan/OneLLM /tmp/OneLLM
    python scripts/make_onellm_fixtures.py --onellm /tmp/OneLLM

What stands in for the reference's CUDA-only pieces (same semantics, on the CPU):
- `flash_attn_func(q, k, v, causal)` → torch's scaled_dot_product_attention;
- pointnet2's `furthest_point_sampling` kernel → the same loop (running minimum squared
  distance, start at point 0, first maximum wins) and `group_points` → a gather;
- `torch.cdist` in the point tokenizer's kNN is asked for the exact (non-matmul) distance,
  so that no near-tie at the k-th neighbour flips on rounding.
The reference casts CLIP to float16; here it stays float32 (the parity is of the math).

Writes fixtures/onellm/tiny/{config.json, model.safetensors} (the state dict, CLIP's text
tower left out) and fixtures/onellm/reference.safetensors: per modality the input, the
stem's tokens, the encoder features, the routing weights, the UPM output and the logits of
`Transformer.forward(tokens, input, [modality])`, and the text tokens.
"""

import argparse
import json
import os
import sys
import types

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "onellm")

WIDTH, CLIP_LAYERS, CLIP_HEAD_WIDTH, PATCH, IMAGE = 64, 2, 32, 14, 28
LLM = dict(dim=64, n_layers=2, n_heads=4, vocab_size=128, multiple_of=32, norm_eps=1e-5)
EXPERT_LAYERS = 2
STEMS = dict(
    audio_mel_bins=36,
    audio_frames=56,
    points=96,
    point_centres=24,
    point_neighbours=8,
    point_distance_column=3,
    imu_samples=40,
    fmri_voxels=40,
    fmri_tokens=8,
)
BATCH = 2


def install_shims():
    """CPU stand-ins for flash-attn and pointnet2's CUDA kernels."""

    def flash_attn_func(q, k, v, dropout_p=0.0, causal=False):
        # flash-attn takes (B, L, H, D); the bottom-right causal alignment equals torch's
        # top-left one for the square masks the reference builds.
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        )
        return out.transpose(1, 2)

    sys.modules["flash_attn"] = types.SimpleNamespace(flash_attn_func=flash_attn_func)

    def furthest_point_sampling_wrapper(b, n, m, xyz, temp, out):
        for i in range(b):
            pts, dist = xyz[i], temp[i]
            last = 0
            out[i, 0] = 0
            for j in range(1, m):
                d = ((pts - pts[last]) ** 2).sum(-1)
                torch.minimum(dist, d, out=dist)
                last = int(torch.argmax(dist))  # first maximum
                out[i, j] = last

    def group_points_wrapper(b, c, n, npoint, nsample, features, idx, out):
        flat = idx.long().reshape(b, 1, npoint * nsample).expand(b, c, -1)
        out.copy_(torch.gather(features, 2, flat).reshape(b, c, npoint, nsample))

    sys.modules["pointnet2_cuda"] = types.SimpleNamespace(
        furthest_point_sampling_wrapper=furthest_point_sampling_wrapper,
        group_points_wrapper=group_points_wrapper,
    )
    torch.cuda.IntTensor = lambda *s, **kw: torch.zeros(*s, dtype=torch.int32)
    torch.cuda.FloatTensor = lambda *s, **kw: torch.zeros(*s, dtype=torch.float32)
    cdist = torch.cdist
    torch.cdist = lambda a, b, **kw: cdist(
        a, b, compute_mode="donot_use_mm_for_euclid_dist"
    )


def tiny_clip():
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(
        layers=CLIP_LAYERS, width=WIDTH, head_width=CLIP_HEAD_WIDTH, patch_size=PATCH,
        image_size=IMAGE,
    )
    text = CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    model = CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text, quick_gelu=True)
    open_clip.create_model_and_transforms = lambda *a, **kw: (model, None, None)


def build(onellm_dir):
    sys.path.insert(0, onellm_dir)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    import fairscale.nn.model_parallel.initialize as fs_init

    fs_init.initialize_model_parallel(1)
    from model.LLM import onellm
    from model.lib.point_utils import PointPatchEmbed

    args = onellm.ModelArgs(max_seq_len=128, max_batch_size=BATCH, **LLM)
    model = onellm.Transformer(args).float()
    # Tiny stems: the reference's classes at smaller sizes, position tables to match.
    model.conv1["audio"] = torch.nn.Conv2d(1, WIDTH, kernel_size=(16, 16), stride=(10, 10))
    model.conv1["point"] = PointPatchEmbed(
        sample_number=STEMS["point_centres"], group_size=STEMS["point_neighbours"],
        in_channels=6, channels=WIDTH,
    )
    model.conv1["imu"] = torch.nn.Conv1d(6, WIDTH, kernel_size=10, bias=False)
    model.conv1["fmri"] = torch.nn.Linear(STEMS["fmri_voxels"], STEMS["fmri_tokens"] * WIDTH)
    audio_tokens = ((STEMS["audio_mel_bins"] - 16) // 10 + 1) * ((STEMS["audio_frames"] - 16) // 10 + 1)
    lengths = dict(
        audio=audio_tokens,
        point=STEMS["point_centres"],
        imu=STEMS["imu_samples"] - 9,
        fmri=STEMS["fmri_tokens"],
    )
    for m, l in lengths.items():
        model.positional_embedding[m] = torch.nn.Parameter(torch.randn(l + 1, WIDTH) * 0.02)
    for e in range(3):
        model.resample_layers[str(e)] = model.resample_layers[str(e)][:EXPERT_LAYERS]
    # Norm weights and biases away from 1 and 0, so the test sees them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = "norm" in name or "ln_" in name or (
                name.startswith("clip_proj") and ".1." in name
            )
            if is_norm and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
        # The routers, made to prefer experts unevenly.
        for m in model.modals:
            model.routers[m].fc2.weight.mul_(20)
    return model.float().eval()


def inputs():
    g = torch.Generator().manual_seed(7)
    r = lambda *s: torch.rand(*s, generator=g)
    s = STEMS
    return {
        "image": r(BATCH, 3, IMAGE, IMAGE) * 4 - 2,
        "video": r(BATCH, 3, 3, IMAGE, IMAGE) * 4 - 2,
        "rgbd": r(BATCH, 2, 3, IMAGE, IMAGE) * 4 - 2,
        "rgbn": r(BATCH, 2, 3, IMAGE, IMAGE) * 4 - 2,
        "audio": r(BATCH, 1, s["audio_mel_bins"], s["audio_frames"]) * 2 - 1,
        "point": r(BATCH, s["points"], 6) * 2 - 1,
        "imu": r(BATCH, 6, s["imu_samples"]) * 4 - 2,
        "fmri": r(BATCH, 1, s["fmri_voxels"]) * 2 - 1,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onellm", required=True, help="a checkout of csuhan/OneLLM")
    a = p.parse_args()
    torch.manual_seed(0)
    install_shims()
    tiny_clip()
    model = build(os.path.abspath(a.onellm))

    captured = {}
    encode = model.clip_encode_image

    def recording(x, modal="image"):
        captured["stem"] = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1).contiguous()
        out = encode(x, modal=modal)
        captured["encoder_frames"] = out
        return out

    model.clip_encode_image = recording
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(2, LLM["vocab_size"], (BATCH, 6), generator=g)
    tokens[:, 0] = 1  # BOS
    out = {"tokens": tokens.to(torch.int64)}
    with torch.no_grad():
        for m, x in inputs().items():
            upm = model.encode_image(x, m)
            logits = model.forward(tokens, image=x, modal=[m])
            frames = captured["encoder_frames"]
            t = frames.shape[0] // BATCH
            w = model.routers[m](model.resample_tokens[m]).sigmoid()
            w = (w / w.sum(-1, keepdim=True))[0]
            out[f"input.{m}"] = x.squeeze(1) if m in ("audio", "fmri") else x
            out[f"stem.{m}"] = captured["stem"]
            out[f"encoder.{m}"] = frames.reshape(BATCH, t, *frames.shape[1:]).mean(1)
            out[f"routing.{m}"] = w
            out[f"upm.{m}"] = upm
            out[f"logits.{m}"] = logits
            print(f"{m:6s} stem {tuple(captured['stem'].shape)} upm {tuple(upm.shape)} "
                  f"logits {tuple(logits.shape)}")

    tiny = os.path.join(OUT, "tiny")
    os.makedirs(tiny, exist_ok=True)
    state = {
        k: v.contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("clip.") or k.startswith("clip.visual.")
    }
    save_file(state, os.path.join(tiny, "model.safetensors"))
    config = {
        "encoder": {"kind": "open_clip", "heads": WIDTH // CLIP_HEAD_WIDTH},
        "stems": STEMS,
        "upm": {"experts": 3, "layers": EXPERT_LAYERS, "heads": 16, "queries": 30,
                "multiple_of": LLM["multiple_of"], "norm_eps": 1e-5},
        "llm": LLM,
    }
    with open(os.path.join(tiny, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "reference.safetensors"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
