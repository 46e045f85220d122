#!/usr/bin/env python3
"""omni against the peer a user would pick, side by side in one run (not a test).

    cargo build --release
    scripts/install_peers.sh                       # once: llama.cpp, faster-whisper, torch, ...
    python3 scripts/bench.py [--rows llm,whisper,image,text,preprocess] [--threads 2] [--runs 5]
                             [--json out.json] [--plot decode_vs_context.png]

Rows (same weights, same inputs, same thread count on both sides):
  llm         SmolLM2-135M Q4_1 GGUF vs llama.cpp (llama-cpp-python): prefill tok/s of a
              512-token prompt, decode tok/s of the 128 greedy tokens after it, and decode
              tok/s after a short prompt. --plot adds decode tok/s against context length.
  whisper     seconds to transcribe the five LibriVox clips (one process, model load
              included), whisper-tiny.en and whisper-base, vs faster-whisper float32.
  image       image embeddings/s at batch 32: EfficientNet-Lite0 (the real checkpoint) and
              a CLIP ViT-B/32-shaped tower (random weights, built here), vs PyTorch and
              onnxruntime (the same network exported to ONNX).
  text        all-MiniLM-L6-v2 sentences/s at batch 64, tokenization included, vs
              sentence-transformers and onnxruntime.
  preprocess  images/s of decode + resize + crop + normalize of scikit-image's photos with
              the CLIP preprocessor vs transformers' CLIPImageProcessor.

Every measurement is one process; the harness alternates omni and the peers --runs times
after one discarded warm-up round and reports medians (each process also warms up and
takes the median of its own timed passes), plus each process's peak RSS (from wait4).

Environment: PEERS_PYTHON (default ~/.cache/omni/peers/bin/python, from
scripts/install_peers.sh); OMNI (default $CARGO_TARGET_DIR or target/release/omni);
OMNI_HOME for the models (`omni models pull` fetches the defaults; this script pulls
efficientnet-lite0 and all-minilm-l6-v2 if missing).
"""

import argparse
import glob
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni"))
MODELS = HOME / "models"
OMNI = os.environ.get("OMNI", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "omni"))
PY = os.environ.get("PEERS_PYTHON", str(HOME / "peers" / "bin" / "python"))
CLIPS = sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))
GGUF = MODELS / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "ihc.png", "retina.jpg"]
CLIP_PRE = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}
WORDS = ("the a river mountain weather spring model vector image text search quick brown fox "
         "jumps over lazy dog engine rust python tensor city night music coffee train data "
         "learning small large fast slow red green blue house garden window").split()

# ---------------------------------------------------------------------------------------
# Peer programs: each prints one JSON object on its last stdout line.

TIMING = r'''
import json, statistics, time
def timed(f, rounds, items):
    f()
    rates = []
    for _ in range(rounds):
        t = time.perf_counter(); f(); rates.append(items / (time.perf_counter() - t))
    print(json.dumps({"median": statistics.median(rates), "best": max(rates)}))
'''

LLAMA_CPP = r'''
import json, sys, time
from llama_cpp import Llama
model, threads, decode, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
prompt = open(path).read()
m = Llama(model, n_ctx=4096, n_batch=512, n_ubatch=512, n_threads=threads,
          n_threads_batch=threads, verbose=False)
ids = m.tokenize(prompt.encode(), add_bos=True, special=True)
m.reset()
t = time.perf_counter(); m.eval(ids); prefill = time.perf_counter() - t
t = time.perf_counter()
for _ in range(decode):
    tok = m.sample(temp=0.0, top_k=1)
    m.eval([tok])
dec = time.perf_counter() - t
print(json.dumps({"prompt_tokens": len(ids), "prefill": len(ids) / prefill, "decode": decode / dec}))
'''

PROMPT = r'''
import sys
from llama_cpp import Llama
m = Llama(sys.argv[1], n_ctx=64, vocab_only=True, verbose=False)
para = ("The history of computing is a story of people who wanted to calculate faster. "
        "Early mechanical calculators gave way to electronic machines, then to transistors, "
        "integrated circuits and the microprocessor. Each step made machines smaller, cheaper "
        "and more capable, and each opened new uses that nobody had planned for. ")
ids = m.tokenize((para * 200).encode(), add_bos=False, special=False)[: int(sys.argv[2])]
sys.stdout.write(m.detokenize(ids).decode())
'''

