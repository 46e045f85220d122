#!/usr/bin/env python3
"""Side-by-side benchmark: omni vs faster-whisper (CTranslate2 float32 and int8) transcribing
the five LibriVox clips of Debian's pocketsphinx-testdata, same models, same threads.

    cargo build --release -p omni-cli
    python3 scripts/bench_whisper.py [--rounds 3] [--threads 2] [--beam-size 5] [--models whisper-tiny.en,whisper-base]

Each measurement is one process per tool per model transcribing the five clips (so model
loading is included), timed from outside (wall clock, peak RSS via /usr/bin/time). Inside each
process the per-clip times are reported too; "steady" is the mean of clips 2–5 (the first clip
pays for warm-up). Every configuration is run `--rounds` times, interleaved, and the minimum is
kept (the machine is shared; minima are the least noisy). Decoding is identical on both sides:
temperature 0 only (omni --no-fallback), language en, the given beam size.

Environment: PEERS_PYTHON (default /work/peers/bin/python) must have faster-whisper installed;
OMNI (default target/release/omni or $CARGO_TARGET_DIR/release/omni); OMNI_HOME for the models.
"""

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIPS = sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))
MODELS_DIR = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models"

FW_SCRIPT = r'''
import sys, time
t0 = time.perf_counter()
from faster_whisper import WhisperModel
model_dir, compute_type, threads, beam = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)
print("timing: model load %.3f s" % (time.perf_counter() - t0), file=sys.stderr)
for clip in sys.argv[5:]:
    t = time.perf_counter()
    segments, info = model.transcribe(clip, beam_size=beam, temperature=0.0, language="en")
    text = "".join(s.text for s in segments).strip()
    print("timing: %s: %.2f s of audio in %.3f s" % (clip, info.duration, time.perf_counter() - t), file=sys.stderr)
    print(text)
'''


def omni_binary():
    if "OMNI" in os.environ:
        return os.environ["OMNI"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "release" / "omni")


def run(cmd, env):
    """Runs cmd under /usr/bin/time; returns (wall s, peak RSS MB, per-clip s, load s, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %M", "-o", tf.name] + cmd
        out = subprocess.run(full, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit("failed: %s\n%s" % (" ".join(cmd), out.stderr[-2000:]))
        wall, rss_kb = tf.read().split()[-2:]
    clips = [float(m) for m in re.findall(r"of audio in ([0-9.]+) s", out.stderr)]
    load = re.search(r"model load ([0-9.]+) s", out.stderr)
    return float(wall), int(rss_kb) / 1024, clips, float(load.group(1)) if load else None, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--models", default="whisper-tiny.en,whisper-base")
    ap.add_argument("--python", default=os.environ.get("PEERS_PYTHON", "/work/peers/bin/python"))
    args = ap.parse_args()
    if len(CLIPS) != 5:
        sys.exit("the LibriVox clips are missing (apt-get install pocketsphinx-testdata)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))
    audio_s = sum(int(Path(c).stat().st_size - 44) / 32000 for c in CLIPS)
    fw_script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    fw_script.write(FW_SCRIPT)
    fw_script.close()

    tools = {
        "omni (f32)": lambda m: [omni_binary(), "transcribe", *CLIPS, "--model", m,
                                 "--threads", str(args.threads), "--beam-size", str(args.beam_size),
                                 "--language", "en", "--no-fallback", "--timings"],
        "faster-whisper float32": lambda m: [args.python, fw_script.name, str(MODELS_DIR / m),
                                             "float32", str(args.threads), str(args.beam_size), *CLIPS],
        "faster-whisper int8": lambda m: [args.python, fw_script.name, str(MODELS_DIR / m),
                                          "int8", str(args.threads), str(args.beam_size), *CLIPS],
    }
    print("# %d clips, %.1f s of audio; %d threads; beam %d; %d rounds (min kept); %s"
          % (len(CLIPS), audio_s, args.threads, args.beam_size, args.rounds,
             os.uname().nodename))
    for model in args.models.split(","):
        best = {}
        texts = {}
        for _ in range(args.rounds):
            for name, cmd in tools.items():
                wall, rss, clips, load, stdout = run(cmd(model), env)
                prev = best.get(name)
                steady = statistics.mean(clips[1:]) if len(clips) > 1 else float("nan")
                cur = (wall, rss, steady, load, sum(clips))
                best[name] = cur if prev is None else tuple(min(a, b) for a, b in zip(prev, cur))
                texts[name] = stdout
        print("\n## %s" % model)
        print("| tool | wall (5 clips, incl. load) | load | transcribe total | steady per clip | peak RSS | omni speed-up |")
        print("|---|---|---|---|---|---|---|")
        omni_wall = best["omni (f32)"][0]
        omni_steady = best["omni (f32)"][2]
        for name, (wall, rss, steady, load, total) in best.items():
            ratio = "" if name.startswith("omni") else "%.2fx wall, %.2fx steady" % (wall / omni_wall, steady / omni_steady)
            print("| %s | %.2f s | %.2f s | %.2f s | %.3f s | %.0f MB | %s |"
                  % (name, wall, load or float("nan"), total, steady, rss, ratio))
        omni_lines = [line.split(": ", 1)[1] for line in texts["omni (f32)"].splitlines()]
        same = omni_lines == texts["faster-whisper float32"].splitlines()
        print("\nomni text %s faster-whisper float32 text" % ("==" if same else "!="))
    os.unlink(fw_script.name)


if __name__ == "__main__":
    main()
