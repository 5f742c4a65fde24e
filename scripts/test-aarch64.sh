#!/usr/bin/env bash
# ARM64 tests on an x86_64 Debian 12 host (recipe: shared/docs/toolchains.md §3-4):
#  1. the core and cross-crate test suites (kernels vs the scalar reference, golden fixtures,
#     quantized agreement) for aarch64-unknown-linux-gnu under qemu-user, once with a CPU that
#     has dotprod + i8mm (qemu "max") and once without (Cortex-A53), so every dispatch branch runs;
#  2. a type check of core and bindings for aarch64-linux-android and aarch64-apple-ios (no NDK
#     or Apple SDK here to link with).
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

# Under qemu (10-30x slower than native) run what depends on the CPU: every kernel against the
# scalar reference, the golden fixtures and the quantized-engine agreement through the NEON
# kernels, and a session (prefill + decode + save/restore). Parsing, conversion, file handling
# and the tokenizer are CPU-independent and ran natively in the Rust step.
model_tests=(--test conformance --test quantized --test session --test punct)
echo "== building the aarch64 test binaries"
$CARGO test --no-run -q --target aarch64-unknown-linux-gnu -p pocketlm-core
$CARGO test --no-run -q --target aarch64-unknown-linux-gnu -p pocketlm-tests "${model_tests[@]}"

run() { # cpu, cargo test selection...
    local cpu=$1
    shift
    echo "== aarch64 tests under qemu -cpu $cpu"
    QEMU_CPU=$cpu $CARGO test -q --target aarch64-unknown-linux-gnu "$@" -- --test-threads 2 --nocapture 2>&1 |
        tee -a "$log" | grep -E "^test result|kernel sets tested|FAILED|panicked" | sed 's/^\.*//' | sort | uniq -c
}
# qemu's "max" CPU has dotprod and i8mm: every NEON variant.
run max -p pocketlm-core
run max -p pocketlm-tests "${model_tests[@]}"
echo "not run under qemu (CPU-independent, ran natively in the Rust step): the loader, converter," \
    "tokenizer, long-context, file-safety and trained-model suites" | tee -a "$log"
# Cortex-A53 has neither: the plain-NEON fallback through the kernel tests and the golden fixtures.
run cortex-a53 -p pocketlm-core
run cortex-a53 -p pocketlm-tests --test conformance --test punct

echo "== compile check: aarch64-linux-android and aarch64-apple-ios (core + bindings, build-std)"
# A check (no code generation): no NDK or Apple SDK here to link with, and the aarch64 code
# generation, asm! kernels included, was just compiled and run for aarch64-unknown-linux-gnu;
# what differs per OS is cfg'd code, which the check sees.
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$PWD/target/mobile-check $CARGO check -q --lib \
    --target aarch64-linux-android --target aarch64-apple-ios -Zbuild-std=std,panic_abort -p pocketlm-core -p pocketlm
echo "android, ios: pocketlm-core and pocketlm type-check for aarch64-linux-android and aarch64-apple-ios"

passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "== aarch64 done in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