FASTER_WHISPER = r'''
import sys
from faster_whisper import WhisperModel
model_dir, threads = sys.argv[1], int(sys.argv[2])
model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
for clip in sys.argv[3:]:
    segments, _ = model.transcribe(clip, beam_size=5, language="en", temperature=0.0,
                                   condition_on_previous_text=True, vad_filter=False)
    print(" ".join(s.text.strip() for s in segments))
'''

TORCH_EFFNET = TIMING + r'''
import sys, torch
from efficientnet_lite_pytorch import EfficientNet
pth, batch, rounds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()
x = torch.rand(batch, 3, 224, 224) * 2 - 1
with torch.inference_mode():
    timed(lambda: m(x), rounds, batch)
'''

TORCH_CLIP = TIMING + r'''
import sys, torch
from transformers import CLIPModel
model_dir, batch, rounds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = CLIPModel.from_pretrained(model_dir).eval()
x = torch.rand(batch, 3, 224, 224) * 2 - 1
with torch.inference_mode():
    timed(lambda: m.get_image_features(pixel_values=x), rounds, batch)
'''

ORT_IMAGE = TIMING + r'''
import sys, numpy as np, onnxruntime as ort
path, batch, rounds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = (np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32) * 2 - 1)
name = s.get_inputs()[0].name
timed(lambda: s.run(None, {name: x}), rounds, batch)
'''

EXPORT_IMAGE = r'''
import sys, torch
kind, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "efficientnet":
    from efficientnet_lite_pytorch import EfficientNet
    m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=src).eval()
    f = m
else:
    from transformers import CLIPModel
    m = CLIPModel.from_pretrained(src).eval()
    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m
        def forward(self, x):
            out = self.m.get_image_features(pixel_values=x)
            return getattr(out, "pooler_output", out)
    f = Tower().eval()
torch.onnx.export(f, (torch.rand(2, 3, 224, 224),), out, input_names=["pixels"],
                  output_names=["out"], dynamic_axes={"pixels": {0: "n"}}, opset_version=17,
                  dynamo=False)
'''

BUILD_CLIP = r'''
import json, sys, torch
from transformers import CLIPConfig, CLIPModel
out, pre, tok = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
config = CLIPConfig(
    text_config=dict(vocab_size=49408, max_position_embeddings=77),
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, image_size=224, patch_size=32),
    projection_dim=512)
CLIPModel(config).eval().save_pretrained(out, safe_serialization=True)
open(out + "/preprocessor_config.json", "w").write(pre)
open(out + "/tokenizer.json", "w").write(open(tok).read())
'''

SENTENCE_TRANSFORMERS = TIMING + r'''
import sys, torch
from sentence_transformers import SentenceTransformer
model_dir, path, batch, rounds, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
texts = open(path, encoding="utf-8").read().splitlines()
m = SentenceTransformer(model_dir, device="cpu")
timed(lambda: m.encode(texts, batch_size=batch), rounds, len(texts))
'''

EXPORT_MINILM = r'''
import sys, torch
from transformers import AutoModel
m = AutoModel.from_pretrained(sys.argv[1]).eval()
class States(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.m = m
    def forward(self, ids, mask, types):
        return self.m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
ids = torch.ones(2, 8, dtype=torch.long)
torch.onnx.export(States().eval(), (ids, ids, torch.zeros_like(ids)), sys.argv[2],
                  input_names=["input_ids", "attention_mask", "token_type_ids"],
                  output_names=["states"],
                  dynamic_axes={n: {0: "b", 1: "s"} for n in ["input_ids", "attention_mask", "token_type_ids"]},
                  opset_version=17, dynamo=False)
'''

ORT_MINILM = TIMING + r'''
import sys, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
model_dir, onnx, path, batch, rounds, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
tok = Tokenizer.from_file(model_dir + "/tokenizer.json")
tok.enable_truncation(256); tok.enable_padding()
texts = open(path, encoding="utf-8").read().splitlines()
order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
def run():
    for at in range(0, len(order), batch):
        enc = tok.encode_batch([texts[i] for i in order[at:at + batch]])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        states = s.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        e = (states * m).sum(1) / m.sum(1)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
timed(run, rounds, len(texts))
'''

