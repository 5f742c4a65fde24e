#!/usr/bin/env bash
# Rebuilds the shipped punctuation model from nothing, reproducibly (fixed seeds):
# texts -> synthetic speech (espeak-ng) -> the device's own features -> training -> GGUF ->
# evaluation -> the vendored test fixtures.
#
#   scripts/punct/build-model.sh [WORKDIR]      # default WORKDIR: data/punct (about 12 GB)
#
# Needs Debian (apt) and ../shared/text (or TEXTS=dir with the same layout). Installs
# espeak-ng, python3-torch and OpenBLAS (without libopenblas0-pthread, torch falls back to the
# reference BLAS and trains about 30 times slower), bible-kjv and fortunes.
# Times on 2 cores (AMD EPYC Zen 4): speech 4 min, features 3.5 min, training about 20 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${1:-data/punct}
S=${TEXTS:-$ROOT/../shared/text}
PY=/usr/bin/python3   # Debian's python3, where python3-torch lives
[ -d "$S/books" ] || { echo "no texts at $S (set TEXTS=)" >&2; exit 1; }

need=()
for p in espeak-ng python3-torch python3-numpy libopenblas0-pthread bible-kjv fortunes; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    ${SUDO:-$(command -v sudo || true)} apt-get install -y -q "${need[@]}"
fi
cargo build --release -q -p pocketlm-cli
BIN=$ROOT/target/release/pocketlm

mkdir -p "$W/texts"
cd "$W"
# The King James Bible (public domain) from Debian's bible-kjv: chapters as paragraphs,
# verse numbers dropped; a third of it is read aloud, the rest trains the text path only.
# Fortune cookies (Debian's fortunes): text only.
$PY - <<'EOF'
import glob, os, re, subprocess
raw = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout.split("\n")
paras, cur = [], []
for line in raw:
    if re.match(r"^\S.* \d+$", line):
        if cur:
            paras.append(" ".join(cur))
        cur = []
        continue
    line = re.sub(r"^\s+\d+ ", "", line).strip()
    if line:
        cur.append(line)
if cur:
    paras.append(" ".join(cur))
open("texts/kjv_third.txt", "w").write("\n\n".join(paras[::3]))
open("texts/kjv_rest.txt", "w").write("\n\n".join(p for i, p in enumerate(paras) if i % 3))
cookies = []
for f in sorted(glob.glob("/usr/share/games/fortunes/*")):
    if "." in os.path.basename(f) or os.path.islink(f) or os.path.isdir(f):
        continue
    t = open(f, encoding="utf-8", errors="replace").read()
    cookies += [c.strip() for c in t.split("\n%\n") if c.strip()]
open("texts/fortunes.txt", "w").write("\n\n".join(cookies) + "\n")
EOF

GEN="$PY $ROOT/scripts/punct/gen_data.py"
TRAIN_TEXTS=("$S/books/austen_pride_and_prejudice.txt" "$S/reference/devils_dictionary.txt"
    "$S/qa/python_faq.txt" "$S/reference/jargon_file_4.4.7_excerpt.txt"
    "$S/web_docs/rust_book_excerpt.txt" texts/kjv_third.txt)
HELD_OUT=$S/books/austen_persuasion.txt   # never trained on
[ -f train/features.jsonl ] || { $GEN --texts "${TRAIN_TEXTS[@]}" --out train --utterances 36000 --seed 11 && $BIN punct-data features train; }
[ -f textx/text.jsonl ] || $GEN --text-only --texts texts/fortunes.txt texts/kjv_rest.txt \
    "$S/books/austen_pride_and_prejudice.txt" --out textx --utterances 40000 --seed 12
[ -f test/features.jsonl ] || { $GEN --texts "$HELD_OUT" --out test --utterances 1500 --seed 21 && $BIN punct-data features test; }
[ -f shift/features.jsonl ] || { $GEN --texts "$HELD_OUT" --voices unseen --out shift --utterances 1000 --seed 31 && $BIN punct-data features shift; }

$PY "$ROOT/scripts/punct/train.py" --train train/features.jsonl --test test/features.jsonl \
    --text-extra textx/text.jsonl --out run ${TRAIN_ARGS:---epochs 5 --augment 0.65 --dropout 0.25}
$BIN punct-data pack run model.gguf
$BIN punct-data pack --type f32 run model-f32.gguf
$BIN punct-data eval -m model.gguf test/features.jsonl shift/features.jsonl
$BIN punct-data eval -m model-f32.gguf test/features.jsonl shift/features.jsonl
# The vendored held-out samples for CI: the first 150 test and 100 shift utterances.
$PY - <<'EOF'
import json
for src, dst, n in (("test", "heldout-test", 150), ("shift", "heldout-shift", 100)):
    with open(f"{dst}.jsonl", "w") as out:
        for i, line in enumerate(open(f"{src}/features.jsonl")):
            if i == n:
                break
            r = json.loads(line)
            r["feats"] = [[round(v, 3) for v in f] for f in r["feats"]]
            out.write(json.dumps({k: r[k] for k in ("words", "labels", "feats")}, separators=(",", ":")) + "\n")
EOF
$BIN punct-data eval -m model.gguf heldout-test.jsonl heldout-shift.jsonl
if [ "${SHIP:-0}" = 1 ]; then
    cp model.gguf "$ROOT/core/assets/punct-qrnn.gguf"
    cp model-f32.gguf "$ROOT/tests/fixtures/punct/punct-qrnn-f32.gguf"
    cp run/reference.json heldout-test.jsonl heldout-shift.jsonl "$ROOT/tests/fixtures/punct/"
    echo "shipped: set the floors in tests/tests/punct.rs from the vendored scores above"
else
    echo "to ship it: SHIP=1 $0 $W (copies the model, its f32 twin, reference.json and the fixtures)"
fi
