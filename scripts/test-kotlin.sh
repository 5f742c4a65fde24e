#!/usr/bin/env bash
# Kotlin side of PocketLM, tested on the JVM (no Android SDK or Maven here): builds the Rust
# library (debug), regenerates the uniffi Kotlin bindings from it and fails if the checked-in
# copy (android/src/main/kotlin/uniffi/pocketlm/pocketlm.kt) differs, compiles the bindings, the
# ai.pocketlm wrapper and the JUnit 5 tests with kotlinc, and runs the tests against the real
# library and build/test-models/tiny.gguf. The last line is `N passed, N failed`.
#
# Installs what is missing on a fresh Debian 12: JNA + JUnit 5 from apt, kotlinc 2.4.20 from npm
# into .tools/ (its lib/ also has kotlin-test and kotlinx-coroutines-core-jvm).
#
#   scripts/test-kotlin.sh                    # what CI runs
#   UPDATE_BINDINGS=1 scripts/test-kotlin.sh  # after a Rust API change: refresh the checked-in copy
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
out=build/kotlin
generated=android/src/main/kotlin/uniffi/pocketlm/pocketlm.kt
kotlin_version=2.4.20
kc=$root/.tools/node_modules/kotlin-compiler
J=/usr/share/java

# An early failure (build, stale bindings, compile error) still ends with the summary line.
summary_printed=0
trap '[ $? -ne 0 ] && [ $summary_printed -eq 0 ] && echo "0 passed, 1 failed"' EXIT
step() { echo "== $* ($((SECONDS - start)) s)"; }

step "tools"
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v npm >/dev/null || apt_install nodejs npm
dpkg -s libjna-java junit5 >/dev/null 2>&1 || apt_install libjna-java junit5
if ! grep -qs "\"version\": \"$kotlin_version\"" "$kc/package.json"; then
    npm install --prefix "$root/.tools" --no-save --no-audit --no-fund --loglevel=error "kotlin-compiler@$kotlin_version"
fi

step "Rust library and bindings"
# The whole workspace (the library and the bindgen tool), as the Rust tests built it: one set of
# features, so nothing is compiled twice; the bindings are generated from that very library.
cargo build -q --workspace
rm -rf "$out/gen" && mkdir -p "$out/gen" "$out/lib"
target/debug/uniffi-bindgen generate --library target/debug/libpocketlm.so --language kotlin \
    --out-dir "$out/gen" --no-format
# A private copy: another checkout's cargo build can rewrite target/debug while the tests run.
cp target/debug/libpocketlm.so "$out/lib/"
if ! diff -q "$generated" "$out/gen/uniffi/pocketlm/pocketlm.kt" >/dev/null; then
    if [ "${UPDATE_BINDINGS:-0}" = 1 ]; then
        cp "$out/gen/uniffi/pocketlm/pocketlm.kt" "$generated"
        echo "updated $generated"
    else
        diff -u "$generated" "$out/gen/uniffi/pocketlm/pocketlm.kt" | head -40 || true
        echo "error: $generated is stale (the Rust API changed); rerun with UPDATE_BINDINGS=1 and commit it"
        exit 1
    fi
fi

step "README example"
# Every line of the Kotlin block in android/README.md must appear in ReadmeExampleTest.kt.
example=android/src/test/kotlin/ai/pocketlm/ReadmeExampleTest.kt
snippet=$(sed -n '/^```kotlin$/,/^```$/p' android/README.md | sed '1d;$d')
[ -n "$snippet" ] || { echo "error: no Kotlin example in android/README.md"; exit 1; }
while IFS= read -r line; do
    grep -qxF "        $line" "$example" ||
        { echo "error: android/README.md line not in $example: $line"; exit 1; }
done <<<"$snippet"

step "test models"
scripts/make-test-models.sh >/dev/null

# kotlinc costs 10-20 s per call, so a jar is rebuilt only when its inputs changed.
compile() { # name, classpath, extra cache key, sources...
    local cp=$2 jar=$out/$1.jar key
    key=$( (echo "$kotlin_version $2 $3"; shift 3; cat "$@") | sha256sum | cut -c1-64)
    shift 3
    if [ -f "$jar" ] && [ "$(cat "$jar.key" 2>/dev/null)" = "$key" ]; then
        echo "$jar is up to date"
        return
    fi
    rm -f "$jar" "$jar.key"
    "$kc/bin/kotlinc" -cp "$cp" "$@" -d "$jar"
    echo "$key" >"$jar.key"
}
main_cp=$J/jna.jar:$kc/lib/kotlinx-coroutines-core-jvm.jar
test_cp=$out/pocketlm.jar:$main_cp:$kc/lib/kotlin-test.jar:$kc/lib/kotlin-test-junit5.jar
test_cp=$test_cp:$J/junit-jupiter-api.jar:$J/apiguardian-api.jar:$J/opentest4j.jar

step "compile bindings + wrapper"
mapfile -t main_sources < <(find android/src/main/kotlin -name '*.kt' | sort)
compile pocketlm "$main_cp" - "${main_sources[@]}"

step "compile tests"
mapfile -t test_sources < <(find android/src/test/kotlin -name '*.kt' | sort)
compile tests "$test_cp" "$(cat $out/pocketlm.jar.key)" "${test_sources[@]}"

step "JUnit"
set +e
java -Djna.library.path="$root/$out/lib" -Dpocketlm.testModels="$root/build/test-models" \
    -jar $J/junit-platform-console-standalone.jar --disable-banner --disable-ansi-colors \
    --details=tree --fail-if-no-tests \
    -cp "$out/tests.jar:$test_cp:$kc/lib/kotlin-stdlib.jar" --scan-classpath "$out/tests.jar" 2>&1 |
    tee "$out/junit.log"
status=${PIPESTATUS[0]}
set -e
count() { grep -Eo "[0-9]+ tests $1" "$out/junit.log" | awk '{s+=$1} END {print s+0}'; }
passed=$(count successful)
failed=$(count failed)
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1 # e.g. no tests found, or the JVM crashed

echo "== done in $((SECONDS - start)) s"
summary_printed=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