HF_PREPROCESS = TIMING + r'''
import sys, PIL.Image, PIL.ImageOps
from transformers import CLIPImageProcessor
model_dir, rounds, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
p = CLIPImageProcessor.from_pretrained(model_dir)
def run():
    ims = [PIL.ImageOps.exif_transpose(PIL.Image.open(x)) for x in paths]
    p(images=ims, return_tensors="pt")["pixel_values"]
timed(run, rounds, len(paths))
'''

# ---------------------------------------------------------------------------------------


def thread_env(threads):
    e = dict(os.environ)
    e.update(RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    return e


def run(cmd, threads, stdout_file=None):
    """Runs `cmd`; returns (stdout, stderr, wall seconds, peak RSS MiB)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=thread_env(threads), text=True)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0), err.seek(0)
        so, se = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{se[-3000:]}")
    return so, se, wall, usage.ru_maxrss / 1024


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


class Row:
    """One measure: omni's and each peer's values over the alternating runs."""

    def __init__(self, name, unit, target, higher_is_better=True):
        """`target`: the ratio to reach, one number or one per peer."""
        self.name, self.unit, self.target, self.higher = name, unit, target, higher_is_better
        self.values = {}

    def add(self, engine, value):
        self.values.setdefault(engine, []).append(value)

    def median(self, engine):
        return statistics.median(self.values[engine])

    def ratios(self):
        o = self.median("omni")
        return {e: (o / self.median(e) if self.higher else self.median(e) / o)
                for e in self.values if e != "omni"}


def alternate(runs, jobs):
    """Calls each job (engine name → function) once as warm-up, then `runs` times,
    alternating the order; yields (engine, result) for the timed calls."""
    names = list(jobs)
    for i in range(runs + 1):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            result = jobs[name]()
            if i > 0:
                yield name, result


# ---------------------------------------------------------------------------------------


def ensure_models(*names):
    missing = [n for n in names if not (MODELS / n).is_dir()]
    if missing:
        subprocess.run([OMNI, "models", "pull", *missing], check=True)


def bench_llm(a, rows, work):
    ensure_models("smollm2-135m-instruct")
    gguf = str(GGUF)

    def prompt_file(tokens):
        path = work / f"prompt_{tokens}.txt"
        if not path.exists():
            so, _, _, _ = run([PY, "-c", PROMPT, gguf, str(tokens)], 1)
            path.write_text(so)
        return str(path)

    def omni(path, decode):
        _, se, _, rss = run([OMNI, "generate", "--model", gguf, "--prompt-file", path,
                             "--threads", str(a.threads), "--temperature", "0",
                             "--max-tokens", str(decode + 1), "--ignore-eos", "--stats"], a.threads)
        m = re.search(r"prefill: (\d+) tokens.*?\(([\d.]+) tok/s\); decode: .*?\(([\d.]+) tok/s\)", se)
        if not m:
            raise SystemExit(f"no stats from omni generate:\n{se}")
        return {"prefill": float(m.group(2)), "decode": float(m.group(3)), "rss": rss}

    def llama(path, decode):
        so, _, _, rss = run([PY, "-c", LLAMA_CPP, gguf, str(a.threads), str(decode), path], a.threads)
        return {**last_json(so), "rss": rss}

    prefill = Row("SmolLM2-135M Q4_1 prefill, 512-token prompt", "tok/s", 1.2)
    decode = Row("SmolLM2-135M Q4_1 decode, 128 tokens after 512", "tok/s", 1.0)
    short = Row("SmolLM2-135M Q4_1 decode, 128 tokens after 16", "tok/s", 1.0)
    rss = Row("SmolLM2-135M peak RSS (512 + 128 tokens)", "MiB", 1.0, higher_is_better=False)
    long_p, short_p = prompt_file(512), prompt_file(16)
    jobs = {"omni": lambda: (omni(long_p, 128), omni(short_p, 128)),
            "llama.cpp": lambda: (llama(long_p, 128), llama(short_p, 128))}
    for engine, (r, s) in alternate(a.runs, jobs):
        prefill.add(engine, r["prefill"])
        decode.add(engine, r["decode"])
        short.add(engine, s["decode"])
        rss.add(engine, r["rss"])
    rows += [prefill, decode, short, rss]

    if a.plot:
        contexts = [16, 256, 512, 1024, 2048, 3072]
        curve = {"omni": {}, "llama.cpp": {}}
        for ctx in contexts:
            p = prompt_file(ctx)
            jobs = {"omni": lambda: omni(p, 64), "llama.cpp": lambda: llama(p, 64)}
            for engine, r in alternate(max(1, a.runs // 2), jobs):
                curve[engine].setdefault(ctx, []).append(r["decode"])
        plot_curve(curve, a.plot, a.threads)


PLOT = r'''
import json, statistics, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
curve, path, threads = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
for engine, style in (("omni", "o-"), ("llama.cpp", "s--")):
    xs = sorted(curve[engine], key=int)
    ax.plot([int(x) for x in xs], [statistics.median(curve[engine][x]) for x in xs], style, label=engine)
ax.set_xlabel("context length (tokens before the 64 decoded)")
ax.set_ylabel("decode tok/s (median)")
ax.set_title(f"SmolLM2-135M Q4_1 decode, {threads} threads, same GGUF")
ax.set_ylim(bottom=0)
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(path)
'''


def plot_curve(curve, path, threads):
    """Draws the curve with matplotlib from the peers' Python; prints the medians."""
    data = {e: {str(k): v for k, v in c.items()} for e, c in curve.items()}
    run([PY, "-c", PLOT, json.dumps(data), str(path), str(threads)], 1)
    print(f"plot: {path}")
    print("decode tok/s by context:", json.dumps(
        {e: {k: round(statistics.median(v), 1) for k, v in c.items()} for e, c in data.items()}))


def bench_whisper(a, rows, work):
    names = ["whisper-tiny.en", "whisper-base"]
    ensure_models(*names)
    for name in names:
        secs = Row(f"{name}: 5 LibriVox clips, model load included", "s", 1.0, higher_is_better=False)
        rss = Row(f"{name}: peak RSS", "MiB", 1.0, higher_is_better=False)

        def omni():
            _, _, wall, r = run([OMNI, "transcribe", *CLIPS, "--model", name, "--threads", str(a.threads),
                                 "--beam-size", "5", "--language", "en", "--no-fallback"], a.threads)
            return wall, r

        def fw():
            _, _, wall, r = run([PY, "-c", FASTER_WHISPER, str(MODELS / name), str(a.threads), *CLIPS],
                                a.threads)
            return wall, r

        for engine, (wall, r) in alternate(a.runs, {"omni": omni, "faster-whisper f32": fw}):
            secs.add(engine, wall)
            rss.add(engine, r)
        rows += [secs, rss]


def clip_dir(work):
    path = work / "clip-b32"
    if not path.exists():
        run([PY, "-c", BUILD_CLIP, str(path), json.dumps(CLIP_PRE),
             str(ROOT / "fixtures" / "clip" / "tiny-clip" / "tokenizer.json")], 2)
    return path


def bench_image(a, rows, work):
    ensure_models("efficientnet-lite0")
    batch, rounds = 32, 3
    pth = next((MODELS / "efficientnet-lite0").glob("*.pth"))
    clip = clip_dir(work)
    for label, kind, src, torch_prog in (
        ("EfficientNet-Lite0", "efficientnet", pth, TORCH_EFFNET),
        ("CLIP ViT-B/32-shaped tower", "clip", clip, TORCH_CLIP),
    ):
        onnx = work / f"{kind}.onnx"
        if not onnx.exists():
            run([PY, "-c", EXPORT_IMAGE, kind, str(src), str(onnx)], a.threads)
        rate = Row(f"{label} images/s, batch {batch}", "images/s",
                   {"PyTorch": 1.5, "onnxruntime": 1.0})
        rss = Row(f"{label} peak RSS", "MiB", 1.0, higher_is_better=False)
        args = [str(batch), str(rounds), str(a.threads)]
        jobs = {
            "omni": lambda: run([OMNI, "bench", "image-encoder", "--model", str(src), "--batch", str(batch),
                                 "--rounds", str(rounds), "--threads", str(a.threads), "--json"], a.threads),
            "PyTorch": lambda: run([PY, "-c", torch_prog, str(src), *args], a.threads),
            "onnxruntime": lambda: run([PY, "-c", ORT_IMAGE, str(onnx), *args], a.threads),
        }
        for engine, (so, _, _, r) in alternate(a.runs, jobs):
            rate.add(engine, last_json(so)["median"])
            rss.add(engine, r)
        rows += [rate, rss]


def bench_text(a, rows, work):
    ensure_models("all-minilm-l6-v2")
    model = MODELS / "all-minilm-l6-v2"
    batch, rounds, n = 64, 3, 512
    rng = random.Random(0)
    texts = work / "sentences.txt"
    texts.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + "."
                               for _ in range(n)))
    onnx = work / "minilm.onnx"
    if not onnx.exists():
        run([PY, "-c", EXPORT_MINILM, str(model), str(onnx)], a.threads)
    rate = Row(f"all-MiniLM-L6-v2 sentences/s, batch {batch} ({n} sentences of 5-60 words)", "texts/s",
               {"sentence-transformers": 1.5, "onnxruntime": 1.0})
    rss = Row("all-MiniLM-L6-v2 peak RSS", "MiB", 1.0, higher_is_better=False)
    jobs = {
        "omni": lambda: run([OMNI, "bench", "text-encoder", "--model", str(model), "--file", str(texts),
                             "--batch", str(batch), "--rounds", str(rounds), "--threads", str(a.threads),
                             "--json"], a.threads),
        "sentence-transformers": lambda: run([PY, "-c", SENTENCE_TRANSFORMERS, str(model), str(texts),
                                              str(batch), str(rounds), str(a.threads)], a.threads),
        "onnxruntime": lambda: run([PY, "-c", ORT_MINILM, str(model), str(onnx), str(texts), str(batch),
                                    str(rounds), str(a.threads)], a.threads),
    }
    for engine, (so, _, _, r) in alternate(a.runs, jobs):
        rate.add(engine, last_json(so)["median"])
        rss.add(engine, r)
    rows += [rate, rss]


