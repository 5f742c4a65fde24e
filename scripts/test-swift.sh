#!/usr/bin/env bash
# Swift tests: builds the Rust library (debug) on the host, regenerates the Swift bindings and
# checks them against the copies in ios/, then runs `swift build` and `swift test` (XCTest)
# for the ios/ package inside a Debian trixie chroot (bookworm has no Swift; trixie has
# swiftlang 6.0.3). Ends with one line "N passed, N failed"; exits non-zero on any failure.
#
# Needs root (debootstrap, mount, chroot) on Debian 12 x86_64; creates what is missing:
#   SWIFT_CHROOT              the chroot (default $HOME/.cache/trixie-swift, ~2.7 GB), outside the repo
#   POCKETLM_UPDATE_BINDINGS=1  copy freshly generated bindings into ios/ instead of failing
#                             when they differ (then commit them)
#   POCKETLM_SHARED           the shared/ folder with fixtures (see make-test-models.sh)
# Details: ios/README.md and shared/docs/toolchains.md section 2.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$SECONDS
ROOT=${SWIFT_CHROOT:-$HOME/.cache/trixie-swift}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pkg=$repo/ios
gen=$repo/build/swift-bindings
models=$repo/build/test-models
log=$repo/build/swift-test.log

fail() {
    echo "test-swift: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, mount, chroot)"
case "$ROOT" in
    "$repo"|"$repo"/*) fail "SWIFT_CHROOT=$ROOT is inside the repository; put it outside" ;;
esac

mkdir -p "$repo/build"

echo "== Swift chroot ($ROOT)"
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    if [ -d "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
        fail "$ROOT exists but is not a finished debootstrap; remove it (nothing must be mounted in it) and rerun"
    fi
    mkdir -p "$ROOT"
    t=$SECONDS
    debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"$repo/build/debootstrap.log" 2>&1 \
        || fail "debootstrap failed, see build/debootstrap.log"
    echo "debootstrap: $((SECONDS - t)) s"
fi
if [ ! -e "$ROOT/.pocketlm-swift-ready" ]; then
    t=$SECONDS
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # Networks with an intercepting proxy need the host's CA bundle for https mirrors.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$ROOT/etc/ssl/certs"
        cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    fi
    chroot "$ROOT" apt-get update -qq
    # libc6-dev: without it swiftc warns "libc not found" and Glibc does not import.
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        swiftlang libc6-dev libstdc++-14-dev >/dev/null
    chroot "$ROOT" apt-get clean
    touch "$ROOT/.pocketlm-swift-ready"
    echo "apt in chroot: $((SECONDS - t)) s"
fi

echo "== Rust library (debug) and bindings"
# The whole workspace, as the Rust tests built it: nothing is compiled twice.
cargo build -q --workspace
rm -rf "$gen"
target/debug/uniffi-bindgen \
    generate --library target/debug/libpocketlm.so --language swift --out-dir "$gen" --no-format
# SwiftPM's system-library target needs the name module.modulemap; `link` makes the Linux
# (and macOS development) builds link libpocketlm without extra flags.
sed 's/^}$/    link "pocketlm"\n}/' "$gen/pocketlmFFI.modulemap" >"$gen/module.modulemap"
stale=0
check() {  # generated file, checked-in copy
    if ! cmp -s "$1" "$2"; then
        if [ "${POCKETLM_UPDATE_BINDINGS:-0}" = 1 ]; then
            cp "$1" "$2"
            echo "updated ${2#"$repo"/}"
        else
            echo "STALE: ${2#"$repo"/} differs from what the library generates:" >&2
            diff -u "$2" "$1" | head -40 >&2 || true
            stale=1
        fi
    fi
}
check "$gen/pocketlm.swift" "$pkg/Sources/PocketLm/Generated/pocketlm.swift"
check "$gen/pocketlmFFI.h" "$pkg/Sources/PocketLmFFI/pocketlmFFI.h"
check "$gen/module.modulemap" "$pkg/Sources/PocketLmFFI/module.modulemap"
[ "$stale" -eq 0 ] || fail "checked-in bindings are stale: rerun with POCKETLM_UPDATE_BINDINGS=1 and commit"

echo "== test models"
scripts/make-test-models.sh

echo "== swift build + swift test (in the chroot)"
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the EXIT trap (unmount) when interrupted too
mount_once() {  # mount args..., target last
    local target=${*: -1}
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount "$@"
        mounted+=("$target")
    fi
}
mount_once -t proc proc "$ROOT/proc"       # swift finds its libraries through /proc/self/exe
mount_once --bind /dev "$ROOT/dev"
mount_once --bind "$repo" "$ROOT$repo"     # the repo at the same absolute path inside

# Swift 6 language mode (strict concurrency as errors) and warnings as errors for our code;
# the generated file is clean under both too.
swiftflags="-Xswiftc -swift-version -Xswiftc 6 -Xswiftc -warnings-as-errors"
linkflags="-Xlinker -L$repo/target/debug"
set +e
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin TERM=dumb LANG=C.UTF-8 \
    LD_LIBRARY_PATH="$repo/target/debug" POCKETLM_TEST_MODELS="$models" \
    bash -c "cd '$pkg' && swift build --manifest-cache none --build-tests --scratch-path '$repo/build/swift' $swiftflags $linkflags \
             && swift test --manifest-cache none --skip-build --scratch-path '$repo/build/swift'" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
cleanup
trap - EXIT

# XCTest's "Executed N tests, with M failures" counts failed assertions (M can exceed N), so
# failed tests are counted from the "Test Case '...' failed" lines.
summary=$(grep -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$log" | tail -1 || true)
failed=$(grep -cE "Test Case '[^']*' failed" "$log" || true)
if [ -n "$summary" ]; then
    total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
    passed=$((total - failed))
else
    # Build error, or a crash that kept XCTest from printing its summary.
    passed=$(grep -cE "Test Case '[^']*' passed" "$log" || true)
    failed=$((failed + 1))
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
echo "== done in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
