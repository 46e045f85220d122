#!/usr/bin/env python3
"""Reference data for omni's LLM backbone, from llama.cpp (llama-cpp-python) on the same GGUF.

Writes fixtures/llm/smollm2_parity.json:
  - generation: greedy continuations (up to 64 tokens, stopping at end-of-generation; and
    64 tokens ignoring end-of-generation) of raw and chat-templated prompts, with the
    prompt text, its token ids and, for chat prompts, the messages and the text
    llama-cpp-python's Jinja2 chat formatter renders;
  - tokenization: token ids of varied strings, parsing special tokens and not.
and, when the Qwen2.5-Coder GGUF is given, fixtures/llm/qwen2_tokenization.json (the
same strings through the qwen2 pre-tokenizer, and the chat prompts rendered with Qwen's
template).

Usage:
  /work/peers/bin/python scripts/make_llm_fixtures.py \
      [--smollm2 PATH.gguf] [--qwen2 PATH.gguf] [--out fixtures/llm]

Needs llama-cpp-python (builds llama.cpp; `CMAKE_ARGS="-DGGML_NATIVE=ON" pip install
llama-cpp-python`), numpy and gguf. Greedy decoding here is argmax over llama.cpp's
logits: prompt in one batch, then one token per decode call, 2 threads (the thread count
does not change llama.cpp's results).
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

HOME = os.path.expanduser("~/.cache/omni/models")
DEFAULT_SMOLLM2 = os.path.join(HOME, "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_QWEN2 = os.path.join(HOME, "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")

MAX_NEW = 64

# Raw prompts (`prompt`) and chat conversations (`messages`).
GENERATION = [
    {"name": "raw_capital", "prompt": "The capital of France is"},
    {"name": "raw_code", "prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "raw_story", "prompt": "Once upon a time, in a small village by the sea,"},
    {"name": "chat_boiling", "messages": [{"role": "user", "content": "What is the boiling point of water in Celsius?"}]},
    {
        "name": "chat_system",
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "List three primary colors."},
        ],
    },
    {
        "name": "chat_multiturn",
        "messages": [
            {"role": "user", "content": "Hi! My name is Ada."},
            {"role": "assistant", "content": "Hello Ada! How can I help you today?"},
            {"role": "user", "content": "What is my name?"},
        ],
    },
]

TOKENIZATION = [
    "Hello, world!",
    "  leading spaces and   multiple   spaces  ",
    "tabs\tand\nnewlines\n\n\nend\r\nwindows",
    "Unicode: café, naïve, Ångström, Straße, ﬁ ligature",
    "Emoji: 😀🎉👍🏽 family: 👨‍👩‍👧‍👦 flag: 🇫🇷",
    "CJK: 你好，世界！日本語のテキスト。한국어 문장.",
    "Numbers: 3.14159, 1,000,000 and 2024-06-01 12345678901234567890",
    "fn main() {\n    println!(\"{}\", x + 1);\n}",
    "def f(x):\n\treturn x**2  # square\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "Mixed <|endoftext|> inside text",
    "Arabic: مرحبا بالعالم, Hebrew: שלום, Hindi: नमस्ते",
    "Русский текст и ёлка",
    "URLs: https://example.com/path?q=1&r=2#frag",
    "JSON: {\"key\": [1, 2, {\"nested\": null}]}",
    "Apostrophes: don't, I'm, we'll, they've, it's, She'd, O'Neil'S",
    "\u00a0non-breaking\u2003em-space\u200bzero-width\u3000ideographic",
    "Math: ∑ x² ≤ ∞ → ∀ε>0 ∃δ",
    "   \n  \t  ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!????",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path):
    return Llama(path, n_ctx=2048, n_batch=512, n_threads=2, n_threads_batch=2, verbose=False)


def token_text(m, tid):
    return llama_cpp.llama_token_get_text(m._model.vocab, tid).decode("utf-8")


def tokenization(m):
    out = []
    for text in TOKENIZATION:
        out.append(
            {
                "text": text,
                "special": m.tokenize(text.encode("utf-8"), add_bos=False, special=True),
                "plain": m.tokenize(text.encode("utf-8"), add_bos=False, special=False),
            }
        )
    return out


def greedy(m, prompt_ids, stop_at_eog=True):
    m.reset()
    m.eval(prompt_ids)
    vocab = m._model.vocab
    out = []
    for _ in range(MAX_NEW):
        ptr = llama_cpp.llama_get_logits_ith(m._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(m.n_vocab(),))
        tok = int(np.argmax(logits))
        if stop_at_eog and llama_cpp.llama_vocab_is_eog(vocab, tok):
            return out, "eos"
        out.append(tok)
        m.eval([tok])
    return out, "length"


def smollm2(path, out_dir):
    m = load(path)
    meta = m.metadata
    template = meta["tokenizer.chat_template"]
    bos = token_text(m, m.token_bos())
    eos = token_text(m, m.token_eos())
    gen = []
    for case in GENERATION:
        entry = {"name": case["name"]}
        if "prompt" in case:
            text = case["prompt"]
            entry["prompt"] = text
            ids = m.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        else:
            fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            text = fmt(messages=case["messages"]).prompt
            entry["messages"] = case["messages"]
            entry["rendered"] = text
            ids = m.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        entry["prompt_tokens"] = ids
        entry["tokens"], entry["finish"] = greedy(m, ids)
        # 64 tokens whatever happens (end-of-generation tokens fed back like any other).
        entry["tokens_ignore_eos"], _ = greedy(m, ids, stop_at_eog=False)
        entry["text"] = m.detokenize(entry["tokens"]).decode("utf-8", errors="replace")
        gen.append(entry)
        print(f"{case['name']}: {len(ids)} prompt tokens, {len(entry['tokens'])} generated ({entry['finish']})")
    data = {
        "model": os.path.basename(path),
        "sha256": sha256(path),
        "llama_cpp_python": llama_cpp.__version__,
        "max_new_tokens": MAX_NEW,
        "generation": gen,
        "tokenization": tokenization(m),
    }
    with open(os.path.join(out_dir, "smollm2_parity.json"), "w") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def qwen2(path, out_dir):
    m = load(path)
    template = m.metadata["tokenizer.chat_template"]
    fmt = Jinja2ChatFormatter(template=template, eos_token=token_text(m, m.token_eos()), bos_token=token_text(m, m.token_bos()))
    chats = []
    for case in GENERATION:
        if "messages" in case:
            text = fmt(messages=case["messages"]).prompt
            ids = m.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            chats.append({"name": case["name"], "messages": case["messages"], "rendered": text, "prompt_tokens": ids})
    data = {
        "model": os.path.basename(path),
        "sha256": sha256(path),
        "llama_cpp_python": llama_cpp.__version__,
        "chat": chats,
        "tokenization": tokenization(m),
    }
    with open(os.path.join(out_dir, "qwen2_tokenization.json"), "w") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    print(f"qwen2: {len(data['tokenization'])} tokenizations")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", default=DEFAULT_SMOLLM2)
    ap.add_argument("--qwen2", default=DEFAULT_QWEN2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "llm"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    smollm2(args.smollm2, args.out)
    if os.path.exists(args.qwen2):
        qwen2(args.qwen2, args.out)
    else:
        print(f"no Qwen2 GGUF at {args.qwen2}; skipping its tokenization fixture", file=sys.stderr)


if __name__ == "__main__":
    main()
