#!/usr/bin/env python3
"""Makes the all-MiniLM-L6-v2 parity fixtures in fixtures/minilm/ with sentence-transformers.

Run with the peers venv (sentence-transformers 6.x, torch, transformers 5.x):

    /work/peers/bin/python scripts/make_minilm_fixtures.py

Input: the model in the omni cache (~/.cache/omni/models/all-minilm-l6-v2, fetched with
`omni models pull all-minilm-l6-v2`; the same files omni loads, no hub access).

Output (small; committed): fixtures/minilm/embeddings.json with, per sentence, the text,
its token ids as sentence-transformers tokenizes it (truncated to max_seq_length = 256),
and its normalized 384-d embedding (f32, computed on CPU in float32, batch of all 20).
"""

import json
import os
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "minilm"
MODEL = Path(os.environ.get("OMNI_HOME", Path.home() / ".cache" / "omni")) / "models" / "all-minilm-l6-v2"

LONG = " ".join(
    f"Sentence {i} of a long paragraph about rivers, mountains and the weather in spring."
    for i in range(40)
)

SENTENCES = [
    "A man is eating food.",
    "A cat sits on the warm windowsill.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello",
    "",
    "   ",
    "?!",
    "Ünïcödé: naïve café, Straße, smørrebrød — and “quotes”.",
    "東京は日本の首都です。",
    "Привет, как дела? Всё хорошо.",
    "emoji 🙂🚀 and math ∑ x² ≤ ∞",
    "def add(a, b):\n    return a + b  # adds two numbers",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "https://example.com/path?query=1&x=y#frag",
    "The the the the the the the the",
    "Tabs\tand\nnewlines\r\nin text",
    LONG,
    "A second long one: " + " ".join(["supercalifragilisticexpialidocious"] * 120),
    "Machine learning models map sentences to vectors in a shared semantic space.",
    "UPPER CASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
]


def main():
    torch.set_num_threads(2)
    model = SentenceTransformer(str(MODEL), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True,
                           normalize_embeddings=False)
    tok = model.tokenizer(SENTENCES, truncation=True, max_length=model.max_seq_length)
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [
        {"text": s, "ids": ids, "embedding": [float(x) for x in e]}
        for s, ids, e in zip(SENTENCES, tok["input_ids"], emb)
    ]
    assert any(len(c["ids"]) == 256 for c in cases), "no sentence exercises truncation"
    (OUT / "embeddings.json").write_text(
        json.dumps({"model": "all-minilm-l6-v2", "max_seq_length": 256, "cases": cases},
                   ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {OUT / 'embeddings.json'}")


if __name__ == "__main__":
    main()
