#!/usr/bin/env bash
# ARM64 tests on an x86_64 Debian 12 host (recipe: shared/docs/toolchains.md §3-4):
#  1. the core and cross-crate test suites (kernels vs the scalar reference, golden fixtures,
#     quantized agreement) for aarch64-unknown-linux-gnu under qemu-user, once with a CPU that
#     has dotprod + i8mm (qemu "max") and once without (Cortex-A53), so every dispatch branch runs;
#  2. a compile check of core and bindings for aarch64-linux-android (no NDK here: no link),
#     and a type check for aarch64-apple-ios (no Apple SDK here).
# Uses Debian's rustc-web 1.96 (/usr/bin/cargo) with its multiarch arm64 std; rustup's
# toolchain has no aarch64 std and is not mixed in.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

need=()
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
for p in rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static rust-web-src; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR=$PWD/target/aarch64-build
CARGO=/usr/bin/cargo
log=$CARGO_TARGET_DIR/tests.log
mkdir -p "$CARGO_TARGET_DIR"
: > "$log"

echo "== building the aarch64 test binaries"
$CARGO test --no-run -q --target aarch64-unknown-linux-gnu -p pocketlm-core -p pocketlm-tests

run() { # cpu, cargo test selection...
    local cpu=$1
    shift
    echo "== aarch64 tests under qemu -cpu $cpu"
    QEMU_CPU=$cpu $CARGO test -q --target aarch64-unknown-linux-gnu "$@" -- --test-threads 2 --nocapture 2>&1 |
        tee -a "$log" | grep -E "^test result|kernel sets tested|FAILED|panicked" | sed 's/^\.*//' | sort | uniq -c
}
# qemu's "max" CPU has dotprod and i8mm: every test, all NEON variants, except the trained
# model's perplexity study (about 10 minutes of f32 matmuls natively; CPU-independent code).
run max -p pocketlm-core
run max -p pocketlm-tests --lib --test conformance --test convert_inputs --test loader_errors \
    --test long_context --test quantized --test session --test tokenizer_vectors --test torch_bin_writer \
    --test non_finite --test model_file_changed
echo "skipped under qemu: tests/trained_model.rs (runs natively in the Rust step)" | tee -a "$log"
# Cortex-A53 has neither: the plain-NEON fallback through the kernel tests, the golden
# fixtures and the quantized-engine agreement (the CPU-independent suites ran above).
run cortex-a53 -p pocketlm-core
run cortex-a53 -p pocketlm-tests --test conformance --test quantized

echo "== compile check: aarch64-linux-android (core + bindings, build-std)"
# Full code generation, but as rlibs: the bindings' cdylib would need the NDK's linker.
for crate in pocketlm-core pocketlm; do
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$PWD/target/android-check $CARGO rustc -q --lib -p "$crate" \
        --crate-type rlib --target aarch64-linux-android -Zbuild-std=std,panic_abort
done
echo "android: pocketlm-core and pocketlm compile for aarch64-linux-android"
echo "== type check: aarch64-apple-ios (core + bindings, build-std; no Apple SDK here, so no link)"
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$PWD/target/ios-check $CARGO check -q --lib --target aarch64-apple-ios \
    -Zbuild-std=std,panic_abort -p pocketlm-core -p pocketlm
echo "ios: pocketlm-core and pocketlm type-check for aarch64-apple-ios"

passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "== aarch64 done in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
