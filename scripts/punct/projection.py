"""Ternary hash projection of words, the Python side of core/src/punct/projection.rs (an
independent port of seq_flow_lite's TSP op, used by train.py and to write the Rust test's
golden vectors: `python3 scripts/punct/projection.py --golden OUT.json`)."""
import json
import random
import sys

M64 = (1 << 64) - 1
K_MUL = 0xC6A4A7935BD1E995
K_MUL2 = 0x9E3779B97F4A7835


def _mix(v):
    return v ^ (v >> 47)


def _load(bs):
    v = 0
    for b in reversed(bs):
        sb = b - 256 if b >= 128 else b  # C `char` is signed: sign-extend
        v = ((v << 8) | (sb & M64)) & M64
    return v


def _murmur(buf):
    h = (len(buf) * K_MUL) & M64
    h2 = 0
    n8 = len(buf) & ~7
    for i in range(0, n8, 8):
        h ^= (_mix((_load(buf[i:i + 8]) * K_MUL) & M64) * K_MUL) & M64
        h = (h * K_MUL) & M64
        h2 ^= h
    if len(buf) & 7:
        h ^= _load(buf[n8:])
        h = (h * K_MUL) & M64
        h2 ^= h
    h = (_mix(h) * K_MUL) & M64
    h2 ^= h
    h = _mix(h)
    h2 = (_mix((h2 * K_MUL2) & M64) * K_MUL2) & M64
    return h, h2


def hash_codes(word, features):
    buf = word.lower().encode("utf-8") or b"<null>"
    codes = []
    lo = hi = 0
    for i in range(0, features, 64):
        if i == 0:
            lo, hi = _murmur(buf)
        else:
            h = (_mix(lo) * K_MUL) & M64
            h2 = hi ^ h
            lo, hi = (_mix((h2 * K_MUL2) & M64) * K_MUL2) & M64, _mix(h)
        codes += [lo, hi]
    return codes


def project(word, features=128):
    out = []
    for code in hash_codes(word, features):
        for j in range(32):
            if len(out) == features:
                return out
            out.append((0, 1, -1, 0)[(code >> (2 * j)) & 3])
    return out


def _golden(path):
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz'ABCÉéüßçñøæœ中文ДжΣσς🙂-"
    words = ["", "a", "hello", "don't", "naïve", "Straße", "ΟΔΟΣ", "12345678", "exactly8", "sixteen-bytes-ab"]
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(200)]
    json.dump([{"word": w, "features": 160, "codes": [f"{c:016x}" for c in hash_codes(w, 160)],
                "projection": project(w, 160)} for w in words], open(path, "w"), ensure_ascii=False, indent=0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--golden"]:
        _golden(sys.argv[2])
    else:
        for w in sys.argv[1:]:
            print(w, project(w, 8))
