#!/usr/bin/env bash
# PocketLM against llama.cpp, side by side on this machine: same model shape (full-size
# BTLM-3B-8K, random weights), same -p/-n/-r/-t, runs alternating, for Q4_0, Q4_K and Q8_0.
# Prints one table: both speeds and their ratio, both peak RSS, the memory read bandwidth
# measured in the same run, and each side's decode as a share of its bandwidth ceiling.
#
#   scripts/bench-vs-llamacpp.sh [-t 2] [-p 512] [-n 64] [-r 2] [--rounds 2] [--types "q4_0 q4_k q8_0"]
#
# llama.cpp comes from the PyPI sdist of llama-cpp-python (its vendor/llama.cpp), pinned below
# with its sha256, built with cmake (pip's wheel) for this CPU (GGML_NATIVE). Its model is
# written with the PyPI `gguf` package in the `jais` architecture, which is BTLM's math
# (scripts/bench/jais_gguf.py), and quantized with llama-quantize (--pure: one type in every
# matrix, as PocketLM's presets). Work files (about 25 GB) go to $POCKETLM_BENCH_DIR
# (default ~/.cache/pocketlm-bench); a second run reuses the build and the models.
# This is a benchmark, not a test: it is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

threads=2 n_prompt=512 n_gen=64 reps=2 rounds=2 types="q4_0 q4_k q8_0"
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --types) types=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

LCP_VERSION=0.3.36
LCP_URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$LCP_VERSION.tar.gz
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
GGUF_VERSION=0.19.0

work=${POCKETLM_BENCH_DIR:-$HOME/.cache/pocketlm-bench}
mkdir -p "$work/models" "$work/results"

# 1. Python tools: gguf + numpy for the jais model, cmake for llama.cpp.
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
fi
"$work/venv/bin/pip" install -q "gguf==$GGUF_VERSION" numpy cmake
py=$work/venv/bin/python

# 2. llama.cpp from the pinned sdist.
src=$work/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
if [ ! -x "$src/build/bin/llama-bench" ]; then
  if [ ! -d "$src" ]; then
    curl -fsSL -o "$work/lcp.tar.gz" "$LCP_URL"
    echo "$LCP_SHA256  $work/lcp.tar.gz" | sha256sum -c -
    tar -C "$work" -xzf "$work/lcp.tar.gz"
  fi
  command -v ninja >/dev/null || { apt-get update -qq && apt-get install -y -qq ninja-build; }
  [ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
  "$work/venv/bin/cmake" -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  "$work/venv/bin/cmake" --build "$src/build" -j "$(nproc)" --target llama-bench llama-quantize
fi
llama_bench=$src/build/bin/llama-bench
llama_quantize=$src/build/bin/llama-quantize

# 3. PocketLM.
cargo build --release -p pocketlm-cli
pocketlm=${CARGO_TARGET_DIR:-target}/release/pocketlm

# 4. Models: one F16 jais file quantized three ways; PocketLM's synthetic BTLM-3B per type.
jais_f16=$work/models/jais-btlm3b-f16.gguf
[ -f "$jais_f16" ] || "$py" scripts/bench/jais_gguf.py "$jais_f16"
# PocketLM's files carry a layout version (v2: tensors 64-byte aligned), so a work directory
# from an older checkout is not benchmarked in a stale layout. `q4_0_r16` (PocketLM's Q4_0
# with interleaved rows) runs against llama.cpp's Q4_0.
pocketlm_model() { echo "$work/models/pocketlm-btlm3b-$1-v2.gguf"; }
jais_model() { echo "$work/models/jais-btlm3b-${1%_r16}.gguf"; }
for ty in $types; do
  lt=$(echo "${ty%_r16}" | tr a-z A-Z)
  [ -f "$(jais_model "$ty")" ] ||
    "$llama_quantize" --pure "$jais_f16" "$(jais_model "$ty")" "$lt" "$(nproc)" >/dev/null 2>&1
  [ -f "$(pocketlm_model "$ty")" ] ||
    "$pocketlm" synth --preset btlm-3b-8k --type "$ty" -o "$(pocketlm_model "$ty")"
done

# 5. Alternating runs: each round runs both engines per type, the order flipped every round.
res=$work/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$res"
run_pocketlm() { # type round
  "$pocketlm" bench -m "$(pocketlm_model "$1")" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" --json \
    >"$res/pocketlm-$1-$2.jsonl"
}
run_llama() { # type round
  "$pocketlm" bench --bandwidth-only -t "$threads" --json >"$res/bandwidth-$1-$2.json"
  /usr/bin/time -v -o "$res/llama-$1-$2.time" "$llama_bench" -m "$(jais_model "$1")" \
    -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" -o json >"$res/llama-$1-$2.json" 2>"$res/llama-$1-$2.err"
}
for round in $(seq 1 "$rounds"); do
  for ty in $types; do
    echo "round $round: $ty" >&2
    if [ $((round % 2)) -eq 1 ]; then
      run_pocketlm "$ty" "$round"; run_llama "$ty" "$round"
    else
      run_llama "$ty" "$round"; run_pocketlm "$ty" "$round"
    fi
  done
done

echo "threads $threads, -p $n_prompt -n $n_gen -r $reps, $rounds rounds; llama.cpp from llama-cpp-python $LCP_VERSION" | tee "$res/table.md"
"$py" scripts/bench/summarize.py "$res" --models "$work/models" --types "$types" | tee -a "$res/table.md"
