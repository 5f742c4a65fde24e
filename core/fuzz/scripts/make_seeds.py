#!/usr/bin/env python3
"""Writes the small hand-made seed corpora under core/fuzz/seeds/ (all files < 100 KB).

gguf_header/    synthetic GGUF files: every metadata value type (incl. nested arrays), a full
                btlm hyperparameter + tokenizer.ggml.* set that passes HParams::from_gguf,
                vocab::from_gguf and Tokenizer::from_spec, and 2 tensors with data.
hf_config/      copies of /work/shared/fixtures/btlm/*/config.json plus a few variants.
tokenizer_json/ tiny GPT-2 style BPE tokenizer.json files (all 256 byte symbols + a few merges).

Run from anywhere: python3 core/fuzz/scripts/make_seeds.py
"""
import glob
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(os.path.dirname(HERE), "seeds")


# --- GPT-2 byte-level symbols -------------------------------------------------------------
def printable(b):
    return 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF


def byte_symbols():
    out, shifted = [], 256
    for b in range(256):
        if printable(b):
            out.append(chr(b))
        else:
            out.append(chr(shifted))
            shifted += 1
    return out


BYTES = byte_symbols()
EXTRA = ["\u0120t", "he", "\u0120the", "in", "\u0120a"]
MERGES = ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"]
EOT = "<|endoftext|>"

# --- GGUF writer --------------------------------------------------------------------------
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gval(ty, v):
    fmt = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
           T_F32: "<f", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}
    if ty in fmt:
        return struct.pack(fmt[ty], v)
    if ty == T_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if ty == T_STR:
        return gstr(v)
    if ty == T_ARR:
        elem_ty, items = v
        return struct.pack("<IQ", elem_ty, len(items)) + b"".join(gval(elem_ty, x) for x in items)
    raise ValueError(ty)


