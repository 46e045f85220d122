#!/usr/bin/env bash
# Media → LLM speed: time to first token for an image + question and an audio clip +
# question (media encoding + projector + prefill, model load excluded), and decode tok/s
# with the media in context.
#
#   scripts/bench_mllm.sh IMAGE_MODEL AUDIO_MODEL [RUNS]
#
# IMAGE_MODEL / AUDIO_MODEL: trained models (omni train mllm), e.g. smollm2-scenes and
# smollm2-speech. Runs `omni ask --json` RUNS times (default 5) for each and prints the
# median of the reported prefill seconds and decode rate. 64 tokens are decoded
# (end-of-generation ignored is not available here: short answers decode few tokens, so
# the decode rate is measured on a caption, the longest answer).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE_MODEL="${1:?image model name}"
AUDIO_MODEL="${2:?audio model name}"
RUNS="${3:-5}"
OMNI="${OMNI:-${CARGO_TARGET_DIR:-$ROOT/target}/release/omni}"
IMAGE="$ROOT/fixtures/llava/scene.png"
AUDIO="$ROOT/examples/audio/dashwood.wav"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # label, then omni ask arguments
  local label="$1"; shift
  local ttft=() rate=()
  for _ in $(seq "$RUNS"); do
    out="$("$OMNI" ask --json --threads 2 "$@")"
    ttft+=("$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["prefill_secs"])')")
    rate+=("$(echo "$out" | python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; print(s["decode_tokens"]/s["decode_secs"] if s["decode_secs"] else 0)')")
  done
  printf '%-34s time to first token %6.3f s   decode %6.1f tok/s\n' "$label" \
    "$(printf '%s\n' "${ttft[@]}" | median)" "$(printf '%s\n' "${rate[@]}" | median)"
}

run "image (49 tokens) + question" --image "$IMAGE" --mllm "$IMAGE_MODEL" -n 64 "Describe the image."
run "audio (7 s, 88 tokens) + question" --audio "$AUDIO" --mllm "$AUDIO_MODEL" -n 64 "What was said?"
