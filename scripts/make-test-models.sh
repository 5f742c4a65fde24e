#!/usr/bin/env bash
# Builds the models the Kotlin and Swift tests load, from a golden fixture: shared/fixtures/btlm/tiny
# when the workplace's shared/ folder is there, else the vendored btlm-mini (a clone alone):
#   build/test-models/tiny.gguf        f32 conversion of that fixture
#   build/test-models/corrupt.gguf     the same, truncated inside the tensor data
#   build/test-models/wrong-arch.gguf  the same, with general.architecture = "gpt2"
#   build/test-models/tiny.prompt      the fixture prompt ids, comma-separated
#   build/test-models/tiny.greedy      the fixture's 16 greedy ids, comma-separated
#   build/test-models/tiny.shape       n_layer,n_embd,vocab_size of that fixture
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${POCKETLM_SHARED:-$(cd .. && pwd)/shared}
out=build/test-models
mkdir -p "$out"
cargo build -q --workspace
if [ -f "$shared/fixtures/btlm/tiny/config.json" ]; then
    src=$shared/fixtures/btlm/tiny golden=$shared/fixtures/btlm/tiny
    tokenizer=(--tokenizer "$shared/tokenizer/gpt2/tokenizer.json")
else
    src=tests/fixtures/btlm-mini/hf golden=tests/fixtures/btlm-mini/golden tokenizer=()
    echo "no ../shared: the Kotlin and Swift tests use the vendored btlm-mini" >&2
fi
target/debug/pocketlm convert "$src" "$out/tiny.gguf" --type f32 "${tokenizer[@]}" 2>/dev/null
python3 - "$out" "$golden" "$src" <<'PY'
import json, struct, sys, pathlib
out, fx, src = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
model = (out / "tiny.gguf").read_bytes()
(out / "corrupt.gguf").write_bytes(model[: len(model) * 2 // 3])
key = b"general.architecture"
at = model.index(key) + len(key) + 4 + 8  # skip value type (u32) and string length (u64)
assert model[at:at + 4] == b"btlm"
(out / "wrong-arch.gguf").write_bytes(model[:at] + b"gpt2" + model[at + 4:])
def npy_ids(p):
    b = p.read_bytes()
    hlen = struct.unpack("<H", b[8:10])[0]
    body = b[10 + hlen:]
    return [struct.unpack("<q", body[i:i + 8])[0] for i in range(0, len(body), 8)]
(out / "tiny.prompt").write_text(",".join(map(str, npy_ids(fx / "input_ids.npy"))))
(out / "tiny.greedy").write_text(",".join(map(str, npy_ids(fx / "greedy_ids.npy"))))
c = json.loads((src / "config.json").read_text())
(out / "tiny.shape").write_text(f"{c['n_layer']},{c['n_embd']},{c['vocab_size']}")
PY
echo "test models in $out"