def gguf(metadata, tensors, version=3, alignment=32):
    """metadata: [(key, ty, value)]; tensors: [(name, dims, ggml_type, data_bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for k, ty, v in metadata:
        out += gstr(k) + struct.pack("<I", ty) + gval(ty, v)
    offset, datas = 0, []
    for name, dims, ty, data in tensors:
        offset = -(-offset // alignment) * alignment
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        datas.append((offset, data))
        offset += len(data)
    out += b"\0" * ((-len(out)) % alignment)
    base = len(out)
    for off, data in datas:
        out += b"\0" * (base + off - len(out)) + data
    return out


def btlm_metadata(n_head=4, scaling=None):
    slopes = [2.0 ** (-8.0 / n_head * (i + 1)) for i in range(n_head)]
    m = [
        ("general.architecture", T_STR, "btlm"),
        ("general.name", T_STR, "fuzz-seed"),
        ("general.file_type", T_U32, 1),
        ("general.quantization_version", T_U32, 2),
        ("btlm.context_length", T_U32, 128),
        ("btlm.embedding_length", T_U32, 64),
        ("btlm.block_count", T_U32, 2),
        ("btlm.feed_forward_length", T_U32, 192),
        ("btlm.feed_forward_length_original", T_U32, 170),
        ("btlm.attention.head_count", T_U32, n_head),
        ("btlm.attention.layer_norm_epsilon", T_F32, 1e-5),
        ("btlm.attention.qk_scale", T_F32, 1.0 / 16),
        ("btlm.attention.alibi_slopes", T_ARR, (T_F32, slopes)),
        ("btlm.mup.embeddings_scale", T_F32, 14.6),
        ("btlm.mup.output_scale", T_F32, 0.222),
    ]
    if scaling is None:
        m.append(("btlm.alibi.scaling_type", T_STR, "none"))
    elif scaling[0] == "factor":
        m += [("btlm.alibi.scaling_type", T_STR, "linear"), ("btlm.alibi.scaling_factor", T_F32, scaling[1])]
    else:
        m += [("btlm.alibi.scaling_type", T_STR, "linear"), ("btlm.alibi.train_seq_len", T_U32, scaling[1])]
    return m


def tokenizer_metadata(user_token=False):
    tokens = BYTES + EXTRA + [EOT] + (["<tool>"] if user_token else [])
    types = [1] * (len(BYTES) + len(EXTRA)) + [3] + ([4] if user_token else [])
    eot = len(BYTES) + len(EXTRA)
    return [
        ("tokenizer.ggml.model", T_STR, "gpt2"),
        ("tokenizer.ggml.tokens", T_ARR, (T_STR, tokens)),
        ("tokenizer.ggml.merges", T_ARR, (T_STR, MERGES)),
        ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
        ("tokenizer.ggml.bos_token_id", T_U32, eot),
        ("tokenizer.ggml.eos_token_id", T_U32, eot),
        ("tokenizer.ggml.add_bos_token", T_BOOL, False),
    ]


EVERY_TYPE = [
    ("t.u8", T_U8, 7), ("t.i8", T_I8, -7), ("t.u16", T_U16, 700), ("t.i16", T_I16, -700),
    ("t.u32", T_U32, 70000), ("t.i32", T_I32, -70000), ("t.f32", T_F32, 1.5), ("t.bool", T_BOOL, True),
    ("t.str", T_STR, "h\u00e9llo"), ("t.u64", T_U64, 1 << 40), ("t.i64", T_I64, -(1 << 40)),
    ("t.f64", T_F64, -2.25),
    ("t.arr_u8", T_ARR, (T_U8, [1, 2, 3])),
    ("t.arr_str", T_ARR, (T_STR, ["a", "bc", ""])),
    ("t.arr_empty", T_ARR, (T_F64, [])),
    ("t.arr_nested", T_ARR, (T_ARR, [(T_I16, [1, -1]), (T_BOOL, [True, False])])),
]


def f32s(n):
    return b"".join(struct.pack("<f", 0.25 * i) for i in range(n))


def f16s(n):
    return b"".join(struct.pack("<e", 0.5 * i) for i in range(n))


def tensors():
    return [("token_embd.weight", [8, 4], 1, f16s(32)), ("output_norm.weight", [8], 0, f32s(8))]


def write(sub, name, data):
    d = os.path.join(SEEDS, sub)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 100_000, (name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def main():
    full = btlm_metadata() + tokenizer_metadata() + EVERY_TYPE
    write("gguf_header", "full_v3.gguf", gguf(full, tensors()))
    write("gguf_header", "full_v2_align64.gguf",
          gguf([("general.alignment", T_U32, 64)] + btlm_metadata(n_head=8, scaling=("factor", 2.0))
               + tokenizer_metadata(user_token=True), tensors(), version=2, alignment=64))
    write("gguf_header", "dynamic_scaling.gguf",
          gguf(btlm_metadata(scaling=("train", 32)) + tokenizer_metadata(), tensors()))
    write("gguf_header", "every_type_no_tensors.gguf", gguf(EVERY_TYPE, []))
    write("gguf_header", "tokenizer_only.gguf", gguf(tokenizer_metadata(), []))
    write("gguf_header", "q8_0_tensor.gguf",
          gguf([("general.architecture", T_STR, "btlm")], [("blk.0.ffn_up.weight", [32, 2], 8, bytes(68))]))
    write("gguf_header", "empty.gguf", gguf([], []))

    for path in sorted(glob.glob("/work/shared/fixtures/btlm/*/config.json")):
        write("hf_config", os.path.basename(os.path.dirname(path)) + ".json", open(path, "rb").read())
    base = json.load(open("/work/shared/fixtures/btlm/tiny/config.json"))
    old = dict(base)
    for k in ["mup_embeddings_scale", "mup_output_alpha", "mup_width_scale", "mup_scale_qk_dot_by_d"]:
        old.pop(k)
    old.update({"embeddings_scale": 14.6, "output_logits_scale": 0.222, "width_scale": 0.1,
                "scale_qk_dot_by_d": True, "n_inner": None,
                "alibi_scaling": {"type": "linear", "train_seq_len": 64}})
    write("hf_config", "old_spellings.json", json.dumps(old))
    write("hf_config", "minimal.json", json.dumps({k: base[k] for k in
          ["model_type", "n_embd", "n_head", "n_layer", "n_positions", "vocab_size"]}))

    vocab = {t: i for i, t in enumerate(BYTES + EXTRA)}
    def tok_json(merges, added, model_type="BPE", extra_model=None):
        model = {"type": model_type, "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                 "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                 "ignore_merges": False, "vocab": vocab, "merges": merges}
        if model_type is None:
            del model["type"]
        model.update(extra_model or {})
        return json.dumps({
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": model,
        }, ensure_ascii=False)
    n = len(vocab)
    eot = {"id": n, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False,
           "normalized": True, "special": True}
    tool = {"id": n + 1, "content": "<tool>", "special": False}
    write("tokenizer_json", "tiny_string_merges.json", tok_json(MERGES, [eot]))
    write("tokenizer_json", "tiny_array_merges.json",
          tok_json([m.split(" ") for m in MERGES], [eot, tool]))
    write("tokenizer_json", "tiny_untyped.json", tok_json(MERGES, [eot], model_type=None))
    write("tokenizer_json", "tiny_added_in_vocab.json",
          tok_json(MERGES, [{"id": vocab["he"], "content": "he", "special": False}]))


if __name__ == "__main__":
    main()
