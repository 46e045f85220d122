"""A tiny random Idefics3 checkpoint (SigLIP-style vision tower + pixel-shuffle connector +
LLaMA decoder) with its tokenizer and processor, and its outputs, for crates/omni/tests/test_vlm.rs.

Run with a venv holding torch, transformers 5.x, tokenizers and Pillow (no download;
everything is built from configs with fixed seeds):

    /work/peers/bin/python scripts/make_idefics3_fixtures.py

Writes:

- fixtures/idefics3/wide.png: an 80x50 test image drawn deterministically (gradient
  background and a few shapes), non-square so that the processor splits it into tiles.
- fixtures/idefics3/tiny-idefics3/: config.json, generation_config.json, model.safetensors
  of a random Idefics3ForConditionalGeneration, and the Idefics3Processor saved next to it
  (preprocessor_config.json for the slow PIL Idefics3ImageProcessor, tokenizer.json,
  tokenizer_config.json, processor_config.json). The tokenizer is a small WordLevel model
  built with the `tokenizers` library whose vocabulary holds every special token the
  processor inserts (<fake_token_around_image>, <image>, <global-img>, <row_i_col_j>, "\\n").
- fixtures/idefics3/reference.json: for two cases, "split" (do_image_splitting=True: rows x
  cols tiles plus the global image) and "nosplit" (do_image_splitting=False: one squashed
  tile), the prompt before expansion, the token ids after the processor's expansion,
  rows/cols, the pixel values of all tiles, the logits of every position, and 8 greedily
  generated tokens.
"""

import json
import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.idefics3.processing_idefics3 import get_image_prompt_string

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "idefics3")
MODEL_DIR = os.path.join(OUT, "tiny-idefics3")
IMAGE = os.path.join(OUT, "wide.png")
PROMPT = "User:<image>what is in the image?<end_of_utterance>\nAssistant:"
TILE = 32  # vision image_size == max_image_size["longest_edge"]
PATCH = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2  # 16 patches -> 4 tokens per tile
# Chosen among seeds 0..5 so that, in both cases, every greedy step wins by a logit margin of
# at least 0.2 (seed 0 had a 0.009 margin) and no <image> token is generated.
SEED = 5
MIN_MARGIN = 0.2

BOS = "<|begin_of_text|>"
SPECIAL = [
    "<unk>",
    "<pad>",
    BOS,
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
WORDS = (
    "\n User : Assistant what is in the image ? a red circle blue square green triangle "
    "yellow white black and on of to with there it this picture shows small big left right "
    "top bottom . , ! I see two three one background"
).split(" ")


def build_tokenizer():
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    assert len(vocab) == len(SPECIAL) + len(WORDS) and len(vocab) <= 200
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Keep "\n" as its own token, split words and single punctuation marks, drop the other
    # whitespace. (invert=True: the regex matches are the pieces, the rest is removed.)
    tok.pre_tokenizer = pre_tokenizers.Split(
        Regex(r"\n|\w+|[^\w\s]"), behavior="removed", invert=True
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins pieces with " "
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, vocab[BOS])],
    )
    # The special tokens are matched before pre-tokenization, as whole strings.
    tok.add_special_tokens(SPECIAL)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token=BOS,
        eos_token="<end_of_utterance>",
        additional_special_tokens=[t for t in SPECIAL if t not in ("<unk>", "<pad>", BOS)],
    )
    return fast


def draw_image():
    width, height = 80, 50
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack(
        [
            40 + 150 * x / (width - 1),
            60 + 120 * y / (height - 1),
            200 - 100 * (x + y) / (width + height - 2),
        ],
        axis=-1,
    )
    image = PIL.Image.fromarray(np.round(background).astype(np.uint8), "RGB")
    draw = PIL.ImageDraw.Draw(image)
    draw.ellipse((6, 8, 30, 32), fill=(230, 30, 30))
    draw.rectangle((40, 5, 70, 22), fill=(20, 40, 220))
    draw.polygon([(45, 45), (60, 28), (75, 45)], fill=(30, 200, 60))
    draw.line((0, 49, 79, 38), fill=(250, 250, 250), width=2)
    image.save(IMAGE)


