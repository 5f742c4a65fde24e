#!/usr/bin/env bash
# `pocketlm serve` with the official `openai` Python package as the client (part of
# scripts/test.sh): makes a venv in build/openai-venv, installs openai (and jsonschema, to
# validate replies) from PyPI, converts the vendored btlm-mini, starts the server on a free loopback port with an API key, runs
# tests/openai/client_test.py and stops the server with SIGTERM (it must exit cleanly). The
# last line is `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
fail() { echo "$1"; echo "0 passed, 1 failed"; exit 1; }
venv=build/openai-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, jsonschema" 2>/dev/null; then
    python3 -m venv "$venv" || fail "cannot make a venv"
    "$venv/bin/pip" install -q "openai>=1.40,<3" "jsonschema>=4,<5" || fail "cannot install openai and jsonschema from PyPI"
fi
cargo build -q --workspace || fail "build failed"
bin=${CARGO_TARGET_DIR:-target}/debug/pocketlm
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$bin" convert tests/fixtures/btlm-mini/hf "$work/mini.gguf" --type f32 >/dev/null 2>&1 || fail "convert failed"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve -m "$work/mini.gguf" --port "$port" --parallel 2 --api-key sekrit 2>"$work/server.log" &
pid=$!
python3 - "$port" <<'PY' || fail "the server did not become healthy"
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
"$venv/bin/python" tests/openai/client_test.py "http://127.0.0.1:$port/v1" mini
status=$?
kill -TERM "$pid"
wait "$pid"
server=$?
if [ $server -ne 0 ]; then
    cat "$work/server.log"
    fail "the server exited with $server after SIGTERM"
fi
exit $status