def bench_preprocess(a, rows, work):
    data = HOME / "data" / "skimage"
    paths = [str(data / p) for p in PHOTOS]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"missing {missing[0]} (see .ci/run: scikit-image's photos)")
    clip = clip_dir(work)
    rounds = 5
    rate = Row("image preprocessing images/s (decode + resize + crop + normalize, 8 photos)",
               "images/s", 5.0)
    jobs = {
        "omni": lambda: run([OMNI, "bench", "preprocess", "--model", str(clip), "--rounds", str(rounds),
                             "--threads", str(a.threads), "--json", *paths], a.threads),
        "transformers": lambda: run([PY, "-c", HF_PREPROCESS, str(clip), str(rounds), *paths], a.threads),
    }
    for engine, (so, _, _, _) in alternate(a.runs, jobs):
        rate.add(engine, last_json(so)["median"])
    rows.append(rate)


BENCHES = {"llm": bench_llm, "whisper": bench_whisper, "image": bench_image, "text": bench_text,
           "preprocess": bench_preprocess}


def fmt(v):
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default=",".join(BENCHES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="write every measurement to this file")
    ap.add_argument("--plot", help="PNG of decode tok/s against context length (llm row)")
    ap.add_argument("--work", help="keep exported models and inputs here between runs")
    a = ap.parse_args()
    for tool in (OMNI, PY):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"not found: {tool} (cargo build --release; scripts/install_peers.sh)")
    work = Path(a.work or tempfile.mkdtemp(prefix="omni-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.rows.split(","):
        if name not in BENCHES:
            raise SystemExit(f"unknown row {name!r} (rows: {', '.join(BENCHES)})")
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr)
        done = len(rows)
        BENCHES[name](a, rows, work)
        for row in rows[done:]:
            print(f"  {row.name}: " + ", ".join(
                f"{e} {fmt(statistics.median(v))}" for e, v in row.values.items()), file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps([vars(r) for r in rows], indent=1))

    print(f"\n{os.uname().nodename}: {os.cpu_count()} CPUs, {a.threads} threads, {a.runs} runs, medians")
    print("| measure | omni | peer | peer value | ratio (≥ 1: omni ahead) | target | met |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for peer, ratio in row.ratios().items():
            target = row.target[peer] if isinstance(row.target, dict) else row.target
            print(f"| {row.name} ({row.unit}) | {fmt(row.median('omni'))} | {peer} | "
                  f"{fmt(row.median(peer))} | {ratio:.2f}× | ≥ {target} | {'yes' if ratio >= target else 'no'} |")


if __name__ == "__main__":
    main()
