#!/usr/bin/env bash
# Installs the peers omni is benchmarked against (scripts/bench.py) into one venv:
# llama.cpp (llama-cpp-python, built here with native CPU flags), faster-whisper
# (CTranslate2), PyTorch + transformers + sentence-transformers, onnxruntime, and the
# EfficientNet-Lite reference code. Not run by CI (torch alone is ~3 GB); run by hand:
#
#   scripts/install_peers.sh            # venv at $PEERS_VENV (default ~/.cache/omni/peers)
#
# Then: PEERS_PYTHON=~/.cache/omni/peers/bin/python python3 scripts/bench.py
set -euo pipefail
VENV="${PEERS_VENV:-${OMNI_HOME:-$HOME/.cache/omni}/peers}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" torch==2.15.0 transformers==5.24.0 sentence-transformers==6.2.0 \
    onnxruntime==1.32.0 onnx==1.23.2 faster-whisper==1.2.1 efficientnet_lite_pytorch==0.1.0 \
    scikit-image==0.26.0 pillow matplotlib numpy
# llama.cpp from source, tuned to this CPU (AVX2/AVX-512 as available), like a user's build.
CMAKE_ARGS="-DGGML_NATIVE=ON" "${PIP[@]}" --no-binary llama-cpp-python llama-cpp-python==0.3.36
echo "peers installed in $VENV"
