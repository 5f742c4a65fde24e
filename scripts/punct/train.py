#!/usr/bin/python3
"""Trains PocketLM's punctuation model on features.jsonl files made by gen_data.py +
`pocketlm punct-data features`, and writes OUT/model.safetensors + OUT/punct_config.json for
`pocketlm punct-data pack`. The network is exactly core/src/punct/model.rs's: ternary hash
projection (projection.py) -> dense 128->64 + ReLU; acoustic 13 -> 32 + ReLU; concat ->
2 x bidirectional QRNN (width 3, fo-pooling, 64 states per direction) -> dense to 4 labels.

    scripts/punct/train.py --train DATA/train/features.jsonl --test DATA/test/features.jsonl --out OUT

Uses Debian's python3-torch (CPU) and numpy. Deterministic for a seed.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from projection import project  # noqa: E402

LABELS = ["none", "comma", "period", "question"]
N_AC = 13
F, BN, AW, H, LAYERS, K = 128, 64, 32, 64, 2, 3
DROPOUT = 0.25


def load(path):
    """(words, labels, features) per utterance; features None for text-only lines (gen_data.py
    --text-only), which always train the text path alone."""
    data = []
    for line in open(path):
        r = json.loads(line)
        feats = np.array(r["feats"], dtype=np.float32) if "feats" in r else None
        data.append((r["words"], np.array(r["labels"], dtype=np.int64), feats))
    return data


class Projector:
    def __init__(self):
        self.cache = {}

    def __call__(self, w):
        v = self.cache.get(w)
        if v is None:
            v = self.cache[w] = np.array(project(w, F), dtype=np.float32)
        return v


def perturb(feats, labels, rng):
    """Pause noise of the same family as core's perturb_pauses, plus F0-slope and duration
    jitter, on raw (unnormalized) features."""
    f = feats.copy()
    n = len(labels)
    for i in range(n):
        p = math.expm1(f[i, 0]) * 0.1 * rng.uniform(0.5, 1.5)
        lab = labels[i]
        if lab == 1 and rng.random() < 0.5:
            p = 0.0
        elif lab == 2 and rng.random() < 0.3:
            p = 0.0
        elif lab == 0 and rng.random() < 0.05:
            p += rng.uniform(0.1, 0.4)
        v = math.log1p(min(max(p, 0.0), 2.0) / 0.1)
        f[i, 0] = v
        if i + 1 < n:
            f[i + 1, 1] = v
    f[:, 2] += rng.gauss(0, 0.15)
    f[:, 4:6] *= rng.uniform(0.7, 1.3)
    return f


def fo_pool(logf, const):
    """c_t = f_t c_(t-1) + const_t along dim 1 (c_(-1) = 0), given log f_t."""
    L = torch.cumsum(logf.double().clamp(min=-15.0), 1)
    return (torch.exp(L) * torch.cumsum(torch.exp(-L) * const.double(), 1)).to(const.dtype)


def test_fo_pool():
    """The closed form against the step-by-step recurrence."""
    g = torch.Generator().manual_seed(0)
    logf = nn.functional.logsigmoid(torch.randn(3, 45, 8, generator=g) * 4)
    const = torch.randn(3, 45, 8, generator=g)
    c, ref = fo_pool(logf, const), torch.zeros(3, 8)
    for t in range(45):
        ref = torch.exp(logf[:, t]) * ref + const[:, t]
        assert torch.allclose(c[:, t], ref, atol=1e-5), (t, (c[:, t] - ref).abs().max())


class QrnnDir(nn.Module):
    def __init__(self, d_in, backward):
        super().__init__()
        self.gates = nn.Linear(K * d_in, 3 * H)
        self.backward = backward

    def forward(self, x, mask):
        # x [B, T, D] zero at padding; window [x(t-2), x(t-1), x(t)] or [x(t), x(t+1), x(t+2)].
        B, T, D = x.shape
        z = x.new_zeros(B, K - 1, D)
        if self.backward:
            xp = torch.cat([x, z], 1)
            win = torch.cat([xp[:, j:j + T] for j in range(K)], 2)
        else:
            xp = torch.cat([z, x], 1)
            win = torch.cat([xp[:, j:j + T] for j in range(K)], 2)
        g = self.gates(win)
        zg, fg, og = torch.tanh(g[..., :H]), torch.sigmoid(g[..., H:2 * H]), torch.sigmoid(g[..., 2 * H:])
        m = mask.unsqueeze(-1)
        # fo-pooling c_t = f_t c_(t-1) + (1 - f_t) z_t in closed form, without a Python loop
        # over time: with L_t the running sum of log f (padding: f = 1, nothing added),
        # c_t = exp(L_t) * sum_(s<=t) exp(-L_s) (1 - f_s) z_s, in float64 so exp(-L) cannot
        # overflow (log f clamped at -15: f < 3e-7 already makes c_t = z_t to 3e-7). O(T)
        # instead of the O(T^2) masked product; the same recurrence the Rust code runs step by
        # step (test_fo_pool checks the two against each other).
        logf = nn.functional.logsigmoid(g[..., H:2 * H]) * m
        const = (1 - fg) * zg * m
        if self.backward:
            logf, const = logf.flip(1), const.flip(1)
        c = fo_pool(logf, const)
        if self.backward:
            c = c.flip(1)
        return torch.clamp(c, -1, 1) * og * m


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.bottleneck = nn.Linear(F, BN)
        self.acoustic = nn.Linear(N_AC, AW)
        self.qrnn = nn.ModuleList()
        d = BN + AW
        for _ in range(LAYERS):
            self.qrnn.append(nn.ModuleList([QrnnDir(d, False), QrnnDir(d, True)]))
            d = 2 * H
        self.output = nn.Linear(2 * H, len(LABELS))
        # Training-only regularizer (identity at inference, so the Rust pass has no counterpart):
        # 268 k parameters against a few hundred thousand words overfit the text path otherwise.
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, proj, ac, mask):
        m = mask.unsqueeze(-1)
        x = torch.cat([torch.relu(self.bottleneck(proj)), torch.relu(self.acoustic(ac))], -1) * m
        for fwd, bwd in self.qrnn:
            x = self.drop(x) * m
            x = torch.cat([fwd(x, mask), bwd(x, mask)], -1)
        return self.output(self.drop(x))


def batchify(items, projector, mean, std, rng, augment, dropout):
    T = max(len(w) for w, _, _ in items)
    B = len(items)
    proj = np.zeros((B, T, F), np.float32)
    ac = np.zeros((B, T, N_AC), np.float32)
    lab = np.zeros((B, T), np.int64)
    mask = np.zeros((B, T), np.float32)
    for b, (words, labels, feats) in enumerate(items):
        n = len(words)
        proj[b, :n] = np.stack([projector(w) for w in words])
        lab[b, :n] = labels
        mask[b, :n] = 1
        if feats is None:
            continue
        f = perturb(feats, labels, rng) if augment and rng.random() < augment else feats
        if not (dropout and rng.random() < dropout):
            ac[b, :n] = (f - mean) / std
    return torch.from_numpy(proj), torch.from_numpy(ac), torch.from_numpy(lab), torch.from_numpy(mask)


def micro_f1(model, data, projector, mean, std, text_only=False, noisy=False):
    rng = random.Random(99)
    tp = fp = fn = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(data), 64):
            items = data[i:i + 64]
            if noisy:
                items = [(w, l, perturb(f, l, rng)) for w, l, f in items]
            proj, ac, lab, mask = batchify(items, projector, mean, std, rng, 0, 1.0 if text_only else 0)
            pred = model(proj, ac, mask).argmax(-1)
            valid = mask > 0
            p, g = pred[valid], lab[valid]
            tp += int(((p == g) & (g > 0)).sum())
            fp += int(((p != g) & (p > 0)).sum())
            fn += int(((p != g) & (g > 0)).sum())
    model.train()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy().astype("<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--augment", type=float, default=0.5, help="share of utterances with perturbed pauses")
    ap.add_argument("--dropout", type=float, default=0.2, help="share of utterances trained text-only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--no-text", action="store_true", help="diagnosis: zero the word projections (acoustic only)")
    ap.add_argument("--max-train", type=int, default=0, help="use only the first N training utterances")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-extra", help="text-only utterances (gen_data.py --text-only) mixed into every epoch")
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate on --test every N epochs (and the last)")
    a = ap.parse_args()
    test_fo_pool()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)
    train, test = load(a.train), load(a.test)
    if a.max_train:
        train = train[:a.max_train]
    if a.no_text:
        Projector.__call__ = lambda self, w: np.zeros(F, np.float32)
    allf = np.concatenate([f for _, _, f in train])
    if a.text_extra:
        train += load(a.text_extra)
    mean, std = allf.mean(0), allf.std(0) + 1e-3
    mean[N_AC - 1], std[N_AC - 1] = 0.0, 1.0  # the "audio present" flag stays 1
    projector = Projector()
    model = Model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params} parameters; {len(train)} training utterances, {sum(len(w) for w, _, _ in train)} words", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    steps = a.epochs * math.ceil(len(train) / a.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    weights = torch.tensor([1.0, 1.5, 1.5, 2.0])
    t0 = time.time()
    # Length-bucketed batches: sort by length inside shuffled chunks, so padding stays small.
    for ep in range(a.epochs):
        idx = list(range(len(train)))
        rng.shuffle(idx)
        chunks = [sorted(idx[i:i + a.batch * 20], key=lambda j: len(train[j][0])) for i in range(0, len(idx), a.batch * 20)]
        batches = [c[i:i + a.batch] for c in chunks for i in range(0, len(c), a.batch)]
        rng.shuffle(batches)
        total = 0.0
        for bi, b in enumerate(batches):
            proj, ac, lab, mask = batchify([train[j] for j in b], projector, mean, std, rng, a.augment, a.dropout)
            logits = model(proj, ac, mask)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(LABELS)), lab.reshape(-1), weight=weights,
                                               reduction="none")
            loss = (loss * mask.reshape(-1)).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss)
        if (ep + 1) % a.eval_every and ep + 1 < a.epochs:
            print(f"epoch {ep + 1}: loss {total / len(batches):.4f}  ({time.time() - t0:.0f} s)", flush=True)
            continue
        f1 = micro_f1(model, test, projector, mean, std)
        f1n = micro_f1(model, test, projector, mean, std, noisy=True)
        f1t = micro_f1(model, test, projector, mean, std, text_only=True)
        print(f"epoch {ep + 1}: loss {total / len(batches):.4f}  test micro-F1 {f1:.3f}, noisy pauses {f1n:.3f}, "
              f"text only {f1t:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    os.makedirs(a.out, exist_ok=True)
    t = {"bottleneck.weight": model.bottleneck.weight, "bottleneck.bias": model.bottleneck.bias,
         "acoustic.weight": model.acoustic.weight, "acoustic.bias": model.acoustic.bias,
         "acoustic.mean": torch.from_numpy(mean), "acoustic.std": torch.from_numpy(std),
         "output.weight": model.output.weight, "output.bias": model.output.bias}
    for l, (fwd, bwd) in enumerate(model.qrnn):
        for d, m in (("fwd", fwd), ("bwd", bwd)):
            t[f"qrnn.{l}.{d}.weight"] = m.gates.weight
            t[f"qrnn.{l}.{d}.bias"] = m.gates.bias
    save_safetensors(os.path.join(a.out, "model.safetensors"), t)
    json.dump(dict(projection_features=F, bottleneck=BN, acoustic_width=AW, state=H, layers=LAYERS, labels=LABELS,
                   name="pocketlm-punct-qrnn"), open(os.path.join(a.out, "punct_config.json"), "w"), indent=1)
    # Reference probabilities of a few test utterances (audio and text-only) for the Rust
    # forward pass to match (tests/fixtures/punct/reference.json).
    model.eval()
    ref = []
    with torch.no_grad():
        for words, labels, feats in test[:4]:
            for text_only in (False, True):
                proj, ac, lab, mask = batchify([(words, labels, feats)], projector, mean, std, rng, 0, 1.0 if text_only else 0)
                probs = torch.softmax(model(proj, ac, mask), -1)[0]
                ref.append(dict(words=words, feats=None if text_only else feats.tolist(), probs=probs.tolist()))
    json.dump(ref, open(os.path.join(a.out, "reference.json"), "w"))
    print(f"wrote {a.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