def build_model(tokenizer):
    torch.manual_seed(SEED)
    vision = Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TILE,
        patch_size=PATCH,
    )
    text = LlamaConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=SCALE_FACTOR,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    assert model.model.image_seq_len == IMAGE_SEQ_LEN
    # Larger random weights than the default init, so logits differ clearly and greedy
    # tokens are not decided by rounding.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def run_case(model, processor, tokenizer, image, do_image_splitting):
    inputs = processor(
        images=image,
        text=PROMPT,
        do_image_splitting=do_image_splitting,
        return_tensors="pt",
    )
    input_ids = inputs["input_ids"]
    pixels = inputs["pixel_values"]
    mask = inputs["pixel_attention_mask"]
    assert bool((mask == 1).all()), "pixel_attention_mask is not all ones"
    assert pixels.shape[0] == 1 and tuple(pixels.shape[2:]) == (3, TILE, TILE)
    # rows/cols are popped by the processor; ask the image processor for them.
    info = processor.image_processor(
        [[image]], do_image_splitting=do_image_splitting, return_row_col_info=True
    )
    rows, cols = info["rows"][0][0], info["cols"][0][0]
    tiles = pixels.shape[1]
    assert tiles == (rows * cols + 1 if rows else 1)
    ids = input_ids[0].tolist()
    unk = tokenizer.unk_token_id
    assert unk not in ids, "expanded prompt tokenizes to <unk>"
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    assert ids.count(image_token) == tiles * IMAGE_SEQ_LEN
    # The processor's expanded text, rebuilt with its own helper; the bare `tokenizers`
    # library on the saved tokenizer.json (what a Rust port loads) must give the same ids.
    expanded = PROMPT.replace(
        "<image>",
        get_image_prompt_string(
            rows, cols, IMAGE_SEQ_LEN, "<fake_token_around_image>", "<image>", "<global-img>"
        ),
    )
    raw = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    assert raw.encode(expanded).ids == ids, "tokenizer.json disagrees with the processor"
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        full = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        generated = full[0, len(ids):]
        assert len(generated) == 8 and image_token not in generated.tolist()
        # Teacher-forced logits over prompt + generated tokens: the greedy choices must be
        # clear (top-1 minus top-2 logit), so a port with f32 rounding differences agrees.
        forced = model(
            input_ids=full,
            pixel_values=pixels,
            pixel_attention_mask=mask,
        ).logits[0, len(ids) - 1 : -1]
        top2 = forced.topk(2, dim=-1).values
        assert forced.argmax(-1).tolist() == generated.tolist()
        margin = float((top2[:, 0] - top2[:, 1]).min())
        assert margin >= MIN_MARGIN, f"greedy margin {margin} too small"
    return {
        "text": PROMPT,
        "input_ids": ids,
        "expanded_text": expanded,
        "rows": rows,
        "cols": cols,
        "pixel_values_shape": list(pixels.shape),
        "pixel_values": pixels.flatten().tolist(),
        "logits": logits.tolist(),
        "greedy": generated.tolist(),
    }, expanded, margin


def main():
    os.makedirs(OUT, exist_ok=True)
    draw_image()
    tokenizer = build_tokenizer()
    image_processor = Idefics3ImageProcessor(
        do_resize=True,
        size={"longest_edge": 3 * TILE},
        max_image_size={"longest_edge": TILE},
        do_image_splitting=True,
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN
    )
    model = build_model(tokenizer)
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    processor.save_pretrained(MODEL_DIR)
    # transformers 5 nests the image processor inside processor_config.json; also write the
    # classic standalone preprocessor_config.json (as hub checkpoints have it).
    image_processor.save_pretrained(MODEL_DIR)

    image = PIL.Image.open(IMAGE).convert("RGB")
    reference = {"image": "wide.png", "image_seq_len": IMAGE_SEQ_LEN}
    for name, split in [("split", True), ("nosplit", False)]:
        case, expanded, margin = run_case(model, processor, tokenizer, image, split)
        reference[name] = case
        print(f"== {name}: rows={case['rows']} cols={case['cols']} "
              f"tiles={case['pixel_values_shape'][1]} seq_len={len(case['input_ids'])}")
        print("greedy", case["greedy"], f"(min top-1/top-2 logit margin {margin:.3f})")
        print("expanded prompt:", repr(expanded))
    # The saved directory must load back into a processor giving the same ids and pixels.
    reloaded = Idefics3Processor.from_pretrained(MODEL_DIR)
    assert type(reloaded.image_processor) is Idefics3ImageProcessor
    again = reloaded(images=image, text=PROMPT, return_tensors="pt")
    assert again["input_ids"][0].tolist() == reference["split"]["input_ids"]
    assert again["pixel_values"].flatten().tolist() == reference["split"]["pixel_values"]
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f)
    for dirpath, _, files in sorted(os.walk(OUT)):
        for file in sorted(files):
            path = os.path.join(dirpath, file)
            print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
