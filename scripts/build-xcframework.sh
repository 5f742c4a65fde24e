#!/usr/bin/env bash
# Builds ios/Frameworks/PocketLmFFI.xcframework: the release static library libpocketlm.a for
#   ios-arm64                        aarch64-apple-ios        (devices)
#   ios-arm64_x86_64-simulator       aarch64-apple-ios-sim + x86_64-apple-ios, merged with lipo
#   macos-arm64_x86_64               aarch64-apple-darwin + x86_64-apple-darwin (skip: --ios-only)
# each with the uniffi C header and module map (Headers/pocketlmFFI/). Once the folder exists,
# ios/Package.swift uses it as the PocketLmFFI binary target (see ios/README.md).
#
# Needs macOS with Xcode (xcodebuild, lipo, the iOS SDKs) and rustup:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios \
#                     aarch64-apple-darwin x86_64-apple-darwin
#   scripts/build-xcframework.sh [--ios-only]
# The macOS slice is there so the package still builds for macOS (`swift build`, Mac apps)
# once the XCFramework switches it to the binary target.
#
# It also checks that ios/Sources/PocketLm/Generated/pocketlm.swift matches this library's
# API (uniffi verifies checksums at load and aborts on a mismatch): regenerate with
# scripts/test-swift.sh (POCKETLM_UPDATE_BINDINGS=1) on Linux, or copy build/xcframework/bindings.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)" != Darwin ]; then
    echo "build-xcframework.sh: needs macOS with Xcode (xcodebuild, lipo and the iOS SDKs); this is $(uname -s)." >&2
    echo "On Linux, scripts/test-swift.sh builds and tests the Swift package against target/debug/libpocketlm.so." >&2
    exit 2
fi
for tool in xcodebuild lipo xcrun cargo rustup; do
    command -v "$tool" >/dev/null || { echo "build-xcframework.sh: $tool not found (install Xcode and rustup)" >&2; exit 2; }
done
xcrun --sdk iphoneos --show-sdk-path >/dev/null 2>&1 \
    || { echo "build-xcframework.sh: no iOS SDK; install Xcode (not just the Command Line Tools) and run xcode-select -s" >&2; exit 2; }

macos=1
case "${1:-}" in
    --ios-only) macos=0 ;;
    "") ;;
    *) echo "usage: $0 [--ios-only]" >&2; exit 2 ;;
esac

ios_targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
mac_targets=(aarch64-apple-darwin x86_64-apple-darwin)
targets=("${ios_targets[@]}")
[ "$macos" = 1 ] && targets+=("${mac_targets[@]}")
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || { echo "build-xcframework.sh: missing Rust target $t: rustup target add ${targets[*]}" >&2; exit 2; }
done

# The minimum OS versions of ios/Package.swift; rustc and the cc crate read these.
export IPHONEOS_DEPLOYMENT_TARGET=15.0
export MACOSX_DEPLOYMENT_TARGET=12.0

work=build/xcframework
out=ios/Frameworks/PocketLmFFI.xcframework
rm -rf "$work"
mkdir -p "$work"

echo "== bindings (from the host library) and the API check"
cargo build -q -p pocketlm
cargo run -q -p pocketlm-uniffi-bindgen -- \
    generate --library target/debug/libpocketlm.dylib --language swift --out-dir "$work/bindings" --no-format
if ! cmp -s "$work/bindings/pocketlm.swift" ios/Sources/PocketLm/Generated/pocketlm.swift \
    || ! cmp -s "$work/bindings/pocketlmFFI.h" ios/Sources/PocketLmFFI/pocketlmFFI.h; then
    echo "build-xcframework.sh: the checked-in bindings (ios/Sources/PocketLm/Generated/pocketlm.swift, ios/Sources/PocketLmFFI/pocketlmFFI.h) do not match this library's API;" >&2
    echo "copy $work/bindings/pocketlm.swift and pocketlmFFI.h over the checked-in ones (or run scripts/test-swift.sh with POCKETLM_UPDATE_BINDINGS=1 on Linux)." >&2
    exit 1
fi
# In a subfolder named after the module: Xcode copies the Headers of every XCFramework into one
# include folder, where two top-level module.modulemap files would collide; clang finds
# <include>/pocketlmFFI/module.modulemap by the module name. No `link` line: SwiftPM links the
# static library of the binary target itself.
headers=$work/headers
mkdir -p "$headers/pocketlmFFI"
cp "$work/bindings/pocketlmFFI.h" "$headers/pocketlmFFI/"
cp "$work/bindings/pocketlmFFI.modulemap" "$headers/pocketlmFFI/module.modulemap"

echo "== release static libraries: ${targets[*]}"
for t in "${targets[@]}"; do
    cargo build --release --lib -p pocketlm --target "$t"
done
lib() { echo "target/$1/release/libpocketlm.a"; }

mkdir -p "$work/ios-simulator" "$work/macos"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$work/ios-simulator/libpocketlm.a"
args=(-library "$(lib aarch64-apple-ios)" -headers "$headers"
      -library "$work/ios-simulator/libpocketlm.a" -headers "$headers")
if [ "$macos" = 1 ]; then
    lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$work/macos/libpocketlm.a"
    args+=(-library "$work/macos/libpocketlm.a" -headers "$headers")
fi

echo "== $out"
rm -rf "$out"   # xcodebuild refuses to overwrite
mkdir -p "$(dirname "$out")"
xcodebuild -create-xcframework "${args[@]}" -output "$out"
find "$out" -maxdepth 2 | sort
du -sh "$out"
echo "ios/Package.swift now uses $out as the PocketLmFFI binary target (delete it to go back)."
