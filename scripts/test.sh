#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this after installing tools).
# Needs the workplace's shared/ folder (fixtures, tokenizer) beside an ancestor of the
# checkout, or POCKETLM_SHARED pointing at it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== Rust tests (core, cli, cross-crate: fixtures, tokenizer, loader, sessions)"
cargo test --workspace 2>&1 | tee target/rust-tests.log
passed=$(grep -Eo '[0-9]+ passed' target/rust-tests.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/rust-tests.log | awk '{s+=$1} END {print s+0}')

echo "== done in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
