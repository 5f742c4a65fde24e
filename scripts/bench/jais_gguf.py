#!/usr/bin/env python3
"""Writes a random-weight GGUF of BTLM-3B-8K's shape in llama.cpp's `jais` architecture.

llama.cpp runs BTLM's math (pre-LN GPT-2 blocks, ALiBi, SwiGLU with biases) as `jais`; this file
is the llama.cpp side of scripts/bench-vs-llamacpp.sh. Weights are F16 (llama-quantize then
makes Q4_0, Q4_K and Q8_0 from it) and random: decode and prefill cost do not depend on the
values. Two differences from BTLM's own layout, both llama.cpp's requirements:
  * `jais` needs a separate `output.weight`; BTLM ties its head to the embedding. The bytes a
    decoded token reads are the same (one vocab x n_embd matrix either way).
  * n_inner is zero-padded from 6826 to 6912 so every FFN matrix takes the 256-wide K-quants,
    as PocketLM pads it too (to 6848 for 32-blocks, 6912 for Q4_K).
The tokenizer is GPT-2's (BTLM's), from the copy `pocketlm synth` builds in.

usage: jais_gguf.py OUT.gguf [--layers 32] [--seed 0]
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(REPO, "cli", "assets", "gpt2-tokenizer.json")

N_EMBD, N_HEAD, N_CTX, N_VOCAB, N_INNER = 2560, 32, 8192, 50257, 6912


def gpt2_tokenizer(w: gguf.GGUFWriter) -> None:
    with open(TOKENIZER, encoding="utf-8") as f:
        model = json.load(f)["model"]
    tokens = [""] * len(model["vocab"])
    for tok, i in model["vocab"].items():
        tokens[i] = tok
    merges = model["merges"]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[50256] = gguf.TokenType.CONTROL
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(50256)
    w.add_eos_token_id(50256)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    tmp = a.out + ".partial"
    w = gguf.GGUFWriter(tmp, "jais")
    w.add_name("btlm-3b-8k-shape-random")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_INNER)
    w.add_block_count(a.layers)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_layer_norm_eps(1e-5)
    w.add_max_alibi_bias(8.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    gpt2_tokenizer(w)

    def mat(rows: int, cols: int) -> np.ndarray:
        # GGUF/numpy order is [rows][cols] = [out][in]; std 0.02 like GPT-2's init.
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def vec(n: int, value: float | None = None) -> np.ndarray:
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(N_VOCAB, N_EMBD))
    w.add_tensor("output_norm.weight", vec(N_EMBD, 1.0))
    w.add_tensor("output_norm.bias", vec(N_EMBD))
    w.add_tensor("output.weight", mat(N_VOCAB, N_EMBD))
    for i in range(a.layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", vec(N_EMBD, 1.0))
        w.add_tensor(p + "attn_norm.bias", vec(N_EMBD))
        w.add_tensor(p + "attn_qkv.weight", mat(3 * N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_qkv.bias", vec(3 * N_EMBD))
        w.add_tensor(p + "attn_output.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_output.bias", vec(N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", vec(N_EMBD, 1.0))
        w.add_tensor(p + "ffn_norm.bias", vec(N_EMBD))
        w.add_tensor(p + "ffn_up.weight", mat(N_INNER, N_EMBD))
        w.add_tensor(p + "ffn_up.bias", vec(N_INNER))
        w.add_tensor(p + "ffn_gate.weight", mat(N_INNER, N_EMBD))
        w.add_tensor(p + "ffn_gate.bias", vec(N_INNER))
        w.add_tensor(p + "ffn_down.weight", mat(N_EMBD, N_INNER))
        w.add_tensor(p + "ffn_down.bias", vec(N_EMBD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: jais, {a.layers} layers, n_inner {N_INNER}, F16", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
