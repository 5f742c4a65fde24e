//! Weight type presets: which GGML type each tensor gets. Vectors (norms, biases) always stay
//! F32. A matrix whose row length is not a multiple of the preset's block size falls back to
//! the next wider type that fits (Q4_K -> Q8_0 -> F16), as llama.cpp does.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::model::names;
use crate::quant::interleave::ROWS as R16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    F32,
    F16,
    Q8_0,
    Q4_0,
    /// Q4_0 with the matrices whose row count allows it stored as Q4_0_R16 (16 rows
    /// interleaved; see `quant::interleave`).
    Q4_0R16,
    Q4K,
    /// Q4_K body with a Q8_0 token embedding, which is also the LM head.
    Q4KM,
}

pub const ALL_PRESETS: [Preset; 7] =
    [Preset::F32, Preset::F16, Preset::Q8_0, Preset::Q4_0, Preset::Q4_0R16, Preset::Q4K, Preset::Q4KM];

impl Preset {
    pub fn parse(s: &str) -> Result<Self> {
        ALL_PRESETS.into_iter().find(|p| p.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = ALL_PRESETS.iter().map(|p| p.name()).collect();
            Error::InvalidArgument(format!("unknown type {s:?} (one of: {})", names.join(", ")))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::F32 => "f32",
            Preset::F16 => "f16",
            Preset::Q8_0 => "q8_0",
            Preset::Q4_0 => "q4_0",
            Preset::Q4_0R16 => "q4_0_r16",
            Preset::Q4K => "q4_k",
            Preset::Q4KM => "q4_k_m",
        }
    }

    /// One-line description with bits per weight of the body type.
    pub fn describe(self) -> &'static str {
        match self {
            Preset::F32 => "32 bits/weight, exact",
            Preset::F16 => "16 bits/weight",
            Preset::Q8_0 => "8.5 bits/weight (blocks of 32, f16 scale)",
            Preset::Q4_0 => "4.5 bits/weight (blocks of 32, f16 scale); embedding/LM head too",
            Preset::Q4_0R16 => "q4_0 with matrices 16 rows interleaved (Q4_0_R16, PocketLM only)",
            Preset::Q4K => "4.5 bits/weight (super-blocks of 256, 6-bit scales and mins); embedding too",
            Preset::Q4KM => "Q4_K body (4.5 bpw) + Q8_0 embedding/LM head (8.5 bpw): ~4.7 bpw on BTLM-3B",
        }
    }

    fn body(self) -> GgmlType {
        match self {
            Preset::F32 => GgmlType::F32,
            Preset::F16 => GgmlType::F16,
            Preset::Q8_0 => GgmlType::Q8_0,
            Preset::Q4_0 | Preset::Q4_0R16 => GgmlType::Q4_0,
            Preset::Q4K | Preset::Q4KM => GgmlType::Q4K,
        }
    }

    /// n_inner is zero-padded to this multiple so the FFN matrices stay in the body type.
    pub fn inner_block(self) -> Option<usize> {
        match self.body() {
            GgmlType::Q4K => Some(256),
            GgmlType::Q4_0 | GgmlType::Q8_0 => Some(32),
            _ => None,
        }
    }

    /// llama.cpp's `general.file_type` for the preset.
    pub fn file_type(self) -> u32 {
        match self {
            Preset::F32 => 0,
            Preset::F16 => 1,
            Preset::Q4_0 | Preset::Q4_0R16 => 2,
            Preset::Q8_0 => 7,
            Preset::Q4K => 14, // MOSTLY_Q4_K_S
            Preset::Q4KM => 15,
        }
    }

    /// The type of tensor `name` with GGUF dims `dims`.
    pub fn tensor_type(self, name: &str, dims: &[u64]) -> GgmlType {
        if dims.len() < 2 {
            return GgmlType::F32;
        }
        let want = match self {
            Preset::Q4KM if name == names::TOKEN_EMBD => GgmlType::Q8_0,
            p => p.body(),
        };
        let ty = [want, GgmlType::Q8_0, GgmlType::F16]
            .into_iter()
            .find(|t| t.row_bytes(dims[0]).is_some() && (t.block().0 <= want.block().0 || *t == want))
            .unwrap_or(GgmlType::F16);
        // The token embedding is read one row at a time (and is the LM head only when tied,
        // where its 50 257 rows are no multiple of 16 anyway): it stays plain.
        let rows = dims[1..].iter().product::<u64>();
        let interleave = self == Preset::Q4_0R16 && name != names::TOKEN_EMBD && rows.is_multiple_of(R16 as u64);
        if ty == GgmlType::Q4_0 && interleave {
            GgmlType::Q4_0R16
        } else {
            ty
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_fallbacks() {
        assert_eq!(Preset::Q4K.tensor_type("blk.0.ffn_up.weight", &[2560, 6912]), GgmlType::Q4K);
        assert_eq!(Preset::Q4K.tensor_type("blk.0.ffn_up.weight", &[64, 192]), GgmlType::Q8_0);
        assert_eq!(Preset::Q4_0.tensor_type("blk.0.ffn_down.weight", &[170, 64]), GgmlType::F16);
        assert_eq!(Preset::Q4_0R16.tensor_type("blk.0.ffn_down.weight", &[6912, 2560]), GgmlType::Q4_0R16);
        assert_eq!(Preset::Q4_0R16.tensor_type("blk.0.ffn_up.weight", &[2560, 6920]), GgmlType::Q4_0);
        assert_eq!(Preset::Q4_0R16.tensor_type(names::TOKEN_EMBD, &[2560, 50256]), GgmlType::Q4_0);
        assert_eq!(Preset::Q4_0.tensor_type("blk.0.ffn_down.weight", &[6912, 2560]), GgmlType::Q4_0);
        assert_eq!(Preset::Q4KM.tensor_type(names::TOKEN_EMBD, &[2560, 50257]), GgmlType::Q8_0);
        assert_eq!(Preset::Q4_0.tensor_type("blk.0.attn_qkv.bias", &[7680]), GgmlType::F32);
        assert_eq!(Preset::F32.tensor_type("blk.0.attn_qkv.weight", &[64, 192]), GgmlType::F32);
        assert_eq!(Preset::parse("Q4_K_M").unwrap(), Preset::Q4KM);
        assert!(Preset::parse("q3_k").unwrap_err().to_string().contains("q4_0"));
    }
}
