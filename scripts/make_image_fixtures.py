"""Image-preprocessing fixtures: what transformers' CLIP and SigLIP image processors make of
the scikit-image photos, stored small for crates/omni/tests/test_image.rs.

Run with the peers venv (transformers 5.x, torchvision, pillow, scikit-image):

    /work/peers/bin/python scripts/make_image_fixtures.py

Writes fixtures/image/:
  clip/preprocessor_config.json    openai/clip-vit-base-patch32's file (written out, no hub)
  siglip/preprocessor_config.json  google/siglip-base-patch16-224's file
  exif6.jpg                        a 24x16 JPEG whose EXIF orientation (6) rotates it
  pixels.json                      per image and processor: output shape, per-channel mean
                                   and std of the normalized tensor, and the pixel values
                                   (0-255, recovered from the normalized floats) at 2000
                                   pseudo-random positions chosen by the LCG below.

Each photo is opened as a user would (PIL.Image.open + ImageOps.exif_transpose) and the
PIL image is given to the processor, which composites transparency onto white.
"""

import json
import os
import sys

import numpy as np
import PIL.Image
import PIL.ImageOps
import skimage
import transformers
from transformers import CLIPImageProcessor, SiglipImageProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "image")
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")

# The photos (and the RGBA logo and the animated GIF, for the alpha and first-frame paths);
# synthetic test patterns (chessboards, color, phantom, horse silhouette) are left out.
PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png",
    "clock_motion.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "logo.png", "microaneurysms.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "no_time_for_that_tiny.gif", "page.png",
    "retina.jpg", "rocket.jpg", "text.png",
]

CLIP_CONFIG = {  # openai/clip-vit-base-patch32 preprocessor_config.json
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}
SIGLIP_CONFIG = {  # google/siglip-base-patch16-224 preprocessor_config.json
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}

N_POSITIONS = 2000
SEED = 20261125


def positions(n_values, count=N_POSITIONS, seed=SEED):
    """Flat indices into a CHW tensor: PCG-style 64-bit LCG, index = (state >> 33) % n."""
    mask = (1 << 64) - 1
    state = seed
    out = []
    for _ in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        out.append((state >> 33) % n_values)
    return out


def record(pixel_values, mean, std):
    """Shape, channel stats and sampled 0-255 values of one (3, H, W) normalized tensor."""
    x = np.asarray(pixel_values, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)[:, None, None]
    std = np.asarray(std, dtype=np.float64)[:, None, None]
    levels = (x * std + mean) * 255.0
    rounded = np.rint(levels)
    assert np.abs(levels - rounded).max() < 1e-3, "processor output is not on 8-bit levels"
    flat = rounded.astype(np.int64).reshape(-1)
    idx = positions(flat.size)
    return {
        "shape": list(x.shape),
        "channel_mean": [float(v) for v in x.mean(axis=(1, 2))],
        "channel_std": [float(v) for v in x.std(axis=(1, 2))],
        "values": [int(flat[i]) for i in idx],
    }


def main():
    for name, cfg in (("clip", CLIP_CONFIG), ("siglip", SIGLIP_CONFIG)):
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        with open(os.path.join(OUT, name, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")

    processors = {
        "clip": (CLIPImageProcessor.from_pretrained(os.path.join(OUT, "clip")), CLIP_CONFIG),
        "clip_pil": (CLIPImageProcessorPil.from_pretrained(os.path.join(OUT, "clip")), CLIP_CONFIG),
        "siglip": (SiglipImageProcessor.from_pretrained(os.path.join(OUT, "siglip")), SIGLIP_CONFIG),
        "siglip_pil": (
            SiglipImageProcessorPil.from_pretrained(os.path.join(OUT, "siglip")),
            SIGLIP_CONFIG,
        ),
    }
    fixtures = {
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "scikit_image": skimage.__version__,
        "seed": SEED,
        "positions": N_POSITIONS,
        "images": {},
    }
    for photo in PHOTOS:
        image = PIL.ImageOps.exif_transpose(PIL.Image.open(os.path.join(DATA, photo)))
        entry = {"size": [image.height, image.width], "mode": image.mode}
        for key, (proc, cfg) in processors.items():
            pv = proc(images=image, return_tensors="np")["pixel_values"][0]
            entry[key] = record(pv, cfg["image_mean"], cfg["image_std"])
        fixtures["images"][photo] = entry
        print(photo, image.mode, image.size, file=sys.stderr)

    # A JPEG with EXIF orientation 6 ("rotate 90° clockwise to display"): stored 24 wide,
    # 16 high, displayed 16 wide, 24 high. Left half red, right half blue when stored.
    stored = np.zeros((16, 24, 3), dtype=np.uint8)
    stored[:, :12] = (255, 0, 0)
    stored[:, 12:] = (0, 0, 255)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    PIL.Image.fromarray(stored).save(os.path.join(OUT, "exif6.jpg"), quality=95, exif=exif)
    shown = PIL.ImageOps.exif_transpose(PIL.Image.open(os.path.join(OUT, "exif6.jpg")))
    fixtures["exif6"] = {"size": [shown.height, shown.width], "top_left": list(shown.getpixel((0, 0)))}

    with open(os.path.join(OUT, "pixels.json"), "w") as f:
        json.dump(fixtures, f, separators=(",", ":"))
    print("wrote", OUT, os.path.getsize(os.path.join(OUT, "pixels.json")), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
