"""Side-by-side vision benchmark (not a test): a CLIP ViT-B/32-shaped image tower with
random weights, omni vs transformers on torch vs onnxruntime, same thread count, batch of 8;
and image preprocessing omni vs the transformers CLIPImageProcessor on the scikit-image
photos.

    cargo build --release -p omni-cli
    /work/peers/bin/python scripts/bench_vision.py [--threads 2] [--omni target/release/omni]

The model (config built here, seed 0, saved once as safetensors in a temp dir) is a full
CLIPModel (the text tower is needed by the directory layout; only the image tower is timed).
omni's numbers come from `omni embed image --timings`, which times preprocessing and the
forward pass separately (model load excluded); each side is run REPEATS times, best kept.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import PIL.Image
import PIL.ImageOps
import skimage
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
PHOTOS = [
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
]
REPEATS = 5
CLIP_PRE = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}


def build_model(dir_):
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, image_size=224, patch_size=32),
        projection_dim=512,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(dir_, safe_serialization=True)
    with open(os.path.join(dir_, "preprocessor_config.json"), "w") as f:
        json.dump(CLIP_PRE, f)
    # Any tokenizer whose vocabulary fits: the tiny fixture's.
    tok = os.path.join(ROOT, "fixtures", "clip", "tiny-clip", "tokenizer.json")
    with open(tok) as src, open(os.path.join(dir_, "tokenizer.json"), "w") as dst:
        dst.write(src.read())
    return model


def best(f, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omni", default=os.path.join(ROOT, "target", "release", "omni"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = [os.path.join(DATA, p) for p in PHOTOS]
    n = len(paths)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(tmp)
        processor = CLIPImageProcessor.from_pretrained(tmp)
        images = [PIL.ImageOps.exif_transpose(PIL.Image.open(p)) for p in paths]
        for im in images:
            im.load()

        # Preprocessing (decode included on both sides).
        def hf_pre():
            ims = [PIL.ImageOps.exif_transpose(PIL.Image.open(p)) for p in paths]
            return processor(images=ims, return_tensors="pt")["pixel_values"]

        pixels = hf_pre()
        results["hf_preprocess_img_s"] = n / best(hf_pre)

        # transformers on torch.
        with torch.inference_mode():
            model.get_image_features(pixel_values=pixels)
            results["torch_img_s"] = n / best(lambda: model.get_image_features(pixel_values=pixels))

        # onnxruntime (vision tower + projection exported with torch.onnx).
        try:
            import onnxruntime as ort

            class Tower(torch.nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, x):
                    out = self.m.get_image_features(pixel_values=x)
                    return getattr(out, "pooler_output", out)

            onnx_path = os.path.join(tmp, "vision.onnx")
            torch.onnx.export(Tower(model), (pixels,), onnx_path, input_names=["pixels"],
                              output_names=["emb"], dynamic_axes={"pixels": {0: "n"}},
                              opset_version=17, dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            x = pixels.numpy()
            sess.run(None, {"pixels": x})
            results["onnxruntime_img_s"] = n / best(lambda: sess.run(None, {"pixels": x}))
        except Exception as e:  # noqa: BLE001 - report and go on
            print("onnxruntime: skipped:", e, file=sys.stderr)

        # omni: `omni embed image --timings`, best of REPEATS runs.
        enc, pre = [], []
        for _ in range(REPEATS):
            out = subprocess.run(
                [args.omni, "embed", "image", "--model", tmp, "--threads", str(args.threads),
                 "--batch-size", str(n), "--timings", *paths],
                capture_output=True, text=True, check=True,
            )
            m = re.search(r"preprocess: .*\(([\d.]+) images/s\); encode: .*\(([\d.]+) images/s\)",
                          out.stderr)
            pre.append(float(m.group(1)))
            enc.append(float(m.group(2)))
        results["omni_img_s"] = max(enc)
        results["omni_preprocess_img_s"] = max(pre)
    results["threads"] = args.threads
    results["batch"] = n
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
