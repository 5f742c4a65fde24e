#!/usr/bin/env bash
# End to end on a fresh machine: build the release binary, convert a BTLM checkpoint in
# Hugging Face layout to GGUF, inspect it, and generate text. Without arguments it uses the
# `tiny` golden fixture (random weights: the text is gibberish, the pipeline is real).
#
#   scripts/quickstart.sh [HF_MODEL_DIR] [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${POCKETLM_SHARED:-$(cd .. && pwd)/shared}
model_dir=${1:-$shared/fixtures/btlm/tiny}
prompt=${2:-"The capital of France is"}
tokenizer=()
[ -f "$model_dir/tokenizer.json" ] || tokenizer=(--tokenizer "$shared/tokenizer/gpt2/tokenizer.json")

command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
cargo build --release -p pocketlm-cli
bin=target/release/pocketlm
mkdir -p models
out=models/$(basename "$model_dir")-f16.gguf

$bin convert "$model_dir" "$out" --type f16 "${tokenizer[@]}"
$bin info "$out" | head -12
$bin run -m "$out" -p "$prompt" -n 32 --seed 42
