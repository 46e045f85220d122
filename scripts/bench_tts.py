#!/usr/bin/env python3
"""Kokoro-82M text-to-speech: `omni speak` against Python onnxruntime on the same text.

    python3 scripts/bench_tts.py [--text scripts/data/tts_2000.txt] [--threads 1,2]
        [--peer-python /work/peers/bin/python] [--omni target/release/omni]

For each thread count it runs, one after the other:
  omni  `omni speak -t N --format pcm` with the text on stdin, audio read from a pipe:
        time to the first audio byte, total wall time (process start, model load, G2P,
        synthesis), seconds of audio, RTF = wall / audio, peak RSS (GNU time's %M).
  peer  scripts/bench_kokoro_peer.py with the same utterances (`omni speak --phonemes`
        prints them, one per line) on onnxruntime 1.32.0: session load, time to the first
        chunk and synthesis time of one cold pass (like one omni run), peak RSS.
The peer gets omni's phonemes, so it does no G2P: its numbers are the model alone.
Only the standard library is used here; the peer needs numpy and onnxruntime==1.32.0.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BYTES_PER_SECOND = 24_000 * 2  # 24 kHz, 16-bit mono pcm


def omni_run(omni, text, threads):
    cmd = ["/usr/bin/time", "-f", "%M", omni, "speak", "-t", str(threads), "--format", "pcm"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(text.encode())
    proc.stdin.close()
    first, total = None, 0
    while True:
        chunk = proc.stdout.read(65536)
        if not chunk:
            break
        if first is None:
            first = time.perf_counter() - start
        total += len(chunk)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.wait()
    if proc.returncode != 0:
        sys.exit(f"omni speak failed: {err}")
    rss_mib = int(err.strip().splitlines()[-1]) / 1024
    audio = total / BYTES_PER_SECOND
    return {"first": first, "wall": wall, "audio": audio, "rtf": wall / audio, "rss": rss_mib}


def peer_run(python, phonemes, threads):
    cmd = ["/usr/bin/time", "-f", "%M", python, str(ROOT / "scripts/bench_kokoro_peer.py"),
           "--phonemes", "|".join(phonemes), "--voice", "jm_kumo", "--threads", str(threads),
           "--repeats", "1", "--no-warmup"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"peer failed: {out.stderr}")
    line = next(l for l in out.stdout.splitlines() if l.startswith(f"threads {threads}:"))
    load, first, total, audio, rtf = map(float, re.findall(
        r"load ([\d.]+) s, first chunk ([\d.]+) s, total ([\d.]+) s for ([\d.]+) s of audio, RTF ([\d.]+)", line)[0])
    rss_mib = int(out.stderr.strip().splitlines()[-1]) / 1024
    return {"load": load, "first": first, "total": total, "audio": audio, "rtf": rtf, "rss": rss_mib}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(ROOT / "scripts/data/tts_2000.txt"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--peer-python", default="/work/peers/bin/python")
    ap.add_argument("--omni", default=str(ROOT / "target/release/omni"))
    args = ap.parse_args()
    text = Path(args.text).read_text()
    phonemes = subprocess.run([args.omni, "speak", "--phonemes"], input=text, capture_output=True,
                              text=True, check=True).stdout.split("\n")
    phonemes = [p for p in phonemes if p.strip()]
    print(f"{len(text)} characters, {len(phonemes)} utterances")
    for threads in [int(t) for t in args.threads.split(",")]:
        o = omni_run(args.omni, text, threads)
        print(f"threads {threads}  omni: first audio {o['first']:.2f} s, wall {o['wall']:.1f} s for "
              f"{o['audio']:.1f} s of audio, RTF {o['rtf']:.3f}, peak RSS {o['rss']:.0f} MiB")
        p = peer_run(args.peer_python, phonemes, threads)
        print(f"threads {threads}  peer: load {p['load']:.2f} s + first chunk {p['first']:.2f} s, "
              f"synthesis {p['total']:.1f} s for {p['audio']:.1f} s of audio, RTF {p['rtf']:.3f} "
              f"(with load {(p['total'] + p['load']) / p['audio']:.3f}), peak RSS {p['rss']:.0f} MiB")


if __name__ == "__main__":
    main()
