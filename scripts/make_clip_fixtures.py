"""Tiny random CLIP and SigLIP models and their transformers outputs, for
crates/omni/tests/test_clip.rs.

Run with the peers venv (transformers 5.x, tokenizers, torch, pillow, scikit-image):

    /work/peers/bin/python scripts/make_clip_fixtures.py

Writes, for each of fixtures/clip/tiny-clip and fixtures/siglip/tiny-siglip, a model
directory in the Hugging Face layout (config.json, model.safetensors, tokenizer.json,
preprocessor_config.json) and reference.json: the token ids of a few texts, the text
embeddings, the image embeddings of three scikit-image photos (preprocessed by the
transformers image processor from the same preprocessor_config.json), logit_scale,
logit_bias and logits_per_image. Everything is built from a config with a fixed seed; no
download. The tokenizer is a tiny BPE trained here on a few captions.
"""

import json
import os

import PIL.Image
import PIL.ImageOps
import skimage
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
# PNGs: their decoding is bit-exact across decoders (JPEG decoders differ by a level here
# and there: zune-jpeg vs libjpeg-turbo), so the preprocessing comparison is exact.
PHOTOS = ["chelsea.png", "astronaut.png", "coffee.png"]
TEXTS = [
    "a photo of a cat",
    "a rocket on the launch pad",
    "an astronaut",
    "a cup of coffee on a wooden table, seen from above",
]
CORPUS = TEXTS + [
    "a photo of a dog", "a photo of a horse", "a photo of a motorcycle", "a red car",
    "the moon at night", "coins on a table", "a man with a camera", "a cat sleeping",
    "a blurry photo", "a painting of a ship", "two people in a park", "a bowl of soup",
    "a close up of a flower", "the astronaut is smiling", "a rocket launch",
]
MAX_POSITIONS = 16


def tiny_tokenizer(specials, template):
    """A byte-free BPE over lowercase words, with `template` post-processing."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    ids = {s: tok.token_to_id(s) for s in specials}
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, ids[s]) for s in specials if s in template]
    )
    tok.enable_truncation(MAX_POSITIONS)
    return tok, ids


def load_photo(name):
    return PIL.ImageOps.exif_transpose(PIL.Image.open(os.path.join(DATA, name)))


def save(model, tok, pre_cfg, out):
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(pre_cfg, f, indent=2)
        f.write("\n")
    for extra in ("generation_config.json",):
        p = os.path.join(out, extra)
        if os.path.exists(p):
            os.remove(p)


def rows(t):
    return [[float(v) for v in row] for row in t.detach().cpu().tolist()]


def make_clip():
    torch.manual_seed(0)
    tok, ids = tiny_tokenizer(
        ["<|startoftext|>", "<|endoftext|>", "<unk>"], "<|startoftext|> $A <|endoftext|>"
    )
    text = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_POSITIONS,
        bos_token_id=ids["<|startoftext|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=30, patch_size=3,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
    model = CLIPModel(config).eval()
    with torch.no_grad():  # a non-default temperature, to see that it is read
        model.logit_scale.fill_(2.0)
    pre_cfg = {
        "crop_size": {"height": 30, "width": 30},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 30},
    }
    out = os.path.join(ROOT, "fixtures", "clip", "tiny-clip")
    save(model, tok, pre_cfg, out)
    processor = CLIPImageProcessor.from_pretrained(out)
    # Texts padded to the longest with an attention mask, as CLIPProcessor(padding=True).
    tok.enable_padding(pad_id=ids["<|endoftext|>"], pad_token="<|endoftext|>")
    enc = tok.encode_batch(TEXTS)
    tok.no_padding()
    input_ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    pixels = processor(images=[load_photo(p) for p in PHOTOS], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out_all = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels)
        text_emb = model.get_text_features(input_ids=input_ids, attention_mask=mask)
        image_emb = model.get_image_features(pixel_values=pixels)
    text_emb = getattr(text_emb, "pooler_output", text_emb)
    image_emb = getattr(image_emb, "pooler_output", image_emb)
    ref = {
        "texts": TEXTS,
        "input_ids": [[i for i, m in zip(e.ids, e.attention_mask) if m] for e in enc],
        "photos": PHOTOS,
        "pixel_sum": [float(v) for v in pixels.sum(dim=(1, 2, 3))],
        "text_embeds": rows(text_emb),
        "image_embeds": rows(image_emb),
        "logit_scale": float(model.logit_scale),
        "logit_bias": None,
        "logits_per_image": rows(out_all.logits_per_image),
    }
    with open(os.path.join(out, "..", "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    return out


def make_siglip():
    torch.manual_seed(1)
    tok, ids = tiny_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>")
    text = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_POSITIONS,
        pad_token_id=ids["</s>"], eos_token_id=ids["</s>"], bos_token_id=ids["</s>"],
        projection_size=32,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=30, patch_size=3,
    )
    config = SiglipConfig(text_config=text, vision_config=vision)
    model = SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    pre_cfg = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 30, "width": 30},
    }
    out = os.path.join(ROOT, "fixtures", "siglip", "tiny-siglip")
    save(model, tok, pre_cfg, out)
    processor = SiglipImageProcessor.from_pretrained(out)
    # SigLIP pads to max_length with the pad token and no attention mask.
    tok.enable_padding(pad_id=ids["</s>"], pad_token="</s>", length=MAX_POSITIONS)
    enc = tok.encode_batch(TEXTS)
    tok.no_padding()
    input_ids = torch.tensor([e.ids for e in enc])
    pixels = processor(images=[load_photo(p) for p in PHOTOS], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out_all = model(input_ids=input_ids, pixel_values=pixels)
        text_emb = model.get_text_features(input_ids=input_ids)
        image_emb = model.get_image_features(pixel_values=pixels)
    text_emb = getattr(text_emb, "pooler_output", text_emb)
    image_emb = getattr(image_emb, "pooler_output", image_emb)
    ref = {
        "texts": TEXTS,
        "input_ids": [[i for i, m in zip(e.ids, e.attention_mask) if m] for e in enc],
        "photos": PHOTOS,
        "pixel_sum": [float(v) for v in pixels.sum(dim=(1, 2, 3))],
        "text_embeds": rows(text_emb),
        "image_embeds": rows(image_emb),
        "logit_scale": float(model.logit_scale),
        "logit_bias": float(model.logit_bias),
        "logits_per_image": rows(out_all.logits_per_image),
    }
    with open(os.path.join(out, "..", "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    return out


if __name__ == "__main__":
    for d in (make_clip(), make_siglip()):
        total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(d, sorted(os.listdir(d)), total, "bytes")
