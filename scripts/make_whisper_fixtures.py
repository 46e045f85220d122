#!/usr/bin/env python3
"""Makes the Whisper parity fixtures in fixtures/whisper/ with the Python peers.

Run with the peers venv (faster-whisper 1.2.1, ctranslate2, transformers, numpy):

    /work/peers/bin/python scripts/make_whisper_fixtures.py

Inputs: the five LibriVox clips of Debian's `pocketsphinx-testdata`
(/usr/share/pocketsphinx/test/data/librivox/*.wav) and the CTranslate2 Whisper models in the
omni cache (~/.cache/omni/models/whisper-tiny.en, whisper-base).

Outputs (small; committed):
- mel/<clip>.f32      faster-whisper FeatureExtractor(80) log-mel of each clip, row-major
                      [80, n_frames] little-endian f32 (all frames, ~0.8 MB in total);
- mel.json            clip names, frame counts, and the max |diff| between faster-whisper's and
                      transformers' WhisperFeatureExtractor on the frames both compute alike;
- transcripts.json    faster-whisper segments (start, end, text, tokens) per model, per clip,
                      greedy (beam_size=1) and beam search (beam_size=5), temperature 0,
                      compute_type float32, language "en", other options at their defaults;
                      plus the same for a long input: the clips twice over with 1 s of silence
                      between them (~58 s, two 30 s windows or more).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio
from faster_whisper.feature_extractor import FeatureExtractor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "whisper"
CLIPS_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
MODELS = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models"
SILENCE_S = 1.0


def clips():
    return sorted(CLIPS_DIR.glob("*.wav"))


def long_audio():
    """The clips twice over, each followed by 1 s of digital silence (the Rust test builds
    exactly the same samples)."""
    gap = np.zeros(int(16000 * SILENCE_S), dtype=np.float32)
    parts = []
    for _ in range(2):
        for clip in clips():
            parts.append(decode_audio(str(clip)))
            parts.append(gap)
    return np.concatenate(parts)


def make_mel():
    (OUT / "mel").mkdir(parents=True, exist_ok=True)
    fe = FeatureExtractor(feature_size=80)
    try:
        from transformers import WhisperFeatureExtractor

        hf = WhisperFeatureExtractor(feature_size=80)
    except Exception as err:  # transformers is optional for the fixture
        print("transformers unavailable:", err, file=sys.stderr)
        hf = None
    entries = []
    for clip in clips():
        audio = decode_audio(str(clip))
        mel = fe(audio).astype("<f4")
        mel.tofile(OUT / "mel" / (clip.stem + ".f32"))
        entry = {"clip": clip.name, "samples": int(audio.shape[0]), "n_mels": 80,
                 "n_frames": int(mel.shape[1])}
        if hf is not None:
            ref = hf(audio, sampling_rate=16000, return_tensors="np").input_features[0]
            # transformers pads the audio to 30 s before the STFT, faster-whisper appends one hop
            # of zeros: frames away from the end of the audio are computed alike.
            n = mel.shape[1] - 3
            entry["max_abs_diff_vs_transformers"] = float(np.abs(ref[:, :n] - mel[:, :n]).max())
        entries.append(entry)
        print("mel", entry)
    (OUT / "mel.json").write_text(json.dumps(entries, indent=1) + "\n")


def segments_of(model, audio, beam_size):
    segments, info = model.transcribe(
        audio, beam_size=beam_size, temperature=0.0, language="en"
    )
    return [
        {"start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
         "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob}
        for s in segments
    ]


def make_transcripts():
    result = {"options": {"temperature": 0.0, "compute_type": "float32", "language": "en",
                          "long_audio": "clips x2, each followed by %.1f s of silence" % SILENCE_S},
              "models": {}}
    long = long_audio()
    for name in ["whisper-tiny.en", "whisper-base"]:
        path = MODELS / name
        if not path.is_dir():
            print("skip", name, "(not in", MODELS, ")", file=sys.stderr)
            continue
        model = WhisperModel(str(path), device="cpu", compute_type="float32", cpu_threads=2)
        per_model = {}
        for beam in [1, 5]:
            per_beam = {}
            for clip in clips():
                per_beam[clip.name] = segments_of(model, str(clip), beam)
                print(name, beam, clip.name, " ".join(s["text"] for s in per_beam[clip.name]))
            per_beam["long"] = segments_of(model, long, beam)
            print(name, beam, "long", [(s["start"], s["end"]) for s in per_beam["long"]])
            per_model["beam%d" % beam] = per_beam
        result["models"][name] = per_model
    (OUT / "transcripts.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    make_mel()
    make_transcripts()
