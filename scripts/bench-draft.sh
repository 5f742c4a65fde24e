#!/usr/bin/env bash
# Speculative decoding by prompt lookup, measured: greedy decode tokens/s with drafts
# (--draft N) and without (--no-draft), alternating, on tasks whose answer repeats the prompt:
# a prose passage to be written out again, and a source file to be repeated with an edit. Prints
# the speed-up and the acceptance rate per model and task. A benchmark, not a test.
#
#   scripts/bench-draft.sh MODEL.gguf [MODEL.gguf ...]   (default: btlm-mini q8_0 from the quick start)
#   env: THREADS=2 N=128 ROUNDS=2 DRAFT=8
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2} n=${N:-128} rounds=${ROUNDS:-2} draft=${DRAFT:-8}
cargo build --release -p pocketlm-cli >/dev/null 2>&1
bin=${CARGO_TARGET_DIR:-target}/release/pocketlm
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  mkdir -p models
  [ -f models/btlm-mini-q8_0.gguf ] || "$bin" convert tests/fixtures/btlm-mini/hf models/btlm-mini-q8_0.gguf --type q8_0 >/dev/null
  models=(models/btlm-mini-q8_0.gguf)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Task 1: a passage, then "again" and its first words: the answer is the rest of the passage.
passage=$(head -c 21500 tests/fixtures/text/austen_persuasion.txt | tail -c 1500)
printf '%s\n\nThe same passage, copied out again:\n\n%s' "$passage" "$(sed 's/ [^ ]*$//' <<<"${passage:0:120}")" >"$tmp/prose.txt"
# Task 2: a source file, then the same file again from its start (a code edit's unchanged part).
code=$(head -c 1800 core/src/draft.rs)
printf '%s\n\n// The same file after the edit:\n\n%s' "$code" "${code:0:200}" >"$tmp/code.txt"

measure() { # model task flag -> "tok/s accepted drafted"
  "$bin" run -m "$1" -f "$tmp/$2.txt" -n "$n" --temp 0 --ignore-eos -t "$threads" $3 >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  local tps acc
  tps=$(sed -n 's/.*generation: [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p' "$tmp/err")
  acc=$(sed -n 's/^draft: \([0-9]*\) of \([0-9]*\) drafted.*/\1 \2/p' "$tmp/err")
  echo "$tps ${acc:-0 0}"
}

echo "greedy, $n tokens, $threads threads, draft $draft, $rounds rounds; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "| model | task | plain tok/s | with drafts tok/s | speed-up | drafted tokens accepted |"
echo "|---|---|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  for task in prose code; do
    plain=() spec=() acc=0 drafted=0
    for r in $(seq 1 "$rounds"); do
      read -r p _ _ < <(measure "$m" "$task" --no-draft)
      read -r s a d < <(measure "$m" "$task" "--draft $draft")
      plain+=("$p") spec+=("$s") acc=$((acc + a)) drafted=$((drafted + d))
    done
    mp=$(printf '%s\n' "${plain[@]}" | awk '{s+=$1} END {printf "%.2f", s/NR}')
    ms=$(printf '%s\n' "${spec[@]}" | awk '{s+=$1} END {printf "%.2f", s/NR}')
    echo "| $(basename "$m" .gguf) | $task | $mp | $ms | $(awk -v a="$ms" -v b="$mp" 'BEGIN {printf "%.2fx", a/b}') | $acc of $drafted ($(awk -v a="$acc" -v b="$drafted" 'BEGIN {printf "%.0f%%", b ? 100*a/b : 0}')) |"
  done
done
