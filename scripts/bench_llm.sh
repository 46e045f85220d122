#!/usr/bin/env bash
# Side-by-side LLM speed: omni vs llama.cpp (llama-cpp-python) on the same GGUF, same
# prompt, same thread count, in one run.
#
#   scripts/bench_llm.sh [MODEL.gguf] [THREADS] [RUNS]
#
# Measures prefill tok/s on a 512-token prompt and decode tok/s over the 128 greedy tokens
# that follow it (end-of-generation ignored), RUNS times each, alternating the engines;
# prints the median and best of each. Defaults: SmolLM2-135M-Instruct Q4_1 from the omni
# cache, 2 threads, 5 runs. Needs a release build of omni (cargo build --release) and a
# Python with llama-cpp-python ($PYTHON, default /work/peers/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$HOME/.cache/omni/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${2:-2}"
RUNS="${3:-5}"
PYTHON="${PYTHON:-/work/peers/bin/python}"
OMNI="${OMNI:-${CARGO_TARGET_DIR:-$ROOT/target}/release/omni}"
PROMPT_TOKENS=512
DECODE_TOKENS=128

[ -x "$OMNI" ] || { echo "no omni binary at $OMNI (cargo build --release, or set OMNI)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The prompt: English prose cut to exactly 512 tokens by llama.cpp's tokenizer (omni's
# tokenization is identical, see crates/omni/tests/test_llama.rs).
"$PYTHON" - "$MODEL" "$PROMPT_TOKENS" > "$WORK/prompt.txt" 2>/dev/null <<'PY'
import sys
from llama_cpp import Llama
m = Llama(sys.argv[1], n_ctx=64, vocab_only=True, verbose=False)
para = ("The history of computing is a story of people who wanted to calculate faster. "
        "Early mechanical calculators gave way to electronic machines, then to transistors, "
        "integrated circuits and the microprocessor. Each step made machines smaller, cheaper "
        "and more capable, and each opened new uses that nobody had planned for. ")
text = para * 40
ids = m.tokenize(text.encode(), add_bos=False, special=False)[: int(sys.argv[2])]
sys.stdout.write(m.detokenize(ids).decode())
PY

cat > "$WORK/llamacpp.py" <<'PY'
import sys, time
from llama_cpp import Llama
model, threads, decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prompt = open(sys.argv[4]).read()
m = Llama(model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
ids = m.tokenize(prompt.encode(), add_bos=True, special=True)
m.reset()
t = time.perf_counter(); m.eval(ids); prefill = time.perf_counter() - t
t = time.perf_counter()
for _ in range(decode):
    tok = m.sample(temp=0.0, top_k=1)
    m.eval([tok])
dec = time.perf_counter() - t
print(f"{len(ids)} {len(ids) / prefill:.1f} {decode / dec:.1f}")
PY

echo "model: $MODEL"
echo "threads: $THREADS, prompt: $PROMPT_TOKENS tokens, decode: $DECODE_TOKENS tokens, runs: $RUNS"
: > "$WORK/omni.txt"; : > "$WORK/llama.txt"
for i in $(seq "$RUNS"); do
    "$OMNI" generate --model "$MODEL" --prompt-file "$WORK/prompt.txt" --threads "$THREADS" \
        --temperature 0 --max-tokens $((DECODE_TOKENS + 1)) --ignore-eos --stats \
        > /dev/null 2> "$WORK/omni.err"
    # "prefill: N tokens in S s (X tok/s); decode: M tokens in S s (Y tok/s); ..."
    sed -n 's/^prefill: \([0-9]*\) tokens.*(\([0-9.]*\) tok\/s); decode: .*(\([0-9.]*\) tok\/s).*/\1 \2 \3/p' \
        "$WORK/omni.err" >> "$WORK/omni.txt"
    "$PYTHON" "$WORK/llamacpp.py" "$MODEL" "$THREADS" "$DECODE_TOKENS" "$WORK/prompt.txt" >> "$WORK/llama.txt"
done

"$PYTHON" - "$WORK/omni.txt" "$WORK/llama.txt" <<'PY'
import statistics, sys
def load(p):
    rows = [list(map(float, l.split())) for l in open(p) if l.strip()]
    return rows
o, l = load(sys.argv[1]), load(sys.argv[2])
print(f"prompt tokens: omni {int(o[0][0])}, llama.cpp {int(l[0][0])}")
print(f"{'':12s} {'prefill tok/s (median / best)':>32s} {'decode tok/s (median / best)':>32s}")
for name, rows in (("omni", o), ("llama.cpp", l)):
    p = [r[1] for r in rows]; d = [r[2] for r in rows]
    print(f"{name:12s} {statistics.median(p):>20.1f} / {max(p):<9.1f} {statistics.median(d):>20.1f} / {max(d):<9.1f}")
mo = statistics.median(r[1] for r in o) / statistics.median(r[1] for r in l)
md = statistics.median(r[2] for r in o) / statistics.median(r[2] for r in l)
print(f"omni / llama.cpp (medians): prefill {mo:.2f}x, decode {md:.2f}x")
PY
