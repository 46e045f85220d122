#!/usr/bin/env bash
# Index benchmark: builds a 100k x 384-d HNSW index (clustered unit vectors), then prints
# the build time, recall@10 of HNSW vs exact search over 200 queries, ms/query for both,
# and the reopen time. Numbers are indicative: run on a quiet machine.
#   scripts/bench_index.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p omni --test test_index hnsw_recall_at_10_on_100k_vectors_and_persistence \
  -- --exact --nocapture 2>&1 | grep -E "built|recall@10|reopened|test result"
