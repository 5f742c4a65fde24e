#!/usr/bin/env bash
# Release native libraries for the Android module: android/src/main/jniLibs/<abi>/libpocketlm.so
# for arm64-v8a (phones) and x86_64 (emulators). Needs the Android NDK (r25+) and rustup:
#
#   export ANDROID_NDK_HOME=/path/to/android-ndk-r27
#   rustup target add aarch64-linux-android x86_64-linux-android
#   scripts/build-android.sh            # then build the AAR with Gradle from android/
#
# Uses cargo-ndk when installed (`cargo install cargo-ndk`), else drives the NDK's clang
# directly. The library is built with panic=unwind (bindings catch panics at the boundary) and
# stripped. API level 24 (Android 7) is the minimum, as in android/build.gradle.kts.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to an Android NDK (r25 or newer)}"
API=${ANDROID_API:-24}
out=android/src/main/jniLibs

if command -v cargo-ndk >/dev/null; then
    cargo ndk --platform "$API" -t arm64-v8a -t x86_64 -o "$out" build --release -p pocketlm
else
    host=$(uname -s | tr '[:upper:]' '[:lower:]')-x86_64
    bin=$ANDROID_NDK_HOME/toolchains/llvm/prebuilt/$host/bin
    [ -d "$bin" ] || { echo "no NDK toolchain at $bin"; exit 1; }
    for pair in aarch64-linux-android:arm64-v8a x86_64-linux-android:x86_64; do
        triple=${pair%%:*}; abi=${pair##*:}
        env_triple=$(echo "$triple" | tr '[:lower:]-' '[:upper:]_')
        export "CARGO_TARGET_${env_triple}_LINKER=$bin/${triple}${API}-clang"
        export "CC_${triple//-/_}=$bin/${triple}${API}-clang"
        export "AR_${triple//-/_}=$bin/llvm-ar"
        cargo build --release -p pocketlm --target "$triple"
        mkdir -p "$out/$abi"
        "$bin/llvm-strip" -o "$out/$abi/libpocketlm.so" "target/$triple/release/libpocketlm.so"
    done
fi
ls -la "$out"/*/libpocketlm.so
