"""Tiny random LLaVA checkpoints (CLIP vision tower + LLaMA or Qwen2 decoder) in the
transformers layout and their outputs, for crates/omni/tests/test_vlm.rs.

Run with a venv holding torch and transformers 5.x (no download; everything is built from
configs with fixed seeds):

    /work/peers/bin/python scripts/make_llava_fixtures.py

Writes fixtures/llava/tiny-llava-{llama,qwen2}/ (config.json, model.safetensors,
preprocessor_config.json) and fixtures/llava/reference-{llama,qwen2}.json: the prompt's
token ids (the image token repeated once per patch, as LlavaProcessor expands it), the
pixel values of fixtures/llava/scene.png after CLIPImageProcessor, the logits of every
position, and 8 greedily generated tokens.
"""

import json
import os

import PIL.Image
import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2Config,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "llava")
IMAGE = os.path.join(OUT, "scene.png")
VOCAB = 128
IMAGE_TOKEN = 127
PATCHES = 16  # (32 / 8)²


def text_config(family):
    common = dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
    )
    if family == "llama":
        return LlamaConfig(tie_word_embeddings=False, **common)
    return Qwen2Config(tie_word_embeddings=True, **common)


def build(family, seed):
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config(family),
        image_token_id=IMAGE_TOKEN,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=PATCHES,
    )
    model = LlavaForConditionalGeneration(config).eval()
    # Larger random weights than the default init, so logits differ clearly and greedy
    # tokens are not decided by rounding.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def main():
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    image = PIL.Image.open(IMAGE).convert("RGB")
    pixels = processor(images=image, return_tensors="pt").pixel_values
    input_ids = [1, 5, 9, 17] + [IMAGE_TOKEN] * PATCHES + [20, 31, 42]
    for seed, family in enumerate(["llama", "qwen2"]):
        model = build(family, seed)
        directory = os.path.join(OUT, f"tiny-llava-{family}")
        model.save_pretrained(directory, safe_serialization=True)
        processor.save_pretrained(directory)
        ids = torch.tensor([input_ids])
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels).logits[0]
            generated = model.generate(
                input_ids=ids,
                pixel_values=pixels,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=8,
                do_sample=False,
            )[0, len(input_ids):]
        reference = {
            "input_ids": input_ids,
            "pixel_values": pixels[0].flatten().tolist(),
            "logits": logits.tolist(),
            "greedy": generated.tolist(),
        }
        with open(os.path.join(OUT, f"reference-{family}.json"), "w") as f:
            json.dump(reference, f)
        print(family, "greedy", generated.tolist())


if __name__ == "__main__":
    main()
