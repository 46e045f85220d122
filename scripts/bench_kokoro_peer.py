"""Kokoro-82M (int8 ONNX) speed on Python onnxruntime, the peer to compare omni's TTS with.

    /work/peers/bin/python scripts/bench_kokoro_peer.py [--ids "50 83 54 156 31"]
        [--ids-file FILE] [--phonemes "həlˈO wˈɜɹld!"] [--voice jf_alpha] [--speed 1.0]
        [--threads 1,2] [--repeats 3]

Input (one of; default: a built-in two-sentence phoneme string, one chunk per sentence):
  --ids        vocab ids of one chunk, without the 0 pads (spaces or commas)
  --ids-file   a text file of ids, one chunk (one model call) per line
  --phonemes   Kokoro phoneme string(s) mapped through vocab.json; '|' separates chunks
Each chunk is one `session.run` with tokens [0, *ids, 0], style = voice[len(ids) - 1],
speed; chunks of more than 510 ids are refused (the model's limit).

For each thread count (intra_op_num_threads; inter_op 1): session load time, then after one
warm-up pass over all chunks (none with --no-warmup), --repeats timed passes; reports the
best pass:
  first chunk  time from the start until the first chunk's audio is out (time to first chunk)
  total        synthesis time of all chunks; audio = seconds of audio produced
  RTF          total / audio (below 1 is faster than real time)
Models from $OMNI_HOME/models/kokoro-82m (default ~/.cache/omni). Not a test: numbers depend
on the machine and its load; keep runs short on the 2-core box.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODELS = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models" / "kokoro-82m"
SAMPLE_RATE = 24000
MAX_IDS = 510
DEFAULT_PHONEMES = ("ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ."
                    "|hˈW ɑɹ ju dˌuɪŋ tədˈA?")


def parse_ids(line):
    return [int(x) for x in line.replace(",", " ").split()]


def load_chunks(args, vocab):
    if args.ids:
        chunks = [parse_ids(args.ids)]
    elif args.ids_file:
        lines = Path(args.ids_file).read_text().splitlines()
        chunks = [parse_ids(line) for line in lines if line.strip()]
    else:
        text = args.phonemes or DEFAULT_PHONEMES
        chunks = [[vocab[c] for c in part if c in vocab] for part in text.split("|")]
    for c in chunks:
        if not 0 < len(c) <= MAX_IDS:
            raise SystemExit(f"a chunk has {len(c)} ids; 1..{MAX_IDS} allowed")
    return chunks


def synthesize(sess, chunks, pack, speed):
    """Run every chunk; return (seconds to first chunk, total seconds, samples)."""
    start = time.perf_counter()
    first, samples = None, 0
    for ids in chunks:
        audio = sess.run(None, {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": pack[len(ids) - 1].reshape(1, 256).astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        samples += np.asarray(audio).size
        if first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids")
    ap.add_argument("--ids-file")
    ap.add_argument("--phonemes")
    ap.add_argument("--voice", default="jf_alpha")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-warmup", action="store_true",
                    help="time the first pass (a cold session, like one `omni speak` run)")
    args = ap.parse_args()

    vocab = json.loads((MODELS / "vocab.json").read_text())["vocab"]
    pack = np.load(MODELS / "voices_ja.npz")[args.voice]
    chunks = load_chunks(args, vocab)
    print(f"onnxruntime {ort.__version__}; {len(chunks)} chunk(s), ids per chunk "
          f"{[len(c) for c in chunks]}; voice {args.voice}; speed {args.speed}")

    for threads in [int(t) for t in args.threads.split(",")]:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        t0 = time.perf_counter()
        sess = ort.InferenceSession(str(MODELS / "kokoro-v1.0.int8.onnx"), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        load = time.perf_counter() - t0
        if not args.no_warmup:
            synthesize(sess, chunks, pack, args.speed)
        runs = [synthesize(sess, chunks, pack, args.speed) for _ in range(args.repeats)]
        first, total, samples = min(runs, key=lambda r: r[1])
        audio_s = samples / SAMPLE_RATE
        print(f"threads {threads}: load {load:.2f} s, first chunk {first:.3f} s, total {total:.3f} s "
              f"for {audio_s:.2f} s of audio, RTF {total / audio_s:.3f} (best of {args.repeats})")


if __name__ == "__main__":
    main()
