//! llama.cpp-style GGUF tensor names for BTLM, and the HF checkpoint names they come from.

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm";

/// Per-layer tensors: (GGUF suffix after `blk.N.`, HF suffix after `transformer.h.N.`,
/// is a 2-D Conv1D weight that must be transposed).
pub const LAYER_TENSORS: [(&str, &str, bool); 14] = [
    ("attn_norm.weight", "ln_1.weight", false),
    ("attn_norm.bias", "ln_1.bias", false),
    ("attn_qkv.weight", "attn.c_attn.weight", true),
    ("attn_qkv.bias", "attn.c_attn.bias", false),
    ("attn_output.weight", "attn.c_proj.weight", true),
    ("attn_output.bias", "attn.c_proj.bias", false),
    ("ffn_norm.weight", "ln_2.weight", false),
    ("ffn_norm.bias", "ln_2.bias", false),
    ("ffn_up.weight", "mlp.c_fc.weight", true),
    ("ffn_up.bias", "mlp.c_fc.bias", false),
    ("ffn_gate.weight", "mlp.c_fc2.weight", true),
    ("ffn_gate.bias", "mlp.c_fc2.bias", false),
    ("ffn_down.weight", "mlp.c_proj.weight", true),
    ("ffn_down.bias", "mlp.c_proj.bias", false),
];

pub fn layer(i: usize, suffix: &str) -> String {
    format!("blk.{i}.{suffix}")
}

/// Expected GGUF dims (GGML order: contiguous dimension first) of every tensor.
pub fn expected_dims(name: &str, n_embd: u64, n_inner: u64, n_vocab: u64) -> Option<Vec<u64>> {
    let (e, f) = (n_embd, n_inner);
    if name == TOKEN_EMBD {
        return Some(vec![e, n_vocab]);
    }
    if name == "output_norm.weight" || name == "output_norm.bias" {
        return Some(vec![e]);
    }
    let rest = name.strip_prefix("blk.")?;
    let (_, suffix) = rest.split_once('.')?;
    Some(match suffix {
        "attn_norm.weight" | "attn_norm.bias" | "ffn_norm.weight" | "ffn_norm.bias" => vec![e],
        "attn_qkv.weight" => vec![e, 3 * e],
        "attn_qkv.bias" => vec![3 * e],
        "attn_output.weight" => vec![e, e],
        "attn_output.bias" | "ffn_down.bias" => vec![e],
        "ffn_up.weight" | "ffn_gate.weight" => vec![e, f],
        "ffn_up.bias" | "ffn_gate.bias" => vec![f],
        "ffn_down.weight" => vec![f, e],
        _ => return None,
    })
}
