#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this). Installs what it needs on a
# fresh Debian 12 machine (apt, npm), then runs, in order:
#   1. cargo fmt --check, clippy -D warnings, and every Rust test (core, cli, cross-crate:
#      golden fixtures, tokenizer vectors, corrupted files, quantized agreement, long context);
#   2. scripts/test-kotlin.sh   Kotlin bindings + Android wrapper, JUnit 5 on the JVM;
#   3. scripts/test-swift.sh    Swift bindings + iOS wrapper, XCTest in a Swift 6 chroot;
#   4. scripts/test-aarch64.sh  the ARM64 suites under qemu (with and without dotprod/i8mm)
#                               and the Android compile check;
#   5. scripts/test-fuzz.sh     every fuzz target for 20 s on the repository's seeds, and a
#                               replay of the inputs past fuzzing found;
#   6. scripts/test-serve-openai.sh  `pocketlm serve` with the official openai Python client.
# Runs from a clone alone (the test data it needs is vendored in tests/fixtures); the workplace's
# shared/ folder beside an ancestor of the checkout (or POCKETLM_SHARED) adds the random-weight
# golden fixtures, and the summary says which sets ran. POCKETLM_SKIP="swift aarch64 fuzz serve-openai" skips steps.
# The last line counts every test: `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
mkdir -p target
total_pass=0
total_fail=0
summary=()

count() { # name, log: add the log's last `N passed, N failed` line to the totals
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$2" | tail -1)
    p=$(echo "${line:-0 passed, 1 failed}" | awk '{print $1}')
    f=$(echo "${line:-0 passed, 1 failed}" | awk '{print $3}')
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    summary+=("$1: $p passed, $f failed")
}

skipped() { [[ " ${POCKETLM_SKIP:-} " == *" $1 "* ]]; }

echo "== format and lints"
if cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings; then
    summary+=("fmt + clippy: clean")
else
    summary+=("fmt + clippy: FAILED")
    total_fail=$((total_fail + 1))
fi

cargo_counts() { # log, cargo's exit status: append the log's `N passed, N failed` line
    local p f
    p=$(grep -Eo '[0-9]+ passed' "$1" | awk '{s+=$1} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed' "$1" | awk '{s+=$1} END {print s+0}')
    grep -q "error\[" "$1" && f=$((f + 1))
    # A binary that crashes (segfault, abort) prints no "failed" line: cargo's status decides.
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "cargo test exited with status $2 without a failing test: a test binary crashed" | tee -a "$1"
        f=1
    fi
    printf '%s passed, %s failed\n' "$p" "$f" >> "$1"
}

echo "== gate self-test: a test binary that aborts must turn the run red"
cargo test -q -p pocketlm-tests --test gate_selftest -- --ignored > target/gate-selftest.log 2>&1
cargo_counts target/gate-selftest.log $?
if grep -qE '^[0-9]+ passed, [1-9][0-9]* failed$' target/gate-selftest.log; then
    summary+=("gate self-test: an aborting test binary counts as a failure")
else
    summary+=("gate self-test: FAILED (an aborting test binary went unnoticed)")
    total_fail=$((total_fail + 1))
fi

echo "== Rust tests"
t0=$SECONDS
# --no-fail-fast runs every test binary; --nocapture lets the tables and "skipped:" notes
# reach the log.
cargo test --workspace --no-fail-fast -- --nocapture 2>&1 | tee target/rust-tests.log
cargo_counts target/rust-tests.log "${PIPESTATUS[0]}"
count "rust ($((SECONDS - t0)) s)" target/rust-tests.log
# What did not run, so skipped coverage is never silent.
sets=$(grep -m1 -E '^fixture sets:' target/rust-tests.log || true)
[ -n "$sets" ] && summary+=("  $sets")
skips=$(grep -cE '^skipped: ' target/rust-tests.log || true)
[ "$skips" -gt 0 ] && summary+=("  $skips skipped checks: $(grep -E '^skipped: ' target/rust-tests.log | sort -u | sed 's/^skipped: //' | paste -sd ';' -)")

echo "== a clone without ../shared: the Rust suite's fixture-dependent tests and the quick start"
# What a user who clones the repository from a forge gets: no workspace shared/ folder. The
# Rust binaries are already built; only where they look for shared/ changes. The trained
# model's perplexity tests ran above and do not depend on shared/.
# When the run above found no shared/ (a CI machine, a user's clone), it already was that run.
t0=$SECONDS
if grep -q '^fixture sets: vendored btlm-mini only' target/rust-tests.log; then
    echo "the Rust suite above ran without ../shared already: not run twice"
    echo "0 passed, 0 failed" > target/no-shared-tests.log
    no_shared="rust without ../shared: the run above (no ../shared on this machine)"
else
    POCKETLM_SHARED=/nonexistent/no-shared cargo test --no-fail-fast -p pocketlm-tests -p pocketlm-cli -- \
        --nocapture --skip f32_reproduces_reference_perplexities --skip quality_table_of_weight_formats 2>&1 |
        tee target/no-shared-tests.log
    cargo_counts target/no-shared-tests.log "${PIPESTATUS[0]}"
    no_shared=""
fi
# The quick start's release build, minus what only buys speed (fat LTO, one codegen unit): the
# script and the binary are what is tested here, and the fat-LTO link alone costs minutes on a
# 2-core machine. The target folder outlives the clone, so a second run locally is incremental.
clone=$(mktemp -d /tmp/pocketlm-clone.XXXXXX)
quickstart_target=$PWD/target/quickstart
if git clone -q "$PWD" "$clone/pocketlm" &&
    (cd "$clone/pocketlm" && CARGO_TARGET_DIR="$quickstart_target" CARGO_PROFILE_RELEASE_LTO=off \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 bash scripts/quickstart.sh) 2>&1 |
    tee target/quickstart.log | tail -5 && [ "${PIPESTATUS[0]}" -eq 0 ] &&
    grep -q "generation: 48 tokens" target/quickstart.log; then
    echo "1 passed, 0 failed" >> target/quickstart.log
else
    echo "0 passed, 1 failed" >> target/quickstart.log
fi
rm -rf "$clone"
if [ -n "$no_shared" ]; then
    summary+=("$no_shared")
else
    count "rust without ../shared ($((SECONDS - t0)) s)" target/no-shared-tests.log
fi
count "quick start from a fresh clone" target/quickstart.log

for step in kotlin swift aarch64 fuzz serve-openai; do
    if skipped "$step"; then
        summary+=("$step: skipped (POCKETLM_SKIP)")
        continue
    fi
    echo "== $step"
    t0=$SECONDS
    bash "scripts/test-$step.sh" 2>&1 | tee "target/$step-tests.log"
    count "$step ($((SECONDS - t0)) s)" "target/$step-tests.log"
done

echo
echo "== summary ($((SECONDS - start)) s)"
printf '  %s\n' "${summary[@]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
