#!/usr/bin/env bash
# End to end on a fresh machine: build the release binary, convert a BTLM checkpoint in Hugging
# Face layout to GGUF (a PyTorch pytorch_model.bin or safetensors, sharded or not; tokenizer.json
# or vocab.json + merges.txt), inspect it, and generate text. Without arguments it uses the
# trained btlm-mini vendored in tests/fixtures (5 M parameters, BTLM's architecture, saved the
# way Cerebras ships BTLM-3B-8K): it writes locally English-like text, not meaningful text.
#
#   scripts/quickstart.sh [HF_MODEL_DIR] [PROMPT] [TYPE]
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=${1:-tests/fixtures/btlm-mini/hf}
prompt=${2:-"It was a fine morning, and Anne"}
type=${3:-q8_0}

command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
cargo build --release -p pocketlm-cli
bin=${CARGO_TARGET_DIR:-target}/release/pocketlm
mkdir -p models
name=$(basename "$model_dir")
[ "$name" = hf ] && name=$(basename "$(dirname "$model_dir")")
out=models/$name-$type.gguf

$bin convert "$model_dir" "$out" --type "$type"
$bin info "$out" | sed -n 1,12p  # sed reads everything: no SIGPIPE under pipefail
$bin run -m "$out" -p "$prompt" -n 48 --temp 0.8 --seed 42
